/** The LM task end to end on the CPU: held-out bits per byte fall on a repetitive text, and a halted run resumed reproduces its losses. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { readMetrics } from '../src/train/metrics.js';
import { readRunConfig, train } from '../src/train/trainer.js';
import { listCheckpoints } from '../src/train/state.js';
import { initBackend } from '../src/model/backend.js';
import { tempDirs } from './helpers/tmpdir.js';
import { requiresWebGPU } from './helpers/requires.js';

const tmp = tempDirs('mimetic-lm-');
const main = path.resolve('dist/src/cli/main.js');
const strip = (ms: ReturnType<typeof readMetrics>) => ms.map(({ step, loss, heldout }) => ({ step, loss, heldout }));

test('train --task lm: held-out bits per byte fall on a repetitive text; a halted run resumes to the same losses', async () => {
  const dir = tmp();
  const txt = path.join(dir, 'txt');
  fs.mkdirSync(txt);
  // the same sentence in every document: a model that learns it predicts the held-out text too
  for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(txt, `d${i}.txt`), 'the cat sat on the mat. '.repeat(40));
  const prep = spawnSync(process.execPath, [main, 'data', 'prepare', txt, '--out', path.join(dir, 'corpus'), '--held-out', '0.3'], { encoding: 'utf8' });
  assert.equal(prep.status, 0, prep.stderr);
  const run = path.join(dir, 'run');
  const args = ['train', '--task', 'lm', '--data', path.join(dir, 'corpus'), '--context', '32', '--arch', 'mamba2', '--n-layers', '1', '--d-model', '32',
    '--d-state', '8', '--head-dim', '16', '--steps', '40', '--batch-size', '8', '--lr', '1e-2', '--warmup', '4', '--eval-every', '20', '--checkpoint-every', '10',
    '--seed', '0', '--backend', 'wasm', '--quiet', '--out', run];
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const ms = readMetrics(path.join(run, 'metrics.jsonl'));
  const held = ms.filter((m) => m.heldout).map((m) => m.heldout!.bpb);
  assert.equal(held.length, 2);
  assert.ok(held[0]! < 8 && held[1]! < held[0]! - 0.3, `bits per byte ${held.join(' → ')} (8 = uniform over bytes)`);
  assert.ok(ms[39]!.loss < ms[0]!.loss - 1, `loss ${ms[0]!.loss} → ${ms[39]!.loss}`);
  // halted at step 25 (last checkpoint 20), then resumed in process: the same losses and held-out figures
  await initBackend('wasm'); // the backend the CLI run used: the same kernels give the same digits
  const part = path.join(dir, 'part');
  const cfg = readRunConfig(run);
  const h = await train(cfg, { out: part, progress: null, noReport: true, haltAfterStep: 25 });
  assert.equal(h.status, 'halted');
  assert.equal(listCheckpoints(part).at(-1)!.step, 20);
  await train(cfg, { out: part, resume: true, progress: null, noReport: true });
  assert.deepEqual(strip(readMetrics(path.join(part, 'metrics.jsonl'))), strip(ms));
});

test('train --task lm --backend webgpu: the compiled WebGPU step runs, and its losses and held-out figures follow the tf.js path', await requiresWebGPU(), () => {
  const dir = tmp();
  const txt = path.join(dir, 'txt');
  fs.mkdirSync(txt);
  for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(txt, `d${i}.txt`), `document ${i}: the cat sat on the mat. `.repeat(30));
  const prep = spawnSync(process.execPath, [main, 'data', 'prepare', txt, '--out', path.join(dir, 'corpus'), '--held-out', '0.5'], { encoding: 'utf8' });
  assert.equal(prep.status, 0, prep.stderr);
  const args = (out: string) => ['train', '--task', 'lm', '--data', path.join(dir, 'corpus'), '--context', '32', '--arch', 'mamba2', '--n-layers', '1', '--d-model', '32',
    '--d-state', '8', '--head-dim', '16', '--steps', '12', '--batch-size', '4', '--eval-every', '6', '--seed', '0', '--backend', 'webgpu', '--out', out];
  const compiled = spawnSync(process.execPath, [main, ...args(path.join(dir, 'compiled'))], { encoding: 'utf8' });
  assert.equal(compiled.status, 0, compiled.stderr);
  assert.match(compiled.stderr, /training step: compiled WebGPU kernels/);
  const tfjs = spawnSync(process.execPath, [main, ...args(path.join(dir, 'tfjs'))], { encoding: 'utf8', env: { ...process.env, MIMETIC_COMPILED_STEP: '0' } });
  assert.equal(tfjs.status, 0, tfjs.stderr);
  assert.match(tfjs.stderr, /training step: tf\.js autodiff \(MIMETIC_COMPILED_STEP=0\)/);
  const a = readMetrics(path.join(dir, 'compiled', 'metrics.jsonl')), b = readMetrics(path.join(dir, 'tfjs', 'metrics.jsonl'));
  assert.equal(a.length, 12);
  assert.deepEqual(a.map((m) => m.step), b.map((m) => m.step));
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i]!.loss - b[i]!.loss) < 1e-4 * Math.max(1, Math.abs(b[i]!.loss)), `step ${a[i]!.step}: loss ${a[i]!.loss} (compiled) vs ${b[i]!.loss} (tf.js)`);
    if (b[i]!.heldout) assert.ok(Math.abs(a[i]!.heldout!.bpb - b[i]!.heldout!.bpb) < 1e-4 * b[i]!.heldout!.bpb, `step ${a[i]!.step}: held-out bpb`);
  }
  assert.equal(a.filter((m) => m.heldout).length, 2);
});
