/**
 * Selective-scan kernels for the WebGPU backend: WGSL compute programs run through
 * tfjs-backend-webgpu's runWebGPUProgram. Contract: scan.ts.
 *
 * Both scans are one "lane" recurrence: Mamba-1 is the SSD layout with head dim P = 1, one
 * group (G = 1) and a per-state A; Mamba-2 has a scalar A per head. One thread per lane
 * (batch, head[, head-dim]) runs the whole recurrence over time with the states in registers
 * (a 256-step recurrence over 4096 lanes took 0.84 ms on an H200); dispatch overhead, not
 * arithmetic, dominates at these sizes, so each pass is as few programs as possible.
 *
 * Backward (tf.customGrad): one program per lane reruns the forward, storing the states, then
 * runs the recurrence in reverse, writing dL/dh_t, du, dΔ and per-lane partial sums for A and D
 * into one packed output; a second program reduces dB and dC over the lanes of each group.
 * Sums over batch (and head dim, states) for A, D and Mamba-2's Δ are plain tf ops.
 */
import * as tf from '@tensorflow/tfjs';
import { registerScanKernels, type SelectiveScanFn, type SsdScanFn } from './scan.js';

import type { Program, Uniform, WebGPUBackendLike } from './webgpu-program.js';

const WORKGROUP = 64;

/** Sizes of one scan, in the shared lane layout. */
interface Dims {
  batch: number;
  L: number;
  /** Heads (Mamba-1: channels). */
  H: number;
  /** Head dim (Mamba-1: 1). */
  P: number;
  /** Groups of B/C (Mamba-1: 1). */
  G: number;
  N: number;
  /** Mamba-2: A is one scalar per head; Mamba-1: A is [H, N]. */
  scalarA: boolean;
}

const lanes = (d: Dims): number => d.batch * d.H * d.P;

// Offsets of the regions of the backward program's packed output. States and their gradients are
// stored in u's layout with the state index innermost ([b, t, h, p, n]), so the dB/dC reduction
// reads neighbouring states from neighbouring threads.
function packLayout(d: Dims): { S: number; gH: number; du: number; dDelta: number; dA: number; dD: number; total: number } {
  const R = lanes(d);
  const states = R * d.L * d.N;
  const S = 0;
  const gH = S + states;
  const du = gH + states;
  const dDelta = du + R * d.L;
  const dA = dDelta + R * d.L;
  const dD = dA + R * d.N;
  return { S, gH, du, dDelta, dA, dD, total: dD + R };
}

const DIM_UNIFORMS = 'seqLen : i32, rows : i32, heads : i32, headDim : i32, groups : i32, nState : i32,';
const dimUniforms = (d: Dims): Uniform[] => [d.L, lanes(d), d.H, d.P, d.G, d.N].map((v) => ({ type: 'int32', data: [v] }));

/** WGSL shared by the lane programs: the lane's offsets and strides, and A's lookup. */
function laneSnippet(d: Dims, withA: boolean): string {
  const aAt = `
    fn aAt(head : i32, n : i32) -> f32 {
      return ${d.scalarA ? 'A[head]' : 'A[head * STATE_N + n]'};
    }`;
  return `
    const STATE_N : i32 = ${d.N};
    struct Lane { uOff : i32, uS : i32, dOff : i32, dS : i32, bOff : i32, bS : i32, head : i32 };
    fn laneOf(r : i32) -> Lane {
      let L = uniforms.seqLen;
      let H = uniforms.heads;
      let P = uniforms.headDim;
      let G = uniforms.groups;
      let HP = H * P;
      let b = r / HP;
      let hp = r - b * HP;
      let h = hp / P;
      let g = h / (H / G);
      return Lane(b * L * HP + hp, HP, b * L * H + h, H, b * L * G * STATE_N + g * STATE_N, G * STATE_N, h);
    }${withA ? aAt : ''}`;
}

function run(program: Program, inputs: tf.Tensor[], uniforms: Uniform[]): tf.Tensor {
  const backend = tf.backend() as unknown as WebGPUBackendLike;
  // Dawn only logs an oversized binding and the program then computes nothing: refuse up front.
  const limit = backend.device.limits.maxStorageBufferBindingSize;
  const sizes = [program.outputShape, ...inputs.map((t) => t.shape)].map((s) => 4 * s.reduce((a, b) => a * b, 1));
  const largest = Math.max(...sizes);
  if (largest > limit || Math.max(...sizes.map((b) => b / 4)) >= 2 ** 31) {
    throw new Error(`${program.shaderKey}: a ${(largest / 2 ** 20).toFixed(0)} MiB buffer exceeds this WebGPU device's ${(limit / 2 ** 20).toFixed(0)} MiB storage-binding limit; use a smaller batch or sequence length`);
  }
  const info = backend.runWebGPUProgram(program, inputs, 'float32', uniforms);
  return tf.engine().makeTensorFromTensorInfo(info);
}

function laneProgram(kind: string, d: Dims, variableNames: string[], outputShape: number[], rows: number, uniforms: string, body: string): Program {
  return {
    variableNames,
    outputShape,
    shaderKey: `mimetic_scan_${kind}_${d.scalarA ? 'ssd' : 'm1'}_${d.N}`,
    dispatchLayout: { x: [0] },
    dispatch: [Math.ceil(rows / WORKGROUP), 1, 1],
    workgroupSize: [WORKGROUP, 1, 1],
    uniforms,
    size: false,
    getUserCode: () => `${laneSnippet(d, variableNames.includes('A'))}\n${body}`,
  };
}

// Forward: y only (inference runs this alone).
function forwardProgram(d: Dims, outputShape: number[]): Program {
  return laneProgram('fwd', d, ['U', 'Delta', 'A', 'B', 'C', 'Dskip'], outputShape, lanes(d), DIM_UNIFORMS, `
    fn main(index : i32) {
      if (index >= uniforms.rows) { return; }
      let ln = laneOf(index);
      var h : array<f32, STATE_N>;
      for (var n = 0; n < STATE_N; n = n + 1) { h[n] = 0.0; }
      let Dd = Dskip[ln.head];
      for (var t = 0; t < uniforms.seqLen; t = t + 1) {
        let ui = ln.uOff + t * ln.uS;
        let ut = U[ui];
        let dt = Delta[ln.dOff + t * ln.dS];
        let bo = ln.bOff + t * ln.bS;
        let dtu = dt * ut;
        ${d.scalarA ? 'let decay = exp(dt * aAt(ln.head, 0));' : ''}
        var acc = 0.0;
        for (var n = 0; n < STATE_N; n = n + 1) {
          ${d.scalarA ? '' : 'let decay = exp(dt * aAt(ln.head, n));'}
          let hn = decay * h[n] + dtu * B[bo + n];
          h[n] = hn;
          acc = acc + C[bo + n] * hn;
        }
        setOutputAtIndex(ui, acc + Dd * ut);
      }
    }`);
}

// Backward per lane: states forward, then the reverse recurrence; see packLayout for the output.
function backwardProgram(d: Dims): Program {
  const p = packLayout(d);
  const uniforms = `${DIM_UNIFORMS} offGH : i32, offDu : i32, offDDelta : i32, offDA : i32, offDD : i32,`;
  return laneProgram('bwd', d, ['U', 'Delta', 'A', 'B', 'C', 'Dskip', 'Dy'], [p.total], lanes(d), uniforms, `
    fn main(index : i32) {
      if (index >= uniforms.rows) { return; }
      let r = index;
      let ln = laneOf(r);
      let L = uniforms.seqLen;
      var h : array<f32, STATE_N>;
      for (var n = 0; n < STATE_N; n = n + 1) { h[n] = 0.0; }
      for (var t = 0; t < L; t = t + 1) {
        let ui = ln.uOff + t * ln.uS;
        let ut = U[ui];
        let dt = Delta[ln.dOff + t * ln.dS];
        let bo = ln.bOff + t * ln.bS;
        for (var n = 0; n < STATE_N; n = n + 1) {
          let hn = exp(dt * aAt(ln.head, n)) * h[n] + dt * ut * B[bo + n];
          h[n] = hn;
          setOutputAtIndex(ui * STATE_N + n, hn);
        }
      }
      var gh : array<f32, STATE_N>;
      var gA : array<f32, STATE_N>;
      for (var n = 0; n < STATE_N; n = n + 1) { gh[n] = 0.0; gA[n] = 0.0; }
      let Dd = Dskip[ln.head];
      var gD = 0.0;
      for (var t = L - 1; t >= 0; t = t - 1) {
        let ui = ln.uOff + t * ln.uS;
        let ut = U[ui];
        let dt = Delta[ln.dOff + t * ln.dS];
        let gyt = Dy[ui];
        let bo = ln.bOff + t * ln.bS;
        gD = gD + gyt * ut;
        var gu = gyt * Dd;
        var gdt = 0.0;
        for (var n = 0; n < STATE_N; n = n + 1) {
          let An = aAt(ln.head, n);
          var hPrev = 0.0;
          if (t > 0) { hPrev = result[(ui - ln.uS) * STATE_N + n]; }
          let gn = gh[n] + gyt * C[bo + n];
          setOutputAtIndex(uniforms.offGH + ui * STATE_N + n, gn);
          let decay = exp(dt * An);
          let gdA = gn * hPrev * decay;
          gA[n] = gA[n] + gdA * dt;
          let Bn = B[bo + n];
          gdt = gdt + gdA * An + gn * Bn * ut;
          gu = gu + gn * dt * Bn;
          gh[n] = gn * decay;
        }
        setOutputAtIndex(uniforms.offDu + ui, gu);
        setOutputAtIndex(uniforms.offDDelta + ui, gdt);
      }
      for (var n = 0; n < STATE_N; n = n + 1) { setOutputAtIndex(uniforms.offDA + r * STATE_N + n, gA[n]); }
      setOutputAtIndex(uniforms.offDD + r, gD);
    }`);
}

// dB and dC: one thread per (which, batch, t, group, state), summing over the group's lanes.
function bcProgram(d: Dims): Program {
  const count = 2 * d.batch * d.L * d.G * d.N;
  const uniforms = `${DIM_UNIFORMS} offGH : i32,`;
  const prog = laneProgram('bc', d, ['Pk', 'Dy', 'Delta', 'U'], [count], count, uniforms, `
    fn main(index : i32) {
      let L = uniforms.seqLen;
      let H = uniforms.heads;
      let P = uniforms.headDim;
      let G = uniforms.groups;
      let per = uniforms.rows / (H * P) * L * G * STATE_N;
      if (index >= 2 * per) { return; }
      let which = index / per;
      var rem = index - which * per;
      let n = rem % STATE_N;
      rem = rem / STATE_N;
      let g = rem % G;
      rem = rem / G;
      let t = rem % L;
      let b = rem / L;
      let hpg = H / G;
      var acc = 0.0;
      for (var h = g * hpg; h < (g + 1) * hpg; h = h + 1) {
        let di = (b * L + t) * H + h;
        for (var p = 0; p < P; p = p + 1) {
          let ui = ((b * L + t) * H + h) * P + p;
          let si = ui * STATE_N + n;
          if (which == 0) {
            acc = acc + Pk[uniforms.offGH + si] * Delta[di] * U[ui];
          } else {
            acc = acc + Dy[ui] * Pk[si];
          }
        }
      }
      setOutputAtIndex(index, acc);
    }`);
  return prog;
}

/** The scan on the current (webgpu) backend, differentiable in every input. */
function scan(d: Dims, ins: tf.Tensor[], outShape: number[]): tf.Tensor {
  const f = tf.customGrad((...args: (tf.Tensor | ((ts: tf.Tensor[]) => void))[]) => {
    const xs = (args.slice(0, 6) as tf.Tensor[]).map((t) => (t.dtype === 'float32' ? t : t.toFloat()));
    const save = args[6] as (ts: tf.Tensor[]) => void;
    save(xs);
    const y = run(forwardProgram(d, outShape), xs, dimUniforms(d));
    return {
      value: y,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => backward(d, saved, dy as tf.Tensor, outShape),
    };
  });
  return f(...ins);
}

function backward(d: Dims, saved: tf.Tensor[], dy: tf.Tensor, outShape: number[]): tf.Tensor[] {
  const [u, delta, A, B, C, Dskip] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
  const p = packLayout(d);
  const R = lanes(d);
  const { batch, L, H, P, G, N } = d;
  return tf.tidy(() => {
    const gy = dy.dtype === 'float32' ? dy : dy.toFloat();
    const pk = run(backwardProgram(d), [u, delta, A, B, C, Dskip, gy], [...dimUniforms(d), ...[p.gH, p.du, p.dDelta, p.dA, p.dD].map((v): Uniform => ({ type: 'int32', data: [v] }))]);
    const bc = run(bcProgram(d), [pk, gy, delta, u], [...dimUniforms(d), { type: 'int32', data: [p.gH] }]);
    const half = batch * L * G * N;
    const bShape = B.shape;
    const dB = bc.slice(0, half).reshape(bShape);
    const dC = bc.slice(half, half).reshape(bShape);
    const du = pk.slice(p.du, R * L).reshape(outShape);
    const dDeltaLanes = pk.slice(p.dDelta, R * L);
    const dALanes = pk.slice(p.dA, R * N);
    const dDLanes = pk.slice(p.dD, R);
    let dDelta: tf.Tensor;
    let dA: tf.Tensor;
    let dD: tf.Tensor;
    if (d.scalarA) {
      dDelta = dDeltaLanes.reshape([batch, L, H, P]).sum(3);
      dA = dALanes.reshape([batch, H, P * N]).sum([0, 2]);
      dD = dDLanes.reshape([batch, H, P]).sum([0, 2]);
    } else {
      dDelta = dDeltaLanes.reshape(delta.shape);
      dA = dALanes.reshape([batch, H, N]).sum(0);
      dD = dDLanes.reshape([batch, H]).sum(0);
    }
    return [du, dDelta, dA, dB, dC, dD];
  });
}

function check(what: string, cond: boolean, detail: string): void {
  if (!cond) throw new Error(`${what}: inconsistent shapes (${detail})`);
}

export const selectiveScanWebGPU: SelectiveScanFn = (u, delta, A, B, C, Dskip) => {
  const [batch, L, D] = u.shape;
  const N = A.shape[1];
  check('selectiveScan', delta.shape.join() === u.shape.join() && A.shape[0] === D && B.shape.join() === [batch, L, N].join() && C.shape.join() === B.shape.join() && Dskip.shape[0] === D,
    `u ${u.shape} delta ${delta.shape} A ${A.shape} B ${B.shape} C ${C.shape} D ${Dskip.shape}`);
  return scan({ batch, L, H: D, P: 1, G: 1, N, scalarA: false }, [u, delta, A, B, C, Dskip], [batch, L, D]) as tf.Tensor3D;
};

export const ssdScanWebGPU: SsdScanFn = (x, delta, A, B, C, Dskip) => {
  const [batch, L, H, P] = x.shape;
  const G = B.shape[2];
  const N = B.shape[3];
  check('ssdScan', delta.shape.join() === [batch, L, H].join() && A.shape[0] === H && B.shape.join() === [batch, L, G, N].join() && C.shape.join() === B.shape.join() && Dskip.shape[0] === H && H % G === 0,
    `x ${x.shape} delta ${delta.shape} A ${A.shape} B ${B.shape} C ${C.shape} D ${Dskip.shape}`);
  return scan({ batch, L, H, P, G, N, scalarA: true }, [x, delta, A, B, C, Dskip], [batch, L, H, P]) as tf.Tensor4D;
};

registerScanKernels(['webgpu'], { selectiveScan: selectiveScanWebGPU, ssdScan: ssdScanWebGPU });
