import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  SafetensorsReader, SafetensorsError, writeSafetensors, writeCheckpointWeights, planShards, MAX_HEADER_BYTES,
  type WritableTensor,
} from '../src/checkpoint/safetensors.js';
import { f16ToF32, f32ToF16, bf16ToF32, f32ToBf16, type DType } from '../src/checkpoint/dtypes.js';
import { UserError } from '../src/util/errors.js';
import { writeRawSafetensors, splitSafetensors } from './helpers/safetensors-bytes.js';
import { tmpDir } from './helpers/synth-checkpoint.js';

const FIX = path.join(process.cwd(), 'test', 'fixtures');
const fixtureFiles = (): string[] =>
  fs.readdirSync(FIX, { withFileTypes: true }).filter((d) => d.isDirectory()).flatMap((d) =>
    fs.readdirSync(path.join(FIX, d.name)).filter((f) => f.endsWith('.safetensors')).map((f) => path.join(FIX, d.name, f)));

/** Re-write every tensor of a file through the writer, in reverse order, with its raw values. */
function rewrite(src: string, dst: string): void {
  const r = SafetensorsReader.open(src);
  try {
    const tensors: WritableTensor[] = r.names().reverse().map((n) => {
      const t = r.read(n);
      return { name: n, shape: t.shape, data: t.data, dtype: t.dtype };
    });
    writeSafetensors(dst, tensors, { metadata: Object.keys(r.metadata).length ? r.metadata : null });
  } finally {
    r.close();
  }
}

test('re-writing each fixture file (transformers/safetensors output) reproduces it byte for byte', () => {
  const dir = tmpDir('st-rewrite');
  const files = fixtureFiles();
  assert.ok(files.length >= 11, `found ${files.length} fixture files`);
  for (const f of files) {
    const out = path.join(dir, 'x.safetensors');
    rewrite(f, out);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(f)), `${f} differs after a re-write`);
  }
  // golden.safetensors holds I64 input_ids before F32 tensors whose names sort first: dtype order wins.
  const g = splitSafetensors(fs.readFileSync(path.join(FIX, 'mamba1-tiny', 'golden.safetensors')));
  assert.equal(Object.keys(g.header)[0], 'input_ids');
  assert.equal(fs.readdirSync(dir).length, 1, 'no temporary files left behind');
  fs.rmSync(dir, { recursive: true });
});

test('writing float32 values as BF16 reproduces the BF16 fixture that PyTorch rounded', () => {
  const dir = tmpDir('st-bf16');
  const r = SafetensorsReader.open(path.join(FIX, 'mamba1-tiny-bf16', 'model.safetensors'));
  const tensors: WritableTensor[] = r.names().map((n) => ({ ...r.readFloat32(n), name: n, dtype: 'BF16' as const }));
  r.close();
  const out = path.join(dir, 'model.safetensors');
  writeSafetensors(out, tensors);
  assert.ok(fs.readFileSync(out).equals(fs.readFileSync(path.join(FIX, 'mamba1-tiny-bf16', 'model.safetensors'))));
  fs.rmSync(dir, { recursive: true });
});

test('BF16 fixture decodes to PyTorch round-to-nearest-even of the F32 fixture', () => {
  const a = SafetensorsReader.open(path.join(FIX, 'mamba1-tiny', 'model.safetensors'));
  const b = SafetensorsReader.open(path.join(FIX, 'mamba1-tiny-bf16', 'model.safetensors'));
  assert.deepEqual(a.names().sort(), b.names().sort());
  let n = 0;
  for (const name of a.names()) {
    const x = a.readFloat32(name);
    const y = b.readFloat32(name);
    assert.equal(b.info(name).dtype, 'BF16');
    assert.deepEqual(y.shape, x.shape);
    for (let i = 0; i < x.data.length; i++) {
      // Independent: PyTorch did this rounding; the decode must match it, and the encoder must too.
      assert.equal(y.data[i], bf16ToF32(f32ToBf16(x.data[i]!)), `${name}[${i}]`);
      n++;
    }
  }
  assert.ok(n > 18000);
  a.close();
  b.close();
});

test('sharded re-write in state-dict order reproduces transformers shards and index byte for byte', () => {
  const src = path.join(FIX, 'mamba2-tiny-sharded');
  const index = JSON.parse(fs.readFileSync(path.join(src, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
  const readers = new Map<string, SafetensorsReader>();
  const read = (name: string) => {
    const f = index.weight_map[name]!;
    if (!readers.has(f)) readers.set(f, SafetensorsReader.open(path.join(src, f)));
    return readers.get(f)!.read(name);
  };
  // nn.Module.named_parameters order: a module's own parameters, then its children's.
  const order = ['backbone.embeddings.weight'];
  for (let i = 0; i < 2; i++) {
    for (const s of ['norm.weight', 'mixer.dt_bias', 'mixer.A_log', 'mixer.D', 'mixer.conv1d.weight', 'mixer.conv1d.bias', 'mixer.in_proj.weight', 'mixer.norm.weight', 'mixer.out_proj.weight']) {
      order.push(`backbone.layers.${i}.${s}`);
    }
  }
  order.push('backbone.norm_f.weight');
  assert.deepEqual([...order].sort(), Object.keys(index.weight_map).sort());
  const tensors: WritableTensor[] = order.map((n) => {
    const t = read(n);
    return { name: n, shape: t.shape, data: t.data, dtype: t.dtype };
  });
  for (const r of readers.values()) r.close();
  const dir = tmpDir('st-shards');
  // save_pretrained(max_shard_size="30KB") = 30 000 bytes.
  const written = writeCheckpointWeights(dir, tensors, { maxShardBytes: 30_000 });
  const expected = fs.readdirSync(src).filter((f) => f.startsWith('model')).sort();
  assert.deepEqual([...written].sort(), expected);
  for (const f of expected) assert.ok(fs.readFileSync(path.join(dir, f)).equals(fs.readFileSync(path.join(src, f))), `${f} differs`);
  fs.rmSync(dir, { recursive: true });
});

test('shard planning: greedy in order, an oversized tensor alone, one shard means no index', () => {
  const plan = planShards([5, 3, 12, 4, 4, 1], (x) => x, 10);
  assert.deepEqual(plan, [[12], [5, 3], [4, 4, 1]]);
  const dir = tmpDir('st-one');
  const files = writeCheckpointWeights(dir, [{ name: 'a', shape: [2], data: new Float32Array([1, 2]) }], { maxShardBytes: 1000 });
  assert.deepEqual(files, ['model.safetensors']);
  assert.deepEqual(fs.readdirSync(dir), ['model.safetensors']);
  fs.rmSync(dir, { recursive: true });
});

test('writer output matches the safetensors reference serialisation (Rust crate test vectors)', () => {
  const dir = tmpDir('st-vectors');
  const f = path.join(dir, 'a.safetensors');
  // serialize({}, None): length 8, "{}" and six spaces.
  writeSafetensors(f, [], { metadata: null });
  assert.deepEqual([...fs.readFileSync(f)], [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
  // serialize({}, {"framework": "pt"}): 40-byte header, 5 spaces of padding.
  writeSafetensors(f, [], { metadata: { framework: 'pt' } });
  assert.equal(fs.readFileSync(f).toString('latin1'), '(\0\0\0\0\0\0\0{"__metadata__":{"framework":"pt"}}     ');
  // serialize({"attn.0": F32 [1,2,3] = 0..5}, None): a 64-byte header needing no padding.
  writeSafetensors(f, [{ name: 'attn.0', shape: [1, 2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) }], { metadata: null });
  const b = fs.readFileSync(f);
  assert.equal(b.readBigUInt64LE(0), 64n);
  assert.equal(b.subarray(8, 72).toString(), '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}');
  assert.deepEqual([...b.subarray(72)], [0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64]);
  fs.rmSync(dir, { recursive: true });
});

test('writer: Python order (alignment, then byte-wise name), 8-byte space padding, format pt, integer-like names kept in place', () => {
  const dir = tmpDir('st-order');
  const f = path.join(dir, 'o.safetensors');
  const t = (name: string, dtype: 'F32' | 'F16' | 'BF16', n = 3): WritableTensor => ({ name, shape: [n], data: new Float32Array(n).fill(1), dtype });
  writeSafetensors(f, [t('b', 'F16'), t('9', 'F32'), t('a', 'BF16'), t('10', 'F32'), t('Z', 'F32'), t('c', 'F16', 1)]);
  const bytes = fs.readFileSync(f);
  const { headerLength, header, data } = splitSafetensors(bytes);
  assert.equal(headerLength % 8, 0);
  const text = bytes.subarray(8, 8 + headerLength).toString();
  assert.match(text, /^\{"__metadata__":\{"format":"pt"\},"10":/);
  assert.match(text, /\} *$/);
  assert.deepEqual(text.slice(text.lastIndexOf('}') + 1), ' '.repeat(headerLength - text.lastIndexOf('}') - 1));
  const names = [...text.matchAll(/"([^"]+)":\{"dtype"/g)].map((m) => m[1]);
  assert.deepEqual(names, ['10', '9', 'Z', 'a', 'b', 'c']);
  assert.equal(data.byteLength, 3 * 4 * 3 + 3 * 2 + 3 * 2 + 2);
  const r = SafetensorsReader.open(f);
  assert.deepEqual(r.metadata, { format: 'pt' });
  for (const n of names) assert.ok(r.readFloat32(n!).data.every((v) => v === 1));
  r.close();
  void header;
  fs.rmSync(dir, { recursive: true });
});

test('writer: lazy tensors are produced once, at write time; large BF16/F16 tensors round-trip through chunked encoding', () => {
  const dir = tmpDir('st-lazy');
  const f = path.join(dir, 'l.safetensors');
  const n = (1 << 20) * 1.5 + 7;
  const src = new Float32Array(n);
  for (let i = 0; i < n; i++) src[i] = Math.sin(i) * 100;
  let calls = 0;
  writeSafetensors(f, [
    { name: 'bf', shape: [n], dtype: 'BF16', data: () => { calls++; return src; } },
    { name: 'h', shape: [n], dtype: 'F16', data: src },
    { name: 'd', shape: [3], dtype: 'F64', data: new Float32Array([0.5, -1, 3]) },
  ]);
  assert.equal(calls, 1);
  const r = SafetensorsReader.open(f);
  const bf = r.readFloat32('bf').data;
  const h = r.readFloat32('h').data;
  for (let i = 0; i < n; i += 997) {
    assert.equal(bf[i], bf16ToF32(f32ToBf16(src[i]!)));
    assert.equal(h[i], f16ToF32(f32ToF16(src[i]!)));
  }
  assert.equal(bf[n - 1], bf16ToF32(f32ToBf16(src[n - 1]!)));
  assert.deepEqual([...r.read('d').data as Float64Array], [0.5, -1, 3]);
  r.close();
  fs.rmSync(dir, { recursive: true });
});

test('writer: a failing write leaves the target untouched and no temporary file', () => {
  const dir = tmpDir('st-atomic');
  const f = path.join(dir, 'm.safetensors');
  fs.writeFileSync(f, 'old');
  assert.throws(() => writeSafetensors(f, [{ name: 'a', shape: [4], data: new Float32Array(3) }]), /3 values for shape \[4\]/);
  assert.throws(() => writeSafetensors(f, [{ name: 'a', shape: [1], data: () => { throw new Error('boom'); } }]), /boom/);
  assert.throws(() => writeSafetensors(f, [{ name: 'a', shape: [1], data: new Float32Array(1) }, { name: 'a', shape: [1], data: new Float32Array(1) }]), /duplicate/);
  assert.equal(fs.readFileSync(f, 'utf8'), 'old');
  assert.deepEqual(fs.readdirSync(dir), ['m.safetensors']);
  fs.rmSync(dir, { recursive: true });
});

test('reader decodes every dtype (F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL) from unaligned offsets', () => {
  const parts: { name: string; dtype: DType; shape: number[]; bytes: Buffer }[] = [];
  const add = (name: string, dtype: DType, bytes: Buffer, n: number) => parts.push({ name, dtype, shape: [n], bytes });
  const le = (size: number, vals: number[] | bigint[], put: (b: Buffer, v: never, o: number) => void) => {
    const b = Buffer.alloc(size * vals.length);
    vals.forEach((v, i) => put(b, v as never, i * size));
    return b;
  };
  // U8 first with 3 values so everything after it starts at an odd offset.
  add('u8', 'U8', Buffer.from([0, 7, 255]), 3);
  add('f64', 'F64', le(8, [1.5, -2.25, 1e300], (b, v, o) => b.writeDoubleLE(v, o)), 3);
  add('f32', 'F32', le(4, [0.1, -3], (b, v, o) => b.writeFloatLE(v, o)), 2);
  add('f16', 'F16', le(2, [0x3c00, 0xc000, 0x7c00, 0x0001, 0x7bff], (b, v, o) => b.writeUInt16LE(v, o)), 5);
  add('bf16', 'BF16', le(2, [0x3f80, 0xc040, 0x4049], (b, v, o) => b.writeUInt16LE(v, o)), 3);
  add('i64', 'I64', le(8, [-5n, 2n ** 40n], (b, v, o) => b.writeBigInt64LE(v, o)), 2);
  add('i32', 'I32', le(4, [-7, 123456], (b, v, o) => b.writeInt32LE(v, o)), 2);
  add('i16', 'I16', le(2, [-300, 300], (b, v, o) => b.writeInt16LE(v, o)), 2);
  add('i8', 'I8', Buffer.from([0x80, 0x7f]), 2);
  add('bool', 'BOOL', Buffer.from([1, 0, 1]), 3);
  const header: Record<string, unknown> = { __metadata__: { note: 'hand made', format: 'pt' } };
  let off = 0;
  for (const p of parts) {
    header[p.name] = { dtype: p.dtype, shape: p.shape, data_offsets: [off, off + p.bytes.length] };
    off += p.bytes.length;
  }
  const dir = tmpDir('st-dtypes');
  const f = writeRawSafetensors(path.join(dir, 'd.safetensors'), JSON.stringify(header) + ' ', Buffer.concat(parts.map((p) => p.bytes)));
  const r = SafetensorsReader.open(f);
  assert.deepEqual(r.metadata, { note: 'hand made', format: 'pt' });
  const f32 = (n: string) => [...r.readFloat32(n).data];
  assert.deepEqual(f32('u8'), [0, 7, 255]);
  assert.deepEqual(f32('f64'), [1.5, -2.25, Infinity]);
  assert.deepEqual([...(r.read('f64').data as Float64Array)], [1.5, -2.25, 1e300]);
  assert.deepEqual(f32('f32'), [Math.fround(0.1), -3]);
  assert.deepEqual(f32('f16'), [1, -2, Infinity, 2 ** -24, 65504]);
  assert.deepEqual(f32('bf16'), [1, -3, 3.140625]);
  assert.deepEqual([...(r.read('i64').data as BigInt64Array)], [-5n, 2n ** 40n]);
  assert.deepEqual(f32('i64'), [-5, 2 ** 40]);
  assert.deepEqual(f32('i32'), [-7, 123456]);
  assert.deepEqual(f32('i16'), [-300, 300]);
  assert.deepEqual(f32('i8'), [-128, 127]);
  assert.deepEqual(f32('bool'), [1, 0, 1]);
  assert.equal(r.read('bool').dtype, 'BOOL');
  r.close();
  fs.rmSync(dir, { recursive: true });
});

test('f16 conversion: exact round trip of all 65536 halves, ties to even, overflow to infinity', () => {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const nextUp = (x: number) => { f[0] = x; u[0] = u[0]! + 1; return f[0]!; };
  const nextDown = (x: number) => { f[0] = x; u[0] = u[0]! - 1; return f[0]!; };
  for (let h = 0; h < 65536; h++) {
    const x = f16ToF32(h);
    if (Number.isNaN(x)) {
      assert.ok(((h >> 10) & 0x1f) === 0x1f && (h & 0x3ff) !== 0);
      continue;
    }
    assert.equal(f32ToF16(x), h, `half ${h.toString(16)}`);
  }
  for (let h = 0; h < 0x7bff; h++) {
    const lo = f16ToF32(h);
    const hi = f16ToF32(h + 1);
    const mid = (lo + hi) / 2;
    assert.equal(Math.fround(mid), mid);
    assert.equal(f32ToF16(mid), h % 2 === 0 ? h : h + 1, `tie between ${h} and ${h + 1}`);
    assert.equal(f32ToF16(nextUp(mid)), h + 1);
    assert.equal(f32ToF16(nextDown(mid)), h);
    assert.equal(f32ToF16(-mid), (h % 2 === 0 ? h : h + 1) | 0x8000);
  }
  assert.equal(f32ToF16(65519.99), 0x7bff);
  assert.equal(f32ToF16(65520), 0x7c00);
  assert.equal(f32ToF16(1e10), 0x7c00);
  assert.equal(f32ToF16(2 ** -25), 0);
  assert.equal(f32ToF16(nextUp(2 ** -25)), 1);
  assert.equal(f32ToF16(NaN) & 0x7e00, 0x7e00);
});

test('bf16 conversion: exact for representable values, ties to even, NaN as c10 writes it', () => {
  for (let b = 0; b < 65536; b++) {
    const x = bf16ToF32(b);
    if (Number.isNaN(x)) continue;
    assert.equal(f32ToBf16(x), b);
  }
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let b = 0; b < 0x7f7f; b += 13) {
    u[0] = ((b << 16) | 0x8000) >>> 0; // exactly halfway to b + 1
    assert.equal(f32ToBf16(f[0]!), b % 2 === 0 ? b : b + 1);
    u[0] = ((b << 16) | 0x8001) >>> 0;
    assert.equal(f32ToBf16(f[0]!), b + 1);
    u[0] = ((b << 16) | 0x7fff) >>> 0;
    assert.equal(f32ToBf16(f[0]!), b);
  }
  assert.equal(f32ToBf16(NaN), 0x7fc0);
  assert.equal(f32ToBf16(3.4e38), 0x7f80); // rounds past the largest bf16 to infinity
});

// ---------------------------------------------------------------------------------------------
// Validation: every malformed file gives a SafetensorsError (a UserError) naming file, tensor and problem.

function expectError(file: string, tensor: string | null, problem: RegExp): void {
  assert.throws(() => SafetensorsReader.open(file), (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${String(e)}`);
    assert.ok(e instanceof UserError);
    assert.equal(e.file, file);
    assert.equal(e.tensor, tensor);
    assert.match(e.problem, problem);
    assert.ok(e.message.startsWith(file));
    assert.ok(!e.message.includes('\n'));
    return true;
  });
}

test('reader rejects malformed files with typed errors naming file, tensor and problem', () => {
  const dir = tmpDir('st-bad');
  const f = (name: string) => path.join(dir, name);
  const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  const data8 = new Uint8Array(8);
  fs.writeFileSync(f('short'), Buffer.from([1, 0, 0]));
  expectError(f('short'), null, /too short/);
  expectError(writeRawSafetensors(f('huge'), '{}', undefined, BigInt(MAX_HEADER_BYTES) + 1n), null, /exceeds the 100000000-byte limit/);
  expectError(writeRawSafetensors(f('huge64'), '{}', undefined, 2n ** 64n - 1n), null, /exceeds/);
  expectError(writeRawSafetensors(f('past'), '{}', undefined, 100n), null, /runs past the end/);
  fs.writeFileSync(f('utf8'), Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0x7b, 0xff, 0xfe, 0x7d])]));
  expectError(f('utf8'), null, /not valid UTF-8 JSON/);
  expectError(writeRawSafetensors(f('json'), '{"a": [1, 2', data8), null, /not valid UTF-8 JSON/);
  expectError(writeRawSafetensors(f('array'), '[1, 2]'), null, /not a JSON object/);
  expectError(writeRawSafetensors(f('null'), 'null'), null, /not a JSON object/);
  expectError(writeRawSafetensors(f('meta'), { __metadata__: { format: 1 } }), null, /__metadata__/);
  expectError(writeRawSafetensors(f('entry'), { w: [1] }), 'w', /not an object/);
  expectError(writeRawSafetensors(f('dtype'), { w: { ...ok, dtype: 'Q4_K' } }, data8), 'w', /unknown dtype "Q4_K"/);
  expectError(writeRawSafetensors(f('dtype2'), { w: { ...ok, dtype: undefined } }, data8), 'w', /unknown dtype/);
  expectError(writeRawSafetensors(f('shape'), { w: { ...ok, shape: [2.5] } }, data8), 'w', /shape \[2.5\]/);
  expectError(writeRawSafetensors(f('shape2'), { w: { ...ok, shape: [-2] } }, data8), 'w', /shape/);
  expectError(writeRawSafetensors(f('shape3'), { w: { ...ok, shape: '2' } }, data8), 'w', /shape/);
  expectError(writeRawSafetensors(f('offs'), { w: { ...ok, data_offsets: [0] } }, data8), 'w', /data_offsets/);
  expectError(writeRawSafetensors(f('offs2'), { w: { ...ok, data_offsets: [0, 16] } }, data8), 'w', /out of bounds \(data section is 8 bytes\)/);
  expectError(writeRawSafetensors(f('offs3'), { w: { ...ok, data_offsets: [8, 0] } }, data8), 'w', /out of bounds/);
  expectError(writeRawSafetensors(f('size'), { w: { ...ok, shape: [3] } }, data8), 'w', /holds 8 bytes but shape \[3\] of F32 needs 12/);
  expectError(writeRawSafetensors(f('overflow'), { w: { ...ok, shape: [2 ** 40, 2 ** 40] } }, data8), 'w', /needs more than 2\^53/);
  expectError(writeRawSafetensors(f('overlap'), { a: ok, b: { dtype: 'F16', shape: [2], data_offsets: [6, 10] } }, new Uint8Array(12)), 'b', /overlaps tensor 'a'/);
  // A real file cut short: the last tensor's data is no longer in the file.
  const fx = fs.readFileSync(path.join(FIX, 'mamba1-tiny', 'model.safetensors'));
  fs.writeFileSync(f('cut'), fx.subarray(0, fx.length - 100));
  expectError(f('cut'), 'backbone.norm_f.weight', /out of bounds.*truncated/);
  fs.writeFileSync(f('cut2'), fx.subarray(0, 500));
  expectError(f('cut2'), null, /runs past the end/);
  expectError(f('absent'), null, /no such file/);
  expectError(dir, null, /is a folder|not a regular file/);
  // Empty tensors and gaps are legal; zero-size tensors may share an offset.
  const r = SafetensorsReader.open(writeRawSafetensors(f('empty'), { e: { dtype: 'F32', shape: [0, 3], data_offsets: [0, 0] }, z: { dtype: 'I8', shape: [0], data_offsets: [0, 0] }, w: { ...ok, data_offsets: [4, 12] } }, new Uint8Array(12)));
  assert.deepEqual(r.readFloat32('e').shape, [0, 3]);
  assert.equal(r.readFloat32('w').data.length, 2);
  assert.throws(() => r.read('nope'), (e: unknown) => e instanceof SafetensorsError && e.tensor === 'nope');
  r.close();
  fs.rmSync(dir, { recursive: true });
});

test('reader reads by position: a tensor read costs its own bytes, not the file', () => {
  const f = path.join(FIX, 'mamba1-tiny', 'golden.safetensors');
  const r = SafetensorsReader.open(f);
  const afterHeader = r.bytesRead;
  assert.equal(afterHeader, 8 + r.headerSize);
  const t = r.info('layers.1.qk');
  const x = r.readFloat32('layers.1.qk');
  assert.equal(r.bytesRead - afterHeader, t.end - t.begin);
  assert.deepEqual(x.shape, [2, 24, 24]);
  // qk is zero above the diagonal (generate.py masks it): a property of the decoded values.
  for (let t = 0; t < 24; t++) for (let s = t + 1; s < 24; s++) assert.ok(x.data[576 + t * 24 + s] === 0, `qk[1, ${t}, ${s}]`);
  assert.ok(x.data.some((v) => v !== 0));
  r.close();
});

test('BF16 and F16 tensors longer than one read piece widen exactly, into fresh and reused buffers', () => {
  const dir = tmpDir('mimetic-widen-');
  try {
    // Odd and even lengths across several 2^17-value pieces, values with all bit patterns of the mantissa.
    const lens = [(1 << 18) + 3, (1 << 18) + 2, 5];
    const ts: WritableTensor[] = [];
    for (const dt of ['BF16', 'F16'] as const) {
      lens.forEach((n, k) => ts.push({ name: `${dt}.${k}`, shape: [n], dtype: dt, data: Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + k) * (1 + (i % 97))) }));
    }
    const file = path.join(dir, 'w.safetensors');
    writeSafetensors(file, ts);
    const r = SafetensorsReader.open(file);
    try {
      for (const t of ts) {
        const want = Float32Array.from(t.data as Float32Array, (v) => (t.dtype === 'BF16' ? bf16ToF32(f32ToBf16(v)) : f16ToF32(f32ToF16(v))));
        assert.deepEqual(r.readFloat32(t.name).data, want, `${t.name} fresh`);
        const into = new Float32Array(want.length).fill(NaN);
        assert.deepEqual(r.readFloat32Into(t.name, into), want, `${t.name} reused`);
      }
    } finally {
      r.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
