import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { type InitOptions, freshConfig, initRecord, initWeights, writeFreshCheckpoint } from '../src/model/init.js';
import { applyTransplant, parseLayerList, targetFromCheckpoint, transplantToDir } from '../src/model/transplant.js';
import { UserError } from '../src/util/errors.js';
import { tempDirs } from './helpers/tmpdir.js';

const FIX = path.resolve('test/fixtures');
const tmp = tempDirs('mimetic-tp-');
const def: InitOptions = { init: 'default', parts: [], aScale: 8, bcNoise: 0, seed: 1 };

const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

test('transplant mamba1-tiny layer 1 (mixer) into every layer of a fresh model: bytes equal, rest untouched', async () => {
  const dir = tmp();
  const fresh = path.join(dir, 'fresh');
  await writeFreshCheckpoint(fresh, { arch: 'mamba1', numLayers: 3, hiddenSize: 32, stateSize: 8, vocabSize: 20 }, def);
  const src = Checkpoint.open(path.join(FIX, 'mamba1-tiny'));
  const into = Checkpoint.open(fresh);
  const out = path.join(dir, 'out');
  try {
    const recs = await transplantToDir({ from: src, sourceName: 'mamba1-tiny', sourceLayers: [1], target: targetFromCheckpoint(into), targetLayers: [0, 2], part: 'mixer' }, out);
    assert.deepEqual(recs.map((r) => [r.target, r.layer]), [[0, 1], [2, 1]]);
    const res = Checkpoint.open(out);
    try {
      const s1 = src.readLayer(1);
      for (const t of [0, 2]) {
        const L = res.readLayer(t);
        for (const k of Object.keys(s1)) {
          if (k.startsWith('mixer.')) assert.ok(same(L[k]!.data, s1[k]!.data), `layer ${t} ${k}`);
        }
        assert.ok(same(L['norm.weight']!.data, into.readLayer(t)['norm.weight']!.data), 'block norm not copied with mixer');
      }
      const L1 = res.readLayer(1), F1 = into.readLayer(1);
      for (const k of Object.keys(F1)) assert.ok(same(L1[k]!.data, F1[k]!.data), `untouched layer 1 ${k}`);
      assert.ok(same(res.readEmbedding().data, into.readEmbedding().data), 'embedding never transplanted');
      const m = (res.rawConfig as { mimetic: { init: string; transplant: { target: number; source: string; layer: number; parts: string }[] } }).mimetic;
      assert.equal(m.init, 'default');
      assert.deepEqual(m.transplant, [{ target: 0, source: 'mamba1-tiny', layer: 1, parts: 'mixer' }, { target: 2, source: 'mamba1-tiny', layer: 1, parts: 'mixer' }]);
    } finally { res.close(); }
  } finally { src.close(); into.close(); }
});

test('transplant parts: ssm (mamba1) copies only the SSM tensors; block adds the norm', () => {
  const src = Checkpoint.open(path.join(FIX, 'mamba1-tiny'));
  try {
    const c = freshConfig({ arch: 'mamba1', numLayers: 2, hiddenSize: 32, stateSize: 8, vocabSize: 20 });
    const w = initWeights(c, def);
    const before = new Map([...w].map(([k, v]) => [k, Float32Array.from(v.data)]));
    applyTransplant({ from: src, sourceName: 's', sourceLayers: [0, 1], target: { config: c, weights: w }, targetLayers: [1, 0], part: 'ssm' });
    const s0 = src.readLayer(0);
    const ssm = ['mixer.A_log', 'mixer.D', 'mixer.dt_proj.weight', 'mixer.dt_proj.bias', 'mixer.x_proj.weight', 'mixer.conv1d.weight', 'mixer.conv1d.bias'];
    for (const k of Object.keys(s0)) {
      const got = w.get(`backbone.layers.1.${k}`)!.data;
      if (ssm.includes(k)) assert.ok(same(got, s0[k]!.data), k);
      else assert.ok(same(got, before.get(`backbone.layers.1.${k}`)!), `${k} kept`);
    }
    const w2 = initWeights(c, def);
    applyTransplant({ from: src, sourceName: 's', sourceLayers: [0], target: { config: c, weights: w2 }, targetLayers: [0], part: 'block' });
    assert.ok(same(w2.get('backbone.layers.0.norm.weight')!.data, s0['norm.weight']!.data));
    assert.ok(same(w2.get('backbone.layers.0.mixer.out_proj.weight')!.data, s0['mixer.out_proj.weight']!.data));
  } finally { src.close(); }
});

test('transplant ssm (mamba2): B/C rows of in_proj and their conv channels, not x or gate', () => {
  const src = Checkpoint.open(path.join(FIX, 'mamba2-tiny'));
  try {
    const c = freshConfig({ arch: 'mamba2', numLayers: 1, hiddenSize: 32, stateSize: 16, headDim: 8, vocabSize: 20 });
    const w = initWeights(c, def);
    const inBefore = Float32Array.from(w.get('backbone.layers.0.mixer.in_proj.weight')!.data);
    const convBefore = Float32Array.from(w.get('backbone.layers.0.mixer.conv1d.weight')!.data);
    applyTransplant({ from: src, sourceName: 's', sourceLayers: [1], target: { config: c, weights: w }, targetLayers: [0], part: 'ssm' });
    const s = src.readLayer(1);
    const d = 32, dI = 64, N = 16, K = 4;
    const inP = w.get('backbone.layers.0.mixer.in_proj.weight')!.data;
    assert.ok(same(inP.subarray(2 * dI * d, (2 * dI + 2 * N) * d), s['mixer.in_proj.weight']!.data.subarray(2 * dI * d, (2 * dI + 2 * N) * d)), 'B/C rows copied');
    assert.ok(same(inP.subarray(0, 2 * dI * d), inBefore.subarray(0, 2 * dI * d)), 'gate/x rows kept');
    assert.ok(same(inP.subarray((2 * dI + 2 * N) * d), inBefore.subarray((2 * dI + 2 * N) * d)), 'dt rows kept');
    const conv = w.get('backbone.layers.0.mixer.conv1d.weight')!.data;
    assert.ok(same(conv.subarray(dI * K), s['mixer.conv1d.weight']!.data.subarray(dI * K)), 'B/C conv channels copied');
    assert.ok(same(conv.subarray(0, dI * K), convBefore.subarray(0, dI * K)), 'x conv channels kept');
    for (const k of ['mixer.A_log', 'mixer.D', 'mixer.dt_bias']) assert.ok(same(w.get(`backbone.layers.0.${k}`)!.data, s[k]!.data), k);
  } finally { src.close(); }
});

test('transplant mismatches are user errors naming both shapes', () => {
  const src = Checkpoint.open(path.join(FIX, 'mamba1-tiny'));
  try {
    const c = freshConfig({ arch: 'mamba1', numLayers: 2, hiddenSize: 16, stateSize: 8, vocabSize: 20 });
    const w = initWeights(c, def);
    assert.throws(() => applyTransplant({ from: src, sourceName: 's', sourceLayers: [1], target: { config: c, weights: w }, targetLayers: [0], part: 'mixer' }),
      (e: unknown) => e instanceof UserError && /\[64, 8\] in the source but \[32, 8\] in the target/.test((e as Error).message));
    const c2 = freshConfig({ arch: 'mamba2', numLayers: 1, hiddenSize: 32, stateSize: 8, headDim: 8, vocabSize: 20 });
    assert.throws(() => applyTransplant({ from: src, sourceName: 's', sourceLayers: [0], target: { config: c2, weights: initWeights(c2, def) }, targetLayers: [0], part: 'ssm' }), /Mamba-1 layer into a Mamba-2/);
    assert.throws(() => applyTransplant({ from: src, sourceName: 's', sourceLayers: [5], target: { config: c, weights: w }, targetLayers: [0], part: 'ssm' }), /out of range/);
    assert.throws(() => applyTransplant({ from: src, sourceName: 's', sourceLayers: [0, 1], target: { config: c, weights: w }, targetLayers: [0, 1, 1], part: 'ssm' }), /2 source layers/);
    assert.deepEqual(parseLayerList('all', 'x', 3, true), [0, 1, 2]);
    assert.deepEqual(parseLayerList('0,2-3', 'x', 4, false), [0, 2, 3]);
    assert.throws(() => parseLayerList('all', '--layers', 3, false), UserError);
    assert.equal(initRecord({ ...def, init: 'mimetic', parts: ['dt'] }).aScale, null);
  } finally { src.close(); }
});

test('CLI: init then transplant write checkpoints; bad input exits 2 with one line', async () => {
  const { spawnSync } = await import('node:child_process');
  const main = path.resolve('dist/src/cli/main.js');
  const dir = tmp();
  const run = (...args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' });
  const a = run('init', '--arch', 'mamba2', '--n-layers', '2', '--d-model', '32', '--d-state', '16', '--head-dim', '8', '--vocab', '64', '--init', 'mimetic', '--mimetic', 'a,bc', '--a-scale', '2', '--seed', '7', '--out', path.join(dir, 'fresh'));
  assert.equal(a.status, 0, a.stderr);
  const b = run('transplant', '--from', path.join(FIX, 'mamba2-tiny'), '--layers', '0', '--into', path.join(dir, 'fresh'), '--target-layers', '1', '--parts', 'block', '--out', path.join(dir, 'tp'));
  assert.equal(b.status, 0, b.stderr);
  assert.match(b.stdout, /layer 1 ← .*mamba2-tiny layer 0 \(block\)/);
  const ck = Checkpoint.open(path.join(dir, 'tp'));
  const src = Checkpoint.open(path.join(FIX, 'mamba2-tiny'));
  try {
    const m = (ck.rawConfig as { mimetic: { init: string; parts: string[]; aScale: number; seed: number; transplant: { layer: number }[] } }).mimetic;
    assert.deepEqual([m.init, m.parts, m.aScale, m.seed, m.transplant.length], ['mimetic', ['a', 'bc'], 2, 7, 1]);
    const s0 = src.readLayer(0), t1 = ck.readLayer(1);
    for (const k of Object.keys(s0)) assert.ok(same(s0[k]!.data, t1[k]!.data), k);
  } finally { ck.close(); src.close(); }
  for (const bad of [
    ['init', '--mimetic', 'a,zz', '--out', path.join(dir, 'x')],
    ['init', '--n-layers', 'two', '--out', path.join(dir, 'x')],
    ['transplant', '--from', path.join(FIX, 'mamba2-tiny'), '--layers', '0', '--into', path.join(FIX, 'mamba1-tiny'), '--out', path.join(dir, 'y')],
    ['transplant', '--from', path.join(FIX, 'mamba1-tiny'), '--layers', '0', '--parts', 'all', '--out', path.join(dir, 'y')],
  ]) {
    const r = run(...bad);
    assert.equal(r.status, 2, bad.join(' '));
    assert.match(r.stderr, /^mimetic: [^\n]+\n$/, r.stderr);
  }
  assert.ok(!fs.existsSync(path.join(dir, 'x')) && !fs.existsSync(path.join(dir, 'y')), 'nothing written on error');
});
