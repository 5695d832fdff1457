/**
 * Streaming inference over a checkpoint: one layer's weights loaded at a time and freed before the
 * next, so memory is one layer plus activations. Each chosen layer's internals (mixer input, scan
 * inputs) go to a hook; what is computed from them (attention maps, scores) lives in analysis/.
 */
import * as tf from '@tensorflow/tfjs';
import type { MambaConfig } from '../checkpoint/config.js';
import type { Checkpoint } from '../checkpoint/checkpoint.js';
import type { Tensor } from '../checkpoint/safetensors.js';
import { UserError } from '../util/errors.js';
import { block, checkIds, linear, rmsNorm, type BlockResult, type ScanInternals } from './mamba.js';
import { LM_HEAD, layerParamsOf, transpose2d, toPlainAsync } from './weights.js';
import { fusedAvailable, rmsNormFused } from './kernels/fused-webgpu.js';

/** What the runner hands the hook for one layer: tf tensors, disposed when the hook returns. */
export interface LayerInternals {
  layer: number;
  /** The mixer's input (after the block's RMSNorm) [B, L, hidden]. */
  mixerInput: tf.Tensor3D;
  /** x (post-conv, post-SiLU), Δ, A, B, C, D. */
  internals: ScanInternals;
}

export interface StreamOptions {
  /** Layers whose internals go to onLayer (default all). */
  layers?: number[];
  /** Called with each chosen layer as soon as it is computed; it may dispose the tensors itself. */
  onLayer?: (x: LayerInternals) => void | Promise<void>;
  /** Skip the logits (saves the vocab × hidden head on large models). */
  skipLogits?: boolean;
  /** Return the hidden states (default true; an audit of a large model needs none of them). */
  hiddenStates?: boolean;
  /** With onLayer: stop after the last chosen layer (no later layers, no norm_f, no logits). */
  stopAfterLastCapture?: boolean;
  /** After each layer computed: `done` of `total` layers that will run. */
  onProgress?: (done: number, total: number, layer: number) => void;
}

export interface StreamResult {
  logits?: Tensor;
  /** As LMForward.hiddenStates: residual after layer i for i < numLayers, then the norm_f output. */
  hiddenStates: Tensor[];
}

/** The ids and layer choice checked against the model (every streaming run starts with this). */
export function checkStreamInputs(c: MambaConfig, ids: number[][], layers: number[] | undefined): Set<number> {
  checkIds(ids, c.vocabSize);
  const captureSet = new Set(layers ?? Array.from({ length: c.numLayers }, (_, i) => i));
  for (const i of captureSet) if (!Number.isInteger(i) || i < 0 || i >= c.numLayers) throw new UserError(`layer ${i} is out of range: the model has layers 0-${c.numLayers - 1}`);
  return captureSet;
}

/** Run a checkpoint on token ids, streaming its weights layer by layer. */
export async function streamCheckpoint(ckpt: Checkpoint, ids: number[][], opts: StreamOptions = {}): Promise<StreamResult> {
  const c = ckpt.config;
  const captureSet = checkStreamInputs(c, ids, opts.layers);
  const hook = opts.onLayer;
  const keepHidden = opts.hiddenStates ?? true;
  const lastLayer = opts.stopAfterLastCapture && hook ? Math.max(...captureSet) : c.numLayers - 1;
  const complete = lastLayer === c.numLayers - 1;
  const result: StreamResult = { hiddenStates: [] };
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
  // On wasm, each layer is read into the previous layer's buffers (no fresh allocation and page
  // faults per layer). wasm copies a tensor's values into its heap when it is made; tfjs-cpu keeps
  // the very array (and hands it back from data()), webgpu and tensorflow may upload it later.
  const reuse = tf.getBackend() === 'wasm';
  let prevLayer: ReturnType<Checkpoint['readLayer']> | undefined;
  try {
    for (let i = 0; i <= lastLayer; i++) {
      const w = ckpt.readLayer(i, reuse ? { into: prevLayer } : {});
      if (reuse) prevLayer = w;
      const p = layerParamsOf(w, { transposeLinear: !fused });
      const want = hook !== undefined && captureSet.has(i);
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
      try {
        if (want) await hook({ layer: i, mixerInput: mi, internals: r.internals! });
      } finally {
        if (r.internals) tf.dispose(Object.values(r.internals));
        mi.dispose();
      }
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
