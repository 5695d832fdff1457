/**
 * Training on wasm: the UnsortedSegmentSum kernel (kernels/segment-wasm.ts) gives the embedding
 * its gradient there; losses follow the cpu backend (the reference) step for step, and a halted
 * run resumed on wasm reproduces the uninterrupted one exactly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.js';
import { segmentSum } from '../src/model/kernels/segment-wasm.js';
import { readMetrics } from '../src/train/metrics.js';
import { type TrainConfig, train, trainDefaults } from '../src/train/trainer.js';
import { tempDirs } from './helpers/tmpdir.js';

const tmp = tempDirs('mimetic-train-wasm-');

function tinyConfig(arch: 'mamba1' | 'mamba2', over: Partial<TrainConfig> = {}): TrainConfig {
  return trainDefaults({ task: 'copy', alphabet: 4, minLen: 2, maxLen: 6, context: 24, evalLengths: [3] }, {
    kind: 'fresh',
    shape: { arch, numLayers: 2, hiddenSize: 16, stateSize: 4, headDim: 8, vocabSize: 8 },
    init: { init: 'mimetic', parts: ['a', 'dt', 'bc', 'conv'], aScale: 8, bcNoise: 0, seed: 1 },
  }, { steps: 6, batch: 4, lr: 5e-3, warmup: 2, aScale: 8, evalEvery: 3, evalExamples: 4, checkpointEvery: 2, seed: 1, ...over });
}

test('segmentSum adds rows by segment id and drops ids outside the range', () => {
  const x = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]); // 4 rows of 2
  assert.deepEqual([...segmentSum(x, [2, 0, 2, -1], 3, 2)], [3, 4, 0, 0, 1 + 5, 2 + 6]);
  assert.deepEqual([...segmentSum(x, [5, 5, 5, 5], 2, 2)], [0, 0, 0, 0]);
});

/** d/d(emb) of Σ gather(emb, ids) · w, on the current backend. */
function embeddingGrad(emb: number[][], ids: number[][], w: number[][][]): number[][] {
  return tf.tidy(() => {
    const E = tf.tensor2d(emb);
    const f = (e: tf.Tensor) => tf.sum(tf.mul(tf.gather(e, tf.tensor2d(ids, undefined, 'int32')), tf.tensor3d(w)));
    return tf.grad(f)(E).arraySync() as number[][];
  });
}

test('on wasm the embedding gradient exists and equals the cpu backend\'s autodiff one', async () => {
  const emb = [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6], [0.7, 0.8, 0.9], [-1, 1.1, 1.2], [0, 0, 1]];
  const ids = [[0, 2, 2, 4], [1, 0, 3, 2]];
  const w = ids.map((r, i) => r.map((_, t) => [i + t, 0.5 - t, (i * 3 + t) / 7]));
  await initBackend('cpu');
  const ref = embeddingGrad(emb, ids, w);
  await initBackend('wasm');
  assert.ok(tf.getKernel('UnsortedSegmentSum', 'wasm'), 'kernel registered');
  const got = embeddingGrad(emb, ids, w);
  got.forEach((row, i) => row.forEach((g, j) => assert.ok(Math.abs(g - ref[i]![j]!) < 1e-6, `grad[${i}][${j}] ${g} vs ${ref[i]![j]}`)));
  // row 2 (gathered three times) sums its three upstream gradients
  assert.ok(Math.abs(got[2]![0]! - (1 + 2 + 4)) < 1e-6);
});

for (const arch of ['mamba1', 'mamba2'] as const) {
  test(`${arch}: training on wasm follows the cpu backend's losses, and resumes exactly`, async () => {
    const dir = tmp();
    const cfg = tinyConfig(arch);
    await initBackend('cpu');
    await train(cfg, { out: path.join(dir, 'cpu'), progress: null, noReport: true });
    await initBackend('wasm');
    await train(cfg, { out: path.join(dir, 'wasm'), progress: null, noReport: true });
    const c = readMetrics(path.join(dir, 'cpu', 'metrics.jsonl'));
    const w = readMetrics(path.join(dir, 'wasm', 'metrics.jsonl'));
    assert.equal(w.length, 6);
    c.forEach((m, i) => assert.ok(Math.abs(m.loss - w[i]!.loss) < 1e-4 * Math.max(1, m.loss), `step ${m.step}: cpu ${m.loss} vs wasm ${w[i]!.loss}`));
    assert.ok(w[5]!.loss < w[0]!.loss, `loss falls on wasm: ${w[0]!.loss} → ${w[5]!.loss}`);
    // halted after step 3 (last checkpoint: step 2), resumed on wasm: the same losses to the bit
    const part = path.join(dir, 'part');
    assert.equal((await train(cfg, { out: part, progress: null, noReport: true, haltAfterStep: 3 })).status, 'halted');
    assert.equal((await train(cfg, { out: part, resume: true, progress: null, noReport: true })).step, 6);
    const strip = (ms: typeof w) => ms.map(({ step, loss, lr, gradNorm, eval: e }) => ({ step, loss, lr, gradNorm, eval: e }));
    assert.deepEqual(strip(readMetrics(path.join(part, 'metrics.jsonl'))), strip(w));
  });
}
