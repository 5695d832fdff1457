/**
 * Times the selective-scan kernels (forward, and forward + backward) on a backend and prints one
 * JSON object: the adapter, then per shape the mean milliseconds per call over `iters` calls
 * queued back to back and finished by one read. Usage:
 *   node dist/bench/scan-webgpu.js [--backend webgpu] [--iters 20]
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend, webgpuAdapter, type BackendName } from '../src/model/backend.js';
import { selectiveScan, ssdScan } from '../src/model/kernels/scan.js';

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

const used = await initBackend(backend, { quiet: true });
const results: unknown[] = [];
for (const c of cases) {
  try {
    results.push({ ...c, ...(await time(c)) });
  } catch (e) {
    results.push({ ...c, error: (e as Error).message.split('\n')[0] });
  }
}
process.stdout.write(`${JSON.stringify({ backend: used, adapter: webgpuAdapter(), iters, results }, null, 1)}\n`);
