/**
 * One training step's cost, isolated from the trainer's bookkeeping: forward, backward
 * (tf.variableGrads of next-token cross-entropy, as trainer.ts's maskedLoss), and the AdamW update,
 * on a fresh Mamba-1 or Mamba-2 model; the update timed both ways, adamw.ts's tf ops and
 * train/adamw-webgpu.ts's fused in-place step (webgpu only). The loss is read back each step, as
 * the trainer did. `compiled` (webgpu only) times train/gpu/step.ts, the compiled step the trainer
 * now uses: `msPerStep` with the loss read back every step, `pipelinedMsPerStep` with the steps
 * queued back to back and one read at the end (the trainer reads every few steps).
 * Prints one JSON line per arch and length (the keys of bench/train-step-torch.py).
 *
 *   node dist/bench/train-step-gpu.js --backend webgpu [--archs mamba1,mamba2] [--lengths 64,256]
 *        [--d-model 256] [--layers 4] [--state 16] [--vocab 32] [--batch 32] [--steps 10]
 *        [--optimizers compiled,tf-ops,fused] [--profile (per-kernel device time of one fused step)]
 *
 * `--experiment` times the compiled step only, at issue 10's shapes (4 layers, d_model 256, L 220,
 * batch 32 and 256: Mamba-1 N16; Mamba-2 head dim 64, N 16, 64, 128, 256, 512), each with the FLOPs
 * counted (matmuls 2·M·N·K, forward and both backward products; the scan 4 per state and step forward
 * and 12 backward, recomputation not counted; the recurrence's count for the SSD form too, so its TFLOP/s compare like for like), TFLOP/s, and the fraction of the fp32 peak (--peak in
 * TFLOP/s, default 67, one H200). `--quick` shrinks those shapes (1 layer, d_model 32, L 12, batch 2 and 4, N/8) to run in seconds on lavapipe.
 * `--shapes m1:16,m2:64` runs only those shapes; `--scan-chunk C` and `--scan-threads NS` (with --experiment, each may be a
 * list: every combination per shape, recorded in each row) / `--scan-layout state-fastest|lane-fastest`: the compiled step's scan options
 * (the layout is recorded in every row); `--scan-form recurrent|ssd` [`--ssd-chunk Q`]: the Mamba-2 scan's form (ssd: the
 * chunked state-space-duality form, gpu/ssd.ts; recorded in every row, Mamba-1 rows always recurrent); `--matmul-tile 64x64|128x64|128x128|fill`
 * forces every matmul's tile (default 64x64; fill: the largest that still fills the GPU). `--profile` adds, per compiled step, the
 * device time of each kernel over one step (timestamp queries where the adapter has them, else each
 * dispatch timed alone), summed by kernel and by family. Every row names the adapter's features.
 *
 *   node dist/bench/train-step-gpu.js --backend webgpu --experiment [--batches 32,256] [--peak 67] [--steps 10] [--quick]
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendName } from '../src/model/backend.js';
import { DAWN_TOGGLES_ENV } from '../src/model/gpu-select.js';
import { freshConfig, initWeights } from '../src/model/init.js';
import { MambaLM } from '../src/model/lm.js';
import { ADAMW_DEFAULTS, adamwStep, createAdamWState, disposeAdamWState } from '../src/train/adamw.js';
import { adamwStepWebGPU } from '../src/train/adamw-webgpu.js';
import { maskedLoss } from '../src/train/trainer.js';
import { CompiledStep } from '../src/train/gpu/step.js';
import { DEFAULT_SCAN_FORM, DEFAULT_SCAN_LAYOUT, SCAN_FORMS, SCAN_THREAD_LAYOUTS, type ScanForm, type ScanThreadLayout } from '../src/train/gpu/kernels.js';
import type { Batch } from '../src/tasks/common.js';

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def;
};
const backend = await initBackend(arg('backend', 'webgpu') as BackendName, { quiet: true });
const dModel = Number(arg('d-model', '256'));
const layers = Number(arg('layers', '4'));
const state = Number(arg('state', '16'));
const vocab = Number(arg('vocab', '32'));
const batchArg = Number(arg('batch', '32'));
const batch = batchArg;
const steps = Number(arg('steps', '10'));
const scanOpts = {
  matmulTile: process.argv.includes('--matmul-tile') ? arg('matmul-tile', '64x64') : undefined,
  scanChunk: process.argv.includes('--scan-chunk') ? Number(arg('scan-chunk', '16')) : undefined,
  scanThreads: process.argv.includes('--scan-threads') ? Number(arg('scan-threads', '1')) : undefined,
  scanLayout: arg('scan-layout', DEFAULT_SCAN_LAYOUT) as ScanThreadLayout,
  scanForm: arg('scan-form', DEFAULT_SCAN_FORM) as ScanForm,
  ssdChunk: process.argv.includes('--ssd-chunk') ? Number(arg('ssd-chunk', '64')) : undefined,
};
if (!SCAN_FORMS.includes(scanOpts.scanForm)) throw new Error(`--scan-form ${scanOpts.scanForm}: not one of ${SCAN_FORMS.join(', ')}`);
if (!SCAN_THREAD_LAYOUTS.includes(scanOpts.scanLayout)) throw new Error(`--scan-layout ${scanOpts.scanLayout}: not one of ${SCAN_THREAD_LAYOUTS.join(', ')}`);

const sig = (x: number) => Number(x.toPrecision(4));
function die(msg: string): never {
  process.stderr.write(`train-step-gpu: ${msg}\n`);
  process.exit(2);
}

/** The adapter's and the device's WebGPU features (subgroups, shader-f16, subgroup matrices, timestamps), and the Dawn toggles asked for. */
async function gpuFeatures(): Promise<{ adapter: string[]; device: string[]; dawnToggles: string } | null> {
  if (backend !== 'webgpu') return null;
  const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter(o?: unknown): Promise<{ features: Iterable<string> } | null> } } }).navigator?.gpu;
  const ad = gpu ? await gpu.requestAdapter({ powerPreference: 'high-performance' }) : null;
  const dev = (tf.backend() as unknown as { device: { features: Iterable<string> } }).device;
  return { adapter: ad ? [...ad.features].sort() : [], device: [...dev.features].sort(), dawnToggles: process.env[DAWN_TOGGLES_ENV] ?? '' };
}
const features = await gpuFeatures();

/** FLOPs of one training step as counted above (T = batch·L tokens). */
function stepFlops(c: ReturnType<typeof freshConfig>, T: number): { matmul: number; scan: number } {
  const D = c.hiddenSize, E = c.intermediateSize, N = c.stateSize, V = c.vocabSize;
  let perToken: number;
  if (c.arch === 'mamba2') {
    const G = c.nGroups ?? 1, H = c.numHeads!;
    perToken = D * (2 * E + 2 * G * N + H) + E * D;
  } else {
    const R = c.timeStepRank!;
    perToken = D * 2 * E + E * (R + 2 * N) + R * E + E * D;
  }
  const matmul = 3 * 2 * T * (perToken * c.numLayers + D * V);
  const scan = (4 + 12) * T * E * N * c.numLayers;
  return { matmul, scan };
}

if (process.argv.includes('--experiment')) {
  const quick = process.argv.includes('--quick');
  const peak = Number(arg('peak', '67'));
  const allShapes: { arch: 'mamba1' | 'mamba2'; state: number }[] = [{ arch: 'mamba1', state: 16 }, ...[16, 64, 128, 256, 512].map((state) => ({ arch: 'mamba2' as const, state }))];
  // --shapes m1:16,m2:64 picks some; --scan-threads / --scan-chunk may be lists (a grid of scan options per shape).
  const shapes = process.argv.includes('--shapes')
    ? arg('shapes', '').split(',').map((t) => allShapes.find((sh) => `${sh.arch === 'mamba1' ? 'm1' : 'm2'}:${sh.state}` === t) ?? die(`--shapes: ${t} is not one of ${allShapes.map((sh) => `${sh.arch === 'mamba1' ? 'm1' : 'm2'}:${sh.state}`).join(', ')}`))
    : allShapes;
  const list = (name: string): (number | undefined)[] => (process.argv.includes(`--${name}`) ? arg(name, '').split(',').map(Number) : [undefined]);
  const L = quick ? 12 : 220;
  for (const b of quick ? [2, 4] : arg('batches', '32,256').split(',').map(Number)) {
    for (const sh of shapes) for (const scanThreads of list('scan-threads')) for (const scanChunk of list('scan-chunk')) {
      if (scanThreads !== undefined && (quick ? Math.max(2, sh.state / 8) : sh.state) % scanThreads !== 0) continue;
      Object.assign(scanOpts, { scanThreads, scanChunk });
      const c = freshConfig({ arch: sh.arch, numLayers: quick ? 1 : 4, hiddenSize: quick ? 32 : 256, stateSize: quick ? Math.max(2, sh.state / 8) : sh.state, headDim: quick ? 16 : 64, vocabSize: vocab });
      const w = initWeights(c, { init: 'default', parts: [], aScale: 1, bcNoise: 0, seed: 0 });
      const row: Record<string, unknown> = { bench: 'train-step-experiment', backend, features, matmulTile: scanOpts.matmulTile ?? '64x64', scanLayout: scanOpts.scanLayout, scanThreads: scanThreads ?? 'default', scanChunk: scanChunk ?? 'default', scanForm: sh.arch === 'mamba2' ? scanOpts.scanForm : 'recurrent', ssdChunk: scanOpts.ssdChunk ?? 64, arch: sh.arch, dModel: c.hiddenSize, layers: c.numLayers, state: c.stateSize, vocab, batch: b, context: L, steps };
      try {
        const r = await timeCompiled(c, w, L, b);
        const f = stepFlops(c, b * L);
        const ms = r.pipelinedMsPerStep as number;
        const tflops = (f.matmul + f.scan) / (ms / 1000) / 1e12;
        Object.assign(row, { compiled: r, gflopPerStep: sig((f.matmul + f.scan) / 1e9), scanGflop: sig(f.scan / 1e9), tflops: sig(tflops), peakTflops: peak, fractionOfPeak: sig(tflops / peak) });
      } catch (e) {
        row.error = (e as Error).message;
      }
      process.stdout.write(JSON.stringify(row) + '\n');
    }
  }
  process.exit(0);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

for (const arch of arg('archs', 'mamba1,mamba2').split(',') as ('mamba1' | 'mamba2')[]) {
  for (const L of arg('lengths', '64,256').split(',').map(Number)) {
    const c = freshConfig({ arch, numLayers: layers, hiddenSize: dModel, stateSize: state, headDim: 64, vocabSize: vocab });
    const w = initWeights(c, { init: 'default', parts: [], aScale: 1, bcNoise: 0, seed: 0 });
    const row: Record<string, unknown> = { bench: 'train-step', backend, features, scanLayout: scanOpts.scanLayout, scanForm: arch === 'mamba2' ? scanOpts.scanForm : 'recurrent', ssdChunk: scanOpts.ssdChunk ?? 64, arch, dModel, layers, state, vocab, batch, context: L, steps };
    const optimizers = (backend === 'webgpu' ? arg('optimizers', 'compiled,fused').split(',') : ['tf-ops']) as ('tf-ops' | 'fused' | 'compiled')[];
    for (const opt of optimizers) {
      if (opt === 'compiled') {
        row.compiled = await timeCompiled(c, w, L);
        continue;
      }
      const lm = MambaLM.fromWeights(c, Object.fromEntries([...w].map(([k, v]) => [k, { shape: v.shape, data: v.data }])));
      const params = new Map([...lm.variables].filter(([, v]) => v.trainable));
      const st = createAdamWState(params);
      const hp = { ...ADAMW_DEFAULTS, lr: 1e-3 };
      let seed = 1;
      const rnd = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31; };
      const times: number[] = [], fwdBwd: number[] = [];
      const losses: number[] = [];
      for (let s = 0; s <= steps; s++) {
        const idsArr = Array.from({ length: batch }, () => Array.from({ length: L }, () => Math.floor(rnd() * vocab)));
        const t0 = performance.now();
        const ids = tf.tensor2d(idsArr, [batch, L], 'int32');
        const targets = tf.tensor1d(idsArr.flatMap((r) => [...r.slice(1), 0]), 'int32');
        const mask = tf.tensor1d(idsArr.flatMap((r) => r.map((_, i) => (i < L - 1 ? 1 : 0))), 'float32');
        const { value, grads } = tf.variableGrads(() => maskedLoss(lm.logits(ids), targets, mask), [...params.values()]);
        losses.push((await value.data())[0]!);
        const t1 = performance.now();
        const byKey = new Map<string, tf.Tensor>();
        for (const [name, g] of Object.entries(grads)) byKey.set(name.replace(/^mamba\d+\//, ''), g);
        const norm = opt === 'fused' ? adamwStepWebGPU(params, byKey, st, hp) : adamwStep(params, byKey, st, hp);
        await norm.data();
        tf.dispose([norm, value, ids, targets, mask, ...Object.values(grads)]);
        if (s > 0) { times.push(performance.now() - t0); fwdBwd.push(t1 - t0); }
      }
      if (opt === 'fused' && process.argv.includes('--profile')) {
        // One forward+backward under tf.profile (per tf kernel: count and device time) and tf.time
        // (all device time, the custom WGSL programs included, against the wall clock).
        const idsArr = Array.from({ length: batch }, () => Array.from({ length: L }, () => Math.floor(rnd() * vocab)));
        const ids = tf.tensor2d(idsArr, [batch, L], 'int32');
        const targets = tf.tensor1d(idsArr.flatMap((r) => [...r.slice(1), 0]), 'int32');
        const mask = tf.tensor1d(idsArr.flatMap((r) => r.map((_, i) => (i < L - 1 ? 1 : 0))), 'float32');
        const step = () => {
          const { value, grads } = tf.variableGrads(() => maskedLoss(lm.logits(ids), targets, mask), [...params.values()]);
          tf.dispose([value, ...Object.values(grads)]);
        };
        const timed = await tf.time(step);
        const prof = await tf.profile(step);
        const by = new Map<string, { n: number; ms: number }>();
        for (const k of prof.kernels) {
          const ms = await k.kernelTimeMs;
          const e = by.get(k.name) ?? { n: 0, ms: 0 };
          e.n += 1;
          e.ms += typeof ms === 'number' ? ms : 0;
          by.set(k.name, e);
        }
        row.profile = {
          tfTime: { wallMs: Math.round(timed.wallMs), kernelMs: typeof timed.kernelMs === 'number' ? Math.round(timed.kernelMs * 10) / 10 : timed.kernelMs },
          tfKernels: prof.kernels.length,
          top: [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, 14).map(([k, v]) => `${k} x${v.n} ${v.ms.toFixed(1)}ms`),
        };
        tf.dispose([ids, targets, mask]);
      }
      row[opt === 'fused' ? 'fused_adamw' : 'tf_ops_adamw'] = {
        msPerStep: Math.round(median(times) * 10) / 10, forwardBackwardMs: Math.round(median(fwdBwd) * 10) / 10,
        updateMs: Math.round((median(times) - median(fwdBwd)) * 10) / 10, medianTokensPerSec: Math.round((batch * L) / (median(times) / 1000)),
        firstLoss: losses[0], lastLoss: losses[losses.length - 1],
      };
      disposeAdamWState(st);
      lm.dispose();
    }
    process.stdout.write(JSON.stringify(row) + '\n');
  }
}

/** The compiled step (train/gpu/step.ts) on the same model and data as above. */
async function timeCompiled(c: ReturnType<typeof freshConfig>, w: ReturnType<typeof initWeights>, L: number, batch = batchArg): Promise<Record<string, unknown>> {
  const lm = MambaLM.fromWeights(c, Object.fromEntries([...w].map(([k, v]) => [k, { shape: v.shape, data: v.data }])));
  const params = new Map([...lm.variables].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const st = createAdamWState(params);
  const hp = { ...ADAMW_DEFAULTS, lr: 1e-3 };
  const t0 = performance.now();
  // --scan-form applies to Mamba-2 (Mamba-1 has only the recurrent scan).
  const step = new CompiledStep(lm, params, batch, L, undefined, { ...scanOpts, scanForm: c.arch === 'mamba2' ? scanOpts.scanForm : 'recurrent' });
  step.setDecay(st);
  step.push(st);
  const buildMs = performance.now() - t0;
  let seed = 1;
  const rnd = () => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31; };
  const makeBatch = (): Batch => {
    const ids = new Int32Array(batch * L), targets = new Int32Array(batch * L), mask = new Float32Array(batch * L);
    for (let b = 0; b < batch; b++) for (let i = 0; i < L; i++) ids[b * L + i] = Math.floor(rnd() * vocab);
    for (let b = 0; b < batch; b++) for (let i = 0; i < L; i++) { targets[b * L + i] = i < L - 1 ? ids[b * L + i + 1]! : 0; mask[b * L + i] = i < L - 1 ? 1 : 0; }
    return { batch, length: L, ids, targets, mask };
  };
  const times: number[] = [];
  let t = 0;
  for (let s = 0; s <= steps; s++) {
    const a = performance.now();
    step.setBatch(makeBatch(), t);
    step.step(hp, ++t);
    await step.history(t - 1, 1);
    if (s > 0) times.push(performance.now() - a);
  }
  const n = Math.max(steps, 20);
  const a = performance.now();
  for (let s = 0; s < n; s++) {
    step.setBatch(makeBatch(), t);
    step.step(hp, ++t);
  }
  const { loss } = await step.history(t - n, n);
  const pipelined = (performance.now() - a) / n;
  // Where the GPU time goes: every dispatch of one step timed on the device, by kernel and by family.
  const prof: Record<string, unknown> = {};
  if (process.argv.includes('--profile')) {
    step.setBatch(makeBatch(), t);
    const p = await step.engine.profile(...Array.from({ length: step.k }, (_, i) => `step${i}`), 'adam');
    const families: [string, RegExp][] = [['matmul', /^(mm_|sumSlices)/], ['scan', /^(scan|bcReduce|ssd)/], ['columnSums', /^col/], ['optimizer', /^(adam|zeroG)/], ['norm', /^norm/], ['conv', /^conv/], ['delta', /^delta/], ['crossEntropy', /^crossEntropy/], ['rest', /./]];
    const byKernel = new Map<string, { n: number; ms: number }>(), byFamily = new Map<string, number>();
    let total = 0;
    for (const o of p.ops) {
      const k = byKernel.get(o.key) ?? { n: 0, ms: 0 };
      k.n += 1; k.ms += o.ms; byKernel.set(o.key, k);
      const fam = families.find(([, re]) => re.test(o.key))![0];
      byFamily.set(fam, (byFamily.get(fam) ?? 0) + o.ms);
      total += o.ms;
    }
    Object.assign(prof, {
      profile: {
        method: p.method, dispatches: p.ops.length, deviceMs: sig(total),
        byFamily: Object.fromEntries([...byFamily].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, sig(v)])),
        topKernels: [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12).map(([k, v]) => `${k} x${v.n} ${v.ms.toFixed(3)}ms`),
        // Every scan-family kernel (the top 12 can hide the SSD's smaller ones).
        scanKernels: [...byKernel].filter(([k]) => families[1]![1].test(k)).sort((a, b) => b[1].ms - a[1].ms).map(([k, v]) => `${k} x${v.n} ${v.ms.toFixed(3)}ms`),
      },
    });
  }
  const out = {
    ...prof,
    dispatchesPerStep: step.k * step.engine.count('step0') + step.engine.count('adam'),
    microBatches: step.k,
    buildMs: Math.round(buildMs),
    msPerStep: Math.round(median(times) * 100) / 100,
    pipelinedMsPerStep: Math.round(pipelined * 100) / 100,
    tokensPerSec: Math.round((batch * L) / (pipelined / 1000)),
    firstLoss: loss[0], lastLoss: loss[loss.length - 1],
  };
  step.dispose();
  disposeAdamWState(st);
  lm.dispose();
  return out;
}
