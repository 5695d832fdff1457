/**
 * The fused WebGPU paths against the tf-op paths they replace, on whatever WebGPU adapter Dawn
 * finds (lavapipe here and in CI): the fused inference kernels (kernels/fused-webgpu.ts) through
 * whole checkpoints, including the variants the fixtures lack (Falcon-Mamba's inner norms, Mamba-2
 * with groups, Δ limits and biases); the attention-map kernel against the JS loops; and the in-place
 * AdamW step against adamw.ts. The tf-op paths are themselves checked against HF goldens elsewhere.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.js';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { causalConv1d } from '../src/model/mamba.js';
import { MambaLM } from '../src/model/lm.js';
import { runCheckpoint, type CaptureResult } from '../src/analysis/capture.js';
import { convSiluTrainable, fusedAvailable, setFusedKernels } from '../src/model/kernels/fused-webgpu.js';
import { attentionSummaries, type ScanInternals } from '../src/analysis/attention.js';
import { attentionSummariesWebGPU } from '../src/analysis/attention-webgpu.js';
import { adamwStep, createAdamWState, disposeAdamWState, type AdamWHParams } from '../src/train/adamw.js';
import { adamwStepWebGPU } from '../src/train/adamw-webgpu.js';
import { mulberry32 } from '../src/util/rng.js';
import { tmpDir, writeSynthCheckpoint, type SynthSpec } from './helpers/synth-checkpoint.js';
import { requiresWebGPU } from './helpers/requires.js';

/** Without an adapter these tests skip with what to install (fail under MIMETIC_TEST_STRICT=1). */
const GPU = await requiresWebGPU();

async function webgpu(): Promise<void> {
  await initBackend('webgpu');
  assert.ok(fusedAvailable(), 'fused kernels not available on the webgpu backend');
}

function maxRel(got: Float32Array, want: Float32Array): number {
  assert.equal(got.length, want.length);
  let scale = 1e-6, err = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    if (!(d <= err)) err = d; // NaN sticks
  }
  return err / scale;
}

function ids(vocab: number, B: number, L: number, seed: number): number[][] {
  const r = mulberry32(seed);
  return Array.from({ length: B }, () => Array.from({ length: L }, () => Math.floor(r() * vocab)));
}

async function runBoth(dir: string, x: number[][]): Promise<[CaptureResult, CaptureResult]> {
  const ckpt = Checkpoint.open(dir);
  try {
    const fused = await runCheckpoint(ckpt, x, { capture: 'attention' });
    const old = setFusedKernels(false);
    try {
      return [fused, await runCheckpoint(ckpt, x, { capture: 'attention' })];
    } finally {
      setFusedKernels(old);
    }
  } finally {
    ckpt.close();
  }
}

const SPECS: [string, SynthSpec][] = [
  ['falcon-mamba', { arch: 'falcon_mamba', numLayers: 2, hidden: 24, dInner: 48, state: 8, conv: 4, dtRank: 3, vocab: 40, seed: 3 }],
  ['mamba1 with biases, untied', { arch: 'mamba1', numLayers: 2, hidden: 16, dInner: 40, state: 4, conv: 3, dtRank: 2, vocab: 30, bias: true, tied: false, seed: 4 }],
  ['mamba2 with 2 groups, Δ limits, no conv bias', { arch: 'mamba2', numLayers: 2, hidden: 32, dInner: 64, state: 8, conv: 4, numHeads: 8, nGroups: 2, vocab: 50, convBias: false, bias: true, seed: 5, configPatch: { time_step_limit: [0.02, 0.3] } }],
];

for (const [label, spec] of SPECS) {
  test(`fused webgpu forward = tf-op forward: ${label} (logits, hidden states, mixer inputs, attention maps)`, GPU, async () => {
    await webgpu();
    const dir = tmpDir('fused');
    try {
      writeSynthCheckpoint(dir, spec);
      const [a, b] = await runBoth(dir, ids(spec.vocab, 2, 19, 11));
      const pairs: [string, Float32Array, Float32Array][] = [['logits', a.logits!.data, b.logits!.data]];
      a.hiddenStates.forEach((h, i) => pairs.push([`hidden ${i}`, h.data, b.hiddenStates[i]!.data]));
      assert.equal(a.hiddenStates.length, spec.numLayers + 1);
      a.layers.forEach((c, i) => {
        pairs.push([`layer ${i} mixer input`, c.mixerInput.data, b.layers[i]!.mixerInput.data]);
        for (const k of ['attention', 'decay', 'qk'] as const) pairs.push([`layer ${i} ${k}`, c.attention![k].data, b.layers[i]!.attention![k].data]);
      });
      for (const [n, g, w] of pairs) {
        assert.ok(w.some((v) => Math.abs(v) > 1e-4), `${label} ${n}: reference is all zeros`);
        const e = maxRel(g, w);
        assert.ok(e < 5e-5, `${label} ${n}: fused vs tf ops max error ${e.toExponential(2)} relative to the largest value`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('MambaLM.forward with inference: true (fused) matches the differentiable path on webgpu', GPU, async () => {
  await webgpu();
  const dir = tmpDir('fused-lm');
  try {
    const spec = SPECS[2]![1];
    writeSynthCheckpoint(dir, spec);
    const ckpt = Checkpoint.open(dir);
    const lm = MambaLM.fromCheckpoint(ckpt);
    ckpt.close();
    const x = tf.tensor2d(ids(spec.vocab, 3, 13, 2), undefined, 'int32');
    const f = lm.forward(x, { inference: true });
    const r = lm.forward(x);
    const e = maxRel((await f.logits.data()) as Float32Array, (await r.logits.data()) as Float32Array);
    assert.ok(e < 5e-5, `logits: ${e}`);
    for (let i = 0; i < r.hiddenStates.length; i++) {
      const eh = maxRel((await f.hiddenStates[i]!.data()) as Float32Array, (await r.hiddenStates[i]!.data()) as Float32Array);
      assert.ok(eh < 5e-5, `hidden ${i}: ${eh}`);
    }
    tf.dispose([x, f.logits, r.logits, ...f.hiddenStates, ...r.hiddenStates]);
    lm.dispose();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function randomInternals(kind: 'mamba1' | 'mamba2', seed: number): ScanInternals {
  const r = mulberry32(seed);
  const t = (shape: number[], f: () => number) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, f), shape);
  const [B, L] = [2, 21];
  if (kind === 'mamba1') {
    const [D, N] = [12, 5];
    return { x: t([B, L, D], r), delta: t([B, L, D], () => 0.02 + 0.4 * Math.abs(r())), A: t([D, N], () => -(0.1 + 2 * Math.abs(r()))), B: t([B, L, N], r), C: t([B, L, N], r), D: t([D], r) };
  }
  const [H, P, G, N] = [6, 4, 3, 7];
  return { x: t([B, L, H, P], r), delta: t([B, L, H], () => 0.02 + 0.4 * Math.abs(r())), A: t([H], () => -(0.1 + 2 * Math.abs(r()))), B: t([B, L, G, N], r), C: t([B, L, G, N], r), D: t([H], r) };
}

for (const kind of ['mamba1', 'mamba2'] as const) {
  test(`${kind} attention-map kernel on webgpu matches the ${kind === 'mamba1' ? 'direct' : 'blocked'} tf computation`, GPU, async () => {
    await webgpu();
    const int = randomInternals(kind, kind === 'mamba1' ? 21 : 22);
    const got = attentionSummariesWebGPU(kind, int.delta, int.A, int.B, int.C);
    const want = attentionSummaries(kind, int, kind === 'mamba1' ? { impl: 'direct', channelBlock: 5 } : { channelBlock: 2 });
    for (const k of ['attention', 'decay', 'qk'] as const) {
      const w = (await want[k].data()) as Float32Array;
      assert.ok(w.some((v) => Math.abs(v) > 1e-3), `${k}: reference all zeros`);
      const e = maxRel((await got[k].data()) as Float32Array, w);
      assert.ok(e < 2e-5, `${kind} ${k}: max error ${e.toExponential(2)}`);
    }
    tf.dispose([...Object.values(int), ...Object.values(got), ...Object.values(want)]);
  });
}

test('in-place WebGPU AdamW matches adamw.ts over several steps (clipped and unclipped, decay mask)', GPU, async () => {
  await webgpu();
  const r = mulberry32(9);
  const shapes: Record<string, number[]> = {
    'backbone.embeddings.weight': [7, 5], 'backbone.layers.0.mixer.A_log': [300], 'backbone.layers.0.mixer.in_proj.weight': [33, 17],
    'backbone.layers.0.norm.weight': [5], 'backbone.layers.0.mixer.conv1d.bias': [1], 'backbone.norm_f.weight': [5],
  };
  const init = Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, r)]));
  const mk = () => new Map(Object.entries(shapes).map(([k, s]) => [k, tf.variable(tf.tensor(init[k]!, s))]));
  const pa = mk(), pb = mk();
  const sa = createAdamWState(pa), sb = createAdamWState(pb);
  // Read b's params once so tf caches CPU copies: the fused step must invalidate them.
  for (const v of pb.values()) await v.data();
  const hp: AdamWHParams = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipNorm: 1.0 };
  for (let step = 1; step <= 4; step++) {
    // Step 2's gradients are small: the clip is inactive there, active in the others.
    const scale = step === 2 ? 1e-3 : 3;
    const g = new Map(Object.entries(shapes).filter(([k]) => !(step === 3 && k.includes('conv1d'))).map(([k, s]) => [k, tf.tensor(Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => scale * r()), s)]));
    const na = adamwStep(pa, g, sa, { ...hp, lr: hp.lr * step });
    const nb = adamwStepWebGPU(pb, g, sb, { ...hp, lr: hp.lr * step });
    const [va, vb] = [(await na.data())[0]!, (await nb.data())[0]!];
    assert.ok(Math.abs(va - vb) <= 1e-5 * va, `step ${step}: norm ${vb} vs ${va}`);
    for (const k of Object.keys(shapes)) {
      for (const [what, x, y] of [['param', pa.get(k)!, pb.get(k)!], ['m', sa.m.get(k)!, sb.m.get(k)!], ['v', sa.v.get(k)!, sb.v.get(k)!]] as const) {
        const e = maxRel((await y.data()) as Float32Array, (await x.data()) as Float32Array);
        assert.ok(e < 2e-6, `step ${step} ${k} ${what}: max error ${e.toExponential(2)}`);
      }
    }
    assert.equal(sb.step, sa.step);
    tf.dispose([na, nb, ...g.values()]);
  }
  // The parameters really moved (a no-op update would fail the comparisons only if adamw.ts moved them).
  const moved = maxRel((await pb.get('backbone.layers.0.mixer.in_proj.weight')!.data()) as Float32Array, init['backbone.layers.0.mixer.in_proj.weight']!);
  assert.ok(moved > 1e-3, `parameters did not move (${moved})`);
  disposeAdamWState(sa);
  disposeAdamWState(sb);
  for (const v of [...pa.values(), ...pb.values()]) v.dispose();
});

for (const withBias of [true, false]) {
  test(`differentiable conv+SiLU kernel on webgpu: value and gradients match the tf-op conv (${withBias ? 'with' : 'no'} bias)`, GPU, async () => {
    await webgpu();
    const r = mulberry32(withBias ? 31 : 32);
    const [B, L, C, K] = [3, 17, 10, 4];
    const t = (shape: number[]) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, r), shape);
    const x = t([B, L, C]) as tf.Tensor3D, w = t([C, 1, K]), b = t([C]), W = t([B, L, C]);
    const ref = (xx: tf.Tensor, ww: tf.Tensor, bb?: tf.Tensor) => {
      const xc = causalConv1d(xx, ww, bb);
      return tf.mul(xc, tf.sigmoid(xc));
    };
    const ins = withBias ? [x, w, b] : [x, w];
    const gotF = (...xs: tf.Tensor[]) => convSiluTrainable(xs[0] as tf.Tensor3D, xs[1]!, xs[2]).mul(W).sum();
    const refF = (...xs: tf.Tensor[]) => ref(xs[0]!, xs[1]!, xs[2]).mul(W).sum();
    const got = [convSiluTrainable(x, w, withBias ? b : undefined), ...tf.grads(gotF)(ins)];
    const want = [ref(x, w, withBias ? b : undefined), ...tf.grads(refF)(ins)];
    for (let i = 0; i < want.length; i++) {
      const wv = (await want[i]!.data()) as Float32Array;
      assert.ok(wv.some((v) => Math.abs(v) > 1e-3), `output ${i}: reference all zeros`);
      const e = maxRel((await got[i]!.data()) as Float32Array, wv);
      assert.ok(e < 1e-5, `output ${i} (${['y', 'dx', 'dw', 'db'][i]}): max error ${e.toExponential(2)}`);
    }
    tf.dispose([x, w, b, W, ...got, ...want]);
  });
}
