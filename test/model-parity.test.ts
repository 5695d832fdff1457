/**
 * The acceptance test: every tensor in each fixture's golden.safetensors (written by HF
 * transformers) is reproduced within max(1e-4, 1e-4 × the tensor's largest magnitude), on the
 * cpu and wasm backends, by the streaming path and by the differentiable MambaLM. Falcon-Mamba,
 * which has no fixture, is checked against an independent float64 implementation written here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { SafetensorsReader } from '../src/checkpoint/safetensors.js';
import { MambaLM } from '../src/model/lm.js';
import { runCheckpoint } from '../src/analysis/capture.js';
import { loadWeights, type WeightMap } from '../src/model/weights.js';
import { initBackend } from '../src/model/backend.js';
import { goldenIds, expectClose } from './helpers/golden.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures');
const NAMES = ['mamba1-tiny', 'mamba1-tiny-bf16', 'mamba2-tiny', 'mamba2-tiny-sharded'];

function transposeBLD(data: Float32Array, B: number, L: number, D: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) for (let d = 0; d < D; d++) out[(b * D + d) * L + t] = data[(b * L + t) * D + d]!;
  return out;
}

for (const backend of ['cpu', 'wasm'] as const) {
  for (const name of NAMES) {
    test(`${name} on ${backend}: every golden tensor (streaming runCheckpoint)`, async () => {
      await initBackend(backend, { quiet: true });
      const dir = path.join(FIXTURES, name);
      const ckpt = Checkpoint.open(dir);
      const g = SafetensorsReader.open(path.join(dir, 'golden.safetensors'));
      try {
        const before = tf.memory().numTensors;
        const r = await runCheckpoint(ckpt, goldenIds(g), { capture: 'internals', channelBlock: 5 });
        assert.equal(tf.memory().numTensors, before, 'runCheckpoint leaks no tensors');
        const got = new Map<string, { shape: number[]; data: Float32Array }>();
        got.set('logits', r.logits!);
        r.hiddenStates.forEach((h, i) => got.set(`hidden_states.${i}`, h));
        for (const c of r.layers) {
          got.set(`layers.${c.layer}.mixer_input`, c.mixerInput);
          for (const k of ['attention', 'decay', 'qk'] as const) got.set(`layers.${c.layer}.${k}`, c.attention![k]);
          if (ckpt.config.arch !== 'mamba2') {
            const d = c.internals!.delta;
            const [B, L, D] = d.shape as [number, number, number];
            got.set(`layers.${c.layer}.delta`, { shape: [B, D, L], data: transposeBLD(d.data, B, L, D) });
          }
        }
        const names = g.names().filter((n) => n !== 'input_ids');
        assert.ok(names.length >= 3 + 4 * ckpt.config.numLayers);
        for (const n of names) {
          const mine = got.get(n);
          assert.ok(mine, `golden tensor ${n} has no counterpart`);
          expectClose(`${name}/${n}`, mine, g.readFloat32(n));
        }
      } finally {
        ckpt.close();
        g.close();
      }
    });

    test(`${name} on ${backend}: MambaLM.logits and hidden states match the goldens and the streaming path`, async () => {
      await initBackend(backend, { quiet: true });
      const dir = path.join(FIXTURES, name);
      const ckpt = Checkpoint.open(dir);
      const g = SafetensorsReader.open(path.join(dir, 'golden.safetensors'));
      try {
        const ids = goldenIds(g);
        const before = tf.memory().numTensors;
        const lm = MambaLM.fromCheckpoint(ckpt);
        const idsT = tf.tensor2d(ids, undefined, 'int32');
        const logits = lm.logits(idsT);
        expectClose(`${name}/logits (MambaLM)`, { shape: logits.shape, data: logits.dataSync() }, g.readFloat32('logits'));
        const f = lm.forward(idsT);
        f.hiddenStates.forEach((h, i) => expectClose(`${name}/hidden_states.${i} (MambaLM)`, { shape: h.shape, data: h.dataSync() }, g.readFloat32(`hidden_states.${i}`)));
        // Streaming (one layer at a time) gives the same numbers as the all-in-memory model.
        const r = await runCheckpoint(ckpt, ids);
        assert.deepEqual(r.logits!.shape, logits.shape);
        let d = 0;
        const a = logits.dataSync();
        for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - r.logits!.data[i]!));
        assert.ok(d <= 1e-6, `streaming vs in-memory logits differ by ${d}`);
        tf.dispose([idsT, logits, f.logits, ...f.hiddenStates]);
        lm.dispose();
        assert.equal(tf.memory().numTensors, before, 'MambaLM leaks no tensors');
      } finally {
        ckpt.close();
        g.close();
      }
    });
  }
}

test('MambaLM with the mimetic A parameterisation computes the same model and exports the standard A_log', async () => {
  await initBackend('cpu', { quiet: true });
  for (const name of ['mamba1-tiny', 'mamba2-tiny']) {
    const dir = path.join(FIXTURES, name);
    const ckpt = Checkpoint.open(dir);
    const g = SafetensorsReader.open(path.join(dir, 'golden.safetensors'));
    const w = loadWeights(ckpt);
    const lm = MambaLM.fromWeights(ckpt.config, w, { aParam: { c: 4 } });
    assert.ok(lm.variables.has('backbone.layers.0.mixer.A_log_param'));
    assert.ok(!lm.variables.has('backbone.layers.0.mixer.A_log'));
    const idsT = tf.tensor2d(goldenIds(g), undefined, 'int32');
    const logits = lm.logits(idsT);
    expectClose(`${name}/logits (aParam)`, { shape: logits.shape, data: logits.dataSync() }, g.readFloat32('logits'));
    const out = lm.toWeights();
    const outAsync = await lm.toWeightsAsync();
    assert.deepEqual(Object.keys(outAsync).sort(), Object.keys(out).sort());
    for (const k of Object.keys(out)) assert.deepEqual(Array.from(outAsync[k]!.data), Array.from(out[k]!.data), k);
    for (const [k, v] of Object.entries(w)) {
      const o = out[k];
      assert.ok(o, `toWeights lost ${k}`);
      assert.deepEqual(o.shape, v.shape);
      let d = 0;
      for (let i = 0; i < v.data.length; i++) d = Math.max(d, Math.abs(o.data[i]! - v.data[i]!));
      assert.ok(d <= 1e-6 * Math.max(1, ...Array.from(v.data, Math.abs)), `${k} round trip differs by ${d}`);
    }
    // Gradients reach every variable (A_log_param included) through the scan kernels.
    const { grads } = tf.variableGrads(() => tf.mean(tf.square(lm.logits(idsT))) as tf.Scalar);
    for (const [k, v] of lm.variables) {
      const gv = grads[v.name];
      assert.ok(gv, `no gradient for ${k}`);
      const data = gv.dataSync();
      assert.ok(data.every(Number.isFinite), `${k}: non-finite gradient`);
      assert.ok(data.some((x) => x !== 0), `${k}: gradient is all zero`);
    }
    tf.dispose([idsT, logits, ...Object.values(grads)]);
    lm.dispose();
    ckpt.close();
    g.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Falcon-Mamba: an independent float64 implementation of the Mamba-1 / Falcon-Mamba LM.

function ref64Logits(w: WeightMap, falcon: boolean, ids: number[][], cfg: { layers: number; eps: number; rmsEps: number }): Float64Array {
  const get = (n: string) => w[n]!;
  const emb = get('backbone.embeddings.weight');
  const [V, Hd] = emb.shape as [number, number];
  const L = ids[0]!.length;
  const out = new Float64Array(ids.length * L * V);
  const rms = (v: Float64Array, wt: Float32Array | null, eps: number) => {
    let s = 0;
    for (const x of v) s += x * x;
    const r = 1 / Math.sqrt(s / v.length + eps);
    return v.map((x, i) => x * r * (wt ? wt[i]! : 1));
  };
  const matvec = (W: { shape: number[]; data: Float32Array }, x: Float64Array, bias?: Float32Array) => {
    const [O, I] = W.shape as [number, number];
    const y = new Float64Array(O);
    for (let o = 0; o < O; o++) {
      let s = bias ? bias[o]! : 0;
      for (let i = 0; i < I; i++) s += W.data[o * I + i]! * x[i]!;
      y[o] = s;
    }
    return y;
  };
  const silu = (x: number) => x / (1 + Math.exp(-x));
  ids.forEach((row, b) => {
    let hs = row.map((id) => Float64Array.from(emb.data.subarray(id * Hd, (id + 1) * Hd)));
    for (let l = 0; l < cfg.layers; l++) {
      const p = (s: string) => get(`backbone.layers.${l}.${s}`);
      const Alog = p('mixer.A_log');
      const [Din, N] = Alog.shape as [number, number];
      const R = p('mixer.dt_proj.weight').shape[1]!;
      const K = p('mixer.conv1d.weight').shape[2]!;
      const xin = hs.map((h) => rms(h, p('norm.weight').data, cfg.eps));
      const proj = xin.map((h) => matvec(p('mixer.in_proj.weight'), h));
      const conv = p('mixer.conv1d.weight').data;
      const cb = p('mixer.conv1d.bias').data;
      const u = proj.map((_, t) => {
        const v = new Float64Array(Din);
        for (let d = 0; d < Din; d++) {
          let s = cb[d]!;
          for (let k = 0; k < K; k++) {
            const tt = t - (K - 1) + k;
            if (tt >= 0) s += conv[d * K + k]! * proj[tt]![d]!;
          }
          v[d] = silu(s);
        }
        return v;
      });
      const h = new Float64Array(Din * N);
      hs = hs.map((res, t) => {
        const ssm = matvec(p('mixer.x_proj.weight'), u[t]!);
        let dt = ssm.slice(0, R);
        let Bv = ssm.slice(R, R + N);
        let Cv = ssm.slice(R + N, R + 2 * N);
        if (falcon) {
          dt = rms(dt, null, cfg.rmsEps);
          Bv = rms(Bv, null, cfg.rmsEps);
          Cv = rms(Cv, null, cfg.rmsEps);
        }
        const delta = matvec(p('mixer.dt_proj.weight'), dt, p('mixer.dt_proj.bias').data).map((x) => (x > 20 ? x : Math.log1p(Math.exp(x))));
        const y = new Float64Array(Din);
        for (let d = 0; d < Din; d++) {
          let acc = 0;
          for (let n = 0; n < N; n++) {
            const A = -Math.exp(Alog.data[d * N + n]!);
            h[d * N + n] = Math.exp(delta[d]! * A) * h[d * N + n]! + delta[d]! * Bv[n]! * u[t]![d]!;
            acc += Cv[n]! * h[d * N + n]!;
          }
          y[d] = (acc + p('mixer.D').data[d]! * u[t]![d]!) * silu(proj[t]![Din + d]!);
        }
        const o = matvec(p('mixer.out_proj.weight'), y);
        return res.map((x, i) => x + o[i]!);
      });
    }
    hs.forEach((hv, t) => {
      const logits = matvec(emb, rms(hv, get('backbone.norm_f.weight').data, cfg.eps));
      out.set(logits, (b * L + t) * V);
    });
  });
  return out;
}

test('Falcon-Mamba (weight-free RMS norms on B, C, Δ) matches an independent float64 implementation', async () => {
  await initBackend('cpu', { quiet: true });
  const src = path.join(FIXTURES, 'mamba1-tiny');
  const g = SafetensorsReader.open(path.join(src, 'golden.safetensors'));
  const ids = goldenIds(g);
  const m1 = Checkpoint.open(src);
  const w = loadWeights(m1);
  const cfg = { layers: m1.config.numLayers, eps: m1.config.layerNormEpsilon, rmsEps: 1e-6 };
  // The float64 reference itself reproduces transformers' Mamba-1 logits.
  const ref1 = ref64Logits(w, false, ids, cfg);
  expectClose('float64 reference (Mamba-1)', { shape: g.info('logits').shape, data: ref1 }, g.readFloat32('logits'));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-falcon-'));
  try {
    const raw = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify({ ...raw, model_type: 'falcon_mamba', architectures: ['FalconMambaForCausalLM'], mixer_rms_eps: 1e-6 }));
    fs.copyFileSync(path.join(src, 'model.safetensors'), path.join(tmp, 'model.safetensors'));
    const fc = Checkpoint.open(tmp);
    assert.equal(fc.config.arch, 'falcon_mamba');
    const r = await runCheckpoint(fc, ids);
    const ref = ref64Logits(w, true, ids, cfg);
    const want = { shape: r.logits!.shape, data: Float32Array.from(ref) };
    expectClose('falcon logits vs float64', r.logits!, want);
    // And the RMS norms matter: Falcon's logits are not Mamba-1's.
    let d = 0;
    for (let i = 0; i < ref.length; i++) d = Math.max(d, Math.abs(ref[i]! - ref1[i]!));
    assert.ok(d > 1e-2, `falcon and mamba1 logits should differ (max diff ${d})`);
    const lm = MambaLM.fromCheckpoint(fc);
    const idsT = tf.tensor2d(ids, undefined, 'int32');
    const lg = lm.logits(idsT);
    expectClose('falcon MambaLM logits vs float64', { shape: lg.shape, data: lg.dataSync() }, want);
    tf.dispose([idsT, lg]);
    lm.dispose();
    fc.close();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
    m1.close();
    g.close();
  }
});
