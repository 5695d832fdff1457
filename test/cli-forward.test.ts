/**
 * `mimetic forward` end to end: the file it writes matches the goldens tensor for tensor, and bad
 * token-id files are refused with one line and exit code 2, leaving no output behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsReader } from '../src/checkpoint/safetensors.js';
import { goldenIds } from './helpers/golden.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

function cli(args: string[]) {
  return spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 120_000 });
}

for (const [name, backend] of [['mamba1-tiny', 'wasm'], ['mamba2-tiny-sharded', 'cpu']] as const) {
  test(`mimetic forward on ${name} (${backend}) writes every golden tensor`, () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-fwd-'));
    try {
      const g = SafetensorsReader.open(path.join(FIXTURES, name, 'golden.safetensors'));
      const idsFile = path.join(tmp, 'ids.json');
      fs.writeFileSync(idsFile, JSON.stringify(goldenIds(g)));
      const out = path.join(tmp, 'out.safetensors');
      const r = cli(['forward', path.join(FIXTURES, name), '--ids', idsFile, '--out', out, '--backend', backend]);
      assert.equal(r.status, 0, r.stderr);
      const o = SafetensorsReader.open(out);
      const want = g.names().filter((n) => n !== 'input_ids');
      assert.deepEqual([...o.names()].sort(), [...want].sort());
      for (const n of want) {
        const a = o.readFloat32(n);
        const b = g.readFloat32(n);
        assert.equal(o.info(n).dtype, 'F32');
        assert.deepEqual(a.shape, b.shape, n);
        let scale = 0;
        let worst = 0;
        for (let i = 0; i < b.data.length; i++) {
          scale = Math.max(scale, Math.abs(b.data[i]!));
          const d = Math.abs(a.data[i]! - b.data[i]!);
          if (!(d <= worst)) worst = d;
        }
        assert.ok(worst <= Math.max(1e-4, 1e-4 * scale), `${n}: ${worst}`);
      }
      o.close();
      g.close();
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test('mimetic forward refuses bad token ids with one line and exit code 2', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-fwd-bad-'));
  try {
    const cases: [string, string, RegExp][] = [
      ['vocab', '[[1, 2, 3], [4, 64, 5]]', /id 64 at row 1, position 1 is outside the vocabulary \[0, 63\]/],
      ['negative', '[[-1]]', /id -1 at row 0, position 0/],
      ['float', '[[1.5, 2]]', /id 1\.5 at row 0, position 0/],
      ['ragged', '[[1, 2, 3], [4, 5]]', /row 1 has 2 tokens but row 0 has 3/],
      ['empty', '[]', /empty input/],
      ['emptyrow', '[[]]', /non-empty/],
      ['notjson', '[[1, 2', /not valid JSON/],
      ['notnested', '[1, 2, 3]', /row 0 is not an array/],
    ];
    for (const [label, text, re] of cases) {
      const f = path.join(tmp, `${label}.json`);
      fs.writeFileSync(f, text);
      const out = path.join(tmp, `${label}.safetensors`);
      const r = cli(['forward', path.join(FIXTURES, 'mamba1-tiny'), '--ids', f, '--out', out, '--backend', 'cpu']);
      assert.equal(r.status, 2, `${label}: ${r.stderr}`);
      assert.match(r.stderr, /^mimetic: /);
      assert.match(r.stderr, re, label);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${label}: one line`);
      assert.ok(!fs.existsSync(out), `${label}: no output written`);
    }
    const missing = cli(['forward', path.join(FIXTURES, 'mamba1-tiny'), '--ids', path.join(tmp, 'nope.json'), '--out', path.join(tmp, 'x.safetensors')]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /cannot read the ids file/);
    assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.endsWith('.safetensors') || f.startsWith('.')), []);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
