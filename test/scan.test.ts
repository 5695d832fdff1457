/**
 * The CPU selective-scan kernels against the tf-ops reference (forward and autodiff gradients),
 * and their gradients against central finite differences of a float64 JS evaluation of the loss.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectiveScanCpu, ssdScanCpu } from '../src/model/kernels/scan-cpu.js';
import { selectiveScanRef, ssdScanRef } from './helpers/scan-ref.js';
import { scanKernelsFor, selectiveScan, ssdScan } from '../src/model/kernels/scan.js';
import { initBackend } from '../src/model/backend.js';

/** Deterministic uniform numbers in [lo, hi). */
function rng(seed: number): (lo: number, hi: number) => number {
  let s = seed >>> 0;
  return (lo, hi) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return lo + ((s >>> 8) / 2 ** 24) * (hi - lo);
  };
}

function rand(r: (lo: number, hi: number) => number, n: number, lo: number, hi: number): Float64Array {
  return Float64Array.from({ length: n }, () => r(lo, hi));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

interface M1 { Bsz: number; L: number; D: number; N: number; u: Float64Array; delta: Float64Array; A: Float64Array; B: Float64Array; C: Float64Array; Dk: Float64Array }
interface M2 { Bsz: number; L: number; H: number; P: number; G: number; N: number; x: Float64Array; delta: Float64Array; A: Float64Array; B: Float64Array; C: Float64Array; Dk: Float64Array }

function m1Inputs(seed: number, Bsz: number, L: number, D: number, N: number): M1 {
  const r = rng(seed);
  return { Bsz, L, D, N, u: rand(r, Bsz * L * D, -1, 1), delta: rand(r, Bsz * L * D, 0.05, 0.8), A: rand(r, D * N, -2, -0.2), B: rand(r, Bsz * L * N, -1, 1), C: rand(r, Bsz * L * N, -1, 1), Dk: rand(r, D, -1, 1) };
}

function m2Inputs(seed: number, Bsz: number, L: number, H: number, P: number, G: number, N: number): M2 {
  const r = rng(seed);
  return { Bsz, L, H, P, G, N, x: rand(r, Bsz * L * H * P, -1, 1), delta: rand(r, Bsz * L * H, 0.05, 0.8), A: rand(r, H, -2, -0.2), B: rand(r, Bsz * L * G * N, -1, 1), C: rand(r, Bsz * L * G * N, -1, 1), Dk: rand(r, H, -1, 1) };
}

/** Float64 Mamba-1 scan, written straight from the recurrence in scan.ts. */
function m1Scan64(m: M1): Float64Array {
  const { Bsz, L, D, N } = m;
  const y = new Float64Array(Bsz * L * D);
  for (let b = 0; b < Bsz; b++) for (let d = 0; d < D; d++) {
    const h = new Float64Array(N);
    for (let t = 0; t < L; t++) {
      const i = (b * L + t) * D + d;
      let acc = 0;
      for (let n = 0; n < N; n++) {
        h[n] = Math.exp(m.delta[i]! * m.A[d * N + n]!) * h[n]! + m.delta[i]! * m.B[(b * L + t) * N + n]! * m.u[i]!;
        acc += m.C[(b * L + t) * N + n]! * h[n]!;
      }
      y[i] = acc + m.Dk[d]! * m.u[i]!;
    }
  }
  return y;
}

function m2Scan64(m: M2): Float64Array {
  const { Bsz, L, H, P, G, N } = m;
  const y = new Float64Array(Bsz * L * H * P);
  for (let b = 0; b < Bsz; b++) for (let hh = 0; hh < H; hh++) for (let p = 0; p < P; p++) {
    const g = Math.floor(hh / (H / G));
    const h = new Float64Array(N);
    for (let t = 0; t < L; t++) {
      const xi = ((b * L + t) * H + hh) * P + p;
      const dt = m.delta[(b * L + t) * H + hh]!;
      const dA = Math.exp(dt * m.A[hh]!);
      let acc = 0;
      for (let n = 0; n < N; n++) {
        const bi = ((b * L + t) * G + g) * N + n;
        h[n] = dA * h[n]! + dt * m.B[bi]! * m.x[xi]!;
        acc += m.C[bi]! * h[n]!;
      }
      y[xi] = acc + m.Dk[hh]! * m.x[xi]!;
    }
  }
  return y;
}

const f32 = (a: Float64Array) => Float32Array.from(a);

function m1Tensors(m: M1) {
  return [tf.tensor3d(f32(m.u), [m.Bsz, m.L, m.D]), tf.tensor3d(f32(m.delta), [m.Bsz, m.L, m.D]), tf.tensor2d(f32(m.A), [m.D, m.N]),
    tf.tensor3d(f32(m.B), [m.Bsz, m.L, m.N]), tf.tensor3d(f32(m.C), [m.Bsz, m.L, m.N]), tf.tensor1d(f32(m.Dk))] as const;
}

function m2Tensors(m: M2) {
  return [tf.tensor4d(f32(m.x), [m.Bsz, m.L, m.H, m.P]), tf.tensor3d(f32(m.delta), [m.Bsz, m.L, m.H]), tf.tensor1d(f32(m.A)),
    tf.tensor4d(f32(m.B), [m.Bsz, m.L, m.G, m.N]), tf.tensor4d(f32(m.C), [m.Bsz, m.L, m.G, m.N]), tf.tensor1d(f32(m.Dk))] as const;
}

for (const backend of ['cpu', 'wasm'] as const) {
  test(`selectiveScan (Mamba-1) matches the reference and float64 on ${backend}`, async () => {
    await initBackend(backend, { quiet: true });
    for (const [seed, Bsz, L, D, N] of [[1, 2, 7, 5, 3], [2, 1, 33, 4, 16], [3, 3, 1, 2, 1]] as const) {
      const m = m1Inputs(seed, Bsz, L, D, N);
      const ins = m1Tensors(m);
      const y = selectiveScanCpu(...ins);
      const yr = selectiveScanRef(...ins);
      const yd = selectiveScan(...ins); // the dispatcher
      const y64 = m1Scan64(m);
      const tol = 1e-5 * Math.max(1, maxAbs(y64));
      assert.deepEqual(y.shape, [Bsz, L, D]);
      assert.ok(maxAbsDiff(y.dataSync(), y64) < tol, `kernel vs float64: ${maxAbsDiff(y.dataSync(), y64)}`);
      assert.ok(maxAbsDiff(yr.dataSync(), y64) < tol, `reference vs float64: ${maxAbsDiff(yr.dataSync(), y64)}`);
      assert.deepEqual(Array.from(yd.dataSync()), Array.from(y.dataSync()));
      tf.dispose([...ins, y, yr, yd]);
    }
  });

  test(`ssdScan (Mamba-2) matches the reference and float64 on ${backend}, with 1 and several groups`, async () => {
    await initBackend(backend, { quiet: true });
    // L = 150: two chunks of the matrix form (128 + 22 steps, state carried across) on wasm.
    for (const [seed, Bsz, L, H, P, G, N] of [[4, 2, 9, 4, 3, 1, 5], [5, 1, 17, 6, 2, 3, 8], [6, 2, 5, 4, 4, 4, 2], [7, 2, 150, 4, 3, 2, 6]] as const) {
      const m = m2Inputs(seed, Bsz, L, H, P, G, N);
      const ins = m2Tensors(m);
      const y = ssdScanCpu(...ins);
      const yr = ssdScanRef(...ins);
      const yd = ssdScan(...ins);
      const y64 = m2Scan64(m);
      const tol = 1e-5 * Math.max(1, maxAbs(y64));
      assert.deepEqual(y.shape, [Bsz, L, H, P]);
      assert.ok(maxAbsDiff(y.dataSync(), y64) < tol, `kernel vs float64: ${maxAbsDiff(y.dataSync(), y64)}`);
      assert.ok(maxAbsDiff(yr.dataSync(), y64) < tol, `reference vs float64: ${maxAbsDiff(yr.dataSync(), y64)}`);
      assert.deepEqual(Array.from(yd.dataSync()), Array.from(y.dataSync()));
      tf.dispose([...ins, y, yr, yd]);
    }
  });
}

test('unknown backends fall back to the CPU kernels', () => {
  assert.equal(scanKernelsFor('no-such-backend').selectiveScan, selectiveScanCpu);
  assert.equal(scanKernelsFor('wasm').ssdScan, ssdScanCpu);
});

/** Gradient of Σ y·W for each input: kernel (customGrad) vs reference autodiff vs float64 central differences. */
function checkGrads(
  kernel: (...ins: tf.Tensor[]) => tf.Tensor,
  ref: (...ins: tf.Tensor[]) => tf.Tensor,
  inputs: Float64Array[],
  toTensors: () => readonly tf.Tensor[],
  loss64: (inputs: Float64Array[]) => number,
  names: string[],
): void {
  const ins = toTensors();
  const W = tf.randomUniform(kernel(...ins).shape, -1, 1, 'float32', 7);
  const Wd = Float64Array.from(W.dataSync());
  const gK = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(kernel(...xs), W)))([...ins]);
  const gR = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(ref(...xs), W)))([...ins]);
  const loss = (xs: Float64Array[]) => loss64([...xs, Wd]);
  inputs.forEach((arr, k) => {
    const gk = gK[k]!.dataSync();
    const gr = gR[k]!.dataSync();
    const fd = new Float64Array(arr.length);
    for (let i = 0; i < arr.length; i++) {
      const e = 1e-6;
      const orig = arr[i]!;
      arr[i] = orig + e;
      const lp = loss(inputs);
      arr[i] = orig - e;
      const lm = loss(inputs);
      arr[i] = orig;
      fd[i] = (lp - lm) / (2 * e);
    }
    const scale = Math.max(1, maxAbs(fd));
    assert.ok(maxAbsDiff(gk, fd) < 2e-4 * scale, `${names[k]}: kernel grad vs finite differences ${maxAbsDiff(gk, fd)} (scale ${scale})`);
    assert.ok(maxAbsDiff(gr, fd) < 2e-4 * scale, `${names[k]}: reference grad vs finite differences ${maxAbsDiff(gr, fd)}`);
    assert.ok(maxAbs(fd) > 1e-3, `${names[k]}: gradient should not vanish`);
  });
  tf.dispose([...ins, W, ...gK, ...gR]);
}

test('selectiveScan gradients for u, delta, A, B, C, D match finite differences', async () => {
  await initBackend('cpu', { quiet: true });
  for (const [seed, Bsz, L, D, N] of [[11, 2, 6, 3, 4], [12, 1, 9, 2, 2]] as const) {
    const m = m1Inputs(seed, Bsz, L, D, N);
    const inputs = [m.u, m.delta, m.A, m.B, m.C, m.Dk];
    checkGrads(
      (...xs) => selectiveScanCpu(...(xs as Parameters<typeof selectiveScanCpu>)),
      (...xs) => selectiveScanRef(...(xs as Parameters<typeof selectiveScanRef>)),
      inputs,
      () => m1Tensors(m),
      ([u, delta, A, B, C, Dk, W]) => {
        const y = m1Scan64({ Bsz, L, D, N, u: u!, delta: delta!, A: A!, B: B!, C: C!, Dk: Dk! });
        let s = 0;
        for (let i = 0; i < y.length; i++) s += y[i]! * W![i]!;
        return s;
      },
      ['u', 'delta', 'A', 'B', 'C', 'D'],
    );
  }
});

test('ssdScan gradients for x, delta, A, B, C, D match finite differences (1 and 2 groups)', async () => {
  await initBackend('cpu', { quiet: true });
  for (const [seed, Bsz, L, H, P, G, N] of [[13, 2, 5, 2, 3, 1, 3], [14, 1, 7, 4, 2, 2, 2]] as const) {
    const m = m2Inputs(seed, Bsz, L, H, P, G, N);
    const inputs = [m.x, m.delta, m.A, m.B, m.C, m.Dk];
    checkGrads(
      (...xs) => ssdScanCpu(...(xs as Parameters<typeof ssdScanCpu>)),
      (...xs) => ssdScanRef(...(xs as Parameters<typeof ssdScanRef>)),
      inputs,
      () => m2Tensors(m),
      ([x, delta, A, B, C, Dk, W]) => {
        const y = m2Scan64({ Bsz, L, H, P, G, N, x: x!, delta: delta!, A: A!, B: B!, C: C!, Dk: Dk! });
        let s = 0;
        for (let i = 0; i < y.length; i++) s += y[i]! * W![i]!;
        return s;
      },
      ['x', 'delta', 'A', 'B', 'C', 'D'],
    );
  }
});
