import * as assert from 'node:assert/strict';
import { bf16ToF32, f16ToF32 } from '../../src/checkpoint/dtypes.js';

/** The plain reference conversion, as float32 bits. A NaN keeps its payload: BF16 by the shift, F16 as (payload << 13). */
export function referenceBits(dtype: 'F16' | 'BF16', bits: Uint16Array): Uint32Array {
  const f = new Float32Array(bits.length);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const x = dtype === 'BF16' ? bf16ToF32(h) : f16ToF32(h);
    if (Number.isNaN(x)) u[i] = dtype === 'BF16' ? (h << 16) >>> 0 : (((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0;
    else f[i] = x;
  }
  return u;
}

export function assertBitsEqual(got: Float32Array, want: Uint32Array, what: string): void {
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  assert.equal(g.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (g[i] !== want[i]) assert.fail(`${what}[${i}]: got 0x${g[i]!.toString(16)}, want 0x${want[i]!.toString(16)}`);
  }
}
