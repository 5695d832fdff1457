/**
 * UnsortedSegmentSum for tfjs-backend-wasm, which lacks it: the gradient of tf.gather (the
 * embedding lookup) is a segment sum, so without this kernel no model can train on wasm. The sum
 * runs in JavaScript over the backend's heap views, in index order (deterministic, so a resumed
 * run on wasm repeats the same bits). Registered only when the wasm backend is loaded and has none.
 */
import * as tf from '@tensorflow/tfjs';

interface WasmBackendLike {
  readSync(dataId: object): ArrayLike<number>;
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: Float32Array): tf.TensorInfo;
}

/** out[s, …] = Σ over i with ids[i] = s of x[i, …]; ids outside [0, numSegments) are dropped (TF's rule). */
export function segmentSum(x: ArrayLike<number>, ids: ArrayLike<number>, numSegments: number, inner: number): Float32Array {
  const out = new Float32Array(numSegments * inner);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]!;
    if (s < 0 || s >= numSegments) continue;
    const xo = i * inner, oo = s * inner;
    for (let j = 0; j < inner; j++) out[oo + j]! += x[xo + j]!;
  }
  return out;
}

/** Register the kernel on wasm (idempotent; call after the wasm backend is registered). */
export function registerWasmSegmentSum(): void {
  if (!tf.findBackendFactory('wasm') || tf.getKernel('UnsortedSegmentSum', 'wasm')) return;
  tf.registerKernel({
    kernelName: 'UnsortedSegmentSum',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
      const numSegments = (attrs as { numSegments: number }).numSegments;
      const b = backend as unknown as WasmBackendLike;
      const idsRank = segmentIds.shape.length;
      const outer = segmentIds.shape.reduce((a, c) => a * c, 1);
      const innerShape = x.shape.slice(idsRank);
      const inner = innerShape.reduce((a, c) => a * c, 1);
      const out = segmentSum(b.readSync(x.dataId), b.readSync(segmentIds.dataId), numSegments, outer === 0 ? 0 : inner);
      return b.makeOutput([numSegments, ...innerShape], 'float32', undefined, out);
    },
  });
}
