/**
 * Implicit attention of a selective SSM layer (Ali et al. 2024; Trockman et al. 2024):
 *
 *   α[t, s] = Σ_n C_t[n] · exp(A[n] · Σ_{k=s+1..t} Δ_k) · Δ_s · B_s[n]     (s ≤ t, else 0)
 *
 * per channel d of Mamba-1 (A[d, n], Δ[d]) or per head h of Mamba-2 (scalar A[h], Δ[h], that head's
 * group of B and C), so that y_t = Σ_s α[t, s] · x_s + D · x_t. The decay is computed from prefix
 * sums S of Δ as exp(A · (S_t − S_s)) — every exponent is ≤ 0, so nothing overflows — and at most
 * one block of channels is materialised at a time (never [B, channels, L, L] for the whole layer).
 */
import * as tf from '@tensorflow/tfjs';
import type { Tensor } from '../checkpoint/safetensors.js';
import { attentionSummariesWebGPU } from './attention-webgpu.js';
import { fusedAvailable } from '../model/kernels/fused-webgpu.js';
import type { ScanInternals } from '../model/mamba.js';

/** The scan inputs the model hands out (defined with the layer code that produces them). */
export type { ScanInternals };

export type ScanKind = 'mamba1' | 'mamba2';

export interface AttentionSummaries {
  attention: tf.Tensor3D;
  decay: tf.Tensor3D;
  qk: tf.Tensor3D;
}

/** Plain {shape, data} internals (as captured by runCheckpoint) to tf tensors; the caller disposes. */
export function internalsToTf(p: Record<keyof ScanInternals, Tensor>): ScanInternals {
  const t = (v: Tensor) => tf.tensor(v.data, v.shape, 'float32');
  return { x: t(p.x), delta: t(p.delta), A: t(p.A), B: t(p.B), C: t(p.C), D: t(p.D) };
}

/** Lower-triangular (s ≤ t) mask [L, L]. */
function causalMask(L: number): tf.Tensor2D {
  return tf.tidy(() => tf.linalg.bandPart(tf.ones([L, L]), -1, 0) as tf.Tensor2D);
}

/** Δ as [B, channels, L] (Mamba-1: channels = Din; Mamba-2: heads). */
function deltaBCL(delta: tf.Tensor): tf.Tensor3D {
  return tf.transpose(delta, [0, 2, 1]) as tf.Tensor3D;
}

/**
 * S_t − S_s for a block of channels, masked to 0 above the diagonal: [B, k, L, L] (t, s).
 * S: prefix sums [B, k, L].
 */
function segSums(S: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor4D {
  const [B, k, L] = S.shape;
  return tf.mul(tf.sub(S.reshape([B, k, L, 1]), S.reshape([B, k, 1, L])), mask) as tf.Tensor4D;
}

function blockSize(opt: number | undefined, L: number, fallbackBytes = 64 * 2 ** 20): number {
  if (opt !== undefined) {
    if (!Number.isInteger(opt) || opt < 1) throw new Error(`channelBlock must be a positive integer, got ${opt}`);
    return opt;
  }
  return Math.max(1, Math.floor(fallbackBytes / (4 * L * L)));
}

export interface SummaryOptions {
  /** Channels (Mamba-1) or heads (Mamba-2) per block (default: all channels for 'factored', ~64 MiB blocks otherwise). */
  channelBlock?: number;
  /**
   * Mamba-1 only. 'factored' (default): time blocks of `timeBlock` steps; pairs with s at or before
   * the block start t0 use exp(A·(S_t − S_s)) = exp(A·(S_t − S_t0)) · exp(A·(S_t0 − S_s)) — both
   * exponents ≤ 0 — so the sums over channels and states become matrix products; pairs inside the
   * block are computed directly. 'direct': every exp(A·(S_t − S_s)), channel blocks at a time in tf
   * ops. 'js': every exp over the lower triangle in JS loops. All three agree; they differ in speed.
   */
  impl?: 'factored' | 'direct' | 'js';
  /** Time steps per block of the 'factored' computation (default 16). */
  timeBlock?: number;
}

/**
 * Per-layer summaries [B, L, L]: mean attention, mean decay, and the query-key part C_t · B_s;
 * all zero above the diagonal.
 */
export function attentionSummaries(kind: ScanKind, int: ScanInternals, opts: SummaryOptions = {}): AttentionSummaries {
  // WebGPU: one WGSL program per layer (kernels/attention-webgpu.ts) unless a tf-op variant is asked for.
  if (opts.impl === undefined && opts.channelBlock === undefined && fusedAvailable()) return attentionSummariesWebGPU(kind, int.delta, int.A, int.B, int.C);
  if (kind === 'mamba2') return mamba2Summaries(int, opts.channelBlock);
  const impl = opts.impl ?? 'factored';
  if (impl === 'js') return mamba1SummariesJs(int);
  if (impl === 'direct') return mamba1Summaries(int, opts.channelBlock);
  return mamba1SummariesFactored(int, opts.timeBlock ?? 16, opts.channelBlock);
}

/**
 * Mamba-1 maps by time blocks (see SummaryOptions.impl), one batch row and (with channelBlock) one
 * block of channels at a time: the largest tensor is [L, channels, N] (or [T, T, channels, N]).
 */
function mamba1SummariesFactored(int: ScanInternals, T: number, channelBlock?: number): AttentionSummaries {
  if (!Number.isInteger(T) || T < 1) throw new Error(`timeBlock must be a positive integer, got ${T}`);
  const [Bsz, L, Din] = int.delta.shape as [number, number, number];
  const N = int.A.shape[1]!;
  const blk = channelBlock === undefined ? Din : blockSize(channelBlock, 1);
  const S = tf.cumsum(int.delta, 1); // [B, L, Din]
  const attB: tf.Tensor[] = [];
  const decB: tf.Tensor[] = [];
  for (let b = 0; b < Bsz; b++) {
    const rowsA: tf.Tensor[] = [];
    const rowsD: tf.Tensor[] = [];
    for (let t0 = 0; t0 < L; t0 += T) {
      const Tb = Math.min(T, L - t0);
      let ra: tf.Tensor = tf.zeros([Tb, L]);
      let rd: tf.Tensor = tf.zeros([Tb, L]);
      for (let d0 = 0; d0 < Din; d0 += blk) {
        const k = Math.min(blk, Din - d0);
        const [na, nd] = tf.tidy(() => {
          const Sb = S.slice([b, 0, d0], [1, L, k]).reshape([L, k]);
          const db = int.delta.slice([b, 0, d0], [1, L, k]).reshape([L, k]);
          const Ak = int.A.slice([d0, 0], [k, N]);
          const A3 = Ak.reshape([1, k, N]);
          const Bb = int.B.slice([b, 0, 0], [1, L, N]).reshape([L, N]);
          const Cb = int.C.slice([b, 0, 0], [1, L, N]).reshape([L, N]);
          const Sblk = Sb.slice([t0, 0], [Tb, k]);
          const Sref = Sb.slice([t0, 0], [1, k]);
          // Far pairs s ≤ t0 ≤ t: products of two factors with exponents ≤ 0.
          const F = tf.exp(tf.mul(tf.sub(Sblk, Sref).reshape([Tb, k, 1]), A3)); // [Tb, k, N]
          const G = tf.exp(tf.mul(tf.sub(Sref, Sb.slice([0, 0], [t0 + 1, k])).reshape([t0 + 1, k, 1]), A3)); // [t0+1, k, N]
          const P = tf.mul(F, Cb.slice([t0, 0], [Tb, N]).reshape([Tb, 1, N])).reshape([Tb, k * N]);
          const Q = tf.mul(tf.mul(G, Bb.slice([0, 0], [t0 + 1, N]).reshape([t0 + 1, 1, N])), db.slice([0, 0], [t0 + 1, k]).reshape([t0 + 1, k, 1])).reshape([t0 + 1, k * N]);
          const parts: tf.Tensor[][] = [[tf.matMul(P, Q, false, true)], [tf.matMul(F.reshape([Tb, k * N]), G.reshape([t0 + 1, k * N]), false, true)]];
          // Near pairs t0 < s ≤ t inside the block, directly (exponent masked to 0 where s > t).
          if (Tb > 1) {
            const m = Tb - 1;
            const Sn = Sb.slice([t0 + 1, 0], [m, k]);
            const nearMask = tf.linalg.bandPart(tf.ones([Tb, Tb]), -1, 0).slice([0, 1], [Tb, m]); // [t, j]: s = t0+1+j ≤ t
            const seg = tf.mul(tf.sub(Sblk.reshape([Tb, 1, k]), Sn.reshape([1, m, k])), nearMask.reshape([Tb, m, 1]));
            const E = tf.exp(tf.mul(seg.reshape([Tb, m, k, 1]), Ak.reshape([1, 1, k, N]))); // [Tb, m, k, N]
            const w = tf.mul(tf.mul(Cb.slice([t0, 0], [Tb, N]).reshape([Tb, 1, 1, N]), Bb.slice([t0 + 1, 0], [m, N]).reshape([1, m, 1, N])), db.slice([t0 + 1, 0], [m, k]).reshape([1, m, k, 1]));
            parts[0]!.push(tf.mul(tf.sum(tf.mul(E, w), [2, 3]), nearMask));
            parts[1]!.push(tf.mul(tf.sum(E, [2, 3]), nearMask));
          }
          if (t0 + Tb < L) for (const p of parts) p.push(tf.zeros([Tb, L - t0 - Tb]));
          return [tf.add(ra, tf.concat(parts[0]!, 1)), tf.add(rd, tf.concat(parts[1]!, 1))];
        });
        ra.dispose();
        rd.dispose();
        ra = na!;
        rd = nd!;
      }
      rowsA.push(ra);
      rowsD.push(rd);
    }
    attB.push(tf.concat(rowsA, 0));
    decB.push(tf.concat(rowsD, 0));
    tf.dispose([...rowsA, ...rowsD]);
  }
  const out = tf.tidy(() => {
    const mask = causalMask(L);
    return {
      attention: tf.div(tf.stack(attB), Din) as tf.Tensor3D,
      decay: tf.div(tf.stack(decB), Din * N) as tf.Tensor3D,
      qk: tf.mul(tf.matMul(int.C, int.B, false, true), mask) as tf.Tensor3D,
    };
  });
  tf.dispose([S, ...attB, ...decB]);
  return out;
}

/** Mamba-1 maps as loops over Float32Arrays: one channel's row at a time, lower triangle only. */
function mamba1SummariesJs(int: ScanInternals): AttentionSummaries {
  const [Bsz, L, Din] = int.delta.shape as [number, number, number];
  const N = int.A.shape[1]!;
  const delta = int.delta.dataSync() as Float32Array;
  const A = int.A.dataSync() as Float32Array;
  const Bm = int.B.dataSync() as Float32Array;
  const Cm = int.C.dataSync() as Float32Array;
  const att = new Float32Array(Bsz * L * L);
  const dec = new Float32Array(Bsz * L * L);
  const qk = new Float32Array(Bsz * L * L);
  const S = new Float64Array(L * Din);
  const cb = new Float64Array(N);
  for (let b = 0; b < Bsz; b++) {
    // Prefix sums of Δ per channel: S[t, d] = Σ_{k ≤ t} Δ_k[d].
    const dOff = b * L * Din;
    for (let d = 0; d < Din; d++) S[d] = delta[dOff + d]!;
    for (let t = 1; t < L; t++) for (let d = 0; d < Din; d++) S[t * Din + d] = S[(t - 1) * Din + d]! + delta[dOff + t * Din + d]!;
    const bOff = b * L * N;
    for (let t = 0; t < L; t++) {
      for (let s = 0; s <= t; s++) {
        let q = 0;
        for (let n = 0; n < N; n++) {
          cb[n] = Cm[bOff + t * N + n]! * Bm[bOff + s * N + n]!;
          q += cb[n]!;
        }
        let a = 0;
        let e = 0;
        const to = t * Din;
        const so = s * Din;
        for (let d = 0; d < Din; d++) {
          const seg = S[to + d]! - S[so + d]!; // Σ_{k=s+1..t} Δ_k ≥ 0
          const ao = d * N;
          let ad = 0;
          for (let n = 0; n < N; n++) {
            const E = Math.exp(A[ao + n]! * seg);
            e += E;
            ad += cb[n]! * E;
          }
          a += ad * delta[dOff + so + d]!;
        }
        const o = (b * L + t) * L + s;
        att[o] = a / Din;
        dec[o] = e / (Din * N);
        qk[o] = q;
      }
    }
  }
  return { attention: tf.tensor3d(att, [Bsz, L, L]), decay: tf.tensor3d(dec, [Bsz, L, L]), qk: tf.tensor3d(qk, [Bsz, L, L]) };
}

function mamba1Summaries(int: ScanInternals, channelBlock?: number): AttentionSummaries {
  const [Bsz, L, Din] = int.delta.shape as [number, number, number];
  const N = int.A.shape[1]!;
  const blk = blockSize(channelBlock, L * Math.max(1, Bsz));
  const mask = causalMask(L);
  // Per state n, with E_n[b, s, t, d] = exp(A[d, n] · (S_t − S_s)[b, d]) laid out [s, t, d], both
  // reductions over the block's channels — Σ_d E_n (decay) and Σ_d Δ_s[d] E_n (attention) — are one
  // batched matmul with [1, Δ_s]. Entries above the diagonal (s > t) use a zero exponent and are
  // masked once at the end, so no exp ever sees a positive argument.
  const maskST = tf.tidy(() => tf.transpose(mask).reshape([1, L, L, 1])); // [s, t]: 1 where s ≤ t
  const S = tf.cumsum(int.delta, 1); // [B, L, Din]
  let att: tf.Tensor = tf.zeros([Bsz, L, L]);
  let dec: tf.Tensor = tf.zeros([Bsz, L, L]);
  for (let d0 = 0; d0 < Din; d0 += blk) {
    const k = Math.min(blk, Din - d0);
    const [a2, d2] = tf.tidy(() => {
      const Sb = S.slice([0, 0, d0], [Bsz, L, k]);
      const seg = tf.mul(tf.sub(Sb.reshape([Bsz, 1, L, k]), Sb.reshape([Bsz, L, 1, k])), maskST); // [B, s, t, k]
      const w = tf.stack([tf.onesLike(int.delta.slice([0, 0, d0], [Bsz, L, k])), int.delta.slice([0, 0, d0], [Bsz, L, k])], 3).reshape([Bsz * L, k, 2]);
      const Ab = int.A.slice([d0, 0], [k, N]);
      let aAcc: tf.Tensor = tf.zeros([Bsz, L, L]);
      let dAcc: tf.Tensor = tf.zeros([Bsz, L, L]);
      for (let n = 0; n < N; n++) {
        const E = tf.exp(tf.mul(seg, Ab.slice([0, n], [k, 1]).reshape([1, 1, 1, k])));
        const r = tf.matMul(E.reshape([Bsz * L, L, k]), w).reshape([Bsz, L, L, 2]); // [B, s, t, 2]
        const [sumE, sumDE] = tf.unstack(tf.transpose(r, [3, 0, 2, 1])); // each [B, t, s]
        dAcc = tf.add(dAcc, sumE!);
        const cb = tf.mul(int.C.slice([0, 0, n], [Bsz, L, 1]), int.B.slice([0, 0, n], [Bsz, L, 1]).reshape([Bsz, 1, L])); // [B, t, s]
        aAcc = tf.add(aAcc, tf.mul(cb, sumDE!));
      }
      return [tf.add(att, aAcc), tf.add(dec, dAcc)];
    });
    att.dispose();
    dec.dispose();
    att = a2;
    dec = d2;
  }
  const out = tf.tidy(() => ({
    attention: tf.mul(tf.div(att, Din), mask) as tf.Tensor3D,
    decay: tf.mul(tf.div(dec, Din * N), mask) as tf.Tensor3D,
    qk: tf.mul(tf.matMul(int.C, int.B, false, true), mask) as tf.Tensor3D,
  }));
  tf.dispose([att, dec, S, mask, maskST]);
  return out;
}

function mamba2Summaries(int: ScanInternals, channelBlock?: number): AttentionSummaries {
  const [Bsz, L, H] = int.delta.shape as [number, number, number];
  const G = int.B.shape[2]!;
  const rep = H / G;
  const blk = blockSize(channelBlock, L * Math.max(1, Bsz));
  const mask = causalMask(L);
  // Per-group C_t · B_s: [B, G, L, L].
  const qkG = tf.tidy(() => tf.mul(tf.matMul(tf.transpose(int.C, [0, 2, 1, 3]), tf.transpose(int.B, [0, 2, 1, 3]), false, true), mask));
  const S = tf.tidy(() => deltaBCL(tf.cumsum(int.delta, 1)));
  const dBCL = deltaBCL(int.delta);
  let att: tf.Tensor = tf.zeros([Bsz, L, L]);
  let dec: tf.Tensor = tf.zeros([Bsz, L, L]);
  for (let h0 = 0; h0 < H; h0 += blk) {
    const k = Math.min(blk, H - h0);
    const [a2, d2] = tf.tidy(() => {
      const seg = segSums(S.slice([0, h0, 0], [Bsz, k, L]), mask);
      const E = tf.mul(tf.exp(tf.mul(seg, int.A.slice([h0], [k]).reshape([1, k, 1, 1]))), mask); // [B, k, L, L]
      const groups = tf.tensor1d(Array.from({ length: k }, (_, j) => Math.floor((h0 + j) / rep)), 'int32');
      const qkH = tf.gather(qkG, groups, 1); // [B, k, L, L]
      const dS = dBCL.slice([0, h0, 0], [Bsz, k, L]).reshape([Bsz, k, 1, L]);
      const alpha = tf.sum(tf.mul(tf.mul(qkH, E), dS), 1);
      return [tf.add(att, alpha), tf.add(dec, tf.sum(E, 1))];
    });
    att.dispose();
    dec.dispose();
    att = a2;
    dec = d2;
  }
  const out = tf.tidy(() => ({
    attention: tf.div(att, H) as tf.Tensor3D,
    decay: tf.div(dec, H) as tf.Tensor3D,
    qk: tf.mean(qkG, 1) as tf.Tensor3D,
  }));
  tf.dispose([att, dec, S, dBCL, mask, qkG]);
  return out;
}

/**
 * α of selected channels (Mamba-1) or heads (Mamba-2): [B, channels.length, L, L], zero above
 * the diagonal.
 */
export function channelAttention(kind: ScanKind, int: ScanInternals, channels: number[]): tf.Tensor4D {
  const nCh = kind === 'mamba2' ? int.delta.shape[2]! : int.delta.shape[2]!;
  for (const ch of channels) {
    if (!Number.isInteger(ch) || ch < 0 || ch >= nCh) throw new RangeError(`channel ${ch} is out of range [0, ${nCh - 1}]`);
  }
  return tf.tidy(() => {
    const [Bsz, L] = int.delta.shape as [number, number];
    const mask = causalMask(L);
    const idx = tf.tensor1d(channels, 'int32');
    const S = tf.gather(deltaBCL(tf.cumsum(int.delta, 1)), idx, 1) as tf.Tensor3D; // [B, k, L]
    const dS = tf.gather(deltaBCL(int.delta), idx, 1).reshape([Bsz, channels.length, 1, L]);
    const seg = segSums(S, mask);
    if (kind === 'mamba2') {
      const H = int.delta.shape[2]!;
      const G = int.B.shape[2]!;
      const qkG = tf.matMul(tf.transpose(int.C, [0, 2, 1, 3]), tf.transpose(int.B, [0, 2, 1, 3]), false, true);
      const groups = tf.tensor1d(channels.map((h) => Math.floor(h / (H / G))), 'int32');
      const E = tf.exp(tf.mul(seg, tf.gather(int.A, idx).reshape([1, channels.length, 1, 1])));
      return tf.mul(tf.mul(tf.mul(tf.gather(qkG, groups, 1), E), dS), mask) as tf.Tensor4D;
    }
    const N = int.A.shape[1]!;
    const Ab = tf.gather(int.A, idx); // [k, N]
    let acc: tf.Tensor = tf.zeros([Bsz, channels.length, L, L]);
    for (let n = 0; n < N; n++) {
      const E = tf.exp(tf.mul(seg, Ab.slice([0, n], [channels.length, 1]).reshape([1, channels.length, 1, 1])));
      const cb = tf.mul(int.C.slice([0, 0, n], [Bsz, L, 1]), int.B.slice([0, 0, n], [Bsz, L, 1]).reshape([Bsz, 1, L])).reshape([Bsz, 1, L, L]);
      acc = tf.add(acc, tf.mul(cb, E));
    }
    return tf.mul(tf.mul(acc, dS), mask) as tf.Tensor4D;
  });
}
