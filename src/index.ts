/**
 * The library's public entry point (`import … from 'mimetic'`): what the CLI commands do, as
 * functions. Everything else under src/ is importable too, but may change without notice.
 *
 *   checkpoint → model → analysis → report;   tasks → train → sweep   (ARCHITECTURE.md)
 */
import { Checkpoint } from './checkpoint/checkpoint.js';
import { resolveCheckpoint, type ResolveOptions } from './hub/resolve.js';
import { auditCheckpoint } from './analysis/audit.js';
import { defaultProbe, type Probe } from './analysis/probe.js';
import { referenceScores, type ReferenceScores } from './analysis/reference.js';
import type { LayerScores } from './analysis/scores.js';

// Checkpoints: safetensors folders, single files, Hub ids.
export { Checkpoint } from './checkpoint/checkpoint.js';
export type { ResolveOptions } from './hub/resolve.js';
export type { MambaConfig, Arch } from './checkpoint/config.js';
export type { Tensor } from './checkpoint/safetensors.js';

// Backends and the model.
export { BACKENDS, initBackend, type BackendName } from './model/backend.js';
export { MambaLM } from './model/lm.js';
export { streamCheckpoint, type StreamOptions, type StreamResult, type LayerInternals } from './model/stream.js';
export type { ScanInternals } from './model/mamba.js';
export { runCheckpoint, type CaptureOptions, type CaptureResult, type LayerCapture, type CaptureLevel, type AttentionMaps } from './analysis/capture.js';

// Analysis and reports.
export { auditCheckpoint, type AuditOptions, type AuditResult } from './analysis/audit.js';
export { closeAuditThreads } from './analysis/audit-threads.js';
export { defaultProbe, validateProbe, type Probe } from './analysis/probe.js';
export { referenceScores, type ReferenceScores } from './analysis/reference.js';
export type { LayerScores } from './analysis/scores.js';
export { writeReport, type ReportOptions } from './report/report.js';

// Fresh models and transplants.
export { writeFreshCheckpoint, freshConfig, initWeights, MIMETIC_PARTS, type InitOptions, type ModelShape, type MimeticPart } from './model/init.js';
export { transplantToDir, targetFromCheckpoint, TRANSPLANT_PARTS, type TransplantJob, type TransplantPart, type TransplantRecord } from './model/transplant.js';

// Tasks, training and sweeps.
export { makeTask, type TaskOptions, type Task } from './tasks/index.js';
export { train, trainDefaults, type TrainConfig, type TrainResult, type ModelSource } from './train/trainer.js';
export { parseSweepConfig, runSweep, type SweepConfig, type SweepOutcome } from './train/sweep.js';
export { UserError } from './util/errors.js';

/** Open a checkpoint folder, a `.safetensors` file or a Hub id (`org/name[@rev]`, pulled into the cache on demand). Close it when done. */
export async function openCheckpoint(source: string, opts: ResolveOptions = {}): Promise<Checkpoint> {
  return Checkpoint.open(await resolveCheckpoint(source, opts));
}

export interface ScoreOptions {
  /** Default: `mimetic score`'s probe (4 rows of 64 random ids, each repeated once; seed 0). */
  probe?: Probe;
  /** Layers to score (default all). */
  layers?: number[];
  /** Also score a fresh default-init and mimetic-init layer of the same shape (default true). */
  reference?: boolean;
  channelBlock?: number;
  /** Threads sharing the probe's rows on the wasm and cpu backends (default 1). */
  threads?: number;
}

export interface ScoreResult {
  /** Ranked (rank 1 = most mimetic), in layer order. */
  layers: LayerScores[];
  reference?: ReferenceScores;
  probe: Probe;
  seconds: number;
}

/** What `mimetic score` prints: every layer's mimetic scores, ranked, beside the reference rows. */
export async function scoreCheckpoint(ckpt: Checkpoint, opts: ScoreOptions = {}): Promise<ScoreResult> {
  // The config's vocabulary; never past the embedding's rows (as the CLI does).
  const probe = opts.probe ?? defaultProbe(Math.min(ckpt.config.configVocabSize, ckpt.config.vocabSize));
  const res = await auditCheckpoint(ckpt, { probe, layers: opts.layers, channelBlock: opts.channelBlock, threads: opts.threads });
  const reference = opts.reference === false ? undefined : await referenceScores(ckpt.config, probe, { channelBlock: opts.channelBlock, threads: opts.threads });
  return { layers: res.layers, ...(reference ? { reference } : {}), probe, seconds: res.seconds };
}
