/**
 * The mimetic scores of a layer (Trockman et al. 2024, "Mimetic Initialization Helps State Space
 * Models Learn to Recall"). A mimetic layer behaves like a linear-attention layer with
 * identity query-key weights and no decay: W_Cᵀ W_B ≈ c·I, the decay mask ≈ 1, and on a repeated
 * sequence the attention looks back one period.
 *
 * Everything here works on plain arrays, so it is testable without a model.
 * Layouts: weights row-major [N, E]; maps row-major [B, L, L] indexed [b, t, s], causal (s ≤ t).
 */
import type { MambaConfig } from '../checkpoint/config.js';
import type { LayerWeights } from '../checkpoint/checkpoint.js';

type Arr = ArrayLike<number>;

/** The (W_B, W_C) pairs of a layer, each row-major [N, E]: one pair (Mamba-1/Falcon) or one per group (Mamba-2). */
export interface BCWeights {
  N: number;
  E: number;
  pairs: { WB: Float32Array; WC: Float32Array }[];
}

/**
 * Slice W_B and W_C out of a layer's projection weights.
 * Mamba-1/Falcon: x_proj rows [R, R+N) and [R+N, R+2N), R = time_step_rank.
 * Mamba-2: in_proj rows are [z (d_inner), x (d_inner), B (G·N), C (G·N), dt (H)]; group g's B is
 * rows 2·d_inner + g·N …, its C rows 2·d_inner + G·N + g·N ….
 */
export function bcWeights(config: MambaConfig, layer: LayerWeights): BCWeights {
  const N = config.stateSize;
  if (config.arch === 'mamba2') {
    const w = layer['mixer.in_proj.weight'];
    if (!w) throw new Error('layer has no mixer.in_proj.weight');
    const E = config.hiddenSize;
    const G = config.nGroups ?? 1;
    const di = config.intermediateSize;
    const rows = (r0: number) => w.data.slice(r0 * E, (r0 + N) * E);
    const pairs = [];
    for (let g = 0; g < G; g++) pairs.push({ WB: rows(2 * di + g * N), WC: rows(2 * di + G * N + g * N) });
    return { N, E, pairs };
  }
  const w = layer['mixer.x_proj.weight'];
  if (!w) throw new Error('layer has no mixer.x_proj.weight');
  const E = config.intermediateSize;
  const R = config.timeStepRank ?? 0;
  return { N, E, pairs: [{ WB: w.data.slice(R * E, (R + N) * E), WC: w.data.slice((R + N) * E, (R + 2 * N) * E) }] };
}

/** Gram matrix W Wᵀ ([N, N], float64) of a row-major [N, E] matrix. */
export function gram(W: Arr, N: number, E: number): Float64Array {
  const G = new Float64Array(N * N);
  for (let i = 0; i < N; i++) {
    const io = i * E;
    let j = i;
    // Four rows j per pass share each load of row i; every sum keeps its own order over e,
    // so the entries are the same to the last bit as one row at a time.
    for (; j + 3 < N; j += 4) {
      const o0 = j * E, o1 = o0 + E, o2 = o1 + E, o3 = o2 + E;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let e = 0; e < E; e++) {
        const w = W[io + e]!;
        s0 += w * W[o0 + e]!;
        s1 += w * W[o1 + e]!;
        s2 += w * W[o2 + e]!;
        s3 += w * W[o3 + e]!;
      }
      G[i * N + j] = s0; G[j * N + i] = s0;
      G[i * N + j + 1] = s1; G[(j + 1) * N + i] = s1;
      G[i * N + j + 2] = s2; G[(j + 2) * N + i] = s2;
      G[i * N + j + 3] = s3; G[(j + 3) * N + i] = s3;
    }
    for (; j < N; j++) {
      let s = 0;
      for (let e = 0; e < E; e++) s += W[io + e]! * W[j * E + e]!;
      G[i * N + j] = s;
      G[j * N + i] = s;
    }
  }
  return G;
}

/**
 * tr(M) / (√N · ‖M‖_F) for M = W_Cᵀ W_B (E×E), from N×N products only:
 * tr(M) = Σ_n ⟨W_C[n], W_B[n]⟩ and ‖M‖_F² = tr(W_C W_Cᵀ · W_B W_Bᵀ).
 * By Cauchy–Schwarz against the identity restricted to M's row space, the value lies in [−1, 1]
 * and is 1 exactly when M is a positive multiple of a rank-N projection. 0 when M = 0.
 */
export function cbIdentityPair(WB: Arr, WC: Arr, N: number, E: number): number {
  let tr = 0;
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let e = 0; e < E; e++) s += WC[n * E + e]! * WB[n * E + e]!;
    tr += s;
  }
  const GC = gram(WC, N, E);
  const GB = gram(WB, N, E);
  let fro2 = 0;
  // Both Gram matrices are symmetric, so tr(GC·GB) = Σ_ij GC[i,j]·GB[i,j].
  for (let k = 0; k < N * N; k++) fro2 += GC[k]! * GB[k]!;
  // NaN weights give NaN (shown as NaN, left out of the ranking), never a plausible 0.
  if (Number.isNaN(fro2) || Number.isNaN(tr)) return NaN;
  if (fro2 === 0) return 0;
  return tr / (Math.sqrt(N) * Math.sqrt(fro2));
}

/** Mean over n of cos(W_C[n], W_B[n]); a zero row counts as cosine 0. */
export function cbRowCosPair(WB: Arr, WC: Arr, N: number, E: number): number {
  let total = 0;
  for (let n = 0; n < N; n++) {
    let bc = 0, bb = 0, cc = 0;
    for (let e = 0; e < E; e++) {
      const b = WB[n * E + e]!, c = WC[n * E + e]!;
      bc += b * c; bb += b * b; cc += c * c;
    }
    total += Number.isNaN(bc + bb + cc) ? NaN : bb > 0 && cc > 0 ? bc / Math.sqrt(bb * cc) : 0;
  }
  return total / N;
}

/** cbIdentity of a layer: mean over groups (one group for Mamba-1). */
export function cbIdentity(w: BCWeights): number {
  let s = 0;
  for (const p of w.pairs) s += cbIdentityPair(p.WB, p.WC, w.N, w.E);
  return s / w.pairs.length;
}

/** cbRowCos of a layer: mean over groups and rows. */
export function cbRowCos(w: BCWeights): number {
  let s = 0;
  for (const p of w.pairs) s += cbRowCosPair(p.WB, p.WC, w.N, w.E);
  return s / w.pairs.length;
}

/** W_C W_Bᵀ ([N, N], group-mean): entry [i, j] = ⟨W_C[i], W_B[j]⟩; the identity-like part of the layer. */
export function cbGramMap(w: BCWeights): Float32Array {
  const { N, E } = w;
  const out = new Float64Array(N * N);
  for (const { WB, WC } of w.pairs) {
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let e = 0; e < E; e++) s += WC[i * E + e]! * WB[j * E + e]!;
        out[i * N + j]! += s / w.pairs.length;
      }
    }
  }
  return Float32Array.from(out);
}

/** Mean of D[b, t, s] over the batch and all pairs s ≤ t (the diagonal included). 1 = no decay. */
export function maskOnes(decay: Arr, batch: number, L: number): number {
  checkMap(decay, batch, L, 'decay');
  let s = 0;
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < L; t++) {
      const row = (b * L + t) * L;
      for (let k = 0; k <= t; k++) s += decay[row + k]!;
    }
  }
  return s / (batch * (L * (L + 1)) / 2);
}

/**
 * On a probe with period m (x[t] = x[t−m]): the mean over the batch and rows t ∈ [m, L) of
 * (|α[t, t−m]| + |α[t, t−m+1]|) / Σ_{s≤t} |α[t, s]|, the share of attention one period back.
 * A row whose attention is all zero counts as 0. Null without a period.
 */
export function lookbehind(att: Arr, batch: number, L: number, period: number | null): number | null {
  if (period === null) return null;
  checkMap(att, batch, L, 'attention');
  if (!Number.isInteger(period) || period < 1 || period >= L) throw new Error(`period ${period} must be an integer in [1, ${L})`);
  let s = 0;
  for (let b = 0; b < batch; b++) {
    for (let t = period; t < L; t++) {
      const row = (b * L + t) * L;
      let den = 0;
      for (let k = 0; k <= t; k++) den += Math.abs(att[row + k]!);
      if (Number.isNaN(den)) return NaN;
      if (den > 0) s += (Math.abs(att[row + t - period]!) + Math.abs(att[row + t - period + 1]!)) / den;
    }
  }
  return s / (batch * (L - period));
}

/** The mean of maskOnes, max(0, cbIdentity) and lookbehind (of the first two when lookbehind is null). */
export function mimeticScore(s: { cbIdentity: number; maskOnes: number; lookbehind: number | null }): number {
  const parts = [s.maskOnes, Math.max(0, s.cbIdentity)];
  if (s.lookbehind !== null) parts.push(s.lookbehind);
  return parts.reduce((a, b) => a + b, 0) / parts.length;
}

export interface LayerScores {
  layer: number;
  cbIdentity: number;
  cbRowCos: number;
  maskOnes: number;
  lookbehind: number | null;
  mimetic: number;
  /** 1 = most mimetic; null for a layer with a non-finite score (NaN or Inf weights), which is not ranked. */
  rank: number | null;
}

/** Whether every score of a layer is a finite number (a missing lookbehind counts as finite). */
export function scoresFinite(s: Omit<LayerScores, 'rank'>): boolean {
  return [s.cbIdentity, s.cbRowCos, s.maskOnes, s.lookbehind ?? 0, s.mimetic].every(Number.isFinite);
}

/**
 * Ranks by mimetic score, highest first (rank 1); ties go to the lower layer index. A layer with a
 * non-finite score gets rank null: NaN has no place in an order. Returns new objects.
 */
export function rankLayers<T extends Omit<LayerScores, 'rank'>>(layers: T[]): (T & { rank: number | null })[] {
  const order = layers.map((_l, i) => i).filter((i) => scoresFinite(layers[i]!)).sort((a, b) => {
    const d = layers[b]!.mimetic - layers[a]!.mimetic;
    return d !== 0 ? d : layers[a]!.layer - layers[b]!.layer;
  });
  const rank = new Array<number | null>(layers.length).fill(null);
  order.forEach((i, r) => { rank[i] = r + 1; });
  return layers.map((l, i) => ({ ...l, rank: rank[i] ?? null }));
}

/** Sort for display: ranked layers by rank, then the unranked ones by layer index. */
export function byRank<T extends { rank: number | null; layer: number }>(a: T, b: T): number {
  return (a.rank ?? Infinity) - (b.rank ?? Infinity) || a.layer - b.layer;
}

/**
 * Per-channel (Mamba-1) or per-head (Mamba-2) mimetic-ness, used to pick which channels' maps the
 * report shows: the mean of the channel's own maskOnes and lookbehind (maskOnes alone without a period).
 */
export function channelMimetic(maskOnesC: number, lookbehindC: number | null): number {
  return lookbehindC === null ? maskOnesC : (maskOnesC + lookbehindC) / 2;
}

function checkMap(a: Arr, batch: number, L: number, what: string): void {
  if (a.length !== batch * L * L) throw new Error(`${what} map has ${a.length} values, expected ${batch}×${L}×${L}`);
}
