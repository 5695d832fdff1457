/**
 * The training loop: a MambaLM on a synthetic task with AdamW, warmup + decay, gradient clipping,
 * periodic evaluation, metrics, atomic checkpoints and exact resume. On the CPU backends a run
 * resumed from its last checkpoint (after any stop, kill -9 included) reproduces the losses of an
 * uninterrupted run: the data stream is a seeded RNG whose state is checkpointed, the model and
 * optimizer are saved in float32, and evaluation draws from its own fixed-seed streams.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Checkpoint } from '../checkpoint/checkpoint.js';
import type { MambaConfig } from '../checkpoint/config.js';
import type { Tensor } from '../checkpoint/safetensors.js';
import { type Weights, freshConfig, initRecord, initWeights } from '../model/init.js';
import { A_LOG_PARAM, aLogFromParam } from '../model/mamba.js';
import { MambaLM } from '../model/lm.js';
import { LmTask } from '../tasks/lm.js';
import { type Batch, type EvalScore, type Task, generalisationLengths } from '../tasks/common.js';
import { writeFileAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { Rng, deriveSeed } from '../util/rng.js';
import { adamwStepWebGPU } from './adamw-webgpu.js';
import { CompiledStep, RING, compiledStepUnsupported } from './gpu/step.js';
import { METRICS_FILE, RUN_FILE, type TrainConfig, checkRun } from './config.js';
import { type AdamWHParams, adamwStep, createAdamWState, disposeAdamWState } from './adamw.js';
import { type HeldOut, MetricsWriter, Progress, defaultLogEvery, readMetrics, type MetricsLine } from './metrics.js';
import { initFact, taskFact, writeRunReport } from './report.js';
import { lrAt } from './schedule.js';
import { type RunState, cleanTemporaries, listCheckpoints, loadOptimizer, readRunState, saveCheckpoint } from './state.js';

export interface RunOptions {
  out: string;
  resume?: boolean;
  /** Where progress goes (default stderr; null: silent). */
  progress?: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean } | null;
  /** Plain-output progress line every this many steps. */
  logEvery?: number;
  /** Checkpoints kept (default 1: the last). */
  keep?: number;
  /** Stop (without a checkpoint) after this step, as a kill would: for resume tests. */
  haltAfterStep?: number;
  /** Abort: finish the current step, checkpoint, stop. */
  signal?: AbortSignal;
  /** Recorded in run.json only. */
  backend?: string;
  /** Skip the HTML report (tests). */
  noReport?: boolean;
  /** The task config.ts's checkRun returned for this config and folder: its checks are not run again. */
  task?: Task;
}

export interface TrainResult {
  status: 'finished' | 'target-reached' | 'interrupted' | 'halted';
  step: number;
  lastLoss: number;
  lastEval?: EvalScore[];
  checkpoint?: string;
  runDir: string;
}

export { DATA_DIR, DEFAULT_LR, METRICS_FILE, RUN_FILE, type ModelSource, type TrainConfig, checkResume, checkTrainConfig, readRunConfig, trainDefaults } from './config.js';

function weightsRecord(w: Weights): Record<string, Tensor> {
  return Object.fromEntries(w);
}

/**
 * Mean next-token cross-entropy over the masked positions. The target logit is picked with a
 * one-hot product (not a gather, whose gradient needs UnsortedSegmentSum, missing on wasm); the
 * one-hot is the size of the logits' gradient anyway.
 */
export function maskedLoss(logits: tf.Tensor3D, targets: tf.Tensor1D, mask: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const V = logits.shape[2];
    const flat = logits.reshape([-1, V]);
    const lse = tf.logSumExp(flat, 1);
    const picked = tf.sum(tf.mul(flat, tf.oneHot(targets, V)), 1);
    const nll = tf.sub(lse, picked);
    return tf.div(tf.sum(tf.mul(nll, mask)), tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
  });
}

function batchTensors(b: Batch) {
  return {
    ids: tf.tensor2d(b.ids, [b.batch, b.length], 'int32'),
    targets: tf.tensor1d(b.targets, 'int32'),
    mask: tf.tensor1d(b.mask, 'float32'),
  };
}

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

/**
 * The model's weights by standard HF name (A_log restored from A_log_param), read asynchronously:
 * MambaLM.toWeights reads synchronously, which the WebGPU backend in Node cannot do.
 */
export async function modelWeights(model: MambaLM): Promise<Weights> {
  const out: Weights = new Map();
  for (const [k, v] of model.variables) {
    const data = Float32Array.from((await v.data()) as Float32Array);
    if (k.endsWith(A_LOG_PARAM) && model.aParam) out.set(k.slice(0, -A_LOG_PARAM.length) + 'mixer.A_log', { shape: v.shape.slice(), data: aLogFromParam(data, model.aParam.c) });
    else out.set(k, { shape: v.shape.slice(), data });
  }
  return out;
}

/** MIMETIC_READ_EVERY: steps between loss read-backs of the compiled step (a ring slot is reused after RING steps). */
function readEveryFromEnv(): number {
  const raw = process.env.MIMETIC_READ_EVERY ?? '25';
  const n = Number(raw);
  if (!(Number.isSafeInteger(n) && n >= 1 && n <= RING)) throw new UserError(`MIMETIC_READ_EVERY=${raw}: must be an integer from 1 to ${RING}`);
  return n;
}

export async function train(cfg: TrainConfig, run: RunOptions): Promise<TrainResult> {
  const task = run.task ?? checkRun(cfg, run.out, !!run.resume);
  const compiledReadEvery = readEveryFromEnv();
  const runDir = run.out;
  const runFile = path.join(runDir, RUN_FILE);
  let startStep = 0;
  let state: RunState | undefined;
  let ckptDir: string | undefined;
  if (run.resume) {
    cleanTemporaries(runDir);
    const cks = listCheckpoints(runDir);
    if (cks.length) {
      ckptDir = cks[cks.length - 1]!.dir;
      state = readRunState(ckptDir);
      startStep = state.step;
    }
  }

  // The model: from the run's checkpoint when resuming, else fresh or from --model.
  let config: MambaConfig;
  let weights: Record<string, Tensor>;
  let baseRecord: Record<string, unknown>;
  const loadCk = (p: string) => {
    const ck = Checkpoint.open(p);
    try {
      const w: Record<string, Tensor> = {};
      for (const n of ck.names()) w[n] = ck.read(n);
      // NaN or Inf weights make the first loss NaN, which would read as a learning-rate problem.
      const bad = Object.entries(w).filter(([, t]) => !t.data.every(Number.isFinite)).map(([n]) => n);
      if (bad.length) {
        throw new UserError(`${p}: the checkpoint holds non-finite values (NaN or Inf) in ${bad.slice(0, 3).join(', ')}${bad.length > 3 ? ` and ${bad.length - 3} more tensors` : ''}; training cannot start from it — re-download it or choose another checkpoint`);
      }
      return { config: ck.config, weights: w, record: mimeticRecordOf(ck.rawConfig) };
    } finally {
      ck.close();
    }
  };
  if (ckptDir) {
    const l = loadCk(ckptDir);
    ({ config, weights } = l);
    baseRecord = l.record;
    delete baseRecord.trained;
  } else if (cfg.model.kind === 'fresh') {
    config = freshConfig(cfg.model.shape);
    weights = weightsRecord(initWeights(config, cfg.model.init));
    baseRecord = initRecord(cfg.model.init) as unknown as Record<string, unknown>;
  } else {
    const l = loadCk(cfg.model.path);
    ({ config, weights } = l);
    baseRecord = l.record;
    delete baseRecord.trained;
    if (config.vocabSize < task.vocabSize) throw new UserError(`--model ${cfg.model.path}: its vocabulary (${config.vocabSize}) is smaller than the ${cfg.task.task} task's ${task.vocabSize} tokens; use a model with a larger vocabulary or shrink the task`);
  }
  if (config.vocabSize < task.vocabSize) throw new UserError(`model vocabulary ${config.vocabSize} is smaller than the task's ${task.vocabSize} tokens`);

  if (!run.resume) {
    fs.mkdirSync(runDir, { recursive: true });
    writeFileAtomic(runFile, JSON.stringify({ version: 1, created: new Date().toISOString(), backend: run.backend ?? tf.getBackend(), config: cfg }, null, 2) + '\n');
  } else if (!fs.existsSync(runFile)) {
    throw new UserError(`--resume ${runDir}: ${RUN_FILE} is missing`);
  }

  const aParam = cfg.aScale !== null ? { c: cfg.aScale } : undefined;
  const model = MambaLM.fromWeights(config, weights, { aParam });
  // A fixed parameter order (by name), whatever order the weights came in: the gradient norm
  // sums over parameters, and float sums must not depend on how the model was loaded.
  const params = new Map([...model.variables].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const opt = createAdamWState(params);
  const varKey = new Map<string, string>();
  for (const [k, v] of params) varKey.set(v.name, k);
  const rawParams = new Map([...params].filter(([k]) => k.endsWith(A_LOG_PARAM)));
  let dataRng = new Rng(deriveSeed(cfg.seed, 'data'));
  let trainSeconds = 0;
  if (ckptDir && state) {
    loadOptimizer(ckptDir, opt, rawParams);
    if (opt.step !== state.adamStep) throw new UserError(`${ckptDir}: optimizer step ${opt.step} disagrees with state step ${state.adamStep}; the checkpoint is damaged`);
    dataRng = Rng.fromState(state.dataRng);
    trainSeconds = state.trainSeconds;
  }

  if (run.resume && startStep >= cfg.steps) {
    // Nothing left to do: report the finished run as it stands.
    const last = readMetrics(path.join(runDir, METRICS_FILE)).filter((m) => m.step <= startStep).at(-1);
    const scores = state?.lastEval ? (Object.values(state.lastEval.scores) as EvalScore[]) : undefined;
    disposeAdamWState(opt);
    model.dispose();
    return { status: 'finished', step: startStep, lastLoss: last?.loss ?? NaN, lastEval: scores, checkpoint: ckptDir, runDir };
  }
  const metrics = new MetricsWriter(path.join(runDir, METRICS_FILE), run.resume ? startStep : undefined);
  const progress = new Progress(run.progress === undefined ? process.stderr : run.progress, cfg.steps, run.logEvery ?? defaultLogEvery(cfg.steps));
  const sched = { kind: cfg.schedule, lr: cfg.lr, minLr: cfg.minLr, warmup: cfg.warmup, steps: cfg.steps };
  const hp: AdamWHParams = { lr: cfg.lr, beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weightDecay: cfg.weightDecay, clipNorm: cfg.clipNorm };
  let lastLoss = NaN;
  let lastEval: EvalScore[] | undefined;
  let lastCheckpoint: string | undefined = ckptDir;
  let status: TrainResult['status'] = 'finished';
  let step = startStep;
  const t0 = Date.now();
  const recordFor = (s: number) => ({ ...baseRecord, ...(cfg.aScale !== null ? { aScale: cfg.aScale } : {}), trained: { task: task.options, steps: s, seed: cfg.seed } });

  const keepSteps = new Set(cfg.checkpointSteps ?? []);
  const checkpoint = async (s: number, extra: Partial<RunState> = {}) => {
    const st: RunState = { step: s, dataRng: dataRng.getState(), adamStep: opt.step, trainSeconds: trainSeconds + (Date.now() - t0) / 1000, ...extra };
    if (lastEval) st.lastEval = { step: s, scores: Object.fromEntries(lastEval.map((e) => [e.key, e])) };
    lastCheckpoint = await saveCheckpoint({ runDir, config, weights: await modelWeights(model), mimetic: recordFor(s), rawParams, opt, state: st, keep: run.keep ?? 1, keepSteps });
  };

  const report = async (statusLine: string) => {
    if (run.noReport) return;
    const facts: [string, string][] = [
      ['task', taskFact(cfg.task)],
      ['model', `${config.arch}, ${config.numLayers} layers, d_model ${config.hiddenSize}, d_state ${config.stateSize}, vocab ${config.vocabSize}`],
      ['init', cfg.model.kind === 'fresh' ? initFact(initRecord(cfg.model.init)) : cfg.model.path],
      ['A parameterisation', cfg.aScale === null ? 'A = −exp(A_log)' : `A = −exp(−${cfg.aScale}·A_log_param)`],
      ['optimizer', `AdamW lr ${cfg.lr} (${cfg.schedule}, warmup ${cfg.warmup}, min ${cfg.minLr}), wd ${cfg.weightDecay}, clip ${cfg.clipNorm}, batch ${cfg.batch}`],
      ['steps', `${step} of ${cfg.steps}`],
      ['seed', String(cfg.seed)],
      ['checkpoint', lastCheckpoint ? path.relative(runDir, lastCheckpoint) : 'none'],
    ];
    await writeRunReport(runDir, readMetrics(path.join(runDir, METRICS_FILE)), { title: `mimetic train: ${path.basename(path.resolve(runDir))}`, facts, status: statusLine });
  };

  // On webgpu the compiled step (gpu/step.ts) runs forward, backward and AdamW as raw dispatches,
  // and losses are read back every READ_EVERY steps (and before any evaluation or checkpoint).
  const why = tf.getBackend() !== 'webgpu' ? 'not on webgpu' : process.env.MIMETIC_COMPILED_STEP === '0' ? 'MIMETIC_COMPILED_STEP=0' : compiledStepUnsupported(config, params);
  // One compiled step per batch shape (MQAR mixes lengths), all sharing the parameter buffers.
  const compiledSteps = new Map<string, CompiledStep>();
  let compiled: CompiledStep | undefined;
  const compiledFor = (b: Batch): CompiledStep => {
    const key = `${b.batch}x${b.length}`;
    let cs = compiledSteps.get(key);
    if (!cs) {
      try {
        cs = new CompiledStep(model, params, b.batch, b.length, compiled);
      } catch (e) {
        throw new UserError(`compiled WebGPU step for batch ${key}: ${(e as Error).message}; use a smaller --batch-size, or MIMETIC_COMPILED_STEP=0 for the tf.js path`);
      }
      cs.setDecay(opt);
      if (!compiled) cs.push(opt);
      compiledSteps.set(key, cs);
      compiled ??= cs;
    }
    return cs;
  };
  const readEvery = why ? 1 : compiledReadEvery;
  type Pending = { step: number; lr: number; tokens: number; loss?: number; gradNorm?: number; cs?: CompiledStep };
  const pending: Pending[] = [];
  let windowStart = Date.now();

  /** The pending steps' metrics lines (losses read back from the GPU); a non-finite loss stops the run. */
  const settle = async (): Promise<MetricsLine[]> => {
    for (const cs of new Set(pending.map((p) => p.cs))) {
      if (!cs) continue;
      const h = await cs.history(0, RING);
      for (const p of pending) if (p.cs === cs) { p.loss = h.loss[p.step % RING]; p.gradNorm = h.gradNorm[p.step % RING]; }
    }
    const per = (Date.now() - windowStart) / 1000 / Math.max(1, pending.length);
    const lines: MetricsLine[] = [];
    for (const p of pending) {
      const lossVal = p.loss!;
      if (!Number.isFinite(lossVal)) {
        for (const l of lines) metrics.write(l);
        metrics.write({ step: p.step, loss: lossVal, lr: p.lr, gradNorm: NaN, tokensPerSec: 0, elapsed: (Date.now() - t0) / 1000, error: `non-finite loss (${lossVal})` });
        const where = lastCheckpoint ? `the last good checkpoint (${path.relative(process.cwd(), lastCheckpoint) || lastCheckpoint}) is kept` : 'no checkpoint had been written yet';
        throw new UserError(`training diverged: the loss is ${lossVal} at step ${p.step}; ${where}; lower --lr (now ${cfg.lr}) or --clip and start a new run`);
      }
      lines.push({ step: p.step, loss: lossVal, lr: p.lr, gradNorm: p.gradNorm!, tokensPerSec: per > 0 ? p.tokens / per : 0, elapsed: (Date.now() - t0) / 1000 });
      lastLoss = lossVal;
    }
    pending.length = 0;
    windowStart = Date.now();
    return lines;
  };

  try {
    if (startStep > 0) progress.line(`resuming ${runDir} from step ${startStep}`);
    if (tf.getBackend() === 'webgpu') progress.line(why ? `training step: tf.js autodiff (${why})` : 'training step: compiled WebGPU kernels');
    while (step < cfg.steps) {
      const s = step + 1;
      const b = task.sampleTrain(dataRng, cfg.batch);
      hp.lr = lrAt(sched, s);
      if (!why) {
        const cs = compiledFor(b);
        cs.setBatch(b, s);
        cs.step(hp, opt.step + 1);
        opt.step += 1;
        pending.push({ step: s, lr: hp.lr, tokens: b.batch * b.length, cs });
      } else {
        const bt = batchTensors(b);
        try {
          const { value, grads } = tf.variableGrads(() => maskedLoss(model.logits(bt.ids), bt.targets, bt.mask), [...params.values()]);
          const lossVal = (await value.data())[0]!;
          value.dispose();
          let gradNorm = NaN;
          if (Number.isFinite(lossVal)) {
            const byKey = new Map<string, tf.Tensor>();
            for (const [name, g] of Object.entries(grads)) byKey.set(varKey.get(name) ?? name, g);
            // On webgpu one fused kernel updates every parameter (a tf-op chain costs ~100 ms a step there).
            const norm = tf.getBackend() === 'webgpu' ? adamwStepWebGPU(params, byKey, opt, hp) : adamwStep(params, byKey, opt, hp);
            gradNorm = (await norm.data())[0]!;
            norm.dispose();
          }
          for (const g of Object.values(grads)) g.dispose();
          pending.push({ step: s, lr: hp.lr, tokens: b.batch * b.length, loss: lossVal, gradNorm });
        } finally {
          for (const t of Object.values(bt)) t.dispose();
        }
      }
      step = s;
      // Let the event loop run (on the CPU backends every await above resolves as a microtask, so
      // without this a SIGINT handler would never get to run before the loop ends).
      await new Promise((r) => setImmediate(r));
      const aborted = run.signal?.aborted ?? false;
      const evalNow = step % cfg.evalEvery === 0 || step === cfg.steps;
      const halt = run.haltAfterStep !== undefined && step >= run.haltAfterStep && step < cfg.steps;
      const ckptDue = step % cfg.checkpointEvery === 0 || step === cfg.steps || keepSteps.has(step);
      if (!(evalNow || halt || aborted || ckptDue || pending.length >= readEvery)) continue;

      const lines = await settle();
      const line = lines.pop()!;
      for (const l of lines) {
        metrics.write(l);
        progress.update(l.step, l.loss, lastEval ? trainAccuracy(lastEval) : undefined, l.tokensPerSec, (((Date.now() - t0) / 1000) / (l.step - startStep)) * (cfg.steps - l.step));
      }
      if (compiled && (evalNow || ckptDue || aborted)) compiled.pull(opt);
      let reached = false;
      if (evalNow) {
        const held = task instanceof LmTask ? await evaluateHeldOut(model, task, cfg.evalExamples, cfg.batch) : undefined;
        lastEval = await evaluate(model, task, cfg.seed, cfg.evalExamples, cfg.batch);
        if (lastEval.length) line.eval = Object.fromEntries(lastEval.map(({ key, ...rest }) => [key, rest]));
        if (held) line.heldout = held;
        if (task.name === 'copy') line.gen = generalisationLengths(lastEval);
        const copyEval = task.name === 'lm' ? lastEval.filter((e) => e.key.startsWith('copy:')) : [];
        if (copyEval.length) line.gen = generalisationLengths(copyEval);
        if (held) progress.line(`step ${step}: held-out ${held.bpb.toFixed(4)} bits per byte, perplexity ${held.ppl.toFixed(3)}, next-token accuracy ${held.accuracy.toFixed(4)}`);
        const acc = trainAccuracy(lastEval);
        reached = cfg.targetAcc !== null && acc !== undefined && acc >= cfg.targetAcc;
        progress.line(`step ${step}: loss ${line.loss.toFixed(4)}, ${fmtScores(lastEval)}${line.gen ? `; generalisation length ${line.gen.string} (string), ${line.gen.char} (char)` : ''}`);
      }
      metrics.write(line);
      const rate = ((Date.now() - t0) / 1000) / (step - startStep);
      progress.update(step, line.loss, lastEval ? trainAccuracy(lastEval) : undefined, line.tokensPerSec, rate * (cfg.steps - step));
      if (halt) {
        status = 'halted';
        break;
      }
      if (reached || aborted || ckptDue) {
        await checkpoint(step, reached ? { stoppedEarly: true } : {});
      }
      if (reached) { status = 'target-reached'; break; }
      if (aborted) { status = 'interrupted'; break; }
    }
    progress.end();
    const msg = status === 'finished' ? `finished ${step} steps` : status === 'target-reached' ? `stopped at step ${step}: target accuracy ${cfg.targetAcc} reached` : status === 'interrupted' ? `interrupted at step ${step}` : `halted at step ${step}`;
    if (status !== 'halted') await report(`${msg}; last loss ${lastLoss.toFixed(4)}`);
    return { status, step, lastLoss, lastEval, checkpoint: lastCheckpoint, runDir };
  } catch (e) {
    progress.end();
    if (e instanceof UserError) await report(`stopped: ${e.message}`).catch(() => undefined);
    throw e;
  } finally {
    metrics.close();
    for (const cs of [...compiledSteps.values()].reverse()) cs.dispose();
    disposeAdamWState(opt);
    model.dispose();
    task.close?.();
  }
}
