/**
 * Fresh Mamba-1 / Mamba-2 weights: the mamba_ssm recipe, optionally with mimetic initialization
 * (Trockman et al. 2024). Weights are plain Float32Arrays keyed by Hugging Face tensor names, so
 * they can be written with the safetensors writer and loaded unchanged by transformers.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { MambaConfig } from '../checkpoint/config.js';
import { checkDimensions, hfConfigText, toHfConfigJson } from '../checkpoint/config.js';
import { writeCheckpointWeights, type Tensor } from '../checkpoint/safetensors.js';
import { EMBEDDING, NORM_F, layerName } from '../checkpoint/names.js';
import type { WeightMap } from './weights.js';
import { writeDirAtomic, writeFileAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { Rng, deriveSeed } from '../util/rng.js';

export const MIMETIC_PARTS = ['a', 'dt', 'bc', 'conv'] as const;
export type MimeticPart = (typeof MIMETIC_PARTS)[number];
export const A_SCALES = [2, 4, 8] as const;

export interface ModelShape {
  arch: 'mamba1' | 'mamba2';
  numLayers: number;
  hiddenSize: number;
  stateSize: number;
  /** Mamba-2 only (default 64). */
  headDim?: number;
  vocabSize: number;
  convKernel?: number;
}

export interface InitOptions {
  init: 'default' | 'mimetic';
  /** Mimetic parts to apply (ignored for `default`). */
  parts: MimeticPart[];
  /** c in A = −exp(−c·A_log_param). */
  aScale: number;
  /** α in W_C = W_B + α·Z. */
  bcNoise: number;
  seed: number;
}

/** What gets recorded under `"mimetic"` in config.json. */
export interface InitRecord {
  init: 'default' | 'mimetic';
  parts: MimeticPart[];
  aScale: number | null;
  bcNoise: number;
  seed: number;
}

/** Weights being built or edited in place (init, transplant); MambaLM and checkpoints read a WeightMap (weights.ts). */
export type Weights = Map<string, Tensor>;

export const DT_MIN = 1e-3;
export const DT_MAX = 1e-1;
export const DT_FLOOR = 1e-4;
export const EMBED_STD = 0.02;
/** softplus⁻¹(1) = ln(e − 1). */
export const SOFTPLUS_INV_ONE = Math.log(Math.E - 1);

/** softplus⁻¹(y) = y + log(−expm1(−y)), as mamba_ssm computes it. */
export function softplusInv(y: number): number {
  return y + Math.log(-Math.expm1(-y));
}

/** Parse `a,dt,bc,conv` (or `all` / `none`). */
export function parseMimeticParts(s: string): MimeticPart[] {
  const t = s.trim();
  if (t === 'all' || t === '') return [...MIMETIC_PARTS];
  if (t === 'none') return [];
  const out: MimeticPart[] = [];
  for (const p of t.split(',').map((x) => x.trim()).filter(Boolean)) {
    if (!(MIMETIC_PARTS as readonly string[]).includes(p)) {
      throw new UserError(`--mimetic: unknown part '${p}'; choose from ${MIMETIC_PARTS.join(',')}`);
    }
    if (!out.includes(p as MimeticPart)) out.push(p as MimeticPart);
  }
  return out;
}

export function checkInitOptions(o: InitOptions): void {
  if (o.init !== 'default' && o.init !== 'mimetic') throw new UserError(`--init: unknown init '${o.init}'; choose default or mimetic`);
  if (o.init === 'mimetic' && o.parts.includes('a') && !(A_SCALES as readonly number[]).includes(o.aScale)) {
    throw new UserError(`--a-scale: ${o.aScale} is not one of ${A_SCALES.join(', ')} (the values of Trockman et al. 2024)`);
  }
  for (const p of o.parts) {
    if (!(MIMETIC_PARTS as readonly string[]).includes(p)) throw new UserError(`--mimetic: unknown part '${String(p)}'; choose from ${MIMETIC_PARTS.join(',')}`);
  }
  if (!Number.isFinite(o.bcNoise) || o.bcNoise < 0) throw new UserError(`--bc-noise: ${o.bcNoise} must be a number ≥ 0`);
  if (!Number.isSafeInteger(o.seed) || o.seed < 0) throw new UserError(`--seed: ${o.seed} must be an integer ≥ 0`);
}

/** The effective parts (none for the default init). */
export function activeParts(o: InitOptions): MimeticPart[] {
  return o.init === 'mimetic' ? o.parts : [];
}

export function initRecord(o: InitOptions): InitRecord {
  const parts = activeParts(o);
  return { init: o.init, parts, aScale: parts.includes('a') ? o.aScale : null, bcNoise: parts.includes('bc') ? o.bcNoise : 0, seed: o.seed };
}

const FLAG_NAMES = { numLayers: '--n-layers', hiddenSize: '--d-model', stateSize: '--d-state', convKernel: '--conv-kernel', vocabSize: '--vocab', headDim: '--head-dim', intermediateSize: 'd_inner (2·--d-model)' };
/** A fresh model is built in memory as float32 on the CPU: past this it would take GBs. */
export const MAX_FRESH_PARAMETERS = 1e9;

/** The normalised config of a fresh model: d_inner = 2·d_model, tied embeddings, no linear biases. */
export function freshConfig(s: ModelShape): MambaConfig {
  const posInt = (v: number | undefined, flag: string): number => {
    if (v === undefined || !Number.isSafeInteger(v) || v < 1) throw new UserError(`${flag}: ${v} must be a positive integer`);
    return v;
  };
  posInt(s.numLayers, '--n-layers');
  posInt(s.hiddenSize, '--d-model');
  posInt(s.stateSize, '--d-state');
  posInt(s.vocabSize, '--vocab');
  const convKernel = posInt(s.convKernel ?? 4, '--conv-kernel');
  const intermediateSize = 2 * s.hiddenSize;
  checkDimensions({ ...s, convKernel, intermediateSize, headDim: s.arch === 'mamba2' ? s.headDim ?? 64 : undefined }, '', FLAG_NAMES, 'choose a smaller value');
  // Each dimension may be fine and their product still tens of GB of float32: count before allocating.
  const params = s.numLayers * (3 * intermediateSize * s.hiddenSize + intermediateSize * (2 * s.stateSize + convKernel + 8)) + s.vocabSize * s.hiddenSize;
  if (params > MAX_FRESH_PARAMETERS) {
    throw new UserError(`--n-layers ${s.numLayers}, --d-model ${s.hiddenSize}, --d-state ${s.stateSize}, --vocab ${s.vocabSize}: about ${(params / 1e9).toFixed(1)} billion parameters (${(params * 4 / 2 ** 30).toFixed(0)} GiB of float32), above mimetic's limit of ${MAX_FRESH_PARAMETERS / 1e9} billion for a fresh model; choose smaller dimensions`);
  }
  const common = {
    numLayers: s.numLayers, hiddenSize: s.hiddenSize, intermediateSize, stateSize: s.stateSize, convKernel,
    vocabSize: s.vocabSize, configVocabSize: s.vocabSize, tiedEmbeddings: true, useBias: false, useConvBias: true,
    layerNormEpsilon: 1e-5, residualInFp32: true, layout: 'hf' as const,
  };
  if (s.arch === 'mamba2') {
    const headDim = posInt(s.headDim ?? 64, '--head-dim');
    if (intermediateSize % headDim !== 0) {
      throw new UserError(`--head-dim ${headDim} does not divide d_inner = 2·d_model = ${intermediateSize}; pick a head dim that divides it`);
    }
    return { arch: 'mamba2', ...common, numHeads: intermediateSize / headDim, headDim, nGroups: 1, timeStepLimit: [0, Infinity] };
  }
  if (s.arch !== 'mamba1') throw new UserError(`--arch: unknown architecture '${s.arch as string}'; choose mamba1 or mamba2`);
  return { arch: 'mamba1', ...common, timeStepRank: Math.ceil(s.hiddenSize / 16) };
}

const t = (shape: number[], data: Float32Array): Tensor => ({ shape, data });
const filled = (n: number, v: number) => new Float32Array(n).fill(v);

/** PyTorch's default Linear/Conv weight init, kaiming_uniform(a=√5): U(±1/√fan_in). */
function kaiming(rng: Rng, shape: number[], fanIn: number): Tensor {
  const b = 1 / Math.sqrt(fanIn);
  return t(shape, rng.fillUniform(new Float32Array(shape.reduce((a, c) => a * c, 1)), -b, b));
}

/** dt log-uniform in [DT_MIN, DT_MAX], floored, mapped through softplus⁻¹. */
function dtBias(rng: Rng, n: number): Float32Array {
  const out = new Float32Array(n);
  const lo = Math.log(DT_MIN), hi = Math.log(DT_MAX);
  for (let i = 0; i < n; i++) out[i] = softplusInv(Math.max(Math.exp(rng.uniform(lo, hi)), DT_FLOOR));
  return out;
}

/** W_B with N(0, 1/d_in) entries and W_C = W_B + α·Z, as [N, d_in] row blocks. */
function mimeticBC(rng: Rng, n: number, dIn: number, alpha: number): [Float32Array, Float32Array] {
  const wb = rng.fillNormal(new Float32Array(n * dIn), 0, 1 / Math.sqrt(dIn));
  const wc = Float32Array.from(wb);
  if (alpha > 0) for (let i = 0; i < wc.length; i++) wc[i]! += alpha * rng.normal();
  return [wb, wc];
}

/** Identity conv: last tap 1 for the chosen channels (rows of [C, 1, K]), bias 0 there. */
function identityConv(w: Float32Array, bias: Float32Array | undefined, k: number, from: number, to: number): void {
  for (let c = from; c < to; c++) {
    for (let j = 0; j < k; j++) w[c * k + j] = j === k - 1 ? 1 : 0;
    if (bias) bias[c] = 0;
  }
}

/**
 * One layer's weights, keyed by short name (`mixer.A_log`, `norm.weight`, …). A_log is the
 * standard one: with mimetic `a` it is −c·log(A_init) so every reader sees A = −exp(A_log).
 */
export function initLayer(c: MambaConfig, o: InitOptions, layer: number): Record<string, Tensor> {
  const rng = new Rng(deriveSeed(o.seed, `layer.${layer}`));
  const parts = activeParts(o);
  const has = (p: MimeticPart) => parts.includes(p);
  const d = c.hiddenSize, dI = c.intermediateSize, N = c.stateSize, K = c.convKernel;
  const w: Record<string, Tensor> = {};
  w['norm.weight'] = t([d], filled(d, 1));
  if (c.arch === 'mamba2') {
    const H = c.numHeads!, G = c.nGroups!;
    const convDim = dI + 2 * G * N;
    const projOut = 2 * dI + 2 * G * N + H;
    // A ~ U[1, 16] per head (mamba_ssm A_init_range).
    const aLog = new Float32Array(H);
    for (let h = 0; h < H; h++) aLog[h] = Math.log(rng.uniform(1, 16));
    if (has('a')) for (let h = 0; h < H; h++) aLog[h] = -o.aScale * aLog[h]!;
    w['mixer.A_log'] = t([H], aLog);
    w['mixer.D'] = t([H], filled(H, 1));
    const dtb = dtBias(rng, H);
    w['mixer.dt_bias'] = t([H], has('dt') ? filled(H, SOFTPLUS_INV_ONE) : dtb);
    const conv = kaiming(rng, [convDim, 1, K], K);
    const convBias = kaiming(rng, [convDim], K);
    if (has('conv')) identityConv(conv.data, convBias.data, K, 0, convDim);
    w['mixer.conv1d.weight'] = conv;
    if (c.useConvBias) w['mixer.conv1d.bias'] = convBias;
    const inProj = kaiming(rng, [projOut, d], d);
    if (has('bc')) {
      // Rows: [gate dI | x dI | B G·N | C G·N | dt H]; B/C read the block input (d_in = d_model).
      const [wb, wc] = mimeticBC(rng, G * N, d, o.bcNoise);
      inProj.data.set(wb, (2 * dI) * d);
      inProj.data.set(wc, (2 * dI + G * N) * d);
    }
    w['mixer.in_proj.weight'] = inProj;
    if (c.useBias) w['mixer.in_proj.bias'] = t([projOut], new Float32Array(projOut));
    w['mixer.norm.weight'] = t([dI], filled(dI, 1));
    w['mixer.out_proj.weight'] = kaiming(rng, [d, dI], dI);
    if (c.useBias) w['mixer.out_proj.bias'] = t([d], new Float32Array(d));
    return w;
  }
  const R = c.timeStepRank!;
  const aLog = new Float32Array(dI * N);
  for (let i = 0; i < dI; i++) for (let n = 0; n < N; n++) aLog[i * N + n] = (has('a') ? -o.aScale : 1) * Math.log(n + 1);
  w['mixer.A_log'] = t([dI, N], aLog);
  w['mixer.D'] = t([dI], filled(dI, 1));
  const conv = kaiming(rng, [dI, 1, K], K);
  const convBias = kaiming(rng, [dI], K);
  if (has('conv')) identityConv(conv.data, convBias.data, K, 0, dI);
  w['mixer.conv1d.weight'] = conv;
  if (c.useConvBias) w['mixer.conv1d.bias'] = convBias;
  w['mixer.in_proj.weight'] = kaiming(rng, [2 * dI, d], d);
  if (c.useBias) w['mixer.in_proj.bias'] = t([2 * dI], new Float32Array(2 * dI));
  const xProj = kaiming(rng, [R + 2 * N, dI], dI);
  if (has('bc')) {
    // Rows: [dt R | B N | C N], all reading the conv output (d_in = d_inner).
    const [wb, wc] = mimeticBC(rng, N, dI, o.bcNoise);
    xProj.data.set(wb, R * dI);
    xProj.data.set(wc, (R + N) * dI);
  }
  w['mixer.x_proj.weight'] = xProj;
  const std = 1 / Math.sqrt(R);
  w['mixer.dt_proj.weight'] = t([dI, R], rng.fillUniform(new Float32Array(dI * R), -std, std));
  const dtb = dtBias(rng, dI);
  w['mixer.dt_proj.bias'] = t([dI], has('dt') ? filled(dI, SOFTPLUS_INV_ONE) : dtb);
  w['mixer.out_proj.weight'] = kaiming(rng, [d, dI], dI);
  if (c.useBias) w['mixer.out_proj.bias'] = t([d], new Float32Array(d));
  return w;
}

export function initEmbedding(c: MambaConfig, o: InitOptions): Tensor {
  const rng = new Rng(deriveSeed(o.seed, 'embeddings'));
  return t([c.vocabSize, c.hiddenSize], rng.fillNormal(new Float32Array(c.vocabSize * c.hiddenSize), 0, EMBED_STD));
}

/** All weights of a fresh model, by HF name, in the order transformers writes them. */
export function initWeights(c: MambaConfig, o: InitOptions): Weights {
  checkInitOptions(o);
  const out: Weights = new Map();
  out.set(EMBEDDING, initEmbedding(c, o));
  for (let i = 0; i < c.numLayers; i++) {
    for (const [k, v] of Object.entries(initLayer(c, o, i))) out.set(layerName(i, k), v);
  }
  out.set(NORM_F, t([c.hiddenSize], filled(c.hiddenSize, 1)));
  return out;
}

/** Refuse to overwrite anything: an existing non-empty --out is a user error. */
export function checkOutDir(out: string, flag = '--out'): void {
  if (fs.existsSync(out) && (!fs.statSync(out).isDirectory() || fs.readdirSync(out).length > 0)) {
    throw new UserError(`${flag} ${out}: already exists and is not empty; choose a new folder or remove it`);
  }
}

/** Write config.json + model.safetensors into `dir` (which must exist), tensors in the map's order. */
export function writeCheckpointFiles(dir: string, c: MambaConfig, weights: Weights | WeightMap, mimetic: Record<string, unknown>): void {
  const tensors = (weights instanceof Map ? [...weights] : Object.entries(weights)).map(([name, v]) => ({ name, shape: v.shape, data: v.data }));
  writeCheckpointWeights(dir, tensors, { metadata: { format: 'pt' } });
  const cfg = toHfConfigJson(c, { torch_dtype: 'float32', mimetic });
  writeFileAtomic(path.join(dir, 'config.json'), hfConfigText(cfg));
}

/** `mimetic init`: build a fresh model and write it as an HF checkpoint folder, atomically. */
export async function writeFreshCheckpoint(out: string, shape: ModelShape, o: InitOptions): Promise<{ config: MambaConfig; record: InitRecord; parameters: number }> {
  checkInitOptions(o);
  const config = freshConfig(shape);
  checkOutDir(out);
  const record = initRecord(o);
  const weights = initWeights(config, o);
  if (fs.existsSync(out)) fs.rmdirSync(out); // empty folder (checked above)
  await writeDirAtomic(out, (tmp) => writeCheckpointFiles(tmp, config, weights, record as unknown as Record<string, unknown>));
  let parameters = 0;
  for (const v of weights.values()) parameters += v.data.length;
  return { config, record, parameters };
}
