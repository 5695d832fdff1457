/**
 * The AdamW step of adamw.ts (same formula, same clipping, same weight-decay mask) on the WebGPU
 * backend as raw WGSL compute passes that update every parameter and both moments IN PLACE in the
 * variables' own GPU buffers: per parameter one dispatch for the sum of squares of its gradient
 * (into a partials buffer, fixed order) and one for the update, which sums the partials itself for
 * the global norm and clip; then one tiny dispatch writes ‖g‖. All of it is one command buffer and
 * one submit; the hyperparameters (lr, bias corrections, clip) are one uniform-buffer write per step.
 *
 * The tf-op version costs ~15 tf ops per parameter, each ~80-300 µs to dispatch on the GPU host
 * (tf.train.adam over 40 variables: 245 ms per step); this is ~2 dispatches per parameter at the
 * cost of a raw Dawn dispatch (microseconds).
 *
 * Hook-up (trainer.ts): `const norm = tf.getBackend() === 'webgpu' ? adamwStepWebGPU(params, byKey, opt, hp) : adamwStep(params, byKey, opt, hp);`
 */
import * as tf from '@tensorflow/tfjs';
import type { AdamWHParams, AdamWState } from './adamw.js';
import { wgslReduce } from '../model/kernels/webgpu-program.js';

// GPUBufferUsage / GPUMapMode bits (WebGPU spec values; the Node `webgpu` package has no lib types here).
const STORAGE = 0x80, UNIFORM = 0x40, COPY_DST = 0x08, COPY_SRC = 0x04;

/* eslint-disable @typescript-eslint/no-explicit-any */
type GPUBuffer = any;
type GPUDevice = any;
interface TensorData { resource?: GPUBuffer; values?: unknown }
interface WebGPUBackendLike {
  device: GPUDevice;
  tensorMap: { get(id: object): TensorData | undefined };
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

const WG = 256;

const COMMON = `
struct Glob {
  oneMinusBeta1 : f32, beta1 : f32, oneMinusBeta2 : f32, beta2 : f32,
  eps : f32, decayFactor : f32, stepSize : f32, sqrtBc2 : f32,
  clipNorm : f32, clipOn : u32, nSlots : u32, pad : u32,
};
struct Slot { n : u32, slot : u32, decay : u32, pad : u32 };
`;

const SUMSQ = `${COMMON}
@group(0) @binding(1) var<uniform> slotU : Slot;
@group(0) @binding(2) var<storage, read_write> partials : array<f32>;
@group(0) @binding(3) var<storage, read> g : array<f32>;
${wgslReduce(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid : u32) {
  var s = 0.0;
  for (var i = lid; i < slotU.n; i = i + ${WG}u) { let x = g[i]; s = s + x * x; }
  let total = wgSum(s, lid);
  if (lid == 0u) { partials[slotU.slot] = total; }
}`;

const UPDATE = `${COMMON}
@group(0) @binding(0) var<uniform> glob : Glob;
@group(0) @binding(1) var<uniform> slotU : Slot;
@group(0) @binding(2) var<storage, read> partials : array<f32>;
@group(0) @binding(3) var<storage, read> g : array<f32>;
@group(0) @binding(4) var<storage, read_write> p : array<f32>;
@group(0) @binding(5) var<storage, read_write> m : array<f32>;
@group(0) @binding(6) var<storage, read_write> v : array<f32>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(num_workgroups) nwg : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let i = (wid.x + wid.y * nwg.x) * ${WG}u + lid;
  if (i >= slotU.n) { return; }
  var clip = 1.0;
  if (glob.clipOn == 1u) {
    var total = 0.0;
    for (var k = 0u; k < glob.nSlots; k = k + 1u) { total = total + partials[k]; }
    clip = min(glob.clipNorm / (sqrt(total) + 1e-6), 1.0);
  }
  let gi = g[i] * clip;
  let m1 = m[i] * glob.beta1 + gi * glob.oneMinusBeta1;
  let v1 = v[i] * glob.beta2 + (gi * gi) * glob.oneMinusBeta2;
  let denom = sqrt(v1) / glob.sqrtBc2 + glob.eps;
  var pi = p[i];
  if (slotU.decay == 1u) { pi = pi * glob.decayFactor; }
  p[i] = pi - (m1 / denom) * glob.stepSize;
  m[i] = m1;
  v[i] = v1;
}`;

const NORM = `${COMMON}
@group(0) @binding(0) var<uniform> glob : Glob;
@group(0) @binding(2) var<storage, read> partials : array<f32>;
@group(0) @binding(7) var<storage, read_write> normOut : array<f32>;
@compute @workgroup_size(1)
fn main() {
  var total = 0.0;
  for (var k = 0u; k < glob.nSlots; k = k + 1u) { total = total + partials[k]; }
  normOut[0] = sqrt(total);
}`;

interface Plan {
  device: GPUDevice;
  sumsq: any;
  update: any;
  norm: any;
  glob: GPUBuffer;
  partials: GPUBuffer;
  normOut: GPUBuffer;
  slots: GPUBuffer[];
}

const plans = new WeakMap<AdamWState, Plan>();

function pipeline(device: GPUDevice, code: string): any {
  return device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
}

function planFor(state: AdamWState, backend: WebGPUBackendLike, nParams: number): Plan {
  let plan = plans.get(state);
  if (plan && plan.device === backend.device && plan.slots.length >= nParams) return plan;
  const device = backend.device;
  const buf = (size: number, usage: number): GPUBuffer => device.createBuffer({ size: Math.max(16, Math.ceil(size / 16) * 16), usage });
  plan = {
    device,
    sumsq: pipeline(device, SUMSQ),
    update: pipeline(device, UPDATE),
    norm: pipeline(device, NORM),
    glob: buf(48, UNIFORM | COPY_DST),
    partials: buf(4 * nParams, STORAGE | COPY_DST),
    normOut: buf(4, STORAGE | COPY_SRC | COPY_DST),
    slots: Array.from({ length: nParams }, () => buf(16, UNIFORM | COPY_DST)),
  };
  plans.set(state, plan);
  return plan;
}

function bufferOf(backend: WebGPUBackendLike, t: tf.Tensor): GPUBuffer {
  const d = backend.tensorMap.get(t.dataId);
  if (!d?.resource) throw new Error('adamwStepWebGPU: a tensor has no GPU buffer');
  return d.resource;
}

/**
 * adamwStep (adamw.ts) on the WebGPU backend: same arguments, same result (the gradient norm
 * before clipping, a scalar tensor the caller disposes), parameters and moments updated in place.
 */
export function adamwStepWebGPU(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, state: AdamWState, hp: AdamWHParams): tf.Scalar {
  if (tf.getBackend() !== 'webgpu') throw new Error(`adamwStepWebGPU needs the webgpu backend (current: ${tf.getBackend()})`);
  const backend = tf.backend() as unknown as WebGPUBackendLike;
  const active = [...params].filter(([k]) => grads.has(k));
  const plan = planFor(state, backend, Math.max(1, params.size));
  const { device } = plan;

  // Everything the pass reads must be in GPU buffers, and tf's queued work (the backward pass that
  // produced the gradients) must be submitted before ours.
  for (const [k, p] of active) for (const t of [p, grads.get(k)!, state.m.get(k)!, state.v.get(k)!]) backend.uploadToGPU(t.dataId);
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.submitQueue();

  state.step += 1;
  const t = state.step;
  const bc1 = 1 - Math.pow(hp.beta1, t);
  const bc2 = 1 - Math.pow(hp.beta2, t);
  const clipOn = hp.clipNorm > 0 && Number.isFinite(hp.clipNorm);
  const glob = new ArrayBuffer(48);
  new Float32Array(glob, 0, 9).set([1 - hp.beta1, hp.beta1, 1 - hp.beta2, hp.beta2, hp.eps, 1 - hp.lr * hp.weightDecay, hp.lr / bc1, Math.sqrt(bc2), clipOn ? hp.clipNorm : 0]);
  new Uint32Array(glob, 36, 3).set([clipOn ? 1 : 0, active.length, 0]);
  device.queue.writeBuffer(plan.glob, 0, glob);

  const enc = device.createCommandEncoder();
  const entries = (pl: any, list: [number, GPUBuffer][]): any => device.createBindGroup({ layout: pl.getBindGroupLayout(0), entries: list.map(([binding, buffer]) => ({ binding, resource: { buffer } })) });
  const work = active.map(([k, p], slot) => {
    const n = p.size;
    const s = new Uint32Array([n, slot, state.decay.has(k) && hp.weightDecay > 0 ? 1 : 0, 0]);
    device.queue.writeBuffer(plan.slots[slot], 0, s);
    return { n, slot, g: bufferOf(backend, grads.get(k)!), p: bufferOf(backend, p), m: bufferOf(backend, state.m.get(k)!), v: bufferOf(backend, state.v.get(k)!) };
  });
  // Pass 1: each gradient's sum of squares. Pass 2 (after, so every partial is written): the updates.
  let pass = enc.beginComputePass();
  pass.setPipeline(plan.sumsq);
  for (const w of work) {
    pass.setBindGroup(0, entries(plan.sumsq, [[1, plan.slots[w.slot]], [2, plan.partials], [3, w.g]]));
    pass.dispatchWorkgroups(1);
  }
  pass.end();
  pass = enc.beginComputePass();
  pass.setPipeline(plan.update);
  for (const w of work) {
    const groups = Math.ceil(w.n / WG);
    const x = Math.min(groups, 65535);
    pass.setBindGroup(0, entries(plan.update, [[0, plan.glob], [1, plan.slots[w.slot]], [2, plan.partials], [3, w.g], [4, w.p], [5, w.m], [6, w.v]]));
    pass.dispatchWorkgroups(x, Math.ceil(groups / x), 1);
  }
  pass.setPipeline(plan.norm);
  pass.setBindGroup(0, entries(plan.norm, [[0, plan.glob], [2, plan.partials], [7, plan.normOut]]));
  pass.dispatchWorkgroups(1);
  pass.end();
  device.queue.submit([enc.finish()]);

  // The buffers changed under tf: drop any CPU copy it cached from an earlier read.
  for (const [k, p] of active) {
    for (const x of [p, state.m.get(k)!, state.v.get(k)!]) {
      const d = backend.tensorMap.get(x.dataId);
      if (d) d.values = null;
    }
  }
  // A copy of ‖g‖ as a tf scalar (copied, so the next step may overwrite normOut).
  return tf.tensor({ buffer: plan.normOut }, [], 'float32') as tf.Scalar;
}
