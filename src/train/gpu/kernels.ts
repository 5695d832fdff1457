/**
 * WGSL kernels of the compiled training step (step.ts): forward and hand-written backward of the
 * Mamba-1 / Mamba-2 block, cross-entropy, reductions and AdamW. Offsets and strides are element
 * indices into the engine's buffers (engine.ts); `t` is a row of the flattened [batch·L] tokens.
 */
import { WGSL_ACTIVATIONS, wgslReduce } from '../../model/kernels/webgpu-program.js';
import type { BufName, Kernel } from './engine.js';

export const ENTRY = (wg: number | string) => `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) w : vec3<u32>, @builtin(num_workgroups) nw : vec3<u32>, @builtin(local_invocation_index) li : u32)`;
export const LINEAR = (wg: number) => `let i = (w.x + w.y * nw.x) * ${wg}u + li;`;


/** Embedding rows: X[out + t·D + d] = P[emb + ids[t]·D + d]. */
export const gather: Kernel = {
  key: 'gather', fields: ['n', 'D', 'idsOff', 'embOff', 'outOff'], bufs: ['P', 'X', 'I'],
  body: `${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    let t = i / u.D; let d = i - t * u.D;
    X[u.outOff + i] = P[u.embOff + u32(I[u.idsOff + t]) * u.D + d];
  }`,
};

/** The 256-thread workgroup reduction (wgSum, wgReduce) of the row kernels. */
const REDUCE = wgslReduce(256);

/**
 * RMSNorm of one row (or row group) per workgroup: out = x · rstd · w. With `gated` (Mamba-2's
 * gated norm) x is y · silu(z) and is also stored (gOff) for the backward.
 */
export function normFwd(gated: boolean): Kernel {
  return {
    key: `normFwd${gated}`, bufs: ['P', 'X'],
    fields: ['rows', 'n', 'groups', 'xOff', 'xRs', 'zOff', 'zRs', 'gOff', 'outOff', 'outRs', 'rstdOff', 'wOff', 'eps:f'],
    body: `${WGSL_ACTIVATIONS}${REDUCE}
    fn xAt(row : u32, j : u32) -> f32 {
      ${gated ? 'return X[u.xOff + row * u.xRs + j] * silu(X[u.zOff + row * u.zRs + j]);' : 'return X[u.xOff + row * u.xRs + j];'}
    }
    ${ENTRY(256)} {
      let rg = w.x + w.y * nw.x;
      if (rg >= u.rows * u.groups) { return; }
      let row = rg / u.groups; let g = rg - row * u.groups; let j0 = g * u.n;
      var s = 0.0;
      for (var k = li; k < u.n; k = k + 256u) { let x = xAt(row, j0 + k); s = s + x * x; }
      let r = inverseSqrt(wgSum(s, li) / f32(u.n) + u.eps);
      for (var k = li; k < u.n; k = k + 256u) {
        let j = j0 + k;
        let x = xAt(row, j);
        ${gated ? 'X[u.gOff + row * u.xRs + j] = x;' : ''}
        X[u.outOff + row * u.outRs + j] = x * r * P[u.wOff + j];
      }
      if (li == 0u) { X[u.rstdOff + rg] = r; }
    }`,
  };
}

/**
 * Backward of normFwd. Plain: dx (=/+= by acc) into dxOff. Gated: dg → dy = dg·silu(z) into
 * dxOff and dz = dg·y·silu'(z) into dzOff. (The weight's gradient is a column reduction.)
 */
export function normBwd(gated: boolean): Kernel {
  return {
    key: `normBwd${gated}`, bufs: ['P', 'X'],
    fields: ['rows', 'n', 'groups', 'xOff', 'xRs', 'zOff', 'zRs', 'dyOff', 'dyRs', 'rstdOff', 'wOff', 'dxOff', 'dxRs', 'dzOff', 'dzRs', 'acc'],
    body: `${WGSL_ACTIVATIONS}${REDUCE}
    ${ENTRY(256)} {
      let rg = w.x + w.y * nw.x;
      if (rg >= u.rows * u.groups) { return; }
      let row = rg / u.groups; let g = rg - row * u.groups; let j0 = g * u.n;
      let r = X[u.rstdOff + rg];
      var s = 0.0;
      for (var k = li; k < u.n; k = k + 256u) {
        let j = j0 + k;
        ${gated ? 'let x = X[u.xOff + row * u.xRs + j] * silu(X[u.zOff + row * u.zRs + j]);' : 'let x = X[u.xOff + row * u.xRs + j];'}
        s = s + X[u.dyOff + row * u.dyRs + j] * P[u.wOff + j] * x * r;
      }
      let dot = wgSum(s, li) / f32(u.n);
      for (var k = li; k < u.n; k = k + 256u) {
        let j = j0 + k;
        let gw = X[u.dyOff + row * u.dyRs + j] * P[u.wOff + j];
        ${gated ? `let yv = X[u.xOff + row * u.xRs + j]; let z = X[u.zOff + row * u.zRs + j];
        let dg = r * (gw - yv * silu(z) * r * dot);
        X[u.dxOff + row * u.dxRs + j] = dg * silu(z);
        X[u.dzOff + row * u.dzRs + j] = dg * yv * dsilu(z);` : `let dx = r * (gw - X[u.xOff + row * u.xRs + j] * r * dot);
        let o = u.dxOff + row * u.dxRs + j;
        if (u.acc == 1u) { X[o] = X[o] + dx; } else { X[o] = dx; }`}
      }
    }`,
  };
}

/** A register-tiled matmul's shape: BM×BN output tile per workgroup of 256 threads, TM×TN per thread, K in steps of BK. */
export interface MatmulTile { BM: number; BN: number; TM: number; TN: number; BK: number }

/** The tiles mm() can use, largest first (step.ts: 64x64 by default, or the largest that still fills the GPU). */
export const MATMUL_TILES: Record<string, MatmulTile> = {
  '128x128': { BM: 128, BN: 128, TM: 8, TN: 8, BK: 8 },
  '128x64': { BM: 128, BN: 64, TM: 8, TN: 4, BK: 8 },
  '64x64': { BM: 64, BN: 64, TM: 4, TN: 4, BK: 16 },
};

/**
 * C (=, +=) A·B (+ X[add]) with A(i,k) = A[aOff + i·aRs + k·aCs], B(k,j) = B[bOff + k·bRs + j·bCs],
 * C(i,j) = C[cOff + z·zStride + i·cRs + j]. Register tiles of TM×TN per thread (in 4×4 blocks spread
 * over the tile so that neighbouring threads read neighbouring vec4s of workgroup memory), the A and B
 * tiles double-buffered in workgroup memory (the next K step is loaded into registers while the current
 * one is multiplied: one barrier per step). K in chunks of kChunk per grid z (split-K: each z writes its
 * own slice, summed by sumSlices). aRowFast / bColFast: which index is contiguous in memory, so that
 * tile loads are coalesced. flags: 1 accumulate, 2 add X[addOff + i·cRs + j].
 */
export function matmul(a: BufName, b: BufName, c: BufName, aRowFast: boolean, bColFast: boolean, tile: MatmulTile = MATMUL_TILES['64x64']!): Kernel {
  const { BM, BN, TM, TN, BK } = tile;
  const RG = TM / 4, CG = TN / 4, nTx = BN / TN;
  if ((BM / TM) * nTx !== 256 || TM % 4 || TN % 4 || (BM * BK) % 256 || (BN * BK) % 256) throw new Error(`matmul: tile ${BM}x${BN}/${TM}x${TN}/${BK} does not fit 256 threads`);
  const LA = (BM * BK) / 256, LB = (BN * BK) / 256;
  const SA = (BK * BM) / 4, SB = (BK * BN) / 4; // vec4s per buffer
  const bufs = [...new Set<BufName>([a, b, c, 'X'])];
  const loads = (k0: string) => {
    const out: string[] = [];
    for (let q = 0; q < LA; q++) {
      out.push(`{ let idx = li + ${q * 256}u; ${aRowFast ? `let r = idx % ${BM}u; let kk = idx / ${BM}u;` : `let kk = idx % ${BK}u; let r = idx / ${BK}u;`}
        let gi = m0 + r; let gk = ${k0} + kk; ra[${q}] = 0.0;
        if (gi < u.M && gk < kEnd) { ra[${q}] = ${a}[u.aOff + gi * u.aRs + gk * u.aCs]; } }`);
    }
    for (let q = 0; q < LB; q++) {
      out.push(`{ let idx = li + ${q * 256}u; ${bColFast ? `let cc = idx % ${BN}u; let kk = idx / ${BN}u;` : `let kk = idx % ${BK}u; let cc = idx / ${BK}u;`}
        let gj = n0 + cc; let gk = ${k0} + kk; rb[${q}] = 0.0;
        if (gj < u.N && gk < kEnd) { rb[${q}] = ${b}[u.bOff + gk * u.bRs + gj * u.bCs]; } }`);
    }
    return out.join('\n');
  };
  const stores = (p: string) => {
    const out: string[] = [];
    for (let q = 0; q < LA; q++) {
      out.push(`{ let idx = li + ${q * 256}u; ${aRowFast ? `let r = idx % ${BM}u; let kk = idx / ${BM}u;` : `let kk = idx % ${BK}u; let r = idx / ${BK}u;`}
        let e = kk * ${BM}u + r; As[${p} * ${SA}u + e / 4u][e % 4u] = ra[${q}]; }`);
    }
    for (let q = 0; q < LB; q++) {
      out.push(`{ let idx = li + ${q * 256}u; ${bColFast ? `let cc = idx % ${BN}u; let kk = idx / ${BN}u;` : `let kk = idx % ${BK}u; let cc = idx / ${BK}u;`}
        let e = kk * ${BN}u + cc; Bs[${p} * ${SB}u + e / 4u][e % 4u] = rb[${q}]; }`);
    }
    return out.join('\n');
  };
  const fma: string[] = [];
  for (let g = 0; g < RG; g++) for (let i = 0; i < 4; i++) for (let h = 0; h < CG; h++) {
    fma.push(`acc[${(g * 4 + i) * CG + h}] = acc[${(g * 4 + i) * CG + h}] + av${g}[${i}] * bv${h};`);
  }
  const aReads = Array.from({ length: RG }, (_, g) => `let av${g} = As[ab + ${(g * BM) / (4 * RG)}u];`).join(' ');
  const bReads = Array.from({ length: CG }, (_, h) => `let bv${h} = Bs[bb + ${(h * BN) / (4 * CG)}u];`).join(' ');
  return {
    key: `mm_${a}${b}${c}${+aRowFast}${+bColFast}_${BM}x${BN}_${TM}x${TN}_${BK}`, bufs,
    fields: ['M', 'N', 'K', 'aOff', 'aRs', 'aCs', 'bOff', 'bRs', 'bCs', 'cOff', 'cRs', 'kChunk', 'addOff', 'flags', 'zStride'],
    body: `
    var<workgroup> As : array<vec4<f32>, ${2 * SA}>;
    var<workgroup> Bs : array<vec4<f32>, ${2 * SB}>;
    @compute @workgroup_size(256)
    fn main(@builtin(workgroup_id) w : vec3<u32>, @builtin(local_invocation_index) li : u32) {
      let tx = li % ${nTx}u; let ty = li / ${nTx}u;
      let m0 = w.y * ${BM}u; let n0 = w.x * ${BN}u;
      let kBeg = w.z * u.kChunk; let kEnd = min(u.K, kBeg + u.kChunk);
      var acc : array<vec4<f32>, ${RG * 4 * CG}>;
      for (var q = 0u; q < ${RG * 4 * CG}u; q = q + 1u) { acc[q] = vec4<f32>(0.0); }
      var ra : array<f32, ${LA}>;
      var rb : array<f32, ${LB}>;
      ${loads('kBeg')}
      ${stores('0u')}
      workgroupBarrier();
      var p = 0u;
      for (var k0 = kBeg; k0 < kEnd; k0 = k0 + ${BK}u) {
        let more = k0 + ${BK}u < kEnd;
        if (more) {
          ${loads(`(k0 + ${BK}u)`)}
        }
        for (var kk = 0u; kk < ${BK}u; kk = kk + 1u) {
          let ab = p * ${SA}u + kk * ${BM / 4}u + ty; let bb = p * ${SB}u + kk * ${BN / 4}u + tx;
          ${aReads} ${bReads}
          ${fma.join(' ')}
        }
        if (more) {
          ${stores('(1u - p)')}
        }
        workgroupBarrier();
        p = 1u - p;
      }
      for (var g = 0u; g < ${RG}u; g = g + 1u) {
        for (var r = 0u; r < 4u; r = r + 1u) {
          let gi = m0 + g * ${BM / RG}u + ty * 4u + r;
          if (gi >= u.M) { continue; }
          for (var h = 0u; h < ${CG}u; h = h + 1u) {
            let v4 = acc[(g * 4u + r) * ${CG}u + h];
            for (var cq = 0u; cq < 4u; cq = cq + 1u) {
              let gj = n0 + h * ${BN / CG}u + tx * 4u + cq;
              if (gj >= u.N) { continue; }
              var v = v4[cq];
              if ((u.flags & 2u) != 0u) { v = v + X[u.addOff + gi * u.cRs + gj]; }
              let o = u.cOff + w.z * u.zStride + gi * u.cRs + gj;
              if ((u.flags & 1u) != 0u) { ${c}[o] = ${c}[o] + v; } else { ${c}[o] = v; }
            }
          }
        }
      }
    }`,
  };
}

/** dst[row·dstRs + col] (=, +=) Σ_z S[src + z·n + i], i = row·cols + col: the split-K slices of matmul. */
export function sumSlices(dst: BufName): Kernel {
  return {
    key: `sumSlices${dst}`, bufs: [...new Set<BufName>([dst, 'S'])], fields: ['n', 'slices', 'srcOff', 'dstOff', 'rows', 'dstRs', 'cols', 'acc'],
    body: `${ENTRY(256)} { ${LINEAR(256)}
      if (i >= u.n) { return; }
      var s = 0.0;
      for (var z = 0u; z < u.slices; z = z + 1u) { s = s + S[u.srcOff + z * u.n + i]; }
      let row = i / u.cols; let col = i - row * u.cols;
      let o = u.dstOff + row * u.dstRs + col;
      if (u.acc == 1u) { ${dst}[o] = ${dst}[o] + s; } else { ${dst}[o] = s; }
    }`,
  };
}

/**
 * Causal depthwise conv + bias + SiLU over the C channels at column xCol of rows of stride xRs:
 * U[t, c] = silu(b[c] + Σ_k w[c, k] · x[t − (K−1−k), c]), zero before each sequence's start.
 */
const CONV_PRE = `${WGSL_ACTIVATIONS}
  fn pre(t : u32, c : u32) -> f32 {
    let tl = t % u.L;
    var a = 0.0;
    if (u.hasBias == 1u) { a = P[u.bOff + c]; }
    for (var k = 0u; k < u.K; k = k + 1u) {
      let back = u.K - 1u - k;
      if (tl >= back) { a = a + P[u.wOff + c * u.K + k] * X[u.xOff + (t - back) * u.xRs + c]; }
    }
    return a;
  }`;

export const convFwd: Kernel = {
  key: 'convFwd', bufs: ['P', 'X'], fields: ['n', 'C', 'K', 'L', 'xOff', 'xRs', 'wOff', 'bOff', 'hasBias', 'outOff'],
  body: `${CONV_PRE}
  ${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    let t = i / u.C; let c = i - t * u.C;
    X[u.outOff + i] = silu(pre(t, c));
  }`,
};

/** conv backward, part 1: dpre[t, c] = du[t, c] · silu'(pre[t, c]) (pre recomputed). */
export const convBwdPre: Kernel = {
  key: 'convBwdPre', bufs: ['P', 'X'], fields: ['n', 'C', 'K', 'L', 'xOff', 'xRs', 'wOff', 'bOff', 'hasBias', 'duOff', 'outOff'],
  body: `${CONV_PRE}
  ${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    let t = i / u.C; let c = i - t * u.C;
    X[u.outOff + i] = X[u.duOff + i] * dsilu(pre(t, c));
  }`,
};

/** conv backward, part 2: dx[t, c] = Σ_k w[c, k] · dpre[t + (K−1−k), c] within the sequence. */
export const convBwdX: Kernel = {
  key: 'convBwdX', bufs: ['P', 'X'], fields: ['n', 'C', 'K', 'L', 'dpreOff', 'wOff', 'dxOff', 'dxRs'],
  body: `${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    let t = i / u.C; let c = i - t * u.C;
    let tl = t % u.L;
    var s = 0.0;
    for (var k = 0u; k < u.K; k = k + 1u) {
      let fwd = u.K - 1u - k;
      if (tl + fwd < u.L) { s = s + P[u.wOff + c * u.K + k] * X[u.dpreOff + (t + fwd) * u.C + c]; }
    }
    X[u.dxOff + t * u.dxRs + c] = s;
  }`,
};

/**
 * Column reductions over rows, stage 1: S[part + chunk·cols + j] = Σ_{rows of chunk} f(i, j), with
 * f by mode: 0 a[i,j]; 1 a[i,j]·b[i,j]; 2 a[i,j]·b[i,j]·r[i·rRs + j / rDiv]; 3 (conv weight, j = c·K + k)
 * a[i,c]·b[i − (K−1−k), c] within the sequence. Workgroups of 64 columns × 4 row lanes.
 */
export const colReduce: Kernel = {
  key: 'colReduce', bufs: ['X', 'S'], fields: ['rows', 'cols', 'mode', 'aOff', 'aRs', 'bOff', 'bRs', 'rOff', 'rRs', 'rDiv', 'K', 'L', 'chunk', 'partOff'],
  body: `
  var<workgroup> red : array<f32, 256>;
  fn f(i : u32, j : u32) -> f32 {
    switch u.mode {
      case 0u: { return X[u.aOff + i * u.aRs + j]; }
      case 1u: { return X[u.aOff + i * u.aRs + j] * X[u.bOff + i * u.bRs + j]; }
      case 2u: { return X[u.aOff + i * u.aRs + j] * X[u.bOff + i * u.bRs + j] * X[u.rOff + i * u.rRs + j / u.rDiv]; }
      default: {
        let c = j / u.K; let k = j - c * u.K; let back = u.K - 1u - k;
        if (i % u.L < back) { return 0.0; }
        return X[u.aOff + i * u.aRs + c] * X[u.bOff + (i - back) * u.bRs + c];
      }
    }
  }
  @compute @workgroup_size(64, 4)
  fn main(@builtin(workgroup_id) w : vec3<u32>, @builtin(local_invocation_id) l : vec3<u32>) {
    let j = w.x * 64u + l.x;
    let r0 = w.y * u.chunk;
    let r1 = min(u.rows, r0 + u.chunk);
    var s = 0.0;
    if (j < u.cols) { for (var i = r0 + l.y; i < r1; i = i + 4u) { s = s + f(i, j); } }
    red[l.y * 64u + l.x] = s;
    workgroupBarrier();
    if (l.y == 0u && j < u.cols) {
      S[u.partOff + w.y * u.cols + j] = red[l.x] + red[64u + l.x] + red[128u + l.x] + red[192u + l.x];
    }
  }`,
};

/**
 * Column reductions, stage 2: G[dst + j] (=, +=) factor(j) · Σ_chunks Σ_{q<grp} S[part + c·cols + j·grp + q].
 * factor: mode 0 → 1; 1 → dA/dA_log = −exp(P[pOff + j / pDiv]); 2 → dA/dA_log_param = k·exp(−k·P[…]).
 */
export const colFinish: Kernel = {
  key: 'colFinish', bufs: ['P', 'G', 'S'], fields: ['n', 'cols', 'chunks', 'grp', 'partOff', 'dstOff', 'acc', 'mode', 'pOff', 'pDiv', 'k:f'],
  body: `${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    var s = 0.0;
    for (var c = 0u; c < u.chunks; c = c + 1u) {
      for (var q = 0u; q < u.grp; q = q + 1u) { s = s + S[u.partOff + c * u.cols + i * u.grp + q]; }
    }
    if (u.mode == 1u) { s = s * -exp(P[u.pOff + i / u.pDiv]); }
    if (u.mode == 2u) { s = s * u.k * exp(-u.k * P[u.pOff + i / u.pDiv]); }
    let o = u.dstOff + i;
    if (u.acc == 1u) { G[o] = G[o] + s; } else { G[o] = s; }
  }`,
};

/** Δ = clamp(softplus(x + bias), lo, hi) for C columns of x at (xOff, xRs), written densely [T, C]. */
export const deltaFwd: Kernel = {
  key: 'deltaFwd', bufs: ['P', 'X'], fields: ['n', 'C', 'xOff', 'xRs', 'biasOff', 'outOff', 'lo:f', 'hi:f'],
  body: `${WGSL_ACTIVATIONS}${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    let t = i / u.C; let c = i - t * u.C;
    X[u.outOff + i] = clamp(softplus(X[u.xOff + t * u.xRs + c] + P[u.biasOff + c]), u.lo, u.hi);
  }`,
};

/**
 * Backward of deltaFwd: dx[t, c] = (Σ_{q<grp} dΔ[t, c·grp + q]) · sigmoid(x + bias) where the clamp
 * passes (lo ≤ softplus ≤ hi), written at (dxOff, dxRs). grp sums Mamba-2's per-lane partials.
 */
export const deltaBwd: Kernel = {
  key: 'deltaBwd', bufs: ['P', 'X'], fields: ['n', 'C', 'grp', 'ddOff', 'xOff', 'xRs', 'biasOff', 'dxOff', 'dxRs', 'lo:f', 'hi:f'],
  body: `${WGSL_ACTIVATIONS}${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    let t = i / u.C; let c = i - t * u.C;
    var s = 0.0;
    for (var q = 0u; q < u.grp; q = q + 1u) { s = s + X[u.ddOff + i * u.grp + q]; }
    let x = X[u.xOff + t * u.xRs + c] + P[u.biasOff + c];
    let sp = softplus(x);
    var g = 0.0;
    if (sp >= u.lo && sp <= u.hi) { g = s * sigm(x); }
    X[u.dxOff + t * u.dxRs + c] = g;
  }`,
};

/**
 * How a scan workgroup's threads are laid over (lane, state slice). 'state-fastest': consecutive
 * threads are the NS slices of one lane. 'lane-fastest': consecutive threads are consecutive lanes
 * of one slice, so the per-state reads and writes of the [.., n, q] buffers (q innermost) are
 * coalesced. Both give the same results: the reductions over slices and lanes add in the same order.
 */
export type ScanThreadLayout = 'state-fastest' | 'lane-fastest';
export const SCAN_THREAD_LAYOUTS: readonly ScanThreadLayout[] = ['state-fastest', 'lane-fastest'];
/** The layout used unless one is asked for: lane-fastest, 1.03–3.1× faster a step on the H200 (bench/results/gpu-h200/*-run3*). */
export const DEFAULT_SCAN_LAYOUT: ScanThreadLayout = 'lane-fastest';

/**
 * The Mamba-2 scan's form in the compiled step: 'recurrent' (scanFwd / scanBwdChunk here) or 'ssd'
 * (ssd.ts, the chunked state-space-duality form). Mamba-1 (A per state) has only the recurrent one.
 */
export type ScanForm = 'recurrent' | 'ssd';
export const SCAN_FORMS: readonly ScanForm[] = ['recurrent', 'ssd'];
/** The form used unless one is asked for: 'ssd' is not yet measured on the GPU. */
export const DEFAULT_SCAN_FORM: ScanForm = 'recurrent';

/**
 * The index mapping of `layout` for workgroups of W lanes × NS slices: `decl` declares the thread's
 * lane in the workgroup `ll` and its slice `j` (from li); `thread(l, s)` is the thread index of
 * lane l, slice s (where its partial sums sit in `part`); `sh(l, n)` the slot of lane l, state n
 * (of a slice of SL) in scanBwdChunk's lane sums, `shSize` their f32s.
 */
function scanThreads(layout: ScanThreadLayout, W: number, NS: number, SL = 0): { decl: string; thread: (l: string, s: string) => string; sh: (l: string, n: string) => string; shSize: number } {
  if (layout === 'state-fastest') {
    return {
      decl: `let ll = li / ${NS}u; let j = li % ${NS}u;`,
      thread: (l, s) => `((${l}) * ${NS}u + ${s})`,
      sh: (l, n) => `((${l}) * ${SL}u + ${n})`,
      shSize: W * SL,
    };
  }
  // Lane sums state-major with an odd row stride: a warp's reads (consecutive states) fall in
  // distinct banks, and so do its writes (consecutive lanes) for W ≥ 16 (2-way conflicts at W 8).
  return {
    decl: `let ll = li % ${W}u; let j = li / ${W}u;`,
    thread: (l, s) => `((${s}) * ${W}u + ${l})`,
    sh: (l, n) => `((${n}) * ${W + 1}u + ${l})`,
    shSize: (W + 1) * SL,
  };
}

/** Kernel-key suffix of a non-default thread layout. */
const layoutKey = (layout: ScanThreadLayout) => (layout === 'state-fastest' ? '' : '_lane');

/**
 * The selective scan, NS threads per lane (batch b, lane q of Q = heads·headDim; Mamba-1: Q = channels,
 * head dim 1), each with N/NS of the lane's states in registers (more threads and fewer registers for
 * large N; the partial sums of y meet in workgroup memory). Lane q reads x[t, q], Δ[t, q / P], B/C of
 * group (q / P) / (H / G), A = −exp(A_log) (aMode 0) or −exp(−k·A_log_param) (aMode 1), per state
 * (Mamba-1) or per head. y = C·h + D·x into yOff; with gate (Mamba-1) also y·silu(z) into ygOff.
 * `layout`: how the threads map to (lane, slice) (ScanThreadLayout).
 */
export function scanFwd(N: number, scalarA: boolean, gate: boolean, NS = 1, layout: ScanThreadLayout = DEFAULT_SCAN_LAYOUT): Kernel {
  const NPT = N / NS;
  const LW = 64 / NS;
  const th = scanThreads(layout, LW, NS);
  return {
    key: `scanFwd${N}${scalarA}${gate}${NS}${layoutKey(layout)}`, bufs: ['P', 'X'],
    fields: [...SCAN_FIELDS, 'yOff', 'ygOff', 'zOff', 'zRs'],
    body: `${WGSL_ACTIVATIONS}
    var<workgroup> part : array<f32, 64>;
    ${aOf(N, scalarA)}
    ${ENTRY(64)} {
      let wg = w.x + w.y * nw.x;
      ${th.decl}
      let lane = wg * ${LW}u + ll;
      let valid = lane < u.lanes;
      let ln = min(lane, u.lanes - 1u);
      let b = ln / u.Q; let q = ln - b * u.Q;
      let h = q / u.P; let g = h / u.HG;
      var s : array<f32, ${NPT}>;
      var A : array<f32, ${NPT}>;
      for (var k = 0u; k < ${NPT}u; k = k + 1u) { s[k] = 0.0; A[k] = aOf(h, j * ${NPT}u + k); }
      let Dd = P[u.Doff + h];
      for (var tl = 0u; tl < u.L; tl = tl + 1u) {
        let t = b * u.L + tl;
        let x = X[u.xOff + t * u.xRs + q];
        let dl = X[u.dOff + t * u.dRs + h];
        let bc = u.bcOff + t * u.bcRs + g * ${N}u + j * ${NPT}u;
        var y = 0.0;
        for (var k = 0u; k < ${NPT}u; k = k + 1u) {
          s[k] = exp(dl * A[k]) * s[k] + dl * x * X[bc + k];
          y = y + X[bc + u.cCol + k] * s[k];
        }
        ${NS > 1 ? `part[li] = y;
        workgroupBarrier();
        if (j == 0u) { for (var r = 1u; r < ${NS}u; r = r + 1u) { y = y + part[${th.thread('ll', 'r')}]; } }
        workgroupBarrier();` : ''}
        if (valid && j == 0u) {
          y = y + Dd * x;
          X[u.yOff + t * u.Q + q] = y;
          ${gate ? 'X[u.ygOff + t * u.Q + q] = y * silu(X[u.zOff + t * u.zRs + q]);' : ''}
        }
      }
    }`,
  };
}

export const SCAN_FIELDS = ['lanes', 'Q', 'L', 'P', 'HG', 'xOff', 'xRs', 'dOff', 'dRs', 'bcOff', 'bcRs', 'cCol', 'aOff', 'aMode', 'Doff', 'k:f'];

export function aOf(N: number, scalarA: boolean): string {
  return `fn aOf(h : u32, n : u32) -> f32 {
      let v = P[u.aOff + ${scalarA ? 'h' : `h * ${N}u + n`}];
      if (u.aMode == 1u) { return -exp(-u.k * v); }
      return -exp(v);
    }`;
}

/**
 * Checkpoints for the chunked scan backward (scanBwdChunk): the forward recurrence of scanFwd, same
 * threads, writing only the state at the start of each chunk of C steps into S at ckOff
 * ([b, chunk, n, q], q innermost; chunk 0's is zero). B·⌈L/C⌉·N·Q floats instead of B·L·N·Q.
 */
export function scanCkpt(N: number, scalarA: boolean, NS = 1, layout: ScanThreadLayout = DEFAULT_SCAN_LAYOUT): Kernel {
  const NPT = N / NS;
  const LW = 64 / NS;
  const th = scanThreads(layout, LW, NS);
  return {
    key: `scanCkpt${N}${scalarA}${NS}${layoutKey(layout)}`, bufs: ['P', 'X', 'S'],
    fields: [...SCAN_FIELDS, 'C', 'nC', 'ckOff'],
    body: `${aOf(N, scalarA)}
    ${ENTRY(64)} {
      let wg = w.x + w.y * nw.x;
      ${th.decl}
      let lane = wg * ${LW}u + ll;
      if (lane >= u.lanes) { return; }
      let n0 = j * ${NPT}u;
      let b = lane / u.Q; let q = lane - b * u.Q;
      let h = q / u.P; let g = h / u.HG;
      var s : array<f32, ${NPT}>;
      var A : array<f32, ${NPT}>;
      for (var k = 0u; k < ${NPT}u; k = k + 1u) { s[k] = 0.0; A[k] = aOf(h, n0 + k); }
      for (var tl = 0u; tl < u.L; tl = tl + 1u) {
        if (tl % u.C == 0u) {
          let ck = u.ckOff + ((b * u.nC + tl / u.C) * ${N}u + n0) * u.Q + q;
          for (var k = 0u; k < ${NPT}u; k = k + 1u) { S[ck + k * u.Q] = s[k]; }
        }
        let t = b * u.L + tl;
        let x = X[u.xOff + t * u.xRs + q];
        let dl = X[u.dOff + t * u.dRs + h];
        let bc = u.bcOff + t * u.bcRs + g * ${N}u + n0;
        for (var k = 0u; k < ${NPT}u; k = k + 1u) { s[k] = exp(dl * A[k]) * s[k] + dl * x * X[bc + k]; }
      }
    }`,
  };
}

/** Default threads per scan lane: N/16 states each for large N (fewer registers, more threads in flight). */
export function defaultScanThreads(N: number): number {
  return N >= 32 && N % 16 === 0 ? Math.min(32, N / 16) : 1;
}

/** f32s per state in scanBwdChunk's lane sums: one per lane, and a pad in the lane-fastest layout (scanThreads). */
const laneSumStride = (W: number, layout: ScanThreadLayout) => (layout === 'lane-fastest' ? W + 1 : W);

/**
 * Threads of scanBwdChunk: NS per lane, W lanes (a power of two ≤ 64 dividing the lanes of a B/C
 * group, W·NS ≤ 256), lane sums SL states at a time. Null with the reason when NS does not fit.
 */
export function scanLayout(N: number, lanesPerGroup: number, NS: number, storageBytes: number, layout: ScanThreadLayout = DEFAULT_SCAN_LAYOUT): { W: number; SL: number } | string {
  if (!(Number.isInteger(NS) && NS >= 1 && NS <= 64 && N % NS === 0 && 64 % NS === 0)) return `scan threads per lane ${NS} must divide both the state size ${N} and 64`;
  let W = 64;
  while (W > 1 && lanesPerGroup % W !== 0) W /= 2;
  while (W > 1 && (W * NS > 256 || laneSumStride(W, layout) * (N / NS) > Math.floor(storageBytes / 4) - 2 * W * NS)) W /= 2;
  if (W * NS > 256 || laneSumStride(1, layout) * (N / NS) + 2 * NS > Math.floor(storageBytes / 4)) return `scan threads per lane ${NS}: ${N / NS} states per thread exceed the workgroup memory`;
  return { W, SL: scanSlice(N, W, NS, storageBytes, layout) };
}

/**
 * Workgroup-memory budget (f32s) of scanBwdChunk's lane sums: the states are summed over the W lanes
 * SL at a time (SL = NPT·m, m | NS), so W does not shrink as N grows.
 */
export function scanSlice(N: number, W: number, NS: number, storageBytes: number, layout: ScanThreadLayout = DEFAULT_SCAN_LAYOUT): number {
  const budget = Math.floor(storageBytes / 4) - 2 * W * NS;
  const NPT = N / NS;
  const stride = laneSumStride(W, layout);
  let m = NS;
  while (m > 1 && (NS % m !== 0 || stride * NPT * m > budget)) m--;
  if (stride * NPT * m > budget) throw new Error(`scan: ${W} lanes × ${NPT} states exceed the workgroup memory`);
  return NPT * m;
}

/**
 * Backward of scanFwd over chunk \`c\` of C steps (one dispatch per chunk, last chunk first). A
 * workgroup is W consecutive lanes of one batch row and one B/C group, NS threads per lane (N/NS states each).
 * Each thread reloads its states at the chunk's start from the checkpoints (scanCkpt), recomputes
 * the chunk's states into the scratch at scrOff ([b, step in chunk, n, q]), then runs the reverse
 * recurrence over the chunk, carrying the state gradient between chunks in S at ghOff ([b, n, q]).
 * Outputs: dx (+ D·dy) into duOff, per-lane dΔ into ddOff, the A and D sums (= on the
 * first dispatch, += after), and the block partials of dB, dC for the chunk's steps at pbOff / pcOff
 * ([b, step in chunk, block, n]; bcReduceChunk adds a group's blocks). Memory: B·C·N·Q scratch.
 * `layout`: how the threads map to (lane, slice) (ScanThreadLayout; W, SL from scanLayout with it).
 */
export function scanBwdChunk(N: number, scalarA: boolean, gate: boolean, W: number, NS: number, SL: number, layout: ScanThreadLayout = DEFAULT_SCAN_LAYOUT): Kernel {
  const NPT = N / NS;
  const WG = W * NS;
  const red = NS > 1;
  const NSL = N / SL;
  const th = scanThreads(layout, W, NS, SL);
  const sliceSum = (dst: string) => `
        for (var r = 0u; r < ${NSL}u; r = r + 1u) {
          workgroupBarrier();
          if (n0 >= r * ${SL}u && n0 < (r + 1u) * ${SL}u) {
            for (var k = 0u; k < ${NPT}u; k = k + 1u) { sh[${th.sh('ll', `n0 - r * ${SL}u + k`)}] = tmp[k]; }
          }
          workgroupBarrier();
          for (var n = li; n < ${SL}u; n = n + ${WG}u) {
            var sm = 0.0;
            for (var l = 0u; l < ${W}u; l = l + 1u) { sm = sm + sh[${th.sh('l', 'n')}]; }
            X[${dst} + (row * u.nBlk + blk) * ${N}u + r * ${SL}u + n] = sm;
          }
        }`;
  return {
    key: `scanBwdChunk${N}${scalarA}${gate}${W}_${NS}_${SL}${layoutKey(layout)}`, bufs: ['P', 'X', 'S'],
    fields: [...SCAN_FIELDS, 'dyOff', 'zOff', 'zRs', 'yOff', 'dzOff', 'dzRs', 'duOff', 'duRs', 'ddOff', 'pbOff', 'pcOff', 'nBlk', 'aPartOff', 'dPartOff',
      'C', 'nC', 'c', 'ckOff', 'scrOff', 'ghOff', 'first'],
    body: `${WGSL_ACTIVATIONS}
    var<workgroup> sh : array<f32, ${th.shSize}>;
    ${red ? `var<workgroup> part : array<f32, ${2 * WG}>;` : ''}
    ${aOf(N, scalarA)}
    ${ENTRY(WG)} {
      let wg = w.x + w.y * nw.x;
      let b = wg / u.nBlk; let blk = wg - b * u.nBlk;
      ${th.decl}
      let n0 = j * ${NPT}u;
      let q = blk * ${W}u + ll;
      let h = q / u.P; let g = h / u.HG;
      let Q = u.Q;
      let t0 = u.c * u.C; let t1 = min(u.L, t0 + u.C);
      var A : array<f32, ${NPT}>;
      var s : array<f32, ${NPT}>;
      var gh : array<f32, ${NPT}>;
      var tmp : array<f32, ${NPT}>;
      var gA : array<f32, ${scalarA ? 1 : NPT}>;
      let ck = u.ckOff + ((b * u.nC + u.c) * ${N}u + n0) * Q + q;
      let gho = u.ghOff + (b * ${N}u + n0) * Q + q;
      for (var k = 0u; k < ${NPT}u; k = k + 1u) {
        A[k] = aOf(h, n0 + k);
        s[k] = S[ck + k * Q];
        if (u.first == 1u) { gh[k] = 0.0; } else { gh[k] = S[gho + k * Q]; }
      }
      for (var k = 0u; k < ${scalarA ? 1 : NPT}u; k = k + 1u) { gA[k] = 0.0; }
      // The chunk's states, recomputed from its checkpoint.
      for (var tl = t0; tl < t1; tl = tl + 1u) {
        let t = b * u.L + tl;
        let x = X[u.xOff + t * u.xRs + q];
        let dl = X[u.dOff + t * u.dRs + h];
        let bc = u.bcOff + t * u.bcRs + g * ${N}u + n0;
        let so = u.scrOff + ((b * u.C + tl - t0) * ${N}u + n0) * Q + q;
        for (var k = 0u; k < ${NPT}u; k = k + 1u) {
          s[k] = exp(dl * A[k]) * s[k] + dl * x * X[bc + k];
          S[so + k * Q] = s[k];
        }
      }
      let Dd = P[u.Doff + h];
      var gD = 0.0;
      for (var tl = t1; tl > t0; tl = tl - 1u) {
        let tc = tl - 1u - t0;
        let t = b * u.L + t0 + tc;
        let row = b * u.C + tc;
        let x = X[u.xOff + t * u.xRs + q];
        let dl = X[u.dOff + t * u.dRs + h];
        let bc = u.bcOff + t * u.bcRs + g * ${N}u + n0;
        ${gate ? `let z = X[u.zOff + t * u.zRs + q];
        let dyg = X[u.dyOff + t * Q + q];
        let dy = dyg * silu(z);
        if (j == 0u) { X[u.dzOff + t * u.dzRs + q] = dyg * X[u.yOff + t * Q + q] * dsilu(z); }` : 'let dy = X[u.dyOff + t * Q + q];'}
        gD = gD + dy * x;
        var gu = 0.0;
        if (j == 0u) { gu = dy * Dd; }
        var gdt = 0.0;
        // The previous step's state: the scratch, or the checkpoint at the chunk's first step.
        var hpo = ck;
        if (tc > 0u) { hpo = u.scrOff + ((row - 1u) * ${N}u + n0) * Q + q; }
        for (var k = 0u; k < ${NPT}u; k = k + 1u) {
          let hp = S[hpo + k * Q];
          let gn = gh[k] + dy * X[bc + u.cCol + k];
          let decay = exp(dl * A[k]);
          let gdA = gn * hp * decay;
          gA[${scalarA ? '0u' : 'k'}] = gA[${scalarA ? '0u' : 'k'}] + gdA * dl;
          let Bn = X[bc + k];
          gdt = gdt + gdA * A[k] + gn * Bn * x;
          gu = gu + gn * dl * Bn;
          gh[k] = gn * decay;
          tmp[k] = gn * dl * x;
        }
        ${red ? `workgroupBarrier();
        part[2u * li] = gdt;
        part[2u * li + 1u] = gu;
        workgroupBarrier();
        if (j == 0u) {
          for (var o = 1u; o < ${NS}u; o = o + 1u) { gdt = gdt + part[2u * ${th.thread('ll', 'o')}]; gu = gu + part[2u * ${th.thread('ll', 'o')} + 1u]; }
        }` : ''}
        if (j == 0u) {
          X[u.duOff + t * u.duRs + q] = gu;
          X[u.ddOff + t * Q + q] = gdt;
        }
        ${sliceSum('u.pbOff')}
        let so = u.scrOff + (row * ${N}u + n0) * Q + q;
        for (var k = 0u; k < ${NPT}u; k = k + 1u) { tmp[k] = dy * S[so + k * Q]; }
        ${sliceSum('u.pcOff')}
      }
      for (var k = 0u; k < ${NPT}u; k = k + 1u) { S[gho + k * Q] = gh[k]; }
      ${scalarA ? (red ? `workgroupBarrier();
      part[li] = gA[0];
      workgroupBarrier();
      if (j == 0u) {
        var a = 0.0;
        for (var o = 0u; o < ${NS}u; o = o + 1u) { a = a + part[${th.thread('ll', 'o')}]; }
        let ao = u.aPartOff + b * Q + q;
        if (u.first == 1u) { X[ao] = a; } else { X[ao] = X[ao] + a; }
      }` : `let ao = u.aPartOff + b * Q + q;
      if (u.first == 1u) { X[ao] = gA[0]; } else { X[ao] = X[ao] + gA[0]; }`) : `for (var k = 0u; k < ${NPT}u; k = k + 1u) {
        let ao = u.aPartOff + (b * Q + q) * ${N}u + n0 + k;
        if (u.first == 1u) { X[ao] = gA[k]; } else { X[ao] = X[ao] + gA[k]; }
      }`}
      if (j == 0u) {
        let dp = u.dPartOff + b * Q + q;
        if (u.first == 1u) { X[dp] = gD; } else { X[dp] = X[dp] + gD; }
      }
    }`,
  };
}

/**
 * dB / dC of chunk steps [t0, t0 + len) per (t, group, state): the sum of scanBwdChunk's block
 * partials (rows b·C + step) of the group's blocks, written to rows b·L + t0 + step.
 */
export const bcReduceChunk: Kernel = {
  key: 'bcReduceChunk', bufs: ['X'], fields: ['n', 'G', 'N', 'nBlk', 'pbOff', 'pcOff', 'outOff', 'outRs', 'bCol', 'cCol', 'C', 'len', 'L', 't0'],
  body: `${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    let GN = u.G * u.N;
    let half = u.n / 2u;
    let which = i / half;
    let rest = i - which * half;
    let r = rest / GN; let gn = rest - r * GN; let g = gn / u.N; let n = gn - g * u.N;
    let b = r / u.len; let tc = r - b * u.len;
    let row = b * u.C + tc;
    let per = u.nBlk / u.G;
    var src = u.pbOff; var col = u.bCol;
    if (which == 1u) { src = u.pcOff; col = u.cCol; }
    var s = 0.0;
    for (var j = g * per; j < (g + 1u) * per; j = j + 1u) { s = s + X[src + (row * u.nBlk + j) * u.N + n]; }
    X[u.outOff + (b * u.L + u.t0 + tc) * u.outRs + col + gn] = s;
  }`,
};

/**
 * Masked cross-entropy per row (one workgroup each): loss[t] = mask·(lse − logit[target]) and
 * dlogits = mask · scale · (softmax − onehot), scale = 1 / max(Σ mask, 1) (X[scaleOff]).
 */
export const crossEntropy: Kernel = {
  key: 'crossEntropy', bufs: ['X', 'I'], fields: ['rows', 'V', 'logOff', 'dOff', 'lossOff', 'tgtOff', 'maskOff', 'scaleOff'],
  body: `${REDUCE}
  ${ENTRY(256)} {
    let row = w.x + w.y * nw.x;
    if (row >= u.rows) { return; }
    let base = u.logOff + row * u.V;
    var m = -3.4e38;
    for (var v = li; v < u.V; v = v + 256u) { m = max(m, X[base + v]); }
    m = wgReduce(m, li, true);
    var se = 0.0;
    for (var v = li; v < u.V; v = v + 256u) { se = se + exp(X[base + v] - m); }
    let lse = m + log(wgSum(se, li));
    let mask = X[u.maskOff + row];
    let tgt = u32(I[u.tgtOff + row]);
    if (li == 0u) { X[u.lossOff + row] = mask * (lse - X[base + tgt]); }
    workgroupBarrier(); // dlogits may overwrite the logits in place
    let sc = mask * X[u.scaleOff];
    for (var v = li; v < u.V; v = v + 256u) {
      var p = exp(X[base + v] - lse);
      if (v == tgt) { p = p - 1.0; }
      X[u.dOff + row * u.V + v] = sc * p;
    }
  }`,
};

/** One workgroup: X[dst + I[slotOff]] (=, += by acc) scale · Σ_{i<n} X[src + i] (sqrt of it with root = 1); also into copyOff. */
export const sumTo: Kernel = {
  key: 'sumTo', bufs: ['X', 'I'], fields: ['n', 'srcOff', 'dstOff', 'slotOff', 'scaleOff', 'root', 'copyOff', 'acc'],
  body: `
  ${REDUCE}
  @compute @workgroup_size(256)
  fn main(@builtin(local_invocation_index) li : u32) {
    var s = 0.0;
    for (var i = li; i < u.n; i = i + 256u) { s = s + X[u.srcOff + i]; }
    let total = wgSum(s, li);
    if (li == 0u) {
      var v = total * X[u.scaleOff];
      if (u.root == 1u) { v = sqrt(v); }
      let o = u.dstOff + u32(I[u.slotOff]);
      if (u.acc == 1u) { v = v + X[o]; }
      X[o] = v;
      X[u.copyOff] = v;
    }
  }`,
};

/**
 * Embedding gradient without atomics: the host sorts the batch's rows by token (order, segment starts,
 * segment tokens in I); thread (segment, d) adds the rows of its token: G[emb + tok·D + d] += Σ dh[row, d].
 */
export const embedScatter: Kernel = {
  key: 'embedScatter', bufs: ['G', 'X', 'I'], fields: ['n', 'D', 'nSegOff', 'segStartOff', 'segTokOff', 'orderOff', 'dhOff', 'gOff'],
  body: `${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    let seg = i / u.D; let d = i - seg * u.D;
    if (seg >= u32(I[u.nSegOff])) { return; }
    var s = 0.0;
    for (var r = u32(I[u.segStartOff + seg]); r < u32(I[u.segStartOff + seg + 1u]); r = r + 1u) {
      s = s + X[u.dhOff + u32(I[u.orderOff + r]) * u.D + d];
    }
    let o = u.gOff + u32(I[u.segTokOff + seg]) * u.D + d;
    G[o] = G[o] + s;
  }`,
};

/** G[off + i] = 0 for i < n. */
export const zeroG: Kernel = {
  key: 'zeroG', bufs: ['G'], fields: ['n', 'off'],
  body: `${ENTRY(256)} { ${LINEAR(256)} if (i < u.n) { G[u.off + i] = 0.0; } }`,
};

/** AdamW, pass 1: X[part + wg] = Σ of squares of the gradient's chunk wg. */
export const adamSumsq: Kernel = {
  key: 'adamSumsq', bufs: ['G', 'X'], fields: ['n', 'chunk', 'partOff'],
  body: `
  ${REDUCE}
  ${ENTRY(256)} {
    let wg = w.x + w.y * nw.x;
    let end = min(u.n, (wg + 1u) * u.chunk);
    var s = 0.0;
    for (var i = wg * u.chunk + li; i < end; i = i + 256u) { let g = G[i]; s = s + g * g; }
    let total = wgSum(s, li);
    if (li == 0u) { X[u.partOff + wg] = total; }
  }`,
};

/**
 * AdamW, pass 2, over the flat parameter layout (adamw.ts's formula): hyperparameters at X[hp…]
 * (1−β1, β1, 1−β2, β2, ε, 1−lr·wd, lr/bc1, √bc2, clip, clipOn), ‖g‖ at X[normOff], decay mask at X[decayOff…].
 */
export const adamUpdate: Kernel = {
  key: 'adamUpdate', bufs: ['P', 'G', 'X', 'M', 'V'], fields: ['n', 'hpOff', 'normOff', 'decayOff'],
  body: `${ENTRY(256)} { ${LINEAR(256)}
    if (i >= u.n) { return; }
    let hp = u.hpOff;
    var clip = 1.0;
    if (X[hp + 9u] > 0.5) { clip = min(X[hp + 8u] / (X[u.normOff] + 1e-6), 1.0); }
    let g = G[i] * clip;
    let m1 = M[i] * X[hp + 1u] + g * X[hp];
    let v1 = V[i] * X[hp + 3u] + (g * g) * X[hp + 2u];
    let denom = sqrt(v1) / X[hp + 7u] + X[hp + 4u];
    var p = P[i];
    if (X[u.decayOff + i] > 0.5) { p = p * X[hp + 5u]; }
    P[i] = p - (m1 / denom) * X[hp + 6u];
    M[i] = m1;
    V[i] = v1;
  }`,
};
