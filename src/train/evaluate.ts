/**
 * Evaluation: teacher-forced argmax accuracy on every setting of the task, from fixed-seed
 * examples (the same at every evaluation, and independent of the training stream, so a resumed
 * run evaluates exactly as an uninterrupted one), and held-out language-modelling loss.
 */
import * as tf from '@tensorflow/tfjs';
import type { MambaLM } from '../model/lm.js';
import { type Batch, type EvalScore, type GenLengths, type Task, generalisationLengths } from '../tasks/common.js';
import { LmTask } from '../tasks/lm.js';
import { Rng, deriveSeed } from '../util/rng.js';
import type { HeldOut } from './metrics.js';

/** Most logits (floats) one prediction chunk materialises: 256 MiB. */
export const PREDICT_LOGITS_MAX = 2 ** 26;

/** Teacher-forced argmax predictions for a batch, chunked by `chunk` rows. */
export async function predict(model: MambaLM, b: Batch, chunk: number): Promise<Int32Array> {
  const out = new Int32Array(b.batch * b.length);
  // Keep a chunk's logits (rows·L·vocab floats) far below WebGPU's storage-binding limit (often
  // 2 GiB): Dawn does not fail an oversized binding, the matmul silently computes nothing (seen on
  // the GPU host as accuracy 0 at MQAR length 1024, vocab 8192, 64 rows).
  chunk = Math.max(1, Math.min(chunk, Math.floor(PREDICT_LOGITS_MAX / (b.length * model.config.vocabSize))));
  for (let r = 0; r < b.batch; r += chunk) {
    const n = Math.min(chunk, b.batch - r);
    const ids = tf.tensor2d(b.ids.subarray(r * b.length, (r + n) * b.length), [n, b.length], 'int32');
    // Inference mode: the backend's fused kernels where it has them (webgpu), no autodiff bookkeeping.
    const am = tf.tidy(() => tf.argMax(model.forward(ids, { hiddenStates: false, inference: true }).logits, 2));
    out.set((await am.data()) as Int32Array, r * b.length);
    ids.dispose();
    am.dispose();
  }
  return out;
}

/** Evaluate on every setting of the task with fixed-seed examples (the same each time). */
export async function evaluate(model: MambaLM, task: Task, seed: number, examples: number, chunk: number): Promise<EvalScore[]> {
  const scores: EvalScore[] = [];
  for (const spec of task.evalSpecs()) {
    const b = task.sampleEval(new Rng(deriveSeed(seed, `eval:${spec.key}`)), spec, examples);
    scores.push(task.score(spec, b, await predict(model, b, chunk)));
  }
  return scores;
}

/**
 * Held-out language modelling: mean next-token cross-entropy (nats) over every position of the
 * task's fixed held-out windows, as bits per byte (nats ÷ ln 2 ÷ bytes per token) and perplexity.
 */
export async function evaluateHeldOut(model: MambaLM, task: LmTask, examples: number, chunk: number): Promise<HeldOut> {
  const b = task.heldOutBatch(examples);
  chunk = Math.max(1, Math.min(chunk, Math.floor(PREDICT_LOGITS_MAX / (b.length * model.config.vocabSize))));
  let nll = 0, right = 0;
  for (let r = 0; r < b.batch; r += chunk) {
    const n = Math.min(chunk, b.batch - r);
    const ids = tf.tensor2d(b.ids.subarray(r * b.length, (r + n) * b.length), [n, b.length], 'int32');
    const targets = tf.tensor1d(b.targets.subarray(r * b.length, (r + n) * b.length), 'int32');
    const [sum, hits] = tf.tidy(() => {
      const logits = model.forward(ids, { hiddenStates: false, inference: true }).logits;
      const V = logits.shape[2];
      const flat = logits.reshape([-1, V]);
      const picked = tf.sum(tf.mul(flat, tf.oneHot(targets, V)), 1);
      return [tf.sum(tf.sub(tf.logSumExp(flat, 1), picked)), tf.sum(tf.cast(tf.equal(tf.argMax(flat, 1), targets), 'float32'))];
    });
    nll += (await sum.data())[0]!;
    right += (await hits.data())[0]!;
    for (const t of [ids, targets, sum, hits]) t.dispose();
  }
  const tokens = b.batch * b.length;
  const loss = nll / tokens;
  return { loss, bpb: loss / Math.LN2 / task.bytesPerToken(), ppl: Math.exp(loss), accuracy: right / tokens, tokens };
}

/** `len=50 0.984 (char 0.999), …`: string accuracy, and character accuracy where the task has one. */
export function fmtScores(scores: EvalScore[]): string {
  return scores.map((e) => `${e.key} ${e.accuracy.toFixed(3)}${e.charAccuracy === undefined ? '' : ` (char ${e.charAccuracy.toFixed(3)})`}`).join(', ');
}

/** Minimum accuracy over the trained settings (what early stopping and the progress bar show). */
export function trainAccuracy(scores: EvalScore[]): number | undefined {
  const t = scores.filter((s) => s.train);
  return t.length ? Math.min(...t.map((s) => s.accuracy)) : undefined;
}

/** One evaluation of a run: the scores, held-out loss (lm), generalisation lengths (copy, or lm's copy evaluation). */
export interface Evaluation {
  scores: EvalScore[];
  heldout?: HeldOut;
  gen?: GenLengths;
}

export async function evaluateRun(model: MambaLM, task: Task, seed: number, examples: number, chunk: number): Promise<Evaluation> {
  const heldout = task instanceof LmTask ? await evaluateHeldOut(model, task, examples, chunk) : undefined;
  const scores = await evaluate(model, task, seed, examples, chunk);
  const copy = task.name === 'copy' ? scores : task.name === 'lm' ? scores.filter((e) => e.key.startsWith('copy:')) : [];
  const out: Evaluation = { scores };
  if (heldout) out.heldout = heldout;
  if (copy.length) out.gen = generalisationLengths(copy);
  return out;
}
