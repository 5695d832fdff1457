/**
 * Layer transplant: copy chosen layers' parameters of a (pretrained) source checkpoint into the
 * layers of a target model (usually a fresh init), then write the result as an HF checkpoint.
 * Source layers are read one at a time, so a large source never sits in memory whole.
 *
 * Parts:
 *   ssm    A_log, D, Δ (Mamba-1: dt_proj weight and bias; Mamba-2: dt_bias), the B/C projection
 *          (Mamba-1: x_proj; Mamba-2: the B and C rows of in_proj and their conv1d channels),
 *          and Mamba-1's conv1d
 *   mixer  every tensor of the mixer
 *   block  the mixer and the block's pre-norm
 * Embeddings, norm_f and the output head are never transplanted.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Checkpoint } from '../checkpoint/checkpoint.js';
import { layerPrefix } from '../checkpoint/names.js';
import type { MambaConfig } from '../checkpoint/config.js';
import { hfConfigText, toHfConfigJson } from '../checkpoint/config.js';
import type { Tensor } from '../checkpoint/safetensors.js';
import { writeDirAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { type Weights, checkOutDir, writeCheckpointFiles } from './init.js';
import { loadWeights } from './weights.js';

export const TRANSPLANT_PARTS = ['ssm', 'mixer', 'block'] as const;
export type TransplantPart = (typeof TRANSPLANT_PARTS)[number];

export interface TransplantRecord {
  target: number;
  source: string;
  layer: number;
  parts: TransplantPart;
}

/** A copy of rows [r0, r1) (of a tensor whose first axis is rows) — or the whole tensor. */
interface Piece {
  name: string;
  rows?: [number, number];
}

const shapeStr = (s: readonly number[]) => `[${s.join(', ')}]`;

function isMamba2(c: MambaConfig): boolean {
  return c.arch === 'mamba2';
}

/** Which pieces of a layer a part covers, for a config. */
export function piecesOf(c: MambaConfig, part: TransplantPart, layerNames: string[]): Piece[] {
  if (part === 'mixer' || part === 'block') {
    return layerNames.filter((n) => n.startsWith('mixer.') || (part === 'block' && n === 'norm.weight')).sort().map((name) => ({ name }));
  }
  if (isMamba2(c)) {
    const dI = c.intermediateSize, GN = c.nGroups! * c.stateSize;
    const out: Piece[] = [{ name: 'mixer.A_log' }, { name: 'mixer.D' }, { name: 'mixer.dt_bias' }];
    out.push({ name: 'mixer.in_proj.weight', rows: [2 * dI, 2 * dI + 2 * GN] });
    if (layerNames.includes('mixer.in_proj.bias')) out.push({ name: 'mixer.in_proj.bias', rows: [2 * dI, 2 * dI + 2 * GN] });
    out.push({ name: 'mixer.conv1d.weight', rows: [dI, dI + 2 * GN] });
    if (layerNames.includes('mixer.conv1d.bias')) out.push({ name: 'mixer.conv1d.bias', rows: [dI, dI + 2 * GN] });
    return out;
  }
  const out: Piece[] = ['mixer.A_log', 'mixer.D', 'mixer.dt_proj.weight', 'mixer.dt_proj.bias', 'mixer.x_proj.weight', 'mixer.conv1d.weight'].map((name) => ({ name }));
  if (layerNames.includes('mixer.conv1d.bias')) out.push({ name: 'mixer.conv1d.bias' });
  return out;
}

function rowSize(t: Tensor): number {
  return t.shape.slice(1).reduce((a, b) => a * b, 1);
}

/** Shape of the copied region (rows sliced). */
function regionShape(t: Tensor, p: Piece): number[] {
  return p.rows ? [p.rows[1] - p.rows[0], ...t.shape.slice(1)] : t.shape.slice();
}

/**
 * Copy the pieces of `part` from one source layer into one target layer (in place). Any shape
 * disagreement is a UserError naming both shapes.
 */
export function transplantLayer(
  src: Record<string, Tensor>, srcCfg: MambaConfig, tgt: Record<string, Tensor>, tgtCfg: MambaConfig,
  part: TransplantPart, where: { source: string; layer: number; target: number },
): string[] {
  const fam = (c: MambaConfig) => (isMamba2(c) ? 'Mamba-2' : 'Mamba-1');
  const at = `source layer ${where.layer} (${where.source}) → target layer ${where.target}`;
  if (fam(srcCfg) !== fam(tgtCfg)) {
    throw new UserError(`${at}: cannot transplant a ${fam(srcCfg)} layer into a ${fam(tgtCfg)} model; use a target of the same architecture`);
  }
  if (isMamba2(srcCfg) && (srcCfg.nGroups !== tgtCfg.nGroups || srcCfg.stateSize !== tgtCfg.stateSize)) {
    throw new UserError(`${at}: groups×state ${srcCfg.nGroups}×${srcCfg.stateSize} in the source but ${tgtCfg.nGroups}×${tgtCfg.stateSize} in the target; B and C cannot be copied — build the target with the source's state size and groups`);
  }
  const srcPieces = piecesOf(srcCfg, part, Object.keys(src));
  const tgtPieces = piecesOf(tgtCfg, part, Object.keys(tgt));
  const srcNames = srcPieces.map((p) => p.name).join(',');
  const tgtNames = tgtPieces.map((p) => p.name).join(',');
  if (srcNames !== tgtNames) {
    const missing = srcPieces.filter((p) => !tgtPieces.some((q) => q.name === p.name)).map((p) => p.name);
    const extra = tgtPieces.filter((p) => !srcPieces.some((q) => q.name === p.name)).map((p) => p.name);
    throw new UserError(`${at}: the layers hold different tensors (${missing.length ? `only the source has ${missing.join(', ')}` : ''}${missing.length && extra.length ? '; ' : ''}${extra.length ? `only the target has ${extra.join(', ')}` : ''}); build the target with the same bias settings`);
  }
  const copied: string[] = [];
  srcPieces.forEach((p, i) => {
    const q = tgtPieces[i]!;
    const s = src[p.name];
    const t = tgt[q.name];
    if (!s || !t) throw new UserError(`${at}: tensor ${p.name} is missing from the ${s ? 'target' : 'source'}; the checkpoint is incomplete`);
    const ss = regionShape(s, p), ts = regionShape(t, q);
    if (shapeStr(ss) !== shapeStr(ts) || rowSize(s) !== rowSize(t)) {
      const what = p.rows ? `${p.name} rows ${p.rows[0]}-${p.rows[1] - 1} of ${shapeStr(s.shape)}` : p.name;
      throw new UserError(`${at}: ${what} has shape ${shapeStr(ss)} in the source but ${shapeStr(ts)} in the target; build the target with the source's widths (d_model ${srcCfg.hiddenSize}, d_inner ${srcCfg.intermediateSize}, state ${srcCfg.stateSize}${isMamba2(srcCfg) ? `, heads ${srcCfg.numHeads}` : `, dt rank ${srcCfg.timeStepRank}`}, conv ${srcCfg.convKernel})`);
    }
    const rs = rowSize(s);
    const sOff = p.rows ? p.rows[0] * rs : 0, tOff = q.rows ? q.rows[0] * rs : 0;
    const n = ss.reduce((a, b) => a * b, 1);
    const data = Float32Array.from(t.data); // never alias the source's buffer
    data.set(s.data.subarray(sOff, sOff + n), tOff);
    tgt[q.name] = { shape: t.shape.slice(), data };
    copied.push(p.rows ? `${p.name}[${p.rows[0]}:${p.rows[1]}]` : p.name);
  });
  return copied;
}

/** Parse `--layers 31` / `--target-layers all|0,1,4-7`. */
export function parseLayerList(s: string, flag: string, numLayers: number, allowAll: boolean): number[] {
  const t = String(s).trim();
  if (allowAll && t === 'all') return Array.from({ length: numLayers }, (_, i) => i);
  const out: number[] = [];
  for (const part of t.split(',').map((x) => x.trim()).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new UserError(`${flag}: '${part}' is not a layer number or range (e.g. 3, 0,1 or 4-7)`);
    const a = Number(m[1]), b = m[2] !== undefined ? Number(m[2]) : a;
    for (let i = a; i <= b; i++) {
      if (i >= numLayers) throw new UserError(`${flag}: layer ${i} is out of range; the model has layers 0-${numLayers - 1}`);
      if (!out.includes(i)) out.push(i);
    }
  }
  if (!out.length) throw new UserError(`${flag}: no layers given`);
  return out;
}

/** Pair source layers with target layers: one source fills every target, else one-to-one. */
export function pairLayers(sources: number[], targets: number[]): { target: number; layer: number }[] {
  if (sources.length === 1) return targets.map((target) => ({ target, layer: sources[0]! }));
  if (sources.length !== targets.length) {
    throw new UserError(`--layers gives ${sources.length} source layers but --target-layers gives ${targets.length} targets; give one source layer (copied into every target) or as many as targets`);
  }
  return targets.map((target, i) => ({ target, layer: sources[i]! }));
}

export interface TransplantJob {
  from: Checkpoint;
  /** How the source is named in the record (Hub id or path). */
  sourceName: string;
  sourceLayers: number[];
  /** Target config and all its weights (HF names); modified in place. */
  target: { config: MambaConfig; weights: Weights; rawConfig?: Record<string, unknown>; mimetic?: Record<string, unknown> };
  targetLayers: number[];
  part: TransplantPart;
}

/** Apply a transplant to the in-memory target, reading each source layer once. */
export function applyTransplant(job: TransplantJob): TransplantRecord[] {
  const srcCfg = job.from.config;
  for (const l of job.sourceLayers) {
    if (!Number.isInteger(l) || l < 0 || l >= srcCfg.numLayers) throw new UserError(`--layers: layer ${l} is out of range; ${job.sourceName} has layers 0-${srcCfg.numLayers - 1}`);
  }
  const pairs = pairLayers(job.sourceLayers, job.targetLayers);
  const records: TransplantRecord[] = [];
  for (const l of [...new Set(pairs.map((p) => p.layer))]) {
    const src = job.from.readLayer(l);
    for (const p of pairs.filter((q) => q.layer === l)) {
      const prefix = layerPrefix(p.target);
      const tgt: Record<string, Tensor> = {};
      for (const [name, v] of job.target.weights) if (name.startsWith(prefix)) tgt[name.slice(prefix.length)] = v;
      transplantLayer(src, srcCfg, tgt, job.target.config, job.part, { source: job.sourceName, layer: l, target: p.target });
      for (const [k, v] of Object.entries(tgt)) job.target.weights.set(prefix + k, v);
      records.push({ target: p.target, source: job.sourceName, layer: l, parts: job.part });
    }
  }
  return records.sort((a, b) => a.target - b.target);
}

/** Load every tensor of a checkpoint as a target (HF names, checkpoint order). */
export function targetFromCheckpoint(ck: Checkpoint): TransplantJob['target'] {
  const weights: Weights = new Map(Object.entries(loadWeights(ck)));
  const raw = ck.rawConfig;
  const mimetic = raw.mimetic && typeof raw.mimetic === 'object' && !Array.isArray(raw.mimetic) ? (raw.mimetic as Record<string, unknown>) : undefined;
  return { config: ck.config, weights, rawConfig: ck.config.layout === 'hf' ? raw : undefined, mimetic };
}

/** Apply and write the result atomically to `out`. Returns the records written into config.json. */
export async function transplantToDir(job: TransplantJob, out: string): Promise<TransplantRecord[]> {
  checkOutDir(out);
  const records = applyTransplant(job);
  const prev = job.target.mimetic ?? {};
  const prevList = Array.isArray(prev.transplant) ? (prev.transplant as TransplantRecord[]).filter((r) => !records.some((q) => q.target === r.target)) : [];
  const mimetic = { ...prev, transplant: [...prevList, ...records].sort((a, b) => a.target - b.target) };
  if (fs.existsSync(out)) fs.rmdirSync(out);
  await writeDirAtomic(out, (tmp) => {
    writeCheckpointFiles(tmp, job.target.config, job.target.weights, mimetic);
    if (job.target.rawConfig) {
      // Keep the target's own config keys (transformers' extras) and add the record.
      const raw = job.target.rawConfig;
      const ids = Object.fromEntries(['bos_token_id', 'eos_token_id', 'pad_token_id'].filter((k) => k in raw).map((k) => [k, raw[k]]));
      const cfg = { ...raw, ...toHfConfigJson(job.target.config), ...ids, dtype: 'float32', torch_dtype: 'float32', mimetic };
      fs.writeFileSync(path.join(tmp, 'config.json'), hfConfigText(cfg));
    }
  });
  return records;
}
