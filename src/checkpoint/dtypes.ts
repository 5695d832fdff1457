/** safetensors dtypes and their conversions to float32. */
import { widenHalf } from './widen.js';

export const DTYPE_SIZES = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
} as const;

export type DType = keyof typeof DTYPE_SIZES;

/**
 * The order of Python safetensors' `Dtype` enum (increasing alignment). Its writer sorts tensors by
 * this rank descending, then by name, so every tensor's data starts aligned to its element size.
 */
export const DTYPE_RANK: Record<DType, number> = {
  BOOL: 0, U8: 1, I8: 2, I16: 5, F16: 7, BF16: 8, I32: 9, F32: 11, F64: 12, I64: 13,
};

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, s);
}

export type RawArray =
  | Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

/** View little-endian bytes as the dtype's natural typed array (F16/BF16 stay as raw Uint16 bits). */
export function viewAs(dtype: DType, bytes: Uint8Array): RawArray {
  // Copy into an aligned buffer: the bytes may come from an arbitrary file offset.
  const buf = bytes.byteOffset % 8 === 0 ? bytes : new Uint8Array(bytes);
  const ab = buf.buffer, off = buf.byteOffset, n = buf.byteLength;
  switch (dtype) {
    case 'F64': return new Float64Array(ab, off, n / 8);
    case 'F32': return new Float32Array(ab, off, n / 4);
    case 'F16': case 'BF16': return new Uint16Array(ab, off, n / 2);
    case 'I64': return new BigInt64Array(ab, off, n / 8);
    case 'I32': return new Int32Array(ab, off, n / 4);
    case 'I16': return new Int16Array(ab, off, n / 2);
    case 'I8': return new Int8Array(ab, off, n);
    case 'U8': case 'BOOL': return new Uint8Array(ab, off, n);
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bf16ToF32(bits: number): number {
  u32[0] = bits << 16;
  return f32[0]!;
}

/** Round-to-nearest-even float32 → bfloat16 bits, as PyTorch's c10::BFloat16 does (every NaN → 0x7fc0). */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  if ((b & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Round-to-nearest-even float32 → IEEE half bits. */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** Decode any dtype's raw values to float32 (integers and bools by value). */
export function toFloat32(dtype: DType, raw: RawArray): Float32Array {
  if (dtype === 'F32') return raw as Float32Array;
  const out = new Float32Array(raw.length);
  if (dtype === 'BF16' || dtype === 'F16') {
    widenHalf(dtype, raw as Uint16Array, out);
  } else if (dtype === 'I64') {
    const src = raw as BigInt64Array;
    for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
  } else {
    const src = raw as Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array;
    for (let i = 0; i < src.length; i++) out[i] = src[i]!;
  }
  return out;
}
