/**
 * Weights by Hugging Face name, as plain float32 arrays: the exchange format between checkpoints on
 * disk, the differentiable model (MambaLM) and the tools that save or transplant weights.
 */
import * as tf from '@tensorflow/tfjs';
import type { MambaConfig } from '../checkpoint/config.js';
import type { Checkpoint, LayerWeights } from '../checkpoint/checkpoint.js';
import type { Tensor } from '../checkpoint/safetensors.js';
import { EMBEDDING, NORM_F, LM_HEAD, layerName } from '../checkpoint/names.js';

/** HF name → {shape, data}. */
export type WeightMap = Record<string, Tensor>;

/** Short name within a layer (`mixer.A_log`) → tf tensor. */
export type LayerParams = Record<string, tf.Tensor>;

export { EMBEDDING, NORM_F, LM_HEAD, layerPrefix, layerName, parseLayerName } from '../checkpoint/names.js';

/** The shape of every tensor a model of this config has, by HF name (biases as the config says). */
export function expectedShapes(c: MambaConfig): Record<string, number[]> {
  const out: Record<string, number[]> = { [EMBEDDING]: [c.vocabSize, c.hiddenSize], [NORM_F]: [c.hiddenSize] };
  if (!c.tiedEmbeddings) out[LM_HEAD] = [c.vocabSize, c.hiddenSize];
  const Din = c.intermediateSize;
  const N = c.stateSize;
  const K = c.convKernel;
  for (let i = 0; i < c.numLayers; i++) {
    const s: Record<string, number[]> = { 'norm.weight': [c.hiddenSize] };
    if (c.arch === 'mamba2') {
      const H = c.numHeads!;
      const G = c.nGroups ?? 1;
      const convDim = Din + 2 * G * N;
      const projOut = 2 * Din + 2 * G * N + H;
      Object.assign(s, {
        'mixer.A_log': [H], 'mixer.D': [H], 'mixer.dt_bias': [H], 'mixer.conv1d.weight': [convDim, 1, K],
        'mixer.in_proj.weight': [projOut, c.hiddenSize], 'mixer.norm.weight': [Din], 'mixer.out_proj.weight': [c.hiddenSize, Din],
      });
      if (c.useConvBias) s['mixer.conv1d.bias'] = [convDim];
      if (c.useBias) { s['mixer.in_proj.bias'] = [projOut]; s['mixer.out_proj.bias'] = [c.hiddenSize]; }
    } else {
      const R = c.timeStepRank!;
      Object.assign(s, {
        'mixer.A_log': [Din, N], 'mixer.D': [Din], 'mixer.conv1d.weight': [Din, 1, K], 'mixer.in_proj.weight': [2 * Din, c.hiddenSize],
        'mixer.x_proj.weight': [R + 2 * N, Din], 'mixer.dt_proj.weight': [Din, R], 'mixer.dt_proj.bias': [Din], 'mixer.out_proj.weight': [c.hiddenSize, Din],
      });
      if (c.useConvBias) s['mixer.conv1d.bias'] = [Din];
      if (c.useBias) { s['mixer.in_proj.bias'] = [2 * Din]; s['mixer.out_proj.bias'] = [c.hiddenSize]; }
    }
    for (const [k, v] of Object.entries(s)) out[layerName(i, k)] = v;
  }
  return out;
}

/** Every tensor of a checkpoint (all in memory; for small models and training). */
export function loadWeights(ckpt: Checkpoint): WeightMap {
  const out: WeightMap = {};
  for (const name of ckpt.names()) out[name] = ckpt.read(name);
  return out;
}

/** Linear layers' weights: [out, in] as torch stores them. */
export const LINEAR_WEIGHTS = ['mixer.in_proj.weight', 'mixer.x_proj.weight', 'mixer.dt_proj.weight', 'mixer.out_proj.weight'];

/** Transpose a row-major [rows, cols] matrix. */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[o + c]!;
  }
  return out;
}

/**
 * A layer's weights (from Checkpoint.readLayer) as tf tensors; the caller disposes them. Linear
 * weights are stored pre-transposed under `<name>.T` ([in, out]): matMul with transposeB is an
 * order of magnitude slower on the wasm backend, and transposing once per load is cheap.
 */
export function layerParamsOf(w: LayerWeights, opts: { transposeLinear?: boolean } = {}): LayerParams {
  const out: LayerParams = {};
  const transpose = opts.transposeLinear ?? true;
  // wasm's own transpose kernel is about a third quicker than the JS loop (the same values moved).
  const inWasm = tf.getBackend() === 'wasm';
  for (const [k, t] of Object.entries(w)) {
    if (transpose && LINEAR_WEIGHTS.includes(k) && t.shape.length === 2) {
      const [r, c] = t.shape as [number, number];
      out[k + '.T'] = inWasm ? tf.tidy(() => tf.transpose(tf.tensor2d(t.data, [r, c]))) : tf.tensor2d(transpose2d(t.data, r, c), [c, r]);
    } else out[k] = tf.tensor(t.data, t.shape, 'float32');
  }
  return out;
}

/** A tf tensor's values as a plain {shape, data} (asynchronous read; preferred on GPU backends). */
export async function toPlainAsync(t: tf.Tensor): Promise<Tensor> {
  return { shape: t.shape.slice(), data: (await t.data()) as Float32Array };
}
