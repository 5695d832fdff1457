import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HALF_PIECE, widenHalf } from '../src/checkpoint/widen.js';
import { SafetensorsReader, writeSafetensors } from '../src/checkpoint/safetensors.js';
import { tmpDir } from './helpers/synth-checkpoint.js';
import { referenceBits, assertBitsEqual } from './helpers/half-reference.js';

const allPatterns = (): Uint16Array => Uint16Array.from({ length: 65536 }, (_, i) => i);

test('widenHalf: every BF16 and F16 bit pattern matches the reference (subnormals, ±0, ±inf, NaN payloads)', () => {
  for (const dtype of ['BF16', 'F16'] as const) {
    const bits = allPatterns();
    assertBitsEqual(widenHalf(dtype, bits, new Float32Array(bits.length)), referenceBits(dtype, bits), dtype);
  }
});

test('widenHalf: lengths across piece boundaries, odd and below one SIMD step, from an unaligned source', () => {
  const lens = [0, 1, 7, 9, 2 * HALF_PIECE + 3, HALF_PIECE - 1, HALF_PIECE, HALF_PIECE + 1];
  for (const dtype of ['BF16', 'F16'] as const) {
    for (const n of lens) {
      // Starting 2 bytes into a buffer: the source view is not 4- or 16-aligned.
      const backing = new Uint16Array(n + 1);
      for (let i = 0; i < backing.length; i++) backing[i] = (Math.imul(i, 2654435761) >>> 16) & 0xffff;
      const bits = backing.subarray(1);
      // The output's neighbours must stay untouched: a piece's last SIMD step runs past `n`.
      const outer = new Float32Array(n + 2).fill(-7);
      const out = outer.subarray(1, n + 1);
      widenHalf(dtype, bits, out);
      assertBitsEqual(out, referenceBits(dtype, bits), `${dtype} n=${n}`);
      assert.equal(outer[0], -7);
      assert.equal(outer[n + 1], -7);
    }
  }
});

test('reader: half tensors at offsets not aligned to a SIMD step, longer than a piece, with special values, fresh and reused', () => {
  const dir = tmpDir('mimetic-widen-read-');
  try {
    const n = HALF_PIECE + 5;
    const specials = [0x0000, 0x8000, 0x0001, 0x03ff, 0x8001, 0x7c00, 0xfc00, 0x7c01, 0x7e00, 0xfe01, 0x7f80, 0xff80, 0x7f81, 0x7fc1, 0xffff, 0x0080];
    const raw = (seed: number) => Uint16Array.from({ length: n }, (_, i) => (i % 3 === 0 ? specials[(i / 3) % specials.length]! : (Math.imul(i + seed, 2654435761) >>> 16) & 0xffff));
    // A 3-value tensor first puts every later tensor's data 6 bytes off a 16-byte boundary.
    const tensors = [
      { name: 'a', shape: [3], dtype: 'BF16' as const, data: Uint16Array.from([1, 2, 3]) },
      { name: 'b', shape: [n], dtype: 'BF16' as const, data: raw(1) },
      { name: 'c', shape: [n], dtype: 'F16' as const, data: raw(2) },
    ];
    const file = path.join(dir, 'w.safetensors');
    writeSafetensors(file, tensors, { metadata: null });
    const r = SafetensorsReader.open(file);
    try {
      assert.ok(tensors.slice(1).some((t) => r.info(t.name).begin % 16 !== 0));
      for (const t of tensors) {
        const want = referenceBits(t.dtype, t.data);
        assertBitsEqual(r.readFloat32(t.name).data, want, `${t.name} fresh`);
        assertBitsEqual(r.readFloat32Into(t.name, new Float32Array(t.data.length).fill(NaN)), want, `${t.name} reused`);
      }
    } finally {
      r.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
