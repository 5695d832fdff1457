/**
 * The training configuration's one home: the TrainConfig type, its defaults, its validation, the
 * run-folder checks (new folder empty, resumed folder made with the same config), and the option
 * table that `mimetic train` registers, a `--resume` overlays and a sweep checks its configs by.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { A_SCALES, type InitOptions, type ModelShape, checkInitOptions, freshConfig } from '../model/init.js';
import { BACKEND_HELP, BACKENDS } from '../model/backend.js';
import { makeTask, type TaskOptions } from '../tasks/index.js';
import type { Task } from '../tasks/common.js';
import { COPY_DEFAULTS } from '../tasks/copy.js';
import { MQAR_DEFAULTS } from '../tasks/mqar.js';
import { EVAL_TASKS } from '../tasks/lm.js';
import { UserError } from '../util/errors.js';
import { ADAMW_DEFAULTS } from './adamw.js';
import { SCAN_FORMS, SCAN_THREAD_LAYOUTS, type ScanForm, type ScanThreadLayout } from './gpu/kernels.js';
import { MAX_SSD_CHUNK } from './gpu/ssd.js';
import { LOG_LINES } from './metrics.js';
import { SCHEDULES, type ScheduleKind } from './schedule.js';

export type ModelSource =
  | { kind: 'fresh'; shape: ModelShape; init: InitOptions }
  | { kind: 'checkpoint'; path: string };

/** Everything that determines a run's numbers; a resumed run must match it exactly. */
export interface TrainConfig {
  task: TaskOptions;
  model: ModelSource;
  /** Mimetic A parameterisation during training (A = −exp(−c·A_log_param)); null: standard A_log. */
  aScale: number | null;
  steps: number;
  batch: number;
  lr: number;
  minLr: number;
  schedule: ScheduleKind;
  warmup: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  clipNorm: number;
  seed: number;
  evalEvery: number;
  evalExamples: number;
  checkpointEvery: number;
  /** Stop when every trained setting reaches this accuracy (null: never). */
  targetAcc: number | null;
  /** Steps whose checkpoints are kept besides the last ones (absent: none). */
  checkpointSteps?: number[];
  /** The compiled WebGPU step's knobs (absent: its defaults); they change speed and memory, not the arithmetic beyond float rounding. */
  gpuStep?: GpuStepKnobs;
}

export interface GpuStepKnobs {
  scanChunk?: number;
  scanThreads?: number;
  /** How the scan's threads map to (lane, state slice): gpu/kernels.ts's ScanThreadLayout (default lane-fastest). */
  scanLayout?: ScanThreadLayout;
  /** The Mamba-2 scan's form: gpu/kernels.ts's ScanForm, 'recurrent' (default) or 'ssd' (gpu/ssd.ts, chunked matrix form). */
  scanForm?: ScanForm;
  /** Steps per chunk of the 'ssd' form (default 64, at most 256). */
  ssdChunk?: number;
  microBatches?: number;
  /** Steps between loss read-backs of the compiled step (1 to its ring of 256; default 25). */
  readEvery?: number;
  /** 0: train through tf.js autodiff even where the compiled step supports the model (default 1). */
  compiledStep?: number;
}

/** GpuStepKnobs' numeric fields, by option name (scanLayout and scanForm are choices). */
export const GPU_STEP_KNOBS = ['scanChunk', 'scanThreads', 'ssdChunk', 'microBatches', 'readEvery', 'compiledStep'] as const;

export const RUN_FILE = 'run.json';
export const METRICS_FILE = 'metrics.jsonl';
/** A run folder's lock while a process trains in it (lock.ts). */
export const RUN_LOCK = '.lock';
/** A run folder's prepared corpus when `mimetic train --task lm --data` was given text (cli/train.ts). */
export const DATA_DIR = 'data';

/** `mimetic train`'s peak learning rate when --lr is not given. */
export const DEFAULT_LR = 1e-3;

export function trainDefaults(task: TaskOptions, model: ModelSource, over: Partial<TrainConfig> = {}): TrainConfig {
  const steps = over.steps ?? 1000;
  return {
    task, model, aScale: null, steps, batch: 32, lr: DEFAULT_LR, minLr: 0, schedule: 'cosine', warmup: Math.min(1000, Math.round(steps * 0.1)),
    weightDecay: ADAMW_DEFAULTS.weightDecay, beta1: ADAMW_DEFAULTS.beta1, beta2: ADAMW_DEFAULTS.beta2, eps: ADAMW_DEFAULTS.eps, clipNorm: ADAMW_DEFAULTS.clipNorm,
    seed: 0, evalEvery: Math.max(1, Math.round(steps / 10)), evalExamples: 64, checkpointEvery: Math.max(1, Math.round(steps / 10)), targetAcc: null,
    ...over,
  };
}

// ---------------------------------------------------------------------------------------------
// The option table.

/**
 * How a value is written: int (≥ 0), float, ints (a comma list of positive integers), choice
 * (one of `choices`), parts (mimetic parts), scale (a number or none), text, paths, flag (no value).
 */
export type OptionKind = 'int' | 'float' | 'ints' | 'choice' | 'parts' | 'scale' | 'text' | 'paths' | 'flag';

export interface TrainOption {
  /** camelCase name: commander's attribute name and a sweep config's key. */
  name: string;
  /** As commander takes it: `--batch-size <n>`. */
  flag: string;
  help: string;
  /** commander's default (a string, as the command line would give it). */
  default?: string;
  kind: OptionKind;
  choices?: readonly string[];
  /**
   * Config fields the option sets (a `--resume` overlays exactly these); the first is the field
   * the flag stands for in messages. Empty: an option of the run, not of its numbers.
   */
  paths: string[];
  hidden?: boolean;
  /** Sets its first field only as an alternative to another flag, which messages name instead. */
  secondary?: boolean;
  /** Registered by the shared Hub options (cli/hub-options.ts), not from this table. */
  hub?: boolean;
}

const opt = (name: string, flag: string, kind: OptionKind, paths: string[], help: string, more: Partial<TrainOption> = {}): TrainOption =>
  ({ name, flag, kind, paths, help, ...more });

export const TRAIN_OPTIONS: readonly TrainOption[] = [
  opt('task', '--task <task>', 'choice', ['task.task'], 'copy, mqar or lm', { choices: ['copy', 'mqar', 'lm'] }),
  opt('model', '--model <checkpoint>', 'text', ['model.path', 'model.kind'], 'start from this checkpoint instead of a fresh model'),
  opt('aParam', '--a-param <c|none>', 'scale', ['aScale'], 'with --model: train A as −exp(−c·A_log_param) (default: as its config records)', { secondary: true }),
  // The fresh model (as cli/init.ts's addModelOptions and addInitOptions describe it for `init`).
  opt('arch', '--arch <arch>', 'choice', ['model.shape.arch'], 'mamba1 or mamba2', { default: 'mamba1', choices: ['mamba1', 'mamba2'] }),
  opt('nLayers', '--n-layers <n>', 'int', ['model.shape.numLayers'], 'number of layers', { default: '2' }),
  // --layers names layer indices everywhere else; here it is a mistake to explain (rejectLayersCount).
  opt('layers', '--layers <n>', 'text', [], '', { hidden: true }),
  opt('dModel', '--d-model <n>', 'int', ['model.shape.hiddenSize'], 'hidden size (d_inner = 2·d_model)', { default: '256' }),
  opt('dState', '--d-state <n>', 'int', ['model.shape.stateSize'], 'SSM state size N', { default: '16' }),
  opt('headDim', '--head-dim <n>', 'int', ['model.shape.headDim'], 'Mamba-2 head dim', { default: '64' }),
  opt('convKernel', '--conv-kernel <n>', 'int', ['model.shape.convKernel'], 'conv1d width', { default: '4' }),
  opt('vocab', '--vocab <n>', 'int', ['model.shape.vocabSize', 'task.vocab'], 'vocabulary: mqar V (default 8192; keys below V/2, values above); copy: embedding rows (default alphabet + 4)'),
  opt('init', '--init <kind>', 'choice', ['model.init.init', 'aScale'], 'default (mamba_ssm recipe) or mimetic', { default: 'default', choices: ['default', 'mimetic'] }),
  opt('mimetic', '--mimetic <parts>', 'parts', ['model.init.parts', 'aScale'], 'mimetic parts: any of a,dt,bc,conv', { default: 'a,dt,bc,conv' }),
  opt('aScale', '--a-scale <c>', 'float', ['aScale', 'model.init.aScale'], 'c in A = −exp(−c·A_log) (2, 4 or 8)', { default: '8' }),
  opt('bcNoise', '--bc-noise <alpha>', 'float', ['model.init.bcNoise'], 'W_C = W_B + α·Z', { default: '0' }),
  opt('seed', '--seed <n>', 'int', ['seed', 'model.init.seed'], 'random seed', { default: '0' }),
  // The task.
  opt('alphabet', '--alphabet <n>', 'int', ['task.alphabet'], 'copy: letters', { default: String(COPY_DEFAULTS.alphabet) }),
  opt('minLen', '--min-len <n>', 'int', ['task.minLen'], 'copy: shortest string', { default: String(COPY_DEFAULTS.minLen) }),
  opt('maxLen', '--max-len <n>', 'int', ['task.maxLen'], 'copy: longest string', { default: String(COPY_DEFAULTS.maxLen) }),
  opt('context', '--context <n>', 'ints', ['task.context', 'task.contexts'], 'training row length (copy: default 220; mqar: a list, default 64,128,256; lm: default 256)'),
  opt('data', '--data <paths...>', 'paths', ['task.data', 'task.sha256'], 'lm: text files, folders of them, or one folder from mimetic data prepare'),
  opt('tokenizer', '--tokenizer <file>', 'text', [], 'lm, with text --data: a Hugging Face tokenizer.json (default: bytes, vocab 256)'),
  opt('evalTasks', '--eval-tasks <list>', 'text', ['task.evalTasks'], `lm: also evaluate ${EVAL_TASKS.join(', ')} (teacher-forced, as their own tasks score)`),
  opt('kvPairs', '--kv-pairs <list>', 'ints', ['task.kvPairs'], 'mqar: numbers of key-value pairs trained', { default: MQAR_DEFAULTS.kvPairs.join(',') }),
  opt('powerA', '--power-a <a>', 'float', ['task.powerA'], 'mqar: query gap power law exponent', { default: String(MQAR_DEFAULTS.powerA) }),
  opt('evalLengths', '--eval-lengths <list>', 'ints', ['task.evalLengths'], 'extra evaluation lengths (copy: string lengths; mqar: sequence lengths)'),
  // The optimisation.
  opt('steps', '--steps <n>', 'int', ['steps'], 'optimizer steps', { default: '1000' }),
  opt('batchSize', '--batch-size <n>', 'int', ['batch'], 'rows per step', { default: '32' }),
  opt('batch', '--batch <n>', 'int', ['batch'], 'old name of --batch-size', { hidden: true }),
  opt('lr', '--lr <x>', 'float', ['lr'], 'peak learning rate', { default: '1e-3' }),
  opt('minLr', '--min-lr <x>', 'float', ['minLr'], 'final learning rate', { default: '0' }),
  opt('schedule', '--schedule <kind>', 'choice', ['schedule'], `after warmup: ${SCHEDULES.join('|')}`, { default: 'cosine', choices: SCHEDULES }),
  opt('warmup', '--warmup <n>', 'int', ['warmup'], 'linear warmup steps (default 10% of steps, at most 1000)'),
  opt('weightDecay', '--weight-decay <x>', 'float', ['weightDecay'], 'AdamW decoupled weight decay', { default: '0.1' }),
  opt('clip', '--clip <x>', 'float', ['clipNorm'], 'global gradient-norm clip (0: none)', { default: '1.0' }),
  opt('evalEvery', '--eval-every <n>', 'int', ['evalEvery'], 'evaluate every n steps (default steps/10)'),
  opt('evalExamples', '--eval-examples <n>', 'int', ['evalExamples'], 'examples per evaluation setting', { default: '64' }),
  opt('checkpointEvery', '--checkpoint-every <n>', 'int', ['checkpointEvery'], 'checkpoint every n steps (default steps/10)'),
  opt('checkpointSteps', '--checkpoint-steps <list|log>', 'text', ['checkpointSteps'], "also checkpoint at these steps and keep them (e.g. 100,200,500; 'log': round(2^(k/2)) and the last)"),
  opt('targetAcc', '--target-acc <x>', 'float', ['targetAcc'], 'stop once every trained setting reaches this accuracy'),
  // The compiled WebGPU step (speed and memory).
  opt('scanChunk', '--scan-chunk <n>', 'int', ['gpuStep.scanChunk'], 'compiled WebGPU step: time steps per scan chunk; the backward keeps one state per chunk (default 16)'),
  opt('scanThreads', '--scan-threads <n>', 'int', ['gpuStep.scanThreads'], 'compiled WebGPU step: threads per scan lane, each holding d_state/n states (default: by d_state)'),
  opt('scanLayout', '--scan-layout <layout>', 'choice', ['gpuStep.scanLayout'], "compiled WebGPU step: the scan's threads, lane-fastest (neighbouring lanes on neighbouring threads, the default) or state-fastest (a lane's states on neighbouring threads)", { choices: SCAN_THREAD_LAYOUTS }),
  opt('scanForm', '--scan-form <form>', 'choice', ['gpuStep.scanForm'], "compiled WebGPU step, Mamba-2: the scan's form, recurrent (step by step, the default) or ssd (chunked state-space duality: small matmuls per chunk; not yet measured on the GPU)", { choices: SCAN_FORMS }),
  opt('ssdChunk', '--ssd-chunk <n>', 'int', ['gpuStep.ssdChunk'], `compiled WebGPU step, --scan-form ssd: time steps per chunk, 1 to ${MAX_SSD_CHUNK} (default 64)`),
  opt('microBatches', '--micro-batches <n>', 'int', ['gpuStep.microBatches'], 'compiled WebGPU step: split each batch in n, gradients summed (default: the fewest that fit the device)'),
  opt('readEvery', '--read-every <n>', 'int', ['gpuStep.readEvery'], 'compiled WebGPU step: steps queued between loss read-backs, 1 to 256 (default 25)'),
  opt('compiledStep', '--compiled-step <0|1>', 'int', ['gpuStep.compiledStep'], 'webgpu: 0 trains through tf.js autodiff instead of the compiled step (default 1)'),
  // The run (not its numbers).
  opt('keep', '--keep <n>', 'int', [], 'checkpoints kept', { default: '1' }),
  opt('backend', '--backend <name>', 'choice', [], `tf.js backend: ${BACKEND_HELP}; with --resume, the run's own unless given`, { default: 'auto', choices: BACKENDS }),
  opt('gpu', '--gpu <i>', 'int', [], 'use GPU i of several (0 = first; `mimetic gpus` lists them): webgpu by Vulkan device index, tensorflow by CUDA_VISIBLE_DEVICES'),
  opt('logEvery', '--log-every <n>', 'int', [], `when stderr is not a terminal: a progress line every n steps (default: steps/${LOG_LINES}, about ${LOG_LINES} lines a run)`),
  opt('out', '--out <dir>', 'text', [], 'run folder (must not exist; default checkpoints/train-<task>-<arch>-<init>-seed<seed>)'),
  opt('resume', '--resume <dir>', 'text', [], 'continue the run in this folder from its last checkpoint, on the backend it ran on (run.json)'),
  opt('quiet', '--quiet', 'flag', [], 'no progress output'),
  // cli/hub-options.ts registers these four (for --model's Hub id).
  ...['revision', 'offline', 'token', 'cacheDir'].map((n) => opt(n, `--${kebab(n)}`, n === 'offline' ? 'flag' : 'text', [], '', { hub: true })),
];

function kebab(k: string): string {
  return k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

const BY_NAME = new Map(TRAIN_OPTIONS.map((o) => [o.name, o]));

export function trainOption(name: string): TrainOption | undefined {
  return BY_NAME.get(name);
}

/** The option names `mimetic train` accepts (what a sweep config's keys may be). */
export function trainOptionNames(): Set<string> {
  return new Set(BY_NAME.keys());
}

/** The table's defaults, as commander would fill them in for options not given. */
export function optionDefaults(): Record<string, string> {
  return Object.fromEntries(TRAIN_OPTIONS.filter((o) => o.default !== undefined).map((o) => [o.name, o.default!]));
}

/** The flag a config field is set by (`batch` → `--batch-size`), for messages. */
export function flagOf(field: string): string {
  const o = TRAIN_OPTIONS.find((x) => x.paths[0] === field && !x.hidden && !x.secondary) ?? TRAIN_OPTIONS.find((x) => x.paths.includes(field));
  return o ? `--${kebab(o.name)}` : field;
}

// ---------------------------------------------------------------------------------------------
// Paths into a config (`model.shape.vocabSize`).

export function getAt(o: unknown, p: string): unknown {
  return p.split('.').reduce<unknown>((x, k) => (x && typeof x === 'object' ? (x as Record<string, unknown>)[k] : undefined), o);
}

export function setAt(o: Record<string, unknown>, p: string, v: unknown): void {
  const ks = p.split('.');
  let x = o;
  for (const k of ks.slice(0, -1)) {
    if (!x[k] || typeof x[k] !== 'object') x[k] = {};
    x = x[k] as Record<string, unknown>;
  }
  if (v === undefined) delete x[ks[ks.length - 1]!];
  else x[ks[ks.length - 1]!] = v;
}

/**
 * A resumed run's config with the explicitly given options laid over it: each option replaces
 * exactly the fields the table says it sets (so a resume asking for other numbers is caught).
 */
export function overlayOptions(saved: TrainConfig, given: TrainConfig, names: string[]): TrainConfig {
  const out = JSON.parse(JSON.stringify(saved)) as TrainConfig;
  for (const n of names) for (const p of trainOption(n)?.paths ?? []) setAt(out as unknown as Record<string, unknown>, p, getAt(given, p));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Validation.

/** A bad config field: `field` is its path in TrainConfig; the message names its flag. */
export class ConfigError extends UserError {
  override name = 'ConfigError';
  constructor(readonly field: string, detail: string) {
    super(`${flagOf(field)}: ${detail}`);
  }
}

/** Validate a config before any work; every problem is one line. Returns the task it describes. */
export function checkTrainConfig(c: TrainConfig): Task {
  const pos = (field: keyof TrainConfig, int = true) => {
    const v = c[field] as number;
    if (!(Number.isFinite(v) && v > 0) || (int && !Number.isSafeInteger(v))) throw new ConfigError(field, `${v} must be ${int ? 'a positive integer' : 'a number > 0'}`);
  };
  pos('lr', false);
  pos('steps');
  pos('batch');
  pos('evalEvery');
  pos('evalExamples');
  pos('checkpointEvery');
  if (!(c.minLr >= 0 && c.minLr <= c.lr)) throw new ConfigError('minLr', `${c.minLr} must be between 0 and ${flagOf('lr')} ${c.lr}`);
  if (!Number.isSafeInteger(c.warmup) || c.warmup < 0 || c.warmup > c.steps) throw new ConfigError('warmup', `${c.warmup} must be an integer between 0 and ${flagOf('steps')} ${c.steps}`);
  if (!SCHEDULES.includes(c.schedule)) throw new ConfigError('schedule', `unknown schedule '${c.schedule}'; choose ${SCHEDULES.join(', ')}`);
  if (!(c.weightDecay >= 0)) throw new ConfigError('weightDecay', `${c.weightDecay} must be ≥ 0`);
  if (!(c.clipNorm >= 0)) throw new ConfigError('clipNorm', `${c.clipNorm} must be ≥ 0 (0 disables clipping)`);
  if (!(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1 && c.eps > 0)) throw new UserError('AdamW betas must be in [0, 1) and eps > 0');
  if (c.targetAcc !== null && !(c.targetAcc > 0 && c.targetAcc <= 1)) throw new ConfigError('targetAcc', `${c.targetAcc} must be in (0, 1]`);
  if (!Number.isSafeInteger(c.seed) || c.seed < 0) throw new ConfigError('seed', `${c.seed} must be an integer ≥ 0`);
  if (c.checkpointSteps !== undefined && !(Array.isArray(c.checkpointSteps) && c.checkpointSteps.every((x) => Number.isSafeInteger(x) && x >= 1 && x <= c.steps))) {
    throw new ConfigError('checkpointSteps', `every step must be an integer from 1 to ${flagOf('steps')} ${c.steps}`);
  }
  for (const k of GPU_STEP_KNOBS) {
    const v = c.gpuStep?.[k];
    if (k === 'compiledStep') {
      if (v !== undefined && v !== 0 && v !== 1) throw new ConfigError(`gpuStep.${k}` as keyof TrainConfig, `${v} must be 0 (tf.js autodiff) or 1 (the compiled step)`);
    } else if (v !== undefined && !(Number.isSafeInteger(v) && v >= 1 && (k !== 'readEvery' || v <= 256))) {
      throw new ConfigError(`gpuStep.${k}` as keyof TrainConfig, `${v} must be a positive integer${k === 'readEvery' ? ' up to 256 (the steps the GPU keeps)' : ''}`);
    }
  }
  const ssdChunk = c.gpuStep?.ssdChunk;
  if (ssdChunk !== undefined && ssdChunk > MAX_SSD_CHUNK) throw new ConfigError('gpuStep.ssdChunk', `${ssdChunk} must be at most ${MAX_SSD_CHUNK}`);
  const form = c.gpuStep?.scanForm;
  if (form !== undefined && !SCAN_FORMS.includes(form)) throw new ConfigError('gpuStep.scanForm', `'${String(form)}' is not one of ${SCAN_FORMS.join(', ')}`);
  if (form === 'ssd' && c.model.kind === 'fresh' && c.model.shape.arch !== 'mamba2') throw new ConfigError('gpuStep.scanForm', "'ssd' needs --arch mamba2 (a scalar A per head); drop it or use recurrent for Mamba-1");

  const layout = c.gpuStep?.scanLayout;
  if (layout !== undefined && !SCAN_THREAD_LAYOUTS.includes(layout)) throw new ConfigError('gpuStep.scanLayout', `'${String(layout)}' is not one of ${SCAN_THREAD_LAYOUTS.join(', ')}`);
  if (c.aScale !== null && !(A_SCALES as readonly number[]).includes(c.aScale)) throw new ConfigError('aScale', `${c.aScale} is not one of ${A_SCALES.join(', ')}`);
  const task = makeTask(c.task);
  if (task.name === 'lm' && c.targetAcc !== null) throw new ConfigError('targetAcc', 'the lm task trains no accuracy setting; drop --target-acc');
  if (c.model.kind === 'fresh') {
    checkInitOptions(c.model.init);
    const cfg = freshConfig(c.model.shape);
    if (cfg.vocabSize < task.vocabSize) {
      task.close?.();
      throw new UserError(`--vocab ${cfg.vocabSize} is smaller than the ${c.task.task} task's ${task.vocabSize} tokens; raise --vocab to at least ${task.vocabSize}`);
    }
  }
  return task;
}

// ---------------------------------------------------------------------------------------------
// The run folder.

/** A new run's folder must not hold anything but a corpus prepared into it (data/). */
export function checkNewRunDir(runDir: string): void {
  if (fs.existsSync(runDir) && (!fs.statSync(runDir).isDirectory() || fs.readdirSync(runDir).some((n) => n !== DATA_DIR))) {
    throw new UserError(`--out ${runDir}: already exists and is not empty; choose a new run folder, or continue that run with --resume ${runDir}`);
  }
}

/** Read a run folder's configuration (for `--resume`). */
export function readRunConfig(runDir: string): TrainConfig {
  const file = path.join(runDir, RUN_FILE);
  if (!fs.existsSync(file)) throw new UserError(`--resume ${runDir}: no ${RUN_FILE} there; give the folder of a run started with 'mimetic train --out'`);
  try {
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { config: TrainConfig }).config;
  } catch (e) {
    throw new UserError(`${file}: unreadable (${(e as Error).message}); the run folder is damaged`);
  }
}

/** The backend a run folder's run.json records (null where it has none it can say). */
export function readRunBackend(runDir: string): string | null {
  try {
    const b = (JSON.parse(fs.readFileSync(path.join(runDir, RUN_FILE), 'utf8')) as { backend?: unknown }).backend;
    return typeof b === 'string' ? b : null;
  } catch {
    return null;
  }
}

/** The first differing field between two configs, as `a.b.c`. */
function firstDifference(a: unknown, b: unknown, at = ''): string | null {
  if (typeof a !== typeof b || Array.isArray(a) !== Array.isArray(b) || (a === null) !== (b === null)) return at || '(root)';
  if (a && typeof a === 'object') {
    const ka = Object.keys(a as object), kb = Object.keys(b as object);
    for (const k of new Set([...ka, ...kb])) {
      const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], at ? `${at}.${k}` : k);
      if (d) return d;
    }
    return null;
  }
  return Object.is(a, b) ? null : at || '(root)';
}

/** A resumed run must ask for exactly the configuration its folder was made with. */
export function checkResume(runDir: string, cfg: TrainConfig): void {
  const saved = readRunConfig(runDir);
  const d = firstDifference(saved, JSON.parse(JSON.stringify(cfg)));
  if (d) {
    throw new UserError(`--resume ${runDir}: that run was made with ${d} = ${JSON.stringify(getAt(saved, d))}, this one asks for ${JSON.stringify(getAt(cfg, d))}; resume with the run's own options or start a new --out`);
  }
}

/**
 * Every check a run needs before any work: the config, then its folder (empty for a new run, the
 * same config for a resumed one). Returns the task; `train()` takes it so the checks run once.
 */
export function checkRun(cfg: TrainConfig, runDir: string, resume: boolean): Task {
  const task = checkTrainConfig(cfg);
  try {
    if (resume) checkResume(runDir, cfg);
    else checkNewRunDir(runDir);
  } catch (e) {
    task.close?.();
    throw e;
  }
  return task;
}
