/**
 * A run's model in and out: reading the weights a run starts from (a fresh init, a checkpoint
 * given with --model, or the run's own last checkpoint), and writing its checkpoints (state.ts
 * lays out the folders; this module gathers what goes in them).
 */
import * as path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { Checkpoint } from '../checkpoint/checkpoint.js';
import type { MambaConfig } from '../checkpoint/config.js';
import { freshConfig, initRecord, initWeights } from '../model/init.js';
import type { MambaLM } from '../model/lm.js';
import { type WeightMap, loadWeights } from '../model/weights.js';
import type { EvalScore } from '../tasks/common.js';
import { UserError } from '../util/errors.js';
import type { Rng } from '../util/rng.js';
import type { AdamWState } from './adamw.js';
import type { TrainConfig } from './config.js';
import { type RunState, saveCheckpoint } from './state.js';

function mimeticRecordOf(raw: Record<string, unknown>): Record<string, unknown> {
  const m = raw.mimetic;
  return m && typeof m === 'object' && !Array.isArray(m) ? { ...(m as Record<string, unknown>) } : {};
}

/** The A parameterisation a checkpoint was initialised for (its config's mimetic record), or null. */
export function aScaleOfCheckpoint(raw: Record<string, unknown>): number | null {
  const m = mimeticRecordOf(raw);
  const parts = Array.isArray(m.parts) ? m.parts : [];
  return parts.includes('a') && typeof m.aScale === 'number' ? m.aScale : null;
}

/** The weights a run starts from and the provenance its checkpoints carry on (`mimetic` in config.json). */
export interface StartingModel {
  config: MambaConfig;
  weights: WeightMap;
  record: Record<string, unknown>;
}

/** Every tensor of a checkpoint; NaN or Inf weights are refused (the first loss would be NaN and read as a learning-rate problem). */
export function readStartingCheckpoint(p: string): StartingModel {
  const ck = Checkpoint.open(p);
  try {
    const w = loadWeights(ck);
    const bad = Object.entries(w).filter(([, t]) => !t.data.every(Number.isFinite)).map(([n]) => n);
    if (bad.length) {
      throw new UserError(`${p}: the checkpoint holds non-finite values (NaN or Inf) in ${bad.slice(0, 3).join(', ')}${bad.length > 3 ? ` and ${bad.length - 3} more tensors` : ''}; training cannot start from it — re-download it or choose another checkpoint`);
    }
    const record = mimeticRecordOf(ck.rawConfig);
    delete record.trained;
    return { config: ck.config, weights: w, record };
  } finally {
    ck.close();
  }
}

/** The model a run starts from: its own last checkpoint when resuming, else fresh or --model's. */
export function startingModel(cfg: TrainConfig, resumeFrom: string | undefined, taskVocab: number): StartingModel {
  if (resumeFrom) return readStartingCheckpoint(resumeFrom);
  if (cfg.model.kind === 'fresh') {
    const config = freshConfig(cfg.model.shape);
    return { config, weights: Object.fromEntries(initWeights(config, cfg.model.init)), record: initRecord(cfg.model.init) as unknown as Record<string, unknown> };
  }
  const m = readStartingCheckpoint(cfg.model.path);
  if (m.config.vocabSize < taskVocab) throw new UserError(`--model ${cfg.model.path}: its vocabulary (${m.config.vocabSize}) is smaller than the ${cfg.task.task} task's ${taskVocab} tokens; use a model with a larger vocabulary or shrink the task`);
  return m;
}

/** Writes a run's checkpoints: the model as an HF checkpoint, the optimizer, the data stream and the clock. */
export class Checkpointer {
  /** The newest checkpoint folder (written or resumed from). */
  last: string | undefined;

  constructor(private readonly a: {
    runDir: string; cfg: TrainConfig; taskOptions: unknown; config: MambaConfig; model: MambaLM; record: Record<string, unknown>;
    rawParams: Map<string, tf.Variable>; opt: AdamWState; keep: number; keepSteps: Set<number>; last?: string;
  }) {
    this.last = a.last;
  }

  /** config.json's `mimetic` record at step `s`: the starting model's provenance, the A parameterisation, the training so far. */
  recordFor(s: number): Record<string, unknown> {
    const { cfg } = this.a;
    return { ...this.a.record, ...(cfg.aScale !== null ? { aScale: cfg.aScale } : {}), trained: { task: this.a.taskOptions, steps: s, seed: cfg.seed } };
  }

  async save(s: number, dataRng: Rng, trainSeconds: number, lastEval: EvalScore[] | undefined, extra: Partial<RunState> = {}): Promise<void> {
    const { a } = this;
    const st: RunState = { step: s, dataRng: dataRng.getState(), adamStep: a.opt.step, trainSeconds, ...extra };
    if (lastEval) st.lastEval = { step: s, scores: Object.fromEntries(lastEval.map((e) => [e.key, e])) };
    this.last = await saveCheckpoint({ runDir: a.runDir, config: a.config, weights: await a.model.toWeightsAsync(), mimetic: this.recordFor(s), rawParams: a.rawParams, opt: a.opt, state: st, keep: a.keep, keepSteps: a.keepSteps });
  }

  /** The last checkpoint relative to the run folder (for the report), or 'none'. */
  shown(): string {
    return this.last ? path.relative(this.a.runDir, this.last) : 'none';
  }
}
