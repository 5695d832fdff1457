import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.js';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { adamwStep, createAdamWState, decays } from '../src/train/adamw.js';
import { lrAt } from '../src/train/schedule.js';
import { readMetrics } from '../src/train/metrics.js';
import { initFact, taskFact } from '../src/train/report.js';
import { listCheckpoints } from '../src/train/state.js';
import { type TrainConfig, checkTrainConfig, readRunConfig, train, trainDefaults } from '../src/train/trainer.js';
import type { TaskOptions } from '../src/tasks/index.js';
import { UserError } from '../src/util/errors.js';
import { tempDirs } from './helpers/tmpdir.js';

await initBackend('cpu');
const tmp = tempDirs('mimetic-train-');
const copyTask: TaskOptions = { task: 'copy', alphabet: 4, minLen: 2, maxLen: 6, context: 24, evalLengths: [3, 9] };

function tinyConfig(over: Partial<TrainConfig> = {}, arch: 'mamba1' | 'mamba2' = 'mamba1'): TrainConfig {
  return trainDefaults(copyTask, {
    kind: 'fresh',
    shape: { arch, numLayers: 2, hiddenSize: 16, stateSize: 4, headDim: 8, vocabSize: 8 },
    init: { init: 'mimetic', parts: ['a', 'dt', 'bc', 'conv'], aScale: 8, bcNoise: 0, seed: 1 },
  }, { steps: 8, batch: 4, lr: 5e-3, warmup: 2, aScale: 8, evalEvery: 4, evalExamples: 8, checkpointEvery: 2, seed: 1, ...over });
}

const strip = (ms: ReturnType<typeof readMetrics>) => ms.map(({ step, loss, lr, gradNorm, eval: e }) => ({ step, loss, lr, gradNorm, eval: e }));

test('adamwStep matches torch.optim.AdamW + clip_grad_norm_ computed by hand', () => {
  const p = new Map([['w', tf.variable(tf.tensor1d([1, -2, 3]))], ['mixer.D', tf.variable(tf.tensor1d([0.5]))]]);
  const st = createAdamWState(p);
  assert.ok(st.decay.has('w') && !st.decay.has('mixer.D'));
  const hp = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, clipNorm: 1.0 };
  const gs = [[[3, 0, 4], [0]], [[0.1, -0.2, 0.3], [0.5]]];
  // reference in plain float64
  const ref = { w: [1, -2, 3], D: [0.5] };
  const m = { w: [0, 0, 0], D: [0] }, v = { w: [0, 0, 0], D: [0] };
  gs.forEach(([gw, gd], i) => {
    const t = i + 1;
    const norm = Math.sqrt([...gw!, ...gd!].reduce((a, x) => a + x * x, 0));
    const clip = Math.min(1, 1 / (norm + 1e-6));
    for (const [k, g, decay] of [['w', gw!, true], ['D', gd!, false]] as const) {
      for (let j = 0; j < g.length; j++) {
        const gj = g[j]! * clip;
        m[k][j] = 0.9 * m[k][j]! + 0.1 * gj;
        v[k][j] = 0.999 * v[k][j]! + 0.001 * gj * gj;
        if (decay) ref[k][j] = ref[k][j]! * (1 - 0.1 * 0.1);
        ref[k][j] = ref[k][j]! - (0.1 / (1 - 0.9 ** t)) * m[k][j]! / (Math.sqrt(v[k][j]!) / Math.sqrt(1 - 0.999 ** t) + 1e-8);
      }
    }
    const grads = new Map([['w', tf.tensor1d(gw!)], ['mixer.D', tf.tensor1d(gd!)]]);
    const n = adamwStep(p, grads, st, hp);
    assert.ok(Math.abs(n.dataSync()[0]! - norm) < 1e-5);
  });
  const w = p.get('w')!.dataSync(), D = p.get('mixer.D')!.dataSync();
  ref.w.forEach((x, j) => assert.ok(Math.abs(w[j]! - x) < 1e-5, `w[${j}] ${w[j]} vs ${x}`));
  assert.ok(Math.abs(D[0]! - ref.D[0]!) < 1e-5);
  for (const n of ['backbone.layers.0.mixer.A_log', 'backbone.layers.0.mixer.A_log_param', 'backbone.layers.0.mixer.dt_bias', 'backbone.layers.0.mixer.dt_proj.bias', 'backbone.norm_f.weight', 'backbone.layers.1.norm.weight', 'backbone.layers.1.mixer.norm.weight', 'backbone.layers.0.mixer.conv1d.bias']) assert.equal(decays(n), false, n);
  for (const n of ['backbone.embeddings.weight', 'backbone.layers.0.mixer.in_proj.weight', 'backbone.layers.0.mixer.dt_proj.weight', 'backbone.layers.0.mixer.conv1d.weight']) assert.equal(decays(n), true, n);
});

test('train off a terminal prints about 20 progress lines a run, not one a step', async () => {
  const lines: string[] = [];
  const sink = { write: (s: string) => { lines.push(...s.split('\n').filter(Boolean)); return true; }, isTTY: false };
  await train(tinyConfig({ steps: 60, evalEvery: 60, checkpointEvery: 60 }), { out: path.join(tmp(), 'run'), progress: sink, noReport: true });
  const steps = lines.filter((l) => /^step \d+\/60 loss /.test(l)).map((l) => Number(/^step (\d+)/.exec(l)![1]));
  assert.deepEqual(steps, [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51, 54, 57, 60]);
  lines.length = 0;
  await train(tinyConfig({ steps: 6, evalEvery: 6, checkpointEvery: 6 }), { out: path.join(tmp(), 'run2'), progress: sink, noReport: true, logEvery: 2 });
  assert.deepEqual(lines.filter((l) => /^step \d+\/6 loss /.test(l)).length, 3, '--log-every still wins');
});

test('the run report states the task and init in words, not raw JSON', async () => {
  const out = path.join(tmp(), 'run');
  await train(tinyConfig({ steps: 2, evalEvery: 2, checkpointEvery: 2 }), { out, progress: null });
  const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
  assert.match(html, /<td>copy: strings of 2–6 letters from 4, rows of 24 tokens; also evaluated at 3, 9<\/td>/);
  assert.match(html, /<td>mimetic: a, dt, bc, conv, A scale c = 8, seed 1<\/td>/);
  assert.doesNotMatch(html, /&quot;|\{"/, 'no JSON in the facts');
  assert.equal(taskFact({ task: 'mqar', vocab: 8192, contexts: [64, 128], kvPairs: [4, 8], powerA: 0.01, evalLengths: [], randomNonQueries: true }),
    'MQAR: vocabulary 8192, 4/8 key-value pairs, rows of 64/128 tokens, query gaps p(g) ∝ g^(a−1) with a = 0.01');
  assert.equal(initFact({ init: 'default', parts: [], aScale: null, bcNoise: 0, seed: 3 }), 'default (mamba_ssm recipe), seed 3');
});

test('lr schedule: linear warmup, cosine and linear decay', () => {
  const s = { kind: 'cosine' as const, lr: 1, minLr: 0.1, warmup: 10, steps: 110 };
  assert.equal(lrAt(s, 5), 0.5);
  assert.equal(lrAt(s, 10), 1);
  assert.ok(Math.abs(lrAt(s, 60) - 0.55) < 1e-12);
  assert.ok(Math.abs(lrAt(s, 110) - 0.1) < 1e-12);
  assert.ok(Math.abs(lrAt({ ...s, kind: 'linear', minLr: 0 }, 85) - 0.25) < 1e-12);
  assert.equal(lrAt({ ...s, kind: 'constant' }, 100), 1);
});

test('train: loss falls, checkpoints load as HF checkpoints, a halted run resumed reproduces the losses exactly', async () => {
  const dir = tmp();
  const cfg = tinyConfig();
  const full = await train(cfg, { out: path.join(dir, 'full'), progress: null, noReport: true });
  assert.equal(full.status, 'finished');
  const a = readMetrics(path.join(dir, 'full', 'metrics.jsonl'));
  assert.equal(a.length, 8);
  assert.ok(a[7]!.loss < a[0]!.loss - 0.05, `loss ${a[0]!.loss} → ${a[7]!.loss}`);
  assert.ok(a[3]!.eval && a[7]!.eval && !a[2]!.eval);
  assert.deepEqual(Object.keys(a[7]!.eval!), ['len=6', 'len=3', 'len=9']);
  // halted at step 5 (no checkpoint of step 5: like a kill), resume from step 4
  const part = path.join(dir, 'part');
  const h = await train(cfg, { out: part, progress: null, noReport: true, haltAfterStep: 5 });
  assert.equal(h.status, 'halted');
  assert.deepEqual(listCheckpoints(part).map((c) => c.step), [4]);
  const r = await train(cfg, { out: part, resume: true, progress: null, noReport: true });
  assert.equal(r.step, 8);
  assert.deepEqual(strip(readMetrics(path.join(part, 'metrics.jsonl'))), strip(a));
  // final weights identical, and the checkpoint is a standard HF checkpoint with standard A_log
  const [c1, c2] = [listCheckpoints(path.join(dir, 'full')).at(-1)!.dir, listCheckpoints(part).at(-1)!.dir];
  assert.deepEqual(fs.readFileSync(path.join(c1, 'model.safetensors')), fs.readFileSync(path.join(c2, 'model.safetensors')));
  const ck = Checkpoint.open(c1);
  try {
    const raw = ck.rawConfig as { mimetic: { aScale: number; trained: { steps: number } } };
    assert.equal(raw.mimetic.aScale, 8);
    assert.equal(raw.mimetic.trained.steps, 8);
    const A = ck.readLayer(0)['mixer.A_log']!.data;
    // mimetic a: A_log = −8·log(n+1) initially, so column n=0 stays near 0 and n=3 near −8·log 4
    assert.ok(Math.abs(A[3]! - -8 * Math.log(4)) < 0.5, `A_log ${A[3]}`);
  } finally { ck.close(); }
  // a resume with other options is refused before any work
  await assert.rejects(train({ ...cfg, lr: 1e-3 }, { out: part, resume: true, progress: null }), (e: unknown) => e instanceof UserError && /lr = 0.005, this one asks for 0.001/.test((e as Error).message));
  await assert.rejects(train(cfg, { out: part, progress: null }), /already exists/);
});

test('train mamba2 + report files; NaN loss stops the run and keeps the last good checkpoint', async () => {
  const dir = tmp();
  const n0 = tf.memory().numTensors;
  const r = await train(tinyConfig({ steps: 4, evalEvery: 2 }, 'mamba2'), { out: path.join(dir, 'm2'), progress: null });
  assert.equal(tf.memory().numTensors, n0, 'no tensor leaked by a run');
  const m = readMetrics(path.join(dir, 'm2', 'metrics.jsonl'));
  assert.equal(r.step, 4);
  assert.ok(m[3]!.loss < m[0]!.loss, `mamba2 loss ${m[0]!.loss} → ${m[3]!.loss}`);
  for (const f of ['report.html', 'loss.png', 'accuracy.png', 'run.json']) assert.ok(fs.existsSync(path.join(dir, 'm2', f)), f);
  assert.match(fs.readFileSync(path.join(dir, 'm2', 'report.html'), 'utf8'), /len=6/);
  // an absurd learning rate without clipping overflows the weights: the step-2 loss is not finite
  const out = path.join(dir, 'nan');
  await assert.rejects(train(tinyConfig({ lr: 1e30, clipNorm: 0, warmup: 0, checkpointEvery: 1, steps: 6 }), { out, progress: null }),
    (e: unknown) => e instanceof UserError && /training diverged: the loss is (NaN|Infinity) at step \d/.test((e as Error).message) && /last good checkpoint/.test((e as Error).message));
  const cks = listCheckpoints(out);
  const last = readMetrics(path.join(out, 'metrics.jsonl')).at(-1)!;
  assert.ok(!Number.isFinite(last.loss));
  assert.match(last.error ?? '', /non-finite loss \((NaN|Infinity)\)/);
  assert.deepEqual(cks.map((c) => c.step), [last.step - 1]);
});

test('bad training input is refused before any work', () => {
  assert.throws(() => checkTrainConfig(tinyConfig({ lr: 0 })), /--lr: 0 must be a number > 0/);
  assert.throws(() => checkTrainConfig(tinyConfig({ lr: -1 })), UserError);
  assert.throws(() => checkTrainConfig({ ...tinyConfig(), task: { ...copyTask, context: 10 } as TaskOptions }), /--context 10 is too short/);
  assert.throws(() => checkTrainConfig({ ...tinyConfig(), task: { task: 'mqar', vocab: 8, contexts: [64], kvPairs: [8], powerA: 0.01, evalLengths: [], randomNonQueries: true } }), /--vocab 8 is too small/);
  const c = tinyConfig();
  if (c.model.kind === 'fresh') c.model.init.parts = ['a', 'nope' as 'a'];
  assert.throws(() => checkTrainConfig(c), UserError);
  assert.throws(() => checkTrainConfig({ ...tinyConfig(), model: { kind: 'fresh', shape: { arch: 'mamba1', numLayers: 1, hiddenSize: 8, stateSize: 4, vocabSize: 5 }, init: { init: 'default', parts: [], aScale: 8, bcNoise: 0, seed: 0 } } }), /--vocab 5 is smaller/);
});

test('CLI: a run killed with SIGKILL and resumed reproduces an uninterrupted run', async () => {
  const dir = tmp();
  const run = path.join(dir, 'cli');
  const main = path.resolve('dist/src/cli/main.js');
  const args = ['train', '--task', 'copy', '--alphabet', '4', '--min-len', '2', '--max-len', '6', '--context', '24', '--arch', 'mamba1', '--n-layers', '2', '--d-model', '16',
    '--d-state', '4', '--init', 'mimetic', '--steps', '16', '--batch-size', '4', '--lr', '5e-3', '--checkpoint-every', '2', '--eval-every', '8', '--eval-examples', '4', '--seed', '3', '--backend', 'cpu', '--quiet'];
  const child = spawn(process.execPath, [main, ...args, '--out', run], { stdio: 'ignore' });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  // kill -9 as soon as the step-4 checkpoint exists (mid-run: 16 steps take far longer)
  const ck4 = path.join(run, 'checkpoints', 'step-00000004');
  for (let i = 0; i < 3000 && !fs.existsSync(ck4); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(fs.existsSync(ck4), 'step-4 checkpoint written');
  child.kill('SIGKILL');
  await exited;
  const before = readMetrics(path.join(run, 'metrics.jsonl'));
  assert.ok(before.length < 16, 'killed before the end');
  const res = await new Promise<number | null>((resolve) => spawn(process.execPath, [main, 'train', '--resume', run, '--backend', 'cpu', '--quiet'], { stdio: 'ignore' }).on('exit', resolve));
  assert.equal(res, 0);
  const resumed = strip(readMetrics(path.join(run, 'metrics.jsonl')));
  assert.equal(resumed.length, 16);
  // the same configuration uninterrupted, in process
  const ref = path.join(dir, 'ref');
  await train(readRunConfig(run), { out: ref, progress: null, noReport: true });
  assert.deepEqual(resumed, strip(readMetrics(path.join(ref, 'metrics.jsonl'))));
  // a resume that changes an option fails with one line, exit code 2
  const bad = await new Promise<number | null>((resolve) => spawn(process.execPath, [main, 'train', '--resume', run, '--lr', '1e-2'], { stdio: 'ignore' }).on('exit', resolve));
  assert.equal(bad, 2);
});

test('train --model: starts from a (transplanted) checkpoint and keeps its mimetic A parameterisation', async () => {
  const dir = tmp();
  const { writeFreshCheckpoint } = await import('../src/model/init.js');
  const { targetFromCheckpoint, transplantToDir } = await import('../src/model/transplant.js');
  const fresh = path.join(dir, 'fresh');
  await writeFreshCheckpoint(fresh, { arch: 'mamba1', numLayers: 2, hiddenSize: 32, stateSize: 8, vocabSize: 8 }, { init: 'mimetic', parts: ['a', 'dt'], aScale: 4, bcNoise: 0, seed: 0 });
  const src = Checkpoint.open(path.resolve('test/fixtures/mamba1-tiny'));
  const into = Checkpoint.open(fresh);
  const tp = path.join(dir, 'tp');
  await transplantToDir({ from: src, sourceName: 'mamba1-tiny', sourceLayers: [1], target: targetFromCheckpoint(into), targetLayers: [1], part: 'ssm' }, tp);
  src.close();
  into.close();
  const { aScaleOfCheckpoint } = await import('../src/train/trainer.js');
  const tck = Checkpoint.open(tp);
  const aScale = aScaleOfCheckpoint(tck.rawConfig);
  const before = tck.readLayer(1)['mixer.A_log']!.data;
  tck.close();
  assert.equal(aScale, 4);
  const cfg = trainDefaults(copyTask, { kind: 'checkpoint', path: tp }, { steps: 2, batch: 2, lr: 1e-3, warmup: 0, aScale, evalEvery: 2, evalExamples: 2, checkpointEvery: 2 });
  const r = await train(cfg, { out: path.join(dir, 'run'), progress: null, noReport: true });
  assert.equal(r.step, 2);
  const ck = Checkpoint.open(r.checkpoint!);
  try {
    const m = (ck.rawConfig as { mimetic: { transplant: unknown[]; aScale: number } }).mimetic;
    assert.equal(m.aScale, 4);
    assert.equal(m.transplant.length, 1);
    // two small AdamW steps move A_log by about lr·c per step at most: the stored A_log is standard
    const after = ck.readLayer(1)['mixer.A_log']!.data;
    let maxd = 0;
    for (let i = 0; i < after.length; i++) maxd = Math.max(maxd, Math.abs(after[i]! - before[i]!));
    assert.ok(maxd > 0 && maxd < 2 * 2 * 4e-3 + 1e-6, `A_log moved by ${maxd}`);
  } finally { ck.close(); }
});

/** A 500-step CLI run, signalled with `signals` (back to back) once it has logged 3 steps. */
async function signalledRun(name: string, signals: NodeJS.Signals[]): Promise<{ run: string; code: number | null; steps: number }> {
  const run = path.join(tmp(), name);
  const main = path.resolve('dist/src/cli/main.js');
  const child = spawn(process.execPath, [main, 'train', '--task', 'copy', '--alphabet', '4', '--min-len', '2', '--max-len', '6', '--context', '24', '--n-layers', '1', '--d-model', '16',
    '--d-state', '4', '--steps', '500', '--batch-size', '2', '--checkpoint-every', '400', '--eval-every', '400', '--backend', 'cpu', '--quiet', '--out', run], { stdio: 'ignore' });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  const mf = path.join(run, 'metrics.jsonl');
  for (let i = 0; i < 3000 && readMetrics(mf).length < 3; i++) await new Promise((r) => setTimeout(r, 10));
  for (const s of signals) child.kill(s);
  const code = await exited;
  return { run, code, steps: readMetrics(mf).length };
}

test('CLI: SIGINT finishes the step, writes a checkpoint and the report, exits 130', async () => {
  const { run, code, steps } = await signalledRun('int', ['SIGINT']);
  assert.equal(code, 130);
  assert.ok(steps >= 3 && steps < 500, `${steps} steps`);
  assert.deepEqual(listCheckpoints(run).map((c) => c.step), [steps]);
  assert.match(fs.readFileSync(path.join(run, 'report.html'), 'utf8'), /interrupted at step/);
});

test('CLI: a scheduler\'s SIGTERM plus a sweep\'s SIGINT, in either order, still finish the step and checkpoint', async () => {
  // A scheduler signals every process of a job: a run under `mimetic sweep` gets both signals.
  // (Two SIGINTs sent back to back merge into one in the kernel, so Ctrl-C twice is not tested here.)
  for (const pair of [['SIGTERM', 'SIGINT'], ['SIGINT', 'SIGTERM']] as NodeJS.Signals[][]) {
    const { run, code, steps } = await signalledRun(pair.join('-'), pair);
    assert.equal(code, 130, pair.join(' '));
    assert.deepEqual(listCheckpoints(run).map((c) => c.step), [steps], pair.join(' '));
  }
});
