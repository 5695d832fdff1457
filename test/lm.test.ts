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
import { tinyCorpus } from './helpers/tiny-corpus.js';
import { requiresWebGPU } from './helpers/requires.js';
import { Command } from 'commander';
import { register as registerTrain } from '../src/cli/train.js';
import { expandRuns, parseSweepConfig } from '../src/train/sweep.js';
import type { SweepSummary } from '../src/train/sweep-report.js';

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
  const tfjs = spawnSync(process.execPath, [main, ...args(path.join(dir, 'tfjs')), '--compiled-step', '0'], { encoding: 'utf8' });
  assert.equal(tfjs.status, 0, tfjs.stderr);
  assert.match(tfjs.stderr, /training step: tf\.js autodiff \(--compiled-step 0\)/);
  const a = readMetrics(path.join(dir, 'compiled', 'metrics.jsonl')), b = readMetrics(path.join(dir, 'tfjs', 'metrics.jsonl'));
  assert.equal(a.length, 12);
  assert.deepEqual(a.map((m) => m.step), b.map((m) => m.step));
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i]!.loss - b[i]!.loss) < 1e-4 * Math.max(1, Math.abs(b[i]!.loss)), `step ${a[i]!.step}: loss ${a[i]!.loss} (compiled) vs ${b[i]!.loss} (tf.js)`);
    if (b[i]!.heldout) assert.ok(Math.abs(a[i]!.heldout!.bpb - b[i]!.heldout!.bpb) < 1e-4 * b[i]!.heldout!.bpb, `step ${a[i]!.step}: held-out bpb`);
  }
  assert.equal(a.filter((m) => m.heldout).length, 2);
});

const knownTrain = (() => {
  const p = new Command();
  registerTrain(p);
  return new Set(p.commands[0]!.options.map((o) => o.attributeName()));
})();
const readJson = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

test('experiments/lm-pretrain.json and lm-transplant.json parse; 1-step tiny versions run on wasm, the transplants built by scripts/lm-transplants.sh', () => {
  const pre = readJson('experiments/lm-pretrain.json'), tr = readJson('experiments/lm-transplant.json');
  const preRuns = expandRuns(parseSweepConfig(pre, 'lm-pretrain.json', knownTrain));
  assert.deepEqual(preRuns.map((r) => [r.variant, r.seed]), [['default', 0], ['default', 1], ['mimetic', 0], ['mimetic', 1]]);
  assert.equal(preRuns[0]!.options.nLayers, 12);
  const trRuns = expandRuns(parseSweepConfig(tr, 'lm-transplant.json', knownTrain));
  assert.equal(trRuns.length, 24);
  assert.deepEqual([...new Set(trRuns.map((r) => r.variant))], ['top-mixer', 'middle-mixer', 'bottom-mixer', 'top-ssm', 'middle-ssm', 'bottom-ssm', 'scratch-default', 'scratch-mimetic']);

  const dir = tmp();
  const corpus = tinyCorpus(dir);
  const tiny = { dModel: 32, dState: 8, headDim: 16 };
  // pretraining, cut to 1 step of a 3-layer d32 model (3 layers: top, middle and bottom differ)
  const preTiny = { ...pre, base: { ...pre.base, ...tiny, data: corpus, nLayers: 3, context: 32, steps: 1, batchSize: 2, warmup: 0, evalEvery: 1, evalExamples: 2, evalLengths: [6] } };
  fs.writeFileSync(path.join(dir, 'pre.json'), JSON.stringify(preTiny));
  const sp = spawnSync(process.execPath, [main, 'sweep', path.join(dir, 'pre.json'), '--out', path.join(dir, 'pre'), '--backend', 'wasm', '--parallel', '2'], { encoding: 'utf8' });
  assert.equal(sp.status, 0, sp.stderr + sp.stdout);
  const ps = readJson(path.join(dir, 'pre', 'summary.json')) as SweepSummary;
  assert.deepEqual(ps.runs.map((r) => r.status), ['finished', 'finished', 'finished', 'finished']);
  const src = ps.runs.find((r) => r.options.init === 'default' && r.seed === 0)!;
  const held = readMetrics(path.join(dir, 'pre', src.id, 'metrics.jsonl')).at(-1)!;
  assert.ok(held.heldout && held.heldout.bpb > 0, 'held-out bits per byte at the evaluation');
  assert.ok(held.eval && Object.keys(held.eval).some((k) => k.startsWith('copy:')), 'the copy evaluation rides along');

  // the transplant study: the script scores that run's checkpoint, builds the six transplants, runs the sweep (seed 0 of each variant)
  const transplants = path.join(dir, 'transplants');
  const variants = (tr.variants as Record<string, unknown>[]).map((v) =>
    typeof v.model === 'string' ? { ...v, model: path.join(transplants, path.basename(v.model)) } : { ...v, ...tiny, layers: 2 });
  const trTiny = { ...tr, base: { ...tr.base, minLen: 2, maxLen: 6, context: 16, evalLengths: [6], steps: 1, batch: 2, warmup: 0, evalEvery: 1, evalExamples: 2 }, variants };
  fs.writeFileSync(path.join(dir, 'tr.json'), JSON.stringify(trTiny));
  const st = spawnSync('bash', ['scripts/lm-transplants.sh', path.join(dir, 'pre', src.id), path.join(dir, 'tr.json'), '--', '--out', path.join(dir, 'tr'), '--backend', 'wasm', '--parallel', '2', '--where', 'seed=0'],
    { encoding: 'utf8', env: { ...process.env, TRANSPLANTS: transplants, BACKEND: 'wasm' } });
  assert.equal(st.status, 0, st.stderr + st.stdout);
  const layers = readJson(path.join(transplants, 'layers.json'));
  assert.deepEqual([layers.top.rank, layers.middle.rank, layers.bottom.rank], [1, 2, 3]);
  for (const rank of ['top', 'middle', 'bottom']) {
    for (const part of ['mixer', 'ssm']) {
      const cfg = readJson(path.join(transplants, `${rank}-${part}`, 'config.json'));
      assert.equal(cfg.num_hidden_layers, 4, `${rank}-${part}`);
      assert.equal(cfg.vocab_size, 30);
      assert.deepEqual(cfg.mimetic.transplant.map((t: Record<string, unknown>) => [t.target, t.layer, t.parts]), [0, 1, 2, 3].map((t) => [t, layers[rank].layer, part]));
    }
  }
  const ts = readJson(path.join(dir, 'tr', 'summary.json')) as SweepSummary;
  const ran = ts.runs.filter((r) => r.seed === 0);
  assert.equal(ran.length, 8);
  assert.deepEqual(ran.map((r) => r.status), Array(8).fill('finished'));
});
