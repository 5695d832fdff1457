/**
 * Fuzz the reader with mutated fixture files (fixed seed): byte flips, truncations, header-length
 * rewrites, structured and textual JSON edits. Every case must either decode every tensor or throw
 * the reader's typed error; nothing else, no hang, and no read larger than the file.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SafetensorsReader, SafetensorsError, numel, type TensorInfo } from '../src/checkpoint/safetensors.js';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { UserError } from '../src/util/errors.js';
import { tmpDir } from './helpers/synth-checkpoint.js';

const FIX = path.join(process.cwd(), 'test', 'fixtures');
const CASES = 3000;

/** xorshift32: deterministic integers. */
function rand(seed: number) {
  let s = seed >>> 0 || 1;
  const u32 = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s;
  };
  return { u32, int: (n: number) => u32() % n, pick: <T>(a: readonly T[]): T => a[u32() % a.length]! };
}
type Rand = ReturnType<typeof rand>;

const JUNK: unknown[] = [-1, 0, 1, 2.5, 2 ** 53, 2 ** 64, 1e308, -0, '7', null, true, [], {}, [1, 2], 'F32', 'BF16', 'I64', 'Q8', ''];

function headerOf(buf: Buffer): { n: number; json: Record<string, unknown> } {
  const n = Number(buf.readBigUInt64LE(0));
  return { n, json: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown> };
}

function withHeader(buf: Buffer, oldLen: number, text: string, keepLength: boolean, r: Rand): Buffer {
  let h = Buffer.from(text);
  if (keepLength && h.length <= oldLen) h = Buffer.concat([h, Buffer.alloc(oldLen - h.length, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const out = Buffer.concat([len, h, buf.subarray(8 + oldLen)]);
  return r.int(4) === 0 ? out.subarray(0, r.int(out.length + 1)) : out;
}

function mutate(src: Buffer, r: Rand): { kind: string; bytes: Buffer } {
  const { n, json } = headerOf(src);
  const kind = r.pick(['flip', 'flip', 'truncate', 'length', 'json', 'json', 'json', 'text']);
  if (kind === 'flip') {
    const b = Buffer.from(src);
    const k = 1 + r.int(4);
    for (let i = 0; i < k; i++) b[r.int(2) ? r.int(Math.min(b.length, 8 + n)) : r.int(b.length)] = r.int(256);
    return { kind, bytes: b };
  }
  if (kind === 'truncate') return { kind, bytes: src.subarray(0, r.int(src.length)) };
  if (kind === 'length') {
    const b = Buffer.from(src);
    const choices = [0n, 1n, BigInt(n - 1 - r.int(16)), BigInt(n + 1 + r.int(16)), BigInt(b.length - 8), BigInt(b.length), 100_000_001n, 2n ** 32n + BigInt(n), 2n ** 63n, 2n ** 64n - 1n, BigInt(r.u32())];
    const v = r.pick(choices);
    b.writeBigUInt64LE(v < 0n ? 0n : v, 0);
    return { kind, bytes: b };
  }
  if (kind === 'json') {
    const names = Object.keys(json).filter((k) => k !== '__metadata__');
    const name = r.pick(names);
    const e = json[name] as Record<string, unknown>;
    const op = r.int(9);
    if (op === 0) e.dtype = r.pick(['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'F8_E4M3', 'U64', 'f32', 7]);
    else if (op === 1) { const s = (e.shape as unknown[]).slice(); s[r.int(s.length + 1)] = r.pick(JUNK); e.shape = s; }
    else if (op === 2) e.shape = r.pick([[], [0], 'x', null, [2 ** 40, 2 ** 40], [1, 1, 1, 1, 1, 1, 1, 1]]);
    else if (op === 3) { const o = (e.data_offsets as number[]).slice(); o[r.int(2)] = r.pick(JUNK) as number; e.data_offsets = o; }
    else if (op === 4) { const o = e.data_offsets as number[]; const d = r.int(64) - 32; e.data_offsets = [o[0]! + d, o[1]! + d]; }
    else if (op === 5) { const o = e.data_offsets as number[]; e.data_offsets = [o[1], o[0]]; }
    else if (op === 6) delete e[r.pick(['dtype', 'shape', 'data_offsets'])];
    else if (op === 7) json[r.pick(['__metadata__', name, 'x'])] = r.pick(JUNK);
    else { const other = json[r.pick(names)] as Record<string, unknown>; e.data_offsets = other.data_offsets; e.shape = other.shape; e.dtype = other.dtype; }
    return { kind, bytes: withHeader(src, n, JSON.stringify(json), r.int(2) === 0, r) };
  }
  // Textual edit: delete, duplicate or replace a character of the header text.
  let text = src.subarray(8, 8 + n).toString('latin1');
  const at = r.int(text.length);
  const op = r.int(3);
  const ch = r.pick(['{', '}', '[', ']', '"', ',', ':', '0', '9', '-', ' ', 'e', '\\', '\u00ff']);
  text = op === 0 ? text.slice(0, at) + text.slice(at + 1) : op === 1 ? text.slice(0, at) + ch + text.slice(at) : text.slice(0, at) + ch + text.slice(at + 1);
  return { kind: 'text', bytes: withHeader(src, n, text, r.int(2) === 0, r) };
}

test('fuzz: mutated safetensors files decode fully or throw SafetensorsError, reading no more than the file', { timeout: 120_000 }, () => {
  const sources = fs.readdirSync(FIX, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).flatMap((d) =>
    fs.readdirSync(path.join(FIX, d)).filter((f) => f.endsWith('.safetensors')).map((f) => fs.readFileSync(path.join(FIX, d, f))));
  assert.ok(sources.length >= 11);
  const dir = tmpDir('fuzz');
  const r = rand(20241128);
  const outcomes: Record<string, number> = {};
  for (let i = 0; i < CASES; i++) {
    const { kind, bytes } = mutate(r.pick(sources), r);
    // A fresh name each time: truncating and rewriting one file makes ext4 flush it (auto_da_alloc).
    const file = path.join(dir, `f${i}.safetensors`);
    fs.writeFileSync(file, bytes);
    let outcome: string;
    let reader: SafetensorsReader | null = null;
    try {
      reader = SafetensorsReader.open(file);
      let decoded = 0;
      for (const name of reader.names()) {
        const info: TensorInfo = reader.info(name);
        const t: { data: Float32Array } = reader.readFloat32(name);
        assert.equal(t.data.length, numel(info.shape));
        decoded += info.end - info.begin;
      }
      // Every buffer the reader allocated was sized from validated offsets inside the file.
      assert.ok(decoded <= bytes.length, `case ${i}: decoded ${decoded} bytes of a ${bytes.length}-byte file`);
      assert.ok(reader.bytesRead <= bytes.length, `case ${i}: read ${reader.bytesRead} bytes of a ${bytes.length}-byte file`);
      outcome = 'decoded';
    } catch (e) {
      if (!(e instanceof SafetensorsError)) assert.fail(`case ${i} (${kind}): ${e instanceof Error ? e.stack : String(e)}`);
      assert.ok(!e.message.includes('\n'), `case ${i}: multi-line message`);
      outcome = 'rejected';
    } finally {
      reader?.close();
      fs.rmSync(file);
    }
    outcomes[`${kind}:${outcome}`] = (outcomes[`${kind}:${outcome}`] ?? 0) + 1;
  }
  // The fuzzer must exercise both paths for most mutation kinds, or it tests nothing.
  for (const k of ['flip', 'truncate', 'length', 'json', 'text']) assert.ok((outcomes[`${k}:rejected`] ?? 0) > 0, `${k} never rejected: ${JSON.stringify(outcomes)}`);
  for (const k of ['flip', 'json']) assert.ok((outcomes[`${k}:decoded`] ?? 0) > 0, `${k} never decoded: ${JSON.stringify(outcomes)}`);
  fs.rmSync(dir, { recursive: true });
});

test('fuzz: mutated checkpoint folders (config, index, shards) open or throw UserError', { timeout: 120_000 }, () => {
  const src = path.join(FIX, 'mamba2-tiny-sharded');
  const files = fs.readdirSync(src).filter((f) => f !== 'golden.safetensors');
  const originals = new Map(files.map((f) => [f, fs.readFileSync(path.join(src, f))]));
  const dir = tmpDir('fuzz-ckpt');
  for (const [f, b] of originals) fs.writeFileSync(path.join(dir, f), b);
  const r = rand(7);
  let opened = 0;
  let rejected = 0;
  for (let i = 0; i < 400; i++) {
    const target = r.pick(files);
    const orig = originals.get(target)!;
    let bytes: Buffer;
    if (target.endsWith('.json')) {
      // Text edits of config.json / the index: a character deleted, replaced or a value swapped.
      let text = orig.toString('utf8');
      const at = r.int(text.length);
      if (r.int(2)) text = text.slice(0, at) + r.pick(['', '"', '}', '0', '9', '-', '/', '..', 'Infinity', 'null']) + text.slice(at + 1);
      else text = text.replace(r.pick([/"num_heads": 8/, /"n_groups": 1/, /"state_size": 16/, /"hidden_size": 32/, /"model_type": "mamba2"/, /model-00003/, /"conv_kernel": 4/]), r.pick(['"num_heads": 4', '"n_groups": 2', '"state_size": 8', '"hidden_size": 16', '"model_type": "gpt2"', '../model-00003', '"conv_kernel": 3']));
      bytes = Buffer.from(text);
    } else {
      bytes = mutate(orig, r).bytes;
    }
    fs.writeFileSync(path.join(dir, target), bytes);
    let c: Checkpoint | null = null;
    try {
      c = Checkpoint.open(dir);
      for (let l = 0; l < c.config.numLayers; l++) c.readLayer(l);
      c.readEmbedding();
      c.readLmHead();
      opened++;
    } catch (e) {
      if (!(e instanceof UserError)) assert.fail(`case ${i} (${target}): ${e instanceof Error ? e.stack : String(e)}`);
      rejected++;
    } finally {
      c?.close();
    }
    fs.writeFileSync(path.join(dir, target), orig);
  }
  assert.ok(opened > 0 && rejected > 0, `opened ${opened}, rejected ${rejected}`);
  fs.rmSync(dir, { recursive: true });
});
