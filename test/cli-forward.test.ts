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
import { expectClose, goldenIds } from './helpers/golden.js';

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

test('mimetic forward checks --out before computing anything', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-fwd-out-'));
  try {
    const ids = path.join(tmp, 'ids.json');
    fs.writeFileSync(ids, '[[1, 2, 3, 4]]');
    fs.mkdirSync(path.join(tmp, 'dir.safetensors'));
    const cases: [string, RegExp][] = [
      [path.join(tmp, 'nonexistent', 'dir', 'x.safetensors'), /the folder .*nonexistent.dir does not exist; create it first/],
      [path.join(tmp, 'ids.json', 'x.safetensors'), /is not a folder/],
      [path.join(tmp, 'dir.safetensors'), /is a folder; give a file name/],
    ];
    for (const [out, re] of cases) {
      const r = cli(['forward', path.join(FIXTURES, 'mamba1-tiny'), '--ids', ids, '--out', out, '--backend', 'cpu']);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line, no progress (nothing computed): ${r.stderr}`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('mimetic forward --layers --no-attention: only the chosen layers, values as the goldens, tensors described, progress on stderr', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-fwd-layers-'));
  try {
    const g = SafetensorsReader.open(path.join(FIXTURES, 'mamba1-tiny', 'golden.safetensors'));
    const idsFile = path.join(tmp, 'ids.json');
    fs.writeFileSync(idsFile, JSON.stringify(goldenIds(g)));
    const out = path.join(tmp, 'out.safetensors');
    const r = cli(['forward', path.join(FIXTURES, 'mamba1-tiny'), '--ids', idsFile, '--out', out, '--backend', 'cpu', '--layers', '1', '--no-attention']);
    assert.equal(r.status, 0, r.stderr);
    // Not a terminal: one plain progress line per layer, and a closing line on stdout.
    assert.match(r.stderr, /^forward: layer 1\/2, \d+ s\nforward: layer 2\/2, \d+ s\n$/);
    assert.match(r.stdout, /^wrote .*out\.safetensors: \d+ tensors \(.*\), maps of 1 of 2 layers \(no attention\), [\d.]+ s\n$/);
    const o = SafetensorsReader.open(out);
    const hidden = g.names().filter((n) => n.startsWith('hidden_states.'));
    assert.deepEqual([...o.names()].sort(), ['layers.1.delta', 'layers.1.mixer_input', 'logits', ...hidden].sort());
    for (const n of o.names()) expectClose(n, o.readFloat32(n), g.readFloat32(n));
    const meta = o.metadata;
    assert.equal(meta.layers, '1');
    for (const k of ['logits', 'hidden_states.{i}', 'layers.{i}.mixer_input', 'layers.{i}.delta']) assert.match(meta[`describe.${k}`] ?? '', /^\[B, /, k);
    assert.equal(meta['describe.layers.{i}.attention'], undefined, 'only tensors the file holds are described');
    o.close();
    g.close();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

for (const [name, count] of [['mamba1-tiny', 64], ['mamba2-tiny', 8]] as const) {
  test(`mimetic forward --channels on ${name}: per-channel maps whose mean is the layer's map`, () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-fwd-ch-'));
    try {
      const idsFile = path.join(tmp, 'ids.json');
      fs.writeFileSync(idsFile, '[[1, 2, 3, 4, 5, 1, 2, 3, 4, 5], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]');
      const out = path.join(tmp, 'out.safetensors');
      const r = cli(['forward', path.join(FIXTURES, name), '--ids', idsFile, '--out', out, '--backend', 'cpu', '--layers', '0', '--channels', `0-${count - 1}`]);
      assert.equal(r.status, 0, r.stderr);
      const o = SafetensorsReader.open(out);
      const ch = o.readFloat32('layers.0.channel_attention');
      const att = o.readFloat32('layers.0.attention');
      const [B, K, L] = ch.shape as [number, number, number, number];
      assert.deepEqual(ch.shape, [2, count, 10, 10]);
      const mean = new Float32Array(B * L * L);
      for (let b = 0; b < B; b++) for (let k = 0; k < K; k++) for (let q = 0; q < L * L; q++) mean[b * L * L + q]! += ch.data[(b * K + k) * L * L + q]! / K;
      expectClose('mean of channel maps', { shape: att.shape, data: mean }, att);
      assert.equal(o.metadata.channels, Array.from({ length: count }, (_, i) => i).join(','));
      assert.ok(!o.names().includes('layers.1.channel_attention'));
      o.close();
      const bad = cli(['forward', path.join(FIXTURES, name), '--ids', idsFile, '--out', out, '--channels', String(count)]);
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /--channels .* is outside the model/);
      const both = cli(['forward', path.join(FIXTURES, name), '--ids', idsFile, '--out', out, '--channels', '0', '--no-attention']);
      assert.equal(both.status, 2);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
}
