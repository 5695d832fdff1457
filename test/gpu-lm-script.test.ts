/** scripts/gpu-lm.sh, the GPU host's LM commands, dry-run on the CPU (wasm, the CLI from dist/) with shrunk configs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { tempDirs } from './helpers/tmpdir.js';
import { tinyCorpus } from './helpers/tiny-corpus.js';

const tmp = tempDirs('mimetic-gpu-lm-');
const main = path.resolve('dist/src/cli/main.js');
const readJson = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

test('gpu-lm.sh pretrain: the run, its series report and its last checkpoint in pieces; transplant: from the pieces reassembled, a bad piece refused', () => {
  const dir = tmp();
  const corpus = tinyCorpus(dir);
  const pre = readJson('experiments/lm-pretrain.json');
  const tiny = { dModel: 32, dState: 8, headDim: 16 };
  fs.writeFileSync(path.join(dir, 'pre.json'), JSON.stringify({ ...pre, base: { ...pre.base, ...tiny, data: corpus, nLayers: 3, context: 32, steps: 6, batchSize: 2, warmup: 0, evalEvery: 3, evalExamples: 2, evalLengths: [6], checkpointEvery: 3 } }));
  const env = { ...process.env, MIMETIC_CLI: `${process.execPath} ${main}`, BACKEND: 'wasm', SWEEPS: path.join(dir, 'sweeps'), PRETRAIN_CONFIG: path.join(dir, 'pre.json') };
  const out1 = path.join(dir, 'out1');
  const p = spawnSync('bash', ['scripts/gpu-lm.sh', 'pretrain', 'default', '0', '3'], { encoding: 'utf8', env: { ...env, OUT: out1 } });
  assert.equal(p.status, 0, p.stderr);
  assert.deepEqual(fs.readdirSync(out1).sort(), ['ckpt', 'lm-log.txt', 'lm-pretrain-default-0.tgz', 'lm-series-default-0.tgz']);
  assert.deepEqual(fs.readdirSync(path.join(out1, 'ckpt')).sort(), ['SHA256SUMS', 'config.json', 'model.safetensors.part-aa', 'source.txt']);
  assert.match(fs.readFileSync(path.join(out1, 'ckpt', 'source.txt'), 'utf8'), /^default,seed=0 step-00000006 /);
  const last = path.join(dir, 'sweeps', 'lm-pretrain', 'default,seed=0', 'checkpoints', 'step-00000006');
  assert.deepEqual(fs.readFileSync(path.join(out1, 'ckpt', 'model.safetensors.part-aa')), fs.readFileSync(path.join(last, 'model.safetensors')));
  const list = (tgz: string) => spawnSync('tar', ['-tzf', path.join(out1, tgz)], { encoding: 'utf8' }).stdout.split('\n');
  const packed = list('lm-pretrain-default-0.tgz');
  assert.ok(packed.includes('lm-pretrain/default,seed=0/metrics.jsonl') && packed.includes('lm-pretrain/summary.json'));
  assert.ok(!packed.some((f) => f.includes('checkpoints') || f.endsWith('.safetensors')), 'no checkpoints in the tgz');
  assert.ok(list('lm-series-default-0.tgz').includes('series-default-0/report.json'));

  // the pieces as the lead carries them, cut smaller than 15 MiB here so that there are several
  const pieces = path.join(dir, 'pieces');
  fs.mkdirSync(pieces);
  for (const f of ['SHA256SUMS', 'config.json', 'source.txt']) fs.copyFileSync(path.join(out1, 'ckpt', f), path.join(pieces, f));
  assert.equal(spawnSync('split', ['-b', '10K', path.join(out1, 'ckpt', 'model.safetensors.part-aa'), path.join(pieces, 'model.safetensors.part-')]).status, 0);
  assert.ok(fs.readdirSync(pieces).filter((f) => f.includes('part-')).length >= 3);
  const tr = readJson('experiments/lm-transplant.json');
  const variants = (tr.variants as Record<string, unknown>[]).map((v) => (typeof v.model === 'string' ? v : { ...v, ...tiny, layers: 2 }));
  fs.writeFileSync(path.join(dir, 'tr.json'), JSON.stringify({ ...tr, base: { ...tr.base, minLen: 2, maxLen: 6, context: 16, evalLengths: [6], steps: 1, batch: 2, warmup: 0, evalEvery: 1, evalExamples: 2 }, variants }));
  const transplants = path.join(dir, 'runs', 'lm-transplants');
  // the config names runs/lm-transplants/<rank>-<part>, relative to the folder the sweep runs in (the repo root on the GPU host): here a copy of it
  for (const v of variants) if (typeof v.model === 'string') assert.match(v.model, /^runs\/lm-transplants\//);
  const trEnv = { ...env, TRANSPLANT_CONFIG: path.join(dir, 'tr.json'), TRANSPLANTS: transplants, PRETRAINED: path.join(dir, 'pretrained') };
  const rewritten = { ...readJson(path.join(dir, 'tr.json')), variants: variants.map((v) => (typeof v.model === 'string' ? { ...v, model: path.join(transplants, path.basename(v.model)) } : v)) };
  fs.writeFileSync(path.join(dir, 'tr.json'), JSON.stringify(rewritten));
  const out2 = path.join(dir, 'out2');
  const t = spawnSync('bash', ['scripts/gpu-lm.sh', 'transplant', pieces, '3', '--where', 'variant=top-mixer,bottom-ssm,scratch-default', '--where', 'seed=0'], { encoding: 'utf8', env: { ...trEnv, OUT: out2 } });
  assert.equal(t.status, 0, t.stderr + fs.readFileSync(path.join(out2, 'lm-log.txt'), 'utf8'));
  const got = spawnSync('tar', ['-tzf', path.join(out2, 'lm-transplant.tgz')], { encoding: 'utf8' }).stdout.split('\n');
  assert.ok(got.includes('lm-transplant/layers.json') && got.includes('lm-transplant/summary.json'));
  const s = readJson(path.join(dir, 'sweeps', 'lm-transplant', 'summary.json'));
  const ran = (s.runs as { id: string; status: string }[]).filter((r) => r.status === 'finished').map((r) => r.id).sort();
  assert.deepEqual(ran, ['bottom-ssm,seed=0', 'scratch-default,seed=0', 'top-mixer,seed=0']);
  assert.equal(readJson(path.join(transplants, 'layers.json')).source, path.join(dir, 'pretrained'));
  assert.deepEqual(fs.readFileSync(path.join(dir, 'pretrained', 'model.safetensors')), fs.readFileSync(path.join(last, 'model.safetensors')));
  assert.equal(readJson(path.join(transplants, 'top-mixer', 'config.json')).vocab_size, 30);

  // on a warm machine: the pretrain run's folder itself, its last checkpoint hashed there
  const runDir = path.join(dir, 'sweeps', 'lm-pretrain', 'default,seed=0');
  const w = spawnSync('bash', ['scripts/gpu-lm.sh', 'transplant', runDir, '3', '--where', 'variant=top-mixer', '--where', 'seed=1'], { encoding: 'utf8', env: { ...trEnv, OUT: path.join(dir, 'out4') } });
  assert.equal(w.status, 0, w.stderr);
  assert.deepEqual(fs.readFileSync(path.join(dir, 'pretrained', 'model.safetensors')), fs.readFileSync(path.join(last, 'model.safetensors')));
  const s2 = readJson(path.join(dir, 'sweeps', 'lm-transplant', 'summary.json'));
  assert.ok((s2.runs as { id: string; status: string }[]).some((r) => r.id === 'top-mixer,seed=1' && r.status === 'finished'));
  assert.match(fs.readFileSync(path.join(dir, 'out4', 'lm-log.txt'), 'utf8'), /checkpoint reassembled: default,seed=0 step-00000006 \(from the run folder\)/);

  // a missing piece: the reassembled file does not match its hash
  fs.rmSync(path.join(pieces, 'model.safetensors.part-ab'));
  const bad = spawnSync('bash', ['scripts/gpu-lm.sh', 'transplant', pieces, '3'], { encoding: 'utf8', env: { ...trEnv, OUT: path.join(dir, 'out3') } });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /does not match .*SHA256SUMS; carry every piece/);
});
