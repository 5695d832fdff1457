/**
 * The compiled WebGPU training step (src/train/gpu) against tf.js autodiff and adamw.ts on the same
 * model and batch: the loss, every parameter's gradient, and the parameters and moments after AdamW
 * steps. Runs on whatever WebGPU adapter Dawn finds (lavapipe here and in CI).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.js';
import { freshConfig, initWeights, type ModelShape, type InitOptions } from '../src/model/init.js';
import { MambaLM } from '../src/model/lm.js';
import type { MambaConfig } from '../src/checkpoint/config.js';
import { adamwStep, createAdamWState, disposeAdamWState, type AdamWHParams } from '../src/train/adamw.js';
import { maskedLoss } from '../src/train/trainer.js';
import { CompiledStep } from '../src/train/gpu/step.js';
import type { ScanForm, ScanThreadLayout } from '../src/train/gpu/kernels.js';
import type { Batch } from '../src/tasks/common.js';
import { mulberry32 } from '../src/util/rng.js';
import { requiresWebGPU } from './helpers/requires.js';

/** Without an adapter these tests skip with what to install (fail under MIMETIC_TEST_STRICT=1). */
const GPU = await requiresWebGPU();

// The backend starts in a hook, not at load: a machine without an adapter must not crash the file.
before(async () => {
  if (!GPU.skip) await initBackend('webgpu');
});

interface Case {
  name: string;
  shape: ModelShape;
  groups?: number;
  init: InitOptions;
  aScale?: number;
  untied?: boolean;
  /** Scan chunk (steps per checkpoint) and batch shape, when not the defaults (16; 3×12). */
  scanChunk?: number;
  microBatches?: number;
  /** A matmul tile for every product (step.ts picks by shape otherwise: the smallest on these sizes). */
  matmulTile?: string;
  /** The scan's thread layout (default lane-fastest). */
  scanLayout?: ScanThreadLayout;
  /** The Mamba-2 scan's form (default recurrent) and the SSD chunk (default 64). */
  scanForm?: ScanForm;
  ssdChunk?: number;
  B?: number;
  L?: number;
}

const mimetic: InitOptions = { init: 'mimetic', parts: ['a', 'dt', 'bc', 'conv'], aScale: 8, bcNoise: 0.1, seed: 3 };
const plain: InitOptions = { init: 'default', parts: [], aScale: 8, bcNoise: 0, seed: 5 };

const CASES: Case[] = [
  { name: 'mamba1 default', shape: { arch: 'mamba1', numLayers: 2, hiddenSize: 32, stateSize: 8, vocabSize: 19 }, init: plain },
  { name: 'mamba1 mimetic, A_log_param, untied head', shape: { arch: 'mamba1', numLayers: 2, hiddenSize: 24, stateSize: 4, vocabSize: 11, convKernel: 3 }, init: mimetic, aScale: 8, untied: true },
  { name: 'mamba2 default', shape: { arch: 'mamba2', numLayers: 2, hiddenSize: 32, stateSize: 8, headDim: 16, vocabSize: 19 }, init: plain },
  // State 32: two threads per scan lane (the split used for large states).
  { name: 'mamba1 state 32 (2 threads per scan lane)', shape: { arch: 'mamba1', numLayers: 1, hiddenSize: 32, stateSize: 32, vocabSize: 9 }, init: mimetic, aScale: 8 },
  { name: 'mamba2 state 32 (2 threads per scan lane)', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 32, stateSize: 32, headDim: 16, vocabSize: 9 }, init: plain },
  { name: 'mamba2 mimetic, 2 groups, A_log_param', shape: { arch: 'mamba2', numLayers: 2, hiddenSize: 32, stateSize: 8, headDim: 8, vocabSize: 13 }, groups: 2, init: mimetic, aScale: 8 },
  // The chunked scan backward: several chunks with L not a multiple of C, one chunk, d_state 256 and 512.
  { name: 'mamba1 state 16, 3 scan chunks of 5 over L 12', shape: { arch: 'mamba1', numLayers: 2, hiddenSize: 16, stateSize: 16, vocabSize: 11 }, init: mimetic, aScale: 8, scanChunk: 5 },
  { name: 'mamba2 2 groups, 3 scan chunks of 4 over L 12', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 32, stateSize: 16, headDim: 8, vocabSize: 13 }, groups: 2, init: plain, scanChunk: 4 },
  { name: 'mamba2 state 256, 3 scan chunks of 3 over L 7', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 16, stateSize: 256, headDim: 8, vocabSize: 9 }, init: mimetic, aScale: 8, scanChunk: 3, B: 2, L: 7 },
  { name: 'mamba2 state 512, one scan chunk', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 16, stateSize: 512, headDim: 8, vocabSize: 9 }, init: plain, B: 2, L: 6 },
  { name: 'mamba2 state 512, 2 scan chunks of 4 over L 6', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 16, stateSize: 512, headDim: 8, vocabSize: 9 }, init: mimetic, aScale: 8, scanChunk: 4, B: 2, L: 6 },
  { name: 'mamba1 state 256, 2 scan chunks of 4 over L 7', shape: { arch: 'mamba1', numLayers: 1, hiddenSize: 8, stateSize: 256, vocabSize: 9 }, init: mimetic, aScale: 8, scanChunk: 4, B: 2, L: 7 },
  // Micro-batches: 3 rows in 2 micro-batches of 2 (one padded row), gradients summed; untied and tied heads.
  { name: 'mamba1 untied head, 2 micro-batches (one padded row)', shape: { arch: 'mamba1', numLayers: 2, hiddenSize: 16, stateSize: 8, vocabSize: 11, convKernel: 3 }, init: mimetic, aScale: 8, untied: true, microBatches: 2 },
  { name: 'mamba2 2 groups, 3 micro-batches, 2 scan chunks', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 32, stateSize: 16, headDim: 8, vocabSize: 13 }, groups: 2, init: plain, microBatches: 3, scanChunk: 7 },
  // The larger matmul tiles (register tiles of 8×8 and 8×4) on every product of the step.
  { name: 'mamba2 default, 128x128 matmul tiles', shape: { arch: 'mamba2', numLayers: 2, hiddenSize: 32, stateSize: 8, headDim: 16, vocabSize: 19 }, init: plain, matmulTile: '128x128' },
  { name: 'mamba1 untied head, 128x64 matmul tiles, 2 micro-batches', shape: { arch: 'mamba1', numLayers: 1, hiddenSize: 24, stateSize: 4, vocabSize: 11, convKernel: 3 }, init: mimetic, aScale: 8, untied: true, microBatches: 2, matmulTile: '128x64' },
  { name: 'mamba1 state 512, one scan chunk', shape: { arch: 'mamba1', numLayers: 1, hiddenSize: 8, stateSize: 512, vocabSize: 9 }, init: plain, B: 2, L: 5 },
  // The state-fastest scan threads (a lane's state slices on consecutive threads; lane-fastest is the default).
  { name: 'mamba1 state 256, state-fastest scan threads, 2 scan chunks of 4 over L 7', shape: { arch: 'mamba1', numLayers: 1, hiddenSize: 8, stateSize: 256, vocabSize: 9 }, init: mimetic, aScale: 8, scanChunk: 4, B: 2, L: 7, scanLayout: 'state-fastest' },
  { name: 'mamba2 state 512, 2 groups, state-fastest scan threads, 2 scan chunks of 4 over L 6', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 16, stateSize: 512, headDim: 8, vocabSize: 9 }, groups: 2, init: mimetic, aScale: 8, scanChunk: 4, B: 2, L: 6, scanLayout: 'state-fastest' },
  // The chunked SSD form of the Mamba-2 scan (ssd.ts): d_state 16 / 64 / 512, one chunk and several with L not a multiple of the chunk, 1 and 2 groups, both A parameterisations.
  { name: 'ssd, mamba2 default (one chunk of 12)', shape: { arch: 'mamba2', numLayers: 2, hiddenSize: 32, stateSize: 8, headDim: 16, vocabSize: 19 }, init: plain, scanForm: 'ssd' },
  { name: 'ssd, mamba2 state 16, 2 groups, A_log_param, 3 chunks of 5 over L 12', shape: { arch: 'mamba2', numLayers: 2, hiddenSize: 32, stateSize: 16, headDim: 8, vocabSize: 13 }, groups: 2, init: mimetic, aScale: 8, scanForm: 'ssd', ssdChunk: 5 },
  { name: 'ssd, mamba2 state 64, 4 chunks of 3 over L 12 (decay 1 step in 3)', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 32, stateSize: 64, headDim: 8, vocabSize: 13 }, init: plain, scanForm: 'ssd', ssdChunk: 3 },
  { name: 'ssd, mamba2 state 64, 2 groups, A_log_param, 2 chunks of 7 over L 12', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 32, stateSize: 64, headDim: 16, vocabSize: 13 }, groups: 2, init: mimetic, aScale: 8, scanForm: 'ssd', ssdChunk: 7 },
  { name: 'ssd, mamba2 state 512, one chunk', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 16, stateSize: 512, headDim: 8, vocabSize: 9 }, init: plain, B: 2, L: 6, scanForm: 'ssd' },
  { name: 'ssd, mamba2 state 512, 2 groups, A_log_param, 2 chunks of 4 over L 6', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 16, stateSize: 512, headDim: 8, vocabSize: 9 }, groups: 2, init: mimetic, aScale: 8, B: 2, L: 6, scanForm: 'ssd', ssdChunk: 4 },
  { name: 'ssd, mamba2 2 groups, 3 micro-batches, 2 chunks of 7', shape: { arch: 'mamba2', numLayers: 1, hiddenSize: 32, stateSize: 16, headDim: 8, vocabSize: 13 }, groups: 2, init: plain, microBatches: 3, scanForm: 'ssd', ssdChunk: 7 },
];

function randomBatch(seed: number, batch: number, length: number, vocab: number): Batch {
  const rnd = mulberry32(seed);
  const n = batch * length;
  const ids = new Int32Array(n), targets = new Int32Array(n), mask = new Float32Array(n);
  // Few distinct tokens in some rows so several rows share an embedding row.
  for (let i = 0; i < n; i++) {
    ids[i] = Math.floor(rnd() * (i % 3 === 0 ? 3 : vocab));
    targets[i] = Math.floor(rnd() * vocab);
    mask[i] = rnd() < 0.6 ? 1 : 0;
  }
  return { batch, length, ids, targets, mask };
}

function makeModel(c: Case): MambaLM {
  let config: MambaConfig = freshConfig(c.shape);
  if (c.groups) config = { ...config, nGroups: c.groups };
  if (c.untied) config = { ...config, tiedEmbeddings: false };
  const w = initWeights(config, c.init);
  const weights = Object.fromEntries(w);
  if (c.untied) {
    const rnd = mulberry32(9);
    const emb = weights['backbone.embeddings.weight']!;
    weights['lm_head.weight'] = { shape: emb.shape.slice(), data: emb.data.map(() => rnd() - 0.5) };
  }
  // Perturb D, the conv bias and the norms so no gradient is trivially symmetric.
  const rnd = mulberry32(11);
  for (const [k, t] of Object.entries(weights)) {
    if (/(mixer\.D|conv1d\.bias|norm\.weight|norm_f\.weight)$/.test(k)) weights[k] = { shape: t.shape, data: t.data.map((v) => v + 0.2 * (rnd() - 0.5)) };
  }
  return MambaLM.fromWeights(config, weights, { aParam: c.aScale ? { c: c.aScale } : undefined });
}

function sortedParams(m: MambaLM): Map<string, tf.Variable> {
  return new Map([...m.variables].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function relErr(got: Float32Array, want: Float32Array): number {
  assert.equal(got.length, want.length);
  let scale = 1e-8, err = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  for (let i = 0; i < want.length; i++) {
    assert.ok(Number.isFinite(got[i]!), `non-finite at ${i}`);
    err = Math.max(err, Math.abs(got[i]! - want[i]!));
  }
  return err / scale;
}

for (const c of CASES) {
  test(`compiled step, ${c.name}: loss and every gradient match tf.js autodiff`, GPU, async () => {
    const model = makeModel(c);
    const params = sortedParams(model);
    const B = c.B ?? 3, L = c.L ?? 12;
    const batch = randomBatch(7, B, L, c.shape.vocabSize);
    const ids = tf.tensor2d(batch.ids, [B, L], 'int32'), tg = tf.tensor1d(batch.targets, 'int32'), mk = tf.tensor1d(batch.mask);
    const { value, grads } = tf.variableGrads(() => maskedLoss(model.logits(ids), tg, mk), [...params.values()]);
    const wantLoss = (await value.data())[0]!;
    const step = new CompiledStep(model, params, B, L, undefined, { scanChunk: c.scanChunk, microBatches: c.microBatches, matmulTile: c.matmulTile, scanLayout: c.scanLayout, scanForm: c.scanForm, ssdChunk: c.ssdChunk });
    try {
      step.push();
      step.setBatch(batch, 5);
      step.forwardBackward();
      const { loss } = await step.history(5, 1);
      assert.ok(Math.abs(loss[0]! - wantLoss) <= 1e-5 * Math.max(1, Math.abs(wantLoss)), `loss ${loss[0]} vs ${wantLoss}`);
      const byName = new Map([...params].map(([k, v]) => [v.name, k]));
      assert.equal(Object.keys(grads).length, params.size);
      for (const [vn, g] of Object.entries(grads)) {
        const k = byName.get(vn)!;
        const want = (await g.data()) as Float32Array;
        const got = await step.gradient(k);
        const e = relErr(got, want);
        assert.ok(e < 2e-4, `${k}: relative error ${e.toExponential(2)}`);
      }
    } finally {
      step.dispose();
      tf.dispose([value, ...Object.values(grads), ids, tg, mk]);
      model.dispose();
    }
  });
}

test('compiled step: over the storage binding it splits the batch itself (same gradients), or names what to change', GPU, async () => {
  const c = CASES[0]!;
  const model = makeModel(c);
  const params = sortedParams(model);
  const B = 4, L = 12;
  const batch = randomBatch(17, B, L, c.shape.vocabSize);
  const whole = new CompiledStep(model, params, B, L);
  // A binding just under what one batch needs: the step must choose 2 micro-batches or more.
  const cap = Math.floor(whole.engine.sizes.X * 4 * 0.9);
  const split = new CompiledStep(model, params, B, L, undefined, { bindingBytes: cap });
  try {
    assert.equal(whole.k, 1);
    assert.ok(split.k >= 2, `split into ${split.k}`);
    for (const s of [whole, split]) { s.push(); s.setBatch(batch, 0); s.forwardBackward(); }
    const [a, b] = [await whole.history(0, 1), await split.history(0, 1)];
    assert.ok(Math.abs(a.loss[0]! - b.loss[0]!) <= 1e-6 * Math.abs(a.loss[0]!), `loss ${b.loss[0]} vs ${a.loss[0]}`);
    for (const k of params.keys()) {
      const e = relErr(await split.gradient(k), await whole.gradient(k));
      assert.ok(e < 1e-5, `${k}: relative error ${e.toExponential(2)}`);
    }
    assert.throws(() => new CompiledStep(model, params, B, L, undefined, { bindingBytes: 4096 }), (e: Error) => e.name === 'UserError' && /storage binding even in micro-batches of 1 sequence/.test(e.message) && !e.message.includes('\n'));
  } finally {
    whole.dispose();
    split.dispose();
    model.dispose();
  }
});

test('compiled step: three AdamW steps (clipping, decay) match adamw.ts on autodiff gradients', GPU, async () => {
  const c = CASES[0]!;
  const hp: AdamWHParams = { lr: 3e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, clipNorm: 0.5 };
  const ref = makeModel(c), fast = makeModel(c);
  const pRef = sortedParams(ref), pFast = sortedParams(fast);
  const sRef = createAdamWState(pRef), sFast = createAdamWState(pFast);
  const B = 2, L = 10;
  const step = new CompiledStep(fast, pFast, B, L);
  try {
    step.setDecay(sFast);
    step.push(sFast);
    const norms: number[] = [];
    for (let s = 1; s <= 3; s++) {
      const batch = randomBatch(100 + s, B, L, c.shape.vocabSize);
      const ids = tf.tensor2d(batch.ids, [B, L], 'int32'), tg = tf.tensor1d(batch.targets, 'int32'), mk = tf.tensor1d(batch.mask);
      const { value, grads } = tf.variableGrads(() => maskedLoss(ref.logits(ids), tg, mk), [...pRef.values()]);
      const byKey = new Map<string, tf.Tensor>();
      for (const [k, v] of pRef) byKey.set(k, grads[v.name]!);
      const n = adamwStep(pRef, byKey, sRef, hp);
      norms.push((await n.data())[0]!);
      tf.dispose([value, n, ...Object.values(grads), ids, tg, mk]);
      step.setBatch(batch, s);
      step.step(hp, s);
    }
    const { gradNorm } = await step.history(1, 3);
    gradNorm.forEach((g, i) => assert.ok(Math.abs(g - norms[i]!) <= 1e-4 * norms[i]!, `step ${i + 1}: ‖g‖ ${g} vs ${norms[i]}`));
    assert.ok(norms[0]! > hp.clipNorm, 'the test must exercise clipping');
    step.pull(sFast);
    for (const [k, v] of pRef) {
      for (const [a, b, what] of [[pFast.get(k)!, v, 'param'], [sFast.m.get(k)!, sRef.m.get(k)!, 'm'], [sFast.v.get(k)!, sRef.v.get(k)!, 'v']] as const) {
        const e = relErr((await a.data()) as Float32Array, (await b.data()) as Float32Array);
        assert.ok(e < 5e-4, `${what} of ${k}: relative error ${e.toExponential(2)}`);
      }
    }
  } finally {
    step.dispose();
    disposeAdamWState(sRef);
    disposeAdamWState(sFast);
    ref.dispose();
    fast.dispose();
  }
});

test('trainer on webgpu: the compiled step (MQAR, mixed lengths) follows the tf.js path step for step and resumes exactly', GPU, async () => {
  const { train, trainDefaults } = await import('../src/train/trainer.js');
  const { readMetrics } = await import('../src/train/metrics.js');
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-cstep-'));
  try {
    const cfg = trainDefaults({ task: 'mqar', vocab: 16, contexts: [8, 16], kvPairs: [1, 2], powerA: 0.01, evalLengths: [32], randomNonQueries: true }, {
      kind: 'fresh', shape: { arch: 'mamba2', numLayers: 2, hiddenSize: 16, stateSize: 4, headDim: 8, vocabSize: 16 },
      init: { init: 'mimetic', parts: ['a', 'dt', 'bc', 'conv'], aScale: 8, bcNoise: 0, seed: 1 },
    }, { steps: 12, batch: 3, lr: 5e-3, warmup: 2, aScale: 8, evalEvery: 6, evalExamples: 4, checkpointEvery: 3, seed: 2 });
    const run = async (name: string, compiled: boolean, halt?: number, resume = false) =>
      train({ ...cfg, gpuStep: { compiledStep: compiled ? 1 : 0 } }, { out: path.join(dir, name), progress: null, noReport: true, haltAfterStep: halt, resume });
    await run('ref', false);
    await run('fast', true);
    await run('resumed', true, 7);
    await run('resumed', true, undefined, true);
    const ref = readMetrics(path.join(dir, 'ref', 'metrics.jsonl'));
    const fast = readMetrics(path.join(dir, 'fast', 'metrics.jsonl'));
    const resumed = readMetrics(path.join(dir, 'resumed', 'metrics.jsonl'));
    assert.equal(fast.length, 12);
    fast.forEach((m, i) => {
      const r = ref[i]!;
      assert.equal(m.step, r.step);
      assert.ok(Math.abs(m.loss - r.loss) <= 1e-4 * Math.abs(r.loss), `step ${m.step}: loss ${m.loss} vs ${r.loss}`);
      assert.ok(Math.abs(m.gradNorm - r.gradNorm) <= 1e-3 * r.gradNorm, `step ${m.step}: ‖g‖ ${m.gradNorm} vs ${r.gradNorm}`);
    });
    assert.deepEqual(resumed.map((m) => [m.step, m.loss, m.gradNorm]), fast.map((m) => [m.step, m.loss, m.gradNorm]));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("compiled step: scan form 'ssd' follows 'recurrent' over four AdamW steps (losses, gradient norms, parameters), at d_state 64 over 3 chunks and 2 groups", GPU, async () => {
  const c: Case = { name: 'ssd vs recurrent', shape: { arch: 'mamba2', numLayers: 2, hiddenSize: 32, stateSize: 64, headDim: 8, vocabSize: 13 }, groups: 2, init: mimetic, aScale: 8 };
  const hp: AdamWHParams = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, clipNorm: 1 };
  const B = 3, L = 14;
  const models = [makeModel(c), makeModel(c)];
  const params = models.map(sortedParams);
  const states = params.map((p) => createAdamWState(p));
  const steps = [
    new CompiledStep(models[0]!, params[0]!, B, L, undefined, { scanForm: 'recurrent' }),
    new CompiledStep(models[1]!, params[1]!, B, L, undefined, { scanForm: 'ssd', ssdChunk: 5 }),
  ];
  try {
    steps.forEach((s, i) => { s.setDecay(states[i]!); s.push(states[i]!); });
    // The scan's output y of every layer, before any update: the same to float rounding.
    const first = randomBatch(199, B, L, c.shape.vocabSize);
    for (const s of steps) { s.setBatch(first, 0); s.forwardBackward(); }
    for (let l = 0; l < c.shape.numLayers; l++) {
      const n = B * L * 2 * c.shape.hiddenSize;
      const e = relErr(await steps[1]!.region(`Y${l}`, n), await steps[0]!.region(`Y${l}`, n));
      assert.ok(e < 2e-6, `layer ${l}: scan output y, relative error ${e.toExponential(2)}`);
    }
    for (let t = 1; t <= 4; t++) {
      const batch = randomBatch(200 + t, B, L, c.shape.vocabSize);
      for (const s of steps) { s.setBatch(batch, t); s.step(hp, t); }
    }
    const [rec, ssd] = [await steps[0]!.history(1, 4), await steps[1]!.history(1, 4)];
    rec.loss.forEach((l, i) => assert.ok(Math.abs(ssd.loss[i]! - l) <= 1e-5 * Math.abs(l), `step ${i + 1}: loss ${ssd.loss[i]} (ssd) vs ${l}`));
    rec.gradNorm.forEach((g, i) => assert.ok(Math.abs(ssd.gradNorm[i]! - g) <= 1e-4 * g, `step ${i + 1}: ‖g‖ ${ssd.gradNorm[i]} (ssd) vs ${g}`));
    for (const k of params[0]!.keys()) {
      const e = relErr(await steps[1]!.gradient(k), await steps[0]!.gradient(k));
      assert.ok(e < 2e-4, `last gradient of ${k}: relative error ${e.toExponential(2)}`);
    }
    steps.forEach((s, i) => s.pull(states[i]!));
    for (const [k, v] of params[0]!) {
      const e = relErr((await params[1]!.get(k)!.data()) as Float32Array, (await v.data()) as Float32Array);
      assert.ok(e < 5e-4, `${k} after 4 steps: relative error ${e.toExponential(2)}`);
    }
  } finally {
    steps.forEach((s) => s.dispose());
    states.forEach(disposeAdamWState);
    models.forEach((m) => m.dispose());
  }
});

test("compiled step: scan form 'ssd' on Mamba-1, an unknown form or an SSD chunk out of range is one user-error line", GPU, async () => {
  const m1 = makeModel(CASES[0]!), m2 = makeModel(CASES[2]!);
  try {
    const oneLine = (re: RegExp) => (e: Error) => e.name === 'UserError' && re.test(e.message) && !e.message.includes('\n');
    assert.throws(() => new CompiledStep(m1, sortedParams(m1), 2, 8, undefined, { scanForm: 'ssd' }), oneLine(/scan form ssd needs Mamba-2/));
    assert.throws(() => new CompiledStep(m2, sortedParams(m2), 2, 8, undefined, { scanForm: 'diagonal' as ScanForm }), oneLine(/scan form diagonal is not one of recurrent, ssd/));
    assert.throws(() => new CompiledStep(m2, sortedParams(m2), 2, 300, undefined, { scanForm: 'ssd', ssdChunk: 257 }), oneLine(/ssd chunk 257 must be a whole number of steps from 1 to 256/));
  } finally {
    m1.dispose();
    m2.dispose();
  }
});
