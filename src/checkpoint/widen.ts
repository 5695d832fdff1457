/**
 * BF16/F16 → float32 widening, the one routine every half-precision read goes through. A JS loop
 * widens about 1.3 G values/s (one typed-array store per value, compute-bound); a wasm SIMD loop
 * widens BF16 about 10× faster (F16 reads went from 0.95 to 1.8 GB/s). So a piece of half bits
 * is put in a small wasm memory (by the file read itself, or copied in), widened there while it
 * is in L2, and copied out with TypedArray.set, a memcpy: wasm cannot write into a caller's
 * ArrayBuffer. Bit-exact against bf16ToF32/f16ToF32; an F16 NaN keeps its payload (f16ToF32
 * returns JS's one NaN).
 */

/** Values widened per piece: 256 KiB of half bits and 512 KiB of float32 stay in L2. */
export const HALF_PIECE = 1 << 17;

const SOURCE_AT = 0;
const OUTPUT_AT = 2 * HALF_PIECE;
const PAGES = (6 * HALF_PIECE) / 65536;

// A hand-assembled module (no toolchain): memory, then bf16(src, dst, srcEnd) and
// f16(src, dst, srcEnd), each widening 8 values per step from byte src up to srcEnd.
const leb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const section = (id: number, body: number[]): number[] => [id, ...leb(body.length), ...body];
const name = (s: string): number[] => [s.length, ...[...s].map((c) => c.charCodeAt(0))];
const simd = (op: number): number[] => [0xfd, ...leb(op)];
const i32x4 = (c: number): number[] => [...simd(0x0c), ...[0, 1, 2, 3].flatMap(() => [c & 0xff, (c >>> 8) & 0xff, (c >>> 16) & 0xff, c >>> 24])];
const get = (i: number) => [0x20, i];
const load = [...simd(0x00), 0, 0];
const store = (offset: number) => [...simd(0x0b), 0, offset];
const shuffle = (lanes: number[]) => [...simd(0x0d), ...lanes];
const AND = simd(0x4e), OR = simd(0x50), BITSELECT = simd(0x52);
const I32X4_EQ = simd(0x37), I32X4_SHL = simd(0xab), I32X4_ADD = simd(0xae);
const F32X4_MUL = simd(0xe6), F32X4_CONVERT_S = simd(0xfa);
const EXTEND_LOW_U = simd(0xa9), EXTEND_HIGH_U = simd(0xaa); // i32x4 from the low/high four u16 lanes

/** Locals after the three parameters: the loaded bytes, two for the step, then the constants. */
const LOADED = 3, X = 4, EXP = 5, CONST = 6;

/**
 * The loop both functions share: `step` turns the 16 bytes loaded at src (local LOADED) into 32
 * stored at dst. The step's constants are set in locals once, before the loop: V8 would otherwise
 * rebuild each one at every use.
 */
function widenLoop(constants: number[], step: number[]): number[] {
  return [
    0x01, CONST - LOADED + constants.length, 0x7b, // v128 locals
    ...constants.flatMap((c, k) => [...i32x4(c), 0x21, CONST + k]),
    0x03, 0x40, // loop
    ...get(0), ...load, 0x21, LOADED,
    ...step,
    ...get(1), 0x41, 32, 0x6a, 0x21, 1, // dst += 32
    ...get(0), 0x41, 16, 0x6a, 0x22, 0, ...get(2), 0x49, 0x0d, 0, // src += 16; loop while src < srcEnd
    0x0b, 0x0b,
  ];
}

// BF16: interleave zero halves below each value (punpcklwd/punpckhwd).
const interleaveLow = [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23];
const bf16Constants = [0];
const ZERO = CONST;
const bf16Step = [
  ...get(1), ...get(ZERO), ...get(LOADED), ...shuffle(interleaveLow), ...store(0),
  ...get(1), ...get(ZERO), ...get(LOADED), ...shuffle(interleaveLow.map((l) => l + 8)), ...store(16),
];

// F16, per 4 values x (zero-extended): normal numbers are (x & 0x7fff) << 13 with the exponent
// rebased by 112; infinity and NaN get 112 more (exponent 255, payload kept); subnormals are
// mantissa × 2^-24, exactly, converted as integers so no denormal float enters a multiply.
const f16Constants = [0, 0x3ff, 0x33800000, 0x7fff, 0x38000000, 0x7c00, 0x8000];
const [, MANTISSA, TWO_POW_MINUS_24, MAGNITUDE, REBIAS, EXPONENT, SIGN] = f16Constants.map((_, k) => CONST + k);
const f16Of = (extend: number[]) => [
  ...get(LOADED), ...extend, 0x21, X,
  ...get(X), ...get(MANTISSA), ...AND, ...F32X4_CONVERT_S, ...get(TWO_POW_MINUS_24), ...F32X4_MUL, // subnormal value
  ...get(X), ...get(MAGNITUDE), ...AND, 0x41, 13, ...I32X4_SHL, ...get(REBIAS), ...I32X4_ADD,
  ...get(X), ...get(EXPONENT), ...AND, 0x22, EXP, ...get(EXPONENT), ...I32X4_EQ, ...get(REBIAS), ...AND, ...I32X4_ADD, // normal, inf, NaN
  ...get(EXP), ...get(ZERO), ...I32X4_EQ, ...BITSELECT, // exponent 0: the subnormal value
  ...get(X), ...get(SIGN), ...AND, 0x41, 16, ...I32X4_SHL, ...OR, // sign
];
const f16Step = [...get(1), ...f16Of(EXTEND_LOW_U), ...store(0), ...get(1), ...f16Of(EXTEND_HIGH_U), ...store(16)];

function moduleBytes(): Uint8Array {
  const bodies = [widenLoop(bf16Constants, bf16Step), widenLoop(f16Constants, f16Step)];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [1, 0x60, 3, 0x7f, 0x7f, 0x7f, 0]),
    ...section(3, [2, 0, 0]),
    ...section(5, [1, 0, ...leb(PAGES)]),
    ...section(7, [3, ...name('memory'), 2, 0, ...name('bf16'), 0, 0, ...name('f16'), 0, 1]),
    ...section(10, [2, ...bodies.flatMap((b) => [...leb(b.length), ...b])]),
  ]);
}

interface Widener {
  source: Uint8Array;
  output: Float32Array;
  bf16: (src: number, dst: number, srcEnd: number) => void;
  f16: (src: number, dst: number, srcEnd: number) => void;
}

/** The part of the WebAssembly API used here (the project's TypeScript libs do not declare it). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
}

let widener: Widener | null = null;
function instance(): Widener {
  if (!widener) {
    const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
    const e = new wasm.Instance(new wasm.Module(moduleBytes())).exports as Omit<Widener, 'source' | 'output'> & { memory: { buffer: ArrayBuffer } };
    widener = {
      source: new Uint8Array(e.memory.buffer, SOURCE_AT, 2 * HALF_PIECE),
      output: new Float32Array(e.memory.buffer, OUTPUT_AT, HALF_PIECE),
      bf16: e.bf16,
      f16: e.f16,
    };
  }
  return widener;
}

/** Where the next piece's half bits go: 2·HALF_PIECE bytes, read into directly by the reader. */
export function halfSource(): Uint8Array {
  return instance().source;
}

/**
 * Widen the first `count` (≤ HALF_PIECE) values in halfSource() into out[at, at + count). The
 * loop runs in steps of 8; a step past `count` reads stale source and is never copied out.
 */
export function widenHalfSource(dtype: 'F16' | 'BF16', count: number, out: Float32Array, at: number): void {
  if (count <= 0) return;
  if (count > HALF_PIECE) throw new Error(`widenHalfSource: ${count} values, more than a piece (${HALF_PIECE})`);
  const w = instance();
  (dtype === 'BF16' ? w.bf16 : w.f16)(SOURCE_AT, OUTPUT_AT, SOURCE_AT + 2 * count);
  out.set(count === HALF_PIECE ? w.output : w.output.subarray(0, count), at);
}

/** Widen raw half bits already in memory into out (same length), a piece at a time. */
export function widenHalf(dtype: 'F16' | 'BF16', bits: Uint16Array, out: Float32Array): Float32Array {
  const source = halfSource();
  for (let i = 0; i < bits.length; i += HALF_PIECE) {
    const m = Math.min(HALF_PIECE, bits.length - i);
    source.set(new Uint8Array(bits.buffer, bits.byteOffset + 2 * i, 2 * m));
    widenHalfSource(dtype, m, out, i);
  }
  return out;
}
