/**
 * The Mamba-1 / Falcon-Mamba / Mamba-2 forward pass in TensorFlow.js, following transformers'
 * reference paths (MambaMixer.slow_forward, FalconMambaMixer, Mamba2Mixer.torch_forward) op for
 * op, in float32: the layer functions. Two entry points share them:
 *   - MambaLM (lm.ts): every weight a tf.Variable, differentiable (training);
 *   - streamCheckpoint (stream.ts): streams a checkpoint one layer at a time (inference, audits).
 */
import * as tf from '@tensorflow/tfjs';
import type { MambaConfig } from '../checkpoint/config.js';
import { UserError } from '../util/errors.js';
import { preview } from '../util/text.js';
import { selectiveScan, ssdScan } from './kernels/scan.js';
import './kernels/scan-cpu.js'; // registers the CPU kernels whenever the model is imported
import type { LayerParams } from './weights.js';
import { convSiluFused, convSiluTrainable, fusedAvailable, rmsNormFused, rowNorm, softplusFused } from './kernels/fused-webgpu.js';

/** Mimetic A parameterisation for training: A = −exp(−c · A_log_param), stored as `mixer.A_log_param`. */
export type AParam = { c: number } | undefined;

export const A_LOG_PARAM = 'mixer.A_log_param';

/** A of one layer: [Din, N] (Mamba-1) or [H] (Mamba-2). The one place the parameterisation lives. */
export function layerA(p: LayerParams, aParam?: AParam): tf.Tensor {
  return tf.tidy(() => (aParam ? tf.neg(tf.exp(tf.mul(p[A_LOG_PARAM]!, -aParam.c))) : tf.neg(tf.exp(p['mixer.A_log']!))));
}

/** Standard A_log from the stored A_log_param (A_log = −c · A_log_param) and back. */
export function aLogFromParam(v: Float32Array, c: number): Float32Array {
  return v.map((x) => -c * x);
}
export function aParamFromALog(v: Float32Array, c: number): Float32Array {
  return v.map((x) => -x / c);
}

/** RMSNorm with weight (computed in float32, as transformers does). */
export function rmsNorm(x: tf.Tensor, w: tf.Tensor | undefined, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const n = tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps)));
    return w ? tf.mul(n, w) : n;
  });
}

/**
 * x [B, L, in] · Wᵀ (+ b), W [out, in] as stored by torch.nn.Linear — or W already transposed
 * ([in, out]) when `transposed`. On wasm, matMul's transposeA/transposeB paths are ~5–10× slower
 * than an explicit transpose followed by a plain matMul, so there the transposes are explicit,
 * in the gradient too (autodiff of matMul would use both flags).
 */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor, transposed = false): tf.Tensor3D {
  return tf.tidy(() => {
    const [B, L, I] = x.shape as [number, number, number];
    const x2 = x.reshape([B * L, I]);
    let y: tf.Tensor;
    if (tf.getBackend() === 'wasm') y = plainMatMul(x2, transposed ? w : tf.transpose(w));
    else if (transposed) y = tf.matMul(x2, w);
    else y = tf.matMul(x2, w, false, true);
    if (b) y = tf.add(y, b);
    return y.reshape([B, L, y.shape[1]!]);
  });
}

/** a [M, K] · b [K, N] whose gradients are plain products of explicit transposes (for wasm). */
const plainMatMul = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, b, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor | tf.Tensor[], [sa, sb]: tf.Tensor[]) => [tf.matMul(dy as tf.Tensor2D, tf.transpose(sb!) as tf.Tensor2D), tf.matMul(tf.transpose(sa!) as tf.Tensor2D, dy as tf.Tensor2D)],
  };
}) as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor2D;

/** A named Linear layer of a block: uses the pre-transposed `<name>.weight.T` when present. */
function projection(x: tf.Tensor, p: LayerParams, name: string, bias = true): tf.Tensor3D {
  const b = bias ? p[name + '.bias'] : undefined;
  const wt = p[name + '.weight.T'];
  return wt ? linear(x, wt, b, true) : linear(x, p[name + '.weight']!, b);
}

/** Depthwise causal conv1d: torch pads K−1 on both sides and keeps the first L outputs. x [B, L, C], w [C, 1, K]. */
export function causalConv1d(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor3D {
  return tf.tidy(() => {
    const [B, L, C] = x.shape as [number, number, number];
    const K = w.shape[2]!;
    const wt = w.reshape([C, K]).transpose(); // [K, C]
    const xp = tf.pad(x, [[0, 0], [K - 1, 0], [0, 0]]);
    let y: tf.Tensor = b ? b.reshape([1, 1, C]) : tf.zeros([1, 1, C]);
    for (let k = 0; k < K; k++) y = tf.add(y, tf.mul(xp.slice([0, k, 0], [B, L, C]), wt.slice([k, 0], [1, C]).reshape([1, 1, C])));
    return y as tf.Tensor3D;
  });
}

/** SiLU(causal conv), differentiable; one WGSL kernel each way on webgpu (fused-webgpu.ts). */
function convSilu(x: tf.Tensor3D, w: tf.Tensor, b?: tf.Tensor): tf.Tensor3D {
  if (fusedAvailable()) return convSiluTrainable(x, w, b);
  return tf.tidy(() => {
    const xc = causalConv1d(x, w, b);
    return tf.mul(xc, tf.sigmoid(xc)) as tf.Tensor3D;
  });
}

/**
 * A layer's scan inputs. Mamba-1: x, delta [B, L, Din]; A [Din, N]; B, C [B, L, N]; D [Din].
 * Mamba-2: x [B, L, H, P]; delta [B, L, H]; A [H]; B, C [B, L, G, N]; D [H].
 */
export interface ScanInternals {
  x: tf.Tensor;
  delta: tf.Tensor;
  A: tf.Tensor;
  B: tf.Tensor;
  C: tf.Tensor;
  D: tf.Tensor;
}

export interface MixerOptions {
  aParam?: AParam;
  /** Return x, Δ, A, B, C, D (the scan's inputs) along with the output. */
  internals?: boolean;
  /**
   * Inference only (no gradients): use the backend's fused kernels where it has them (webgpu:
   * kernels/fused-webgpu.ts). Same numbers as the tf-op path to float32 rounding.
   */
  fused?: boolean;
}

export interface MixerResult {
  out: tf.Tensor3D;
  internals?: ScanInternals;
}

function softplus(x: tf.Tensor): tf.Tensor {
  // Stable form max(x, 0) + log1p(exp(−|x|)): equal in float32 to torch's F.softplus (which
  // returns x above its threshold 20, where log1p(exp(−20)) ≈ 2e-9 is below float32 resolution),
  // never overflows, and differentiable by tf.js autodiff everywhere.
  return tf.tidy(() => tf.add(tf.relu(x), tf.log1p(tf.exp(tf.neg(tf.abs(x))))));
}

/**
 * Mamba-1 / Falcon-Mamba mixer (MambaMixer.slow_forward). h [B, L, hidden] → [B, L, hidden].
 * With opts.fused (webgpu inference) conv+SiLU and the gate read in_proj's output in place, and the
 * Δ bias and softplus are one kernel; the math is the same.
 */
export function mamba1Mixer(c: MambaConfig, p: LayerParams, h: tf.Tensor3D, opts: MixerOptions = {}): MixerResult {
  const Din = c.intermediateSize;
  const N = c.stateSize;
  const R = c.timeStepRank!;
  const fused = (opts.fused ?? false) && fusedAvailable();
  let internals: ScanInternals | undefined;
  const out = tf.tidy(() => {
    const [Bsz, L] = h.shape;
    const proj = projection(h, p, 'mixer.in_proj');
    const convW = p['mixer.conv1d.weight']!, convB = p['mixer.conv1d.bias'];
    const u = fused ? convSiluFused(proj, 0, Din, convW, convB) : convSilu(proj.slice([0, 0, 0], [Bsz, L, Din]), convW, convB);
    const ssm = projection(u, p, 'mixer.x_proj', false);
    let [dt, Bm, Cm] = tf.split(ssm, [R, N, N], 2) as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
    if (c.arch === 'falcon_mamba') {
      // Falcon-Mamba: weight-free RMS norms on B, C and the Δ projection input.
      const eps = c.mixerRmsEps ?? 1e-6;
      const norm = fused ? rmsNormFused : rmsNorm;
      Bm = norm(Bm, undefined, eps) as tf.Tensor3D;
      Cm = norm(Cm, undefined, eps) as tf.Tensor3D;
      dt = norm(dt, undefined, eps) as tf.Tensor3D;
    }
    const delta = (fused ? softplusFused(projection(dt, p, 'mixer.dt_proj', false), 0, Din, p['mixer.dt_proj.bias']) : softplus(projection(dt, p, 'mixer.dt_proj'))) as tf.Tensor3D;
    const A = layerA(p, opts.aParam) as tf.Tensor2D;
    const D = p['mixer.D']! as tf.Tensor1D;
    const y = selectiveScan(u, delta, A, Bm, Cm, D);
    let gated: tf.Tensor;
    if (fused) gated = rowNorm(y, Din, [Bsz, L, Din], { norm: false, z: proj, zStride: 2 * Din, zOffset: Din });
    else {
      const gate = proj.slice([0, 0, Din], [Bsz, L, Din]);
      gated = tf.mul(y, tf.mul(gate, tf.sigmoid(gate)));
    }
    if (opts.internals) {
      internals = { x: u, delta, A, B: Bm, C: Cm, D: tf.clone(D) };
      for (const t of Object.values(internals)) tf.keep(t);
    }
    return projection(gated, p, 'mixer.out_proj');
  });
  return { out, internals };
}

/**
 * Mamba-2 mixer (Mamba2Mixer.torch_forward, gated RMSNorm per group as in mamba_ssm). With
 * opts.fused: conv+SiLU, softplus+clip and gate+group RMSNorm+weight as fused kernels.
 */
export function mamba2Mixer(c: MambaConfig, p: LayerParams, h: tf.Tensor3D, opts: MixerOptions = {}): MixerResult {
  const Din = c.intermediateSize;
  const N = c.stateSize;
  const H = c.numHeads!;
  const P = c.headDim!;
  const G = c.nGroups ?? 1;
  const convDim = Din + 2 * G * N;
  const fused = (opts.fused ?? false) && fusedAvailable();
  let internals: ScanInternals | undefined;
  const out = tf.tidy(() => {
    const [Bsz, L] = h.shape;
    const proj = projection(h, p, 'mixer.in_proj');
    const width = proj.shape[2];
    // in_proj packs [d_mlp, d_mlp, z (Din), xBC (convDim), dt (H)].
    const dMlp = (width - 2 * Din - 2 * G * N - H) / 2;
    const zOff = 2 * dMlp;
    const xOff = zOff + Din;
    const dtOff = xOff + convDim;
    const cols = (off: number, n: number) => proj.slice([0, 0, off], [Bsz, L, n]);
    const convW = p['mixer.conv1d.weight']!, convB = p['mixer.conv1d.bias'];
    const xBC = fused ? convSiluFused(proj, xOff, convDim, convW, convB) : convSilu(cols(xOff, convDim), convW, convB);
    const [x, Bm, Cm] = tf.split(xBC, [Din, G * N, G * N], 2);
    const [lo, hi] = c.timeStepLimit ?? [0, Infinity];
    const limited = lo > 0 || hi < Infinity;
    let delta: tf.Tensor3D;
    if (fused) delta = softplusFused(proj, dtOff, H, p['mixer.dt_bias'], limited ? [lo, hi] : undefined);
    else {
      delta = softplus(tf.add(cols(dtOff, H), p['mixer.dt_bias']!)) as tf.Tensor3D;
      if (limited) delta = tf.clipByValue(delta, lo, hi === Infinity ? 3.4e38 : hi);
    }
    const A = layerA(p, opts.aParam) as tf.Tensor1D;
    const D = p['mixer.D']! as tf.Tensor1D;
    const x4 = x.reshape([Bsz, L, H, P]) as tf.Tensor4D;
    const B4 = Bm.reshape([Bsz, L, G, N]) as tf.Tensor4D;
    const C4 = Cm.reshape([Bsz, L, G, N]) as tf.Tensor4D;
    const y = ssdScan(x4, delta, A, B4, C4, D);
    let yn: tf.Tensor;
    if (fused) yn = rowNorm(y, Din, [Bsz, L, Din], { xStride: Din, z: proj, zStride: width, zOffset: zOff, groups: G, eps: c.layerNormEpsilon, weight: p['mixer.norm.weight'] });
    else {
      // MambaRMSNormGated: y · silu(z), then RMS-normalise each group of Din/G channels.
      const gate = cols(zOff, Din);
      const g = tf.mul(y.reshape([Bsz, L, Din]), tf.mul(gate, tf.sigmoid(gate))).reshape([Bsz, L, G, Din / G]);
      yn = tf.mul(rmsNorm(g, undefined, c.layerNormEpsilon).reshape([Bsz, L, Din]), p['mixer.norm.weight']!);
    }
    if (opts.internals) {
      internals = { x: x4, delta, A, B: B4, C: C4, D: tf.clone(D) } as ScanInternals;
      for (const t of Object.values(internals)) tf.keep(t);
    }
    return projection(yn, p, 'mixer.out_proj');
  });
  return { out, internals };
}

export function mixer(c: MambaConfig, p: LayerParams, h: tf.Tensor3D, opts: MixerOptions = {}): MixerResult {
  return c.arch === 'mamba2' ? mamba2Mixer(c, p, h, opts) : mamba1Mixer(c, p, h, opts);
}

export interface BlockResult {
  residual: tf.Tensor3D;
  mixerInput: tf.Tensor3D;
  internals?: ScanInternals;
}

/** Pre-norm residual block: residual + mixer(RMSNorm(residual)), residual in float32. */
export function block(c: MambaConfig, p: LayerParams, residual: tf.Tensor3D, opts: MixerOptions = {}): BlockResult {
  const mixerInput = (opts.fused && fusedAvailable() ? rmsNormFused(residual, p['norm.weight'], c.layerNormEpsilon) : rmsNorm(residual, p['norm.weight'], c.layerNormEpsilon)) as tf.Tensor3D;
  const m = mixer(c, p, mixerInput, opts);
  const next = tf.add(residual, m.out) as tf.Tensor3D;
  m.out.dispose();
  return { residual: next, mixerInput, internals: m.internals };
}

/**
 * Most tokens (rows × length) one run takes: every layer holds several [B, L, d_inner] tensors, so
 * a row of millions of ids would take tens of GB and abort inside the wasm backend.
 */
export const MAX_TOKENS = 65_536;

/** Refuse B·L past MAX_TOKENS, before anything is allocated for it. */
export function checkTokenCount(batch: number, len: number, where: string): void {
  if (batch * len > MAX_TOKENS) {
    throw new UserError(`${where}: ${batch} × ${len} = ${batch * len} tokens, above mimetic's limit of ${MAX_TOKENS} per run; give fewer or shorter sequences`);
  }
}

/** Validate token ids against a vocabulary (also the CLI's check of an ids file). */
export function checkIds(ids: number[][], vocab: number): void {
  if (!Array.isArray(ids) || ids.length === 0) throw new UserError('token ids: empty input; give at least one sequence of at least one token');
  const L = Array.isArray(ids[0]) ? ids[0].length : -1;
  if (L <= 0) throw new UserError('token ids: each sequence must be a non-empty array of integers');
  checkTokenCount(ids.length, L, 'token ids');
  ids.forEach((row, r) => {
    if (!Array.isArray(row) || row.length !== L) throw new UserError(`token ids: row ${r} has ${Array.isArray(row) ? row.length : 'no'} tokens but row 0 has ${L}; all sequences must have the same length`);
    row.forEach((v, t) => {
      if (!Number.isInteger(v) || v < 0 || v >= vocab) throw new UserError(`token ids: id ${preview(v)} at row ${r}, position ${t} is outside the vocabulary [0, ${vocab - 1}]`);
    });
  });
}
