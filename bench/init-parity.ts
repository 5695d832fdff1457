/**
 * Parity check, our side: writes small fresh checkpoints exactly as `mimetic init` does
 * (writeFreshCheckpoint), runs our forward on them and stores the logits beside each model, for
 * bench/init_parity_torch.py to load the same folders with Hugging Face transformers and compare.
 *
 *   node dist/bench/init-parity.js FOLDER [--backend cpu] [--overwrite]
 *
 * FOLDER gets one sub-folder per model (config.json, model.safetensors, ours.json):
 *   mamba1-default, mamba1-mimetic, mamba2-default, mamba2-mimetic   (writeFreshCheckpoint)
 *   mamba2-g2-mimetic   n_groups 2: ModelShape has no groups (freshConfig fixes n_groups 1), so this one
 *                       is freshConfig + nGroups 2, written by the same initWeights + writeCheckpointFiles
 *                       that writeFreshCheckpoint uses.
 * Shapes: 2 layers, d_model 64 (d_inner 128), d_state 16, vocab 32, Mamba-2 head dim 16 (8 heads).
 * Mimetic = all parts (a,dt,bc,conv), the CLI defaults a-scale 8, bc-noise 0, seed 0.
 * ours.json: { model, ids [2][24] (seeded), shape [2, 24, 32], logits (flat, row-major), note? }.
 * An existing model folder is an error unless --overwrite (which removes it first).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { initBackend, type BackendName } from '../src/model/backend.js';
import {
  type InitOptions, type ModelShape, MIMETIC_PARTS, freshConfig, initRecord, initWeights, writeCheckpointFiles, writeFreshCheckpoint,
} from '../src/model/init.js';
import { MambaLM } from '../src/model/lm.js';
import { Rng } from '../src/util/rng.js';

const BATCH = 2;
const LENGTH = 24;
const IDS_SEED = 1234;

interface Spec {
  name: string;
  shape: ModelShape;
  init: InitOptions;
  /** Written with this many groups through initWeights + writeCheckpointFiles (ModelShape has no groups). */
  nGroups?: number;
  note?: string;
}

const DEFAULT_INIT: InitOptions = { init: 'default', parts: [], aScale: 8, bcNoise: 0, seed: 0 };
const MIMETIC_INIT: InitOptions = { init: 'mimetic', parts: [...MIMETIC_PARTS], aScale: 8, bcNoise: 0, seed: 0 };
const M1: ModelShape = { arch: 'mamba1', numLayers: 2, hiddenSize: 64, stateSize: 16, vocabSize: 32 };
const M2: ModelShape = { arch: 'mamba2', numLayers: 2, hiddenSize: 64, stateSize: 16, headDim: 16, vocabSize: 32 };

const SPECS: Spec[] = [
  { name: 'mamba1-default', shape: M1, init: DEFAULT_INIT },
  { name: 'mamba1-mimetic', shape: M1, init: MIMETIC_INIT },
  { name: 'mamba2-default', shape: M2, init: DEFAULT_INIT },
  { name: 'mamba2-mimetic', shape: M2, init: MIMETIC_INIT },
  {
    name: 'mamba2-g2-mimetic', shape: M2, init: MIMETIC_INIT, nGroups: 2,
    note: 'n_groups 2, not through writeFreshCheckpoint (ModelShape has no groups). Our gated RMSNorm normalises per group (mamba_ssm); '
      + 'a transformers Mamba2 whose MambaRMSNormGated normalises over all of d_inner would differ here and only here.',
  },
];

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

function fixedIds(vocab: number): number[][] {
  const rng = new Rng(IDS_SEED);
  return Array.from({ length: BATCH }, () => Array.from({ length: LENGTH }, () => rng.int(0, vocab - 1)));
}

async function writeModel(dir: string, s: Spec): Promise<void> {
  if (s.nGroups === undefined) {
    await writeFreshCheckpoint(dir, s.shape, s.init);
    return;
  }
  const config = { ...freshConfig(s.shape), nGroups: s.nGroups };
  if (config.numHeads! % s.nGroups !== 0) throw new Error(`${s.name}: ${config.numHeads} heads do not split into ${s.nGroups} groups`);
  const weights = initWeights(config, s.init);
  fs.mkdirSync(dir, { recursive: true });
  writeCheckpointFiles(dir, config, weights, initRecord(s.init) as unknown as Record<string, unknown>);
}

async function ourLogits(dir: string, ids: number[][]): Promise<{ shape: number[]; logits: number[] }> {
  const ck = Checkpoint.open(dir);
  let lm: MambaLM;
  try {
    lm = MambaLM.fromCheckpoint(ck, { trainable: false });
  } finally {
    ck.close();
  }
  try {
    const idsT = tf.tensor2d(ids, [ids.length, ids[0]!.length], 'int32');
    const logits = lm.logits(idsT);
    idsT.dispose();
    const data = (await logits.data()) as Float32Array;
    const shape = logits.shape.slice();
    logits.dispose();
    return { shape, logits: Array.from(data) };
  } finally {
    lm.dispose();
  }
}

async function main(): Promise<void> {
  const root = process.argv[2];
  if (!root || root.startsWith('--')) {
    process.stderr.write('usage: node dist/bench/init-parity.js FOLDER [--backend cpu] [--overwrite]\n');
    process.exit(2);
  }
  const overwrite = process.argv.includes('--overwrite');
  const backend = arg('backend', 'cpu') as BackendName;
  const used = await initBackend(backend, { quiet: true });
  fs.mkdirSync(root, { recursive: true });
  for (const s of SPECS) {
    const dir = path.join(root, s.name);
    if (fs.existsSync(dir)) {
      if (!overwrite) throw new Error(`${dir} already exists; give an empty FOLDER or --overwrite`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
    await writeModel(dir, s);
    const ids = fixedIds(s.shape.vocabSize);
    const { shape, logits } = await ourLogits(dir, ids);
    let maxAbs = 0;
    for (const v of logits) maxAbs = Math.max(maxAbs, Math.abs(v));
    const out = { model: s.name, backend: used, ids, shape, logits, ...(s.note ? { note: s.note } : {}) };
    fs.writeFileSync(path.join(dir, 'ours.json'), JSON.stringify(out) + '\n');
    process.stdout.write(`${JSON.stringify({ model: s.name, dir, shape, maxAbsLogit: maxAbs, finite: logits.every(Number.isFinite) })}\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`init-parity: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
