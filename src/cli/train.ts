/** `mimetic train`: train a fresh, mimetic, transplanted or pretrained Mamba on copy / MQAR. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { Checkpoint } from '../checkpoint/checkpoint.js';
import { resolveCheckpoint } from '../hub/resolve.js';
import { BACKENDS, type BackendName, initBackend } from '../model/backend.js';
import { parseLengths } from '../tasks/common.js';
import { COPY_DEFAULTS, FIRST_LETTER } from '../tasks/copy.js';
import type { TaskOptions } from '../tasks/index.js';
import { MQAR_DEFAULTS } from '../tasks/mqar.js';
import { EVAL_TASKS, type EvalTaskName, LM_DEFAULTS, dataHash } from '../tasks/lm.js';
import { isPrepared } from '../data/meta.js';
import { listDocuments, prepareCorpus } from '../data/prepare.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { TokenData } from '../data/tokens.js';
import { parseCheckpointSteps } from '../train/checkpoint-steps.js';
import { DATA_DIR, GPU_STEP_KNOBS, type GpuStepKnobs, type ModelSource, TRAIN_OPTIONS, type TrainConfig, checkNewRunDir, checkRun, checkTrainConfig, optionDefaults, overlayOptions, readRunBackend, readRunConfig, trainDefaults, trainOption } from '../train/config.js';
import { type TrainResult, aScaleOfCheckpoint, fmtScores, train } from '../train/trainer.js';
import { RUN_STATUS_ENV, writeRunStatus } from '../train/state.js';
import { SCHEDULES, type ScheduleKind } from '../train/schedule.js';
import type { ScanForm, ScanThreadLayout } from '../train/gpu/kernels.js';
import { UserError, isUserError } from '../util/errors.js';
import { printable } from '../util/text.js';
import { defaultCheckpointOut, initOptionsFrom, modelShapeFrom, numOpt, rejectLayersCount } from './init.js';
import { applyGpuOption } from './gpu-option.js';
import { addHubOptions, hubOptionsFrom, type HubCliOptions } from './hub-options.js';

type Opts = Record<string, unknown>;

/** --data's paths (commander gives a list; a sweep config a string or a list). */
function dataPaths(v: unknown): string[] {
  return (Array.isArray(v) ? v : v === undefined ? [] : [v]).map(String);
}

/**
 * The LM task's corpus: one prepared folder is used as it is; text files or folders are prepared
 * into the run folder's data/ before training (`pending`).
 */
function lmData(o: Opts): { dir: string; sha256: string; vocab: number } | { pending: string[]; vocab: number } {
  const paths = dataPaths(o.data);
  if (!paths.length) throw new UserError('--task lm needs --data: text files, folders of them, or a folder from mimetic data prepare');
  if (paths.length === 1 && isPrepared(paths[0]!)) {
    if (o.tokenizer !== undefined) throw new UserError(`--tokenizer: ${paths[0]} is already prepared (with its own tokenizer); drop --tokenizer, or give the text files`);
    const d = TokenData.open(paths[0]!);
    return { dir: path.resolve(paths[0]!), sha256: dataHash(d), vocab: d.meta.vocab };
  }
  listDocuments(paths);
  return { pending: paths, vocab: o.tokenizer === undefined ? 256 : loadTokenizer(String(o.tokenizer)).vocab };
}

/** Text inputs waiting to be prepared into the run folder (set by configFromOptions). */
let pendingData: string[] | null = null;

/** A default run folder's name: task, then the fresh model's arch and init or the checkpoint's folder name. */
function runName(cfg: TrainConfig): string {
  const m = cfg.model;
  return `${cfg.task.task}-${m.kind === 'fresh' ? `${m.shape.arch}-${m.init.init}` : path.basename(m.path)}`;
}

/** --batch-size, or its old name --batch (kept as a hidden alias); not both. */
function batchSizeOf(o: Opts, explicit: (name: string) => boolean): number {
  if (explicit('batch') && explicit('batchSize')) throw new UserError('--batch is the old name of --batch-size; give --batch-size once');
  return explicit('batch') ? numOpt(o.batch, '--batch') : numOpt(o.batchSize, '--batch-size');
}

async function configFromOptions(o: Opts, explicit: (name: string) => boolean): Promise<TrainConfig> {
  const taskName = String(o.task);
  const float = (k: string, flag: string) => numOpt(o[k], flag, 'float');
  pendingData = null;
  const evalLengths = o.evalLengths === undefined ? [] : parseLengths(String(o.evalLengths), '--eval-lengths', (m) => new UserError(m));
  let task: TaskOptions;
  if (taskName === 'copy') {
    task = {
      task: 'copy', alphabet: numOpt(o.alphabet ?? COPY_DEFAULTS.alphabet, '--alphabet'), minLen: numOpt(o.minLen ?? COPY_DEFAULTS.minLen, '--min-len'),
      maxLen: numOpt(o.maxLen ?? COPY_DEFAULTS.maxLen, '--max-len'), context: numOpt(o.context ?? COPY_DEFAULTS.context, '--context'), evalLengths,
    };
  } else if (taskName === 'mqar') {
    const kv = o.kvPairs === undefined ? MQAR_DEFAULTS.kvPairs : parseLengths(String(o.kvPairs), '--kv-pairs', (m) => new UserError(m));
    task = {
      task: 'mqar', vocab: numOpt(o.vocab ?? MQAR_DEFAULTS.vocab, '--vocab'),
      contexts: o.context === undefined ? MQAR_DEFAULTS.contexts : parseLengths(String(o.context), '--context', (m) => new UserError(m)),
      kvPairs: kv, powerA: numOpt(o.powerA ?? MQAR_DEFAULTS.powerA, '--power-a', 'float'), evalLengths, randomNonQueries: true,
    };
  } else if (taskName === 'lm') {
    const d = lmData(o);
    const evalTasks = o.evalTasks === undefined ? [] : String(o.evalTasks).split(',').map((x) => x.trim()).filter(Boolean);
    for (const t of evalTasks) if (!(EVAL_TASKS as readonly string[]).includes(t)) throw new UserError(`--eval-tasks: unknown task '${t}'; choose from ${EVAL_TASKS.join(', ')}`);
    if ('pending' in d) pendingData = d.pending;
    task = {
      task: 'lm', data: 'dir' in d ? d.dir : '', context: numOpt(o.context ?? LM_DEFAULTS.context, '--context'), evalTasks: [...new Set(evalTasks)] as EvalTaskName[], evalLengths,
      sha256: 'dir' in d ? d.sha256 : '',
    };
    if (o.vocab === undefined) o = { ...o, vocab: d.vocab };
  } else {
    throw new UserError(`--task: unknown task '${taskName}'; choose copy, mqar or lm`);
  }
  if (taskName !== 'lm') {
    for (const k of ['data', 'tokenizer', 'evalTasks']) if (o[k] !== undefined) throw new UserError(`--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} goes with --task lm`);
  }
  let model: ModelSource;
  let aScale: number | null;
  if (o.model !== undefined) {
    for (const k of ['arch', 'nLayers', 'dModel', 'dState', 'headDim', 'init', 'mimetic', 'bcNoise']) {
      if (explicit(k)) throw new UserError(`--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} describes a fresh model and cannot be combined with --model; drop one of them`);
    }
    const p = path.resolve(await resolveCheckpoint(String(o.model), hubOptionsFrom(o as HubCliOptions)));
    const ck = Checkpoint.open(p);
    const fromCk = aScaleOfCheckpoint(ck.rawConfig);
    ck.close();
    model = { kind: 'checkpoint', path: p };
    const ap = o.aParam === undefined ? undefined : String(o.aParam);
    aScale = ap === undefined ? fromCk : ap === 'none' ? null : numOpt(ap, '--a-param', 'float');
  } else {
    const shape = modelShapeFrom({ ...o, vocab: o.vocab ?? (taskName === 'copy' ? FIRST_LETTER + (task as { alphabet: number }).alphabet : (task as { vocab: number }).vocab) });
    const init = initOptionsFrom(o);
    model = { kind: 'fresh', shape: JSON.parse(JSON.stringify(shape)) as typeof shape, init };
    aScale = init.init === 'mimetic' && init.parts.includes('a') ? init.aScale : null;
    if (o.aParam !== undefined) throw new UserError('--a-param goes with --model; for a fresh model use --init mimetic --mimetic a --a-scale C');
  }
  const steps = numOpt(o.steps, '--steps');
  const schedule = String(o.schedule);
  if (!(SCHEDULES as readonly string[]).includes(schedule)) throw new UserError(`--schedule: unknown schedule '${schedule}'; choose ${SCHEDULES.join(', ')}`);
  const d = trainDefaults(task, model, { steps });
  return {
    ...d, aScale, batch: batchSizeOf(o, explicit), lr: float('lr', '--lr'), minLr: float('minLr', '--min-lr'), schedule: schedule as ScheduleKind,
    warmup: o.warmup === undefined ? d.warmup : numOpt(o.warmup, '--warmup'), weightDecay: float('weightDecay', '--weight-decay'), clipNorm: float('clip', '--clip'),
    seed: numOpt(o.seed, '--seed'), evalEvery: o.evalEvery === undefined ? d.evalEvery : numOpt(o.evalEvery, '--eval-every'),
    evalExamples: numOpt(o.evalExamples, '--eval-examples'), checkpointEvery: o.checkpointEvery === undefined ? d.checkpointEvery : numOpt(o.checkpointEvery, '--checkpoint-every'),
    targetAcc: o.targetAcc === undefined ? null : float('targetAcc', '--target-acc'),
    ...(o.checkpointSteps === undefined ? {} : { checkpointSteps: parseCheckpointSteps(String(o.checkpointSteps), steps) }),
    ...gpuStepKnobs(o),
  };
}

/** The compiled step's knobs (--scan-chunk, --scan-layout, --scan-form, --micro-batches, ...), when any is given; checkTrainConfig checks the layout and form. */
function gpuStepKnobs(o: Opts): { gpuStep?: GpuStepKnobs } {
  const k: GpuStepKnobs = {};
  for (const n of GPU_STEP_KNOBS) if (o[n] !== undefined) k[n] = numOpt(o[n], trainOption(n)!.flag.split(' ')[0]!);
  if (o.scanLayout !== undefined) k.scanLayout = String(o.scanLayout) as ScanThreadLayout;
  if (o.scanForm !== undefined) k.scanForm = String(o.scanForm) as ScanForm;
  return Object.keys(k).length ? { gpuStep: k } : {};
}

/**
 * Check one run's options (camelCase names, values as a sweep config gives them) exactly as
 * `mimetic train` would before training, without training: the sweep's check before it launches.
 */
export async function checkTrainOptions(given: Record<string, string | number | (string | number)[]>): Promise<void> {
  const o: Opts = optionDefaults();
  for (const [k, v] of Object.entries(given)) o[k] = k === 'data' ? dataPaths(v) : Array.isArray(v) ? v.join(',') : String(v);
  const explicit = (name: string) => name in given;
  rejectLayersCount(o, 'train');
  if (o.task === undefined) throw new UserError('--task is required (copy, mqar or lm)');
  const cfg = await configFromOptions(o, explicit);
  // Text to be prepared at launch: its paths and tokenizer were checked; the rest needs the tokens.
  if (!pendingData) checkTrainConfig(cfg).close?.();
}

/** Register the option table's options (config.ts) on the command, in its order. */
function addTableOptions(cmd: Command): void {
  for (const t of TRAIN_OPTIONS) {
    if (t.hub) continue;
    const o = new Option(t.flag, t.help);
    if (t.default !== undefined) o.default(t.default);
    if (t.hidden) o.hideHelp();
    cmd.addOption(o);
  }
}

export function register(program: Command): void {
  const cmd = program
    .command('train')
    .description('train a Mamba on the copy or MQAR task (fresh, mimetic, transplanted or pretrained)');
  addTableOptions(cmd);
  addHubOptions(cmd, '--model').action((o: Opts) => withRunStatus(() => trainAction(cmd, o)));
}

/**
 * Under a sweep (MIMETIC_RUN_STATUS set), say how the run ended in that file: its result, or the
 * one line of its error, which the sweep records without reading the log.
 */
async function withRunStatus(action: () => Promise<TrainResult>): Promise<void> {
  const file = process.env[RUN_STATUS_ENV];
  if (!file) {
    await action();
    return;
  }
  writeRunStatus(file, { state: 'running' });
  try {
    const r = await action();
    writeRunStatus(file, { state: r.status, step: r.step });
  } catch (e) {
    const msg = (e as Error)?.message ?? String(e);
    writeRunStatus(file, isUserError(e) ? { state: 'failed', error: `mimetic: ${printable(msg)}` } : { state: 'crashed', error: `mimetic: internal error: ${printable(msg)}` });
    throw e;
  }
}

async function trainAction(cmd: Command, o: Opts): Promise<TrainResult> {
  const explicit = (name: string) => cmd.getOptionValueSource(name) === 'cli';
  rejectLayersCount(o, 'train');
  // --revision picks the revision of --model's Hub id; a fresh model has none.
  if (explicit('revision') && o.model === undefined) throw new UserError('--revision goes with --model (a Hub id to start from); a fresh model has no revision');
  // A resumed run keeps the backend it ran on (auto might pick another, whose arithmetic differs) unless --backend says otherwise.
  const recorded = o.resume !== undefined && !explicit('backend') ? readRunBackend(String(o.resume)) : null;
  const backendName = recorded !== null && (BACKENDS as readonly string[]).includes(recorded) ? recorded : String(o.backend);
  if (!(BACKENDS as readonly string[]).includes(backendName)) throw new UserError(`--backend: unknown backend '${backendName}'; choose ${BACKENDS.join(', ')}`);
  // --gpu 1 on a one-GPU machine is one line before anything is resolved, prepared or written.
  await applyGpuOption(o.gpu, backendName);
  let cfg: TrainConfig;
  let out: string;
  const resume = o.resume !== undefined;
  if (resume) {
    out = String(o.resume);
    if (o.out !== undefined && path.resolve(String(o.out)) !== path.resolve(out)) throw new UserError('--out and --resume name different folders; a resumed run continues in its own folder');
    const saved = readRunConfig(out);
    const given = TRAIN_OPTIONS.filter((t) => t.paths.length && explicit(t.name)).map((t) => t.name);
    cfg = saved;
    if (given.length) {
      if (!explicit('task')) o.task = saved.task.task;
      cfg = overlayOptions(saved, await configFromOptions(o, explicit), given);
    }
  } else {
    if (o.task === undefined) throw new UserError('--task is required (copy, mqar or lm), or --resume a run folder');
    cfg = await configFromOptions(o, explicit);
    out = o.out === undefined ? defaultCheckpointOut(`train-${runName(cfg)}-seed${cfg.seed}`) : String(o.out);
    checkNewRunDir(out);
    if (pendingData && cfg.task.task === 'lm') {
      const dir = path.resolve(out, DATA_DIR);
      process.stderr.write(`mimetic: preparing ${pendingData.join(', ')} into ${dir}\n`);
      await prepareCorpus(pendingData, { out: dir, tokenizer: o.tokenizer === undefined ? undefined : String(o.tokenizer) });
      cfg.task.data = dir;
      cfg.task.sha256 = dataHash(TokenData.open(dir));
    }
  }
  // Every check before any work (backend start-up included); train() does not repeat them.
  const task = checkRun(cfg, out, resume);
  const backend = await initBackend(backendName as BackendName);
  if (!tf.getKernel('UnsortedSegmentSum', backend)) {
    // The embedding's gradient (a gather's) needs this kernel; wasm gets its own (kernels/segment-wasm.ts).
    throw new UserError(`--backend ${backend}: cannot train (no UnsortedSegmentSum kernel for the embedding gradient); use --backend wasm or webgpu`);
  }
  const ac = new AbortController();
  // SIGTERM too: job schedulers and `mimetic sweep` get a clean checkpoint. Only a second
  // SIGINT (Ctrl-C twice) quits at once: a scheduler signals every process of a job, so a run
  // under a sweep gets the scheduler's SIGTERM and the sweep's SIGINT, in either order.
  let sigints = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (sig === 'SIGINT' && ++sigints > 1) process.exit(130);
    if (ac.signal.aborted) return;
    process.stderr.write('\nmimetic: interrupt: finishing this step and writing a checkpoint (Ctrl-C again to quit at once)\n');
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const r = await train(cfg, {
      out, resume, task, backend, signal: ac.signal, progress: o.quiet ? null : process.stderr,
      logEvery: o.logEvery === undefined ? undefined : numOpt(o.logEvery, '--log-every'), keep: explicit('keep') ? numOpt(o.keep, '--keep') : undefined,
    });
    const acc = r.lastEval ? fmtScores(r.lastEval) : 'no evaluation';
    if (r.status === 'interrupted') process.exitCode = 130; // like a shell's Ctrl-C, though the run is saved
    process.stdout.write(`${r.status} at step ${r.step}: loss ${r.lastLoss.toFixed(4)}; ${acc}\nrun folder ${out} (report.html, metrics.jsonl${r.checkpoint ? `, ${path.relative(out, r.checkpoint)}` : ''})\n`);
    return r;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
