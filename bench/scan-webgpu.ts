/**
 * Times the selective-scan kernels (forward, and forward + backward) on a backend and prints one
 * JSON object: the adapter, then per shape the mean milliseconds per call over `iters` calls
 * queued back to back and finished by one read. Usage:
 *   node dist/bench/scan-webgpu.js [--backend webgpu] [--iters 20]
 * It also reports, for two 130m-sized shapes, the largest error of the output and of every
 * gradient against the CPU kernels, relative to the largest reference value.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend, webgpuAdapter, type BackendName } from '../src/model/backend.js';
import { selectiveScan, ssdScan } from '../src/model/kernels/scan.js';
import { selectiveScanCpu, ssdScanCpu } from '../src/model/kernels/scan-cpu.js';

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
};
const backend = arg('backend', 'webgpu') as BackendName;
const iters = Number(arg('iters', '20'));

interface Case { kind: 'mamba1' | 'mamba2'; batch: number; L: number; D?: number; N: number; H?: number; P?: number; G?: number; grad: boolean }

const cases: Case[] = [
  { kind: 'mamba1', batch: 1, L: 256, D: 1536, N: 16, grad: false },
  { kind: 'mamba1', batch: 8, L: 1024, D: 1536, N: 16, grad: false },
  { kind: 'mamba1', batch: 1, L: 2048, D: 5120, N: 16, grad: false },
  { kind: 'mamba1', batch: 1, L: 256, D: 1536, N: 16, grad: true },
  { kind: 'mamba1', batch: 8, L: 256, D: 512, N: 16, grad: true },
  { kind: 'mamba2', batch: 1, L: 256, H: 24, P: 64, G: 1, N: 128, grad: false },
  { kind: 'mamba2', batch: 8, L: 1024, H: 24, P: 64, G: 1, N: 128, grad: false },
  { kind: 'mamba2', batch: 1, L: 256, H: 24, P: 64, G: 1, N: 128, grad: true },
];

function inputs(c: Case): tf.Tensor[] {
  const r = (shape: number[], lo: number, hi: number): tf.Tensor => tf.randomUniform(shape, lo, hi, 'float32', 1);
  if (c.kind === 'mamba1') {
    const { batch: b, L, D, N } = c as Required<Case>;
    return [r([b, L, D], -1, 1), r([b, L, D], 0.01, 0.5), r([D, N], -2, -0.1), r([b, L, N], -1, 1), r([b, L, N], -1, 1), r([D], -1, 1)];
  }
  const { batch: b, L, H, P, G, N } = c as Required<Case>;
  return [r([b, L, H, P], -1, 1), r([b, L, H], 0.01, 0.5), r([H], -2, -0.1), r([b, L, G, N], -1, 1), r([b, L, G, N], -1, 1), r([H], -1, 1)];
}

async function time(c: Case): Promise<{ ms: number; first_ms: number }> {
  const xs = inputs(c);
  const fn = (...a: tf.Tensor[]): tf.Tensor =>
    c.kind === 'mamba1'
      ? selectiveScan(a[0] as tf.Tensor3D, a[1] as tf.Tensor3D, a[2] as tf.Tensor2D, a[3] as tf.Tensor3D, a[4] as tf.Tensor3D, a[5] as tf.Tensor1D)
      : ssdScan(a[0] as tf.Tensor4D, a[1] as tf.Tensor3D, a[2] as tf.Tensor1D, a[3] as tf.Tensor4D, a[4] as tf.Tensor4D, a[5] as tf.Tensor1D);
  // One call's outputs, reduced to a scalar so the read at the end is small.
  const once = (): tf.Tensor =>
    tf.tidy(() => {
      if (!c.grad) return fn(...xs).sum();
      const gs = tf.grads((...a: tf.Tensor[]) => fn(...a).sum())(xs);
      return tf.addN(gs.map((g) => g.sum()));
    });
  const t0 = performance.now();
  const first = once();
  await first.data();
  const firstMs = performance.now() - t0;
  first.dispose();
  const t1 = performance.now();
  const outs: tf.Tensor[] = [];
  for (let i = 0; i < iters; i++) outs.push(once());
  await outs[outs.length - 1]!.data();
  const ms = (performance.now() - t1) / iters;
  tf.dispose([...outs, ...xs]);
  return { ms, first_ms: firstMs };
}

type ScanFn = (...a: tf.Tensor[]) => tf.Tensor;

/** y and the gradients of sum(y · w) on the current backend, read back as arrays. */
async function outputs(fn: ScanFn, data: Float32Array[], shapes: number[][], w: Float32Array): Promise<Float32Array[]> {
  const outs = tf.tidy(() => {
    const ins = data.map((d, i) => tf.tensor(d, shapes[i]));
    const W = tf.tensor(w, shapes[0]);
    return [fn(...ins), ...tf.grads((...a: tf.Tensor[]) => fn(...a).mul(W).sum())(ins)];
  });
  const vals = await Promise.all(outs.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose(outs);
  return vals;
}

/** Largest error of y and of each gradient, kernels of `backend` vs the CPU kernels, same inputs. */
async function accuracy(c: Case): Promise<Record<string, number>> {
  const gpuFn: ScanFn = c.kind === 'mamba1' ? (selectiveScan as unknown as ScanFn) : (ssdScan as unknown as ScanFn);
  const cpuFn: ScanFn = c.kind === 'mamba1' ? (selectiveScanCpu as unknown as ScanFn) : (ssdScanCpu as unknown as ScanFn);
  const xs = inputs(c);
  const shapes = xs.map((x) => x.shape);
  const data = await Promise.all(xs.map((x) => x.data() as Promise<Float32Array>));
  const wT = tf.randomUniform(shapes[0]!, -1, 1, 'float32', 2);
  const w = (await wT.data()) as Float32Array;
  tf.dispose([...xs, wT]);
  const got = await outputs(gpuFn, data, shapes, w);
  await initBackend('cpu');
  const ref = await outputs(cpuFn, data, shapes, w);
  await initBackend(backend, { quiet: true });
  const names = ['y', 'du', 'ddelta', 'dA', 'dB', 'dC', 'dD'];
  const out: Record<string, number> = {};
  ref.forEach((r, i) => {
    let scale = 0;
    let err = 0;
    for (let j = 0; j < r.length; j++) {
      scale = Math.max(scale, Math.abs(r[j]!));
      err = Math.max(err, Math.abs(r[j]! - got[i]![j]!));
    }
    out[names[i]!] = err / scale;
  });
  return out;
}

const used = await initBackend(backend, { quiet: true });
const results: unknown[] = [];
for (const c of cases) {
  try {
    results.push({ ...c, ...(await time(c)) });
  } catch (e) {
    results.push({ ...c, error: (e as Error).message.split('\n')[0] });
  }
}
const accuracyVsCpu: unknown[] = [];
for (const c of [cases[0]!, cases[5]!]) {
  try {
    accuracyVsCpu.push({ ...c, max_rel_err: await accuracy(c) });
  } catch (e) {
    accuracyVsCpu.push({ ...c, error: (e as Error).message.split('\n')[0] });
  }
}
process.stdout.write(`${JSON.stringify({ backend: used, adapter: webgpuAdapter(), iters, results, accuracyVsCpu }, null, 1)}\n`);
