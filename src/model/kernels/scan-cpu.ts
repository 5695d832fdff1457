/**
 * Selective-scan kernels for the CPU-side backends (cpu, wasm, tensorflow): the inputs are read
 * back once (dataSync) and the recurrence runs as tight loops over Float32Arrays. Gradients come
 * from tf.customGrad: the backward pass recomputes one lane's states (L × N floats) and runs the
 * recurrence in reverse, so memory stays at one lane's states whatever the batch and width.
 *
 * Both scans share one lane routine: a lane is one (batch, channel) of Mamba-1 or one
 * (batch, head, head-dim) of Mamba-2, described by offsets and per-time-step strides.
 */
import * as tf from '@tensorflow/tfjs';
import { registerScanKernels, type SelectiveScanFn, type SsdScanFn } from './scan.js';

interface Lane {
  L: number;
  N: number;
  /** u (and y, gu): offset and stride per time step. */
  uOff: number;
  uS: number;
  /** Δ: offset and stride per time step. */
  dOff: number;
  dS: number;
  /** A: offset and stride over states (0 for Mamba-2's scalar A). */
  aOff: number;
  aS: number;
  /** B and C: offset and stride per time step (states contiguous). */
  bOff: number;
  bS: number;
  /** Index of D. */
  dIdx: number;
}

interface Arrays {
  u: Float32Array;
  delta: Float32Array;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  D: Float32Array;
}

/** Forward over one lane; writes y, and the states into `hs` (L × N) when given. */
function laneForward(l: Lane, a: Arrays, y: Float32Array, h: Float64Array, hs: Float32Array | null): void {
  const { L, N } = l;
  h.fill(0);
  const Dd = a.D[l.dIdx]!;
  const scalarA = l.aS === 0;
  for (let t = 0; t < L; t++) {
    const ut = a.u[l.uOff + t * l.uS]!;
    const dt = a.delta[l.dOff + t * l.dS]!;
    const bo = l.bOff + t * l.bS;
    const du = dt * ut;
    let acc = 0;
    if (scalarA) {
      const dA = Math.exp(dt * a.A[l.aOff]!);
      for (let n = 0; n < N; n++) {
        const hn = dA * h[n]! + du * a.B[bo + n]!;
        h[n] = hn;
        acc += a.C[bo + n]! * hn;
      }
    } else {
      for (let n = 0; n < N; n++) {
        const hn = Math.exp(dt * a.A[l.aOff + n * l.aS]!) * h[n]! + du * a.B[bo + n]!;
        h[n] = hn;
        acc += a.C[bo + n]! * hn;
      }
    }
    if (hs) for (let n = 0; n < N; n++) hs[t * N + n] = h[n]!;
    y[l.uOff + t * l.uS] = acc + Dd * ut;
  }
}

interface Grads {
  u: Float32Array;
  delta: Float64Array;
  A: Float64Array;
  B: Float64Array;
  C: Float64Array;
  D: Float64Array;
}

/** Backward over one lane, given its stored states (L × N); accumulates into g. */
function laneBackward(l: Lane, a: Arrays, gy: Float32Array, hs: Float32Array, gh: Float64Array, g: Grads): void {
  const { L, N } = l;
  gh.fill(0);
  const Dd = a.D[l.dIdx]!;
  let gD = 0;
  for (let t = L - 1; t >= 0; t--) {
    const ui = l.uOff + t * l.uS;
    const di = l.dOff + t * l.dS;
    const ut = a.u[ui]!;
    const dt = a.delta[di]!;
    const gyt = gy[ui]!;
    const bo = l.bOff + t * l.bS;
    gD += gyt * ut;
    let gu = gyt * Dd;
    let gdt = 0;
    const ho = t * N;
    const hpo = (t - 1) * N;
    for (let n = 0; n < N; n++) {
      const ai = l.aOff + n * l.aS;
      const An = a.A[ai]!;
      const hPrev = t > 0 ? hs[hpo + n]! : 0;
      g.C[bo + n] += gyt * hs[ho + n]!;
      const gn = gh[n]! + gyt * a.C[bo + n]!;
      const dA = Math.exp(dt * An);
      const Bn = a.B[bo + n]!;
      const gdA = gn * hPrev * dA;
      g.A[ai] += gdA * dt;
      gdt += gdA * An + gn * Bn * ut;
      g.B[bo + n] += gn * dt * ut;
      gu += gn * dt * Bn;
      gh[n] = gn * dA;
    }
    g.u[ui] += gu;
    g.delta[di] += gdt;
  }
  g.D[l.dIdx] += gD;
}

/** Calls fn for every lane of a Mamba-1 scan. */
function m1Lanes(Bsz: number, L: number, D: number, N: number, fn: (l: Lane) => void): void {
  for (let b = 0; b < Bsz; b++) {
    for (let d = 0; d < D; d++) {
      fn({ L, N, uOff: b * L * D + d, uS: D, dOff: b * L * D + d, dS: D, aOff: d * N, aS: 1, bOff: b * L * N, bS: N, dIdx: d });
    }
  }
}

/** Calls fn for every lane of a Mamba-2 SSD scan. */
function ssdLanes(Bsz: number, L: number, H: number, P: number, G: number, N: number, fn: (l: Lane) => void): void {
  const hpg = H / G;
  for (let b = 0; b < Bsz; b++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / hpg);
      for (let p = 0; p < P; p++) {
        fn({ L, N, uOff: b * L * H * P + h * P + p, uS: H * P, dOff: b * L * H + h, dS: H, aOff: h, aS: 0, bOff: b * L * G * N + g * N, bS: G * N, dIdx: h });
      }
    }
  }
}

function arraysOf(ts: tf.Tensor[]): Arrays {
  const [u, delta, A, B, C, D] = ts.map((t) => t.dataSync() as Float32Array);
  return { u: u!, delta: delta!, A: A!, B: B!, C: C!, D: D! };
}

type LaneIter = (fn: (l: Lane) => void) => void;

function runForward(a: Arrays, size: number, N: number, iter: LaneIter): Float32Array {
  const y = new Float32Array(size);
  const h = new Float64Array(N);
  iter((l) => laneForward(l, a, y, h, null));
  return y;
}

function runBackward(a: Arrays, gy: Float32Array, L: number, N: number, iter: LaneIter): Grads {
  const g: Grads = {
    u: new Float32Array(a.u.length), delta: new Float64Array(a.delta.length), A: new Float64Array(a.A.length),
    B: new Float64Array(a.B.length), C: new Float64Array(a.C.length), D: new Float64Array(a.D.length),
  };
  const h = new Float64Array(N);
  const gh = new Float64Array(N);
  const hs = new Float32Array(L * N);
  const scratch = new Float32Array(a.u.length);
  iter((l) => {
    laneForward(l, a, scratch, h, hs);
    laneBackward(l, a, gy, hs, gh, g);
  });
  return g;
}

function checkShapes(what: string, cond: boolean, detail: string): void {
  if (!cond) throw new Error(`${what}: inconsistent shapes (${detail})`);
}

export const selectiveScanCpu: SelectiveScanFn = (u, delta, A, B, C, Dskip) => {
  const [Bsz, L, D] = u.shape;
  const N = A.shape[1];
  checkShapes('selectiveScan', delta.shape.join() === u.shape.join() && A.shape[0] === D && B.shape.join() === [Bsz, L, N].join() && C.shape.join() === B.shape.join() && Dskip.shape[0] === D,
    `u ${u.shape} delta ${delta.shape} A ${A.shape} B ${B.shape} C ${C.shape} D ${Dskip.shape}`);
  const iter: LaneIter = (fn) => m1Lanes(Bsz, L, D, N, fn);
  const f = tf.customGrad((...args: (tf.Tensor | ((ts: tf.Tensor[]) => void))[]) => {
    const ins = args.slice(0, 6) as tf.Tensor[];
    const save = args[6] as (ts: tf.Tensor[]) => void;
    save(ins);
    const y = runForward(arraysOf(ins), Bsz * L * D, N, iter);
    return {
      value: tf.tensor3d(y, [Bsz, L, D]),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const g = runBackward(arraysOf(saved), (dy as tf.Tensor).dataSync() as Float32Array, L, N, iter);
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
  const iter: LaneIter = (fn) => ssdLanes(Bsz, L, H, P, G, N, fn);
  const f = tf.customGrad((...args: (tf.Tensor | ((ts: tf.Tensor[]) => void))[]) => {
    const ins = args.slice(0, 6) as tf.Tensor[];
    const save = args[6] as (ts: tf.Tensor[]) => void;
    save(ins);
    const y = runForward(arraysOf(ins), Bsz * L * H * P, N, iter);
    return {
      value: tf.tensor4d(y, [Bsz, L, H, P]),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const g = runBackward(arraysOf(saved), (dy as tf.Tensor).dataSync() as Float32Array, L, N, iter);
        return [tf.tensor4d(g.u, [Bsz, L, H, P]), tf.tensor3d(Float32Array.from(g.delta), [Bsz, L, H]), tf.tensor1d(Float32Array.from(g.A)),
          tf.tensor4d(Float32Array.from(g.B), [Bsz, L, G, N]), tf.tensor4d(Float32Array.from(g.C), [Bsz, L, G, N]), tf.tensor1d(Float32Array.from(g.D))];
      },
    };
  });
  return f(x, delta, A, B, C, Dskip) as tf.Tensor4D;
};

registerScanKernels(['cpu', 'wasm', 'tensorflow'], { selectiveScan: selectiveScanCpu, ssdScan: ssdScanCpu });
