/**
 * A checkpoint's forward pass with captures: the model's streaming runner (model/stream.ts) hands
 * each chosen layer's internals to a hook here, which turns them into implicit-attention maps
 * (attention.ts) and plain arrays. `mimetic forward`, the audit and the parity tests read this.
 */
import * as tf from '@tensorflow/tfjs';
import type { Checkpoint } from '../checkpoint/checkpoint.js';
import type { Tensor } from '../checkpoint/safetensors.js';
import { UserError } from '../util/errors.js';
import type { ScanInternals } from '../model/mamba.js';
import { checkStreamInputs, streamCheckpoint, type StreamResult } from '../model/stream.js';
import { toPlainAsync } from '../model/weights.js';
import { attentionSummaries, channelAttention } from './attention.js';

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
  /** With CaptureOptions.channels: α of those channels (Mamba-1) or heads (Mamba-2) [B, channels, L, L]. */
  channelAttention?: Tensor;
}

export interface CaptureOptions {
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

export interface CaptureResult extends StreamResult {
  layers: LayerCapture[];
}

/**
 * Run a checkpoint on token ids, loading one layer's weights at a time and freeing them before the
 * next, so memory is one layer plus activations; capture what `opts.capture` asks of each layer.
 */
export async function runCheckpoint(ckpt: Checkpoint, ids: number[][], opts: CaptureOptions = {}): Promise<CaptureResult> {
  const c = ckpt.config;
  const capture = opts.capture ?? 'none';
  checkStreamInputs(c, ids, opts.layers);
  const nChannels = c.arch === 'mamba2' ? c.numHeads! : c.intermediateSize;
  for (const ch of opts.channels ?? []) {
    if (!Number.isInteger(ch) || ch < 0 || ch >= nChannels) throw new UserError(`channel ${ch} is out of range: the model has ${c.arch === 'mamba2' ? 'heads' : 'channels'} 0-${nChannels - 1}`);
  }
  const keep = opts.keepCaptures ?? true;
  const kind = c.arch === 'mamba2' ? 'mamba2' : 'mamba1';
  const layers: LayerCapture[] = [];
  const res = await streamCheckpoint(ckpt, ids, {
    layers: opts.layers,
    skipLogits: opts.skipLogits,
    hiddenStates: opts.hiddenStates,
    stopAfterLastCapture: opts.stopAfterLastCapture,
    onProgress: opts.onProgress,
    onLayer: capture === 'none' ? undefined : async ({ layer: i, mixerInput, internals: int }) => {
      const cap: LayerCapture = { layer: i, mixerInput: await toPlainAsync(mixerInput) };
      if (opts.attention ?? true) {
        const maps = attentionSummaries(kind, int, { channelBlock: opts.channelBlock });
        cap.attention = { attention: await toPlainAsync(maps.attention), decay: await toPlainAsync(maps.decay), qk: await toPlainAsync(maps.qk) };
        tf.dispose([maps.attention, maps.decay, maps.qk]);
      }
      if (opts.channels?.length) {
        const ca = channelAttention(kind, int, opts.channels);
        cap.channelAttention = await toPlainAsync(ca);
        ca.dispose();
      }
      if (capture === 'internals') {
        const pi = {} as PlainInternals;
        for (const [k, v] of Object.entries(int)) pi[k as keyof ScanInternals] = await toPlainAsync(v);
        cap.internals = pi;
      }
      // Freed before the caller's hook runs, as that hook may hold a layer's worth of its own.
      tf.dispose(Object.values(int));
      if (opts.onLayer) await opts.onLayer(i, cap);
      if (keep) layers.push(cap);
    },
  });
  return { ...res, layers };
}
