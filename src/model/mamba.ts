/**
 * The Mamba-1 / Falcon-Mamba / Mamba-2 forward pass in TensorFlow.js, following transformers'
 * reference paths (MambaMixer.slow_forward, FalconMambaMixer, Mamba2Mixer.torch_forward) op for
 * op, in float32. Two entry points share the same layer code:
 *   - MambaLM: every weight a tf.Variable, differentiable (training);
 *   - runCheckpoint: streams a checkpoint one layer at a time (inference, audits of large models).
 */
import * as tf from '@tensorflow/tfjs';
import type { MambaConfig } from '../checkpoint/config.js';
import type { Checkpoint } from '../checkpoint/checkpoint.js';
import type { Tensor } from '../checkpoint/safetensors.js';
import { UserError } from '../util/errors.js';
import { selectiveScan, ssdScan } from './kernels/scan.js';
import './kernels/scan-cpu.js'; // registers the CPU kernels whenever the model is imported
import { EMBEDDING, LM_HEAD, NORM_F, layerName, layerParamsOf, transpose2d, parseLayerName, toPlainAsync, type LayerParams, type WeightMap } from './weights.js';
import { attentionSummaries, channelAttention, type ScanInternals } from '../analysis/attention.js';
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
 * ([in, out]) when `transposed`. On wasm, matMul's transposeB path is ~10× slower than an explicit
 * transpose followed by a plain matMul, so the transpose is done explicitly there.
 */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor, transposed = false): tf.Tensor3D {
  return tf.tidy(() => {
    const [B, L, I] = x.shape as [number, number, number];
    const x2 = x.reshape([B * L, I]);
    let y: tf.Tensor;
    if (transposed) y = tf.matMul(x2, w);
    else if (tf.getBackend() === 'wasm') y = tf.matMul(x2, tf.transpose(w));
    else y = tf.matMul(x2, w, false, true);
    if (b) y = tf.add(y, b);
    return y.reshape([B, L, y.shape[1]!]);
  });
}

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

function checkIds(ids: number[][], vocab: number): void {
  if (!Array.isArray(ids) || ids.length === 0) throw new UserError('token ids: empty input; give at least one sequence of at least one token');
  const L = Array.isArray(ids[0]) ? ids[0].length : -1;
  if (L <= 0) throw new UserError('token ids: each sequence must be a non-empty array of integers');
  ids.forEach((row, r) => {
    if (!Array.isArray(row) || row.length !== L) throw new UserError(`token ids: row ${r} has ${Array.isArray(row) ? row.length : 'no'} tokens but row 0 has ${L}; all sequences must have the same length`);
    row.forEach((v, t) => {
      if (!Number.isInteger(v) || v < 0 || v >= vocab) throw new UserError(`token ids: id ${JSON.stringify(v)} at row ${r}, position ${t} is outside the vocabulary [0, ${vocab - 1}]`);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Differentiable model

let modelCounter = 0;

export interface MambaLMOptions {
  aParam?: AParam;
  /** Variables trainable (default true). */
  trainable?: boolean;
}

export interface LMForward {
  logits: tf.Tensor3D;
  /**
   * transformers' (5.x) MambaModel hidden_states, as the fixtures hold them: i < numLayers is the
   * residual stream after layer i, and the last (index numLayers) is the output of norm_f.
   */
  hiddenStates: tf.Tensor3D[];
}

/** A Mamba language model whose weights are tf.Variables keyed by HF name. */
export class MambaLM {
  /** HF name (`backbone.layers.0.mixer.A_log`, or `…mixer.A_log_param` with aParam) → variable. */
  readonly variables = new Map<string, tf.Variable>();
  readonly aParam: AParam;
  private readonly layerCache: LayerParams[] = [];

  private constructor(readonly config: MambaConfig, aParam: AParam) {
    this.aParam = aParam;
  }

  /** Build from a config and a weight map by HF name (A_log as stored; converted when aParam is set). */
  static fromWeights(config: MambaConfig, weights: WeightMap, opts: MambaLMOptions = {}): MambaLM {
    const m = new MambaLM(config, opts.aParam);
    const id = modelCounter++;
    const trainable = opts.trainable ?? true;
    try {
      for (const [name, t] of Object.entries(weights)) {
        if (name === LM_HEAD && config.tiedEmbeddings) continue;
        let key = name;
        let data = t.data;
        const pl = parseLayerName(name);
        if (opts.aParam && pl?.short === 'mixer.A_log') {
          key = layerName(pl.layer, A_LOG_PARAM);
          data = aParamFromALog(t.data, opts.aParam.c);
        }
        const init = tf.tensor(data, t.shape, 'float32');
        m.variables.set(key, tf.variable(init, trainable, `mamba${id}/${key}`));
        init.dispose();
      }
      for (const need of [EMBEDDING, NORM_F, ...(config.tiedEmbeddings ? [] : [LM_HEAD])]) {
        if (!m.variables.has(need)) throw new UserError(`weights: '${need}' is missing; a ${config.arch} model needs it`);
      }
      for (let i = 0; i < config.numLayers; i++) {
        const p: LayerParams = {};
        const prefix = `backbone.layers.${i}.`;
        for (const [k, v] of m.variables) if (k.startsWith(prefix)) p[k.slice(prefix.length)] = v;
        if (!p['norm.weight'] || !(p['mixer.A_log'] || p[A_LOG_PARAM])) throw new UserError(`weights: layer ${i} is incomplete (need norm.weight and mixer.A_log)`);
        m.layerCache.push(p);
      }
    } catch (e) {
      m.dispose();
      throw e;
    }
    return m;
  }

  /** Load every weight of a checkpoint (all in memory). */
  static fromCheckpoint(ckpt: Checkpoint, opts: MambaLMOptions = {}): MambaLM {
    const w: WeightMap = {};
    for (const n of ckpt.names()) w[n] = ckpt.read(n);
    return MambaLM.fromWeights(ckpt.config, w, opts);
  }

  /** Layer i's parameters by short name. */
  layerParams(i: number): LayerParams {
    return this.layerCache[i]!;
  }

  trainableVariables(): tf.Variable[] {
    return [...this.variables.values()].filter((v) => v.trainable);
  }

  /** Logits [B, L, vocab] for int ids [B, L]; differentiable w.r.t. every variable. */
  logits(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const f = this.forward(ids, { hiddenStates: false });
      return f.logits;
    });
  }

  /** Full forward with hidden states (and per-layer mixer internals on request, caller disposes). */
  forward(ids: tf.Tensor2D, opts: { hiddenStates?: boolean; inference?: boolean } = {}): LMForward {
    const keepHidden = opts.hiddenStates ?? true;
    // Inference (no gradients needed): the backend's fused kernels where it has them.
    const fused = (opts.inference ?? false) && fusedAvailable();
    const hidden: tf.Tensor3D[] = [];
    const logits = tf.tidy(() => {
      const emb = this.variables.get(EMBEDDING)!;
      let residual = tf.gather(emb, ids.toInt()) as unknown as tf.Tensor3D;
      for (let i = 0; i < this.config.numLayers; i++) {
        const r = block(this.config, this.layerParams(i), residual, { aParam: this.aParam, fused });
        residual = r.residual;
        if (keepHidden) hidden.push(tf.keep(residual.clone()));
      }
      const normed = (fused ? rmsNormFused(residual, this.variables.get(NORM_F), this.config.layerNormEpsilon) : rmsNorm(residual, this.variables.get(NORM_F), this.config.layerNormEpsilon)) as tf.Tensor3D;
      if (keepHidden) hidden.push(tf.keep(normed.clone()));
      const head = this.config.tiedEmbeddings ? emb : this.variables.get(LM_HEAD)!;
      return linear(normed, head);
    });
    return { logits, hiddenStates: hidden };
  }

  /** Every weight by standard HF name (A_log restored from A_log_param), as plain arrays for saving. */
  toWeights(): WeightMap {
    const out: WeightMap = {};
    for (const [k, v] of this.variables) {
      const pl = parseLayerName(k);
      const data = v.dataSync() as Float32Array;
      if (pl?.short === A_LOG_PARAM && this.aParam) out[layerName(pl.layer, 'mixer.A_log')] = { shape: v.shape.slice(), data: aLogFromParam(data, this.aParam.c) };
      else out[k] = { shape: v.shape.slice(), data: Float32Array.from(data) };
    }
    return out;
  }

  /** As toWeights, reading asynchronously (the WebGPU backend in Node cannot read synchronously). */
  async toWeightsAsync(): Promise<WeightMap> {
    const out: WeightMap = {};
    for (const [k, v] of this.variables) {
      const pl = parseLayerName(k);
      const data = Float32Array.from((await v.data()) as Float32Array);
      if (pl?.short === A_LOG_PARAM && this.aParam) out[layerName(pl.layer, 'mixer.A_log')] = { shape: v.shape.slice(), data: aLogFromParam(data, this.aParam.c) };
      else out[k] = { shape: v.shape.slice(), data };
    }
    return out;
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
    this.variables.clear();
    this.layerCache.length = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Streaming inference over a checkpoint

export type CaptureLevel = 'none' | 'attention' | 'internals';

export interface AttentionMaps {
  /** Implicit attention α averaged over channels (Mamba-1) or heads (Mamba-2) [B, L, L]. */
  attention: Tensor;
  /** exp(A·Σ Δ) averaged over channels and states (Mamba-1) or heads (Mamba-2) [B, L, L]. */
  decay: Tensor;
  /** C_t · B_s (Mamba-2: averaged over heads) [B, L, L]. */
  qk: Tensor;
}

/** Scan inputs as plain arrays (layouts as in ScanInternals: x [B,L,Din] or [B,L,H,P], …). */
export type PlainInternals = Record<keyof ScanInternals, Tensor>;

export interface LayerCapture {
  layer: number;
  /** The mixer's input (after the block's RMSNorm) [B, L, hidden]. */
  mixerInput: Tensor;
  attention?: AttentionMaps;
  /** capture 'internals': x (post-conv, post-SiLU), Δ, A, B, C, D. */
  internals?: PlainInternals;
  /** With RunOptions.channels: α of those channels (Mamba-1) or heads (Mamba-2) [B, channels, L, L]. */
  channelAttention?: Tensor;
}

export interface RunOptions {
  capture?: CaptureLevel;
  /** Layers to capture (default all). */
  layers?: number[];
  /** Called with each captured layer as soon as it is computed (may be async). */
  onLayer?: (i: number, result: LayerCapture) => void | Promise<void>;
  /** Keep captures in the returned result (default true; false with onLayer bounds memory). */
  keepCaptures?: boolean;
  /** Channels (Mamba-1) or heads (Mamba-2) per block in the attention computation. */
  channelBlock?: number;
  /** Skip the logits (saves the vocab × hidden head on large models). */
  skipLogits?: boolean;
  /** Return the hidden states (default true; an audit of a large model needs none of them). */
  hiddenStates?: boolean;
  /** Stop after the last captured layer: no later layers, no norm_f, no logits. */
  stopAfterLastCapture?: boolean;
  /** Also return per-channel (Mamba-1) / per-head (Mamba-2) attention maps of these channels. */
  channels?: number[];
  /** Captured layers get no attention maps (mixer input and internals only; default true). */
  attention?: boolean;
  /** After each layer computed: `done` of `total` layers that will run. */
  onProgress?: (done: number, total: number, layer: number) => void;
}

export interface RunResult {
  logits?: Tensor;
  /** As LMForward.hiddenStates: residual after layer i for i < numLayers, then the norm_f output. */
  hiddenStates: Tensor[];
  layers: LayerCapture[];
}

/**
 * Run a checkpoint on token ids, loading one layer's weights at a time and freeing them before the
 * next, so memory is one layer plus activations.
 */
export async function runCheckpoint(ckpt: Checkpoint, ids: number[][], opts: RunOptions = {}): Promise<RunResult> {
  const c = ckpt.config;
  checkIds(ids, c.vocabSize);
  const capture = opts.capture ?? 'none';
  const captureSet = new Set(opts.layers ?? Array.from({ length: c.numLayers }, (_, i) => i));
  for (const i of captureSet) if (!Number.isInteger(i) || i < 0 || i >= c.numLayers) throw new UserError(`layer ${i} is out of range: the model has layers 0-${c.numLayers - 1}`);
  const nChannels = c.arch === 'mamba2' ? c.numHeads! : c.intermediateSize;
  for (const ch of opts.channels ?? []) {
    if (!Number.isInteger(ch) || ch < 0 || ch >= nChannels) throw new UserError(`channel ${ch} is out of range: the model has ${c.arch === 'mamba2' ? 'heads' : 'channels'} 0-${nChannels - 1}`);
  }
  const keep = opts.keepCaptures ?? true;
  const keepHidden = opts.hiddenStates ?? true;
  const lastLayer = opts.stopAfterLastCapture && capture !== 'none' ? Math.max(...captureSet) : c.numLayers - 1;
  const complete = lastLayer === c.numLayers - 1;
  const result: RunResult = { hiddenStates: [], layers: [] };
  // On webgpu: fused kernels, linear weights used as stored (matMul's transposeB; no JS transpose
  // per load), the tied embedding kept for the head, and hidden states read back after the loop
  // rather than with a host round trip per layer.
  const fused = fusedAvailable();
  const idsT = tf.tensor2d(ids, [ids.length, ids[0]!.length], 'int32');
  let residual: tf.Tensor3D;
  let keptEmb: tf.Tensor2D | undefined;
  {
    const e = ckpt.readEmbedding();
    const emb = tf.tensor2d(e.data, e.shape as [number, number]);
    residual = tf.gather(emb, idsT) as unknown as tf.Tensor3D;
    if (fused && !opts.skipLogits && !(ckpt.has(LM_HEAD) && !c.tiedEmbeddings)) keptEmb = emb;
    else emb.dispose();
  }
  idsT.dispose();
  const pendingHidden: tf.Tensor3D[] = [];
  try {
    for (let i = 0; i <= lastLayer; i++) {
      const p = layerParamsOf(ckpt.readLayer(i), { transposeLinear: !fused });
      const want = capture !== 'none' && captureSet.has(i);
      let r: BlockResult;
      try {
        r = block(c, p, residual, { internals: want, fused });
      } finally {
        tf.dispose(Object.values(p));
      }
      if (fused && keepHidden) pendingHidden.push(residual);
      else residual.dispose();
      residual = r.residual;
      if (!fused && keepHidden) result.hiddenStates.push(await toPlainAsync(residual));
      const mi = r.mixerInput;
      if (want) {
        const cap: LayerCapture = { layer: i, mixerInput: await toPlainAsync(mi) };
        const int = r.internals!;
        if (opts.attention ?? true) {
          const maps = attentionSummaries(c.arch === 'mamba2' ? 'mamba2' : 'mamba1', int, { channelBlock: opts.channelBlock });
          cap.attention = { attention: await toPlainAsync(maps.attention), decay: await toPlainAsync(maps.decay), qk: await toPlainAsync(maps.qk) };
          tf.dispose([maps.attention, maps.decay, maps.qk]);
        }
        if (opts.channels?.length) {
          const ca = channelAttention(c.arch === 'mamba2' ? 'mamba2' : 'mamba1', int, opts.channels);
          cap.channelAttention = await toPlainAsync(ca);
          ca.dispose();
        }
        if (capture === 'internals') {
          const pi = {} as PlainInternals;
          for (const [k, v] of Object.entries(int)) pi[k as keyof ScanInternals] = await toPlainAsync(v);
          cap.internals = pi;
        }
        tf.dispose(Object.values(int));
        if (opts.onLayer) await opts.onLayer(i, cap);
        if (keep) result.layers.push(cap);
      } else if (r.internals) {
        tf.dispose(Object.values(r.internals));
      }
      mi.dispose();
      opts.onProgress?.(i + 1, lastLayer + 1, i);
    }
    if (!complete) return result;
    const nf = ckpt.readNormF();
    const nfT = tf.tensor1d(nf.data);
    const normed = (fused ? rmsNormFused(residual, nfT, c.layerNormEpsilon) : rmsNorm(residual, nfT, c.layerNormEpsilon)) as tf.Tensor3D;
    nfT.dispose();
    if (keepHidden && fused) {
      pendingHidden.push(residual);
      const all = await Promise.all([...pendingHidden.slice(1), normed].map((t) => toPlainAsync(t)));
      result.hiddenStates.push(...all);
    } else if (keepHidden) result.hiddenStates.push(await toPlainAsync(normed));
    if (!opts.skipLogits) {
      let logits: tf.Tensor3D;
      if (fused) {
        let head = keptEmb;
        if (!head) {
          const hd = ckpt.readLmHead();
          head = tf.tensor2d(hd.data, hd.shape as [number, number]);
        }
        logits = linear(normed, head);
        head.dispose();
        keptEmb = undefined;
      } else {
        const hd = ckpt.readLmHead();
        const head = tf.tensor2d(transpose2d(hd.data, hd.shape[0]!, hd.shape[1]!), [hd.shape[1]!, hd.shape[0]!]);
        logits = linear(normed, head, undefined, true);
        head.dispose();
      }
      result.logits = await toPlainAsync(logits);
      logits.dispose();
    }
    normed.dispose();
  } finally {
    residual.dispose();
    tf.dispose(pendingHidden.filter((t) => t !== residual && !t.isDisposed));
    keptEmb?.dispose();
  }
  return result;
}

/** Validate token ids against a vocabulary (exported for the CLI). */
export { checkIds };
