/**
 * Mimetic scores: the math on synthetic arrays (properties a wrong formula would break), the
 * probe, the layer spec, and on the fixtures: maskOnes / lookbehind computed from transformers'
 * golden attention and decay maps must equal what the audit computes through the forward pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { SafetensorsReader } from '../src/checkpoint/safetensors.js';
import type { MambaConfig } from '../src/checkpoint/config.js';
import { initBackend } from '../src/model/backend.js';
import { channelAttention, internalsToTf } from '../src/analysis/attention.js';
import { runCheckpoint } from '../src/analysis/capture.js';
import {
  bcWeights, cbIdentityPair, cbRowCosPair, cbIdentity, maskOnes, lookbehind, mimeticScore, rankLayers, cbGramMap,
} from '../src/analysis/scores.js';
import { defaultProbe, validateProbe, readProbeFile, probeFromOptions, probeWarning, repetitionPeriod, MIN_PERIOD } from '../src/analysis/probe.js';
import { auditCheckpoint, channelStats, channelStatsJs, parseLayerSpec, readBC, type LayerAudit } from '../src/analysis/audit.js';
import { UserError } from '../src/util/errors.js';
import { Rng } from '../src/util/rng.js';
import { writeSynthCheckpoint, tmpDir } from './helpers/synth-checkpoint.js';
import { goldenIds } from './helpers/golden.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

function randn(n: number, rng: Rng): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal();
  return a;
}

/** N orthonormal rows in R^E (Gram–Schmidt on Gaussian rows). */
function orthonormalRows(N: number, E: number, rng: Rng): Float64Array {
  const W = randn(N * E, rng);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < i; j++) {
      let d = 0;
      for (let e = 0; e < E; e++) d += W[i * E + e]! * W[j * E + e]!;
      for (let e = 0; e < E; e++) W[i * E + e]! -= d * W[j * E + e]!;
    }
    let n = 0;
    for (let e = 0; e < E; e++) n += W[i * E + e]! ** 2;
    for (let e = 0; e < E; e++) W[i * E + e]! /= Math.sqrt(n);
  }
  return W;
}

/** tr(M) / (√N ‖M‖_F) computed directly on the E×E matrix M = W_Cᵀ W_B. */
function cbIdentityDirect(WB: ArrayLike<number>, WC: ArrayLike<number>, N: number, E: number): number {
  let tr = 0, fro = 0;
  for (let a = 0; a < E; a++) {
    for (let b = 0; b < E; b++) {
      let m = 0;
      for (let n = 0; n < N; n++) m += WC[n * E + a]! * WB[n * E + b]!;
      if (a === b) tr += m;
      fro += m * m;
    }
  }
  return tr / (Math.sqrt(N) * Math.sqrt(fro));
}

const scale = (a: Float64Array, c: number) => a.map((v) => v * c);

test('cbIdentity is 1 for W_C = W_B with orthonormal rows, −1 for W_C = −W_B, and scale-invariant', () => {
  const rng = new Rng(1);
  for (const [N, E] of [[4, 4], [8, 32], [16, 48]] as const) {
    const Q = orthonormalRows(N, E, rng);
    assert.ok(Math.abs(cbIdentityPair(Q, Q, N, E) - 1) < 1e-12);
    assert.ok(Math.abs(cbIdentityPair(Q, scale(Q, -1), N, E) + 1) < 1e-12);
    // A positive multiple of a rank-N projection, whatever the scales of W_B and W_C.
    assert.ok(Math.abs(cbIdentityPair(scale(Q, 3.5), scale(Q, 0.02), N, E) - 1) < 1e-12);
    const WB = randn(N * E, rng), WC = randn(N * E, rng);
    const v = cbIdentityPair(WB, WC, N, E);
    assert.ok(Math.abs(cbIdentityPair(scale(WB, 7), scale(WC, 0.3), N, E) - v) < 1e-12, 'scale-invariant');
    assert.ok(Math.abs(cbIdentityPair(scale(WB, -7), scale(WC, 0.3), N, E) + v) < 1e-12, 'odd in the sign of one factor');
  }
});

test('cbIdentity from N×N products equals the direct E×E computation, and stays in [−1, 1]', () => {
  const rng = new Rng(2);
  for (const [N, E] of [[1, 3], [3, 5], [5, 7], [6, 4], [8, 16]] as const) {
    for (let k = 0; k < 5; k++) {
      const WB = randn(N * E, rng);
      // Mix of correlated and independent W_C, so values spread over the range.
      const WC = WB.map((b) => (k - 2) * 0.5 * b + rng.normal());
      const fast = cbIdentityPair(WB, WC, N, E), direct = cbIdentityDirect(WB, WC, N, E);
      assert.ok(Math.abs(fast - direct) < 1e-10, `N=${N} E=${E}: ${fast} vs ${direct}`);
      assert.ok(fast >= -1 - 1e-12 && fast <= 1 + 1e-12);
    }
  }
  // W_C = W_B with non-orthonormal rows: M is PSD but not a multiple of a projection, so < 1.
  const W = randn(4 * 10, rng);
  const v = cbIdentityPair(W, W, 4, 10);
  assert.ok(v > 0.5 && v < 1 - 1e-3, `PSD non-projection gives ${v}`);
  assert.equal(cbIdentityPair(new Float64Array(12), new Float64Array(12), 3, 4), 0, 'zero weights score 0');
});

test('cbIdentity of independent random weights is O(1/√(N·E))', () => {
  const rng = new Rng(3);
  const N = 16, E = 256;
  let sumSq = 0;
  const trials = 20;
  for (let k = 0; k < trials; k++) {
    const v = cbIdentityPair(randn(N * E, rng), randn(N * E, rng), N, E);
    assert.ok(Math.abs(v) < 6 / Math.sqrt(N * E), `|${v}| too large for independent weights`);
    sumSq += v * v;
  }
  // The spread itself is about 1/√(N·E) (not, e.g., 0 from a formula that ignores the data).
  const rms = Math.sqrt(sumSq / trials);
  assert.ok(rms > 0.3 / Math.sqrt(N * E) && rms < 3 / Math.sqrt(N * E), `rms ${rms}`);
});

test('cbRowCos: 1 for proportional rows, −1 for opposite rows, hand-computed otherwise', () => {
  const rng = new Rng(4);
  const WB = randn(6 * 9, rng);
  assert.ok(Math.abs(cbRowCosPair(WB, scale(WB, 2.5), 6, 9) - 1) < 1e-12);
  assert.ok(Math.abs(cbRowCosPair(WB, scale(WB, -0.1), 6, 9) + 1) < 1e-12);
  // Rows (1,0),(1,1) against (0,1),(1,1): cosines 0 and 1 → mean 0.5.
  assert.ok(Math.abs(cbRowCosPair([1, 0, 1, 1], [0, 1, 1, 1], 2, 2) - 0.5) < 1e-12);
});

test('bcWeights slices x_proj (Mamba-1) and the B/C blocks of in_proj per group (Mamba-2)', () => {
  // Row r of the projection holds the value r in every column, so slices are recognisable.
  const rows = (R: number, E: number) => ({ shape: [R, E], data: Float32Array.from({ length: R * E }, (_, i) => Math.floor(i / E)) });
  const m1 = { arch: 'mamba1', stateSize: 4, intermediateSize: 6, timeStepRank: 3, hiddenSize: 5 } as MambaConfig;
  const b1 = bcWeights(m1, { 'mixer.x_proj.weight': rows(3 + 8, 6) });
  assert.equal(b1.pairs.length, 1);
  assert.equal(b1.E, 6);
  assert.deepEqual([...b1.pairs[0]!.WB].filter((_, i) => i % 6 === 0), [3, 4, 5, 6]);
  assert.deepEqual([...b1.pairs[0]!.WC].filter((_, i) => i % 6 === 0), [7, 8, 9, 10]);
  const di = 8, G = 2, N = 3, H = 4, E = 5;
  const m2 = { arch: 'mamba2', stateSize: N, intermediateSize: di, nGroups: G, numHeads: H, hiddenSize: E } as MambaConfig;
  const b2 = bcWeights(m2, { 'mixer.in_proj.weight': rows(2 * di + 2 * G * N + H, E) });
  assert.equal(b2.pairs.length, 2);
  assert.equal(b2.E, E);
  const first = (a: Float32Array) => [...a].filter((_, i) => i % E === 0);
  assert.deepEqual(first(b2.pairs[0]!.WB), [16, 17, 18]);
  assert.deepEqual(first(b2.pairs[1]!.WB), [19, 20, 21]);
  assert.deepEqual(first(b2.pairs[0]!.WC), [22, 23, 24]);
  assert.deepEqual(first(b2.pairs[1]!.WC), [25, 26, 27]);
  // Group mean: one group identical (score 1 with orthonormal rows), one opposite (−1) → 0.
  const rng = new Rng(5);
  const Q = Float32Array.from(orthonormalRows(3, 5, rng));
  const Qn = Q.map((v) => -v);
  assert.ok(Math.abs(cbIdentity({ N: 3, E: 5, pairs: [{ WB: Q, WC: Q }, { WB: Q, WC: Qn }] })) < 1e-7);
  // W_C W_Bᵀ of identical orthonormal rows is the identity.
  const g = cbGramMap({ N: 3, E: 5, pairs: [{ WB: Q, WC: Q }] });
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) assert.ok(Math.abs(g[i * 3 + j]! - (i === j ? 1 : 0)) < 1e-6);
});

/** A causal [B, L, L] map from f(b, t, s). */
function causalMap(B: number, L: number, f: (b: number, t: number, s: number) => number): Float32Array {
  const a = new Float32Array(B * L * L);
  for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) for (let s = 0; s <= t; s++) a[(b * L + t) * L + s] = f(b, t, s);
  return a;
}

test('maskOnes: 1 without decay, the mean over s ≤ t otherwise', () => {
  assert.equal(maskOnes(causalMap(3, 7, () => 1), 3, 7), 1);
  // Decay ρ^(t−s): mean over the 10 pairs of a 4×4 causal map, by hand.
  const rho = 0.5;
  const expect = (4 * 1 + 3 * 0.5 + 2 * 0.25 + 1 * 0.125) / 10;
  assert.ok(Math.abs(maskOnes(causalMap(2, 4, (_b, t, s) => rho ** (t - s)), 2, 4) - expect) < 1e-12);
  // Entries above the diagonal are ignored.
  const m = causalMap(1, 3, () => 1);
  m[0 * 3 + 2] = 99;
  assert.equal(maskOnes(m, 1, 3), 1);
});

test('maskOnes is 1 through the attention code when A = 0 (no decay), below 1 otherwise', async () => {
  await initBackend('cpu');
  const rng = new Rng(6);
  const Bsz = 2, L = 9, D = 5, N = 3;
  const mk = (shape: number[], f: () => number) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, f), shape);
  for (const Aval of [0, -0.7]) {
    const int = { x: mk([Bsz, L, D], () => rng.normal()), delta: mk([Bsz, L, D], () => 0.1 + rng.next()), A: mk([D, N], () => Aval), B: mk([Bsz, L, N], () => rng.normal()), C: mk([Bsz, L, N], () => rng.normal()), D: mk([D], () => 1) };
    const st = await channelStats('mamba1', int, null);
    for (const v of st.maskOnes) Aval === 0 ? assert.ok(Math.abs(v - 1) < 1e-6) : assert.ok(v < 0.9);
    assert.equal(st.lookbehind, null);
    tf.dispose(Object.values(int));
  }
});

test('per-channel statistics: the plain-JS walk equals the tf.js computation (Mamba-1, Mamba-2 with 2 groups)', async () => {
  await initBackend('wasm');
  const rng = new Rng(7);
  const Bsz = 2, L = 20;
  const plain = (shape: number[], f: () => number) => ({ shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, f) });
  const cases = [
    { kind: 'mamba1' as const, D: 6, A: plain([6, 4], () => -0.2 - 3 * rng.next()), B: plain([Bsz, L, 4], () => rng.normal()), C: plain([Bsz, L, 4], () => rng.normal()) },
    { kind: 'mamba2' as const, D: 4, A: plain([4], () => -0.2 - 3 * rng.next()), B: plain([Bsz, L, 2, 3], () => rng.normal()), C: plain([Bsz, L, 2, 3], () => rng.normal()) },
  ];
  for (const c of cases) {
    const p = { delta: plain([Bsz, L, c.D], () => 0.01 + 0.5 * rng.next()), A: c.A, B: c.B, C: c.C, x: plain([1], () => 0), D: plain([1], () => 0) };
    for (const period of [7, 1, null]) {
      const js = channelStatsJs(c.kind, p, period);
      const int = internalsToTf(p);
      const ref = await channelStats(c.kind, int, period, 2);
      tf.dispose(Object.values(int));
      for (let d = 0; d < c.D; d++) {
        assert.ok(Math.abs(js.maskOnes[d]! - ref.maskOnes[d]!) < 1e-5, `${c.kind} maskOnes[${d}] ${js.maskOnes[d]} vs ${ref.maskOnes[d]}`);
        if (period === null) continue;
        assert.ok(Math.abs(js.lookbehind![d]! - ref.lookbehind![d]!) < 1e-5, `${c.kind} period ${period} lookbehind[${d}]`);
      }
      assert.equal(js.lookbehind === null, period === null);
      // Not degenerate: decay present, channels differ.
      assert.ok(js.maskOnes.every((v) => v > 0.01 && v < 0.99));
      assert.ok(new Set(js.maskOnes).size === c.D);
    }
  }
});

test('lookbehind: 1 when all attention is one period back, 0 when it is all on the diagonal, null without a period', () => {
  const B = 2, L = 12, m = 4;
  const back = causalMap(B, L, (_b, t, s) => (t >= m && s === t - m ? -3 : t < m && s === t ? 1 : 0));
  assert.ok(Math.abs(lookbehind(back, B, L, m)! - 1) < 1e-12);
  const next = causalMap(B, L, (_b, t, s) => (t >= m && s === t - m + 1 ? 2 : t < m && s === t ? 1 : 0));
  assert.ok(Math.abs(lookbehind(next, B, L, m)! - 1) < 1e-12);
  const diag = causalMap(B, L, (_b, t, s) => (s === t ? 1 : 0));
  assert.equal(lookbehind(diag, B, L, m), 0);
  assert.equal(lookbehind(diag, B, L, null), null);
  // Uniform attention over s ≤ t: row t contributes 2 / (t + 1); mean over t ∈ [m, L).
  const uni = causalMap(B, L, () => 1);
  let e = 0;
  for (let t = m; t < L; t++) e += 2 / (t + 1);
  assert.ok(Math.abs(lookbehind(uni, B, L, m)! - e / (L - m)) < 1e-12);
  assert.throws(() => lookbehind(uni, B, L, L));
});

test('mimetic score and ranking', () => {
  assert.ok(Math.abs(mimeticScore({ maskOnes: 0.9, cbIdentity: -0.5, lookbehind: 0.3 }) - 0.4) < 1e-12);
  assert.ok(Math.abs(mimeticScore({ maskOnes: 0.9, cbIdentity: 0.5, lookbehind: null }) - 0.7) < 1e-12);
  const base = { cbIdentity: 0, cbRowCos: 0, maskOnes: 0, lookbehind: null };
  const ranked = rankLayers([
    { ...base, layer: 0, mimetic: 0.2 }, { ...base, layer: 1, mimetic: 0.9 }, { ...base, layer: 2, mimetic: 0.5 }, { ...base, layer: 3, mimetic: 0.5 },
  ]);
  assert.deepEqual(ranked.map((l) => l.rank), [4, 1, 2, 3]);
});

test('default probe: seeded, in the vocabulary, period ⌊L/2⌋; options reshape it', () => {
  const p = defaultProbe(1000);
  assert.equal(p.ids.length, 4);
  assert.equal(p.ids[0]!.length, 128);
  assert.equal(p.period, 64);
  for (const row of p.ids) {
    for (let t = 0; t < 128; t++) {
      assert.ok(Number.isInteger(row[t]) && row[t]! >= 0 && row[t]! < 1000);
      if (t >= 64) assert.equal(row[t], row[t - 64]);
    }
  }
  assert.deepEqual(defaultProbe(1000), p, 'deterministic');
  // The documented generator: ids = ⌊u·vocab⌋ from mulberry32(seed), rows in order.
  const r = new Rng(0);
  assert.deepEqual(p.ids[0]!.slice(0, 64), Array.from({ length: 64 }, () => Math.floor(r.next() * 1000)));
  assert.deepEqual(p.ids[1]!.slice(0, 64), Array.from({ length: 64 }, () => Math.floor(r.next() * 1000)));
  const q = defaultProbe(50, { seqLen: 21, batch: 2, seed: 9 });
  assert.equal(q.ids.length, 2);
  assert.equal(q.period, 10);
  assert.equal(q.ids[0]!.length, 21);
  assert.equal(q.ids[0]![20], q.ids[0]![0]);
  assert.notDeepEqual(defaultProbe(1000, { seed: 1 }).ids, p.ids);
  assert.throws(() => defaultProbe(10, { seqLen: 1 }), UserError);
});

test('probe files: checked against the vocabulary, row lengths and the period', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'probe-'));
  try {
    const f = path.join(dir, 'p.json');
    fs.writeFileSync(f, JSON.stringify({ ids: [[1, 2, 3, 1, 2, 3], [4, 5, 6, 4, 5, 6]], period: 3 }));
    assert.deepEqual(readProbeFile(f, 10), { ids: [[1, 2, 3, 1, 2, 3], [4, 5, 6, 4, 5, 6]], period: 3 });
    fs.writeFileSync(f, JSON.stringify({ ids: [[1, 2, 3]] }));
    assert.equal(readProbeFile(f, 10).period, null);
    const bad: [unknown, RegExp][] = [
      [{ ids: [[1, 2, 10]] }, /outside the vocabulary/],
      [{ ids: [[1, 2, -1]] }, /outside the vocabulary/],
      [{ ids: [[1, 2.5]] }, /outside the vocabulary/],
      [{ ids: [[1, 2, 3], [1, 2]] }, /unequal lengths/],
      [{ ids: [[1, 2, 3]], period: 3 }, /not smaller than the sequence length/],
      [{ ids: [[1, 2, 3]], period: 0 }, /positive integer/],
      [{ ids: [] }, /non-empty/],
    ];
    for (const [j, re] of bad) assert.throws(() => validateProbe(j as { ids: unknown }, 10, 'p.json'), (e: unknown) => e instanceof UserError && re.test((e as Error).message));
    fs.writeFileSync(f, '{"ids": [[1, 2');
    assert.throws(() => readProbeFile(f, 10), /not valid JSON/);
    assert.throws(() => probeFromOptions(10, { probe: f, seed: 3 }), /cannot be combined/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('layer specs', () => {
  assert.deepEqual(parseLayerSpec('0-3,7, 5', 8), [0, 1, 2, 3, 5, 7]);
  assert.throws(() => parseLayerSpec('0-8', 8), /outside the model/);
  assert.throws(() => parseLayerSpec('3-1', 8), /reversed/);
  assert.throws(() => parseLayerSpec('x', 8), UserError);
});

for (const fx of ['mamba1-tiny', 'mamba1-tiny-bf16', 'mamba2-tiny', 'mamba2-tiny-sharded']) {
  test(`${fx}: the audit's maskOnes and lookbehind equal those of the golden maps; per-channel statistics are consistent`, async () => {
    await initBackend('wasm');
    const dir = path.join(FIXTURES, fx);
    const g = SafetensorsReader.open(path.join(dir, 'golden.safetensors'));
    const ckpt = Checkpoint.open(dir);
    try {
      const ids = goldenIds(g);
      const B = ids.length, L = ids[0]!.length;
      const period = 5; // the goldens' ids have no period; the formula is evaluated with the one given
      const audits: LayerAudit[] = [];
      const res = await auditCheckpoint(ckpt, { probe: { ids, period }, detail: true, onLayer: (a) => { audits.push(a); } });
      assert.equal(res.layers.length, ckpt.config.numLayers);
      for (const a of audits) {
        const i = a.scores.layer;
        const att = g.readFloat32(`layers.${i}.attention`).data, dec = g.readFloat32(`layers.${i}.decay`).data;
        const gm = maskOnes(dec, B, L), gl = lookbehind(att, B, L, period)!;
        assert.ok(Math.abs(a.scores.maskOnes - gm) < 1e-5, `layer ${i} maskOnes ${a.scores.maskOnes} vs golden ${gm}`);
        assert.ok(Math.abs(a.scores.lookbehind! - gl) < 1e-4 * Math.max(1, gl), `layer ${i} lookbehind ${a.scores.lookbehind} vs golden ${gl}`);
        assert.ok(gm > 0.05 && gm < 0.99 && gl > 0, 'the fixture maps are not degenerate');
        // maskOnes is linear in the decay mask: the channel mean of per-channel maskOnes is the layer's.
        const d = a.detail!;
        const mean = d.channelMaskOnes.reduce((x, y) => x + y, 0) / d.channelMaskOnes.length;
        assert.ok(Math.abs(mean - gm) < 1e-5, `layer ${i}: channel-mean maskOnes ${mean} vs ${gm}`);
        assert.equal(d.channelMaskOnes.length, ckpt.config.arch === 'mamba2' ? ckpt.config.numHeads : ckpt.config.intermediateSize);
        // cbIdentity as read by the audit equals the direct E×E computation on the stored rows.
        const bc = readBC(ckpt, i);
        for (const p of bc.pairs) assert.ok(Math.abs(cbIdentityPair(p.WB, p.WC, bc.N, bc.E) - cbIdentityDirect(p.WB, p.WC, bc.N, bc.E)) < 1e-9);
        assert.ok(Math.abs(a.scores.cbIdentity - cbIdentity(bc)) < 1e-12);
        // Most-mimetic channels rank above least-mimetic ones.
        assert.ok(d.most.length > 0 && d.least.length > 0);
        assert.ok(Math.min(...d.most.map((c) => c.mimetic)) >= Math.max(...d.least.map((c) => c.mimetic)));
        assert.equal(d.most[0]!.mimetic, Math.max(...d.channelMimetic));
      }
      // The per-channel lookbehind (channelStats' own α) equals the layer formula applied to
      // channelAttention's map of that channel, for a few channels.
      await runCheckpoint(ckpt, ids, {
        capture: 'internals', layers: [0], keepCaptures: false, skipLogits: true,
        onLayer: async (_i, cap) => {
          const int = internalsToTf(cap.internals!);
          const kind = ckpt.config.arch === 'mamba2' ? 'mamba2' : 'mamba1';
          const st = await channelStats(kind, int, period, 3);
          const chans = [0, 2, st.maskOnes.length - 1];
          const maps = await channelAttention(kind, int, chans).data();
          for (let j = 0; j < chans.length; j++) {
            const one = new Float32Array(B * L * L);
            for (let b = 0; b < B; b++) one.set(maps.subarray((b * chans.length + j) * L * L, (b * chans.length + j + 1) * L * L), b * L * L);
            const ref = lookbehind(one, B, L, period)!;
            assert.ok(Math.abs(st.lookbehind![chans[j]!]! - ref) < 1e-4, `channel ${chans[j]}: ${st.lookbehind![chans[j]!]} vs ${ref}`);
          }
          tf.dispose(Object.values(int));
        },
      });
    } finally {
      ckpt.close();
      g.close();
    }
  });
}

test('Mamba-2 with 2 groups and Falcon-Mamba: W_B/W_C sliced as documented, per-channel statistics consistent with the layer maps', async () => {
  await initBackend('wasm');
  const specs = [
    { arch: 'mamba2' as const, numLayers: 2, hidden: 8, dInner: 16, state: 4, conv: 4, numHeads: 4, nGroups: 2, vocab: 20, seed: 3 },
    { arch: 'falcon_mamba' as const, numLayers: 2, hidden: 8, dInner: 16, state: 4, conv: 4, dtRank: 2, vocab: 20, seed: 4 },
  ];
  for (const spec of specs) {
    const dir = tmpDir('audit-synth');
    try {
      const tensors = writeSynthCheckpoint(dir, spec);
      const ckpt = Checkpoint.open(dir);
      const probe = defaultProbe(20, { seqLen: 16, batch: 2 });
      const audits: LayerAudit[] = [];
      await auditCheckpoint(ckpt, { probe, detail: true, onLayer: (a) => { audits.push(a); } });
      ckpt.close();
      assert.equal(audits.length, 2);
      for (const a of audits) {
        const i = a.scores.layer;
        const N = spec.state;
        // Rows by hand from the tensor as written: Mamba-2 in_proj [z, x, B (G·N), C (G·N), dt]; Falcon x_proj [dt (R), B (N), C (N)].
        const byName = (n: string) => ({ data: tensors.find((t) => t.name === `backbone.layers.${i}.${n}`)!.data as Float32Array });
        let expect = 0;
        if (spec.arch === 'mamba2') {
          const W = byName('mixer.in_proj.weight'), E = spec.hidden, G = spec.nGroups;
          for (let g = 0; g < G; g++) {
            const rows = (r0: number) => W.data.slice(r0 * E, (r0 + N) * E);
            expect += cbIdentityDirect(rows(2 * spec.dInner + g * N), rows(2 * spec.dInner + G * N + g * N), N, E) / G;
          }
        } else {
          const W = byName('mixer.x_proj.weight'), E = spec.dInner, R = spec.dtRank;
          expect = cbIdentityDirect(W.data.slice(R * E, (R + N) * E), W.data.slice((R + N) * E, (R + 2 * N) * E), N, E);
        }
        assert.ok(Math.abs(a.scores.cbIdentity - expect) < 1e-9, `${spec.arch} layer ${i}: ${a.scores.cbIdentity} vs ${expect}`);
        const d = a.detail!;
        assert.equal(d.unit, spec.arch === 'mamba2' ? 'head' : 'channel');
        assert.equal(d.channelMaskOnes.length, spec.arch === 'mamba2' ? spec.numHeads : spec.dInner);
        const mean = d.channelMaskOnes.reduce((x, y) => x + y, 0) / d.channelMaskOnes.length;
        assert.ok(Math.abs(mean - a.scores.maskOnes) < 1e-5, `${spec.arch} layer ${i}: channel-mean maskOnes ${mean} vs layer ${a.scores.maskOnes}`);
        assert.equal(d.cbGram.length, N * N);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('mimetic score --json: ranked scores of every layer with the probe', () => {
  const r = cli(['score', path.join(FIXTURES, 'mamba2-tiny'), '--json', '--seq-len', '16', '--batch', '2', '--backend', 'wasm']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { checkpoint: string; arch: string; probe: { ids: number[][]; period: number }; layers: Record<string, unknown>[] };
  assert.equal(j.arch, 'mamba2');
  assert.deepEqual(j.probe, defaultProbe(64, { seqLen: 16, batch: 2 }));
  assert.deepEqual(j.layers.map((l) => l.layer), [0, 1]);
  assert.deepEqual(j.layers.map((l) => l.rank).sort(), [1, 2]);
  for (const l of j.layers) {
    assert.deepEqual(Object.keys(l).sort(), ['cbIdentity', 'cbRowCos', 'layer', 'lookbehind', 'maskOnes', 'mimetic', 'rank']);
    assert.ok(Math.abs((l.mimetic as number) - mimeticScore(l as { maskOnes: number; cbIdentity: number; lookbehind: number })) < 1e-12);
  }
  assert.deepEqual(Object.keys(j).sort(), ['arch', 'checkpoint', 'layers', 'probe', 'reference', 'threads']);
  // The default: the machine's cores, at most one per probe row (2 rows here).
  assert.equal((j as unknown as { threads: number }).threads, Math.min(2, os.availableParallelism()));
  const one = cli(['score', path.join(FIXTURES, 'mamba2-tiny'), '--json', '--layers', '1', '--seq-len', '16', '--batch', '2', '--backend', 'wasm', '--no-reference']);
  assert.equal(one.code, 0, one.stderr);
  const j1 = JSON.parse(one.stdout) as typeof j;
  assert.deepEqual(j1.layers, [{ ...j.layers[1], rank: 1 }]);
  assert.ok(!('reference' in j1), '--no-reference');
});

test('mimetic score: the reference rows are what a fresh `mimetic init` layer of the same shape scores', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'score-ref-'));
  try {
    // Ids already numbered by first appearance, so the fresh model sees the same tokens as the reference.
    const probe = path.join(dir, 'probe.json');
    const row = (o: number) => [...Array.from({ length: 8 }, (_, i) => o + i), ...Array.from({ length: 8 }, (_, i) => o + i)];
    fs.writeFileSync(probe, JSON.stringify({ ids: [row(0), row(8)], period: 8 }));
    type Out = { layers: Record<string, number>[]; reference: { default: Record<string, number>; mimetic: Record<string, number>; inits: { mimetic: { parts: string[]; aScale: number; seed: number } } } };
    const r = cli(['score', path.join(FIXTURES, 'mamba1-tiny'), '--json', '--probe', probe, '--backend', 'cpu']);
    assert.equal(r.code, 0, r.stderr);
    const ref = (JSON.parse(r.stdout) as Out).reference;
    assert.deepEqual(ref.inits.mimetic, { init: 'mimetic', parts: ['a', 'dt', 'bc', 'conv'], aScale: 8, bcNoise: 0, seed: 0 });
    // mamba1-tiny: d_model 32, d_inner 64, N 8, dt rank 2, conv 4 — what `mimetic init` builds from these options.
    for (const init of ['default', 'mimetic'] as const) {
      const fresh = path.join(dir, init);
      const w = spawnSync(process.execPath, [CLI, 'init', '--arch', 'mamba1', '--d-model', '32', '--d-state', '8', '--n-layers', '1', '--vocab', '64', '--init', init, '--seed', '0', '--out', fresh], { encoding: 'utf8' });
      assert.equal(w.status, 0, w.stderr);
      const f = cli(['score', fresh, '--json', '--probe', probe, '--backend', 'cpu', '--no-reference']);
      assert.equal(f.code, 0, f.stderr);
      const { rank: _r, ...got } = (JSON.parse(f.stdout) as Out).layers[0]!;
      assert.deepEqual(got, ref[init], init);
    }
    assert.equal(ref.mimetic.cbRowCos, 1, 'W_C = W_B exactly in the mimetic init');
    assert.ok(ref.mimetic.mimetic > ref.default.mimetic + 0.2, `${ref.mimetic.mimetic} vs ${ref.default.mimetic}`);
    // The text table carries the same two rows and says what they are.
    const t = cli(['score', path.join(FIXTURES, 'mamba1-tiny'), '--probe', probe, '--backend', 'cpu']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, new RegExp(`\\n\\s*ref\\s+default\\s+${ref.default.mimetic!.toFixed(4)}\\s`));
    assert.match(t.stdout, new RegExp(`\\n\\s*ref\\s+mimetic\\s+${ref.mimetic.mimetic!.toFixed(4)}\\s`));
    assert.match(t.stdout, /ref rows: a fresh layer of this model's shape/);
    // Off a terminal: plain progress lines on stderr.
    assert.match(t.stderr, /^scoring: layer 1\/2, \d+ s\nscoring: layer 2\/2, \d+ s\n/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('mimetic score: bad input exits 2 with one line', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'score-cli-'));
  try {
    const fx = path.join(FIXTURES, 'mamba1-tiny');
    const write = (name: string, j: unknown) => { const f = path.join(dir, name); fs.writeFileSync(f, JSON.stringify(j)); return f; };
    const cases: [string[], RegExp][] = [
      [['--layers', '0-2'], /--layers .*outside the model/],
      [['--probe', write('vocab.json', { ids: [[1, 64, 3]] })], /outside the vocabulary/],
      [['--probe', write('rows.json', { ids: [[1, 2, 3], [1, 2]] })], /unequal lengths/],
      [['--probe', write('period.json', { ids: [[1, 2, 3]], period: 7 })], /period.*not smaller than the sequence length/],
      [['--seq-len', 'abc'], /--seq-len.*not an integer/],
      [['--backend', 'nope'], /unknown backend/],
    ];
    for (const [args, re] of cases) {
      const r = cli(['score', fx, ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^mimetic: /);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, re);
      assert.equal(r.stdout, '');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a degenerate probe is warned about: a period below MIN_PERIOD, or a repeating probe file without one', () => {
  assert.equal(repetitionPeriod([[1, 2, 1, 2, 1], [3, 4, 3, 4, 3]]), 2);
  assert.equal(repetitionPeriod([[1, 2, 1, 2, 1], [3, 4, 3, 5, 3]]), 4);
  assert.equal(repetitionPeriod([[1, 2, 3]]), null);
  assert.equal(repetitionPeriod(defaultProbe(64).ids), 64);
  assert.equal(probeWarning(defaultProbe(64)), null);
  assert.equal(probeWarning(defaultProbe(64, { seqLen: 2 * MIN_PERIOD })), null);
  assert.match(probeWarning(defaultProbe(64, { seqLen: 2 * MIN_PERIOD - 1 }))!, new RegExp(`period is ${MIN_PERIOD - 1}: below ${MIN_PERIOD}`));
  const row = Array.from({ length: 10 }, (_, i) => i);
  assert.match(probeWarning({ ids: [[...row, ...row]], period: null })!, /repeats with period 10 but gives no "period"/);
  const r = cli(['score', path.join(FIXTURES, 'mamba1-tiny'), '--seq-len', '3', '--batch', '1', '--backend', 'cpu', '--no-reference']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^mimetic: warning: the probe's period is 1: below 8 .*use --seq-len 16 or more/);
});
