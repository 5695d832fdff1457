/**
 * Fused inference kernels for the WebGPU backend. On the GPU host a TF.js WebGPU op costs ~80-300 µs
 * to dispatch whatever its size, and a JS number in an op becomes an upload (~500 µs); a Mamba layer
 * written as tf ops is ~50 of them. These programs do each elementwise chain in one dispatch, read
 * their inputs at column offsets of the packed in_proj output (no split copies) and take scalars as
 * uniforms:
 *   - rowNorm: (x · silu(z))?, RMS-normalised per group?, · w?  (the block RMSNorm, Mamba-1's gate,
 *     Mamba-2's gated RMSNorm)
 *   - convSilu: depthwise causal conv1d + bias + SiLU
 *   - softplusCols: softplus(x + bias), clipped (Δ)
 * They are forward-only (no gradients): the model uses them only for inference (MixerOptions.fused).
 */
import * as tf from '@tensorflow/tfjs';
import { grid, WGSL_ACTIVATIONS, wgslReduce, type Program, type Uniform, type WebGPUBackendLike } from './webgpu-program.js';

let enabled = true;

/** Turn the fused inference kernels off (benchmarks compare both paths); returns the old setting. */
export function setFusedKernels(on: boolean): boolean {
  const old = enabled;
  enabled = on;
  return old;
}

/** Whether inference should use these kernels now (the current backend is webgpu and they are on). */
export function fusedAvailable(): boolean {
  return enabled && tf.getBackend() === 'webgpu';
}

const i32 = (v: number): Uniform => ({ type: 'int32', data: [v] });
const f32 = (v: number): Uniform => ({ type: 'float32', data: [v] });

export function runProgram(program: Program, inputs: tf.Tensor[], uniforms: Uniform[]): tf.Tensor {
  const backend = tf.backend() as unknown as WebGPUBackendLike;
  const info = backend.runWebGPUProgram(program, inputs, 'float32', uniforms);
  return tf.engine().makeTensorFromTensorInfo(info);
}

export const WG_INDEX = 'i32(workgroupId.x + workgroupId.y * numWorkgroups.x)';


const NORM_WG = 128;

export interface RowNormOptions {
  /** Columns per row of x (its last dim) and the first column read (default: all, 0). */
  xStride?: number;
  xOffset?: number;
  /** Gate: multiply by silu(z) first; z is read at the same column of a [rows, zStride] tensor from zOffset. */
  z?: tf.Tensor;
  zStride?: number;
  zOffset?: number;
  /** RMS-normalise (default true) over groups of `width / groups` columns with this epsilon. */
  norm?: boolean;
  eps?: number;
  groups?: number;
  /** Elementwise weight [width]. */
  weight?: tf.Tensor;
}

/**
 * rows × width output from x [..., xStride] (columns xOffset..xOffset+width): optionally gated by
 * silu(z), RMS-normalised per group, scaled by weight. One workgroup per (row, group).
 */
export function rowNorm(x: tf.Tensor, width: number, outShape: number[], o: RowNormOptions = {}): tf.Tensor {
  const xStride = o.xStride ?? x.shape[x.shape.length - 1]!;
  const rows = x.size / xStride;
  const G = o.groups ?? 1;
  const W = width / G;
  const norm = o.norm ?? true;
  const gate = o.z !== undefined;
  const hasW = o.weight !== undefined;
  const names = ['X', ...(gate ? ['Z'] : []), ...(hasW ? ['Wt'] : [])];
  const program: Program = {
    variableNames: names,
    outputShape: outShape,
    shaderKey: `mimetic_rownorm_${norm}_${gate}_${hasW}`,
    dispatchLayout: { x: [0] },
    dispatch: grid(rows * G),
    workgroupSize: [NORM_WG, 1, 1],
    uniforms: 'nRows : i32, width : i32, groups : i32, xStride : i32, xOff : i32, zStride : i32, zOff : i32, eps : f32,',
    size: false,
    getUserCode: () => `
      ${WGSL_ACTIVATIONS}
      ${wgslReduce(NORM_WG)}
      fn val(r : i32, c : i32) -> f32 {
        var v = X[r * uniforms.xStride + uniforms.xOff + c];
        ${gate ? 'v = v * silu(Z[r * uniforms.zStride + uniforms.zOff + c]);' : ''}
        return v;
      }
      fn main(index : i32) {
        let wg = ${WG_INDEX};
        let r = wg / uniforms.groups;
        let g = wg - r * uniforms.groups;
        let lid = i32(localId.x);
        let c0 = g * uniforms.width;
        var scale = 1.0;
        ${norm ? `
        var s = 0.0;
        if (r < uniforms.nRows) {
          for (var c = lid; c < uniforms.width; c = c + ${NORM_WG}) { let v = val(r, c0 + c); s = s + v * v; }
        }
        scale = inverseSqrt(wgSum(s, u32(lid)) / f32(uniforms.width) + uniforms.eps);` : ''}
        if (r >= uniforms.nRows) { return; }
        let total = uniforms.width * uniforms.groups;
        for (var c = lid; c < uniforms.width; c = c + ${NORM_WG}) {
          var v = val(r, c0 + c) * scale;
          ${hasW ? 'v = v * Wt[c0 + c];' : ''}
          setOutputAtIndex(r * total + c0 + c, v);
        }
      }`,
  };
  const inputs = [x, ...(gate ? [o.z!] : []), ...(hasW ? [o.weight!] : [])];
  return runProgram(program, inputs, [i32(rows), i32(W), i32(G), i32(xStride), i32(o.xOffset ?? 0), i32(o.zStride ?? 0), i32(o.zOffset ?? 0), f32(o.eps ?? 0)]);
}

/** RMSNorm over the last dim with an optional weight (as mamba.ts rmsNorm). */
export function rmsNormFused(x: tf.Tensor, w: tf.Tensor | undefined, eps: number): tf.Tensor {
  const D = x.shape[x.shape.length - 1]!;
  return rowNorm(x, D, x.shape, { eps, weight: w });
}

const WG = 256;

/**
 * A program with one thread per element `index` < `total` (the first uniform, declared here):
 * `body` runs inside main with `index` in range; `prelude` holds helper functions.
 */
export function flatProgram(shaderKey: string, variableNames: string[], outputShape: number[], total: number, uniforms: string, body: string, prelude = ''): Program {
  return {
    variableNames,
    outputShape,
    shaderKey,
    dispatchLayout: { x: [0] },
    dispatch: grid(Math.ceil(total / WG)),
    workgroupSize: [WG, 1, 1],
    uniforms: `total : i32, ${uniforms}`,
    size: false,
    getUserCode: () => `${prelude}
      fn main(index0 : i32) {
        let index = ${WG_INDEX} * ${WG} + i32(localId.x);
        if (index >= uniforms.total) { return; }
        ${body}
      }`,
  };
}

/**
 * Depthwise causal conv1d + bias + SiLU over columns [off, off + C) of x [B, L, stride]: the
 * channels of in_proj's output that feed the conv. w [C, 1, K], b [C] → [B, L, C].
 */
export function convSiluFused(x: tf.Tensor3D, off: number, C: number, w: tf.Tensor, b?: tf.Tensor): tf.Tensor3D {
  const [B, L, stride] = x.shape;
  const K = w.shape[2]!;
  const total = B * L * C;
  const program = flatProgram(`mimetic_convsilu_${K}_${!!b}`, ['X', 'Wc', ...(b ? ['Bc'] : [])], [B, L, C], total, 'seqLen : i32, chans : i32, xStride : i32, xOff : i32,', `
        let c = index % uniforms.chans;
        let bt = index / uniforms.chans;
        let t = bt % uniforms.seqLen;
        var acc = ${b ? 'Bc[c]' : '0.0'};
        for (var k = 0; k < ${K}; k = k + 1) {
          let tt = t - ${K - 1} + k;
          if (tt >= 0) { acc = acc + X[(bt - t + tt) * uniforms.xStride + uniforms.xOff + c] * Wc[c * ${K} + k]; }
        }
        setOutputAtIndex(index, silu(acc));`, WGSL_ACTIVATIONS);
  return runProgram(program, [x, w, ...(b ? [b] : [])], [i32(total), i32(L), i32(C), i32(stride), i32(off)]) as tf.Tensor3D;
}

/**
 * Δ = clip(softplus(x + bias)) over columns [off, off + C) of x [B, L, stride] → [B, L, C]. softplus is
 * max(v, 0) + log1p(exp(−|v|)) with an exact log1p (small Δ keeps its relative precision).
 */
export function softplusFused(x: tf.Tensor3D, off: number, C: number, bias?: tf.Tensor, clip?: [number, number]): tf.Tensor3D {
  const [B, L, stride] = x.shape;
  const total = B * L * C;
  const program = flatProgram(`mimetic_softplus_${!!bias}_${!!clip}`, ['X', ...(bias ? ['Bias'] : [])], [B, L, C], total, 'chans : i32, xStride : i32, xOff : i32, lo : f32, hi : f32,', `
        let c = index % uniforms.chans;
        let r = index / uniforms.chans;
        let v = X[r * uniforms.xStride + uniforms.xOff + c]${bias ? ' + Bias[c]' : ''};
        var sp = softplus(v);
        ${clip ? 'sp = min(max(sp, uniforms.lo), uniforms.hi);' : ''}
        setOutputAtIndex(index, sp);`, WGSL_ACTIVATIONS);
  const [lo, hi] = clip ?? [0, 0];
  return runProgram(program, [x, ...(bias ? [bias] : [])], [i32(total), i32(C), i32(stride), i32(off), f32(lo), f32(Math.min(hi, 3.4e38))]) as tf.Tensor3D;
}

// ---------------------------------------------------------------------------------------------
// Differentiable conv + SiLU (training on webgpu): the tf-op conv is ~20 ops forward and ~40
// backward per layer (pad, K slices, products, sums and their gradients); this is 1 forward and 3
// backward dispatches. Backward: gpre = dy · silu'(pre) (pre recomputed), dx = Σ_k w[c, k] ·
// gpre[t + K − 1 − k], and dw / db summed over (batch, time) by one workgroup per (channel, tap).

function convGradPre(x: tf.Tensor3D, w: tf.Tensor, b: tf.Tensor | undefined, dy: tf.Tensor): tf.Tensor3D {
  const [B, L, C] = x.shape;
  const K = w.shape[2]!;
  const total = B * L * C;
  const program = flatProgram(`mimetic_convsilu_gpre_${K}_${!!b}`, ['X', 'Wc', 'Dy', ...(b ? ['Bc'] : [])], [B, L, C], total, 'seqLen : i32, chans : i32,', `
        let c = index % uniforms.chans;
        let bt = index / uniforms.chans;
        let t = bt % uniforms.seqLen;
        var pre = ${b ? 'Bc[c]' : '0.0'};
        for (var k = 0; k < ${K}; k = k + 1) {
          let tt = t - ${K - 1} + k;
          if (tt >= 0) { pre = pre + X[(bt - t + tt) * uniforms.chans + c] * Wc[c * ${K} + k]; }
        }
        setOutputAtIndex(index, Dy[index] * dsilu(pre));`, WGSL_ACTIVATIONS);
  return runProgram(program, [x, w, dy, ...(b ? [b] : [])], [i32(total), i32(L), i32(C)]) as tf.Tensor3D;
}

function convGradX(gpre: tf.Tensor3D, w: tf.Tensor): tf.Tensor3D {
  const [B, L, C] = gpre.shape;
  const K = w.shape[2]!;
  const total = B * L * C;
  const program = flatProgram(`mimetic_convsilu_gx_${K}`, ['G', 'Wc'], [B, L, C], total, 'seqLen : i32, chans : i32,', `
        let c = index % uniforms.chans;
        let bt = index / uniforms.chans;
        let t = bt % uniforms.seqLen;
        var acc = 0.0;
        for (var k = 0; k < ${K}; k = k + 1) {
          let tt = t + ${K - 1} - k;
          if (tt < uniforms.seqLen) { acc = acc + G[(bt - t + tt) * uniforms.chans + c] * Wc[c * ${K} + k]; }
        }
        setOutputAtIndex(index, acc);`);
  return runProgram(program, [gpre, w], [i32(total), i32(L), i32(C)]) as tf.Tensor3D;
}

/** [C, K + 1]: dw[c, k] for k < K, db[c] at k = K; one workgroup per entry, reduced over (batch, time). */
function convGradW(gpre: tf.Tensor3D, x: tf.Tensor3D, K: number): tf.Tensor2D {
  const [B, L, C] = gpre.shape;
  const program: Program = {
    variableNames: ['G', 'X'],
    outputShape: [C, K + 1],
    shaderKey: `mimetic_convsilu_gw_${K}`,
    dispatchLayout: { x: [0] },
    dispatch: grid(C * (K + 1)),
    workgroupSize: [NORM_WG, 1, 1],
    uniforms: 'rows : i32, seqLen : i32, chans : i32,',
    size: false,
    getUserCode: () => `
      ${wgslReduce(NORM_WG)}
      fn main(index0 : i32) {
        let e = ${WG_INDEX};
        let c = e / ${K + 1};
        let k = e - c * ${K + 1};
        let lid = i32(localId.x);
        var s = 0.0;
        if (c < uniforms.chans) {
          for (var r = lid; r < uniforms.rows; r = r + ${NORM_WG}) {
            let g = G[r * uniforms.chans + c];
            if (k == ${K}) { s = s + g; } else {
              let t = r % uniforms.seqLen;
              let tt = t - ${K - 1} + k;
              if (tt >= 0) { s = s + g * X[(r - t + tt) * uniforms.chans + c]; }
            }
          }
        }
        let tot = wgSum(s, u32(lid));
        if (lid == 0 && c < uniforms.chans) { setOutputAtIndex(e, tot); }
      }`,
  };
  return runProgram(program, [gpre, x], [i32(B * L), i32(L), i32(C)]) as tf.Tensor2D;
}

/** silu(causalConv1d(x, w, b)) for x [B, L, C] contiguous, w [C, 1, K]; differentiable in x, w and b. */
export function convSiluTrainable(x: tf.Tensor3D, w: tf.Tensor, b?: tf.Tensor): tf.Tensor3D {
  const C = x.shape[2];
  const K = w.shape[2]!;
  const grads = (dy: tf.Tensor, xs: tf.Tensor[]): tf.Tensor[] => tf.tidy(() => {
    const [xx, ww, bb] = xs as [tf.Tensor3D, tf.Tensor, tf.Tensor | undefined];
    const gpre = convGradPre(xx, ww, bb, dy);
    const dx = convGradX(gpre, ww);
    const dwb = convGradW(gpre, xx, K);
    const dw = dwb.slice([0, 0], [C, K]).reshape(ww.shape);
    return bb ? [dx, dw, dwb.slice([0, K], [C, 1]).reshape(bb.shape)] : [dx, dw];
  });
  const n = b ? 3 : 2;
  const f = tf.customGrad((...args: (tf.Tensor | ((ts: tf.Tensor[]) => void))[]) => {
    const xs = args.slice(0, n) as tf.Tensor[];
    (args[n] as (ts: tf.Tensor[]) => void)(xs);
    return { value: convSiluFused(xs[0] as tf.Tensor3D, 0, C, xs[1]!, xs[2]), gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => grads(dy as tf.Tensor, saved) };
  });
  return (b ? f(x, w, b) : f(x, w)) as tf.Tensor3D;
}
