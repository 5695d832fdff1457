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
import type { MambaConfig } from '../checkpoint/config.js';
import { initRecord } from '../model/init.js';
import { A_LOG_PARAM } from '../model/mamba.js';
import { MambaLM } from '../model/lm.js';
import { runDevice } from '../model/backend.js';
import type { EvalScore, Task } from '../tasks/common.js';
import { writeFileAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { Rng, deriveSeed } from '../util/rng.js';
import { type AdamWHParams, createAdamWState, disposeAdamWState } from './adamw.js';
import { Checkpointer, startingModel } from './checkpoint.js';
import { ConfigError, METRICS_FILE, RUN_FILE, RUN_LOCK, type TrainConfig, checkRun } from './config.js';
import { evaluateRun, fmtScores, trainAccuracy } from './evaluate.js';
import { MetricsWriter, Progress, defaultLogEvery, readMetrics, type MetricsLine } from './metrics.js';
import { initFact, taskFact, writeRunReport } from './report.js';
import { lrAt } from './schedule.js';
import { type RunState, cleanTemporaries, listCheckpoints, loadOptimizer, readRunState } from './state.js';
import { takeLock } from './lock.js';
import { type Step, type StepRecord, compiledReadEvery, makeStep } from './step.js';

export { DATA_DIR, DEFAULT_LR, METRICS_FILE, RUN_FILE, type ModelSource, type TrainConfig, checkResume, checkTrainConfig, readRunConfig, trainDefaults } from './config.js';
export { PREDICT_LOGITS_MAX, evaluate, evaluateHeldOut, fmtScores, predict, trainAccuracy } from './evaluate.js';
export { aScaleOfCheckpoint } from './checkpoint.js';
export { maskedLoss } from './step.js';

export interface RunOptions {
  out: string;
  resume?: boolean;
  /** Where progress goes (default stderr; null: silent). */
  progress?: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean } | null;
  /** Plain-output progress line every this many steps. */
  logEvery?: number;
  /** Checkpoints kept (default 1: the last; a resumed run: what run.json recorded). */
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

/** Where a resumed run picks up: its last checkpoint and the state saved with it (none: from step 0). */
function resumePoint(runDir: string): { dir: string; state: RunState } | undefined {
  cleanTemporaries(runDir);
  const last = listCheckpoints(runDir).at(-1);
  return last && { dir: last.dir, state: readRunState(last.dir) };
}

/** The facts at the top of a run's report.html. */
function reportFacts(cfg: TrainConfig, config: MambaConfig, step: number, checkpoint: string): [string, string][] {
  return [
    ['task', taskFact(cfg.task)],
    ['model', `${config.arch}, ${config.numLayers} layers, d_model ${config.hiddenSize}, d_state ${config.stateSize}, vocab ${config.vocabSize}`],
    ['init', cfg.model.kind === 'fresh' ? initFact(initRecord(cfg.model.init)) : cfg.model.path],
    ['A parameterisation', cfg.aScale === null ? 'A = −exp(A_log)' : `A = −exp(−${cfg.aScale}·A_log_param)`],
    ['optimizer', `AdamW lr ${cfg.lr} (${cfg.schedule}, warmup ${cfg.warmup}, min ${cfg.minLr}), wd ${cfg.weightDecay}, clip ${cfg.clipNorm}, batch ${cfg.batch}`],
    ['steps', `${step} of ${cfg.steps}`],
    ['seed', String(cfg.seed)],
    ['checkpoint', checkpoint],
  ];
}

function endMessage(status: TrainResult['status'], step: number, cfg: TrainConfig): string {
  return status === 'finished' ? `finished ${step} steps` : status === 'target-reached' ? `stopped at step ${step}: target accuracy ${cfg.targetAcc} reached` : status === 'interrupted' ? `interrupted at step ${step}` : `halted at step ${step}`;
}

/**
 * Train: check, set up (model, optimizer, data stream; from the last checkpoint when resuming),
 * then step until done. Every `readEvery` steps, and at each evaluation or checkpoint, the steps
 * are settled (their losses read back, written to metrics.jsonl); a non-finite loss ends the run.
 */
export async function train(cfg: TrainConfig, run: RunOptions): Promise<TrainResult> {
  const task = run.task ?? checkRun(cfg, run.out, !!run.resume);
  let unlock: (() => void) | undefined;
  try {
    return await trainIn(cfg, run, task, () => (unlock = lockRunDir(run.out)));
  } finally {
    unlock?.();
  }
}

/** One process at a time in a run folder: a second `train --resume` of it is refused while the first runs. */
function lockRunDir(runDir: string): () => void {
  const r = takeLock(path.join(runDir, RUN_LOCK));
  if ('holder' in r) throw new UserError(`${runDir}: another mimetic train (pid ${r.holder.pid}) is running this run; wait for it to finish or stop it first`);
  return r.release;
}

/** The run options run.json records (a resumed run keeps them unless given again). */
interface SavedRunOptions { keep?: number }

function savedRunOptions(runFile: string): SavedRunOptions {
  try {
    return (JSON.parse(fs.readFileSync(runFile, 'utf8')) as { run?: SavedRunOptions }).run ?? {};
  } catch {
    return {};
  }
}

async function trainIn(cfg: TrainConfig, run: RunOptions, task: Task, lock: () => void): Promise<TrainResult> {
  const readEvery = compiledReadEvery(cfg.gpuStep);
  const runDir = run.out;
  const runFile = path.join(runDir, RUN_FILE);
  if (run.resume) lock();
  const from = run.resume ? resumePoint(runDir) : undefined;
  const start = startingModel(cfg, from?.dir, task.vocabSize);
  const { config } = start;
  if (config.vocabSize < task.vocabSize) throw new UserError(`model vocabulary ${config.vocabSize} is smaller than the task's ${task.vocabSize} tokens`);
  // Checked before the run folder exists (a fresh model's arch is checked with the other options).
  if (cfg.gpuStep?.scanForm === 'ssd' && config.arch !== 'mamba2') throw new ConfigError('gpuStep.scanForm', `'ssd' needs a Mamba-2 model (a scalar A per head); this one is ${config.arch}: drop it or use recurrent`);
  let keep = run.keep ?? 1;
  if (run.resume) {
    if (!fs.existsSync(runFile)) throw new UserError(`--resume ${runDir}: ${RUN_FILE} is missing`);
    keep = run.keep ?? savedRunOptions(runFile).keep ?? 1;
  }

  const model = MambaLM.fromWeights(config, start.weights, { aParam: cfg.aScale !== null ? { c: cfg.aScale } : undefined });
  // A fixed parameter order (by name), whatever order the weights came in: the gradient norm
  // sums over parameters, and float sums must not depend on how the model was loaded.
  const params = new Map([...model.variables].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const opt = createAdamWState(params);
  const rawParams = new Map([...params].filter(([k]) => k.endsWith(A_LOG_PARAM)));
  let dataRng = new Rng(deriveSeed(cfg.seed, 'data'));
  let trainSeconds = 0;
  const startStep = from?.state.step ?? 0;
  if (from) {
    loadOptimizer(from.dir, opt, rawParams);
    if (opt.step !== from.state.adamStep) throw new UserError(`${from.dir}: optimizer step ${opt.step} disagrees with state step ${from.state.adamStep}; the checkpoint is damaged`);
    dataRng = Rng.fromState(from.state.dataRng);
    trainSeconds = from.state.trainSeconds;
  }
  if (run.resume && startStep >= cfg.steps) {
    // Nothing left to do: report the finished run as it stands.
    const last = readMetrics(path.join(runDir, METRICS_FILE)).filter((m) => m.step <= startStep).at(-1);
    const scores = from?.state.lastEval ? (Object.values(from.state.lastEval.scores) as EvalScore[]) : undefined;
    disposeAdamWState(opt);
    model.dispose();
    task.close?.();
    return { status: 'finished', step: startStep, lastLoss: last?.loss ?? NaN, lastEval: scores, checkpoint: from?.dir, runDir };
  }

  // The step is chosen (and refuses what it cannot train) before a fresh run's folder exists.
  let stepper: Step | undefined;
  try {
    stepper = makeStep(model, config, params, opt, readEvery, cfg.gpuStep);
    // A training batch's shape, drawn from a copy of the data stream (the run's own draws are unchanged).
    stepper.prepare?.(task.sampleTrain(Rng.fromState(dataRng.getState()), cfg.batch));
  } catch (e) {
    stepper?.dispose();
    disposeAdamWState(opt);
    model.dispose();
    task.close?.();
    throw e;
  }
  if (!run.resume) {
    fs.mkdirSync(runDir, { recursive: true });
    lock();
    const saved: SavedRunOptions = { keep };
    writeFileAtomic(runFile, JSON.stringify({ version: 1, created: new Date().toISOString(), backend: run.backend ?? tf.getBackend(), device: runDevice(), config: cfg, run: saved }, null, 2) + '\n');
  }

  const keepSteps = new Set(cfg.checkpointSteps ?? []);
  const ckpt = new Checkpointer({ runDir, cfg, taskOptions: task.options, config, model, record: start.record, rawParams, opt, keep, keepSteps, last: from?.dir });
  const metrics = new MetricsWriter(path.join(runDir, METRICS_FILE), run.resume ? startStep : undefined);
  const progress = new Progress(run.progress === undefined ? process.stderr : run.progress, cfg.steps, run.logEvery ?? defaultLogEvery(cfg.steps));
  const sched = { kind: cfg.schedule, lr: cfg.lr, minLr: cfg.minLr, warmup: cfg.warmup, steps: cfg.steps };
  const hp: AdamWHParams = { lr: cfg.lr, beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weightDecay: cfg.weightDecay, clipNorm: cfg.clipNorm };
  const t0 = Date.now();
  const elapsed = () => (Date.now() - t0) / 1000;
  let windowStart = Date.now();
  let lastLoss = NaN;
  let lastEval: EvalScore[] | undefined;
  let status: TrainResult['status'] = 'finished';
  let step = startStep;
  const report = async (statusLine: string) => {
    if (run.noReport) return;
    const title = `mimetic train: ${path.basename(path.resolve(runDir))}`;
    await writeRunReport(runDir, readMetrics(path.join(runDir, METRICS_FILE)), { title, facts: reportFacts(cfg, config, step, ckpt.shown()), status: statusLine });
  };
  const show = (l: MetricsLine) => progress.update(l.step, l.loss, lastEval ? trainAccuracy(lastEval) : undefined, l.tokensPerSec, (elapsed() / (l.step - startStep)) * (cfg.steps - l.step));

  try {
    if (startStep > 0) progress.line(`resuming ${runDir} from step ${startStep}`);
    if (stepper.how) progress.line(stepper.how);
    while (step < cfg.steps) {
      const s = step + 1;
      hp.lr = lrAt(sched, s);
      await stepper.run(task.sampleTrain(dataRng, cfg.batch), s, hp);
      step = s;
      // Let the event loop run (on the CPU backends every await above resolves as a microtask, so
      // without this a SIGINT handler would never get to run before the loop ends).
      await new Promise((r) => setImmediate(r));
      const aborted = run.signal?.aborted ?? false;
      const evalNow = step % cfg.evalEvery === 0 || step === cfg.steps;
      const halt = run.haltAfterStep !== undefined && step >= run.haltAfterStep && step < cfg.steps;
      const ckptDue = step % cfg.checkpointEvery === 0 || step === cfg.steps || keepSteps.has(step);
      if (!(evalNow || halt || aborted || ckptDue || stepper.queued >= stepper.readEvery)) continue;

      const lines = metricsLines(await stepper.settle(), (Date.now() - windowStart) / 1000, elapsed());
      windowStart = Date.now();
      const bad = lines.find((l) => !Number.isFinite(l.loss));
      if (bad) {
        for (const l of lines.slice(0, lines.indexOf(bad))) metrics.write(l);
        metrics.write({ ...bad, gradNorm: NaN, tokensPerSec: 0, error: `non-finite loss (${bad.loss})` });
        const where = ckpt.last ? `the last good checkpoint (${path.relative(process.cwd(), ckpt.last) || ckpt.last}) is kept` : 'no checkpoint had been written yet';
        throw new UserError(`training diverged: the loss is ${bad.loss} at step ${bad.step}; ${where}; lower --lr (now ${cfg.lr}) or --clip and start a new run`);
      }
      lastLoss = lines.at(-1)!.loss;
      const line = lines.pop()!;
      for (const l of lines) {
        metrics.write(l);
        show(l);
      }
      if (evalNow || ckptDue || aborted) stepper.sync();
      let reached = false;
      if (evalNow) {
        const ev = await evaluateRun(model, task, cfg.seed, cfg.evalExamples, cfg.batch);
        lastEval = ev.scores;
        if (lastEval.length) line.eval = Object.fromEntries(lastEval.map(({ key, ...rest }) => [key, rest]));
        if (ev.heldout) line.heldout = ev.heldout;
        if (ev.gen) line.gen = ev.gen;
        if (ev.heldout) progress.line(`step ${step}: held-out ${ev.heldout.bpb.toFixed(4)} bits per byte, perplexity ${ev.heldout.ppl.toFixed(3)}, next-token accuracy ${ev.heldout.accuracy.toFixed(4)}`);
        const acc = trainAccuracy(lastEval);
        reached = cfg.targetAcc !== null && acc !== undefined && acc >= cfg.targetAcc;
        progress.line(`step ${step}: loss ${line.loss.toFixed(4)}, ${fmtScores(lastEval)}${line.gen ? `; generalisation length ${line.gen.string} (string), ${line.gen.char} (char)` : ''}`);
      }
      metrics.write(line);
      show(line);
      if (halt) {
        status = 'halted';
        break;
      }
      if (reached || aborted || ckptDue) await ckpt.save(step, dataRng, trainSeconds + elapsed(), lastEval, reached ? { stoppedEarly: true } : {});
      if (reached) { status = 'target-reached'; break; }
      if (aborted) { status = 'interrupted'; break; }
    }
    progress.end();
    if (status !== 'halted') await report(`${endMessage(status, step, cfg)}; last loss ${lastLoss.toFixed(4)}`);
    return { status, step, lastLoss, lastEval, checkpoint: ckpt.last, runDir };
  } catch (e) {
    progress.end();
    if (e instanceof UserError) await report(`stopped: ${e.message}`).catch(() => undefined);
    throw e;
  } finally {
    metrics.close();
    stepper.dispose();
    disposeAdamWState(opt);
    model.dispose();
    task.close?.();
  }
}

/** Settled steps as metrics lines; the window's seconds are shared evenly between its steps. */
function metricsLines(recs: StepRecord[], windowSeconds: number, elapsed: number): MetricsLine[] {
  const per = windowSeconds / Math.max(1, recs.length);
  return recs.map((r) => ({ step: r.step, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, tokensPerSec: per > 0 ? r.tokens / per : 0, elapsed }));
}
