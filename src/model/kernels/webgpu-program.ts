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
