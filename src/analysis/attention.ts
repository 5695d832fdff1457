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
   * Mamba-1 only. 'factored' (default on CPU backends; 'direct' on WebGPU): time blocks of `timeBlock` steps; pairs with s at or before
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
  if (kind === 'mamba2') {
    // JS loops over the lower triangle on the CPU backends (they read synchronously); tf ops elsewhere.
    const cpu = tf.getBackend() === 'wasm' || tf.getBackend() === 'cpu';
    return cpu && opts.channelBlock === undefined && opts.impl !== 'direct' ? mamba2SummariesJs(int) : mamba2Summaries(int, opts.channelBlock);
  }
  // 'factored' and 'js' read the tensors synchronously, which WebGPU in Node cannot: tf ops there.
  const impl = opts.impl ?? (tf.getBackend() === 'webgpu' ? 'direct' : 'factored');
  if (impl === 'js') return mamba1SummariesJs(int);
  if (impl === 'direct') return mamba1Summaries(int, opts.channelBlock);
  return mamba1SummariesFactored(int, opts.timeBlock ?? 16, opts.channelBlock);
}

/**
 * Mamba-1 maps by time blocks of T steps (see SummaryOptions.impl), per batch row and block of
 * channels, with every decay factor a product of the step factors r_t = exp(A · Δ_t) (the scan's
 * own recurrence; one exp per step, channel and state, none per pair):
 *   - far pairs s ≤ t0 ≤ t (t0 the block start): e(t, s) = F[t] · G[s] with F[t] = e(t, t0) and
 *     G[s] = e(t0, s), so both sums over channels and states are matrix products. G is kept from
 *     block to block (old rows times e(t0, t0_prev), new rows by the backward recurrence), stored
 *     [s, channel·state] and F as [channel·state, t], so no product needs transposeB (11× slower
 *     on wasm);
 *   - near pairs t0 < s ≤ t inside the block: walked in plain loops, the lower triangle only.
 * Layout of the channel·state axis: n-major (n·k + j), so a state's channels are contiguous.
 */
function mamba1SummariesFactored(int: ScanInternals, T: number, channelBlock?: number): AttentionSummaries {
  if (!Number.isInteger(T) || T < 1) throw new Error(`timeBlock must be a positive integer, got ${T}`);
  const [Bsz, L, Din] = int.delta.shape as [number, number, number];
  const N = int.A.shape[1]!;
  // Four [L, channels·N] float32 buffers per channel block: at most 2^23 values each by default.
  const blk = channelBlock === undefined ? Math.max(1, Math.min(Din, Math.floor(2 ** 23 / (L * N)))) : blockSize(channelBlock, 1);
  const delta = int.delta.dataSync() as Float32Array, A = int.A.dataSync() as Float32Array;
  const Bm = int.B.dataSync() as Float32Array, Cm = int.C.dataSync() as Float32Array;
  const att = new Float64Array(Bsz * L * L), dec = new Float64Array(Bsz * L * L);
  const Kmax = Math.min(blk, Din) * N, Tm = Math.min(T, L);
  const R = new Float32Array(L * Kmax), BD = new Float32Array(L * Kmax); // r_s and B_s[n] Δ_s[d]
  const G = new Float32Array(L * Kmax), Q = new Float32Array(L * Kmax); // e(t0, s) and e(t0, s) B_s Δ_s
  const FT = new Float32Array(Kmax * Tm), PT = new Float32Array(Kmax * Tm); // e(t, t0) and e(t, t0) C_t
  const AT = new Float32Array(Kmax);
  const e = new Float64Array(Kmax), f = new Float64Array(Kmax); // a near column's running factor; e(t0_next, t0)
  for (let d0 = 0; d0 < Din; d0 += blk) {
    const k = Math.min(blk, Din - d0), K = k * N;
    for (let n = 0; n < N; n++) for (let j = 0; j < k; j++) AT[n * k + j] = A[(d0 + j) * N + n]!;
    for (let b = 0; b < Bsz; b++) {
      for (let t = 0; t < L; t++) {
        const dOff = (b * L + t) * Din + d0, bOff = (b * L + t) * N, o = t * K;
        for (let n = 0; n < N; n++) {
          const bn = Bm[bOff + n]!;
          for (let j = 0; j < k; j++) {
            const dt = delta[dOff + j]!;
            R[o + n * k + j] = Math.exp(AT[n * k + j]! * dt);
            BD[o + n * k + j] = bn * dt;
          }
        }
      }
      let prev = -1;
      for (let t0 = 0; t0 < L; t0 += T) {
        const Tb = Math.min(T, L - t0);
        // G and Q rows s ≤ t0, relative to t0.
        if (prev >= 0) {
          for (let s = 0; s <= prev; s++) {
            const o = s * K;
            for (let i = 0; i < K; i++) { G[o + i]! *= f[i]!; Q[o + i]! *= f[i]!; }
          }
        }
        G.fill(1, t0 * K, (t0 + 1) * K);
        for (let s = t0 - 1; s > prev; s--) {
          const o = s * K, up = (s + 1) * K;
          for (let i = 0; i < K; i++) G[o + i] = G[up + i]! * R[up + i]!;
        }
        for (let s = prev + 1; s <= t0; s++) {
          const o = s * K;
          for (let i = 0; i < K; i++) Q[o + i] = G[o + i]! * BD[o + i]!;
        }
        prev = t0;
        // F and C_t F, transposed: [channel·state, t].
        for (let n = 0; n < N; n++) {
          for (let j = 0; j < k; j++) {
            const i = n * k + j, o = i * Tb;
            let v = 1;
            for (let tt = 0; tt < Tb; tt++) {
              if (tt > 0) v *= R[(t0 + tt) * K + i]!;
              FT[o + tt] = v;
              PT[o + tt] = v * Cm[(b * L + t0 + tt) * N + n]!;
            }
            if (t0 + Tb < L) f[i] = v * R[(t0 + Tb) * K + i]!;
          }
        }
        // Far pairs: [s, t] = G Fᵀ-layout products.
        const dT = product(G.subarray(0, (t0 + 1) * K), FT.subarray(0, K * Tb), t0 + 1, K, Tb);
        const aT = product(Q.subarray(0, (t0 + 1) * K), PT.subarray(0, K * Tb), t0 + 1, K, Tb);
        for (let tt = 0; tt < Tb; tt++) {
          const row = (b * L + t0 + tt) * L;
          for (let s = 0; s <= t0; s++) { dec[row + s]! += dT[s * Tb + tt]!; att[row + s]! += aT[s * Tb + tt]!; }
        }
        // Near pairs t0 < s ≤ t < t0 + Tb, walking t down the column s; on the diagonal e = 1.
        for (let s = t0 + 1; s < t0 + Tb; s++) {
          const so = s * K, diag = (b * L + s) * L + s, cs = (b * L + s) * N;
          let a = 0;
          for (let n = 0; n < N; n++) {
            let an = 0;
            for (let j = n * k, end = j + k; j < end; j++) { e[j] = 1; an += BD[so + j]!; }
            a += an * Cm[cs + n]!;
          }
          att[diag]! += a;
          dec[diag]! += K;
          for (let t = s + 1; t < t0 + Tb; t++) {
            const o = t * K, cOff = (b * L + t) * N;
            let a = 0, ds = 0;
            for (let n = 0; n < N; n++) {
              let an = 0;
              for (let j = n * k, end = j + k; j < end; j++) {
                const v = (e[j]! *= R[o + j]!);
                ds += v;
                an += v * BD[so + j]!;
              }
              a += an * Cm[cOff + n]!;
            }
            att[(b * L + t) * L + s]! += a;
            dec[(b * L + t) * L + s]! += ds;
          }
        }
      }
    }
  }
  const qk = new Float32Array(Bsz * L * L);
  for (let b = 0; b < Bsz; b++) {
    for (let t = 0; t < L; t++) {
      for (let s = 0; s <= t; s++) {
        let v = 0;
        for (let n = 0; n < N; n++) v += Cm[(b * L + t) * N + n]! * Bm[(b * L + s) * N + n]!;
        qk[(b * L + t) * L + s] = v;
      }
    }
  }
  const scale = (x: Float64Array, c: number) => Float32Array.from(x, (v) => v / c);
  return { attention: tf.tensor3d(scale(att, Din), [Bsz, L, L]), decay: tf.tensor3d(scale(dec, Din * N), [Bsz, L, L]), qk: tf.tensor3d(qk, [Bsz, L, L]) };
}

/** a [M, K] · b [K, N] as plain arrays, by the backend's matMul (XNNPACK on wasm). */
function product(a: Float32Array, b: Float32Array, M: number, K: number, Nc: number): Float32Array {
  const ta = tf.tensor2d(a, [M, K]), tb = tf.tensor2d(b, [K, Nc]);
  const c = tf.matMul(ta, tb);
  const out = c.dataSync() as Float32Array;
  tf.dispose([ta, tb, c]);
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

/**
 * Mamba-2 maps in JS loops over the lower triangle only (the tf-op form computes and masks all
 * L² pairs of every head): per batch row, C_t·B_s once per group, then per head
 * e(t, s) = exp(A_h (S_t − S_s)) from float32 prefix sums, as mamba2Summaries does;
 * α = Σ_g (C·B)_g Σ_{h in g} e_h Δ_s[h] / H, decay = Σ_h e_h / H, qk = mean over groups of C·B.
 */
function mamba2SummariesJs(int: ScanInternals): AttentionSummaries {
  const [Bsz, L, H] = int.delta.shape as [number, number, number];
  const G = int.B.shape[2]!, N = int.B.shape[3]!;
  const rep = H / G;
  const delta = int.delta.dataSync() as Float32Array, A = int.A.dataSync() as Float32Array;
  const Bm = int.B.dataSync() as Float32Array, Cm = int.C.dataSync() as Float32Array;
  const att = new Float32Array(Bsz * L * L), dec = new Float32Array(Bsz * L * L), qk = new Float32Array(Bsz * L * L);
  const S = new Float32Array(L), cb = new Float64Array(L * L), w = new Float64Array(L * L), d = new Float64Array(L * L);
  for (let b = 0; b < Bsz; b++) {
    const ob = b * L * L;
    d.fill(0);
    const a = new Float64Array(L * L);
    const q = new Float64Array(L * L);
    for (let g = 0; g < G; g++) {
      for (let t = 0; t < L; t++) {
        const ct = ((b * L + t) * G + g) * N;
        for (let u = 0; u <= t; u++) {
          const bs = ((b * L + u) * G + g) * N;
          let v = 0;
          for (let n = 0; n < N; n++) v += Cm[ct + n]! * Bm[bs + n]!;
          cb[t * L + u] = Math.fround(v);
        }
      }
      w.fill(0);
      for (let h = g * rep; h < (g + 1) * rep; h++) {
        const Ah = A[h]!;
        let acc = 0;
        for (let t = 0; t < L; t++) S[t] = acc = Math.fround(acc + delta[(b * L + t) * H + h]!);
        for (let t = 0; t < L; t++) {
          const St = S[t]!, row = t * L;
          for (let u = 0; u <= t; u++) {
            const e = Math.fround(Math.exp(Math.fround(Ah * Math.fround(St - S[u]!))));
            d[row + u] += e;
            w[row + u] += e * delta[(b * L + u) * H + h]!;
          }
        }
      }
      for (let t = 0; t < L; t++) {
        for (let u = 0; u <= t; u++) {
          const k = t * L + u;
          a[k] += cb[k]! * w[k]!;
          q[k] += cb[k]!;
        }
      }
    }
    for (let t = 0; t < L; t++) {
      for (let u = 0; u <= t; u++) {
        const k = t * L + u;
        att[ob + k] = a[k]! / H;
        dec[ob + k] = d[k]! / H;
        qk[ob + k] = q[k]! / G;
      }
    }
  }
  return { attention: tf.tensor3d(att, [Bsz, L, L]), decay: tf.tensor3d(dec, [Bsz, L, L]), qk: tf.tensor3d(qk, [Bsz, L, L]) };
}

function mamba2Summaries(int: ScanInternals, channelBlock?: number): AttentionSummaries {
  const [Bsz, L, H] = int.delta.shape as [number, number, number];
  const G = int.B.shape[2]!;
  const rep = H / G;
  const blk = blockSize(channelBlock, L * Math.max(1, Bsz));
  const mask = causalMask(L);
  // Per-group C_t · B_s: [B, G, L, L]. B is laid out as [B, G, N, L] so the product needs no
  // transposed operand (wasm's transposeB path is ~10× slower).
  const qkG = tf.tidy(() => tf.mul(tf.matMul(tf.transpose(int.C, [0, 2, 1, 3]), tf.transpose(int.B, [0, 2, 3, 1])), mask));
  const S = tf.tidy(() => deltaBCL(tf.cumsum(int.delta, 1)));
  const dBCL = deltaBCL(int.delta);
  let att: tf.Tensor = tf.zeros([Bsz, L, L]);
  let dec: tf.Tensor = tf.zeros([Bsz, L, L]);
  // α = Σ_g qk_g ⊙ Σ_{h in g} E_h ⊙ Δ_s[h]: the heads of a group share C·B, so it multiplies their
  // sum once (no per-head gather of C·B, which wasm runs element by element).
  for (let g = 0; g < G; g++) {
    let w: tf.Tensor = tf.zeros([Bsz, L, L]);
    for (let h0 = g * rep; h0 < (g + 1) * rep; h0 += blk) {
      const k = Math.min(blk, (g + 1) * rep - h0);
      const [w2, d2] = tf.tidy(() => {
        const seg = segSums(S.slice([0, h0, 0], [Bsz, k, L]), mask);
        const E = tf.mul(tf.exp(tf.mul(seg, int.A.slice([h0], [k]).reshape([1, k, 1, 1]))), mask); // [B, k, L, L]
        const dS = dBCL.slice([0, h0, 0], [Bsz, k, L]).reshape([Bsz, k, 1, L]);
        return [tf.add(w, tf.sum(tf.mul(E, dS), 1)), tf.add(dec, tf.sum(E, 1))];
      });
      w.dispose();
      dec.dispose();
      w = w2;
      dec = d2;
    }
    const a2 = tf.tidy(() => tf.add(att, tf.mul(qkG.slice([0, g, 0, 0], [Bsz, 1, L, L]).reshape([Bsz, L, L]), w)));
    w.dispose();
    att.dispose();
    att = a2;
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
