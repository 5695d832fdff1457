/**
 * The chunked SSD (state-space duality) form of the Mamba-2 selective scan, forward and backward
 * (Dao & Gu 2024; mamba_ssm's ssd_combined), for the compiled step (step.ts, --scan-form ssd).
 * Per batch b, head h (group g = h / (H/G)) and chunk of CL steps, with a_t = Δ_t·A and
 * xd_s = Δ_s·x_s, the recurrence s_t = exp(a_t) s_{t−1} + Δ_t B_t x_t, y_t = C_t·s_t + D x_t is
 *   y_t = Σ_{s≤t} exp(a_{s+1} + … + a_t) (C_t·B_s) xd_s + exp(a_{t0} + … + a_t) C_tᵀ h_c + D x_t,
 *   S_c = Σ_s exp(a_{s+1} + … + a_end) B_s xd_sᵀ,  h_{c+1} = exp(a_{t0} + … + a_end) h_c + S_c,
 * so the per-step state (N×P per head) is only ever formed at chunk starts. Exponents are sums of a
 * over the steps between, summed in loops rather than as differences of cumulative sums (no
 * cancellation when the decay is large). The kernels whose work is a product per (b, chunk, head or
 * group) — LM, dB / dC, dx, y — are workgroup-tiled: rows staged in workgroup memory KK at a time with
 * loads along memory rows, a 4×4 register tile per thread, the decays of a tile from one walk per row
 * or column (the untiled kernels' sums, in their order). The rest are elementwise grids with small
 * register tiles. The tiling is not yet measured on a GPU (only on lavapipe).
 *
 * Scratch in S (offsets from ssdScratch): CB [b, g, chunk, i, j] = C_i·B_j; DEC [b, h, chunk] the
 * chunk's Σ a; HS [b, chunk, h, n, p] the state at each chunk start; DS the gradient of S_c (= of
 * h_{c+1}); LM [b, h, chunk, i, j] = exp(a_{j+1..i}) Σ_p dy_i xd_j, LMG its sum over a group's heads;
 * CUM, REST [b, h, step] = a_{t0..t}, a_{t+1..end} within the chunk; R1, R2 [t, q] per-lane terms
 * of the exponents' gradients; DAC [b, h, chunk] the chunk's dA.
 */
import { wgslReduce } from '../../model/kernels/webgpu-program.js';
import type { Kernel } from './engine.js';
import { ENTRY, LINEAR, SCAN_FIELDS, aOf } from './kernels.js';

/** Default steps per SSD chunk (as mamba_ssm's kernels use on the GPU). */
export const DEFAULT_SSD_CHUNK = 64;
/** Longest chunk: the dcum kernel gives one thread of a 256-thread workgroup to each step. */
export const MAX_SSD_CHUNK = 256;

/** Uniforms shared by every SSD kernel (SCAN_FIELDS, then the SSD's shape and regions). */
export const SSD_FIELDS = [...SCAN_FIELDS, 'n', 'B', 'H', 'G', 'N', 'CL', 'nC', 'rev', 'passOff',
  'cbOff', 'decOff', 'hsOff', 'dsOff', 'lmOff', 'lmgOff', 'cumOff', 'restOff', 'r1Off', 'r2Off', 'dacOff',
  'yOff', 'dyOff', 'duOff', 'duRs', 'dbcOff', 'dbcRs', 'dbCol', 'dcCol', 'ddOff', 'aPartOff', 'dPartOff'];

/** Region offsets in S and the f32s they need, for B sequences of L steps. */
export function ssdScratch(d: { B: number; L: number; H: number; G: number; N: number; P: number; CL: number }): { offs: Record<string, number>; total: number; nC: number } {
  const nC = Math.ceil(d.L / d.CL);
  const sizes: [string, number][] = [
    ['cbOff', d.B * d.G * nC * d.CL * d.CL], ['decOff', d.B * d.H * nC], ['hsOff', d.B * nC * d.H * d.N * d.P], ['dsOff', d.B * nC * d.H * d.N * d.P],
    ['lmOff', d.B * d.H * nC * d.CL * d.CL], ['lmgOff', d.B * d.G * nC * d.CL * d.CL], ['cumOff', d.B * d.H * d.L], ['restOff', d.B * d.H * d.L], ['r1Off', d.B * d.L * d.H * d.P], ['r2Off', d.B * d.L * d.H * d.P], ['dacOff', d.B * d.H * nC],
  ];
  const offs: Record<string, number> = {};
  let top = 0;
  for (const [k, n] of sizes) { offs[k] = top; top += Math.ceil(n / 4) * 4; }
  return { offs, total: top, nC };
}

/** Index helpers and input reads (x, Δ, a, B, C, dy) of every SSD kernel. */
const PRE = `${aOf(0, true)}
  fn xAt(t : u32, q : u32) -> f32 { return X[u.xOff + t * u.xRs + q]; }
  fn dlAt(t : u32, h : u32) -> f32 { return X[u.dOff + t * u.dRs + h]; }
  fn aAt(t : u32, h : u32, A : f32) -> f32 { return dlAt(t, h) * A; }
  fn bAt(t : u32, g : u32, n : u32) -> f32 { return X[u.bcOff + t * u.bcRs + g * u.N + n]; }
  fn cAt(t : u32, g : u32, n : u32) -> f32 { return X[u.bcOff + t * u.bcRs + u.cCol + g * u.N + n]; }
  fn dyAt(t : u32, q : u32) -> f32 { return X[u.dyOff + t * u.Q + q]; }
  fn cEnd(c : u32) -> u32 { return min(u.L, (c + 1u) * u.CL); }
  fn st(b : u32, c : u32, h : u32, n : u32, p : u32) -> u32 { return (((b * u.nC + c) * u.H + h) * u.N + n) * u.P + p; }
  fn cbi(b : u32, g : u32, c : u32, i : u32, j : u32) -> u32 { return (((b * u.G + g) * u.nC + c) * u.CL + i) * u.CL + j; }
  fn lmi(b : u32, h : u32, c : u32, i : u32, j : u32) -> u32 { return (((b * u.H + h) * u.nC + c) * u.CL + i) * u.CL + j; }
  fn hci(b : u32, h : u32, c : u32) -> u32 { return (b * u.H + h) * u.nC + c; }
  fn bht(b : u32, h : u32, tl : u32) -> u32 { return (b * u.H + h) * u.L + tl; }`;

const kernel = (key: string, body: string): Kernel => ({ key, bufs: ['P', 'X', 'S'], fields: SSD_FIELDS, body: `${PRE}\n${body}` });

/** Steps, states or lanes of a contraction staged in workgroup memory per round by the tiled kernels. */
const KK = 16;

/** A tile edge of 16, 32 or 64 steps / states / lanes, the smallest of them covering d, at most max. */
export const edgeOf = (d: number, max: number) => Math.min(max, d > 32 ? 64 : d > 16 ? 32 : 16);

/**
 * The tiled kernels' staging: sT0 (sT1) [KK][BT] (the row side) and sN0 (sN1) [KK][BN] (the column side),
 * one pair or two, at most 16 KB in all; a thread holds 4×4 outputs at rows ty + m·BT/4, columns tx + n·BN/4, so
 * neighbouring threads read neighbouring columns of sN and write neighbouring columns out.
 */
const stage = (BT: number, BN: number, pairs = 2) => `var<workgroup> sT0 : array<f32, ${KK * BT}>;
  var<workgroup> sN0 : array<f32, ${KK * BN}>;${pairs === 2 ? `
  var<workgroup> sT1 : array<f32, ${KK * BT}>;
  var<workgroup> sN1 : array<f32, ${KK * BN}>;` : ''}`;

/** One staged round of products: for each [acc, sT, sN], acc[m·4 + n] += Σ_k sT[k][row m] sN[k][column n]. */
const round = (BT: number, BN: number, prods: [string, string, string][]) => `for (var k = 0u; k < ${KK}u; k = k + 1u) {
      for (var m = 0u; m < 4u; m = m + 1u) {
        ${prods.map(([, t], i) => `let v${i} = ${t}[k * ${BT}u + ty + m * ${BT / 4}u];`).join(' ')}
        for (var n = 0u; n < 4u; n = n + 1u) {
          let o = k * ${BN}u + tx + n * ${BN / 4}u;
          ${prods.map(([a, , nn], i) => `${a}[m * 4u + n] = ${a}[m * 4u + n] + v${i} * ${nn}[o];`).join(' ')}
        }
      }
    }`;

/** The tile of a (b, c, h) workgroup: BT steps from r0 of chunk c (len steps from t0, bt = its first row) × BP lanes from p0 of head h. */
const headTile = (BT: number, BP: number) => `let wg = w.x + w.y * nw.x;
    if (wg >= u.n) { return; }
    let nTB = (u.CL + ${BT - 1}u) / ${BT}u; let nPB = (u.P + ${BP - 1}u) / ${BP}u;
    let pb = wg % nPB; var r = wg / nPB; let tb = r % nTB; r = r / nTB;
    let h = r % u.H; r = r / u.H; let c = r % u.nC; let b = r / u.nC;
    let g = h / u.HG; let A = aOf(h, 0u);
    let t0 = c * u.CL; let len = cEnd(c) - t0; let r0 = tb * ${BT}u; let p0 = pb * ${BP}u; let bt = b * u.L + t0;
    let tx = li % ${BP / 4}u; let ty = li / ${BP / 4}u;
    var acc0 : array<f32, 16>;
    var acc1 : array<f32, 16>;
    var acc2 : array<f32, 16>;
    for (var k = 0u; k < 16u; k = k + 1u) { acc0[k] = 0.0; acc1[k] = 0.0; acc2[k] = 0.0; }`;

/**
 * The inter-chunk products of a head tile over the states, n0 in rounds of KK: acc1 = Σ_n C_t[n] h_c[n, p]
 * and (withB) acc0 = Σ_n B_t[n] dS_c[n, p] (CL×N by N×P per (b, c, h)).
 */
const interOverN = (BT: number, BP: number, withB: boolean) => `for (var n0 = 0u; n0 < u.N; n0 = n0 + ${KK}u) {
      for (var e = li; e < ${KK * BT}u; e = e + ${(BT / 4) * (BP / 4)}u) {
        let k = e % ${KK}u; let row = e / ${KK}u;
        var vb = 0.0; var vc = 0.0;
        if (r0 + row < len && n0 + k < u.N) { ${withB ? 'vb = bAt(bt + r0 + row, g, n0 + k); ' : ''}vc = cAt(bt + r0 + row, g, n0 + k); }
        sT0[k * ${BT}u + row] = vb; sT1[k * ${BT}u + row] = vc;
      }
      for (var e = li; e < ${KK * BP}u; e = e + ${(BT / 4) * (BP / 4)}u) {
        let col = e % ${BP}u; let k = e / ${BP}u;
        var vs = 0.0; var vh = 0.0;
        if (n0 + k < u.N && p0 + col < u.P) { let o = st(b, c, h, n0 + k, p0 + col); ${withB ? 'vs = S[u.dsOff + o]; ' : ''}vh = S[u.hsOff + o]; }
        sN0[k * ${BP}u + col] = vs; sN1[k * ${BP}u + col] = vh;
      }
      workgroupBarrier();
      ${round(BT, BP, withB ? [['acc0', 'sT0', 'sN0'], ['acc1', 'sT1', 'sN1']] : [['acc1', 'sT1', 'sN1']])}
      workgroupBarrier();
    }`;

/** sN0[k][col] = the head's lane p0 + col of v at step k0 + k of the chunk (0 outside). */
const laneRows = (BT: number, BP: number, v: string) => `for (var e = li; e < ${KK * BP}u; e = e + ${(BT / 4) * (BP / 4)}u) {
        let col = e % ${BP}u; let k = e / ${BP}u;
        var v = 0.0;
        if (k0 + k < len && p0 + col < u.P) { v = ${v}(bt + k0 + k, h * u.P + p0 + col); }
        sN0[k * ${BP}u + col] = v;
      }`;

/**
 * CB[b, g, c, i, j] = C_{t0+i}·B_{t0+j} for j ≤ i within the chunk, else 0: a product per (b, g, c)
 * (CL×N by N×CL), one workgroup per BI×BI tile of (i, j), C and B rows staged KK states a round.
 */
export function ssdCB(BI: number): Kernel {
  const WG = (BI / 4) * (BI / 4);
  return kernel(`ssdCB${BI}`, `${stage(BI, BI, 1)}
  ${ENTRY(WG)} {
    let wg = w.x + w.y * nw.x;
    if (wg >= u.n) { return; }
    let nTB = (u.CL + ${BI - 1}u) / ${BI}u;
    let jb = wg % nTB; var r = wg / nTB; let ib = r % nTB; r = r / nTB;
    let c = r % u.nC; r = r / u.nC; let g = r % u.G; let b = r / u.G;
    let t0 = c * u.CL; let len = cEnd(c) - t0; let i0 = ib * ${BI}u; let j0 = jb * ${BI}u; let bt = b * u.L + t0;
    let tx = li % ${BI / 4}u; let ty = li / ${BI / 4}u;
    var acc0 : array<f32, 16>;
    for (var k = 0u; k < 16u; k = k + 1u) { acc0[k] = 0.0; }
    if (jb <= ib) {
      for (var n0 = 0u; n0 < u.N; n0 = n0 + ${KK}u) {
        for (var e = li; e < ${KK * BI}u; e = e + ${WG}u) {
          let k = e % ${KK}u; let row = e / ${KK}u;
          var vc = 0.0; var vb = 0.0;
          if (n0 + k < u.N) {
            if (i0 + row < len) { vc = cAt(bt + i0 + row, g, n0 + k); }
            if (j0 + row < len) { vb = bAt(bt + j0 + row, g, n0 + k); }
          }
          sT0[k * ${BI}u + row] = vc; sN0[k * ${BI}u + row] = vb;
        }
        workgroupBarrier();
        ${round(BI, BI, [['acc0', 'sT0', 'sN0']])}
        workgroupBarrier();
      }
    }
    for (var m = 0u; m < 4u; m = m + 1u) {
      for (var n = 0u; n < 4u; n = n + 1u) {
        let ii = i0 + ty + m * ${BI / 4}u; let j = j0 + tx + n * ${BI / 4}u;
        if (ii < u.CL && j < u.CL) {
          var v = 0.0;
          if (j <= ii && ii < len) { v = acc0[m * 4u + n]; }
          S[u.cbOff + cbi(b, g, c, ii, j)] = v;
        }
      }
    }
  }`);
}

/**
 * A chunk's outer-product sum Σ_s w_s u_s[n] v_s[p] as a product per (b, c, h) (N×CL by CL×P), one
 * workgroup per BN states × BP lanes, KK steps a round; w_s (one thread's walk over the chunk's Δ, staged
 * in sW by all threads first, so that the serial walk reads no global memory) and the rows u (B or C, read along n) and v (x or dy, read along p) staged. fwd: the forward's
 * S_c (w_s = exp(a_{s+1..end}) Δ_s, walked downward; the (0, 0) tile's walker also writes REST, DEC
 * and CUM) into HS; else U_c (w_s = exp(a_{t0..s}), walked upward) into DS.
 */
function chunkOuter(BN: number, BP: number, fwd: boolean): Kernel {
  const WG = (BN / 4) * (BP / 4);
  // sW holds Δ_s (loaded by all threads) until the walk replaces it by w_s.
  const walk = fwd
    ? `var seg = 0.0;
      for (var s = len; s > 0u; s = s - 1u) {
        let dl = sW[s - 1u];
        sW[s - 1u] = exp(seg) * dl;
        if (one) { S[u.restOff + bht(b, h, t0 + s - 1u)] = seg; }
        seg = seg + dl * A;
      }
      if (one) {
        S[u.decOff + hci(b, h, c)] = seg;
        var cum = 0.0;
        for (var s = 0u; s < len; s = s + 1u) { cum = cum + aAt(bt + s, h, A); S[u.cumOff + bht(b, h, t0 + s)] = cum; }
      }`
    : `var seg = 0.0;
      for (var s = 0u; s < len; s = s + 1u) { seg = seg + sW[s] * A; sW[s] = exp(seg); }`;
  return kernel(`${fwd ? 'ssdStates' : 'ssdDLocal'}${BN}x${BP}`, `${stage(BN, BP, 1)}
  var<workgroup> sW : array<f32, ${MAX_SSD_CHUNK}>;
  ${ENTRY(WG)} {
    let wg = w.x + w.y * nw.x;
    if (wg >= u.n) { return; }
    let nNB = (u.N + ${BN - 1}u) / ${BN}u; let nPB = (u.P + ${BP - 1}u) / ${BP}u;
    let pb = wg % nPB; var r = wg / nPB; let nb = r % nNB; r = r / nNB;
    let h = r % u.H; r = r / u.H; let c = r % u.nC; let b = r / u.nC;
    let g = h / u.HG; let A = aOf(h, 0u);
    let t0 = c * u.CL; let len = cEnd(c) - t0; let n0 = nb * ${BN}u; let p0 = pb * ${BP}u; let bt = b * u.L + t0;
    let tx = li % ${BP / 4}u; let ty = li / ${BP / 4}u;
    let one = nb == 0u && pb == 0u;
    for (var s = li; s < len; s = s + ${WG}u) { sW[s] = dlAt(bt + s, h); }
    workgroupBarrier();
    if (li == 0u) {
      ${walk}
    }
    workgroupBarrier();
    var acc0 : array<f32, 16>;
    for (var k = 0u; k < 16u; k = k + 1u) { acc0[k] = 0.0; }
    for (var k0 = 0u; k0 < len; k0 = k0 + ${KK}u) {
      for (var e = li; e < ${KK * BN}u; e = e + ${WG}u) {
        let row = e % ${BN}u; let k = e / ${BN}u;
        var v = 0.0;
        if (k0 + k < len && n0 + row < u.N) { v = sW[k0 + k] * ${fwd ? 'bAt' : 'cAt'}(bt + k0 + k, g, n0 + row); }
        sT0[k * ${BN}u + row] = v;
      }
      for (var e = li; e < ${KK * BP}u; e = e + ${WG}u) {
        let col = e % ${BP}u; let k = e / ${BP}u;
        var v = 0.0;
        if (k0 + k < len && p0 + col < u.P) { v = ${fwd ? 'xAt' : 'dyAt'}(bt + k0 + k, h * u.P + p0 + col); }
        sN0[k * ${BP}u + col] = v;
      }
      workgroupBarrier();
      ${round(BN, BP, [['acc0', 'sT0', 'sN0']])}
      workgroupBarrier();
    }
    for (var m = 0u; m < 4u; m = m + 1u) {
      for (var n = 0u; n < 4u; n = n + 1u) {
        let nn = n0 + ty + m * ${BN / 4}u; let p = p0 + tx + n * ${BP / 4}u;
        if (nn < u.N && p < u.P) { S[${fwd ? 'u.hsOff' : 'u.dsOff'} + st(b, c, h, nn, p)] = acc0[m * 4u + n]; }
      }
    }
  }`);
}

/** S_c[n, p] = Σ_s exp(a_{s+1..end}) Δ_s B_s[n] x_s[p] into HS; the chunk's Σ a into DEC, its exponents into CUM and REST. */
export const ssdStates = (BN: number, BP: number) => chunkOuter(BN, BP, true);

/**
 * The pass over chunks, elementwise over (b, h, n, p), in place at passOff. Forward (rev 0): S_c →
 * h_c, h_{c+1} = exp(Σa_c) h_c + S_c. Backward (rev 1): U_c → dS_c = dh_{c+1}, dh_c = exp(Σa_c) dh_{c+1} + U_c.
 * The chain is serial in c, so each round first loads 4 chunks' values and decays (independent loads,
 * in flight together; a store between them would order them), then writes; one division by N·P
 * finds the lane (a state's chunks lie H·N·P apart, at st's layout).
 */
export const ssdPass = kernel('ssdPass', `${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    let NP = u.N * u.P; let bh = i / NP; let h = bh % u.H; let b = bh / u.H;
    let o0 = u.passOff + (b * u.nC * u.H + h) * NP + (i - bh * NP); let cs = u.H * NP;
    var v = 0.0;
    for (var k0 = 0u; k0 < u.nC; k0 = k0 + 4u) {
      var sv : array<f32, 4>;
      var dv : array<f32, 4>;
      let m1 = min(4u, u.nC - k0);
      for (var m = 0u; m < m1; m = m + 1u) {
        var c = k0 + m;
        if (u.rev == 1u) { c = u.nC - 1u - c; }
        sv[m] = S[o0 + c * cs]; dv[m] = S[u.decOff + bh * u.nC + c];
      }
      for (var m = 0u; m < m1; m = m + 1u) {
        var c = k0 + m;
        if (u.rev == 1u) { c = u.nC - 1u - c; }
        S[o0 + c * cs] = v;
        v = exp(dv[m]) * v + sv[m];
      }
    }
  }`);

/**
 * y[t, p] = Σ_{s≤t} exp(a_{s+1..t}) CB[t, s] Δ_s x_s[p] + exp(a_{t0..t}) Σ_n C_t[n] h_c[n, p] + D x_t[p], per
 * workgroup a tile of BT steps × BP lanes of a head. The intra weights are staged per round by one walker
 * thread per row, s downward from the tile's last row: its running exponent is the sum a_{s+1} + … + a_t
 * in the untiled order (and ends at a_{t0..t}, the inter factor).
 */
export function ssdOut(BT: number, BP: number): Kernel {
  return kernel(`ssdOut${BT}x${BP}`, `${stage(BT, BP)}
  var<workgroup> sEnd : array<f32, ${BT}>;
  ${ENTRY((BT / 4) * (BP / 4))} {
    ${headTile(BT, BP)}
    ${interOverN(BT, BP, false)}
    let tl = r0 + li;
    var seg = 0.0;
    let top = min(r0 + ${BT}u, len);
    for (var kr = (top + ${KK - 1}u) / ${KK}u; kr > 0u; kr = kr - 1u) {
      let k0 = (kr - 1u) * ${KK}u;
      if (li < ${BT}u) {
        for (var kk = ${KK}u; kk > 0u; kk = kk - 1u) {
          let s = k0 + kk - 1u;
          var wv = 0.0;
          if (tl < len && s <= tl) {
            let dl = dlAt(bt + s, h);
            wv = exp(seg) * S[u.cbOff + cbi(b, g, c, tl, s)] * dl;
            seg = seg + dl * A;
          }
          sT0[(kk - 1u) * ${BT}u + li] = wv;
        }
      }
      ${laneRows(BT, BP, 'xAt')}
      workgroupBarrier();
      ${round(BT, BP, [['acc2', 'sT0', 'sN0']])}
      workgroupBarrier();
    }
    if (li < ${BT}u) { sEnd[li] = exp(seg); }
    workgroupBarrier();
    let Dd = P[u.Doff + h];
    for (var m = 0u; m < 4u; m = m + 1u) {
      let row = ty + m * ${BT / 4}u;
      let e = sEnd[row];
      for (var n = 0u; n < 4u; n = n + 1u) {
        let col = p0 + tx + n * ${BP / 4}u;
        if (r0 + row < len && col < u.P) {
          let t = bt + r0 + row; let q = h * u.P + col;
          X[u.yOff + t * u.Q + q] = acc2[m * 4u + n] + e * acc1[m * 4u + n] + Dd * xAt(t, q);
        }
      }
    }
  }`);
}

/** U_c[n, p] = Σ_t exp(a_{t0..t}) C_t[n] dy_t[p] into DS: the chunk's own part of dh_c. */
export const ssdDLocal = (BN: number, BP: number) => chunkOuter(BN, BP, false);

/**
 * LM[b, h, c, i, j] = exp(a_{j+1..i}) Σ_p dy_i[p] xd_j[p] for j ≤ i, else 0; their sum over a group's
 * heads into LMG. One workgroup per (b, g, c, BI×BI tile of (i, j)), a 4×4 register tile per thread
 * (rows ty + 4k, columns tx + 4k: neighbouring threads write neighbouring j). Per head the dot over P
 * is a product of [BI × P] dy rows and x rows staged KK lanes at a time, and the decays come from one
 * walk per column j upward in i over the chunk's a (staged), the same sums in the same order as
 * a_{j+1} + … + a_i, so no differences of cumulative sums. Tiles above the diagonal are zeros.
 */
export function ssdLM(BI: number): Kernel {
  const R = BI / 4, WG = R * R;
  return kernel(`ssdLM${BI}`, `var<workgroup> sI : array<f32, ${KK * BI}>;
  var<workgroup> sJ : array<f32, ${KK * BI}>;
  var<workgroup> sE : array<f32, ${BI * BI}>;
  var<workgroup> sA : array<f32, ${MAX_SSD_CHUNK}>;
  ${ENTRY(WG)} {
    let wg = w.x + w.y * nw.x;
    if (wg >= u.n) { return; }
    let nTB = (u.CL + ${BI - 1}u) / ${BI}u;
    let jb = wg % nTB; var r = wg / nTB; let ib = r % nTB; r = r / nTB;
    let c = r % u.nC; r = r / u.nC; let g = r % u.G; let b = r / u.G;
    let t0 = c * u.CL; let len = cEnd(c) - t0; let i0 = ib * ${BI}u; let j0 = jb * ${BI}u;
    let tx = li % ${R}u; let ty = li / ${R}u;
    if (jb > ib) {
      for (var e = li; e < ${BI * BI}u; e = e + ${WG}u) {
        let ii = i0 + e / ${BI}u; let j = j0 + e % ${BI}u;
        if (ii < u.CL && j < u.CL) {
          for (var hh = 0u; hh < u.HG; hh = hh + 1u) { S[u.lmOff + lmi(b, g * u.HG + hh, c, ii, j)] = 0.0; }
          S[u.lmgOff + cbi(b, g, c, ii, j)] = 0.0;
        }
      }
      return;
    }
    var sum : array<f32, 16>;
    for (var k = 0u; k < 16u; k = k + 1u) { sum[k] = 0.0; }
    let aTop = min(i0 + ${BI}u, len);
    for (var hh = 0u; hh < u.HG; hh = hh + 1u) {
      let h = g * u.HG + hh; let A = aOf(h, 0u);
      for (var k = j0 + li; k < aTop; k = k + ${WG}u) { sA[k] = aAt(b * u.L + t0 + k, h, A); }
      workgroupBarrier();
      if (li < ${BI}u) {
        let j = j0 + li;
        var seg = 0.0;
        for (var k = j + 1u; k < min(i0, len); k = k + 1u) { seg = seg + sA[k]; }
        for (var m = 0u; m < ${BI}u; m = m + 1u) {
          let ii = i0 + m;
          var e = 0.0;
          if (ii >= j && ii < len) {
            if (ii > j) { seg = seg + sA[ii]; }
            e = exp(seg);
          }
          sE[m * ${BI}u + li] = e;
        }
      }
      var acc : array<f32, 16>;
      for (var k = 0u; k < 16u; k = k + 1u) { acc[k] = 0.0; }
      for (var p0 = 0u; p0 < u.P; p0 = p0 + ${KK}u) {
        for (var e = li; e < ${KK * BI}u; e = e + ${WG}u) {
          let k = e % ${KK}u; let row = e / ${KK}u; let q = h * u.P + p0 + k;
          var vi = 0.0; var vj = 0.0;
          if (p0 + k < u.P) {
            if (i0 + row < len) { vi = dyAt(b * u.L + t0 + i0 + row, q); }
            if (j0 + row < len) { vj = xAt(b * u.L + t0 + j0 + row, q); }
          }
          sI[k * ${BI}u + row] = vi; sJ[k * ${BI}u + row] = vj;
        }
        workgroupBarrier();
        ${round(BI, BI, [['acc', 'sI', 'sJ']])}
        workgroupBarrier();
      }
      for (var n = 0u; n < 4u; n = n + 1u) {
        let j = j0 + tx + n * ${R}u;
        var dl = 0.0;
        if (j < len) { dl = dlAt(b * u.L + t0 + j, h); }
        for (var m = 0u; m < 4u; m = m + 1u) {
          let ii = i0 + ty + m * ${R}u;
          if (ii < u.CL && j < u.CL) {
            let v = acc[m * 4u + n] * dl * sE[(ty + m * ${R}u) * ${BI}u + tx + n * ${R}u];
            S[u.lmOff + lmi(b, h, c, ii, j)] = v;
            sum[m * 4u + n] = sum[m * 4u + n] + v;
          }
        }
      }
      workgroupBarrier();
    }
    for (var m = 0u; m < 4u; m = m + 1u) {
      for (var n = 0u; n < 4u; n = n + 1u) {
        let ii = i0 + ty + m * ${R}u; let j = j0 + tx + n * ${R}u;
        if (ii < u.CL && j < u.CL) { S[u.lmgOff + cbi(b, g, c, ii, j)] = sum[m * 4u + n]; }
      }
    }
  }`);
}

/**
 * Per tile of BT steps s × BP lanes p of a head: dxd_s = Σ_{t≥s} exp(a_{s+1..t}) CB_ts dy_t + exp(a_{s+1..end}) Σ_n
 * B_s[n] dS_c[n, p]; dx (+ D·dy) into DU, the lane's dΔ part dxd·x into DD (=), and the lane terms
 * R1 = exp(a_{t0..s}) dy_s (C_sᵀ h_c) and R2 = xd_s exp(a_{s+1..end}) (B_sᵀ dS_c) of the exponents' gradient.
 * The intra weights are staged per round by one walker thread per row, t upward from the row (its
 * running exponent in the untiled order, ending at a_{s+1..end}).
 */
export function ssdDx(BT: number, BP: number): Kernel {
  return kernel(`ssdDx${BT}x${BP}`, `${stage(BT, BP)}
  var<workgroup> sEnd : array<f32, ${BT}>;
  ${ENTRY((BT / 4) * (BP / 4))} {
    ${headTile(BT, BP)}
    ${interOverN(BT, BP, true)}
    let tl = r0 + li;
    var seg = 0.0;
    for (var k0 = r0; k0 < len; k0 = k0 + ${KK}u) {
      if (li < ${BT}u) {
        for (var k = 0u; k < ${KK}u; k = k + 1u) {
          let s = k0 + k;
          var wv = 0.0;
          if (s >= tl && s < len) {
            if (s > tl) { seg = seg + aAt(bt + s, h, A); }
            wv = exp(seg) * S[u.cbOff + cbi(b, g, c, s, tl)];
          }
          sT0[k * ${BT}u + li] = wv;
        }
      }
      ${laneRows(BT, BP, 'dyAt')}
      workgroupBarrier();
      ${round(BT, BP, [['acc2', 'sT0', 'sN0']])}
      workgroupBarrier();
    }
    if (li < ${BT}u) { sEnd[li] = exp(seg); }
    workgroupBarrier();
    let Dd = P[u.Doff + h];
    for (var m = 0u; m < 4u; m = m + 1u) {
      let row = ty + m * ${BT / 4}u;
      if (r0 + row >= len) { continue; }
      let t = bt + r0 + row;
      let es = sEnd[row]; let ec = exp(S[u.cumOff + bht(b, h, t0 + r0 + row)]); let dl = dlAt(t, h);
      for (var n = 0u; n < 4u; n = n + 1u) {
        let col = p0 + tx + n * ${BP / 4}u;
        if (col >= u.P) { continue; }
        let q = h * u.P + col; let o = t * u.Q + q;
        let x = xAt(t, q); let dy = dyAt(t, q);
        let e2 = es * acc0[m * 4u + n];
        let d = acc2[m * 4u + n] + e2;
        S[u.r1Off + o] = ec * acc1[m * 4u + n] * dy;
        S[u.r2Off + o] = dl * x * e2;
        X[u.duOff + t * u.duRs + q] = dl * d + Dd * dy;
        X[u.ddOff + o] = d * x;
      }
    }
  }`);
}

/**
 * dB_s[n] and dC_t[n], summed over the group's heads, as products per (b, c, g): the intra terms
 * dC_t = Σ_s LMG[t, s] B_s and dB_s = Σ_t LMG[t, s] C_t (CL×CL by CL×N), the inter terms
 * dC_t += exp(a_{t0..t}) Σ_p dy_t[p] h_c[·, p] and dB_s += exp(a_{s+1..end}) Δ_s Σ_p x_s[p] dS_c[·, p]
 * (CL×P by P×N per head). One workgroup per (b, c, g, BT steps, BN states), a 4×4 register tile per
 * thread (rows ty + k·BT/4, states tx + k·BN/4: neighbouring threads write neighbouring n); each round
 * stages KK of the contraction's steps or lanes, loads running along the rows in memory. Written at
 * X[dbcOff + t·dbcRs + dbCol / dcCol + g·N + n].
 */
export function ssdDBC(BT: number, BN: number): Kernel {
  const RT = BT / 4, RN = BN / 4, WG = RT * RN;
  const both = round(BT, BN, [['acc0', 'sT0', 'sN0'], ['acc1', 'sT1', 'sN1']]);
  return kernel(`ssdDBC${BT}x${BN}`, `${stage(BT, BN)}
  ${ENTRY(WG)} {
    let wg = w.x + w.y * nw.x;
    if (wg >= u.n) { return; }
    let nTB = (u.CL + ${BT - 1}u) / ${BT}u; let nNB = (u.N + ${BN - 1}u) / ${BN}u;
    let nb = wg % nNB; var r = wg / nNB; let tb = r % nTB; r = r / nTB;
    let g = r % u.G; r = r / u.G; let c = r % u.nC; let b = r / u.nC;
    let t0 = c * u.CL; let len = cEnd(c) - t0; let r0 = tb * ${BT}u; let n0 = nb * ${BN}u;
    let bt = b * u.L + t0;
    let tx = li % ${RN}u; let ty = li / ${RN}u;
    // acc0 / acc1: dC / dB (intra), then per head Σ_p dy h_c / Σ_p x dS_c before their row factors.
    var acc0 : array<f32, 16>;
    var acc1 : array<f32, 16>;
    var dC : array<f32, 16>;
    var dB : array<f32, 16>;
    for (var k = 0u; k < 16u; k = k + 1u) { acc0[k] = 0.0; acc1[k] = 0.0; }
    // Intra: sT0[k][row] = LMG[row, k0 + k], sT1[k][row] = LMG[k0 + k, row]; sN0 / sN1 = B / C at step k0 + k.
    for (var k0 = 0u; k0 < len; k0 = k0 + ${KK}u) {
      for (var e = li; e < ${KK * BT}u; e = e + ${WG}u) {
        let k = e % ${KK}u; let row = e / ${KK}u;
        var v = 0.0;
        if (r0 + row < len && k0 + k < len) { v = S[u.lmgOff + cbi(b, g, c, r0 + row, k0 + k)]; }
        sT0[k * ${BT}u + row] = v;
        let row2 = e % ${BT}u; let k2 = e / ${BT}u;
        var v2 = 0.0;
        if (r0 + row2 < len && k0 + k2 < len) { v2 = S[u.lmgOff + cbi(b, g, c, k0 + k2, r0 + row2)]; }
        sT1[k2 * ${BT}u + row2] = v2;
      }
      for (var e = li; e < ${KK * BN}u; e = e + ${WG}u) {
        let col = e % ${BN}u; let k = e / ${BN}u;
        var vb = 0.0; var vc = 0.0;
        if (k0 + k < len && n0 + col < u.N) { vb = bAt(bt + k0 + k, g, n0 + col); vc = cAt(bt + k0 + k, g, n0 + col); }
        sN0[k * ${BN}u + col] = vb; sN1[k * ${BN}u + col] = vc;
      }
      workgroupBarrier();
      ${both}
      workgroupBarrier();
    }
    for (var k = 0u; k < 16u; k = k + 1u) { dC[k] = acc0[k]; dB[k] = acc1[k]; }
    // Inter, per head: sT0 / sT1 = dy / x at [row, lane p0 + k], sN0 / sN1 = h_c / dS_c at [col, p0 + k].
    for (var hh = 0u; hh < u.HG; hh = hh + 1u) {
      let h = g * u.HG + hh;
      for (var k = 0u; k < 16u; k = k + 1u) { acc0[k] = 0.0; acc1[k] = 0.0; }
      for (var p0 = 0u; p0 < u.P; p0 = p0 + ${KK}u) {
        for (var e = li; e < ${KK * BT}u; e = e + ${WG}u) {
          let k = e % ${KK}u; let row = e / ${KK}u;
          var vd = 0.0; var vx = 0.0;
          if (r0 + row < len && p0 + k < u.P) { let t = bt + r0 + row; let q = h * u.P + p0 + k; vd = dyAt(t, q); vx = xAt(t, q); }
          sT0[k * ${BT}u + row] = vd; sT1[k * ${BT}u + row] = vx;
        }
        for (var e = li; e < ${KK * BN}u; e = e + ${WG}u) {
          let k = e % ${KK}u; let col = e / ${KK}u;
          var vh = 0.0; var vs = 0.0;
          if (n0 + col < u.N && p0 + k < u.P) { let o = st(b, c, h, n0 + col, p0 + k); vh = S[u.hsOff + o]; vs = S[u.dsOff + o]; }
          sN0[k * ${BN}u + col] = vh; sN1[k * ${BN}u + col] = vs;
        }
        workgroupBarrier();
        ${both}
        workgroupBarrier();
      }
      for (var m = 0u; m < 4u; m = m + 1u) {
        let row = r0 + ty + m * ${RT}u;
        if (row < len) {
          let ec = exp(S[u.cumOff + bht(b, h, t0 + row)]);
          let er = exp(S[u.restOff + bht(b, h, t0 + row)]) * dlAt(bt + row, h);
          for (var n = 0u; n < 4u; n = n + 1u) { dC[m * 4u + n] = dC[m * 4u + n] + ec * acc0[m * 4u + n]; dB[m * 4u + n] = dB[m * 4u + n] + er * acc1[m * 4u + n]; }
        }
      }
    }
    for (var m = 0u; m < 4u; m = m + 1u) {
      let row = r0 + ty + m * ${RT}u;
      for (var n = 0u; n < 4u; n = n + 1u) {
        let col = n0 + tx + n * ${RN}u;
        if (row < len && col < u.N) {
          let o = u.dbcOff + (bt + row) * u.dbcRs + g * u.N + col;
          X[o + u.dbCol] = dB[m * 4u + n]; X[o + u.dcCol] = dC[m * 4u + n];
        }
      }
    }
  }`);
}

/**
 * The exponents' gradient, one workgroup per (b, h, chunk): dcum_i (the gradient w.r.t. a_{t0} + … + a_i)
 * = Σ_{s<i} w_is − Σ_{t>i} w_ti (w = LM ∘ CB) + Σ_p (R1 − R2)[i], and at the chunk's end
 * + Σ dS_c ∘ h_{c+1} (h_{c+1} is of degree one in exp(Σa_c)). Then da = reverse cumsum of dcum:
 * A·da into DD's lane 0 of the head (+=), Σ Δ·da (the chunk's dA) into DAC.
 */
export const ssdDcum: Kernel = kernel('ssdDcum', `${wgslReduce(256)}
  var<workgroup> dc : array<f32, ${MAX_SSD_CHUNK}>;
  ${ENTRY(256)} {
    let wg = w.x + w.y * nw.x;
    if (wg >= u.n) { return; }
    let c = wg % u.nC; let r = wg / u.nC; let h = r % u.H; let b = r / u.H;
    let g = h / u.HG; let t0 = c * u.CL; let len = cEnd(c) - t0;
    var e = 0.0;
    if (c + 1u < u.nC) {
      let d0 = u.dsOff + st(b, c, h, 0u, 0u); let h1 = u.hsOff + st(b, c + 1u, h, 0u, 0u);
      for (var k = li; k < u.N * u.P; k = k + 256u) { e = e + S[d0 + k] * S[h1 + k]; }
    }
    e = wgSum(e, li);
    if (li < len) {
      var v = 0.0;
      for (var s = 0u; s < li; s = s + 1u) { v = v + S[u.lmOff + lmi(b, h, c, li, s)] * S[u.cbOff + cbi(b, g, c, li, s)]; }
      for (var s = li + 1u; s < len; s = s + 1u) { v = v - S[u.lmOff + lmi(b, h, c, s, li)] * S[u.cbOff + cbi(b, g, c, s, li)]; }
      let t = b * u.L + t0 + li;
      for (var p = 0u; p < u.P; p = p + 1u) { let o = t * u.Q + h * u.P + p; v = v + S[u.r1Off + o] - S[u.r2Off + o]; }
      if (li + 1u == len) { v = v + e; }
      dc[li] = v;
    }
    workgroupBarrier();
    if (li == 0u) {
      let A = aOf(h, 0u);
      var da = 0.0; var dA = 0.0;
      for (var k = len; k > 0u; k = k - 1u) {
        da = da + dc[k - 1u];
        let t = b * u.L + t0 + k - 1u;
        let o = u.ddOff + t * u.Q + h * u.P;
        X[o] = X[o] + A * da;
        dA = dA + dlAt(t, h) * da;
      }
      S[u.dacOff + hci(b, h, c)] = dA;
    }
  }`);

/** Per lane (b, q): the D sum Σ_t dy·x into dPart, and the head's dA (Σ over chunks) into aPart at lane 0 of the head (0 elsewhere). */
export const ssdLaneSums = kernel('ssdLaneSums', `${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    let b = i / u.Q; let q = i - b * u.Q; let h = q / u.P;
    var d = 0.0;
    for (var s = 0u; s < u.L; s = s + 1u) { let t = b * u.L + s; d = d + dyAt(t, q) * xAt(t, q); }
    X[u.dPartOff + i] = d;
    var a = 0.0;
    if (q == h * u.P) { for (var c = 0u; c < u.nC; c = c + 1u) { a = a + S[u.dacOff + hci(b, h, c)]; } }
    X[u.aPartOff + i] = a;
  }`);

type Op = (k: Kernel, fields: Record<string, number>, groups: [number, number, number]) => void;
type Grid = (n: number) => [number, number, number];

/** Shape and regions of one SSD scan (SCAN_FIELDS' values plus ssdScratch's offsets, B, H, G, N, CL, nC). */
export type SsdFields = Record<string, number>;

/** Every field at 0 (the forward leaves the backward's regions unset, and the reverse). */
const ZERO: SsdFields = Object.fromEntries(SSD_FIELDS.map((k) => [k.replace(/:f$/, ''), 0]));

/** An elementwise dispatch of kernel k over n threads (in workgroups of 256), with f's fields and n. */
const over = (op: Op, grid: Grid, f: SsdFields) => (k: Kernel, n: number, extra: SsdFields = {}) => op(k, { ...f, ...extra, n }, grid(Math.ceil(n / 256)));

/** A dispatch of a tiled kernel k over n workgroups (one per tile) with f's fields and n. */
const perTile = (op: Op, grid: Grid, f: SsdFields) => (k: Kernel, n: number) => op(k, { ...f, n }, grid(n));

/** Workgroups of ssdOut / ssdDx: one per (b, c, h, BT steps, BP lanes). */
const headTiles = (f: SsdFields, BT: number, BP: number) => f.B! * f.nC! * f.H! * Math.ceil(f.CL! / BT) * Math.ceil(f.P! / BP);

/** Dispatches recomputing the chunk states: CB, S_c, and the pass to h_c. */
function states(op: Op, f: SsdFields, grid: Grid): void {
  const { B, G, H, N, P, CL, nC } = f;
  const run = over(op, grid, f), tiles = perTile(op, grid, f);
  const BI = edgeOf(CL!, 32), nI = Math.ceil(CL! / BI);
  tiles(ssdCB(BI), B! * G! * nC! * nI * nI);
  const BN = edgeOf(N!, 64), BP = edgeOf(P!, 64);
  tiles(ssdStates(BN, BP), B! * nC! * H! * Math.ceil(N! / BN) * Math.ceil(P! / BP));
  run(ssdPass, B! * H! * N! * P!, { rev: 0, passOff: f.hsOff! });
}

/** The forward: y (= C·state + D·x) at yOff, [t, q] rows of Q. Four dispatches. */
export function ssdForward(op: Op, given: SsdFields, grid: Grid): void {
  const f = { ...ZERO, ...given };
  states(op, f, grid);
  const BT = edgeOf(f.CL!, 32), BP = edgeOf(f.P!, 64);
  perTile(op, grid, f)(ssdOut(BT, BP), headTiles(f, BT, BP));
}

/**
 * The backward from dy at dyOff: dx + D·dy into duOff (row stride duRs), dB / dC into dbcOff, per-lane
 * dΔ into ddOff ([t, q]: a head's lanes sum to its dΔ), per-lane A and D sums into aPartOff / dPartOff
 * ([b, q]: summed over a head's lanes). Recomputes the forward's states; ten dispatches.
 */
export function ssdBackward(op: Op, given: SsdFields, grid: Grid): void {
  const f = { ...ZERO, ...given };
  states(op, f, grid);
  const { B, G, H, N, P, CL, nC, Q } = f;
  const run = over(op, grid, f), tiles = perTile(op, grid, f);
  // Tiles: 32 steps (16 for short chunks), 64 states and lanes (fewer when N or P is small).
  const BT = edgeOf(CL!, 32), BN = edgeOf(N!, 64), BP = edgeOf(P!, 64), nT = Math.ceil(CL! / BT);
  tiles(ssdDLocal(BN, BP), B! * nC! * H! * Math.ceil(N! / BN) * Math.ceil(P! / BP));
  run(ssdPass, B! * H! * N! * P!, { rev: 1, passOff: f.dsOff! });
  tiles(ssdLM(BT), B! * G! * nC! * nT * nT);
  tiles(ssdDx(BT, BP), headTiles(f, BT, BP));
  tiles(ssdDBC(BT, BN), B! * nC! * G! * nT * Math.ceil(N! / BN));
  // One workgroup per (b, h, chunk).
  op(ssdDcum, { ...f, n: B! * H! * nC! }, grid(B! * H! * nC!));
  run(ssdLaneSums, B! * Q!);
}
