import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { SOFTPLUS_INV_ONE, type InitOptions, freshConfig, initWeights, parseMimeticParts, softplusInv, writeFreshCheckpoint } from '../src/model/init.js';
import { Rng, mulberry32 } from '../src/util/rng.js';
import { expectedShapes } from '../src/model/weights.js';
import { UserError } from '../src/util/errors.js';
import { tempDirs } from './helpers/tmpdir.js';

const tmp = tempDirs('mimetic-init-');
const def: InitOptions = { init: 'default', parts: [], aScale: 8, bcNoise: 0, seed: 0 };
const mim: InitOptions = { init: 'mimetic', parts: ['a', 'dt', 'bc', 'conv'], aScale: 8, bcNoise: 0, seed: 0 };

function stats(a: Float32Array) {
  let mean = 0, min = Infinity, max = -Infinity;
  for (const x of a) { mean += x; min = Math.min(min, x); max = Math.max(max, x); }
  mean /= a.length;
  let v = 0;
  for (const x of a) v += (x - mean) ** 2;
  return { mean, std: Math.sqrt(v / a.length), min, max };
}

/** M = W[rows r0..r0+n) as an n×d matrix; returns M·Mᵀ. */
function gram(a: Float32Array, b: Float32Array, n: number, d: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < n; i++) {
    out.push([]);
    for (let j = 0; j < n; j++) { let s = 0; for (let k = 0; k < d; k++) s += a[i * d + k]! * b[j * d + k]!; out[i]!.push(s); }
  }
  return out;
}

test('rng: mulberry32 is deterministic, uniform in [0,1) and resumable from its state', () => {
  const a = mulberry32(42), b = mulberry32(42), c = mulberry32(43);
  const xs = Array.from({ length: 1000 }, () => a());
  assert.deepEqual(xs, Array.from({ length: 1000 }, () => b()));
  assert.notDeepEqual(xs.slice(0, 10), Array.from({ length: 10 }, () => c()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const m = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(m - 0.5) < 0.03, `mean ${m}`);
  const r = new Rng(7);
  for (let i = 0; i < 5; i++) r.next();
  const st = r.getState();
  const tail = [r.next(), r.normal(), r.int(3, 9)];
  const r2 = Rng.fromState(JSON.parse(JSON.stringify(st)));
  assert.deepEqual([r2.next(), r2.normal(), r2.int(3, 9)], tail);
  const ns = new Rng(1).fillNormal(new Float32Array(20000));
  const s = stats(ns);
  assert.ok(Math.abs(s.mean) < 0.03 && Math.abs(s.std - 1) < 0.03, JSON.stringify(s));
});

test('init default mamba1: mamba_ssm recipe, statistics of each tensor', async () => {
  const out = path.join(tmp(), 'ck');
  await writeFreshCheckpoint(out, { arch: 'mamba1', numLayers: 2, hiddenSize: 64, stateSize: 16, vocabSize: 32 }, def);
  const ck = Checkpoint.open(out);
  try {
    const c = ck.config;
    assert.equal(c.arch, 'mamba1');
    assert.equal(c.intermediateSize, 128);
    assert.equal(c.timeStepRank, 4);
    assert.equal(c.tiedEmbeddings, true);
    assert.ok(!ck.has('lm_head.weight'));
    const raw = ck.rawConfig as { mimetic: { init: string; seed: number } };
    assert.equal(raw.mimetic.init, 'default');
    const L = ck.readLayer(1);
    const A = L['mixer.A_log']!;
    assert.deepEqual(A.shape, [128, 16]);
    for (let d = 0; d < 128; d++) for (let n = 0; n < 16; n++) assert.equal(A.data[d * 16 + n], Math.fround(Math.log(n + 1)));
    assert.ok(L['mixer.D']!.data.every((x) => x === 1));
    assert.ok(L['norm.weight']!.data.every((x) => x === 1));
    // dt bias: softplus(bias) in [1e-3, 1e-1], log-uniform (mean of log dt ≈ midpoint).
    const dt = Array.from(L['mixer.dt_proj.bias']!.data, (b) => Math.log1p(Math.exp(b)));
    assert.ok(dt.every((x) => x >= 1e-3 * 0.999 && x <= 0.1 * 1.001), 'dt range');
    const ml = dt.reduce((s, x) => s + Math.log(x), 0) / dt.length;
    assert.ok(Math.abs(ml - (Math.log(1e-3) + Math.log(0.1)) / 2) < 0.5, `mean log dt ${ml}`);
    const dtw = stats(L['mixer.dt_proj.weight']!.data);
    assert.ok(dtw.max <= 0.5 && dtw.min >= -0.5 && dtw.max > 0.45, JSON.stringify(dtw)); // ±rank^-0.5 = ±0.5
    // Kaiming-uniform: U(±1/√fan_in) has std bound/√3.
    for (const [name, fanIn] of [['mixer.in_proj.weight', 64], ['mixer.x_proj.weight', 128], ['mixer.out_proj.weight', 128], ['mixer.conv1d.weight', 4], ['mixer.conv1d.bias', 4]] as const) {
      const s = stats(L[name]!.data);
      const b = 1 / Math.sqrt(fanIn);
      assert.ok(s.max <= b && s.min >= -b, `${name} within ±${b}`);
      assert.ok(Math.abs(s.std - b / Math.sqrt(3)) < 0.15 * b, `${name} std ${s.std} vs ${b / Math.sqrt(3)}`);
    }
    const e = stats(ck.readEmbedding().data);
    assert.ok(Math.abs(e.std - 0.02) < 0.002 && Math.abs(e.mean) < 0.002, JSON.stringify(e));
    assert.ok(ck.readNormF().data.every((x) => x === 1));
  } finally { ck.close(); }
});

test('init mimetic mamba1: A scaled, dt = 1, W_C = W_B near-orthonormal, identity conv', () => {
  const c = freshConfig({ arch: 'mamba1', numLayers: 1, hiddenSize: 64, stateSize: 16, vocabSize: 32 });
  const w = initWeights(c, mim);
  const g = (n: string) => w.get(`backbone.layers.0.${n}`)!;
  const A = g('mixer.A_log');
  for (let n = 0; n < 16; n++) assert.equal(A.data[5 * 16 + n], Math.fround(-8 * Math.log(n + 1)));
  assert.ok(g('mixer.dt_proj.bias').data.every((x) => x === Math.fround(SOFTPLUS_INV_ONE)));
  assert.ok(Math.abs(Math.log1p(Math.exp(SOFTPLUS_INV_ONE)) - 1) < 1e-12);
  assert.ok(Math.abs(softplusInv(0.01) - Math.log(Math.expm1(0.01))) < 1e-9);
  const R = c.timeStepRank!, N = 16, dI = 128;
  const x = g('mixer.x_proj.weight').data;
  const WB = x.subarray(R * dI, (R + N) * dI), WC = x.subarray((R + N) * dI, (R + 2 * N) * dI);
  assert.deepEqual(Array.from(WB), Array.from(WC));
  // W_B·W_Bᵀ ≈ I_N (rows nearly orthonormal), so W_Cᵀ·W_B is close to a rank-N projection: trace ≈ N.
  const G = gram(WB, WB, N, dI);
  let trace = 0, offMax = 0;
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) { if (i === j) trace += G[i]![j]!; else offMax = Math.max(offMax, Math.abs(G[i]![j]!)); }
  assert.ok(Math.abs(trace - N) < 0.25 * N, `trace ${trace}`);
  assert.ok(offMax < 0.45, `off-diagonal ${offMax}`);
  const conv = g('mixer.conv1d.weight').data;
  for (let ch = 0; ch < dI; ch++) assert.deepEqual(Array.from(conv.subarray(ch * 4, ch * 4 + 4)), [0, 0, 0, 1]);
  assert.ok(g('mixer.conv1d.bias').data.every((v) => v === 0));
  // Noise: W_C = W_B + α·Z.
  const wn = initWeights(c, { ...mim, bcNoise: 0.5 });
  const xn = wn.get('backbone.layers.0.mixer.x_proj.weight')!.data;
  const diff = Array.from(xn.subarray((R + N) * dI, (R + 2 * N) * dI), (v, i) => v - xn[R * dI + i]!);
  const sd = stats(Float32Array.from(diff));
  assert.ok(Math.abs(sd.std - 0.5) < 0.05, `noise std ${sd.std}`);
  // Parts are switchable: only conv.
  const wc = initWeights(c, { ...mim, parts: ['conv'] });
  assert.equal(wc.get('backbone.layers.0.mixer.A_log')!.data[3], Math.fround(Math.log(4)));
  assert.notEqual(wc.get('backbone.layers.0.mixer.dt_proj.bias')!.data[0], Math.fround(SOFTPLUS_INV_ONE));
});

test('init mamba2: shapes, A per head in log[1,16], mimetic B/C rows of in_proj and conv channels', async () => {
  const out = path.join(tmp(), 'ck2');
  await writeFreshCheckpoint(out, { arch: 'mamba2', numLayers: 2, hiddenSize: 64, stateSize: 16, headDim: 16, vocabSize: 40 }, { ...mim, aScale: 4, seed: 3 });
  const ck = Checkpoint.open(out);
  try {
    const c = ck.config;
    assert.equal(c.arch, 'mamba2');
    assert.equal(c.numHeads, 8);
    assert.equal(c.nGroups, 1);
    assert.equal(c.vocabSize, 40);
    const L = ck.readLayer(0);
    const A = L['mixer.A_log']!.data;
    assert.ok(Array.from(A).every((a) => -a / 4 >= 0 && -a / 4 <= Math.log(16) + 1e-6), 'A_log = -4·log U[1,16]');
    assert.ok(L['mixer.dt_bias']!.data.every((x) => x === Math.fround(SOFTPLUS_INV_ONE)));
    const dI = 128, N = 16, d = 64;
    const W = L['mixer.in_proj.weight']!;
    assert.deepEqual(W.shape, [2 * dI + 2 * N + 8, d]);
    const WB = W.data.subarray(2 * dI * d, (2 * dI + N) * d), WC = W.data.subarray((2 * dI + N) * d, (2 * dI + 2 * N) * d);
    assert.deepEqual(Array.from(WB), Array.from(WC));
    const sb = stats(WB);
    assert.ok(Math.abs(sb.std - 1 / Math.sqrt(d)) < 0.02, `W_B std ${sb.std}`);
    const conv = L['mixer.conv1d.weight']!;
    assert.deepEqual(conv.shape, [dI + 2 * N, 1, 4]);
    for (let ch = 0; ch < dI + 2 * N; ch++) assert.deepEqual(Array.from(conv.data.subarray(ch * 4, ch * 4 + 4)), [0, 0, 0, 1]);
    const raw = ck.rawConfig as { mimetic: { parts: string[]; aScale: number; seed: number }; time_step_limit: unknown[] };
    assert.deepEqual(raw.mimetic.parts, ['a', 'dt', 'bc', 'conv']);
    assert.equal(raw.mimetic.aScale, 4);
    assert.equal(raw.mimetic.seed, 3);
    assert.equal(raw.time_step_limit[1], Infinity);
    // transformers 5's strict Mamba2Config rejects an int in time_step_limit (seen on the GPU host: 'Invalid item at index 0').
    assert.match(fs.readFileSync(path.join(out, "config.json"), "utf8"), /"time_step_limit": \[\s*0\.0,/);
  } finally { ck.close(); }
  // default Mamba-2: A in log[1, 16]
  const w = initWeights(freshConfig({ arch: 'mamba2', numLayers: 1, hiddenSize: 64, stateSize: 16, headDim: 8, vocabSize: 40 }), def);
  const A = w.get('backbone.layers.0.mixer.A_log')!.data;
  assert.ok(Array.from(A).every((a) => a >= 0 && a <= Math.log(16) + 1e-6));
  assert.ok(new Set(A).size > 1);
});

test('init writes exactly the tensors (names and shapes) a model of its config has', () => {
  for (const shape of [
    { arch: 'mamba1' as const, numLayers: 3, hiddenSize: 48, stateSize: 16, vocabSize: 50 },
    { arch: 'mamba2' as const, numLayers: 2, hiddenSize: 64, stateSize: 32, headDim: 32, vocabSize: 50 },
  ]) {
    const c = freshConfig(shape);
    const w = initWeights(c, mim);
    const exp = expectedShapes(c);
    assert.deepEqual([...w.keys()].sort(), Object.keys(exp).sort());
    for (const [k, v] of w) {
      assert.deepEqual(v.shape, exp[k], k);
      assert.equal(v.data.length, v.shape.reduce((a, b) => a * b, 1), k);
    }
  }
});

test('init is deterministic by seed and refuses bad options and existing folders', async () => {
  const c = freshConfig({ arch: 'mamba1', numLayers: 2, hiddenSize: 32, stateSize: 8, vocabSize: 16 });
  const a = initWeights(c, { ...def, seed: 5 }), b = initWeights(c, { ...def, seed: 5 }), d = initWeights(c, { ...def, seed: 6 });
  for (const [k, v] of a) assert.deepEqual(v.data, b.get(k)!.data, k);
  assert.notDeepEqual(a.get('backbone.layers.0.mixer.in_proj.weight')!.data, d.get('backbone.layers.0.mixer.in_proj.weight')!.data);
  // Layers differ from each other.
  assert.notDeepEqual(a.get('backbone.layers.0.mixer.in_proj.weight')!.data, a.get('backbone.layers.1.mixer.in_proj.weight')!.data);
  assert.throws(() => parseMimeticParts('a,foo'), (e: unknown) => e instanceof UserError && /unknown part 'foo'/.test((e as Error).message));
  assert.throws(() => initWeights(c, { ...mim, aScale: 3 }), UserError);
  assert.throws(() => freshConfig({ arch: 'mamba2', numLayers: 1, hiddenSize: 32, stateSize: 8, headDim: 48, vocabSize: 16 }), /head-dim 48/);
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'x'), '1');
  await assert.rejects(writeFreshCheckpoint(dir, { arch: 'mamba1', numLayers: 1, hiddenSize: 16, stateSize: 4, vocabSize: 8 }, def), /already exists/);
});
