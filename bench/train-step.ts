/**
 * Training throughput: tokens/s of full AdamW steps (forward, backward, update) for a model size
 * and task shape on a backend. Prints one JSON object.
 *
 *   node dist/bench/train-step.js [--backend cpu] [--arch mamba1] [--d-model 64] [--layers 2]
 *        [--batch 8] [--context 64] [--steps 10]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initBackend, type BackendName } from '../src/model/backend.js';
import { readMetrics } from '../src/train/metrics.js';
import { train, trainDefaults } from '../src/train/trainer.js';

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def;
};
const backend = await initBackend(arg('backend', 'cpu') as BackendName, { quiet: true });
const arch = arg('arch', 'mamba1') as 'mamba1' | 'mamba2';
const dModel = Number(arg('d-model', '64'));
const layers = Number(arg('layers', '2'));
const batch = Number(arg('batch', '8'));
const context = Number(arg('context', '64'));
const steps = Number(arg('steps', '10'));
const maxLen = Math.floor((context - 3) / 2);
const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-bench-')), 'run');
const cfg = trainDefaults(
  { task: 'copy', alphabet: 26, minLen: Math.min(5, maxLen), maxLen, context, evalLengths: [] },
  { kind: 'fresh', shape: { arch, numLayers: layers, hiddenSize: dModel, stateSize: 16, headDim: Math.min(64, 2 * dModel), vocabSize: 30 }, init: { init: 'mimetic', parts: ['a', 'dt', 'bc', 'conv'], aScale: 8, bcNoise: 0, seed: 0 } },
  { steps, batch, aScale: 8, evalEvery: steps, evalExamples: 1, checkpointEvery: steps, warmup: 0 },
);
const t0 = Date.now();
await train(cfg, { out, progress: null, noReport: true });
const wall = (Date.now() - t0) / 1000;
const m = readMetrics(path.join(out, 'metrics.jsonl'));
// Skip the first step (kernel compilation / warm-up) in the steady-state figure.
const steady = m.slice(1).map((x) => x.tokensPerSec).sort((a, b) => a - b);
const median = steady.length ? steady[Math.floor(steady.length / 2)]! : m[0]!.tokensPerSec;
process.stdout.write(JSON.stringify({ bench: 'train-step', backend, arch, dModel, layers, batch, context, steps, tokensPerStep: batch * context, medianTokensPerSec: Math.round(median), wallSeconds: wall, firstLoss: m[0]!.loss, lastLoss: m[m.length - 1]!.loss }) + '\n');
fs.rmSync(path.dirname(out), { recursive: true, force: true });
