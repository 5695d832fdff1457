/** data prepare: format, a deterministic split by document, boundaries; windows read back by position. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { prepareCorpus } from '../src/data/prepare.js';
import { TokenData } from '../src/data/tokens.js';

test('prepare writes bytes, splits by document deterministically and records boundaries', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-data-'));
  const src = path.join(root, 'txt');
  fs.mkdirSync(src);
  for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(src, `d${i}.txt`), `document ${i} é\n`.repeat(i + 1));
  const a = await prepareCorpus([src], { out: path.join(root, 'a'), heldOut: 0.3, chunk: 7 });
  const b = await prepareCorpus([src], { out: path.join(root, 'b'), heldOut: 0.3 });
  assert.equal(a.dtype, 'uint8');
  assert.deepEqual(a.documents, b.documents);
  assert.ok(a.splits.heldout.documents >= 1 && a.splits.train.documents >= 1);
  const d = TokenData.open(path.join(root, 'a'));
  for (const doc of a.documents) {
    const out = new Int32Array(doc.tokens);
    d.read(doc.split, doc.start, doc.tokens, out);
    assert.equal(Buffer.from(Uint8Array.from(out)).toString('utf8'), fs.readFileSync(path.join(src, doc.name.split('/')[1]!), 'utf8'));
  }
  d.close();
  fs.rmSync(root, { recursive: true, force: true });
});
