/**
 * Run checkpoints: `checkpoints/step-NNNNNNNN/` holding the model as an HF checkpoint
 * (config.json + model.safetensors, standard A_log), the optimizer moments (optimizer.safetensors)
 * and the step and RNG state (state.json). Each folder is built under a temporary name and renamed
 * into place, so a kill at any moment leaves the previous checkpoint intact.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { MambaConfig } from '../checkpoint/config.js';
import { SafetensorsReader, writeSafetensors } from '../checkpoint/safetensors.js';
import { writeCheckpointFiles } from '../model/init.js';
import type { WeightMap } from '../model/weights.js';
import { writeDirAtomic, writeFileAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import type { RngState } from '../util/rng.js';
import type { AdamWState } from './adamw.js';

export const CHECKPOINTS_DIR = 'checkpoints';

export interface RunState {
  step: number;
  dataRng: RngState;
  adamStep: number;
  /** Seconds of training so far (all parts of a resumed run). */
  trainSeconds: number;
  /** Last evaluation, if any. */
  lastEval?: { step: number; scores: Record<string, unknown> };
  stoppedEarly?: boolean;
}

const stepDir = (step: number) => `step-${String(step).padStart(8, '0')}`;

export interface SaveArgs {
  runDir: string;
  config: MambaConfig;
  weights: WeightMap;
  mimetic: Record<string, unknown>;
  /** Raw training variables to restore bit-exactly (the mimetic A parameter). */
  rawParams: Map<string, tf.Variable>;
  opt: AdamWState;
  state: RunState;
  keep: number;
  /** Steps never pruned (--checkpoint-steps). */
  keepSteps?: Set<number>;
}

/** Write a checkpoint folder atomically, then prune older ones (keeping `keep`). Returns its path. */
export async function saveCheckpoint(a: SaveArgs): Promise<string> {
  const root = path.join(a.runDir, CHECKPOINTS_DIR);
  fs.mkdirSync(root, { recursive: true });
  const dir = path.join(root, stepDir(a.state.step));
  const optTensors: { name: string; shape: number[]; data: Float32Array }[] = [];
  for (const [k, m] of a.opt.m) optTensors.push({ name: `m.${k}`, shape: m.shape.slice(), data: (await m.data()) as Float32Array });
  for (const [k, v] of a.opt.v) optTensors.push({ name: `v.${k}`, shape: v.shape.slice(), data: (await v.data()) as Float32Array });
  for (const [k, p] of a.rawParams) optTensors.push({ name: `p.${k}`, shape: p.shape.slice(), data: (await p.data()) as Float32Array });
  await writeDirAtomic(dir, (tmp) => {
    writeCheckpointFiles(tmp, a.config, a.weights, a.mimetic);
    writeSafetensors(path.join(tmp, 'optimizer.safetensors'), optTensors, { metadata: { adam_step: String(a.opt.step) } });
    writeFileAtomic(path.join(tmp, 'state.json'), JSON.stringify(a.state, null, 2) + '\n');
  }, { replace: true });
  const all = listCheckpoints(a.runDir).filter((c) => !a.keepSteps?.has(c.step));
  for (const old of all.slice(0, Math.max(0, all.length - a.keep))) fs.rmSync(old.dir, { recursive: true, force: true });
  return dir;
}

/** Complete checkpoints of a run, oldest first (temporary folders of killed writes are ignored). */
export function listCheckpoints(runDir: string): { step: number; dir: string }[] {
  const root = path.join(runDir, CHECKPOINTS_DIR);
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root)
    .map((n) => /^step-(\d{8})$/.exec(n))
    .filter((m): m is RegExpExecArray => !!m && fs.existsSync(path.join(root, m[0], 'state.json')))
    .map((m) => ({ step: Number(m[1]), dir: path.join(root, m[0]) }))
    .sort((x, y) => x.step - y.step);
}

/** Remove temporary folders left by a killed checkpoint write. */
export function cleanTemporaries(runDir: string): void {
  const root = path.join(runDir, CHECKPOINTS_DIR);
  if (!fs.existsSync(root)) return;
  for (const n of fs.readdirSync(root)) if (n.startsWith('.') && n.includes('.tmp-')) fs.rmSync(path.join(root, n), { recursive: true, force: true });
}

export function readRunState(dir: string): RunState {
  const file = path.join(dir, 'state.json');
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as RunState;
  } catch (e) {
    throw new UserError(`${file}: unreadable run state (${(e as Error).message}); the checkpoint is damaged — remove that folder to resume from an earlier one`);
  }
}

/** Load optimizer moments (and raw parameters) into existing variables. */
export function loadOptimizer(dir: string, opt: AdamWState, params: Map<string, tf.Variable>): void {
  const file = path.join(dir, 'optimizer.safetensors');
  const r = SafetensorsReader.open(file);
  try {
    const need = (name: string, shape: number[]) => {
      if (!r.tensors.has(name)) throw new UserError(`${file}: tensor '${name}' is missing; the run folder belongs to another model`);
      const t = r.readFloat32(name);
      if (t.shape.join(',') !== shape.join(',')) throw new UserError(`${file}: '${name}' has shape [${t.shape.join(', ')}] but the model needs [${shape.join(', ')}]; the run folder belongs to another model`);
      return tf.tensor(t.data, t.shape, 'float32');
    };
    for (const [k, m] of opt.m) { const t = need(`m.${k}`, m.shape); m.assign(t); t.dispose(); }
    for (const [k, v] of opt.v) { const t = need(`v.${k}`, v.shape); v.assign(t); t.dispose(); }
    for (const [k, p] of params) {
      if (!r.tensors.has(`p.${k}`)) continue;
      const t = need(`p.${k}`, p.shape);
      p.assign(t);
      t.dispose();
    }
    opt.step = Number(r.metadata.adam_step ?? 0);
  } finally {
    r.close();
  }
}

/**
 * A run's own account of how it ended, for a supervising sweep: the sweep names the file in
 * MIMETIC_RUN_STATUS and reads it when the child exits (no parsing of the child's log).
 */
export const RUN_STATUS_ENV = 'MIMETIC_RUN_STATUS';

export interface RunStatusFile {
  state: 'running' | 'finished' | 'target-reached' | 'interrupted' | 'halted' | 'failed' | 'crashed';
  /** The step reached (when it ended with a result). */
  step?: number;
  /** failed / crashed: the one line the child printed, `mimetic: …`. */
  error?: string;
  pid: number;
  time: string;
}

export function writeRunStatus(file: string, s: Omit<RunStatusFile, 'pid' | 'time'>): void {
  writeFileAtomic(file, JSON.stringify({ ...s, pid: process.pid, time: new Date().toISOString() }) + '\n');
}

/** The status a child wrote, or null (none written, or unreadable: the child died before it could say). */
export function readRunStatus(file: string): RunStatusFile | null {
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as RunStatusFile;
    return j && typeof j.state === 'string' ? j : null;
  } catch {
    return null;
  }
}
