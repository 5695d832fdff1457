/**
 * The layer audit: run a checkpoint on a probe one layer at a time (runCheckpoint streams the
 * weights), score every requested layer, and optionally collect what the report draws (batch-mean
 * maps, A and Δ, per-channel mimetic-ness and the most/least mimetic channels' attention).
 */
import * as tf from '@tensorflow/tfjs';
import type { Checkpoint } from '../checkpoint/checkpoint.js';
import { layerName, layerPrefix } from '../checkpoint/names.js';
import type { MambaConfig } from '../checkpoint/config.js';
import { UserError } from '../util/errors.js';
import { preview } from '../util/text.js';
import { runCheckpoint, type LayerCapture } from './capture.js';
import { checkStreamInputs } from '../model/stream.js';
import { THREADED_BACKENDS, abandonRowsJobs, mergeCaptures, splitRows, startRowsJobs } from './audit-threads.js';
import { channelAttention, internalsToTf, type ScanInternals, type ScanKind } from './attention.js';
import type { Probe } from './probe.js';
import {
  bcWeights, cbIdentity, cbRowCos, cbGramMap, maskOnes, lookbehind, mimeticScore, rankLayers, channelMimetic, scoresFinite,
  type LayerScores, type BCWeights,
} from './scores.js';

export type UnrankedScores = Omit<LayerScores, 'rank'>;

export interface ChannelPick {
  index: number;
  maskOnes: number;
  lookbehind: number | null;
  mimetic: number;
  /** Its attention α[t, s], batch mean [L, L]. */
  attention: Float32Array;
}

export interface LayerDetail {
  batch: number;
  L: number;
  N: number;
  /** Batch means [L, L] of the channel-mean attention, decay mask and C·B. */
  attention: Float32Array;
  decay: Float32Array;
  qk: Float32Array;
  /** W_C W_Bᵀ [N, N] (group mean). */
  cbGram: Float32Array;
  /** A = −exp(A_log): [Din·N] (Mamba-1) or [H] (Mamba-2). */
  A: Float32Array;
  /** Δ on the probe, every value. */
  delta: Float32Array;
  unit: 'channel' | 'head';
  /** Per channel (Mamba-1) or head (Mamba-2). */
  channelMaskOnes: Float64Array;
  channelLookbehind: Float64Array | null;
  channelMimetic: Float64Array;
  most: ChannelPick[];
  least: ChannelPick[];
}

export interface LayerAudit {
  scores: UnrankedScores;
  detail?: LayerDetail;
}

export interface AuditOptions {
  probe: Probe;
  /** Layers to audit (default all). */
  layers?: number[];
  /** Collect the report's maps and per-channel statistics (slower: a second pass over channels). */
  detail?: boolean;
  /** How many most- and least-mimetic channels to keep maps of (default 2 each). */
  channelsShown?: number;
  /** Channels per block in the attention computations (memory bound). */
  channelBlock?: number;
  /** Each layer as soon as it is scored; the audit keeps no detail itself. */
  onLayer?: (a: LayerAudit) => void | Promise<void>;
  /**
   * Threads sharing the probe's rows (default 1: this thread alone). Used on the CPU backends
   * (wasm, cpu) only, at most one per row; see audit-threads.ts. The result is the same.
   */
  threads?: number;
}

export interface AuditResult {
  /** Ranked scores, in layer order. */
  layers: LayerScores[];
  seconds: number;
  /** Tensors holding NaN or Inf, as `name (k NaN, j Inf)`, found where a layer scored non-finite. */
  nonFinite: string[];
  /** Threads the probe's rows were shared among (1 = this thread alone). */
  threads: number;
}

/** The threads an audit of `batch` rows on the current backend uses when `threads` are asked for. */
export function auditThreads(threads: number | undefined, batch: number): number {
  const n = threads ?? 1;
  if (!Number.isInteger(n) || n < 1) throw new UserError(`threads ${n}: give a positive integer`);
  return THREADED_BACKENDS.includes(tf.getBackend()) ? Math.min(n, batch) : 1;
}

/** `name (k NaN, j Inf)` for each of `names` holding non-finite values. */
export function nonFiniteTensors(ckpt: Checkpoint, names: string[]): string[] {
  const out: string[] = [];
  for (const name of names) {
    const d = ckpt.read(name).data;
    let nan = 0, inf = 0;
    for (let k = 0; k < d.length; k++) {
      const v = d[k]!;
      if (v !== v) nan++;
      else if (v === Infinity || v === -Infinity) inf++;
    }
    if (nan || inf) out.push(`${name} (${[nan ? `${nan} NaN` : '', inf ? `${inf} Inf` : ''].filter(Boolean).join(', ')})`);
  }
  return out;
}

/** The warning for layers left out of the ranking, or null when every layer was ranked. */
export function nonFiniteWarning(res: Pick<AuditResult, 'layers' | 'nonFinite'>): string | null {
  const bad = res.layers.filter((l) => l.rank === null).map((l) => l.layer);
  if (!bad.length) return null;
  const shown = res.nonFinite.slice(0, 4).join(', ') + (res.nonFinite.length > 4 ? ` and ${res.nonFinite.length - 4} more` : '');
  return `layer${bad.length > 1 ? 's' : ''} ${bad.join(', ')} scored NaN or Inf and ${bad.length > 1 ? 'are' : 'is'} left out of the ranking: ${shown ? `non-finite values in ${shown}` : 'non-finite values arise in the computation'}; the checkpoint is damaged (re-download it, or check the run that wrote it)`;
}

/** Parse `0-5,31` into sorted unique layer indices, checked against the model. */
export function parseLayerSpec(spec: string, numLayers: number): number[] {
  return parseIndexSpec(spec, numLayers, '--layers', 'layer');
}

/** Parse `0-5,31` into sorted unique indices below `count` (layers, channels, heads), errors naming `flag`. */
export function parseIndexSpec(spec: string, count: number, flag: string, unit: string): number[] {
  const out = new Set<number>();
  const bad = (why: string) => new UserError(`${flag} ${preview(spec)}: ${why}; give indices and ranges within 0-${count - 1}, e.g. 0-5,31`);
  for (const part of spec.split(',').map((p) => p.trim())) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw bad(`'${part}' is not an index or a range a-b`);
    const a = Number(m[1]), b = m[2] !== undefined ? Number(m[2]) : a;
    if (b < a) throw bad(`range ${part} is reversed`);
    if (b >= count) throw bad(`${unit} ${b} is outside the model (it has ${count} ${unit}s)`);
    for (let i = a; i <= b; i++) out.add(i);
  }
  return [...out].sort((x, y) => x - y);
}

/** W_B / W_C of layer i, read alone (x_proj for Mamba-1/Falcon, in_proj for Mamba-2). */
export function readBC(ckpt: Checkpoint, i: number): BCWeights {
  const short = ckpt.config.arch === 'mamba2' ? 'mixer.in_proj.weight' : 'mixer.x_proj.weight';
  return bcWeights(ckpt.config, { [short]: ckpt.read(layerName(i, short)) });
}

/** Scores of one layer from its weights (or their two weight-only scores) and captured maps. */
export function layerScores(layer: number, bc: BCWeights | { cbIdentity: number; cbRowCos: number }, cap: { attention: Float32Array; decay: Float32Array }, batch: number, L: number, period: number | null): UnrankedScores {
  const cb = 'pairs' in bc ? { cbIdentity: cbIdentity(bc), cbRowCos: cbRowCos(bc) } : bc;
  const s = {
    layer,
    cbIdentity: cb.cbIdentity,
    cbRowCos: cb.cbRowCos,
    maskOnes: maskOnes(cap.decay, batch, L),
    lookbehind: lookbehind(cap.attention, batch, L, period),
  };
  return { ...s, mimetic: mimeticScore(s) };
}

/** Mean over the leading batch axis of a [B, ...] array. */
export function batchMean(data: ArrayLike<number>, batch: number): Float32Array {
  const n = data.length / batch;
  const out = new Float32Array(n);
  for (let b = 0; b < batch; b++) for (let i = 0; i < n; i++) out[i]! += data[b * n + i]! / batch;
  return out;
}

const CPU_BACKENDS = new Set(['cpu', 'wasm']);

function scanKind(c: MambaConfig): ScanKind {
  return c.arch === 'mamba2' ? 'mamba2' : 'mamba1';
}

export async function auditCheckpoint(ckpt: Checkpoint, opts: AuditOptions): Promise<AuditResult> {
  const c = ckpt.config;
  const layers = opts.layers ?? Array.from({ length: c.numLayers }, (_, i) => i);
  for (const i of layers) if (!Number.isInteger(i) || i < 0 || i >= c.numLayers) throw new UserError(`layer ${i} is out of range: the model has layers 0-${c.numLayers - 1}`);
  const { ids, period } = opts.probe;
  const batch = ids.length, L = ids[0]!.length;
  if (period !== null && (period < 1 || period >= L)) throw new UserError(`probe period ${period} must be in [1, ${L}) for sequences of length ${L}`);
  const t0 = performance.now();
  const scores: UnrankedScores[] = [];
  // Only where a layer scores non-finite are its tensors (and, if they are clean, those before it) searched for NaN and Inf.
  const nonFinite: string[] = [];
  const searched = new Set<string>();
  const search = (names: string[]) => {
    const fresh = names.filter((n) => !searched.has(n));
    fresh.forEach((n) => searched.add(n));
    return nonFiniteTensors(ckpt, fresh);
  };
  const capture = opts.detail ? 'internals' : 'attention';
  const threads = auditThreads(opts.threads, batch);
  // With threads: this thread runs the first chunk of rows, each worker one more; a layer is
  // scored once every chunk of it is here, from the rows concatenated in order.
  // All rows are checked here, so that an error names a row of the probe, not of a worker's chunk.
  if (threads > 1) checkStreamInputs(c, ids, layers);
  const chunks = splitRows(ids, threads);
  // Without detail (which needs the weights here), worker k also takes the weight-only scores of
  // every threads-th layer (the same function on the same weights), so no thread lags at the end.
  const cbLayers = (k: number) => (opts.detail ? [] : layers.filter((_i, j) => j % threads === k + 1));
  const streams = threads > 1 ? startRowsJobs(chunks.slice(1).map((rows, k) => ({ source: ckpt.source, backend: tf.getBackend(), ids: rows, layers, capture, channelBlock: opts.channelBlock, cbLayers: cbLayers(k) }))) : [];
  const scoreLayer = async (i: number, cap: LayerCapture, cb?: { cbIdentity: number; cbRowCos: number }) => {
    const maps = cap.attention!;
    const bc = cb ?? readBC(ckpt, i);
    const s = layerScores(i, bc, { attention: maps.attention.data, decay: maps.decay.data }, batch, L, period);
    scores.push(s);
    if (!scoresFinite(s)) {
      const own = ckpt.names().filter((n) => n.startsWith(layerPrefix(i)));
      let found = search(own);
      const earlier = (n: string) => Number(/^backbone\.layers\.(\d+)\./.exec(n)?.[1] ?? Infinity) < i;
      if (!found.length) found = search(['backbone.embeddings.weight', ...ckpt.names().filter(earlier)]);
      nonFinite.push(...found);
    }
    const a: LayerAudit = { scores: s };
    if (opts.detail) a.detail = await layerDetail(c, cap, 'pairs' in bc ? bc : readBC(ckpt, i), batch, L, period, opts.channelsShown ?? 2, opts.channelBlock);
    await opts.onLayer?.(a);
  };
  try {
    await runCheckpoint(ckpt, chunks[0]!, {
      capture,
      layers,
      keepCaptures: false,
      skipLogits: true,
      hiddenStates: false,
      stopAfterLastCapture: true,
      channelBlock: opts.channelBlock,
      onLayer: async (i: number, cap: LayerCapture) => {
        if (!streams.length) return scoreLayer(i, cap);
        const parts = await Promise.all(streams.map((st) => st.next(i)));
        return scoreLayer(i, mergeCaptures([cap, ...parts]), parts.find((p) => p.cb)?.cb);
      },
    });
  } catch (e) {
    if (streams.length) abandonRowsJobs();
    throw e;
  }
  const ranked = rankLayers(scores).sort((x, y) => x.layer - y.layer);
  return { layers: ranked, seconds: (performance.now() - t0) / 1000, nonFinite, threads };
}

async function layerDetail(c: MambaConfig, cap: LayerCapture, bc: BCWeights, batch: number, L: number, period: number | null, shown: number, channelBlock?: number): Promise<LayerDetail> {
  const maps = cap.attention!;
  const int = internalsToTf(cap.internals!);
  try {
    const kind = scanKind(c);
    // The CPU backends take the plain-JS walk (faster, and no [B, block, L, L] temporaries); the
    // others the tf.js version, which runs on the device.
    const stats = CPU_BACKENDS.has(tf.getBackend()) ? channelStatsJs(kind, cap.internals!, period) : await channelStats(kind, int, period, channelBlock);
    const count = stats.maskOnes.length;
    const mim = new Float64Array(count);
    for (let d = 0; d < count; d++) mim[d] = channelMimetic(stats.maskOnes[d]!, stats.lookbehind ? stats.lookbehind[d]! : null);
    // Most mimetic first; ties to the lower index. The least are taken from the other end, disjoint.
    const order = Array.from({ length: count }, (_, d) => d).sort((a, b) => mim[b]! - mim[a]! || a - b);
    const nMost = Math.min(shown, count), nLeast = Math.min(shown, count - nMost);
    const mostIdx = order.slice(0, nMost);
    const leastIdx = order.slice(count - nLeast).reverse();
    const picked = [...mostIdx, ...leastIdx];
    const chMaps = picked.length ? channelAttention(kind, int, picked) : null;
    const chData = chMaps ? await chMaps.data() : new Float32Array(0);
    chMaps?.dispose();
    const pick = (d: number, j: number): ChannelPick => {
      // chMaps is [B, picked, L, L]: average channel j over the batch.
      const m = new Float32Array(L * L);
      for (let b = 0; b < batch; b++) {
        const off = (b * picked.length + j) * L * L;
        for (let q = 0; q < L * L; q++) m[q]! += chData[off + q]! / batch;
      }
      return { index: d, maskOnes: stats.maskOnes[d]!, lookbehind: stats.lookbehind ? stats.lookbehind[d]! : null, mimetic: mim[d]!, attention: m };
    };
    return {
      batch, L, N: bc.N,
      attention: batchMean(maps.attention.data, batch),
      decay: batchMean(maps.decay.data, batch),
      qk: batchMean(maps.qk.data, batch),
      cbGram: cbGramMap(bc),
      A: cap.internals!.A.data,
      delta: cap.internals!.delta.data,
      unit: kind === 'mamba2' ? 'head' : 'channel',
      channelMaskOnes: stats.maskOnes,
      channelLookbehind: stats.lookbehind,
      channelMimetic: mim,
      most: mostIdx.map((d, j) => pick(d, j)),
      least: leastIdx.map((d, j) => pick(d, mostIdx.length + j)),
    };
  } finally {
    tf.dispose(Object.values(int));
  }
}

export interface ChannelStats {
  maskOnes: Float64Array;
  lookbehind: Float64Array | null;
}

type Plain = { shape: number[]; data: Float32Array };

/**
 * channelStats in plain JavaScript (float64), for the CPU backends: instead of one exp per
 * (t, s, n) it walks each column s down the rows with the scan's own recurrence,
 * exp(A Σ_{k=s+1..t} Δ_k) = exp(A Σ_{k=s+1..t−1} Δ_k) · exp(A Δ_t), so the work is one multiply per
 * (t, s, n) and memory stays at a few rows. Same definitions as channelStats (below).
 */
export function channelStatsJs(kind: ScanKind, int: { delta: Plain; A: Plain; B: Plain; C: Plain }, period: number | null): ChannelStats {
  const [Bsz, L, count] = int.delta.shape as [number, number, number];
  const delta = int.delta.data, A = int.A.data, Bm = int.B.data, Cm = int.C.data;
  const m2 = kind === 'mamba2';
  // Mamba-1: B, C [B, L, N]; Mamba-2: [B, L, G, N].
  const G = m2 ? int.B.shape[2]! : 1;
  const N = m2 ? int.B.shape[3]! : int.A.shape[1]!;
  const rep = count / G;
  const dec = new Float64Array(count), lb = new Float64Array(count);
  const rowAbs = new Float64Array(L), rowNum = new Float64Array(L);
  const r = new Float64Array(L * N); // exp(A[n] Δ_t)
  const e = new Float64Array(N);
  // Per batch row: C_t[n] B_s[n] summed over n, per group (Mamba-2), or kept per n (Mamba-1).
  const qk = new Float64Array(m2 ? G * L * L : 0);
  for (let b = 0; b < Bsz; b++) {
    if (m2) {
      for (let g = 0; g < G; g++) {
        for (let t = 0; t < L; t++) {
          for (let s2 = 0; s2 <= t; s2++) {
            let v = 0;
            for (let n = 0; n < N; n++) v += Cm[((b * L + t) * G + g) * N + n]! * Bm[((b * L + s2) * G + g) * N + n]!;
            qk[(g * L + t) * L + s2] = v;
          }
        }
      }
    }
    for (let d = 0; d < count; d++) {
      const nA = m2 ? 1 : N;
      for (let t = 0; t < L; t++) {
        const dt = delta[(b * L + t) * count + d]!;
        for (let n = 0; n < nA; n++) r[t * nA + n] = Math.exp((m2 ? A[d]! : A[d * N + n]!) * dt);
      }
      rowAbs.fill(0);
      rowNum.fill(0);
      let decSum = 0;
      const g = Math.floor(d / rep);
      for (let s = 0; s < L; s++) {
        const ds = delta[(b * L + s) * count + d]!;
        e.fill(1, 0, nA);
        for (let t = s; t < L; t++) {
          let a = 0, es = 0;
          if (t > s) for (let n = 0; n < nA; n++) e[n]! *= r[t * nA + n]!;
          if (m2) {
            es = e[0]!;
            a = qk[(g * L + t) * L + s]! * es;
          } else {
            const cOff = (b * L + t) * N, bOff = (b * L + s) * N;
            for (let n = 0; n < N; n++) {
              const en = e[n]!;
              es += en;
              a += Cm[cOff + n]! * Bm[bOff + n]! * en;
            }
          }
          decSum += es;
          const abs = Math.abs(a * ds);
          rowAbs[t]! += abs;
          if (period !== null && t >= period && (s === t - period || s === t - period + 1)) rowNum[t]! += abs;
        }
      }
      dec[d]! += decSum / nA;
      if (period !== null) for (let t = period; t < L; t++) if (rowAbs[t]! > 0) lb[d]! += rowNum[t]! / rowAbs[t]!;
    }
  }
  const pairs = (L * (L + 1)) / 2;
  for (let d = 0; d < count; d++) {
    dec[d] = dec[d]! / (Bsz * pairs);
    if (period !== null) lb[d] = lb[d]! / (Bsz * (L - period));
  }
  return { maskOnes: dec, lookbehind: period === null ? null : lb };
}

/**
 * Per channel (Mamba-1) or head (Mamba-2): its own maskOnes (its decay mask, averaged over the
 * batch, s ≤ t and — Mamba-1 — states) and lookbehind (the layer formula applied to its own α).
 * α and the decay come from the same exponentials, computed once per block of channels:
 *   Mamba-1: α_d[t, s] = Δ_d[s] Σ_n C_t[n] B_s[n] exp(A[d, n] (S_d[t] − S_d[s])), S = cumsum Δ
 *   Mamba-2: α_h[t, s] = Δ_h[s] (C_t · B_s)_{group(h)} exp(A[h] (S_h[t] − S_h[s]))
 */
export async function channelStats(kind: ScanKind, int: ScanInternals, period: number | null, channelBlock?: number): Promise<ChannelStats> {
  const [Bsz, L, count] = int.delta.shape as [number, number, number];
  const blk = channelBlock ?? Math.max(1, Math.floor((16 * 2 ** 20) / (4 * Bsz * L * L)));
  const mOut = new Float64Array(count);
  const lOut = period === null ? null : new Float64Array(count);
  const pairs = (L * (L + 1)) / 2;
  const consts = tf.tidy(() => {
    const mask = tf.linalg.bandPart(tf.ones([L, L]), -1, 0);
    // Selector of the two lookbehind entries per row t ≥ m: s = t − m and s = t − m + 1.
    const sel = new Float32Array(L * L);
    const rows = new Float32Array(L);
    if (period !== null) {
      for (let t = period; t < L; t++) { sel[t * L + t - period] = 1; sel[t * L + t - period + 1] = 1; rows[t] = 1; }
    }
    return {
      mask,
      sel: tf.tensor2d(sel, [L, L]),
      rows: tf.tensor1d(rows),
      S: tf.transpose(tf.cumsum(int.delta, 1), [0, 2, 1]), // [B, count, L]
      dT: tf.transpose(int.delta, [0, 2, 1]),
    };
  });
  // Mamba-2: per-group C_t · B_s [B, G, L, L].
  const qkG = kind === 'mamba2' ? tf.tidy(() => tf.matMul(tf.transpose(int.C, [0, 2, 1, 3]), tf.transpose(int.B, [0, 2, 1, 3]), false, true)) : null;
  try {
    for (let d0 = 0; d0 < count; d0 += blk) {
      const k = Math.min(blk, count - d0);
      const [decSum, lb] = tf.tidy(() => {
        const S = consts.S.slice([0, d0, 0], [Bsz, k, L]);
        const seg = tf.mul(tf.sub(S.reshape([Bsz, k, L, 1]), S.reshape([Bsz, k, 1, L])), consts.mask); // [B, k, L, L]
        const dS = consts.dT.slice([0, d0, 0], [Bsz, k, L]).reshape([Bsz, k, 1, L]);
        let decAcc: tf.Tensor, alpha: tf.Tensor;
        if (kind === 'mamba2') {
          const H = count, G = int.B.shape[2]!;
          const E = tf.mul(tf.exp(tf.mul(seg, int.A.slice([d0], [k]).reshape([1, k, 1, 1]))), consts.mask);
          decAcc = tf.sum(E, [0, 2, 3]);
          const groups = tf.tensor1d(Array.from({ length: k }, (_, j) => Math.floor((d0 + j) / (H / G))), 'int32');
          alpha = tf.mul(tf.mul(tf.gather(qkG!, groups, 1), E), dS);
        } else {
          const N = int.A.shape[1]!;
          const Ab = int.A.slice([d0, 0], [k, N]);
          decAcc = tf.zeros([k]);
          let acc: tf.Tensor = tf.zeros([Bsz, k, L, L]);
          for (let n = 0; n < N; n++) {
            // One tidy per state so only the running sums outlive an iteration.
            const [acc2, dec2] = tf.tidy(() => {
              const E = tf.mul(tf.exp(tf.mul(seg, Ab.slice([0, n], [k, 1]).reshape([1, k, 1, 1]))), consts.mask);
              const cb = tf.mul(int.C.slice([0, 0, n], [Bsz, L, 1]), int.B.slice([0, 0, n], [Bsz, L, 1]).reshape([Bsz, 1, L])).reshape([Bsz, 1, L, L]);
              return [tf.add(acc, tf.mul(cb, E)), tf.add(decAcc, tf.sum(E, [0, 2, 3]))];
            });
            acc.dispose();
            decAcc.dispose();
            acc = acc2;
            decAcc = dec2;
          }
          decAcc = tf.div(decAcc, N);
          alpha = tf.mul(acc, dS);
        }
        if (period === null) return [decAcc, tf.zeros([k])];
        const absA = tf.abs(alpha);
        const den = tf.sum(absA, 3); // [B, k, L]
        const num = tf.sum(tf.mul(absA, consts.sel), 3);
        const ratio = tf.where(tf.greater(den, 0), tf.div(num, tf.maximum(den, 1e-30)), tf.zerosLike(den));
        return [decAcc, tf.sum(tf.mul(ratio, consts.rows), [0, 2])];
      });
      const dv = await decSum.data(), lv = await lb.data();
      tf.dispose([decSum, lb]);
      for (let j = 0; j < k; j++) {
        mOut[d0 + j] = dv[j]! / (Bsz * pairs);
        if (lOut) lOut[d0 + j] = lv[j]! / (Bsz * (L - period!));
      }
    }
  } finally {
    tf.dispose([consts.mask, consts.sel, consts.rows, consts.S, consts.dT, ...(qkG ? [qkG] : [])]);
  }
  return { maskOnes: mOut, lookbehind: lOut };
}
