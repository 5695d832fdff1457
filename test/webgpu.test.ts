/**
 * The WebGPU kernels against the CPU kernels (forward and every gradient), on whatever WebGPU
 * adapter Dawn finds: here and in CI that is Mesa's lavapipe (a CPU Vulkan driver, Mesa >= 23;
 * scripts/test-deps.sh installs it), on the GPU host the NVIDIA driver. Without an adapter they skip with
 * what to install; under MIMETIC_TEST_STRICT=1 (CI) that is a failure.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend, webgpuAdapter } from '../src/model/backend.js';
import { selectiveScanCpu, ssdScanCpu } from '../src/model/kernels/scan-cpu.js';
import { selectiveScanWebGPU, ssdScanWebGPU } from '../src/model/kernels/scan-webgpu.js';
import { scanKernelsFor } from '../src/model/kernels/scan.js';
import { mulberry32 } from '../src/util/rng.js';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { SafetensorsReader } from '../src/checkpoint/safetensors.js';
import { MambaLM } from '../src/model/lm.js';
import { runCheckpoint } from '../src/analysis/capture.js';
import { goldenIds, expectClose } from './helpers/golden.js';
import { requiresWebGPU } from './helpers/requires.js';

/** Without an adapter these tests skip with what to install (fail under MIMETIC_TEST_STRICT=1). */
const GPU = await requiresWebGPU();

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures');

type Shapes = number[][];

function randoms(seed: number, shapes: Shapes, kinds: ('normal' | 'pos' | 'neg')[]): Float32Array[] {
  const rnd = mulberry32(seed);
  return shapes.map((s, i) => {
    const a = new Float32Array(s.reduce((x, y) => x * y, 1));
    for (let j = 0; j < a.length; j++) {
      const v = rnd() * 2 - 1;
      // Δ in (0.01, 0.5) as after softplus; A in (-2, -0.1) as -exp(A_log).
      a[j] = kinds[i] === 'pos' ? 0.01 + 0.49 * rnd() : kinds[i] === 'neg' ? -(0.1 + 1.9 * rnd()) : v;
    }
    return a;
  });
}

/** y and the gradients of sum(y · W) w.r.t. all six inputs, on the current backend. */
async function runScan(fn: (...xs: tf.Tensor[]) => tf.Tensor, data: Float32Array[], shapes: Shapes, w: Float32Array): Promise<Float32Array[]> {
  const outs = tf.tidy(() => {
    const xs = data.map((d, i) => tf.tensor(d, shapes[i]));
    const W = tf.tensor(w, shapes[0]);
    const y = fn(...xs);
    const grads = tf.grads((...ins: tf.Tensor[]) => fn(...ins).mul(W).sum())(xs);
    return [y, ...grads];
  });
  // Async reads: webgpu cannot read synchronously in Node.
  const vals = await Promise.all(outs.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose(outs);
  return vals;
}

function maxRelErr(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let scale = 1e-6;
  for (const v of b) scale = Math.max(scale, Math.abs(v));
  let err = 0;
  for (let i = 0; i < a.length; i++) {
    assert.ok(Number.isFinite(a[i]!), `non-finite value at ${i}`);
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
  }
  return err / scale;
}

const NAMES = ['y', 'du', 'ddelta', 'dA', 'dB', 'dC', 'dD'];

async function compare(label: string, cpuFn: (...xs: tf.Tensor[]) => tf.Tensor, gpuFn: (...xs: tf.Tensor[]) => tf.Tensor, shapes: Shapes, kinds: ('normal' | 'pos' | 'neg')[]): Promise<void> {
  const data = randoms(7, shapes, kinds);
  const [w] = randoms(8, [shapes[0]!], ['normal']);
  await initBackend('cpu');
  const ref = await runScan(cpuFn, data, shapes, w!);
  await webgpu();
  const got = await runScan(gpuFn, data, shapes, w!);
  for (let i = 0; i < ref.length; i++) {
    const e = maxRelErr(got[i]!, ref[i]!);
    assert.ok(e < 2e-4, `${label} ${NAMES[i]}: max error ${e.toExponential(2)} relative to the largest value`);
    // A wrong kernel returning zeros would pass a relative check on an all-zero reference.
    assert.ok(ref[i]!.some((v) => Math.abs(v) > 1e-3), `${label} ${NAMES[i]}: reference is all zeros`);
  }
}

/** initBackend('webgpu'), failing with what to install when this machine has no adapter. */
async function webgpu(): Promise<string> {
  try {
    return await initBackend('webgpu');
  } catch (e) {
    throw new Error(`${(e as Error).message}. Without a GPU, install Mesa's lavapipe (Mesa >= 23; on Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers, as .ci/run does)`);
  }
}

test('webgpu backend starts on an adapter and registers its scan kernels', GPU, async () => {
  const name = await webgpu();
  assert.equal(name, 'webgpu');
  assert.equal(tf.getBackend(), 'webgpu');
  const a = webgpuAdapter();
  assert.ok(a, 'no adapter description');
  // The device was created with the adapter's limits, not the 8-storage-buffer default.
  const x = Array.from({ length: 12 }, (_, i) => tf.fill([3], i + 1));
  assert.deepEqual(Array.from(await tf.addN(x).data()), [78, 78, 78]);
  // Values still on the CPU side read synchronously; GPU results need the async read.
  assert.deepEqual(Array.from(tf.tensor([1, 2]).dataSync()), [1, 2]);
  assert.throws(() => tf.addN(x).dataSync(), /await tensor.data\(\)/);
  tf.dispose(x);
  assert.equal(scanKernelsFor('webgpu').selectiveScan, selectiveScanWebGPU);
  assert.equal(scanKernelsFor('webgpu').ssdScan, ssdScanWebGPU);
});

test('Mamba-1 selective scan on webgpu matches the CPU kernel, forward and gradients', GPU, async () => {
  const [b, L, D, N] = [2, 37, 6, 5];
  await compare('m1', selectiveScanCpu as never, selectiveScanWebGPU as never,
    [[b, L, D], [b, L, D], [D, N], [b, L, N], [b, L, N], [D]], ['normal', 'pos', 'neg', 'normal', 'normal', 'normal']);
});

test('Mamba-2 SSD scan on webgpu matches the CPU kernel, forward and gradients (groups > 1)', GPU, async () => {
  const [b, L, H, P, G, N] = [2, 29, 4, 3, 2, 8];
  await compare('ssd', ssdScanCpu as never, ssdScanWebGPU as never,
    [[b, L, H, P], [b, L, H], [H], [b, L, G, N], [b, L, G, N], [H]], ['normal', 'pos', 'neg', 'normal', 'normal', 'normal']);
});

for (const name of ['mamba1-tiny', 'mamba2-tiny-sharded']) {
  test(`${name} on webgpu: logits, hidden states, mixer inputs and implicit attention match the HF goldens`, GPU, async () => {
    await webgpu();
    const dir = path.join(FIXTURES, name);
    const ckpt = Checkpoint.open(dir);
    const g = SafetensorsReader.open(path.join(dir, 'golden.safetensors'));
    try {
      const r = await runCheckpoint(ckpt, goldenIds(g), { capture: 'attention' });
      const got = new Map<string, { shape: number[]; data: Float32Array }>([['logits', r.logits!]]);
      r.hiddenStates.forEach((h, i) => got.set(`hidden_states.${i}`, h));
      for (const c of r.layers) {
        got.set(`layers.${c.layer}.mixer_input`, c.mixerInput);
        for (const k of ['attention', 'decay', 'qk'] as const) got.set(`layers.${c.layer}.${k}`, c.attention![k]);
      }
      const names = g.names().filter((n) => n !== 'input_ids' && !n.endsWith('.delta'));
      assert.ok(names.length >= 3 + 4 * ckpt.config.numLayers);
      for (const n of names) {
        assert.ok(got.has(n), `golden tensor ${n} has no counterpart`);
        expectClose(`${name}/${n}`, got.get(n)!, g.readFloat32(n));
      }
    } finally {
      ckpt.close();
      g.close();
    }
  });
}

for (const name of ['mamba1-tiny', 'mamba2-tiny']) {
  test(`${name}: MambaLM loss and every weight gradient on webgpu match cpu`, GPU, async () => {
    const ckpt = Checkpoint.open(path.join(FIXTURES, name));
    const g = SafetensorsReader.open(path.join(FIXTURES, name, 'golden.safetensors'));
    const ids = goldenIds(g);
    g.close();
    const results: Map<string, Float32Array>[] = [];
    try {
      for (const backend of ['cpu', 'webgpu'] as const) {
        if (backend === 'webgpu') await webgpu();
        else await initBackend(backend);
        const lm = MambaLM.fromCheckpoint(ckpt);
        const idsT = tf.tensor2d(ids, undefined, 'int32');
        // Next-token cross-entropy, as training uses.
        const targets = tf.oneHot(tf.tensor2d(ids.map((r) => [...r.slice(1), r[0]!]), undefined, 'int32'), ckpt.config.vocabSize);
        const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(targets, lm.logits(idsT)) as tf.Scalar, lm.trainableVariables());
        const out = new Map<string, Float32Array>([['loss', (await value.data()) as Float32Array]]);
        for (const [k, v] of Object.entries(grads)) out.set(k.replace(/^mamba\d+\//, ''), (await v.data()) as Float32Array);
        tf.dispose([idsT, targets, value, ...Object.values(grads)]);
        lm.dispose();
        results.push(out);
      }
    } finally {
      ckpt.close();
    }
    const [cpu, gpu] = results as [Map<string, Float32Array>, Map<string, Float32Array>];
    assert.ok(cpu.size > 10, `only ${cpu.size} gradients`);
    assert.deepEqual([...gpu.keys()].sort(), [...cpu.keys()].sort());
    for (const [k, ref] of cpu) {
      const e = maxRelErr(gpu.get(k)!, ref);
      assert.ok(e < 1e-3, `${name} ${k}: webgpu vs cpu max error ${e.toExponential(2)} relative to the largest value`);
    }
  });
}
