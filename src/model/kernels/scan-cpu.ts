/**
 * Selective-scan kernels for the CPU-side backends (cpu, wasm, tensorflow): the inputs are read
 * back once (dataSync) and the recurrence runs as tight loops over Float32Arrays. Gradients come
 * from tf.customGrad: the backward pass recomputes a block of lanes' states (at most 2^20 floats)
 * and runs the recurrence in reverse, so memory stays bounded whatever the batch and width.
 */
import * as tf from '@tensorflow/tfjs';
import { registerScanKernels, type SelectiveScanFn, type SsdScanFn } from './scan.js';

interface Arrays {
  u: Float32Array;
  delta: Float32Array;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  D: Float32Array;
}

interface Grads {
  u: Float32Array;
  delta: Float64Array;
  A: Float64Array;
  B: Float64Array;
  C: Float64Array;
  D: Float64Array;
}

function newGrads(a: Arrays): Grads {
  return {
    u: new Float32Array(a.u.length), delta: new Float64Array(a.delta.length), A: new Float64Array(a.A.length),
    B: new Float64Array(a.B.length), C: new Float64Array(a.C.length), D: new Float64Array(a.D.length),
  };
}

/** Floats of stored states (and decay factors) one backward block may hold: 2^20 (8 MiB as float64). */
const BLOCK_STATES = 2 ** 20;

// The loops run time-major: at each step every channel (Mamba-1) or head-dim row (Mamba-2) of a
// batch row advances together, so u, Δ, B and C are read contiguously and Mamba-2's decay
// exp(Δ·A) is computed once per head and step, not once per row. Per state the arithmetic is the
// recurrence of scan.ts in the same order as a one-lane-at-a-time loop.

/** Mamba-1 forward, all channels of each batch row at once. */
function m1Forward(a: Arrays, Bsz: number, L: number, D: number, N: number): Float32Array {
  const y = new Float32Array(Bsz * L * D);
  const h = new Float64Array(D * N);
  for (let b = 0; b < Bsz; b++) {
    h.fill(0);
    for (let t = 0; t < L; t++) {
      const row = (b * L + t) * D;
      const bo = (b * L + t) * N;
      for (let d = 0; d < D; d++) {
        const ut = a.u[row + d]!;
        const dt = a.delta[row + d]!;
        const du = dt * ut;
        const o = d * N;
        let acc = 0;
        for (let n = 0; n < N; n++) {
          const hn = Math.exp(dt * a.A[o + n]!) * h[o + n]! + du * a.B[bo + n]!;
          h[o + n] = hn;
          acc += a.C[bo + n]! * hn;
        }
        y[row + d] = acc + a.D[d]! * ut;
      }
    }
  }
  return y;
}

/**
 * Mamba-1 backward in blocks of channels: recompute the block's states and decay factors
 * (L × width × N each), then run the recurrence in reverse.
 */
function m1Backward(a: Arrays, gy: Float32Array, Bsz: number, L: number, D: number, N: number): Grads {
  const g = newGrads(a);
  const width = Math.max(1, Math.min(D, Math.floor(BLOCK_STATES / (L * N))));
  const hs = new Float32Array(L * width * N);
  const dAs = new Float64Array(L * width * N);
  const h = new Float64Array(width * N);
  const gh = new Float64Array(width * N);
  const gD = new Float64Array(width);
  for (let b = 0; b < Bsz; b++) {
    for (let d0 = 0; d0 < D; d0 += width) {
      const w = Math.min(width, D - d0);
      h.fill(0);
      for (let t = 0; t < L; t++) {
        const row = (b * L + t) * D + d0;
        const bo = (b * L + t) * N;
        const so = t * width * N;
        for (let j = 0; j < w; j++) {
          const dt = a.delta[row + j]!;
          const du = dt * a.u[row + j]!;
          const o = j * N, ao = (d0 + j) * N;
          for (let n = 0; n < N; n++) {
            const dA = Math.exp(dt * a.A[ao + n]!);
            const hn = dA * h[o + n]! + du * a.B[bo + n]!;
            h[o + n] = hn;
            hs[so + o + n] = hn;
            dAs[so + o + n] = dA;
          }
        }
      }
      gh.fill(0);
      gD.fill(0);
      for (let t = L - 1; t >= 0; t--) {
        const row = (b * L + t) * D + d0;
        const bo = (b * L + t) * N;
        const so = t * width * N;
        const po = (t - 1) * width * N;
        for (let j = 0; j < w; j++) {
          const d = d0 + j;
          const ut = a.u[row + j]!;
          const dt = a.delta[row + j]!;
          const gyt = gy[row + j]!;
          gD[j] += gyt * ut;
          let gu = gyt * a.D[d]!;
          let gdt = 0;
          const o = j * N, ao = d * N;
          for (let n = 0; n < N; n++) {
            const An = a.A[ao + n]!;
            const hPrev = t > 0 ? hs[po + o + n]! : 0;
            g.C[bo + n] += gyt * hs[so + o + n]!;
            const gn = gh[o + n]! + gyt * a.C[bo + n]!;
            const dA = dAs[so + o + n]!;
            const Bn = a.B[bo + n]!;
            const gdA = gn * hPrev * dA;
            g.A[ao + n] += gdA * dt;
            gdt += gdA * An + gn * Bn * ut;
            g.B[bo + n] += gn * dt * ut;
            gu += gn * dt * Bn;
            gh[o + n] = gn * dA;
          }
          g.u[row + j] += gu;
          g.delta[row + j] += gdt;
        }
      }
      for (let j = 0; j < w; j++) g.D[d0 + j] += gD[j]!;
    }
  }
  return g;
}

interface SsdShape {
  Bsz: number;
  L: number;
  H: number;
  P: number;
  G: number;
  N: number;
}

/** Mamba-2 forward, every head and head-dim row of a batch row at once; one exp per head and step. */
function ssdForward(a: Arrays, s: SsdShape): Float32Array {
  const { Bsz, L, H, P, G, N } = s;
  const hpg = H / G;
  const y = new Float32Array(Bsz * L * H * P);
  const h = new Float64Array(H * P * N);
  for (let b = 0; b < Bsz; b++) {
    h.fill(0);
    for (let t = 0; t < L; t++) {
      const bt = b * L + t;
      for (let hh = 0; hh < H; hh++) {
        const dt = a.delta[bt * H + hh]!;
        const dA = Math.exp(dt * a.A[hh]!);
        const bo = (bt * G + Math.floor(hh / hpg)) * N;
        const Dd = a.D[hh]!;
        const row = (bt * H + hh) * P;
        for (let p = 0; p < P; p++) {
          const ut = a.u[row + p]!;
          const du = dt * ut;
          const o = (hh * P + p) * N;
          let acc = 0;
          for (let n = 0; n < N; n++) {
            const hn = dA * h[o + n]! + du * a.B[bo + n]!;
            h[o + n] = hn;
            acc += a.C[bo + n]! * hn;
          }
          y[row + p] = acc + Dd * ut;
        }
      }
    }
  }
  return y;
}

/**
 * out[i, :] = Σ_l a[i, l] · w[l, :] for a [r, k], w [k, c] (row-major), accumulated in float64;
 * `lower`: only l ≤ i (a is lower-triangular). Two rows of a and four of w per pass, so each
 * load of w feeds two accumulators and each accumulator update takes four products (~3× the
 * plain loop in V8). acc holds 2c floats.
 */
function matMulRows(a: Float32Array, r: number, k: number, w: Float32Array, c: number, out: Float32Array, acc: Float64Array, lower: boolean): void {
  const acc1 = acc.subarray(c, 2 * c);
  for (let i = 0; i < r; i += 2) {
    const two = i + 1 < r;
    acc.fill(0, 0, 2 * c);
    const a0 = i * k, a1 = a0 + k;
    // Row i takes l < lend; row i + 1 also takes l = lend when lower.
    const lend = lower ? Math.min(k, i + 1) : k;
    let l = 0;
    if (two) {
      for (; l + 3 < lend; l += 4) {
        const p0 = a[a0 + l]!, p1 = a[a0 + l + 1]!, p2 = a[a0 + l + 2]!, p3 = a[a0 + l + 3]!;
        const q0 = a[a1 + l]!, q1 = a[a1 + l + 1]!, q2 = a[a1 + l + 2]!, q3 = a[a1 + l + 3]!;
        const o0 = l * c, o1 = o0 + c, o2 = o1 + c, o3 = o2 + c;
        for (let j = 0; j < c; j++) {
          const w0 = w[o0 + j]!, w1 = w[o1 + j]!, w2 = w[o2 + j]!, w3 = w[o3 + j]!;
          acc[j] += p0 * w0 + p1 * w1 + p2 * w2 + p3 * w3;
          acc1[j] += q0 * w0 + q1 * w1 + q2 * w2 + q3 * w3;
        }
      }
      for (; l < lend; l++) {
        const p = a[a0 + l]!, q = a[a1 + l]!, wo = l * c;
        for (let j = 0; j < c; j++) {
          const x = w[wo + j]!;
          acc[j] += p * x;
          acc1[j] += q * x;
        }
      }
      if (lower && lend < k) {
        const q = a[a1 + lend]!, wo = lend * c;
        for (let j = 0; j < c; j++) acc1[j] += q * w[wo + j]!;
      }
    } else {
      for (; l < lend; l++) {
        const p = a[a0 + l]!, wo = l * c;
        for (let j = 0; j < c; j++) acc[j] += p * w[wo + j]!;
      }
    }
    const oo = i * c;
    for (let j = 0; j < c; j++) out[oo + j] = acc[j]!;
    if (two) for (let j = 0; j < c; j++) out[oo + c + j] = acc1[j]!;
  }
}

/** Steps per chunk of the matmul form of the Mamba-2 forward. */
const SSD_CHUNK = 128;

/**
 * Mamba-2 forward in its chunked matrix form (the SSD of Dao & Gu 2024), used on wasm and
 * tensorflow: per batch row and chunk of Q steps, with
 * e(t, s) = exp(A_h Σ_{k=s+1..t} Δ_k) from float64 sums inside the chunk (exponents ≤ 0),
 *   y_t   = Σ_{s ≤ t in chunk} (C_t·B_s) e(t, s) Δ_s x_s + e(t, c0−1) C_t h + D x_t,
 *   h    ← e(end, c0−1) h + Σ_s e(end, s) Δ_s x_s B_sᵀ,
 * as products per head in JS (matMulRows): these operands are small and new at every call, where
 * wasm's matMul costs ~1 GFLOP/s (its batched form is a slow loop, and each fresh right operand is
 * packed anew), and the intra-chunk product skips the masked upper triangle. C_t·B_s is computed
 * once per group and chunk, not once per head. Same values as the recurrence (ssdForward) to
 * float32 rounding.
 */
function ssdForwardChunked(a: Arrays, s: SsdShape): Float32Array {
  const { Bsz, L, H, P, G, N } = s;
  const hpg = H / G;
  const y = new Float32Array(Bsz * L * H * P);
  const Qm = Math.min(SSD_CHUNK, L);
  const M = new Float32Array(Qm * Qm), X = new Float32Array(H * Qm * P);
  const Cg = new Float32Array(G * Qm * N), Bw = new Float32Array(N * Qm);
  const CB = new Float64Array(G * Qm * Qm);
  const seg = new Float64Array(Qm + 1), decay = new Float64Array(Qm);
  const state = new Float32Array(H * N * P); // h of each head, [N, P]
  const intra = new Float32Array(Qm * P), inter = new Float32Array(Qm * P), add = new Float32Array(N * P);
  const acc = new Float64Array(2 * P);
  for (let b = 0; b < Bsz; b++) {
    state.fill(0);
    for (let c0 = 0; c0 < L; c0 += Qm) {
      const Q = Math.min(Qm, L - c0);
      const first = c0 === 0;
      // C_t·B_s over the chunk's lower triangle and C of the chunk, per group.
      for (let grp = 0; grp < G; grp++) {
        for (let t = 0; t < Q; t++) {
          const ct = ((b * L + c0 + t) * G + grp) * N;
          for (let u = 0; u <= t; u++) {
            const bs = ((b * L + c0 + u) * G + grp) * N;
            let cb = 0;
            for (let n = 0; n < N; n++) cb += a.C[ct + n]! * a.B[bs + n]!;
            CB[(grp * Q + t) * Q + u] = cb;
          }
          for (let n = 0; n < N; n++) Cg[(grp * Q + t) * N + n] = a.C[ct + n]!;
        }
      }
      for (let hh = 0; hh < H; hh++) {
        const grp = Math.floor(hh / hpg), Ah = a.A[hh]!;
        // seg[i] = Σ_{k=c0..c0+i−1} Δ_k: e(t, s) = exp(A (seg[t+1] − seg[s+1])) within the chunk.
        seg[0] = 0;
        for (let i = 0; i < Q; i++) seg[i + 1] = seg[i]! + a.delta[(b * L + c0 + i) * H + hh]!;
        const Xh = X.subarray(hh * Q * P, (hh + 1) * Q * P);
        for (let t = 0; t < Q; t++) {
          const co = (grp * Q + t) * Q;
          for (let u = 0; u <= t; u++) {
            M[t * Q + u] = CB[co + u]! * Math.exp(Ah * (seg[t + 1]! - seg[u + 1]!)) * a.delta[(b * L + c0 + u) * H + hh]!;
          }
          for (let u = t + 1; u < Q; u++) M[t * Q + u] = 0;
          decay[t] = Math.exp(Ah * seg[t + 1]!); // e(t, c0 − 1)
          const xo = ((b * L + c0 + t) * H + hh) * P;
          for (let p = 0; p < P; p++) Xh[t * P + p] = a.u[xo + p]!;
        }
        const Sh = state.subarray(hh * N * P, (hh + 1) * N * P);
        matMulRows(M, Q, Q, Xh, P, intra, acc, true);
        if (!first) matMulRows(Cg.subarray(grp * Q * N, (grp + 1) * Q * N), Q, N, Sh, P, inter, acc, false);
        const Dd = a.D[hh]!;
        for (let t = 0; t < Q; t++) {
          const yo = ((b * L + c0 + t) * H + hh) * P, io = t * P, dt = decay[t]!;
          for (let p = 0; p < P; p++) y[yo + p] = intra[io + p]! + (first ? 0 : dt * inter[io + p]!) + Dd * a.u[yo + p]!;
        }
        if (c0 + Q < L) {
          for (let u = 0; u < Q; u++) {
            const w = Math.exp(Ah * (seg[Q]! - seg[u + 1]!)) * a.delta[(b * L + c0 + u) * H + hh]!; // e(end, s) Δ_s
            const bs = ((b * L + c0 + u) * G + grp) * N;
            for (let n = 0; n < N; n++) Bw[n * Q + u] = a.B[bs + n]! * w;
          }
          matMulRows(Bw, N, Q, Xh, P, add, acc, false);
          // In float32, as tf.add(tf.mul(state, full), add) did.
          const full = Math.fround(decay[Q - 1]!);
          if (first) Sh.set(add.subarray(0, N * P));
          else for (let i = 0; i < N * P; i++) Sh[i] = Math.fround(Sh[i]! * full) + add[i]!;
        }
      }
    }
  }
  return y;
}

/** Mamba-2 backward in blocks of head-dim rows of one head: recompute their states, then reverse. */
function ssdBackward(a: Arrays, gy: Float32Array, s: SsdShape): Grads {
  const { Bsz, L, H, P, G, N } = s;
  const hpg = H / G;
  const g = newGrads(a);
  const width = Math.max(1, Math.min(P, Math.floor(BLOCK_STATES / (L * N))));
  const hs = new Float32Array(L * width * N);
  const dAs = new Float64Array(L);
  const h = new Float64Array(width * N);
  const gh = new Float64Array(width * N);
  for (let b = 0; b < Bsz; b++) {
    for (let hh = 0; hh < H; hh++) {
      const An = a.A[hh]!;
      const Dd = a.D[hh]!;
      const grp = Math.floor(hh / hpg);
      for (let p0 = 0; p0 < P; p0 += width) {
        const w = Math.min(width, P - p0);
        h.fill(0);
        for (let t = 0; t < L; t++) {
          const bt = b * L + t;
          const dt = a.delta[bt * H + hh]!;
          const dA = Math.exp(dt * An);
          dAs[t] = dA;
          const bo = (bt * G + grp) * N;
          const row = (bt * H + hh) * P + p0;
          const so = t * width * N;
          for (let j = 0; j < w; j++) {
            const du = dt * a.u[row + j]!;
            const o = j * N;
            for (let n = 0; n < N; n++) {
              const hn = dA * h[o + n]! + du * a.B[bo + n]!;
              h[o + n] = hn;
              hs[so + o + n] = hn;
            }
          }
        }
        gh.fill(0);
        let gA = 0, gD = 0;
        for (let t = L - 1; t >= 0; t--) {
          const bt = b * L + t;
          const di = bt * H + hh;
          const dt = a.delta[di]!;
          const dA = dAs[t]!;
          const bo = (bt * G + grp) * N;
          const row = (bt * H + hh) * P + p0;
          const so = t * width * N;
          const po = (t - 1) * width * N;
          let gdt = 0;
          for (let j = 0; j < w; j++) {
            const ut = a.u[row + j]!;
            const gyt = gy[row + j]!;
            gD += gyt * ut;
            let gu = gyt * Dd;
            const o = j * N;
            for (let n = 0; n < N; n++) {
              const hPrev = t > 0 ? hs[po + o + n]! : 0;
              g.C[bo + n] += gyt * hs[so + o + n]!;
              const gn = gh[o + n]! + gyt * a.C[bo + n]!;
              const Bn = a.B[bo + n]!;
              const gdA = gn * hPrev * dA;
              gA += gdA * dt;
              gdt += gdA * An + gn * Bn * ut;
              g.B[bo + n] += gn * dt * ut;
              gu += gn * dt * Bn;
              gh[o + n] = gn * dA;
            }
            g.u[row + j] += gu;
          }
          g.delta[di] += gdt;
        }
        g.A[hh] += gA;
        g.D[hh] += gD;
      }
    }
  }
  return g;
}

function arraysOf(ts: tf.Tensor[]): Arrays {
  const [u, delta, A, B, C, D] = ts.map((t) => t.dataSync() as Float32Array);
  return { u: u!, delta: delta!, A: A!, B: B!, C: C!, D: D! };
}

function checkShapes(what: string, cond: boolean, detail: string): void {
  if (!cond) throw new Error(`${what}: inconsistent shapes (${detail})`);
}

export const selectiveScanCpu: SelectiveScanFn = (u, delta, A, B, C, Dskip) => {
  const [Bsz, L, D] = u.shape;
  const N = A.shape[1];
  checkShapes('selectiveScan', delta.shape.join() === u.shape.join() && A.shape[0] === D && B.shape.join() === [Bsz, L, N].join() && C.shape.join() === B.shape.join() && Dskip.shape[0] === D,
    `u ${u.shape} delta ${delta.shape} A ${A.shape} B ${B.shape} C ${C.shape} D ${Dskip.shape}`);
    const f = tf.customGrad((...args: (tf.Tensor | ((ts: tf.Tensor[]) => void))[]) => {
    const ins = args.slice(0, 6) as tf.Tensor[];
    const save = args[6] as (ts: tf.Tensor[]) => void;
    save(ins);
    const y = m1Forward(arraysOf(ins), Bsz, L, D, N);
    return {
      value: tf.tensor3d(y, [Bsz, L, D]),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const g = m1Backward(arraysOf(saved), (dy as tf.Tensor).dataSync() as Float32Array, Bsz, L, D, N);
        return [tf.tensor3d(g.u, [Bsz, L, D]), tf.tensor3d(Float32Array.from(g.delta), [Bsz, L, D]), tf.tensor2d(Float32Array.from(g.A), [D, N]),
          tf.tensor3d(Float32Array.from(g.B), [Bsz, L, N]), tf.tensor3d(Float32Array.from(g.C), [Bsz, L, N]), tf.tensor1d(Float32Array.from(g.D))];
      },
    };
  });
  return f(u, delta, A, B, C, Dskip) as tf.Tensor3D;
};

export const ssdScanCpu: SsdScanFn = (x, delta, A, B, C, Dskip) => {
  const [Bsz, L, H, P] = x.shape;
  const G = B.shape[2];
  const N = B.shape[3];
  checkShapes('ssdScan', delta.shape.join() === [Bsz, L, H].join() && A.shape[0] === H && B.shape.join() === [Bsz, L, G, N].join() && C.shape.join() === B.shape.join() && Dskip.shape[0] === H && H % G === 0,
    `x ${x.shape} delta ${delta.shape} A ${A.shape} B ${B.shape} C ${C.shape} D ${Dskip.shape}`);
  const shape: SsdShape = { Bsz, L, H, P, G, N };
  const f = tf.customGrad((...args: (tf.Tensor | ((ts: tf.Tensor[]) => void))[]) => {
    const ins = args.slice(0, 6) as tf.Tensor[];
    const save = args[6] as (ts: tf.Tensor[]) => void;
    save(ins);
    // The chunked matrix form on wasm and tensorflow (about 4× less work than the recurrence at
    // L = 128); tfjs-cpu keeps the plain recurrence.
    const y = tf.getBackend() === 'cpu' ? ssdForward(arraysOf(ins), shape) : ssdForwardChunked(arraysOf(ins), shape);
    return {
      value: tf.tensor4d(y, [Bsz, L, H, P]),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const g = ssdBackward(arraysOf(saved), (dy as tf.Tensor).dataSync() as Float32Array, shape);
        return [tf.tensor4d(g.u, [Bsz, L, H, P]), tf.tensor3d(Float32Array.from(g.delta), [Bsz, L, H]), tf.tensor1d(Float32Array.from(g.A)),
          tf.tensor4d(Float32Array.from(g.B), [Bsz, L, G, N]), tf.tensor4d(Float32Array.from(g.C), [Bsz, L, G, N]), tf.tensor1d(Float32Array.from(g.D))];
      },
    };
  });
  return f(x, delta, A, B, C, Dskip) as tf.Tensor4D;
};

registerScanKernels(['cpu', 'wasm', 'tensorflow'], { selectiveScan: selectiveScanCpu, ssdScan: ssdScanCpu });
