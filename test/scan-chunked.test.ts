/**
 * The chunked scan backward (kernels.ts: scanCkpt + scanBwdChunk + bcReduceChunk, states kept only at
 * chunk starts) in chunks of C against the same kernels in one chunk of L steps (every state of the
 * sequence recomputed from the initial one: the path held to tf.js autodiff by compiled-step.test.ts's
 * one-chunk cases), alone, on random inputs: Mamba-1 (per-state A, gate) and Mamba-2 (per-head A,
 * groups), N 16..1024, several chunks, L not a multiple of C, C ≥ L. The lane-fastest thread layout
 * the same way, and its forward (scanFwd), checkpoints and chunked backward also bit for bit against
 * the default state-fastest layout's (the same sums in the same order). The chunked SSD form of the
 * Mamba-2 scan (ssd.ts) against the recurrent kernels in one chunk: y, dx, dB, dC, the D sums lane by
 * lane, dΔ and the A sums head by head (the SSD puts a head's exponent terms in its first lane).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.js';
import { grid } from '../src/model/kernels/webgpu-program.js';
import { Engine } from '../src/train/gpu/engine.js';
import * as K from '../src/train/gpu/kernels.js';
import * as SSD from '../src/train/gpu/ssd.js';
import { mulberry32 } from '../src/util/rng.js';
import { requiresWebGPU } from './helpers/requires.js';

const GPU = await requiresWebGPU();
before(async () => {
  if (!GPU.skip) await initBackend('webgpu');
});

interface Shape { m2: boolean; B: number; L: number; N: number; H: number; Pd: number; G: number; C: number; NS?: number; layout?: K.ScanThreadLayout }

async function compare(sh: Shape): Promise<void> {
  const { m2, B, L, N, H, Pd, G, C } = sh;
  const Q = H * Pd, T = B * L;
  const NS = sh.NS ?? K.defaultScanThreads(N);
  const layout = sh.layout ?? 'state-fastest';
  // The lane-fastest layout is also run beside the default one, which must give the same bits.
  const against = layout === 'state-fastest' ? null : 'state-fastest';
  const rnd = mulberry32(1000 + N + L + C + (m2 ? 7 : 0));
  const r = (lo: number, hi: number) => lo + (hi - lo) * rnd();
  const device = (tf.backend() as unknown as { device: unknown }).device;
  const e = new Engine(device);
  // P: A_log ([H] for Mamba-2, [Q, N] for Mamba-1), D [H].
  const nA = m2 ? H : Q * N;
  const aOff = 0, Doff = nA;
  const Pv = new Float32Array(nA + H);
  for (let i = 0; i < nA; i++) Pv[i] = r(-0.7, 1.4);
  for (let i = 0; i < H; i++) Pv[Doff + i] = r(-1, 1);
  // X inputs: x [T, Q], delta [T, H], B|C [T, 2GN], dy [T, Q], z [T, Q], y [T, Q].
  let top = 0;
  const reg = (n: number) => { const at = top; top += n; return at; };
  const xOff = reg(T * Q), dOff = reg(T * H), bcRs = 2 * G * N, bcOff = reg(T * bcRs), dyOff = reg(T * Q), zOff = reg(T * Q), yOff = reg(T * Q);
  const nIn = top;
  const storage = Number((device as { limits: Record<string, number> }).limits.maxComputeWorkgroupStorageSize ?? 16384);
  const lay = K.scanLayout(N, Q / G, NS, storage, layout);
  if (typeof lay === 'string') throw new Error(lay);
  const layRef = against ? K.scanLayout(N, Q / G, NS, storage, against) : lay;
  if (typeof layRef === 'string') throw new Error(layRef);
  assert.equal(layRef.W, lay.W, 'both layouts must make blocks of the same lanes for the same partial sums');
  const nBlk = Q / lay.W;
  const nC = Math.ceil(L / C);
  const outs = () => ({ du: reg(T * Q), dd: reg(T * Q), dz: reg(T * Q), bc: reg(T * bcRs), aPart: reg(B * Q * (m2 ? 1 : N)), dPart: reg(B * Q) });
  const o1 = outs(), o2 = outs(), o3 = outs();
  const pbOne = reg(B * L * nBlk * N), pcOne = reg(B * L * nBlk * N);
  const pbNew = reg(B * C * nBlk * N), pcNew = reg(B * C * nBlk * N);
  // The forward's y and gated y of each layout.
  const fwd = [{ y: reg(T * Q), yg: reg(T * Q) }, { y: reg(T * Q), yg: reg(T * Q) }] as const;
  const X = new Float32Array(top);
  for (let i = 0; i < nIn; i++) X[i] = r(-1, 1);
  for (let i = 0; i < T * H; i++) X[dOff + i] = r(0.01, 0.6);
  // S: the reference's checkpoint, scratch and carried gradient (one chunk of L), then the chunked path's.
  const ck1 = 0, scr1 = ck1 + B * N * Q, gh1 = scr1 + B * L * N * Q;
  const ckOff = gh1 + B * N * Q, scrOff = ckOff + B * nC * N * Q, ghOff = scrOff + B * C * N * Q;
  const ckNeed = B * nC * N * Q;
  const sNeed = ghOff + B * N * Q + (against ? ckNeed : 0);

  const scan = { lanes: B * Q, Q, L, P: m2 ? Pd : 1, HG: H / G, xOff, xRs: Q, dOff, dRs: H, bcOff, bcRs, cCol: G * N, aOff, aMode: 0, Doff, k: 0 };
  const gate = !m2;
  const io = { dyOff, zOff: gate ? zOff : 0, zRs: gate ? Q : 0, yOff: gate ? yOff : 0, dzRs: gate ? Q : 0, duRs: Q };
  e.begin('old');
  e.op(K.scanCkpt(N, m2, NS, layout), { ...scan, C: L, nC: 1, ckOff: ck1 }, grid(Math.ceil((B * Q * NS) / 64)));
  e.op(K.scanBwdChunk(N, m2, gate, lay.W, NS, lay.SL, layout), { ...scan, ...io, dzOff: o1.dz, duOff: o1.du, ddOff: o1.dd, pbOff: pbOne, pcOff: pcOne, nBlk, aPartOff: o1.aPart, dPartOff: o1.dPart, C: L, nC: 1, c: 0, ckOff: ck1, scrOff: scr1, ghOff: gh1, first: 1 }, grid(B * nBlk));
  e.op(K.bcReduceChunk, { n: 2 * T * G * N, G, N, nBlk, pbOff: pbOne, pcOff: pcOne, outOff: o1.bc, outRs: bcRs, bCol: 0, cCol: G * N, C: L, len: L, L, t0: 0 }, grid(Math.ceil((2 * T * G * N) / 256)));
  // The chunked path of a layout, its checkpoints left at ckAt.
  const chunked = (name: string, order: K.ScanThreadLayout, W: number, SL: number, o: ReturnType<typeof outs>, ckAt: number) => {
    e.begin(name);
    e.op(K.scanCkpt(N, m2, NS, order), { ...scan, C, nC, ckOff: ckAt }, grid(Math.ceil((B * Q * NS) / 64)));
    for (let c = nC - 1; c >= 0; c--) {
      const len = Math.min(L, (c + 1) * C) - c * C;
      e.op(K.scanBwdChunk(N, m2, gate, W, NS, SL, order), { ...scan, ...io, dzOff: o.dz, duOff: o.du, ddOff: o.dd, pbOff: pbNew, pcOff: pcNew, nBlk, aPartOff: o.aPart, dPartOff: o.dPart, C, nC, c, ckOff: ckAt, scrOff, ghOff, first: c === nC - 1 ? 1 : 0 }, grid(B * nBlk));
      const n = 2 * B * len * G * N;
      e.op(K.bcReduceChunk, { n, G, N, nBlk, pbOff: pbNew, pcOff: pcNew, outOff: o.bc, outRs: bcRs, bCol: 0, cCol: G * N, C, len, L, t0: c * C }, grid(Math.ceil(n / 256)));
    }
  };
  chunked('new', layout, lay.W, lay.SL, o2, ckOff);
  const fwdOf = (order: K.ScanThreadLayout, f: { y: number; yg: number }) =>
    e.op(K.scanFwd(N, m2, gate, NS, order), { ...scan, yOff: f.y, ygOff: f.yg, zOff: gate ? zOff : 0, zRs: gate ? Q : 0 }, grid(Math.ceil((B * Q * NS) / 64)));
  if (against) {
    chunked('ref', against, layRef.W, layRef.SL, o3, sNeed - ckNeed);
    e.begin('fwd');
    fwdOf(layout, fwd[0]);
    fwdOf(against, fwd[1]);
  }
  e.alloc('P', Pv.length);
  e.alloc('X', top);
  e.alloc('S', sNeed);
  e.finish();
  try {
    e.write('P', 0, Pv);
    e.write('X', 0, X);
    e.run('old');
    e.run('new');
    if (against) {
      e.run('ref');
      e.run('fwd');
      // Bit for bit: the forward, the checkpoints, and every output of the chunked backward.
      const same = async (what: string, buf: 'X' | 'S', a: number, b: number, n: number) => {
        const x = await e.read(buf, a, n), y = await e.read(buf, b, n);
        const i = x.findIndex((v, k) => !Object.is(v, y[k]));
        assert.equal(i, -1, `${what}[${i}]: ${x[i]} (${layout}) vs ${y[i]} (${against})`);
      };
      await same('y', 'X', fwd[0].y, fwd[1].y, T * Q);
      if (gate) await same('gated y', 'X', fwd[0].yg, fwd[1].yg, T * Q);
      await same('checkpoints', 'S', ckOff, sNeed - ckNeed, ckNeed);
      for (const [name, n] of [['du', T * Q], ['dd', T * Q], ['dz', gate ? T * Q : 0], ['bc', T * bcRs], ['aPart', B * Q * (m2 ? 1 : N)], ['dPart', B * Q]] as const) {
        if (n) await same(name, 'X', o2[name], o3[name], n);
      }
    }
    for (const [name, n] of [['du', T * Q], ['dd', T * Q], ['dz', gate ? T * Q : 0], ['bc', T * bcRs], ['aPart', B * Q * (m2 ? 1 : N)], ['dPart', B * Q]] as const) {
      if (!n) continue;
      const want = await e.read('X', o1[name], n), got = await e.read('X', o2[name], n);
      let scale = 1e-12, err = 0;
      for (let i = 0; i < n; i++) scale = Math.max(scale, Math.abs(want[i]!));
      for (let i = 0; i < n; i++) {
        assert.ok(Number.isFinite(got[i]!), `${name}[${i}] not finite`);
        err = Math.max(err, Math.abs(got[i]! - want[i]!));
      }
      assert.ok(scale > 1e-6, `${name}: the reference is all zero, the test would prove nothing`);
      assert.ok(err / scale <= 1e-5, `${name}: relative error ${(err / scale).toExponential(2)} (W ${lay.W}, NS ${NS}, SL ${lay.SL})`);
    }
  } finally {
    e.destroy();
  }
}

const SHAPES: (Shape & { what: string })[] = [
  { what: 'mamba1 N16, 3 chunks, L not a multiple of C', m2: false, B: 2, L: 11, N: 16, H: 8, Pd: 1, G: 1, C: 4 },
  { what: 'mamba1 N16, one chunk (C ≥ L)', m2: false, B: 2, L: 9, N: 16, H: 8, Pd: 1, G: 1, C: 16 },
  { what: 'mamba1 N8, one thread per lane', m2: false, B: 3, L: 10, N: 8, H: 4, Pd: 1, G: 1, C: 3 },
  { what: 'mamba1 N256', m2: false, B: 1, L: 7, N: 256, H: 4, Pd: 1, G: 1, C: 3 },
  { what: 'mamba2 N64, 2 groups', m2: true, B: 2, L: 13, N: 64, H: 4, Pd: 4, G: 2, C: 5 },
  { what: 'mamba2 N256, C = L', m2: true, B: 2, L: 6, N: 256, H: 2, Pd: 8, G: 1, C: 6 },
  { what: 'mamba2 N512, 4 chunks', m2: true, B: 2, L: 10, N: 512, H: 2, Pd: 8, G: 1, C: 3 },
  { what: 'mamba1 N512, 2 threads per lane (many states per thread, sliced lane sums)', m2: false, B: 1, L: 5, N: 512, H: 8, Pd: 1, G: 1, C: 2, NS: 2 },
  { what: 'mamba2 N1024', m2: true, B: 1, L: 5, N: 1024, H: 1, Pd: 8, G: 1, C: 2 },
  // The lane-fastest thread layout: 4 to 64 lanes per workgroup (more or fewer than a warp), sliced lane sums (N 512).
  { what: 'lane-fastest, mamba1 N16, 4 threads per lane, 3 chunks, L not a multiple of C', m2: false, B: 2, L: 11, N: 16, H: 8, Pd: 1, G: 1, C: 4, NS: 4, layout: 'lane-fastest' },
  { what: 'lane-fastest, mamba1 N256', m2: false, B: 1, L: 7, N: 256, H: 4, Pd: 1, G: 1, C: 3, layout: 'lane-fastest' },
  { what: 'lane-fastest, mamba2 N64, 2 groups', m2: true, B: 2, L: 13, N: 64, H: 4, Pd: 4, G: 2, C: 5, layout: 'lane-fastest' },
  { what: 'lane-fastest, mamba2 N64, 64 lanes per workgroup', m2: true, B: 1, L: 6, N: 64, H: 4, Pd: 16, G: 1, C: 4, layout: 'lane-fastest' },
  { what: 'lane-fastest, mamba2 N256, 16 lanes per workgroup', m2: true, B: 2, L: 7, N: 256, H: 2, Pd: 8, G: 1, C: 3, layout: 'lane-fastest' },
  { what: 'lane-fastest, mamba2 N512, 4 chunks', m2: true, B: 2, L: 10, N: 512, H: 2, Pd: 8, G: 1, C: 3, layout: 'lane-fastest' },
  { what: 'lane-fastest, mamba1 N512, 2 threads per lane (sliced lane sums)', m2: false, B: 1, L: 5, N: 512, H: 8, Pd: 1, G: 1, C: 2, NS: 2, layout: 'lane-fastest' },
];

for (const s of SHAPES) {
  test(`chunked scan backward, ${s.what}: equals one chunk of L`, GPU, async () => {
    await compare(s);
  });
}

interface SsdShape { B: number; L: number; N: number; H: number; Pd: number; G: number; CL: number; aMode: 0 | 1; /** The A sums' tolerance (default 1e-5). */ tolA?: number }

/** One Mamba-2 scan through the recurrent kernels (one chunk of L) and through ssd.ts; every output compared. */
async function compareSsd(sh: SsdShape): Promise<void> {
  const { B, L, N, H, Pd, G, CL, aMode, tolA = 1e-5 } = sh;
  const Q = H * Pd, T = B * L;
  const rnd = mulberry32(77 + N + L + CL + 13 * aMode);
  const r = (lo: number, hi: number) => lo + (hi - lo) * rnd();
  const device = (tf.backend() as unknown as { device: unknown }).device;
  const e = new Engine(device);
  const aOff = 0, Doff = H;
  const Pv = new Float32Array(2 * H);
  // aMode 1 is mimetic init's A = −exp(−k·A_log_param), k 2 here.
  for (let i = 0; i < H; i++) Pv[i] = aMode === 0 ? r(-0.7, 1.4) : r(-0.6, 0.8);
  for (let i = 0; i < H; i++) Pv[Doff + i] = r(-1, 1);
  let top = 0;
  const reg = (n: number) => { const at = top; top += n; return at; };
  const xOff = reg(T * Q), dOff = reg(T * H), bcRs = 2 * G * N, bcOff = reg(T * bcRs), dyOff = reg(T * Q);
  const nIn = top;
  const storage = Number((device as { limits: Record<string, number> }).limits.maxComputeWorkgroupStorageSize ?? 16384);
  const NS = K.defaultScanThreads(N);
  const lay = K.scanLayout(N, Q / G, NS, storage);
  if (typeof lay === 'string') throw new Error(lay);
  const nBlk = Q / lay.W;
  const outs = () => ({ y: reg(T * Q), du: reg(T * Q), dd: reg(T * Q), bc: reg(T * bcRs), aPart: reg(B * Q), dPart: reg(B * Q) });
  const ref = outs(), got = outs();
  const pb = reg(T * nBlk * N), pc = reg(T * nBlk * N);
  const X = new Float32Array(top);
  for (let i = 0; i < nIn; i++) X[i] = r(-1, 1);
  for (let i = 0; i < T * H; i++) X[dOff + i] = r(0.01, 0.6);
  const ck = 0, scr = B * N * Q, gh = scr + T * N * Q, ssdAt = gh + B * N * Q;
  const plan = SSD.ssdScratch({ B, L, H, G, N, P: Pd, CL });
  const offs = Object.fromEntries(Object.entries(plan.offs).map(([k, v]) => [k, v + ssdAt]));
  const scan = { lanes: B * Q, Q, L, P: Pd, HG: H / G, xOff, xRs: Q, dOff, dRs: H, bcOff, bcRs, cCol: G * N, aOff, aMode, Doff, k: aMode ? 2 : 0 };
  e.begin('rec');
  e.op(K.scanFwd(N, true, false, NS), { ...scan, yOff: ref.y, ygOff: 0, zOff: 0, zRs: 0 }, grid(Math.ceil((B * Q * NS) / 64)));
  e.op(K.scanCkpt(N, true, NS), { ...scan, C: L, nC: 1, ckOff: ck }, grid(Math.ceil((B * Q * NS) / 64)));
  e.op(K.scanBwdChunk(N, true, false, lay.W, NS, lay.SL), { ...scan, dyOff, zOff: 0, zRs: 0, yOff: 0, dzOff: 0, dzRs: 0, duOff: ref.du, duRs: Q, ddOff: ref.dd, pbOff: pb, pcOff: pc, nBlk, aPartOff: ref.aPart, dPartOff: ref.dPart, C: L, nC: 1, c: 0, ckOff: ck, scrOff: scr, ghOff: gh, first: 1 }, grid(B * nBlk));
  e.op(K.bcReduceChunk, { n: 2 * T * G * N, G, N, nBlk, pbOff: pb, pcOff: pc, outOff: ref.bc, outRs: bcRs, bCol: 0, cCol: G * N, C: L, len: L, L, t0: 0 }, grid(Math.ceil((2 * T * G * N) / 256)));
  e.begin('ssd');
  const f = { ...scan, B, H, G, N, CL, nC: plan.nC, ...offs };
  const op = (k: Parameters<Engine['op']>[0], v: Record<string, number>, g: [number, number, number]) => e.op(k, v, g);
  SSD.ssdForward(op, { ...f, yOff: got.y }, grid);
  SSD.ssdBackward(op, { ...f, dyOff, duOff: got.du, duRs: Q, dbcOff: got.bc, dbcRs: bcRs, dbCol: 0, dcCol: G * N, ddOff: got.dd, aPartOff: got.aPart, dPartOff: got.dPart }, grid);
  e.alloc('P', Pv.length);
  e.alloc('X', top);
  e.alloc('S', ssdAt + plan.total);
  e.finish();
  try {
    e.write('P', 0, Pv);
    e.write('X', 0, X);
    e.run('rec');
    e.run('ssd');
    // dΔ and the A sums per head: the recurrent kernel spreads them over the head's lanes differently.
    const perHead = (v: Float32Array) => Float32Array.from({ length: v.length / Pd }, (_, i) => v.subarray(i * Pd, (i + 1) * Pd).reduce((a, b) => a + b, 0));
    const checks: [string, number, boolean, number][] = [['y', T * Q, false, 2e-6], ['du', T * Q, false, 1e-5], ['bc', T * bcRs, false, 1e-5], ['dPart', B * Q, false, 1e-5], ['dd', T * Q, true, 1e-5], ['aPart', B * Q, true, tolA]];
    for (const [name, n, heads, tol] of checks) {
      let want = await e.read('X', ref[name as keyof typeof ref], n), have = await e.read('X', got[name as keyof typeof got], n);
      if (heads) { want = perHead(want); have = perHead(have); }
      let scale = 1e-12, err = 0;
      for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
      for (let i = 0; i < want.length; i++) {
        assert.ok(Number.isFinite(have[i]!), `${name}[${i}] not finite`);
        err = Math.max(err, Math.abs(have[i]! - want[i]!));
      }
      assert.ok(scale > 1e-6, `${name}: the reference is all zero, the test would prove nothing`);
      assert.ok(err / scale <= tol, `${name}: relative error ${(err / scale).toExponential(2)} (chunk ${CL}, ${plan.nC} chunks)`);
    }
  } finally {
    e.destroy();
  }
}

const SSD_SHAPES: (SsdShape & { what: string })[] = [
  { what: 'N16, 3 chunks of 4 over L 11', B: 2, L: 11, N: 16, H: 4, Pd: 4, G: 1, CL: 4, aMode: 0 },
  { what: 'N16, one chunk (CL ≥ L), A_log_param', B: 2, L: 9, N: 16, H: 2, Pd: 8, G: 1, CL: 64, aMode: 1 },
  { what: 'N64, 2 groups, 3 chunks of 5 over L 13, A_log_param', B: 2, L: 13, N: 64, H: 4, Pd: 4, G: 2, CL: 5, aMode: 1 },
  { what: 'N64, chunks of 1 step', B: 1, L: 6, N: 64, H: 2, Pd: 8, G: 1, CL: 1, aMode: 0 },
  { what: 'N512, 2 groups, 4 chunks of 3 over L 10', B: 2, L: 10, N: 512, H: 4, Pd: 8, G: 2, CL: 3, aMode: 0 },
  { what: 'N512, one chunk, A_log_param', B: 1, L: 7, N: 512, H: 2, Pd: 16, G: 1, CL: 64, aMode: 1 },
  { what: 'N1024, 2 chunks of 4 over L 5', B: 1, L: 5, N: 1024, H: 1, Pd: 8, G: 1, CL: 4, aMode: 0 },
  // State and head dims not multiples of 4: the 2×2 and 1×1 register tiles of the chunk-state kernels.
  { what: 'N6, head dim 6, 3 chunks of 4 over L 9', B: 2, L: 9, N: 6, H: 2, Pd: 6, G: 1, CL: 4, aMode: 0 },
  { what: 'N5, head dim 3, 2 groups, 3 chunks of 3 over L 8, A_log_param', B: 2, L: 8, N: 5, H: 4, Pd: 3, G: 2, CL: 3, aMode: 1 },
  // The tiled ssdLM / ssdDBC (tiles of 16, 32 or 64 steps and states, 16 lanes staged per round): partial tiles of steps, states and lanes.
  { what: 'N72 (a partial second state tile), head dim 24 (a partial second lane round), 2 groups, chunks of 40 over L 90 (a partial second step tile, a 10-step last chunk), A_log_param', B: 2, L: 90, N: 72, H: 4, Pd: 24, G: 2, CL: 40, aMode: 1 },
  { what: 'N40, head dim 16, chunks of 70 over L 75 (three step tiles, a 5-step last chunk)', B: 1, L: 75, N: 40, H: 2, Pd: 16, G: 1, CL: 70, aMode: 0 },
  // The A sums over 256-step chunks differ from the recurrent ones by ~2e-5 (the untiled kernels' too): f32 sums of 256 terms, both forms.
  { what: 'N16, head dim 8, chunks of 256 (8 step tiles) over L 260', B: 1, L: 260, N: 16, H: 2, Pd: 8, G: 1, CL: 256, aMode: 0, tolA: 5e-5 },
];

for (const s of SSD_SHAPES) {
  test(`ssd scan (forward and backward), ${s.what}: equals the recurrent scan`, GPU, async () => {
    await compareSsd(s);
  });
}
