/**
 * safetensors reader and writer. The reader never loads the whole file: it parses the header,
 * validates every entry against the file's size, then reads one tensor at a time by offset.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../util/errors.js';
import { tempSibling } from '../util/atomic.js';
import { DTYPE_SIZES, type DType, type RawArray, isDType, viewAs, toFloat32, f32ToBf16, f32ToF16 } from './dtypes.js';

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

/** Parse and validate a header; `fileSize` bounds every offset. Exposed for the fuzz test. */
export function parseHeader(file: string, headerBytes: Uint8Array, dataStart: number, fileSize: number): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch {
    throw new SafetensorsError(file, null, 'header is not valid UTF-8 JSON; the file is corrupt or not safetensors');
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new SafetensorsError(file, null, 'header is not a JSON object; the file is corrupt or not safetensors');
  }
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
        throw new SafetensorsError(file, null, '__metadata__ is not an object of strings');
      }
      for (const v of Object.values(entry)) {
        if (typeof v !== 'string') throw new SafetensorsError(file, null, '__metadata__ values must be strings');
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      throw new SafetensorsError(file, name, 'entry is not an object');
    }
    const e = entry as Record<string, unknown>;
    if (!isDType(e.dtype)) throw new SafetensorsError(file, name, `unknown dtype ${JSON.stringify(e.dtype)}`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw new SafetensorsError(file, name, `shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
      throw new SafetensorsError(file, name, `data_offsets ${JSON.stringify(offs)} is not a pair of non-negative integers`);
    }
    const [b, en] = offs as [number, number];
    if (b > en || en > dataSize) {
      throw new SafetensorsError(file, name, `data_offsets [${b}, ${en}] out of bounds (data section is ${dataSize} bytes); the file is truncated or corrupt`);
    }
    const n = numel(shape as number[]);
    const expected = n * DTYPE_SIZES[e.dtype];
    if (!Number.isSafeInteger(expected) || en - b !== expected) {
      throw new SafetensorsError(file, name, `holds ${en - b} bytes but shape [${(shape as number[]).join(', ')}] × ${e.dtype} needs ${expected}`);
    }
    tensors.set(name, { name, dtype: e.dtype, shape: (shape as number[]).slice(), begin: dataStart + b, end: dataStart + en });
  }
  // Overlap check: sort by begin and compare neighbours.
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.end) {
      throw new SafetensorsError(file, sorted[i]!.name, `data overlaps tensor '${sorted[i - 1]!.name}'`);
    }
  }
  return { tensors, metadata };
}

export class SafetensorsReader {
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  readonly fileSize: number;
  readonly headerSize: number;
  private fd: number | null;

  private constructor(readonly path: string, fd: number, fileSize: number, headerSize: number, parsed: ReturnType<typeof parseHeader>) {
    this.fd = fd;
    this.fileSize = fileSize;
    this.headerSize = headerSize;
    this.tensors = parsed.tensors;
    this.metadata = parsed.metadata;
  }

  static open(file: string): SafetensorsReader {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new SafetensorsError(file, null, code === 'ENOENT' ? 'no such file' : `cannot open (${code ?? String(e)})`);
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size < 8) throw new SafetensorsError(file, null, `file is ${size} bytes, too short for a safetensors header; it is truncated`);
      const lenBuf = Buffer.alloc(8);
      readFully(fd, lenBuf, 0);
      const len = lenBuf.readBigUInt64LE(0);
      if (len > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(file, null, `header length ${len} exceeds the ${MAX_HEADER_BYTES}-byte limit; the file is corrupt or not safetensors`);
      const n = Number(len);
      if (8 + n > size) throw new SafetensorsError(file, null, `header length ${n} runs past the end of the ${size}-byte file; it is truncated or corrupt`);
      const header = Buffer.alloc(n);
      readFully(fd, header, 8);
      const parsed = parseHeader(file, header, 8 + n, size);
      return new SafetensorsReader(file, fd, size, n, parsed);
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

  /** The tensor's bytes, read with one positioned read. */
  readBytes(name: string): Uint8Array {
    const t = this.info(name);
    if (this.fd === null) throw new Error(`${this.path} is closed`);
    // Allocate 8-aligned storage so typed views need no copy.
    const buf = new Uint8Array(new ArrayBuffer(t.end - t.begin));
    readFully(this.fd, buf, t.begin);
    return buf;
  }

  read(name: string): Tensor<RawArray> & { dtype: DType } {
    const t = this.info(name);
    return { dtype: t.dtype, shape: t.shape.slice(), data: viewAs(t.dtype, this.readBytes(name)) };
  }

  readFloat32(name: string): Tensor<Float32Array> {
    const t = this.read(name);
    return { shape: t.shape, data: toFloat32(t.dtype, t.data) };
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

function readFully(fd: number, buf: Uint8Array, position: number): void {
  let off = 0;
  while (off < buf.byteLength) {
    const n = fs.readSync(fd, buf, off, buf.byteLength - off, position + off);
    if (n === 0) throw new Error('unexpected end of file');
    off += n;
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

export type WriteDType = 'F32' | 'F16' | 'BF16';

export interface WritableTensor {
  name: string;
  shape: number[];
  data: Float32Array;
  /** Stored dtype; F32 by default. */
  dtype?: WriteDType;
}

export interface WriteOptions {
  metadata?: Record<string, string>;
  /** Default dtype for tensors that name none. */
  dtype?: WriteDType;
}

function encode(t: WritableTensor, dtype: WriteDType): Uint8Array {
  if (t.data.length !== numel(t.shape)) throw new Error(`tensor '${t.name}': ${t.data.length} values for shape [${t.shape.join(', ')}]`);
  if (dtype === 'F32') {
    const out = new Uint8Array(t.data.length * 4);
    new Float32Array(out.buffer).set(t.data);
    return out;
  }
  const bits = new Uint16Array(t.data.length);
  const conv = dtype === 'BF16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < bits.length; i++) bits[i] = conv(t.data[i]!);
  return new Uint8Array(bits.buffer);
}

/** The header bytes (length prefix excluded) for tensors of the given byte sizes, padded to 8 with spaces. */
function buildHeader(entries: { name: string; dtype: WriteDType; shape: number[]; bytes: number }[], metadata: Record<string, string>): Buffer {
  const obj: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  for (const e of entries) {
    obj[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + e.bytes] };
    off += e.bytes;
  }
  let json = JSON.stringify(obj);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  return Buffer.from(json);
}

/**
 * Write one safetensors file: to a temporary sibling, fsynced, then renamed over `file`.
 * Tensors are encoded one at a time so memory stays at one tensor's bytes.
 */
export function writeSafetensors(file: string, tensors: WritableTensor[], opts: WriteOptions = {}): void {
  const metadata = { format: 'pt', ...(opts.metadata ?? {}) };
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new Error(`duplicate tensor name '${t.name}'`);
    seen.add(t.name);
  }
  const dts = tensors.map((t) => t.dtype ?? opts.dtype ?? 'F32');
  const header = buildHeader(tensors.map((t, i) => ({ name: t.name, dtype: dts[i]!, shape: t.shape, bytes: numel(t.shape) * DTYPE_SIZES[dts[i]!] })), metadata);
  const tmp = tempSibling(file);
  const fd = fs.openSync(tmp, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.byteLength));
    fs.writeSync(fd, len);
    fs.writeSync(fd, header);
    tensors.forEach((t, i) => fs.writeSync(fd, encode(t, dts[i]!)));
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* already closed */ }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

export interface ShardedWriteOptions extends WriteOptions {
  /** Largest shard in bytes; tensors are never split. Without it one `model.safetensors` is written. */
  maxShardBytes?: number;
}

/**
 * Write a checkpoint's weights into `dir`: `model.safetensors`, or shards
 * `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json` as transformers names them.
 * Each file is written atomically; the index is written last so a reader never sees a partial set.
 */
export function writeCheckpointWeights(dir: string, tensors: WritableTensor[], opts: ShardedWriteOptions = {}): string[] {
  const dt = (t: WritableTensor) => t.dtype ?? opts.dtype ?? 'F32';
  const size = (t: WritableTensor) => numel(t.shape) * DTYPE_SIZES[dt(t)];
  if (!opts.maxShardBytes) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, opts);
    return ['model.safetensors'];
  }
  const shards: WritableTensor[][] = [];
  let cur: WritableTensor[] = [];
  let curBytes = 0;
  for (const t of tensors) {
    if (cur.length && curBytes + size(t) > opts.maxShardBytes) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(t);
    curBytes += size(t);
  }
  if (cur.length) shards.push(cur);
  const pad = (n: number) => String(n).padStart(5, '0');
  const names = shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);
  const weightMap: Record<string, string> = {};
  let total = 0;
  shards.forEach((s, i) => {
    writeSafetensors(path.join(dir, names[i]!), s, opts);
    for (const t of s) {
      weightMap[t.name] = names[i]!;
      total += size(t);
    }
  });
  const index = { metadata: { total_size: total }, weight_map: weightMap };
  const idx = path.join(dir, 'model.safetensors.index.json');
  const tmp = tempSibling(idx);
  fs.writeFileSync(tmp, JSON.stringify(index, null, 2) + '\n');
  fs.renameSync(tmp, idx);
  return [...names, 'model.safetensors.index.json'];
}
