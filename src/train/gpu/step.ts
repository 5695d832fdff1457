/**
 * The compiled training step on WebGPU: forward, hand-written backward and AdamW of a MambaLM as
 * ~30 raw dispatches per layer in one compute pass and one submit (engine.ts, kernels.ts), with no
 * host round trip inside a step. The loss and gradient norm of each step go to a ring on the GPU
 * that the trainer reads every few steps. The tf.js variables stay the model's truth between
 * phases: `push` copies them (and the AdamW moments) in, `pull` copies them back before an
 * evaluation or a checkpoint.
 *
 * Supported: Mamba-1 (no in/out projection biases) and Mamba-2 (no d_mlp, any n_groups), either A
 * parameterisation, tied or untied head. Anything else trains through tf.js autodiff.
 */
import * as tf from '@tensorflow/tfjs';
import type { MambaConfig } from '../../checkpoint/config.js';
import { A_LOG_PARAM } from '../../model/mamba.js';
import type { MambaLM } from '../../model/lm.js';
import { EMBEDDING, LM_HEAD, NORM_F, layerName } from '../../model/weights.js';
import type { Batch } from '../../tasks/common.js';
import type { AdamWHParams, AdamWState } from '../adamw.js';
import { grid } from '../../model/kernels/webgpu-program.js';
import { Engine, type BufName, type GPUBuffer } from './engine.js';
import * as K from './kernels.js';
import * as SSD from './ssd.js';
import { UserError } from '../../util/errors.js';

const BIG = 3.4e38;
/** Steps of losses / gradient norms kept on the GPU between reads. */
export const RING = 256;

interface WebGPUBackendLike {
  device: unknown;
  tensorMap: { get(id: object): { resource?: GPUBuffer; values?: unknown } | undefined };
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

/** Why this model cannot use the compiled step (null: it can). `params`: the model's weights by name. */
export function compiledStepUnsupported(c: MambaConfig, params: Map<string, tf.Tensor>): string | null {
  if (tf.getBackend() !== 'webgpu') return 'not on the webgpu backend';
  if (c.arch === 'falcon_mamba') return 'Falcon-Mamba (B/C/Δ norms) has no compiled step';
  if ([...params.keys()].some((n) => /(in_proj|out_proj|x_proj)\.bias$/.test(n))) return 'linear biases in the mixer';
  if (c.arch === 'mamba2') {
    const H = c.numHeads!, G = c.nGroups ?? 1;
    if (c.intermediateSize !== H * c.headDim!) return 'd_inner ≠ heads × head dim';
    if (H % G !== 0) return 'heads not divisible by groups';
    // in_proj packs [z, xBC, dt]; a d_mlp > 0 checkpoint has two more blocks in front.
    const width = 2 * c.intermediateSize + 2 * G * c.stateSize + H;
    for (const [name, w] of params) if (name.endsWith('mixer.in_proj.weight') && w.shape[0] !== width) return 'an in_proj with a d_mlp part';
  }
  if (c.stateSize > MAX_STATE) return `state size ${c.stateSize} over ${MAX_STATE}`;
  return null;
}

/** Largest d_state the compiled step's scan takes (its per-thread states and lane sums are sized for it). */
export const MAX_STATE = 1024;

/** Knobs of the compiled step (all optional; the defaults suit the GPU host and lavapipe alike). */
export interface CompiledStepOptions {
  /** Time steps per scan chunk: the backward keeps one state per chunk and recomputes inside it (default 16). */
  scanChunk?: number;
  /** Threads per scan lane, each holding d_state / scanThreads states (default kernels.ts's defaultScanThreads). */
  scanThreads?: number;
  /**
   * How the scan's threads map to (lane, state slice), kernels.ts's ScanThreadLayout (default
   * DEFAULT_SCAN_LAYOUT, lane-fastest: coalesced state reads and writes).
   */
  scanLayout?: K.ScanThreadLayout;
  /**
   * The Mamba-2 scan's form: 'recurrent' (the step-by-step scan of kernels.ts, the default) or 'ssd'
   * (ssd.ts: the chunked state-space-duality form, small matmuls per chunk, states only at chunk
   * starts). Not yet measured on the GPU. Mamba-1 has only the recurrent form.
   */
  scanForm?: K.ScanForm;
  /** Steps per SSD chunk (scanForm 'ssd'; default ssd.ts's DEFAULT_SSD_CHUNK, 64; at most MAX_SSD_CHUNK). */
  ssdChunk?: number;
  /**
   * Micro-batches per step: the batch is split (padded with masked rows) and the gradients summed,
   * so batch × length may exceed one storage binding. Default: the fewest whose buffers fit.
   */
  microBatches?: number;
  /**
   * Every matmul's tile: a key of kernels.ts's MATMUL_TILES, or 'fill' for the largest that still
   * makes FILL_TILES workgroups. Default 64x64: on the H200 (2026-12-03) 'fill' was 1.2-1.6x slower
   * at every experiment shape (README, training step).
   */
  matmulTile?: string;
  /** A cap on the device's storage-binding size in bytes (tests of the micro-batch split). */
  bindingBytes?: number;
}

type Region = number;

/** Workgroups a matmul should make at least (about two per SM of an H200's 132) before a smaller tile is chosen. */
const FILL_TILES = 264;
/** The tile every matmul uses unless matmulTile says otherwise (the fastest measured; see matmulTile). */
const DEFAULT_TILE = '64x64';

/** Buffers over the binding limit (the constructor then tries more micro-batches). */
class TooBig extends Error {}
/** What does not fit even in micro-batches of one sequence: the caller adds its own ways out. */
export class StepTooBig extends UserError {}
interface View { buf: BufName; off: number; rs: number; cs: number }

export class CompiledStep {
  engine: Engine;
  /** Parameter name → [offset, size] in P/G/M/V. */
  readonly layout = new Map<string, [number, number]>();
  readonly nParams: number;
  readonly T: number;
  private xTop = 0;
  /** Micro-batches per step and tokens per micro-batch. */
  k = 1;
  Tm = 0;
  /** While building micro-batch > 0: gradients accumulate into G. */
  private gAcc = false;
  private sNeed = 0;
  private readonly backend: WebGPUBackendLike;
  private readonly r: Record<string, Region> = {};
  private readonly iOff: Record<string, number> = {};

  /**
   * `share`: a step of the same model for another batch shape; this one then uses its parameter,
   * gradient and moment buffers (tasks that mix sequence lengths get one step per length).
   */
  constructor(readonly model: MambaLM, readonly params: Map<string, tf.Variable>, readonly batch: number, readonly L: number, share?: CompiledStep, readonly options: CompiledStepOptions = {}) {
    const why = compiledStepUnsupported(model.config, params);
    if (why) throw new Error(`compiled step: ${why}`);
    this.backend = tf.backend() as unknown as WebGPUBackendLike;
    this.engine = new Engine(this.backend.device, share?.engine);
    this.T = batch * L;
    const lim = (this.backend.device as { limits: Record<string, number> }).limits;
    const limit = Math.min(Number(lim.maxStorageBufferBindingSize), Number(lim.maxBufferSize ?? Infinity), options.bindingBytes ?? Infinity);
    let off = 0;
    for (const [k, v] of params) {
      this.layout.set(k, [off, v.size]);
      off += v.size;
    }
    this.nParams = off;
    if (share && (share.model !== model || share.nParams !== this.nParams)) throw new Error('compiled step: can only share buffers with a step of the same model');
    const mb = options.microBatches;
    if (mb !== undefined && !(Number.isInteger(mb) && mb >= 1 && mb <= batch)) throw new UserError(`compiled step: micro-batches ${mb} must be a whole number from 1 to the batch size ${batch}`);
    // The fewest micro-batches whose activations and scratch fit one storage binding.
    for (this.k = mb ?? 1; ; this.k = Math.min(batch, this.k * 2)) {
      if (share) for (const b of ['P', 'G', 'M', 'V'] as const) this.engine.borrow(b, share.engine);
      try {
        this.build(limit);
        return;
      } catch (e) {
        this.engine.destroy();
        if (!(e instanceof TooBig) || mb !== undefined || this.k >= batch) {
          if (e instanceof TooBig) throw new StepTooBig(`compiled step: ${e.message} even in micro-batches of ${Math.ceil(batch / this.k)} sequence(s); shorten the context or lower the state size${this.options.scanForm === 'ssd' ? ' (or, with the ssd scan form, use longer chunks: fewer chunk states)' : ''}`);
          throw e;
        }
        this.engine = new Engine(this.backend.device, share?.engine ?? this.engine);
        this.xTop = 0;
        this.sNeed = 0;
      }
    }
  }

  private reg(name: string, n: number): Region {
    const at = this.xTop;
    this.xTop += Math.ceil(n / 4) * 4;
    this.r[name] = at;
    return at;
  }

  private p(name: string): number {
    const l = this.layout.get(name);
    if (!l) throw new Error(`compiled step: no parameter ${name}`);
    return l[0];
  }

  private has(name: string): boolean {
    return this.layout.has(name);
  }

  private needS(n: number): void {
    this.sNeed = Math.max(this.sNeed, n);
  }

  /**
   * The matmul tile for an M×N output: the matmulTile option (DEFAULT_TILE), or with 'fill' the
   * largest of kernels.ts's MATMUL_TILES that still makes FILL_TILES workgroups.
   */
  private tileFor(M: number, N: number): K.MatmulTile {
    const names = Object.keys(K.MATMUL_TILES);
    const want = this.options.matmulTile ?? DEFAULT_TILE;
    if (want === 'fill') {
      const all = names.map((n) => K.MATMUL_TILES[n]!);
      return all.find((t) => Math.ceil(M / t.BM) * Math.ceil(N / t.BN) >= FILL_TILES) ?? all[all.length - 1]!;
    }
    if (!names.includes(want)) throw new UserError(`compiled step: matmul tile ${want} is not one of ${names.join(', ')}, fill`);
    return K.MATMUL_TILES[want]!;
  }

  /** C (+)= A·B with views; weight gradients (long K, few output tiles) are split over K into S. */
  private mm(a: View, b: View, c: { buf: BufName; off: number; rs: number }, M: number, N: number, Kd: number, opts: { acc?: boolean; addOff?: number } = {}): void {
    const tile = this.tileFor(M, N);
    const tiles = Math.ceil(M / tile.BM) * Math.ceil(N / tile.BN);
    let splits = 1;
    if (tiles < 128 && Kd >= 1024) splits = Math.min(Math.ceil(Kd / 256), Math.ceil(256 / tiles));
    const kChunk = Math.ceil(Kd / splits / 16) * 16;
    splits = Math.ceil(Kd / kChunk);
    const acc = opts.acc || (c.buf === 'G' && this.gAcc);
    const flags = (acc ? 1 : 0) | (opts.addOff !== undefined ? 2 : 0);
    const base = { M, N, K: Kd, aOff: a.off, aRs: a.rs, aCs: a.cs, bOff: b.off, bRs: b.rs, bCs: b.cs, kChunk, addOff: opts.addOff ?? 0 };
    const groups: [number, number, number] = [Math.ceil(N / tile.BN), Math.ceil(M / tile.BM), splits];
    const aRowFast = a.rs === 1, bColFast = b.cs === 1;
    if (splits === 1) {
      this.engine.op(K.matmul(a.buf, b.buf, c.buf, aRowFast, bColFast, tile), { ...base, cOff: c.off, cRs: c.rs, flags, zStride: 0 }, groups);
      return;
    }
    if (opts.addOff !== undefined) throw new Error('split-K with an added term');
    this.needS(splits * M * N);
    this.engine.op(K.matmul(a.buf, b.buf, 'S', aRowFast, bColFast, tile), { ...base, cOff: 0, cRs: N, flags: 0, zStride: M * N }, groups);
    this.engine.op(K.sumSlices(c.buf), { n: M * N, slices: splits, srcOff: 0, dstOff: c.off, rows: M, dstRs: c.rs, cols: N, acc: acc ? 1 : 0 }, grid(Math.ceil((M * N) / 256)));
  }

  /** G[dst…] (+)= Σ_rows f(row, col) (colReduce modes), optionally grouped and scaled (colFinish). */
  private colSum(dst: number, rows: number, cols: number, f: Record<string, number>, fin: { grp?: number; mode?: number; pOff?: number; k?: number; acc?: boolean } = {}): void {
    const chunk = 256;
    const chunks = Math.ceil(rows / chunk);
    this.needS(chunks * cols);
    const fields = { rows, cols, mode: 0, aOff: 0, aRs: 0, bOff: 0, bRs: 0, rOff: 0, rRs: 0, rDiv: 1, K: 1, L: this.L, chunk, partOff: 0, ...f };
    this.engine.op(K.colReduce, fields, [Math.ceil(cols / 64), chunks, 1]);
    const grp = fin.grp ?? 1;
    const n = cols / grp;
    this.engine.op(K.colFinish, { n, cols, chunks, grp, partOff: 0, dstOff: dst, acc: fin.acc || this.gAcc ? 1 : 0, mode: fin.mode ?? 0, pOff: fin.pOff ?? 0, pDiv: 1, k: fin.k ?? 0 }, grid(Math.ceil(n / 256)));
  }

  private build(limit: number): void {
    const c = this.model.config;
    const { L, k } = this;
    const B = Math.ceil(this.batch / k), T = B * L;
    this.Tm = T;
    const D = c.hiddenSize, E = c.intermediateSize, N = c.stateSize, V = c.vocabSize, Kc = c.convKernel;
    const nL = c.numLayers;
    const m2 = c.arch === 'mamba2';
    const H = m2 ? c.numHeads! : E;
    const Pd = m2 ? c.headDim! : 1;
    const G = m2 ? c.nGroups ?? 1 : 1;
    const R = m2 ? 0 : c.timeStepRank!;
    const convDim = m2 ? E + 2 * G * N : E;
    const Win = m2 ? 2 * E + 2 * G * N + H : 2 * E;
    const Q = E; // scan lanes per batch row
    const form = this.options.scanForm ?? K.DEFAULT_SCAN_FORM;
    if (!K.SCAN_FORMS.includes(form)) throw new UserError(`compiled step: scan form ${String(form)} is not one of ${K.SCAN_FORMS.join(', ')}`);
    if (form === 'ssd' && !m2) throw new UserError('compiled step: scan form ssd needs Mamba-2 (a scalar A per head); use scan form recurrent for Mamba-1');
    const ssd = form === 'ssd';
    const CLs = Math.min(L, this.options.ssdChunk ?? SSD.DEFAULT_SSD_CHUNK);
    if (ssd && !(Number.isInteger(CLs) && CLs >= 1 && CLs <= SSD.MAX_SSD_CHUNK)) throw new UserError(`compiled step: ssd chunk ${this.options.ssdChunk} must be a whole number of steps from 1 to ${SSD.MAX_SSD_CHUNK}`);
    const NS = this.options.scanThreads ?? K.defaultScanThreads(N);
    const threadLayout = this.options.scanLayout ?? K.DEFAULT_SCAN_LAYOUT;
    if (!K.SCAN_THREAD_LAYOUTS.includes(threadLayout)) throw new UserError(`compiled step: scan layout ${String(threadLayout)} is not one of ${K.SCAN_THREAD_LAYOUTS.join(', ')}`);
    const storage = Number((this.engine.device as { limits: Record<string, number> }).limits.maxComputeWorkgroupStorageSize ?? 16384);
    const lay = K.scanLayout(N, Q / G, NS, storage, threadLayout);
    if (typeof lay === 'string') throw new UserError(`compiled step: ${lay}; change the scan threads option`);
    const { W, SL } = lay;
    const nBlk = Q / W;
    // The scan backward keeps the state at each chunk's start (B·nC·N·Q) and one chunk's states (B·C·N·Q).
    const C = Math.min(L, this.options.scanChunk ?? 16);
    if (!(Number.isInteger(C) && C >= 1)) throw new UserError(`compiled step: scan chunk ${this.options.scanChunk} must be a whole number of steps ≥ 1`);
    const nC = Math.ceil(L / C);
    const bcW = R + 2 * N; // Mamba-1 x_proj width
    const [lo, hi] = m2 ? c.timeStepLimit ?? [0, Infinity] : [0, Infinity];
    const hiF = Number.isFinite(hi) ? hi : BIG;
    const aParam = this.model.aParam;
    const aMode = aParam ? 1 : 0;
    const kA = aParam ? aParam.c : 0;
    const eps = c.layerNormEpsilon;
    const lp = layerName;
    const aName = (i: number) => lp(i, aParam ? A_LOG_PARAM : 'mixer.A_log');
    const tied = !this.has(LM_HEAD);
    const head = tied ? EMBEDDING : LM_HEAD;

    // Regions.
    const Hs: Region[] = [];
    for (let l = 0; l <= nL; l++) Hs.push(this.reg(`H${l}`, T * D));
    const per = (name: string, n: number) => Array.from({ length: nL }, (_, l) => this.reg(`${name}${l}`, n));
    const RSTD = per('RSTD', T), XN = per('XN', T * D), XZ = per('XZ', T * Win), U = per('U', T * convDim);
    const DELTA = per('DELTA', T * H), Y = per('Y', T * E);
    const DBC = m2 ? [] : per('DBC', T * bcW), DTP = m2 ? [] : per('DTP', T * E), YG = m2 ? [] : per('YG', T * E);
    const GPRE = m2 ? per('GPRE', T * E) : [], RSTDG = m2 ? per('RSTDG', T * G) : [], YN = m2 ? per('YN', T * E) : [];
    const RSTDF = this.reg('RSTDF', T), HN = this.reg('HN', T * D), LOGITS = this.reg('LOGITS', T * V);
    const ROWLOSS = this.reg('ROWLOSS', T), DLOG = LOGITS; // the cross-entropy writes dlogits in place
    const DH = this.reg('DH', T * D), DXN = this.reg('DXN', T * D), DYG = this.reg('DYG', T * E), DXZ = this.reg('DXZ', T * Win);
    const DU = this.reg('DU', T * convDim), DD = this.reg('DD', T * Q), DPRE = this.reg('DPRE', T * convDim);
    const DY = m2 ? this.reg('DY', T * E) : 0, DDTP = m2 ? 0 : this.reg('DDTP', T * E), DDBC = m2 ? 0 : this.reg('DDBC', T * bcW);
    // The recurrent backward's dB/dC block partials (the SSD form needs none).
    const PB = this.reg('PB', ssd ? 0 : B * C * nBlk * N), PC = this.reg('PC', ssd ? 0 : B * C * nBlk * N);
    const APART = this.reg('APART', B * Q * (m2 ? 1 : N)), DPART = this.reg('DPART', B * Q);
    const SCALE = this.reg('SCALE', 1), ONE = this.reg('ONE', 1);
    const LOSS = this.reg('LOSS', 1), NORM = this.reg('NORM', 1), HP = this.reg('HP', 12);
    // Rings of the last RING steps' loss and gradient norm, side by side: read back in one copy.
    const HIST = this.reg('HIST', 2 * RING);
    const DECAY = this.reg('DECAY', this.nParams);
    const adamChunks = Math.min(1024, Math.ceil(this.nParams / 2048));
    const ADAMPART = this.reg('ADAMPART', adamChunks);
    // I: per micro-batch ids, targets, order, segment starts, segment tokens, nSeg; then the slot.
    let iTop = 0;
    for (const [name, n] of [['ids', T], ['targets', T], ['order', T], ['segStart', T + 1], ['segTok', T], ['nSeg', 1]] as const) {
      this.iOff[name] = iTop;
      iTop += n;
    }
    const iPer = iTop;
    this.iOff.per = iPer;
    this.iOff.slot = iTop = k * iPer;
    iTop += 1;
    const MASKS = this.reg('MASKS', k * T);
    const nSegMax = Math.min(T, V);

    const e = this.engine;
    const X = (off: number, rs: number, cs = 1): View => ({ buf: 'X', off, rs, cs });
    const Pw = (name: string, rs: number, cs: number): View => ({ buf: 'P', off: this.p(name), rs, cs });
    const Xo = (off: number, rs: number) => ({ buf: 'X' as BufName, off, rs });
    const Go = (name: string, rs: number) => ({ buf: 'G' as BufName, off: this.p(name), rs });
    const elem = (n: number) => grid(Math.ceil(n / 256));

    // Per-layer uniforms shared by the forward and backward kernels.
    const xCol = m2 ? E : 0; // conv input's column in in_proj's output
    const convOf = (l: number) => {
      const bias = lp(l, 'mixer.conv1d.bias');
      return { C: convDim, K: Kc, L, xOff: XZ[l]! + xCol, xRs: Win, wOff: this.p(lp(l, 'mixer.conv1d.weight')), bOff: this.has(bias) ? this.p(bias) : 0, hasBias: this.has(bias) ? 1 : 0 };
    };
    const scanOf = (l: number) => ({ lanes: B * Q, Q, L, P: Pd, HG: H / G, xOff: U[l]!, xRs: convDim, dOff: DELTA[l]!, dRs: H, aOff: this.p(aName(l)), aMode, Doff: this.p(lp(l, 'mixer.D')), k: kA });
    // The SSD form's scratch in S (chunk states B·nC·H·N·P twice, the chunks' CL×CL products): checked against the binding below.
    const ssdS = SSD.ssdScratch({ B, L, H, G, N, P: Pd, CL: CLs });
    if (ssd) this.needS(ssdS.total);
    const ssdOf = (l: number): SSD.SsdFields => ({ ...scanOf(l), bcOff: U[l]! + E, bcRs: convDim, cCol: G * N, B, H, G, N, CL: CLs, nC: ssdS.nC, ...ssdS.offs });

    // ---------------------------------------------------------------- forward + backward
    for (let m = 0; m < k; m++) {
    const io = (name: string) => this.iOff[name]! + m * iPer;
    this.gAcc = m > 0;
    e.begin(`step${m}`);
    e.op(K.gather, { n: T * D, D, idsOff: io('ids'), embOff: this.p(EMBEDDING), outOff: Hs[0]! }, elem(T * D));
    for (let l = 0; l < nL; l++) {
      e.op(K.normFwd(false), { rows: T, n: D, groups: 1, xOff: Hs[l]!, xRs: D, zOff: 0, zRs: 0, gOff: 0, outOff: XN[l]!, outRs: D, rstdOff: RSTD[l]!, wOff: this.p(lp(l, 'norm.weight')), eps }, grid(T));
      this.mm(X(XN[l]!, D), Pw(lp(l, 'mixer.in_proj.weight'), 1, D), Xo(XZ[l]!, Win), T, Win, D);
      const conv = convOf(l);
      e.op(K.convFwd, { n: T * convDim, ...conv, outOff: U[l]! }, elem(T * convDim));
      const scan = scanOf(l);
      if (m2) {
        const dtCol = E + convDim;
        e.op(K.deltaFwd, { n: T * H, C: H, xOff: XZ[l]! + dtCol, xRs: Win, biasOff: this.p(lp(l, 'mixer.dt_bias')), outOff: DELTA[l]!, lo, hi: hiF }, elem(T * H));
        if (ssd) SSD.ssdForward((kk, f, g) => e.op(kk, f, g), { ...ssdOf(l), yOff: Y[l]! }, grid);
        else e.op(K.scanFwd(N, true, false, NS, threadLayout), { ...scan, bcOff: U[l]! + E, bcRs: convDim, cCol: G * N, yOff: Y[l]!, ygOff: 0, zOff: 0, zRs: 0 }, grid(Math.ceil((B * Q * NS) / 64)));
        e.op(K.normFwd(true), { rows: T, n: E / G, groups: G, xOff: Y[l]!, xRs: E, zOff: XZ[l]!, zRs: Win, gOff: GPRE[l]!, outOff: YN[l]!, outRs: E, rstdOff: RSTDG[l]!, wOff: this.p(lp(l, 'mixer.norm.weight')), eps }, grid(T * G));
        this.mm(X(YN[l]!, E), Pw(lp(l, 'mixer.out_proj.weight'), 1, E), Xo(Hs[l + 1]!, D), T, D, E, { addOff: Hs[l]! });
      } else {
        this.mm(X(U[l]!, E), Pw(lp(l, 'mixer.x_proj.weight'), 1, E), Xo(DBC[l]!, bcW), T, bcW, E);
        this.mm(X(DBC[l]!, bcW), Pw(lp(l, 'mixer.dt_proj.weight'), 1, R), Xo(DTP[l]!, E), T, E, R);
        e.op(K.deltaFwd, { n: T * E, C: E, xOff: DTP[l]!, xRs: E, biasOff: this.p(lp(l, 'mixer.dt_proj.bias')), outOff: DELTA[l]!, lo: 0, hi: BIG }, elem(T * E));
        e.op(K.scanFwd(N, false, true, NS, threadLayout), { ...scan, xRs: E, bcOff: DBC[l]! + R, bcRs: bcW, cCol: N, yOff: Y[l]!, ygOff: YG[l]!, zOff: XZ[l]! + E, zRs: Win }, grid(Math.ceil((B * Q * NS) / 64)));
        this.mm(X(YG[l]!, E), Pw(lp(l, 'mixer.out_proj.weight'), 1, E), Xo(Hs[l + 1]!, D), T, D, E, { addOff: Hs[l]! });
      }
    }
    e.op(K.normFwd(false), { rows: T, n: D, groups: 1, xOff: Hs[nL]!, xRs: D, zOff: 0, zRs: 0, gOff: 0, outOff: HN, outRs: D, rstdOff: RSTDF, wOff: this.p(NORM_F), eps }, grid(T));
    this.mm(X(HN, D), Pw(head, 1, D), Xo(LOGITS, V), T, V, D);
    e.op(K.crossEntropy, { rows: T, V, logOff: LOGITS, dOff: DLOG, lossOff: ROWLOSS, tgtOff: io('targets'), maskOff: MASKS + m * T, scaleOff: SCALE }, grid(T));
    e.op(K.sumTo, { n: T, srcOff: ROWLOSS, dstOff: HIST, slotOff: this.iOff.slot!, scaleOff: SCALE, root: 0, copyOff: LOSS, acc: m > 0 ? 1 : 0 }, [1, 1, 1]);

    // Backward.
    this.mm(X(DLOG, 1, V), X(HN, D), Go(head, D), V, D, T);
    this.mm(X(DLOG, V), Pw(head, D, 1), Xo(DXN, D), T, D, V);
    e.op(K.normBwd(false), { rows: T, n: D, groups: 1, xOff: Hs[nL]!, xRs: D, zOff: 0, zRs: 0, dyOff: DXN, dyRs: D, rstdOff: RSTDF, wOff: this.p(NORM_F), dxOff: DH, dxRs: D, dzOff: 0, dzRs: 0, acc: 0 }, grid(T));
    this.colSum(this.p(NORM_F), T, D, { mode: 2, aOff: DXN, aRs: D, bOff: Hs[nL]!, bRs: D, rOff: RSTDF, rRs: 1, rDiv: D });
    for (let l = nL - 1; l >= 0; l--) {
      const outIn = m2 ? YN[l]! : YG[l]!;
      this.mm(X(DH, 1, D), X(outIn, E), Go(lp(l, 'mixer.out_proj.weight'), E), D, E, T);
      this.mm(X(DH, D), Pw(lp(l, 'mixer.out_proj.weight'), E, 1), Xo(DYG, E), T, E, D);
      const scan = scanOf(l);
      const bwd = { duOff: DU, duRs: convDim, ddOff: DD, pbOff: PB, pcOff: PC, nBlk, aPartOff: APART, dPartOff: DPART };
      // S during the scan: checkpoints, one chunk's states, the state gradient carried between chunks.
      const ckOff = 0, scrOff = B * nC * N * Q, ghOff = scrOff + B * C * N * Q;
      if (!ssd) this.needS(ghOff + B * N * Q);
      const chunked = (gate: boolean, io: Record<string, number>, out: { off: number; rs: number; bCol: number; cCol: number }, GG: number) => {
        e.op(K.scanCkpt(N, m2, NS, threadLayout), { ...scan, xRs: io.xRs ?? scan.xRs, bcOff: io.bcOff!, bcRs: io.bcRs!, cCol: io.cCol!, C, nC, ckOff }, grid(Math.ceil((B * Q * NS) / 64)));
        for (let ci = nC - 1; ci >= 0; ci--) {
          const len = Math.min(L, (ci + 1) * C) - ci * C;
          e.op(K.scanBwdChunk(N, m2, gate, W, NS, SL, threadLayout), { ...scan, ...bwd, ...io, C, nC, c: ci, ckOff, scrOff, ghOff, first: ci === nC - 1 ? 1 : 0 }, grid(B * nBlk));
          const n = 2 * B * len * GG * N;
          e.op(K.bcReduceChunk, { n, G: GG, N, nBlk, pbOff: PB, pcOff: PC, outOff: out.off, outRs: out.rs, bCol: out.bCol, cCol: out.cCol, C, len, L, t0: ci * C }, elem(n));
        }
      };
      if (m2) {
        const nw = lp(l, 'mixer.norm.weight');
        e.op(K.normBwd(true), { rows: T, n: E / G, groups: G, xOff: Y[l]!, xRs: E, zOff: XZ[l]!, zRs: Win, dyOff: DYG, dyRs: E, rstdOff: RSTDG[l]!, wOff: this.p(nw), dxOff: DY, dxRs: E, dzOff: DXZ, dzRs: Win, acc: 0 }, grid(T * G));
        this.colSum(this.p(nw), T, E, { mode: 2, aOff: DYG, aRs: E, bOff: GPRE[l]!, bRs: E, rOff: RSTDG[l]!, rRs: G, rDiv: E / G });
        if (ssd) {
          SSD.ssdBackward((kk, f, g) => e.op(kk, f, g), { ...ssdOf(l), dyOff: DY, duOff: DU, duRs: convDim, dbcOff: DU, dbcRs: convDim, dbCol: E, dcCol: E + G * N, ddOff: DD, aPartOff: APART, dPartOff: DPART }, grid);
        } else chunked(false, { bcOff: U[l]! + E, bcRs: convDim, cCol: G * N, dyOff: DY, zOff: 0, zRs: 0, yOff: 0, dzOff: 0, dzRs: 0 }, { off: DU, rs: convDim, bCol: E, cCol: E + G * N }, G);
        const dtCol = E + convDim;
        e.op(K.deltaBwd, { n: T * H, C: H, grp: Pd, ddOff: DD, xOff: XZ[l]! + dtCol, xRs: Win, biasOff: this.p(lp(l, 'mixer.dt_bias')), dxOff: DXZ + dtCol, dxRs: Win, lo, hi: hiF }, elem(T * H));
        this.colSum(this.p(lp(l, 'mixer.dt_bias')), T, H, { mode: 0, aOff: DXZ + dtCol, aRs: Win });
      } else {
        chunked(true, { xRs: E, bcOff: DBC[l]! + R, bcRs: bcW, cCol: N, dyOff: DYG, zOff: XZ[l]! + E, zRs: Win, yOff: Y[l]!, dzOff: DXZ + E, dzRs: Win, duRs: E }, { off: DDBC, rs: bcW, bCol: R, cCol: R + N }, 1);
        e.op(K.deltaBwd, { n: T * E, C: E, grp: 1, ddOff: DD, xOff: DTP[l]!, xRs: E, biasOff: this.p(lp(l, 'mixer.dt_proj.bias')), dxOff: DDTP, dxRs: E, lo: 0, hi: BIG }, elem(T * E));
        this.colSum(this.p(lp(l, 'mixer.dt_proj.bias')), T, E, { mode: 0, aOff: DDTP, aRs: E });
        this.mm(X(DDTP, 1, E), X(DBC[l]!, bcW), Go(lp(l, 'mixer.dt_proj.weight'), R), E, R, T);
        this.mm(X(DDTP, E), Pw(lp(l, 'mixer.dt_proj.weight'), R, 1), Xo(DDBC, bcW), T, R, E);
        this.mm(X(DDBC, 1, bcW), X(U[l]!, E), Go(lp(l, 'mixer.x_proj.weight'), E), bcW, E, T);
        this.mm(X(DDBC, bcW), Pw(lp(l, 'mixer.x_proj.weight'), E, 1), Xo(DU, E), T, E, bcW, { acc: true });
      }
      // A and D from the scan's per-lane sums.
      const aTail = m2 ? 1 : N;
      this.colSum(this.p(aName(l)), B, Q * aTail, { mode: 0, aOff: APART, aRs: Q * aTail }, { grp: m2 ? Pd : 1, mode: aParam ? 2 : 1, pOff: this.p(aName(l)), k: kA });
      this.colSum(this.p(lp(l, 'mixer.D')), B, Q, { mode: 0, aOff: DPART, aRs: Q }, { grp: Pd });
      // Conv + SiLU.
      const conv = convOf(l);
      e.op(K.convBwdPre, { n: T * convDim, ...conv, duOff: DU, outOff: DPRE }, elem(T * convDim));
      e.op(K.convBwdX, { n: T * convDim, C: convDim, K: Kc, L, dpreOff: DPRE, wOff: conv.wOff, dxOff: DXZ + xCol, dxRs: Win }, elem(T * convDim));
      this.colSum(conv.wOff, T, convDim * Kc, { mode: 3, aOff: DPRE, aRs: convDim, bOff: conv.xOff, bRs: Win, K: Kc });
      if (conv.hasBias) this.colSum(conv.bOff, T, convDim, { mode: 0, aOff: DPRE, aRs: convDim });
      // in_proj and the block's norm (the residual gradient accumulates in DH).
      this.mm(X(DXZ, 1, Win), X(XN[l]!, D), Go(lp(l, 'mixer.in_proj.weight'), D), Win, D, T);
      this.mm(X(DXZ, Win), Pw(lp(l, 'mixer.in_proj.weight'), D, 1), Xo(DXN, D), T, D, Win);
      e.op(K.normBwd(false), { rows: T, n: D, groups: 1, xOff: Hs[l]!, xRs: D, zOff: 0, zRs: 0, dyOff: DXN, dyRs: D, rstdOff: RSTD[l]!, wOff: this.p(lp(l, 'norm.weight')), dxOff: DH, dxRs: D, dzOff: 0, dzRs: 0, acc: 1 }, grid(T));
      this.colSum(this.p(lp(l, 'norm.weight')), T, D, { mode: 2, aOff: DXN, aRs: D, bOff: Hs[l]!, bRs: D, rOff: RSTD[l]!, rRs: 1, rDiv: D });
    }
    if (!tied && m === 0) e.op(K.zeroG, { n: V * D, off: this.p(EMBEDDING) }, elem(V * D));
    e.op(K.embedScatter, { n: nSegMax * D, D, nSegOff: io('nSeg'), segStartOff: io('segStart'), segTokOff: io('segTok'), orderOff: io('order'), dhOff: DH, gOff: this.p(EMBEDDING) }, elem(nSegMax * D));
    }
    this.gAcc = false;

    // ---------------------------------------------------------------- AdamW
    e.begin('adam');
    e.op(K.adamSumsq, { n: this.nParams, chunk: Math.ceil(this.nParams / adamChunks), partOff: ADAMPART }, grid(adamChunks));
    e.op(K.sumTo, { n: adamChunks, srcOff: ADAMPART, dstOff: HIST + RING, slotOff: this.iOff.slot!, scaleOff: ONE, root: 1, copyOff: NORM, acc: 0 }, [1, 1, 1]);
    e.op(K.adamUpdate, { n: this.nParams, hpOff: HP, normOff: NORM, decayOff: DECAY }, elem(this.nParams));

    for (const b of ['P', 'G', 'M', 'V'] as const) if (!e.buffers[b]) e.alloc(b, this.nParams);
    for (const [name, n] of [['X', this.xTop], ['S', this.sNeed]] as const) {
      if (n * 4 > limit) throw new TooBig(`${name === 'X' ? 'activations' : 'scan and reduction scratch'} need ${(n * 4 / 2 ** 20).toFixed(0)} MiB, over this device's ${(limit / 2 ** 20).toFixed(0)} MiB storage binding`);
    }
    e.alloc('X', this.xTop);
    e.alloc('I', iTop);
    e.alloc('S', this.sNeed);
    e.finish();
    e.write('X', ONE, new Float32Array([1]));
  }

  /** Set which parameters get weight decay (adamw.ts's rule, from the optimizer state). */
  setDecay(state: AdamWState): void {
    const mask = new Float32Array(this.nParams);
    for (const [k, [off, n]] of this.layout) if (state.decay.has(k)) mask.fill(1, off, off + n);
    this.engine.write('X', this.r.DECAY!, mask);
  }

  /** Upload a batch: ids, targets, mask, 1/Σmask, and the rows sorted by token for the embedding gradient. */
  setBatch(b: Batch, slot: number): void {
    if (b.batch !== this.batch || b.length !== this.L) throw new Error(`compiled step: batch ${b.batch}×${b.length}, built for ${this.batch}×${this.L}`);
    const V = this.model.config.vocabSize, T = this.Tm, n = this.T;
    const e = this.engine;
    let m = 0;
    for (let i = 0; i < n; i++) m += b.mask[i]!;
    // Micro-batch mb: rows [mb·T, (mb + 1)·T) of the batch, past its end padded with masked rows.
    const ids = new Int32Array(T * this.k), targets = new Int32Array(T * this.k), mask = new Float32Array(T * this.k);
    ids.set(b.ids.subarray(0, n));
    targets.set(b.targets.subarray(0, n));
    mask.set(b.mask.subarray(0, n));
    for (let mb = 0; mb < this.k; mb++) {
      const mid = ids.subarray(mb * T, (mb + 1) * T);
      const count = new Int32Array(V + 1);
      for (let t = 0; t < T; t++) count[mid[t]! + 1]!++;
      for (let v = 0; v < V; v++) count[v + 1]! += count[v]!;
      const order = new Int32Array(T);
      const pos = count.slice(0, V);
      for (let t = 0; t < T; t++) order[pos[mid[t]!]!++] = t;
      const segStart: number[] = [], segTok: number[] = [];
      for (let v = 0; v < V; v++) if (count[v + 1]! > count[v]!) { segStart.push(count[v]!); segTok.push(v); }
      segStart.push(T);
      const at = (name: string) => this.iOff[name]! + mb * this.iOff.per!;
      e.write('I', at('ids'), mid);
      e.write('I', at('targets'), targets.subarray(mb * T, (mb + 1) * T));
      e.write('I', at('order'), order);
      e.write('I', at('segStart'), Int32Array.from(segStart));
      e.write('I', at('segTok'), Int32Array.from(segTok));
      e.write('I', at('nSeg'), new Int32Array([segTok.length]));
    }
    e.write('I', this.iOff.slot!, new Int32Array([slot % RING]));
    e.write('X', this.r.MASKS!, mask);
    e.write('X', this.r.SCALE!, new Float32Array([1 / Math.max(m, 1)]));
  }

  private steps(): string[] {
    return Array.from({ length: this.k }, (_, i) => `step${i}`);
  }

  /** Forward + backward only (gradients into G; the loss into its ring slot). */
  forwardBackward(): void {
    this.engine.run(...this.steps());
  }

  /** One whole training step on the current batch: gradients, then AdamW with `hp` at step `t`. */
  step(hp: AdamWHParams, t: number): void {
    const bc1 = 1 - Math.pow(hp.beta1, t), bc2 = 1 - Math.pow(hp.beta2, t);
    const clipOn = hp.clipNorm > 0 && Number.isFinite(hp.clipNorm);
    this.engine.write('X', this.r.HP!, new Float32Array([1 - hp.beta1, hp.beta1, 1 - hp.beta2, hp.beta2, hp.eps, 1 - hp.lr * hp.weightDecay, hp.lr / bc1, Math.sqrt(bc2), clipOn ? hp.clipNorm : 0, clipOn ? 1 : 0]));
    this.engine.run(...this.steps(), 'adam');
  }

  /** Losses and gradient norms of ring slots [from, from + n) (waits for the GPU). */
  async history(from: number, n: number): Promise<{ loss: number[]; gradNorm: number[] }> {
    const both = await this.engine.read('X', this.r.HIST!, 2 * RING);
    const pick = (base: number) => Array.from({ length: n }, (_, i) => both[base + ((from + i) % RING)]!);
    return { loss: pick(0), gradNorm: pick(RING) };
  }

  /** A gradient as computed by the last forwardBackward (tests). */
  async gradient(name: string): Promise<Float32Array> {
    const [off, n] = this.layout.get(name)!;
    return this.engine.read('G', off, n);
  }

  /** Any named X region (tests, debugging). */
  async region(name: string, n: number): Promise<Float32Array> {
    return this.engine.read('X', this.r[name]!, n);
  }

  private tfFlush(): void {
    const b = this.backend;
    b.ensureCommandEncoderReady();
    b.endComputePassEncoder();
    b.submitQueue();
  }

  private bufferOf(t: tf.Tensor): GPUBuffer {
    this.backend.uploadToGPU(t.dataId);
    const d = this.backend.tensorMap.get(t.dataId);
    if (!d?.resource) throw new Error('compiled step: a variable has no GPU buffer');
    return d.resource;
  }

  private copyAll(toTf: boolean, state?: AdamWState): void {
    const sets: [BufName, Map<string, tf.Variable>][] = [['P', this.params]];
    if (state) sets.push(['M', state.m], ['V', state.v]);
    const bufs = sets.map(([name, vars]) => [...vars].map(([k, v]) => [name, k, this.bufferOf(v), v] as const)).flat();
    this.tfFlush();
    const enc = (this.engine.device as { createCommandEncoder(): { copyBufferToBuffer(...a: unknown[]): void; finish(): unknown } }).createCommandEncoder();
    for (const [name, k, buf] of bufs) {
      const [off, n] = this.layout.get(k)!;
      if (toTf) enc.copyBufferToBuffer(this.engine.buffers[name], off * 4, buf, 0, n * 4);
      else enc.copyBufferToBuffer(buf, 0, this.engine.buffers[name], off * 4, n * 4);
    }
    (this.engine.device as { queue: { submit(b: unknown[]): void } }).queue.submit([enc.finish()]);
    if (toTf) {
      for (const [, , , v] of bufs) {
        const d = this.backend.tensorMap.get(v.dataId);
        if (d) d.values = null;
      }
    }
  }

  /** Variables (and AdamW moments) → the step's buffers. */
  push(state?: AdamWState): void {
    this.copyAll(false, state);
  }

  /** The step's buffers → variables (and AdamW moments). */
  pull(state?: AdamWState): void {
    this.copyAll(true, state);
  }

  dispose(): void {
    this.engine.destroy();
  }
}
