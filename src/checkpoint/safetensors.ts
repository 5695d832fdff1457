/**
 * safetensors reader and writer. The reader never loads the whole file: it parses the header,
 * validates every entry against the file's size, then reads one tensor at a time by offset.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../util/errors.js';
import { preview } from '../util/text.js';
import { openRegular } from './local-file.js';
import { writeFileAtomic, writeFileAtomicWith } from '../util/atomic.js';
import { DTYPE_SIZES, DTYPE_RANK, type DType, type RawArray, isDType, viewAs, toFloat32, f32ToBf16, f32ToF16 } from './dtypes.js';
import { HALF_PIECE, halfSource, widenHalfSource } from './widen.js';

export const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends UserError {
  override name = 'SafetensorsError';
  constructor(readonly file: string, readonly tensor: string | null, readonly problem: string) {
    super(`${file}${tensor !== null ? `: tensor '${tensor}'` : ''}: ${problem}`);
  }
}

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface Tensor<T = Float32Array> {
  shape: number[];
  data: T;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** numel × element size, or null when the product is not an exact (safe) integer. */
function checkedBytes(shape: readonly number[], elem: number): number | null {
  if (shape.some((d) => d === 0)) return 0;
  let n = elem;
  for (const d of shape) {
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) return null;
  }
  return n;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Tensors per file: a Mamba checkpoint has a few thousand at most, the largest Hub shards some tens of thousands. */
export const MAX_TENSORS = 65_536;
/** JSON values a header may hold outside arrays' first elements: a tensor entry takes about 6 plus one per dimension. */
export const MAX_HEADER_VALUES = 16 * MAX_TENSORS;
/** Arrays a header may open: two per tensor, but a shape nested a few million deep must still get its own message. */
export const MAX_HEADER_ARRAYS = 4 * MAX_HEADER_VALUES;

/**
 * Bounds on what JSON.parse would build from `bytes`, counted without parsing (a 100 MB header of
 * empty entries takes gigabytes): values after a comma and objects, and arrays. Returns the first
 * bound passed, or null.
 */
function headerTooLarge(bytes: Uint8Array): string | null {
  let values = 0;
  let arrays = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x2c || c === 0x7b) { // , {
      if (++values > MAX_HEADER_VALUES) return `more than ${MAX_HEADER_VALUES} JSON values`;
    } else if (c === 0x5b) { // [
      if (++arrays > MAX_HEADER_ARRAYS) return `more than ${MAX_HEADER_ARRAYS} JSON arrays`;
    }
  }
  return null;
}

/** Parse and validate a header; `fileSize` bounds every offset. Exposed for the fuzz test. */
export function parseHeader(file: string, headerBytes: Uint8Array, dataStart: number, fileSize: number): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const tooLarge = headerTooLarge(headerBytes);
  if (tooLarge) throw new SafetensorsError(file, null, `header holds ${tooLarge}, more than ${MAX_TENSORS} tensors could need (mimetic's limit per file); the file is corrupt or hostile`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch {
    throw new SafetensorsError(file, null, 'header is not valid UTF-8 JSON; the file is corrupt or not safetensors');
  }
  if (!isPlainObject(json)) {
    throw new SafetensorsError(file, null, 'header is not a JSON object; the file is corrupt or not safetensors');
  }
  const entries = Object.keys(json).length - ('__metadata__' in json ? 1 : 0);
  if (entries > MAX_TENSORS) throw new SafetensorsError(file, null, `header lists ${entries} tensors, above mimetic's limit of ${MAX_TENSORS} per file; the file is corrupt or hostile`);
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
        throw new SafetensorsError(file, null, '__metadata__ is not an object of strings; the file is corrupt');
      }
      metadata = { ...(entry as Record<string, string>) };
      continue;
    }
    if (!isPlainObject(entry)) throw new SafetensorsError(file, name, 'header entry is not an object; the file is corrupt');
    if (!isDType(entry.dtype)) throw new SafetensorsError(file, name, `unknown dtype ${preview(entry.dtype)} (known: ${Object.keys(DTYPE_SIZES).join(', ')})`);
    const dtype = entry.dtype;
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw new SafetensorsError(file, name, `shape ${preview(shape)} is not a list of non-negative integers; the file is corrupt`);
    }
    const offs = entry.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
      throw new SafetensorsError(file, name, `data_offsets ${preview(offs)} is not a pair of non-negative integers; the file is corrupt`);
    }
    const [b, en] = offs as [number, number];
    if (b > en || en > dataSize) {
      throw new SafetensorsError(file, name, `data_offsets [${b}, ${en}] out of bounds (data section is ${dataSize} bytes); the file is truncated or corrupt`);
    }
    const expected = checkedBytes(shape as number[], DTYPE_SIZES[dtype]);
    if (expected === null || en - b !== expected) {
      throw new SafetensorsError(file, name, `holds ${en - b} bytes but shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${expected ?? 'more than 2^53'}; the file is corrupt`);
    }
    tensors.set(name, { name, dtype, shape: (shape as number[]).map((d) => d + 0), begin: dataStart + b, end: dataStart + en });
  }
  // Overlap check: sort by begin and compare neighbours (empty tensors occupy nothing).
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.end) {
      throw new SafetensorsError(file, sorted[i]!.name, `data overlaps tensor '${sorted[i - 1]!.name}'; the file is corrupt`);
    }
  }
  return { tensors, metadata };
}

export class SafetensorsReader {
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  readonly fileSize: number;
  readonly headerSize: number;
  /** Bytes read from the file so far (header included): every read buffer is sized by the file. */
  bytesRead = 0;
  private fd: number | null;

  private constructor(readonly path: string, fd: number, fileSize: number, headerSize: number, parsed: ReturnType<typeof parseHeader>) {
    this.fd = fd;
    this.fileSize = fileSize;
    this.headerSize = headerSize;
    this.tensors = parsed.tensors;
    this.metadata = parsed.metadata;
  }

  static open(file: string): SafetensorsReader {
    // Never blocks: a FIFO is refused, not read (local-file.ts).
    const fd = openRegular(file, (problem) => new SafetensorsError(file, null, problem));
    try {
      const stat = fs.fstatSync(fd);
      const size = stat.size;
      if (size < 8) throw new SafetensorsError(file, null, `file is ${size} bytes, too short for a safetensors header; it is truncated`);
      const lenBuf = Buffer.alloc(8);
      readFully(file, fd, lenBuf, 0);
      const len = lenBuf.readBigUInt64LE(0);
      if (len > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(file, null, `header length ${len} exceeds the ${MAX_HEADER_BYTES}-byte limit; the file is corrupt or not safetensors`);
      const n = Number(len);
      if (8 + n > size) throw new SafetensorsError(file, null, `header length ${n} runs past the end of the ${size}-byte file; it is truncated or corrupt`);
      const header = Buffer.alloc(n);
      readFully(file, fd, header, 8);
      const parsed = parseHeader(file, header, 8 + n, size);
      const r = new SafetensorsReader(file, fd, size, n, parsed);
      r.bytesRead = 8 + n;
      return r;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.path, name, 'no such tensor in this file');
    return t;
  }

  private fdOrThrow(): number {
    if (this.fd === null) throw new Error(`${this.path} is closed`);
    return this.fd;
  }

  /** The tensor's bytes, read with positioned reads into fresh 8-aligned storage. */
  readBytes(name: string): Uint8Array {
    const t = this.info(name);
    const buf = new Uint8Array(new ArrayBuffer(t.end - t.begin));
    readFully(this.path, this.fdOrThrow(), buf, t.begin);
    this.bytesRead += buf.byteLength;
    return buf;
  }

  read(name: string): Tensor<RawArray> & { dtype: DType } {
    const t = this.info(name);
    return { dtype: t.dtype, shape: t.shape.slice(), data: viewAs(t.dtype, this.readBytes(name)) };
  }

  /** The tensor as float32 (integers and bools by value). Half types are widened a piece at a time (widen.ts). */
  readFloat32(name: string): Tensor<Float32Array> {
    const t = this.info(name);
    return { shape: t.shape.slice(), data: this.readFloat32Into(name, new Float32Array((t.end - t.begin) / DTYPE_SIZES[t.dtype])) };
  }

  /**
   * Decode the tensor as float32 into `out` (exactly its element count) and return it. Reusing
   * buffers saves the page faults of fresh memory, which cost more than the read itself.
   */
  readFloat32Into(name: string, out: Float32Array): Float32Array {
    const t = this.info(name);
    const n = (t.end - t.begin) / DTYPE_SIZES[t.dtype];
    if (out.length !== n) throw new Error(`${this.path}: tensor '${name}' has ${n} values, the output buffer ${out.length}`);
    const fd = this.fdOrThrow();
    if (t.dtype === 'F32') {
      readFully(this.path, fd, new Uint8Array(out.buffer, out.byteOffset, 4 * n), t.begin);
    } else if (t.dtype === 'F16' || t.dtype === 'BF16') {
      readHalfInto(this.path, fd, t.dtype, t.begin, out);
    } else {
      const raw = this.read(name);
      out.set(toFloat32(raw.dtype, raw.data));
      return out;
    }
    this.bytesRead += t.end - t.begin;
    return out;
  }

  /** What another thread needs to read a half-precision tensor itself (readHalfInto); null for other dtypes. */
  halfRead(name: string): HalfRead | null {
    const t = this.info(name);
    if (t.dtype !== 'F16' && t.dtype !== 'BF16') return null;
    return { file: this.path, tensor: name, fd: this.fdOrThrow(), dtype: t.dtype, begin: t.begin, count: (t.end - t.begin) / 2 };
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

/** A half-precision tensor's place in an open file. */
export interface HalfRead {
  file: string;
  tensor: string;
  fd: number;
  dtype: 'F16' | 'BF16';
  begin: number;
  count: number;
}

/** Read `out.length` half values at byte `begin` of `fd` and widen them into `out`, a piece at a time: each piece is read straight into the widener's memory and widened while it is in cache. */
export function readHalfInto(file: string, fd: number, dtype: 'F16' | 'BF16', begin: number, out: Float32Array): Float32Array {
  const source = halfSource();
  for (let i = 0; i < out.length; i += HALF_PIECE) {
    const m = Math.min(HALF_PIECE, out.length - i);
    readFully(file, fd, source.subarray(0, 2 * m), begin + 2 * i);
    widenHalfSource(dtype, m, out, i);
  }
  return out;
}

/** Largest single read: Node rejects lengths past 2 GiB, so big tensors are read in pieces. */
const READ_CHUNK = 1 << 30;

function readFully(file: string, fd: number, buf: Uint8Array, position: number): void {
  let off = 0;
  while (off < buf.byteLength) {
    const n = fs.readSync(fd, buf, off, Math.min(READ_CHUNK, buf.byteLength - off), position + off);
    if (n === 0) throw new SafetensorsError(file, null, `unexpected end of file at byte ${position + off}; the file was truncated while being read`);
    off += n;
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

export type WriteDType = 'F32' | 'F16' | 'BF16';
export type TensorData = Float32Array | RawArray;

export interface WritableTensor {
  name: string;
  shape: number[];
  /**
   * The values: a Float32Array (rounded to the stored float dtype), or the stored dtype's own typed
   * array (Uint16Array bits for F16/BF16, BigInt64Array for I64, Uint8Array for U8/BOOL, …).
   * A function is called only when this tensor is written, so a huge checkpoint can be produced
   * one tensor at a time.
   */
  data: TensorData | (() => TensorData);
  /** Stored dtype; the options' dtype, else F32, by default. */
  dtype?: DType;
}

export interface WriteOptions {
  /** `__metadata__`; `{"format": "pt"}` (what transformers writes) by default, null for none. */
  metadata?: Record<string, string> | null;
  /** Default dtype for tensors that name none. */
  dtype?: WriteDType;
}

/** Values converted per chunk, so encoding adds a few MB, not a second copy of the tensor. */
const ENCODE_CHUNK = 1 << 20;

const RAW_CTORS: Record<DType, new (...a: never[]) => RawArray> = {
  F64: Float64Array, F32: Float32Array, F16: Uint16Array, BF16: Uint16Array, I64: BigInt64Array,
  I32: Int32Array, I16: Int16Array, I8: Int8Array, U8: Uint8Array, BOOL: Uint8Array,
};

const bytesOf = (a: RawArray | Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The stored bytes of a tensor, in chunks (little-endian, as every supported host is). */
function* encode(name: string, shape: number[], data: TensorData, dtype: DType): Generator<Uint8Array> {
  if (data.length !== numel(shape)) throw new Error(`tensor '${name}': ${data.length} values for shape [${shape.join(', ')}]`);
  if (data instanceof Float32Array && dtype !== 'F32') {
    if (dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64') throw new Error(`tensor '${name}': float32 values cannot be stored as ${dtype}; pass a ${RAW_CTORS[dtype].name}`);
    for (let at = 0; at < data.length; at += ENCODE_CHUNK) {
      const part = data.subarray(at, Math.min(data.length, at + ENCODE_CHUNK));
      if (dtype === 'F64') {
        yield bytesOf(Float64Array.from(part));
      } else {
        const bits = new Uint16Array(part.length);
        const conv = dtype === 'BF16' ? f32ToBf16 : f32ToF16;
        for (let i = 0; i < part.length; i++) bits[i] = conv(part[i]!);
        yield bytesOf(bits);
      }
    }
    return;
  }
  if (!(data instanceof RAW_CTORS[dtype])) throw new Error(`tensor '${name}': ${dtype} needs a Float32Array or ${RAW_CTORS[dtype].name}, got ${data.constructor.name}`);
  yield bytesOf(data);
}

/** Python safetensors' order: dtype alignment descending, then name (byte-wise). */
function writeOrder<T extends { name: string; dtype: DType }>(entries: T[]): T[] {
  return entries.slice().sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
}

/**
 * The header bytes (length prefix excluded) as Python safetensors serialises them: compact JSON,
 * `__metadata__` first, tensors in file order, padded with spaces to a multiple of 8.
 * Built by hand because JS objects would move integer-like names (a tensor called "0") first.
 */
function buildHeader(entries: { name: string; dtype: DType; shape: number[]; bytes: number }[], metadata: Record<string, string> | null): Buffer {
  const parts: string[] = [];
  if (metadata) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  let off = 0;
  for (const e of entries) {
    parts.push(`${JSON.stringify(e.name)}:{"dtype":"${e.dtype}","shape":[${e.shape.join(',')}],"data_offsets":[${off},${off + e.bytes}]}`);
    off += e.bytes;
  }
  let json = `{${parts.join(',')}}`;
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  return Buffer.from(json);
}

const dtypeOf = (t: WritableTensor, opts: WriteOptions): DType => t.dtype ?? opts.dtype ?? 'F32';
const storedBytes = (t: WritableTensor, opts: WriteOptions): number => numel(t.shape) * DTYPE_SIZES[dtypeOf(t, opts)];

/**
 * Write one safetensors file laid out exactly as Python safetensors would (same order, header and
 * padding), to a temporary sibling, fsynced, then renamed over `file`. Tensors are encoded one at
 * a time so memory stays near one tensor's bytes.
 */
export function writeSafetensors(file: string, tensors: WritableTensor[], opts: WriteOptions = {}): void {
  const metadata = opts.metadata === null ? null : opts.metadata ?? { format: 'pt' };
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__') throw new Error(`'__metadata__' is reserved and cannot name a tensor`);
    if (seen.has(t.name)) throw new Error(`duplicate tensor name '${t.name}'`);
    seen.add(t.name);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`tensor '${t.name}': shape [${t.shape.join(', ')}] is not a list of non-negative integers`);
  }
  const ordered = writeOrder(tensors.map((t) => ({ name: t.name, dtype: dtypeOf(t, opts), t })));
  const header = buildHeader(ordered.map((e) => ({ name: e.name, dtype: e.dtype, shape: e.t.shape, bytes: storedBytes(e.t, opts) })), metadata);
  // The helper every writer uses: temp + fsync + rename, and a full disk named as such.
  writeFileAtomicWith(file, (fd) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.byteLength));
    writeAll(fd, len);
    writeAll(fd, header);
    for (const e of ordered) {
      const data = typeof e.t.data === 'function' ? e.t.data() : e.t.data;
      for (const chunk of encode(e.name, e.t.shape, data, e.dtype)) writeAll(fd, chunk);
    }
  });
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.byteLength) off += fs.writeSync(fd, bytes, off, Math.min(READ_CHUNK, bytes.byteLength - off));
}

export interface ShardedWriteOptions extends WriteOptions {
  /** Largest shard in bytes; tensors are never split. Without it one `model.safetensors` is written. */
  maxShardBytes?: number;
}

/**
 * Split tensors into shards the way huggingface_hub's `split_torch_state_dict_into_shards` does for
 * transformers' `save_pretrained`: greedily in the given (state-dict) order, a tensor larger than the
 * limit getting a shard of its own. Exported so callers can preview the layout.
 */
export function planShards<T>(tensors: T[], bytes: (t: T) => number, maxShardBytes: number): T[][] {
  const shards: T[][] = [];
  let cur: T[] = [];
  let curBytes = 0;
  for (const t of tensors) {
    const b = bytes(t);
    if (b > maxShardBytes) {
      shards.push([t]);
      continue;
    }
    if (curBytes + b > maxShardBytes) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(t);
    curBytes += b;
  }
  if (cur.length) shards.push(cur);
  return shards;
}

/**
 * Write a checkpoint's weights into `dir`: `model.safetensors`, or shards
 * `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`, named, split and indexed
 * as transformers does (a plan of one shard writes plain `model.safetensors`). Pass tensors in
 * state-dict order. Each file is written atomically; the index last, so a reader never sees a
 * partial set.
 */
export function writeCheckpointWeights(dir: string, tensors: WritableTensor[], opts: ShardedWriteOptions = {}): string[] {
  const shards = opts.maxShardBytes ? planShards(tensors, (t) => storedBytes(t, opts), opts.maxShardBytes) : [tensors];
  if (shards.length <= 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, opts);
    return ['model.safetensors'];
  }
  const pad = (n: number) => String(n).padStart(5, '0');
  const names = shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);
  const weightMap: Record<string, string> = {};
  let totalBytes = 0;
  let totalParams = 0;
  shards.forEach((s, i) => {
    writeSafetensors(path.join(dir, names[i]!), s, opts);
    for (const t of s) {
      weightMap[t.name] = names[i]!;
      totalBytes += storedBytes(t, opts);
      totalParams += numel(t.shape);
    }
  });
  // json.dumps(index, indent=2, sort_keys=True) + "\n", as transformers writes it.
  const sortedMap: Record<string, string> = {};
  for (const k of Object.keys(weightMap).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) sortedMap[k] = weightMap[k]!;
  const index = { metadata: { total_parameters: totalParams, total_size: totalBytes }, weight_map: sortedMap };
  writeFileAtomic(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index, null, 2) + '\n');
  return [...names, 'model.safetensors.index.json'];
}
