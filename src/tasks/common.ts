/**
 * What the trainer needs from a synthetic task: seeded training batches (inputs, next-token
 * targets, a loss mask), fixed evaluation sets, and a scorer that turns argmax predictions into
 * accuracies. Token rows are int32, row-major [batch, length].
 */
import type { Rng } from '../util/rng.js';

export interface Batch {
  batch: number;
  length: number;
  /** Model inputs, [batch·length]. */
  ids: Int32Array;
  /** targets[t] = the token the model should predict after reading ids[..t]. */
  targets: Int32Array;
  /** 1 where the loss (and evaluation) counts, else 0. */
  mask: Float32Array;
}

/** One evaluation setting (a length, and for MQAR a number of key-value pairs). */
export interface EvalSpec {
  /** Stable key used in metrics, e.g. `len=50` or `len=256,kv=16`. */
  key: string;
  /** Sequence length the model reads. */
  length: number;
  /** Copy: string length. MQAR: number of pairs. */
  size: number;
  /** True for the settings the model trains on. */
  train: boolean;
}

export interface EvalScore {
  key: string;
  length: number;
  size: number;
  train: boolean;
  examples: number;
  /** Copy: whole-string accuracy. MQAR: mean per-example query accuracy. */
  accuracy: number;
  /** Copy only: fraction of copied characters right. */
  charAccuracy?: number;
  /**
   * Accuracy at each scored position, over the examples. Copy: position i of the copied string
   * (the EOS not included). MQAR: the i-th query of an example, in sequence order.
   */
  perPosition?: number[];
  /** Copy only: fraction of examples whose copied characters 0..i are all right. */
  prefix?: number[];
}

/** Thresholds of the generalisation lengths: whole-string accuracy ≥ 0.5, character accuracy ≥ 0.9. */
export const GEN_THRESHOLDS = { string: 0.5, char: 0.9 } as const;

/** A run's generalisation lengths (copy): see generalisationLengths. */
export interface GenLengths {
  string: number;
  char: number;
}

/**
 * The longest evaluated size whose value reaches `threshold`, or 0 when none does. Any evaluated
 * size counts, not only those below the first failure: the issue defines it as "the longest
 * evaluated length with accuracy ≥ threshold".
 */
export function longestAtLeast(points: { size: number; value: number | undefined }[], threshold: number): number {
  let best = 0;
  for (const p of points) if (p.value !== undefined && Number.isFinite(p.value) && p.value >= threshold && p.size > best) best = p.size;
  return best;
}

/** Copy: the longest evaluated string length with string accuracy ≥ 0.5, and with character accuracy ≥ 0.9. */
export function generalisationLengths(scores: { size: number; accuracy: number; charAccuracy?: number }[]): GenLengths {
  return {
    string: longestAtLeast(scores.map((s) => ({ size: s.size, value: s.accuracy })), GEN_THRESHOLDS.string),
    char: longestAtLeast(scores.map((s) => ({ size: s.size, value: s.charAccuracy })), GEN_THRESHOLDS.char),
  };
}

export interface Task {
  readonly name: 'copy' | 'mqar' | 'lm';
  /** Tokens the task uses: the model's vocabulary must be at least this. */
  readonly vocabSize: number;
  /** Length of a training row (the longest, for a task that trains several lengths). */
  readonly trainLength: number;
  /** Task options as recorded in run folders (a resumed run must match them). */
  readonly options: Record<string, unknown>;
  sampleTrain(rng: Rng, batch: number): Batch;
  evalSpecs(): EvalSpec[];
  sampleEval(rng: Rng, spec: EvalSpec, examples: number): Batch;
  /** Score argmax predictions ([batch·length], aligned with targets) of a batch from sampleEval. */
  score(spec: EvalSpec, b: Batch, predictions: Int32Array): EvalScore;
  /** Release files the task holds open (the LM task's token files). */
  close?(): void;
}

export function emptyBatch(batch: number, length: number): Batch {
  return { batch, length, ids: new Int32Array(batch * length), targets: new Int32Array(batch * length), mask: new Float32Array(batch * length) };
}

/** Fill targets from a token row of length+1: inputs row[0..L), targets row[1..L]. */
export function setRow(b: Batch, r: number, row: ArrayLike<number>, maskRow: ArrayLike<number>): void {
  const L = b.length;
  for (let t = 0; t < L; t++) {
    b.ids[r * L + t] = row[t]!;
    b.targets[r * L + t] = row[t + 1]!;
    b.mask[r * L + t] = maskRow[t + 1]!;
  }
}

/** Parse `50,100,200` into distinct positive integers. */
export function parseLengths(s: string, flag: string, err: (m: string) => Error): number[] {
  const out: number[] = [];
  for (const p of String(s).split(',').map((x) => x.trim()).filter(Boolean)) {
    const n = Number(p);
    if (!Number.isSafeInteger(n) || n < 1) throw err(`${flag}: '${p}' is not a positive integer`);
    if (!out.includes(n)) out.push(n);
  }
  return out;
}
