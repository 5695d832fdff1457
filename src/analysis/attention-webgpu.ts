/**
 * The per-layer implicit-attention summaries (analysis/attention.ts: mean α, mean decay, C_t · B_s)
 * as one WGSL program on the WebGPU backend: one thread per (batch, t, s) pair sums over every
 * channel (Mamba-1: and state) in registers, so no [B, channels, L, L] block is materialised and
 * the whole layer is 3 dispatches (prefix sums, the pairs, the split) instead of the ~1000 tf ops
 * of the blocked tf computation. The decay uses prefix sums S of Δ: exp(A · (S_t − S_s)), every
 * exponent ≤ 0, as the other implementations do.
 */
import * as tf from '@tensorflow/tfjs';
import { flatProgram, runProgram } from '../model/kernels/fused-webgpu.js';

export interface AttentionMapsTf {
  attention: tf.Tensor3D;
  decay: tf.Tensor3D;
  qk: tf.Tensor3D;
}

/**
 * Mamba-1: delta [B, L, Din], A [Din, N], B/C [B, L, N]. Mamba-2: delta [B, L, H], A [H],
 * B/C [B, L, G, N]. Returns the three [B, L, L] maps, zero above the diagonal.
 */
export function attentionSummariesWebGPU(kind: 'mamba1' | 'mamba2', delta: tf.Tensor, A: tf.Tensor, B: tf.Tensor, C: tf.Tensor): AttentionMapsTf {
  const [Bsz, L, ch] = delta.shape as [number, number, number];
  const m2 = kind === 'mamba2';
  const N = m2 ? B.shape[3]! : A.shape[1]!;
  const G = m2 ? B.shape[2]! : 1;
  const pairs = Bsz * L * L;
  const body = m2
    ? `
        var qsum = 0.0;
        let rep = uniforms.chans / ${G};
        for (var g = 0; g < ${G}; g = g + 1) {
          var q = 0.0;
          let ct = ((bt) * ${G} + g) * ${N};
          let bs = ((bs0) * ${G} + g) * ${N};
          for (var n = 0; n < ${N}; n = n + 1) { q = q + C[ct + n] * Bm[bs + n]; }
          qsum = qsum + q;
          for (var j = 0; j < rep; j = j + 1) {
            let h = g * rep + j;
            let e = exp(A[h] * (S[to + h] - S[so + h]));
            dec = dec + e;
            att = att + q * e * Dl[so + h];
          }
        }
        att = att / f32(uniforms.chans);
        dec = dec / f32(uniforms.chans);
        let qk = qsum / ${G}.0;`
    : `
        var cb : array<f32, ${N}>;
        var qk = 0.0;
        for (var n = 0; n < ${N}; n = n + 1) {
          cb[n] = C[bt * ${N} + n] * Bm[bs0 * ${N} + n];
          qk = qk + cb[n];
        }
        for (var d = 0; d < uniforms.chans; d = d + 1) {
          let seg = S[to + d] - S[so + d];
          var a = 0.0;
          for (var n = 0; n < ${N}; n = n + 1) {
            let e = exp(A[d * ${N} + n] * seg);
            a = a + cb[n] * e;
            dec = dec + e;
          }
          att = att + a * Dl[so + d];
        }
        att = att / f32(uniforms.chans);
        dec = dec / f32(uniforms.chans * ${N});`;
  const program = flatProgram(`mimetic_attnmaps_${kind}_${N}_${G}`, ['S', 'Dl', 'A', 'Bm', 'C'], [3, Bsz, L, L], pairs, 'seqLen : i32, chans : i32,', `
        let L = uniforms.seqLen;
        let s = index % L;
        let bt = index / L;          // b * L + t
        let t = bt % L;
        let bs0 = bt - t + s;        // b * L + s
        if (s > t) {
          setOutputAtIndex(index, 0.0);
          setOutputAtIndex(index + uniforms.total, 0.0);
          setOutputAtIndex(index + 2 * uniforms.total, 0.0);
          return;
        }
        let to = bt * uniforms.chans;
        let so = bs0 * uniforms.chans;
        var att = 0.0;
        var dec = 0.0;
        ${body}
        setOutputAtIndex(index, att);
        setOutputAtIndex(index + uniforms.total, dec);
        setOutputAtIndex(index + 2 * uniforms.total, qk);`);
  return tf.tidy(() => {
    const S = tf.cumsum(delta, 1);
    const u = [pairs, L, ch].map((v) => ({ type: 'int32' as const, data: [v] }));
    const out = runProgram(program, [S, delta, A, B, C], u);
    const [a, d, q] = tf.split(out, 3, 0).map((t) => t.reshape([Bsz, L, L]) as tf.Tensor3D);
    return { attention: a!, decay: d!, qk: q! };
  });
}
