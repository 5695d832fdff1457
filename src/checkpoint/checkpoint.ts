/**
 * A Mamba checkpoint on disk: config.json plus one safetensors file or a sharded set. Tensors are
 * addressed by their Hugging Face names (`backbone.embeddings.weight`, `backbone.layers.3.mixer.A_log`,
 * …) whatever the layout on disk, and read one at a time, so a layer can be loaded alone.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../util/errors.js';
import { preview } from '../util/text.js';
import { SafetensorsReader, SafetensorsError, numel, readHalfInto, type TensorInfo, type Tensor } from './safetensors.js';
import { type MambaConfig, type RawConfigHints, DIM_LIMITS, checkDimensions, parseConfigJson, readConfigHints } from './config.js';
import type { DType } from './dtypes.js';
import { EMBEDDING, LM_HEAD, NORM_F, layerName, layerPrefix, parseLayerName } from './names.js';
import { checkpointFile, listed, readCheckpointText } from './local-file.js';
import { halfReader, transferable } from './half-worker.js';

export const INDEX_FILE = 'model.safetensors.index.json';

export interface CheckpointFile {
  name: string;
  bytes: number;
}

/** A layer's tensors by short name (`mixer.A_log`), relative to layerPrefix(i). */
export type LayerWeights = Record<string, Tensor>;

/** Validate a shard file name from an index: a plain name inside the checkpoint folder. */
export function checkShardName(indexPath: string, name: unknown): string {
  if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\\') || path.isAbsolute(name) || name.includes('\0')) {
    throw new UserError(`${indexPath}: shard name ${preview(name)} is not a plain file name inside the checkpoint folder; the index is corrupt or hostile`);
  }
  return name;
}

export class Checkpoint {
  readonly config: MambaConfig;
  readonly files: CheckpointFile[];
  /** Raw config.json as read (quirks decoded). */
  readonly rawConfig: Record<string, unknown>;
  private readonly readers = new Map<string, SafetensorsReader>();
  /** HF name → [file name, name inside the file]. */
  private readonly where = new Map<string, [string, string]>();
  /** This thread's share of a tensor the helper thread reads the rest of (readLayer). */
  private tailScratch = new Float32Array(0);

  /** Without config.json: what was inferred from the tensor shapes, in words (null when config.json was read). */
  readonly inferred: string | null = null;

  private constructor(readonly dir: string, readonly source: string, rawConfig: Record<string, unknown> | null, weightFiles: string[], weightMap: Map<string, string> | null) {
    this.rawConfig = rawConfig ?? {};
    let hints = rawConfig ? readConfigHints(rawConfig, path.join(dir, 'config.json')) : null;
    try {
      for (const f of weightFiles) this.readers.set(f, SafetensorsReader.open(path.join(dir, f)));
      for (const [f, r] of this.readers) {
        for (const name of r.names()) {
          if (weightMap && weightMap.get(name) !== f) continue;
          this.where.set(canonicalName(name), [f, name]);
        }
      }
      if (weightMap) {
        for (const [name, f] of weightMap) {
          if (!this.readers.get(f)?.tensors.has(name)) {
            throw new UserError(`${path.join(dir, INDEX_FILE)}: tensor '${name}' is mapped to ${f}, which does not contain it; re-download the checkpoint`);
          }
        }
      }
      this.files = weightFiles.map((f) => ({ name: f, bytes: this.readers.get(f)!.fileSize }));
      hints ??= inferHints(this.names(), [...this.readers.values()].flatMap((r) => r.names()));
      this.config = resolveConfig(hints, (n) => this.maybeInfo(n), this.names(), dir);
      if (!rawConfig) this.inferred = describeInferred(this.config);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Open a checkpoint folder, or a single `.safetensors` file whose folder holds config.json. */
  static open(p: string): Checkpoint {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(p);
    } catch {
      throw new UserError(`${p}: no such file or folder; give a checkpoint folder, a .safetensors file or a Hub id (org/name)`);
    }
    if (!stat.isFile() && !stat.isDirectory()) throw new UserError(`${p}: is not a regular file or a folder (a FIFO, socket or device); give a checkpoint folder or a .safetensors file`);
    let dir: string;
    let weightFiles: string[];
    let weightMap: Map<string, string> | null = null;
    if (stat.isFile()) {
      if (!p.endsWith('.safetensors')) throw new UserError(`${p}: not a .safetensors file; give a checkpoint folder or a .safetensors file`);
      dir = path.dirname(p);
      weightFiles = [path.basename(p)];
    } else {
      dir = p;
      const indexPath = path.join(dir, INDEX_FILE);
      // Every file of the folder is checked before it is read: a regular file inside it (local-file.ts).
      if (listed(dir, INDEX_FILE)) {
        const index = parseConfigJson(readCheckpointText(dir, INDEX_FILE), indexPath);
        const wm = index.weight_map;
        if (!wm || typeof wm !== 'object' || Array.isArray(wm)) throw new UserError(`${indexPath}: no "weight_map" object; re-download the checkpoint`);
        weightMap = new Map();
        for (const [name, f] of Object.entries(wm)) weightMap.set(name, checkShardName(indexPath, f));
        weightFiles = [...new Set(weightMap.values())].sort();
        for (const f of weightFiles) {
          if (!listed(dir, f)) throw new UserError(`${path.join(dir, f)}: shard named in ${INDEX_FILE} is missing; re-download the checkpoint`);
          checkpointFile(dir, f);
        }
      } else if (listed(dir, 'model.safetensors')) {
        checkpointFile(dir, 'model.safetensors');
        weightFiles = ['model.safetensors'];
      } else {
        let entries: string[];
        try {
          entries = fs.readdirSync(dir);
        } catch (e) {
          throw new UserError(`${dir}: cannot list the folder (${(e as NodeJS.ErrnoException).code ?? String(e)}); check its permissions`);
        }
        const any = entries.filter((f) => f.endsWith('.safetensors')).sort();
        if (any.length !== 1) {
          throw new UserError(`${dir}: no model.safetensors or ${INDEX_FILE} found${any.length ? ` (found ${any.length} .safetensors files and no index)` : ''}; mimetic reads safetensors checkpoints`);
        }
        checkpointFile(dir, any[0]!);
        weightFiles = any;
      }
    }
    const configPath = path.join(dir, 'config.json');
    // No config.json (a lone .safetensors file): the configuration comes from the tensor shapes.
    const raw = listed(dir, 'config.json') ? parseConfigJson(readCheckpointText(dir, 'config.json'), configPath) : null;
    const ckpt = new Checkpoint(dir, p, raw, weightFiles, weightMap);
    if (ckpt.inferred) notice(`${p}: no config.json beside it; ${ckpt.inferred}`);
    return ckpt;
  }

  /** HF names of every tensor stored. */
  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  maybeInfo(name: string): (TensorInfo & { file: string }) | undefined {
    const w = this.where.get(name);
    if (!w) return undefined;
    return { ...this.readers.get(w[0])!.info(w[1]), file: w[0] };
  }

  info(name: string): TensorInfo & { file: string } {
    const i = this.maybeInfo(name);
    if (!i) throw new UserError(`${this.dir}: tensor '${name}' is missing from the checkpoint; re-download it or check that it is a complete Mamba checkpoint`);
    return i;
  }

  read(name: string): Tensor {
    const w = this.where.get(name);
    if (!w) this.info(name);
    return this.readers.get(w![0])!.readFloat32(w![1]);
  }

  /** Count of tensors per stored dtype. */
  dtypes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const n of this.names()) {
      const d: DType = this.info(n).dtype;
      out[d] = (out[d] ?? 0) + 1;
    }
    return out;
  }

  /** Distinct parameters: a stored `lm_head.weight` that is tied to the embedding counts once. */
  parameterCount(): number {
    let n = 0;
    for (const name of this.names()) {
      if (name === LM_HEAD && this.config.tiedEmbeddings) continue;
      n += this.info(name).shape.reduce((a, b) => a * b, 1);
    }
    return n;
  }

  layerPrefix(i: number): string {
    return layerPrefix(i);
  }

  /**
   * The tensors of layer i alone, keyed by short name (`mixer.A_log`, `norm.weight`, …), as float32.
   * `into`: a previous result whose buffers are overwritten where sizes match (for streaming over
   * layers: no fresh memory, so no page faults and no garbage); it must not be used afterwards.
   * Its largest half-precision tensors may be read on a second thread (half-worker.ts): their
   * arrays then come back as new views of the same memory, and the old views are detached.
   */
  readLayer(i: number, opts: { into?: LayerWeights } = {}): LayerWeights {
    if (!Number.isInteger(i) || i < 0 || i >= this.config.numLayers) {
      throw new UserError(`layer ${i} is out of range: the model has layers 0-${this.config.numLayers - 1}`);
    }
    const prefix = this.layerPrefix(i);
    const tensors = this.names().filter((name) => name.startsWith(prefix)).map((name) => {
      const short = name.slice(prefix.length);
      const t = this.info(name);
      const old = opts.into?.[short];
      return { name, short, t, reader: this.readers.get(t.file)!, inner: this.where.get(name)![1], into: old && old.data.length === numel(t.shape) ? old.data : undefined };
    });
    const data = new Map<string, Float32Array>();
    const helper = tensors.some((x) => offloadable(x.t, x.into)) ? halfReader() : null;
    const { offloaded, tail: planned } = helper ? splitForHelper(tensors) : { offloaded: [], tail: 0 };
    let tail = planned;
    const reads = offloaded.map((x, k) => {
      const r = x.reader.halfRead(x.inner)!;
      return { ...r, length: r.count, count: r.count - (k === 0 ? tail : 0), into: x.into };
    });
    const wait = reads.length ? helper!.read(reads) : null;
    if (!wait) tail = 0;
    if (tail > this.tailScratch.length) this.tailScratch = new Float32Array(tail);
    const tailValues = this.tailScratch.subarray(0, tail);
    try {
      for (const x of tensors) {
        if (wait && offloaded.includes(x)) continue;
        data.set(x.short, x.into ? x.reader.readFloat32Into(x.inner, x.into) : x.reader.readFloat32(x.inner).data);
      }
      if (tail) readHalfInto(reads[0]!.file, reads[0]!.fd, reads[0]!.dtype, reads[0]!.begin + 2 * reads[0]!.count, tailValues);
    } finally {
      // Taken even when a read here failed, so the next request does not receive this reply.
      wait?.().forEach((d, k) => {
        const x = offloaded[k]!;
        data.set(x.short, d);
        x.reader.bytesRead += x.t.end - x.t.begin;
      });
    }
    if (tail) data.get(offloaded[0]!.short)!.set(tailValues, reads[0]!.count);
    const out: LayerWeights = {};
    for (const x of tensors) out[x.short] = { shape: x.t.shape.slice(), data: data.get(x.short)! };
    return out;
  }

  /** Bytes of layer i's stored tensors. */
  layerBytes(i: number): number {
    const prefix = this.layerPrefix(i);
    let n = 0;
    for (const name of this.names()) if (name.startsWith(prefix)) { const t = this.info(name); n += t.end - t.begin; }
    return n;
  }

  readEmbedding(): Tensor {
    return this.read(EMBEDDING);
  }

  readNormF(): Tensor {
    return this.read(NORM_F);
  }

  /** The output head: `lm_head.weight`, or the embedding when tied. */
  readLmHead(): Tensor {
    return this.has(LM_HEAD) && !this.config.tiedEmbeddings ? this.read(LM_HEAD) : this.readEmbedding();
  }

  /** Bytes read from the weight files so far (headers included): shows what a call actually touched. */
  bytesRead(): number {
    let n = 0;
    for (const r of this.readers.values()) n += r.bytesRead;
    return n;
  }

  close(): void {
    for (const r of this.readers.values()) r.close();
  }
}

/** Half-precision tensors from this size (stored bytes) up are worth a round trip to the helper thread. */
const OFFLOAD_MIN_BYTES = 1 << 22;

/**
 * Which of a layer's tensors the helper thread reads: the largest offloadable ones, each to
 * whichever side has fewer bytes so far (this thread starts with the rest). If the helper still
 * has more, this thread also takes `tail` values from the end of the first, read into a scratch and
 * copied in on return.
 */
function splitForHelper<T extends { t: TensorInfo; into: Float32Array | undefined }>(tensors: T[]): { offloaded: T[]; tail: number } {
  const bytes = (x: T) => x.t.end - x.t.begin;
  const candidates = tensors.filter((x) => offloadable(x.t, x.into)).sort((a, b) => bytes(b) - bytes(a));
  let here = tensors.reduce((n, x) => n + bytes(x), 0) - candidates.reduce((n, x) => n + bytes(x), 0);
  let there = 0;
  const offloaded: T[] = [];
  for (const x of candidates) {
    if (there <= here) {
      offloaded.push(x);
      there += bytes(x);
    } else {
      here += bytes(x);
    }
  }
  if (!offloaded.length) return { offloaded, tail: 0 };
  // Moving v values evens the sides when 2v bytes leave the helper and cost 2v(1 + TAIL_COPY_COST) here.
  const tail = Math.min(Math.floor((there - here) / (2 * (2 + TAIL_COPY_COST))), bytes(offloaded[0]!) / 2);
  return { offloaded, tail: 2 * tail >= OFFLOAD_MIN_BYTES / 4 ? tail : 0 };
}

/**
 * What copying a value of the tail into place costs here, relative to reading and widening it:
 * a memcpy of float32 takes about half of the whole read (bench/read.ts, 2 cores).
 */
const TAIL_COPY_COST = 0.5;

/** Whether a tensor may be read by the helper thread: half precision, large, and a transferable buffer to reuse (or none). */
function offloadable(t: TensorInfo, into: Float32Array | undefined): boolean {
  return (t.dtype === 'BF16' || t.dtype === 'F16') && t.end - t.begin >= OFFLOAD_MIN_BYTES && (!into || transferable(into));
}

/** Checkpoint.open says on stderr what it inferred (stdout stays clean for --json). */
function notice(line: string): void {
  // The path is outside text: no control characters reach the terminal.
  process.stderr.write(`mimetic: note: ${line.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?')}\n`);
}

/**
 * Config hints for weights without a config.json: the architecture from the tensor names (Mamba-2
 * has dt_bias and a gated norm, Mamba-1 x_proj and dt_proj), everything else left to the shapes and
 * to transformers' defaults (resolveConfig).
 */
function inferHints(names: string[], stored: string[]): RawConfigHints {
  const L0 = layerName(0, 'mixer.');
  const has = (n: string) => names.includes(n);
  const layout = stored.includes('backbone.embedding.weight') ? 'state-spaces' : 'hf';
  // A stored lm_head.weight is the head (a tied copy equals the embedding anyway).
  const tiedEmbeddings = !has(LM_HEAD);
  if (has(L0 + 'dt_bias') && has(L0 + 'norm.weight')) return { arch: 'mamba2', layout, tiedEmbeddings };
  if (has(L0 + 'x_proj.weight') && has(L0 + 'dt_proj.weight')) return { arch: 'mamba1', layout, tiedEmbeddings };
  throw new UserError(`no config.json, and the tensor names are neither Mamba-1's (${L0}x_proj.weight, dt_proj.weight) nor Mamba-2's (${L0}dt_bias, norm.weight); give the config.json saved with the weights`);
}

/** What an inferred configuration is, for the notice and `inspect`. */
function describeInferred(c: MambaConfig): string {
  const dims = c.arch === 'mamba2'
    ? `Mamba-2, ${c.numLayers} layers, hidden ${c.hiddenSize}, d_inner ${c.intermediateSize}, ${c.numHeads} heads × ${c.headDim}, state ${c.stateSize}, conv ${c.convKernel}, vocab ${c.vocabSize}`
    : `Mamba-1, ${c.numLayers} layers, hidden ${c.hiddenSize}, d_inner ${c.intermediateSize}, state ${c.stateSize}, dt rank ${c.timeStepRank}, conv ${c.convKernel}, vocab ${c.vocabSize}`;
  const defaults = [
    `layer_norm_epsilon ${c.layerNormEpsilon}`, 'residual_in_fp32 true', ...(c.arch === 'mamba2' ? ['time_step_limit (0, inf)'] : []),
  ];
  const assumed = [
    c.tiedEmbeddings ? 'the head tied to the embedding (no lm_head.weight)' : 'the stored lm_head.weight as the head',
    c.arch === 'mamba2' ? "1 group (mamba_ssm's default: the shapes fix only n_groups × state_size)" : 'Mamba-1, not Falcon-Mamba (same tensors; its config.json would say falcon_mamba)',
  ];
  return `configuration inferred from the tensor shapes: ${dims}; transformers' defaults ${defaults.join(', ')}; assumed ${assumed.join(', ')}; put the model's config.json beside it if any of this is wrong`;
}

/** Map the original state-spaces names onto transformers' names. */
export function canonicalName(name: string): string {
  if (name === 'backbone.embedding.weight') return EMBEDDING;
  if (name.startsWith('model.')) return 'backbone.' + name.slice('model.'.length);
  return name;
}

type InfoFn = (name: string) => TensorInfo | undefined;

function shapeErr(dir: string, name: string, expected: (number | string)[], found: number[] | undefined): UserError {
  return new UserError(`${dir}: tensor '${name}' ${found ? `has shape [${found.join(', ')}] but the config implies [${expected.join(', ')}]` : 'is missing'}; the checkpoint and its config.json disagree`);
}

/**
 * Combine config hints with the tensor shapes. Dimensions are read off the shapes of layer 0 and
 * checked against the config where it states them; every layer is then checked against them.
 */
function resolveConfig(h: RawConfigHints, info: InfoFn, names: string[], dir: string): MambaConfig {
  const need = (name: string): number[] => {
    const t = info(name);
    if (!t) throw new UserError(`${dir}: tensor '${name}' is missing; this is not a complete ${h.arch} checkpoint`);
    return t.shape;
  };
  const agree = (field: string, fromConfig: number | undefined, fromShape: number, name: string, shape: number[]): number => {
    if (fromConfig !== undefined && fromConfig !== fromShape) {
      throw new UserError(`${dir}: config ${field} = ${fromConfig} but tensor '${name}' has shape [${shape.join(', ')}] (implies ${fromShape}); the checkpoint and its config.json disagree`);
    }
    return fromShape;
  };
  // Every dimension as soon as it is known: 0 (a zero-byte tensor claiming any size elsewhere) or past the limits is refused.
  const dim = (key: keyof typeof DIM_LIMITS, v: number): number => {
    checkDimensions({ [key]: v }, dir);
    return v;
  };
  const emb = need(EMBEDDING);
  if (emb.length !== 2) throw shapeErr(dir, EMBEDDING, ['vocab', 'hidden'], emb);
  const vocabSize = dim('vocabSize', emb[0]!);
  const hiddenSize = dim('hiddenSize', agree('hidden_size', h.hiddenSize, emb[1]!, EMBEDDING, emb));
  // Count layers from the names; the config must agree, and no tensor may belong to a later layer.
  let numLayers = 0;
  while (info(layerName(numLayers, 'mixer.A_log'))) numLayers++;
  if (numLayers > DIM_LIMITS.numLayers) dim('numLayers', numLayers);
  if (numLayers === 0) throw new UserError(`${dir}: no layers found (tensor '${layerName(0, 'mixer.A_log')}' is missing); this is not a complete Mamba checkpoint`);
  const maxIndex = names.reduce((m, n) => Math.max(m, parseLayerName(n)?.layer ?? -1), -1);
  if (maxIndex >= numLayers) {
    throw new UserError(`${dir}: tensor '${layerName(numLayers, 'mixer.A_log')}' is missing but tensors exist for layer ${maxIndex}; layer ${numLayers} is missing — re-download the checkpoint`);
  }
  if (h.numLayers !== undefined && h.numLayers !== numLayers) {
    throw new UserError(`${dir}: config says ${h.numLayers} layers but the checkpoint has layers 0-${numLayers - 1}${h.numLayers > numLayers ? ` (tensor '${layerName(numLayers, 'mixer.A_log')}' is missing)` : ''}; re-download the checkpoint or fix config.json`);
  }
  const L0 = layerName(0, 'mixer.');
  const aLog = need(L0 + 'A_log');
  const conv = need(L0 + 'conv1d.weight');
  if (conv.length !== 3 || conv[1] !== 1) throw shapeErr(dir, L0 + 'conv1d.weight', ['channels', 1, 'kernel'], conv);
  const convKernel = dim('convKernel', agree('conv_kernel', h.convKernel, conv[2]!, L0 + 'conv1d.weight', conv));
  const hasBias = info(L0 + 'in_proj.bias') !== undefined;
  const hasConvBias = info(L0 + 'conv1d.bias') !== undefined;
  const hf = h.layout === 'hf';
  const flag = (field: string, stated: boolean | undefined, present: boolean, name: string) => {
    if (stated !== undefined && stated !== present) {
      throw new UserError(`${dir}: config ${field} = ${stated} but tensor '${name}' is ${present ? 'present' : 'missing'}; the checkpoint and its config.json disagree`);
    }
  };
  flag(hf ? 'use_bias' : 'ssm_cfg.bias', h.useBias, hasBias, L0 + 'in_proj.bias');
  flag(hf ? 'use_conv_bias' : 'ssm_cfg.conv_bias', h.useConvBias, hasConvBias, L0 + 'conv1d.bias');
  // The vocabulary may be padded (state-spaces pads to a multiple of 8 or 16), never truncated.
  if (h.vocabSize !== undefined && h.vocabSize > vocabSize) {
    throw new UserError(`${dir}: config vocab_size = ${h.vocabSize} but tensor '${EMBEDDING}' has shape [${emb.join(', ')}] (${vocabSize} rows); the checkpoint and its config.json disagree`);
  }
  // The head: stored lm_head.weight unless tied. Both libraries tie when the config is silent.
  const headW = info(LM_HEAD);
  const tieField = hf ? 'tie_word_embeddings' : 'tie_embeddings';
  if (!headW && h.tiedEmbeddings === false) {
    throw new UserError(`${dir}: config ${tieField} = false but tensor '${LM_HEAD}' is missing; re-download the checkpoint`);
  }
  if (headW && !sameShape(headW.shape, [vocabSize, hiddenSize])) throw shapeErr(dir, LM_HEAD, [vocabSize, hiddenSize], headW.shape);
  const base = {
    numLayers, hiddenSize, convKernel, vocabSize,
    configVocabSize: h.vocabSize ?? vocabSize,
    tiedEmbeddings: headW === undefined ? true : h.tiedEmbeddings ?? true,
    useBias: hasBias,
    useConvBias: hasConvBias,
    layerNormEpsilon: h.layerNormEpsilon ?? 1e-5,
    residualInFp32: h.residualInFp32 ?? true,
    layout: h.layout,
  };
  let cfg: MambaConfig;
  let expected: Record<string, number[]>;
  if (h.arch === 'mamba2') {
    if (aLog.length !== 1) throw shapeErr(dir, L0 + 'A_log', ['num_heads'], aLog);
    const numHeads = dim('numHeads', agree('num_heads', h.numHeads, aLog[0]!, L0 + 'A_log', aLog));
    const normW = need(L0 + 'norm.weight');
    if (normW.length !== 1) throw shapeErr(dir, L0 + 'norm.weight', ['intermediate'], normW);
    const intermediateSize = dim('intermediateSize', agree('intermediate_size', h.intermediateSize, normW[0]!, L0 + 'norm.weight', normW));
    // conv1d mixes x, B and C: its channels are intermediate + 2·groups·state. The shapes fix only
    // groups·state, so the config must give one of the two; with neither, one group (both
    // libraries' default) is the only reading.
    const convDim = conv[0]!;
    const bcDim = convDim - intermediateSize;
    const groupsState = bcDim / 2;
    if (bcDim <= 0 || !Number.isInteger(groupsState)) throw shapeErr(dir, L0 + 'conv1d.weight', [`${intermediateSize} + 2·groups·state`, 1, convKernel], conv);
    let nGroups: number;
    let stateSize: number;
    if (h.nGroups !== undefined) {
      nGroups = h.nGroups;
      if (nGroups <= 0 || groupsState % nGroups !== 0) throw shapeErr(dir, L0 + 'conv1d.weight', [`${intermediateSize} + 2·${nGroups}·state`, 1, convKernel], conv);
      stateSize = agree('state_size', h.stateSize, groupsState / nGroups, L0 + 'conv1d.weight', conv);
    } else if (h.stateSize !== undefined) {
      stateSize = h.stateSize;
      if (stateSize <= 0 || groupsState % stateSize !== 0) throw shapeErr(dir, L0 + 'conv1d.weight', [`${intermediateSize} + 2·groups·${stateSize}`, 1, convKernel], conv);
      nGroups = groupsState / stateSize;
    } else {
      nGroups = 1;
      stateSize = groupsState;
    }
    dim('nGroups', nGroups);
    dim('stateSize', stateSize);
    if (intermediateSize % numHeads !== 0) throw new UserError(`${dir}: tensor '${L0}norm.weight' gives intermediate size ${intermediateSize}, not divisible by the ${numHeads} heads of '${L0}A_log'; the checkpoint is corrupt`);
    if (numHeads % nGroups !== 0) throw new UserError(`${dir}: ${numHeads} heads (tensor '${L0}A_log') do not divide into ${nGroups} groups; the checkpoint and its config.json disagree`);
    const headDim = dim('headDim', agree('head_dim', h.headDim, intermediateSize / numHeads, L0 + 'norm.weight', normW));
    cfg = { arch: 'mamba2', ...base, intermediateSize, stateSize, numHeads, headDim, nGroups, timeStepLimit: h.timeStepLimit ?? [0, Infinity] };
    const projOut = 2 * intermediateSize + 2 * nGroups * stateSize + numHeads;
    expected = {
      'norm.weight': [hiddenSize], 'mixer.A_log': [numHeads], 'mixer.D': [numHeads], 'mixer.dt_bias': [numHeads],
      'mixer.conv1d.weight': [convDim, 1, convKernel], 'mixer.in_proj.weight': [projOut, hiddenSize],
      'mixer.norm.weight': [intermediateSize], 'mixer.out_proj.weight': [hiddenSize, intermediateSize],
    };
    if (hasConvBias) expected['mixer.conv1d.bias'] = [convDim];
    if (hasBias) { expected['mixer.in_proj.bias'] = [projOut]; expected['mixer.out_proj.bias'] = [hiddenSize]; }
  } else {
    if (aLog.length !== 2) throw shapeErr(dir, L0 + 'A_log', ['intermediate', 'state'], aLog);
    const intermediateSize = dim('intermediateSize', agree('intermediate_size', h.intermediateSize, aLog[0]!, L0 + 'A_log', aLog));
    const stateSize = dim('stateSize', agree('state_size', h.stateSize, aLog[1]!, L0 + 'A_log', aLog));
    const dtW = need(L0 + 'dt_proj.weight');
    if (dtW.length !== 2) throw shapeErr(dir, L0 + 'dt_proj.weight', [intermediateSize, 'dt_rank'], dtW);
    const timeStepRank = dim('timeStepRank', agree('time_step_rank', h.timeStepRank, dtW[1]!, L0 + 'dt_proj.weight', dtW));
    cfg = { arch: h.arch, ...base, intermediateSize, stateSize, timeStepRank, ...(h.arch === 'falcon_mamba' ? { mixerRmsEps: h.mixerRmsEps ?? 1e-6 } : {}) };
    expected = {
      'norm.weight': [hiddenSize], 'mixer.A_log': [intermediateSize, stateSize], 'mixer.D': [intermediateSize],
      'mixer.conv1d.weight': [intermediateSize, 1, convKernel], 'mixer.in_proj.weight': [2 * intermediateSize, hiddenSize],
      'mixer.x_proj.weight': [timeStepRank + 2 * stateSize, intermediateSize], 'mixer.dt_proj.weight': [intermediateSize, timeStepRank],
      'mixer.dt_proj.bias': [intermediateSize], 'mixer.out_proj.weight': [hiddenSize, intermediateSize],
    };
    if (hasConvBias) expected['mixer.conv1d.bias'] = [intermediateSize];
    if (hasBias) { expected['mixer.in_proj.bias'] = [2 * intermediateSize]; expected['mixer.out_proj.bias'] = [hiddenSize]; }
  }
  for (let i = 0; i < numLayers; i++) {
    for (const [short, shape] of Object.entries(expected)) {
      const name = layerName(i, short);
      const t = info(name);
      if (!t || !sameShape(t.shape, shape)) throw shapeErr(dir, name, shape, t?.shape);
    }
  }
  const nf = info(NORM_F);
  if (!nf || !sameShape(nf.shape, [hiddenSize])) throw shapeErr(dir, NORM_F, [hiddenSize], nf?.shape);
  return cfg;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export { SafetensorsError };
