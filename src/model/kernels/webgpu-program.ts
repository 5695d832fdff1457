/**
 * The part of tfjs-backend-webgpu's program interface that mimetic's WGSL kernels use (see the
 * package's webgpu_program.d.ts); typed here so kernels need no deep import into its dist/.
 */
import type * as tf from '@tensorflow/tfjs';

export interface Program {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms: string;
  size: boolean;
  getUserCode: () => string;
}

export type Uniform = { type: 'int32' | 'float32'; data: number[] };

export interface WebGPUBackendLike {
  runWebGPUProgram(program: Program, inputs: tf.TensorInfo[], dtype: tf.DataType, uniforms?: Uniform[]): tf.TensorInfo;
  device: { limits: { maxStorageBufferBindingSize: number } };
}

/** A 1-D grid of `n` workgroups laid out in 2-D when it exceeds the per-dimension limit (65535). */
export function grid(n: number): [number, number, number] {
  const x = Math.max(1, Math.min(n, 65535));
  return [x, Math.ceil(n / x), 1];
}

/**
 * WGSL activations shared by every kernel (inference, autodiff and the compiled training step), so
 * that all paths compute them alike: sigmoid, SiLU and its derivative, an exact log1p, softplus.
 */
export const WGSL_ACTIVATIONS = `
fn sigm(x : f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn silu(x : f32) -> f32 { return x / (1.0 + exp(-x)); }
fn dsilu(x : f32) -> f32 { let s = sigm(x); return s * (1.0 + x * (1.0 - s)); }
fn log1pExact(e : f32) -> f32 {
  let u = 1.0 + e;
  if (u == 1.0) { return e; }
  return log(u) * (e / (u - 1.0));
}
fn softplus(x : f32) -> f32 { return max(x, 0.0) + log1pExact(exp(-abs(x))); }
`;

/**
 * The one workgroup reduction of the WGSL kernels: wgReduce(v, li, isMax) is the sum (or max) of v
 * over the workgroup's `n` threads (a power of two), every thread getting the result; wgSum(v, li)
 * the sum. Workgroup memory wgRed of n floats. Call it from uniform control flow (it has barriers).
 */
export function wgslReduce(n: number): string {
  if (!(n >= 1 && (n & (n - 1)) === 0)) throw new Error(`wgslReduce: ${n} threads is not a power of two`);
  return `
var<workgroup> wgRed : array<f32, ${n}>;
fn wgReduce(v : f32, li : u32, isMax : bool) -> f32 {
  wgRed[li] = v;
  workgroupBarrier();
  for (var k = ${n / 2}u; k > 0u; k = k / 2u) {
    if (li < k) { if (isMax) { wgRed[li] = max(wgRed[li], wgRed[li + k]); } else { wgRed[li] = wgRed[li] + wgRed[li + k]; } }
    workgroupBarrier();
  }
  let s = wgRed[0];
  workgroupBarrier();
  return s;
}
fn wgSum(v : f32, li : u32) -> f32 { return wgReduce(v, li, false); }
`;
}
