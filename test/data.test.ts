/** data prepare: format, a deterministic split by document, boundaries; windows read back by position. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { prepareCorpus, tokenizerCut } from '../src/data/prepare.js';
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

/** GPT-2's byte → printable-character map (the ByteLevel pre-tokenizer's alphabet). */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let i = 33; i <= 126; i++) bs.push(i);
  for (let i = 161; i <= 172; i++) bs.push(i);
  for (let i = 174; i <= 255; i++) bs.push(i);
  const out: string[] = [];
  bs.forEach((b) => (out[b] = String.fromCodePoint(b)));
  let n = 0;
  for (let b = 0; b < 256; b++) if (out[b] === undefined) out[b] = String.fromCodePoint(256 + n++);
  return out;
}

/** A tiny byte-level BPE tokenizer.json: the 256 bytes and a few merges, one of them two line breaks. */
function tinyTokenizer(): Record<string, unknown> {
  const b2u = bytesToUnicode();
  const vocab: Record<string, number> = {};
  b2u.forEach((c, b) => (vocab[c] = b));
  const merges = [['Ġ', 't'], ['h', 'e'], ['Ġt', 'he'], ['Ċ', 'Ċ'], ['a', 't'], ['Ġ', 'c'], ['Ġc', 'at'], ['Ã', '©']];
  for (const [a, b] of merges) vocab[a! + b!] = Object.keys(vocab).length;
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null, post_processor: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`) },
  };
}

test('prepare --tokenizer tokenizer.json: each document\'s ids are the tokenizers library\'s own encoding of the whole text, in small chunks too', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-data-tk-'));
  try {
    const json = tinyTokenizer();
    const tkFile = path.join(root, 'tokenizer.json');
    fs.writeFileSync(tkFile, JSON.stringify(json));
    const src = path.join(root, 'txt');
    fs.mkdirSync(src);
    const texts = [
      'the cat\n\nthe cat é\n',
      'the cat sat.\n\n\nthe hat  \n  the cat\r\nété\n\nthe end',
      ('the cat at the mat\n\n' + 'é'.repeat(5) + ' cat\n').repeat(9),
      'no line break at all, the cat the cat the cat',
      '\n\n\nthe\n \n cat\n',
    ];
    texts.forEach((t, i) => fs.writeFileSync(path.join(src, `d${i}.txt`), t));
    const { Tokenizer } = await import('@huggingface/tokenizers');
    const lib = new Tokenizer(json as object, {});
    for (const chunk of [undefined, 16, 5]) {
      const out = path.join(root, `out-${chunk ?? 'default'}`);
      const meta = await prepareCorpus([src], { out, tokenizer: tkFile, heldOut: 0.4, chunk });
      assert.equal(meta.vocab, 264);
      assert.equal(meta.dtype, 'uint16');
      assert.equal(meta.tokenizer?.file, 'tokenizer.json');
      assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'tokenizer.json'), 'utf8')), json);
      const d = TokenData.open(out);
      for (const doc of meta.documents) {
        const text = texts[Number(/d(\d)\.txt$/.exec(doc.name)![1])]!;
        const want = lib.encode(text, { add_special_tokens: false }).ids;
        const got = new Int32Array(doc.tokens);
        d.read(doc.split, doc.start, doc.tokens, got);
        assert.deepEqual([...got], want, `${doc.name}, chunk ${chunk ?? 'default'}`);
        assert.equal(doc.bytes, Buffer.byteLength(text));
      }
      d.close();
    }
    // the merges are used (the ids are not just bytes), the two line breaks among them where the library merges them
    const ids = lib.encode(texts[0]!, { add_special_tokens: false }).ids;
    assert.ok(ids.some((id: number) => id >= 256), String(ids));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('tokenizerCut: before the last line break that follows a non-space byte', () => {
  const b = (s: string) => new Uint8Array(Buffer.from(s));
  assert.equal(tokenizerCut(b('ab\ncd\nef')), 5);
  assert.equal(tokenizerCut(b('ab\n\n\ncd')), 2);
  assert.equal(tokenizerCut(b('ab \ncd')), -1);
  assert.equal(tokenizerCut(b('\nabc')), -1);
});
