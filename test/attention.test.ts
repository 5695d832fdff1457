/**
 * Implicit attention: the maps reproduce the goldens written by transformers, do not depend on
 * the channel blocking, are causal, and satisfy y_t = Σ_s α[t, s] x_s + D x_t against the scan
 * kernels on random inputs (Mamba-1, and Mamba-2 with several groups).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { SafetensorsReader } from '../src/checkpoint/safetensors.js';
import { runCheckpoint } from '../src/analysis/capture.js';
import { attentionSummaries, channelAttention, internalsToTf, type ScanInternals } from '../src/analysis/attention.js';
import { selectiveScanCpu, ssdScanCpu } from '../src/model/kernels/scan-cpu.js';
import { initBackend } from '../src/model/backend.js';
import { goldenIds } from './helpers/golden.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures');

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = d;
  }
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

for (const name of ['mamba1-tiny', 'mamba2-tiny']) {
  test(`${name}: attention, decay and qk from captured internals match the goldens for any channel block`, async () => {
    await initBackend('cpu', { quiet: true });
    const dir = path.join(FIXTURES, name);
    const ckpt = Checkpoint.open(dir);
    const g = SafetensorsReader.open(path.join(dir, 'golden.safetensors'));
    const kind = ckpt.config.arch === 'mamba2' ? 'mamba2' : 'mamba1';
    const channels = kind === 'mamba2' ? [0, 3, 7] : [0, 17, 63];
    const r = await runCheckpoint(ckpt, goldenIds(g), { capture: 'internals', channels });
    for (const cap of r.layers) {
      const int = internalsToTf(cap.internals!);
      const nCh = int.delta.shape[2]!;
      // The per-channel maps runCheckpoint returns are those of the captured internals.
      const sel = channelAttention(kind, int, channels);
      assert.deepEqual(cap.channelAttention!.shape, sel.shape);
      assert.ok(maxDiff(cap.channelAttention!.data, sel.dataSync()) === 0);
      sel.dispose();
      const variants = [[5, 'direct', 16], [nCh, 'direct', 16], [undefined, 'js', 16], [undefined, 'factored', 16], [undefined, 'factored', 5], [undefined, 'factored', 1], [undefined, 'factored', 100], [7, 'factored', 4]] as const;
      for (const [blk, impl, timeBlock] of variants) {
        const s = attentionSummaries(kind, int, { channelBlock: blk, impl, timeBlock });
        for (const k of ['attention', 'decay', 'qk'] as const) {
          const want = g.readFloat32(`layers.${cap.layer}.${k}`);
          assert.deepEqual(s[k].shape, want.shape);
          const tol = Math.max(1e-4, 1e-4 * maxAbs(want.data));
          const d = maxDiff(s[k].dataSync(), want.data);
          assert.ok(d <= tol, `layer ${cap.layer} ${k} (block ${blk}, ${impl}, time block ${timeBlock}): ${d} > ${tol}`);
        }
        tf.dispose([s.attention, s.decay, s.qk]);
      }
      // The per-channel maps average to the layer's attention.
      const all = channelAttention(kind, int, Array.from({ length: nCh }, (_, i) => i));
      const mean = tf.mean(all, 1);
      const want = g.readFloat32(`layers.${cap.layer}.attention`);
      assert.ok(maxDiff(mean.dataSync(), want.data) <= Math.max(1e-4, 1e-4 * maxAbs(want.data)));
      tf.dispose([all, mean, ...Object.values(int)]);
    }
    await assert.rejects(runCheckpoint(ckpt, goldenIds(g), { capture: 'attention', channels: [nChannels(ckpt)] }), /out of range/);
    ckpt.close();
    g.close();
  });
}

function nChannels(ckpt: Checkpoint): number {
  return ckpt.config.arch === 'mamba2' ? ckpt.config.numHeads! : ckpt.config.intermediateSize;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s >>> 8) / 2 ** 24;
  };
}

function uniform(r: () => number, shape: number[], lo: number, hi: number): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => lo + (hi - lo) * r()), shape);
}

test('Mamba-1: y_t = Σ_s α[t,s] x_s + D x_t reproduces the selective scan; maps are causal', async () => {
  await initBackend('cpu', { quiet: true });
  const r = rng(3);
  const [B, L, D, N] = [2, 13, 6, 5];
  const int: ScanInternals = {
    x: uniform(r, [B, L, D], -1, 1), delta: uniform(r, [B, L, D], 0.01, 1.5), A: uniform(r, [D, N], -3, -0.1),
    B: uniform(r, [B, L, N], -1, 1), C: uniform(r, [B, L, N], -1, 1), D: uniform(r, [D], -1, 1),
  };
  const y = selectiveScanCpu(int.x as tf.Tensor3D, int.delta as tf.Tensor3D, int.A as tf.Tensor2D, int.B as tf.Tensor3D, int.C as tf.Tensor3D, int.D as tf.Tensor1D);
  const alpha = channelAttention('mamba1', int, Array.from({ length: D }, (_, i) => i)); // [B, D, L, L]
  // Σ_s α[b, d, t, s] x[b, s, d]  (+ D x)
  const xs = tf.transpose(int.x, [0, 2, 1]).reshape([B, D, L, 1]);
  const mixed = tf.matMul(alpha.reshape([B * D, L, L]), xs.reshape([B * D, L, 1])).reshape([B, D, L]);
  const y2 = tf.add(tf.transpose(mixed, [0, 2, 1]), tf.mul(int.x, int.D));
  const d = maxDiff(y.dataSync(), y2.dataSync());
  assert.ok(d < 1e-5 * Math.max(1, maxAbs(y.dataSync())), `identity off by ${d}`);
  const a = alpha.arraySync() as number[][][][];
  for (const ab of a) for (const ad of ab) for (let t = 0; t < L; t++) for (let s = t + 1; s < L; s++) assert.ok(ad[t]![s] === 0, `alpha above the diagonal at (${t}, ${s})`);
  // The decay, directly from Σ_{k=s+1..t} Δ_k (no prefix sums) in float64.
  const s = attentionSummaries('mamba1', int, { channelBlock: 4, impl: 'direct' });
  const sj = attentionSummaries('mamba1', int, { impl: 'js' });
  const sf = attentionSummaries('mamba1', int, { timeBlock: 4 });
  for (const k of ['attention', 'decay', 'qk'] as const) {
    assert.ok(maxDiff(s[k].dataSync(), sj[k].dataSync()) < 1e-6, `js vs direct ${k}`);
    assert.ok(maxDiff(s[k].dataSync(), sf[k].dataSync()) < 1e-6, `factored vs direct ${k}`);
  }
  // Summaries are the channel means of the per-channel maps.
  const meanA = tf.mean(alpha, 1);
  assert.ok(maxDiff(sj.attention.dataSync(), meanA.dataSync()) < 1e-6);
  const dl = int.delta.arraySync() as number[][][];
  const A = int.A.arraySync() as number[][];
  for (const dec of [s.decay.arraySync() as number[][][], sj.decay.arraySync() as number[][][], sf.decay.arraySync() as number[][][]]) {
    for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) for (let u = 0; u < L; u++) {
      let want = 0;
      if (u <= t) {
        for (let c = 0; c < D; c++) {
          let sum = 0;
          for (let k = u + 1; k <= t; k++) sum += dl[b]![k]![c]!;
          for (let n = 0; n < N; n++) want += Math.exp(A[c]![n]! * sum);
        }
        want /= D * N;
      }
      assert.ok(Math.abs(dec[b]![t]![u]! - want) < 1e-5, `decay[${b},${t},${u}] = ${dec[b]![t]![u]} vs ${want}`);
    }
  }
  tf.dispose([y, alpha, xs, mixed, y2, meanA, s.attention, s.decay, s.qk, sj.attention, sj.decay, sj.qk, sf.attention, sf.decay, sf.qk, ...Object.values(int)]);
});

test('Mamba-2 with 3 groups: y_t = Σ_s α[t,s] x_s + D x_t per head reproduces the SSD scan', async () => {
  await initBackend('cpu', { quiet: true });
  const r = rng(5);
  const [B, L, H, P, G, N] = [2, 10, 6, 3, 3, 4];
  const int: ScanInternals = {
    x: uniform(r, [B, L, H, P], -1, 1), delta: uniform(r, [B, L, H], 0.01, 1.5), A: uniform(r, [H], -3, -0.1),
    B: uniform(r, [B, L, G, N], -1, 1), C: uniform(r, [B, L, G, N], -1, 1), D: uniform(r, [H], -1, 1),
  };
  const y = ssdScanCpu(int.x as tf.Tensor4D, int.delta as tf.Tensor3D, int.A as tf.Tensor1D, int.B as tf.Tensor4D, int.C as tf.Tensor4D, int.D as tf.Tensor1D);
  const alpha = channelAttention('mamba2', int, Array.from({ length: H }, (_, i) => i)); // [B, H, L, L]
  const xh = tf.transpose(int.x, [0, 2, 1, 3]); // [B, H, L, P]
  const mixed = tf.matMul(alpha.reshape([B * H, L, L]), xh.reshape([B * H, L, P])).reshape([B, H, L, P]);
  const y2 = tf.add(tf.transpose(mixed, [0, 2, 1, 3]), tf.mul(int.x, int.D.reshape([1, 1, H, 1])));
  const d = maxDiff(y.dataSync(), y2.dataSync());
  assert.ok(d < 1e-5 * Math.max(1, maxAbs(y.dataSync())), `identity off by ${d}`);
  // Summaries are the head means of the per-head maps, for any blocking.
  const mean = tf.mean(alpha, 1);
  for (const blk of [1, 4]) {
    const s = attentionSummaries('mamba2', int, { channelBlock: blk });
    assert.ok(maxDiff(s.attention.dataSync(), mean.dataSync()) < 1e-6);
    tf.dispose([s.attention, s.decay, s.qk]);
  }
  tf.dispose([y, alpha, xh, mixed, y2, mean, ...Object.values(int)]);
});

for (const backend of ['cpu', 'wasm'] as const) {
  test(`Mamba-2 with 3 groups on ${backend}: the JS-loop summaries equal the per-head maps' means and the tf-op form`, async () => {
    await initBackend(backend, { quiet: true });
    const r = rng(6);
    const [B, L, H, P, G, N] = [2, 11, 6, 3, 3, 4];
    const int: ScanInternals = {
      x: uniform(r, [B, L, H, P], -1, 1), delta: uniform(r, [B, L, H], 0.01, 1.5), A: uniform(r, [H], -3, -0.1),
      B: uniform(r, [B, L, G, N], -1, 1), C: uniform(r, [B, L, G, N], -1, 1), D: uniform(r, [H], -1, 1),
    };
    const alpha = channelAttention('mamba2', int, Array.from({ length: H }, (_, i) => i)); // [B, H, L, L]
    const mean = tf.mean(alpha, 1);
    const js = attentionSummaries('mamba2', int); // the JS loops on cpu and wasm
    const ops = attentionSummaries('mamba2', int, { channelBlock: 4 }); // the tf-op form
    assert.ok(maxDiff(js.attention.dataSync(), mean.dataSync()) < 1e-6);
    for (const k of ['attention', 'decay', 'qk'] as const) {
      const d = maxDiff(js[k].dataSync(), ops[k].dataSync());
      assert.ok(d < 1e-6 * Math.max(1, maxAbs(ops[k].dataSync())), `${k}: ${d}`);
    }
    // Above the diagonal every map is 0.
    const a = js.attention.dataSync();
    for (let t = 0; t < L; t++) for (let s = t + 1; s < L; s++) assert.equal(a[t * L + s], 0);
    tf.dispose([alpha, mean, js.attention, js.decay, js.qk, ops.attention, ops.decay, ops.qk, ...Object.values(int)]);
  });
}

test('channelAttention rejects channels out of range', async () => {
  await initBackend('cpu', { quiet: true });
  const int: ScanInternals = { x: tf.zeros([1, 3, 2]), delta: tf.ones([1, 3, 2]), A: tf.ones([2, 2]).neg(), B: tf.zeros([1, 3, 2]), C: tf.zeros([1, 3, 2]), D: tf.zeros([2]) };
  assert.throws(() => channelAttention('mamba1', int, [2]), /out of range/);
  tf.dispose(Object.values(int));
});
