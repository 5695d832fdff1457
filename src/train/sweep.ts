/**
 * Sweeps: a grid of `mimetic train` runs (init × lr × seed × …) run as child processes, a few at
 * a time per GPU, resumable across invocations. Each run is a normal run folder under the sweep
 * folder, named after the options that vary (`init=mimetic,lr=0.001,seed=0`). A later
 * invocation skips finished runs and continues the others from their last checkpoint
 * (`mimetic train --resume`), so a long sweep can be driven by short commands (`--slice-minutes`).
 *
 * Layout of the sweep folder:
 *   sweep.json            the sweep configuration (as last run)
 *   <run id>/             the trainer's run folders
 *   logs/<run id>.log     each child's stdout and stderr (appended across invocations)
 *   .sweep/<run id>.json  the options a run was started with, and its error if it failed
 *   .sweep/<run id>.pid   the child's pid while it runs; .sweep/lock while a sweep runs
 *   .sweep/<run id>.status.json  how the child says it ended (state.ts's RunStatusFile)
 *   .sweep/<run id>.lock  while a sweep given `--only` runs it (a scheduler's task, maybe on another host)
 *   summary.json, report/ written by sweep-report.ts
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as lockfile from 'proper-lockfile';
import { type VulkanDeviceList, childGpuEnv, describeDevice, gpusOf } from '../model/gpu-select.js';
import { parseMimeticParts } from '../model/init.js';
import { writeFileAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { preview, printable } from '../util/text.js';
import { METRICS_FILE, RUN_FILE, type TrainConfig, trainOption, trainOptionNames } from './config.js';
import { type LockHolder, lockHolder, pidAlive, takeLock } from './lock.js';
import { RUN_STATUS_ENV, listCheckpoints, readRunState, readRunStatus } from './state.js';
import { readMetrics } from './metrics.js';

export type OptValue = string | number | (string | number)[];
export type RunOptionsMap = Record<string, OptValue>;

export interface SweepVariant {
  /** Optional label; the run folder and the report use it instead of the variant's options. */
  name?: string;
  options: RunOptionsMap;
}

export interface SweepConfig {
  name: string;
  description?: string;
  base: RunOptionsMap;
  grid: Record<string, OptValue[]>;
  variants: SweepVariant[];
}

export interface RunSpec {
  /** Folder name, stable: built from the options that vary across runs. */
  id: string;
  /** Every `mimetic train` option of the run (camelCase names). */
  options: RunOptionsMap;
  /** The run's "init": every varying part of its id except lr and seed. */
  label: string;
  /** label + lr: the runs of a group differ only in their seed. */
  group: string;
  lr: number | null;
  seed: number | null;
  /** The variant's name, if it has one. */
  variant: string | null;
}

/** Options the sweep sets itself, never the config. */
const RESERVED = new Set(['out', 'resume', 'quiet', 'gpu']);
/** Folder names inside the sweep folder that runs may not take. */
const RESERVED_DIRS = new Set(['logs', 'report', '.sweep', 'summary.json', 'sweep.json', 'slurm.sbatch']);

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
/** Old option names configs may still use (experiments/*.json): `layers` was the layer count, `batch` the batch size. */
const OLD_NAMES: Record<string, string> = { layers: 'nLayers', batch: 'batchSize' };
const camel = (k0: string) => {
  const k = k0.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  return OLD_NAMES[k] ?? k;
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** Check one option value; `where` names it in the config (e.g. `grid.lr[1]`). */
function checkValue(key: string, v: unknown, where: string): OptValue {
  const bad = (what: string) => new UserError(`${where}: ${preview(v)} ${what}`);
  if (Array.isArray(v)) {
    const kind = trainOption(key)?.kind;
    if (kind !== 'ints' && kind !== 'parts') throw bad(`is a list, but --${kebab(key)} takes one value`);
    if (v.length === 0) throw bad('is an empty list');
    for (const x of v) if (typeof x !== 'number' && typeof x !== 'string') throw bad('must hold only numbers or strings');
    checkValue(key, v.join(','), where);
    return v as (string | number)[];
  }
  if (typeof v !== 'number' && typeof v !== 'string') throw bad(`must be a number or a string (an option value of --${kebab(key)})`);
  const s = String(v).trim();
  if (s === '') throw bad('is empty');
  const kind = trainOption(key)?.kind;
  if (kind === 'int' && !(Number.isSafeInteger(Number(s)) && Number(s) >= 0)) throw bad(`must be an integer ≥ 0 for --${kebab(key)}`);
  if (kind === 'float' && !Number.isFinite(Number(s))) throw bad(`must be a number for --${kebab(key)}`);
  if (kind === 'ints') {
    for (const p of s.split(',')) if (!(Number.isSafeInteger(Number(p.trim())) && Number(p.trim()) > 0)) throw bad(`must be positive integers for --${kebab(key)}`);
  }
  const en = kind === 'choice' ? trainOption(key)!.choices! : undefined;
  if (en && !en.includes(s)) throw bad(`is not one of ${en.join(', ')} (--${kebab(key)})`);
  if (kind === 'parts') {
    try {
      parseMimeticParts(s);
    } catch (e) {
      throw bad(`is not a list of mimetic parts: ${(e as Error).message}`);
    }
  }
  if (kind === 'scale' && s !== 'none' && !Number.isFinite(Number(s))) throw bad(`must be a number or "none" (--${kebab(key)})`);
  return v;
}

function checkOptions(o: unknown, where: string, known: ReadonlySet<string>): RunOptionsMap {
  if (!isPlainObject(o)) throw new UserError(`${where}: must be an object of mimetic train options, e.g. {"task": "copy", "steps": 2000}`);
  const out: RunOptionsMap = {};
  for (const [k0, v] of Object.entries(o)) {
    const k = camel(k0);
    if (RESERVED.has(k)) throw new UserError(`${where}.${k0}: the sweep sets --${kebab(k)} itself; remove it from the config`);
    // A token in the config would be written to sweep.json and show in every child's command line.
    if (k === 'token') throw new UserError(`${where}.${k0}: a token does not belong in a sweep config (it would be saved and shown in ps); set HF_TOKEN in the environment instead`);
    if (!known.has(k)) throw new UserError(`${where}.${k0}: unknown option; mimetic train has no --${kebab(k)} (see mimetic train --help)`);
    if (k in out) throw new UserError(`${where}.${k0}: given twice (as ${kebab(k)} and ${k})`);
    out[k] = checkValue(k, v, `${where}.${k0}`);
  }
  return out;
}

/**
 * Validate a sweep configuration completely (before any run starts). `known` is the set of
 * `mimetic train` option names (camelCase), by default config.ts's option table.
 */
export function parseSweepConfig(raw: unknown, file: string, known: ReadonlySet<string> = trainOptionNames()): SweepConfig {
  if (!isPlainObject(raw)) throw new UserError(`${file}: a sweep config must be a JSON object with "name", "base" and "grid"`);
  const allowed = new Set(['name', 'description', 'base', 'grid', 'variants']);
  for (const k of Object.keys(raw)) if (!allowed.has(k)) throw new UserError(`${file}: unknown field "${k}"; a sweep config has ${[...allowed].join(', ')}`);
  const name = raw.name;
  if (typeof name !== 'string' || !/^[A-Za-z0-9._-]+$/.test(name)) throw new UserError(`${file}: "name" must be a non-empty string of letters, digits, '.', '_' or '-' (it names the sweep folder runs/<name>)`);
  if (raw.description !== undefined && typeof raw.description !== 'string') throw new UserError(`${file}: "description" must be a string`);
  const base = checkOptions(raw.base ?? {}, `${file}: base`, known);
  if (!isPlainObject(raw.grid)) throw new UserError(`${file}: "grid" must be an object mapping options to lists of values, e.g. {"lr": [0.001, 0.0005], "seed": [0, 1]}`);
  const grid: Record<string, OptValue[]> = {};
  for (const [k0, vs] of Object.entries(raw.grid)) {
    const k = camel(k0);
    const where = `${file}: grid.${k0}`;
    if (!Array.isArray(vs)) throw new UserError(`${where}: must be a list of values`);
    if (vs.length === 0) throw new UserError(`${where}: is an empty list; give at least one value`);
    if (RESERVED.has(k)) throw new UserError(`${where}: the sweep sets --${kebab(k)} itself; remove it from the config`);
    if (!known.has(k)) throw new UserError(`${where}: unknown option; mimetic train has no --${kebab(k)} (see mimetic train --help)`);
    if (k in base) throw new UserError(`${where}: also set in "base"; keep it in one place`);
    if (k in grid) throw new UserError(`${where}: given twice`);
    grid[k] = vs.map((v, i) => checkValue(k, v, `${where}[${i}]`));
    const seen = new Set(grid[k]!.map((v) => JSON.stringify(v)));
    if (seen.size !== vs.length) throw new UserError(`${where}: lists a value twice`);
  }
  const variants: SweepVariant[] = [];
  if (raw.variants !== undefined) {
    if (!Array.isArray(raw.variants) || raw.variants.length === 0) throw new UserError(`${file}: "variants" must be a non-empty list of option objects`);
    raw.variants.forEach((v, i) => {
      const where = `${file}: variants[${i}]`;
      if (!isPlainObject(v)) throw new UserError(`${where}: must be an object of options (and an optional "name")`);
      const { name: vn, ...rest } = v;
      if (vn !== undefined && (typeof vn !== 'string' || !/^[A-Za-z0-9._+-]+$/.test(vn))) throw new UserError(`${where}.name: must be a string of letters, digits, '.', '_', '+' or '-'`);
      const options = checkOptions(rest, where, known);
      for (const k of Object.keys(options)) if (k in grid) throw new UserError(`${where}.${k}: also a grid option; a variant may not set what the grid varies`);
      if (vn === undefined && Object.keys(options).length === 0) throw new UserError(`${where}: sets nothing; give options or a name`);
      variants.push(vn === undefined ? { options } : { name: vn, options });
    });
  }
  const names = variants.map((v) => v.name).filter((n): n is string => n !== undefined);
  if (new Set(names).size !== names.length) throw new UserError(`${file}: two variants have the same name`);
  const cfg: SweepConfig = { name, base, grid, variants };
  if (raw.description !== undefined) cfg.description = raw.description as string;
  const runs = expandRuns(cfg);
  for (const r of runs) if (r.options.task === undefined) throw new UserError(`${file}: run ${r.id} has no "task"; set it in "base" (copy, mqar or lm)`);
  return cfg;
}

function fmtValue(v: OptValue): string {
  return Array.isArray(v) ? v.join('+') : String(v);
}

/** A folder-safe rendering of `key=value`. */
function part(k: string, v: OptValue): string {
  return `${k}=${fmtValue(v)}`.replace(/[^A-Za-z0-9._+=-]/g, '_');
}

/** Every run of the sweep: variants × the grid's cartesian product, in a fixed order. */
export function expandRuns(cfg: SweepConfig): RunSpec[] {
  const keys = Object.keys(cfg.grid);
  let points: RunOptionsMap[] = [{}];
  for (const k of keys) points = points.flatMap((p) => cfg.grid[k]!.map((v) => ({ ...p, [k]: v })));
  const variants: SweepVariant[] = cfg.variants.length ? cfg.variants : [{ options: {} }];
  const runs: RunSpec[] = [];
  const ids = new Map<string, number>();
  variants.forEach((variant, vi) => {
    const vparts = variant.name !== undefined ? [variant.name.replace(/[^A-Za-z0-9._+-]/g, '_')] : Object.entries(variant.options).map(([k, v]) => part(k, v));
    for (const p of points) {
      const options: RunOptionsMap = { ...cfg.base, ...variant.options, ...p };
      const gparts = keys.map((k) => part(k, p[k]!));
      const id = [...vparts, ...gparts].join(',') || 'run';
      if (ids.has(id)) throw new UserError(`sweep config: variants ${ids.get(id)} and ${vi} give the same run folder '${id}'; give the variants names`);
      if (RESERVED_DIRS.has(id)) throw new UserError(`sweep config: run folder '${id}' is a name the sweep uses itself; rename the variant`);
      ids.set(id, vi);
      const labelParts = [...vparts, ...keys.filter((k) => k !== 'lr' && k !== 'seed').map((k) => part(k, p[k]!))];
      const label = labelParts.join(',') || 'all';
      const lr = options.lr === undefined ? null : Number(options.lr);
      runs.push({ id, options, label, group: `${label}|lr=${lr ?? 'default'}`, lr, seed: options.seed === undefined ? null : Number(options.seed), variant: variant.name ?? null });
    }
  });
  return runs;
}

/** `--where key=v1,v2`: runs whose option `key` (or variant name, for `variant`) is one of the values. */
export interface RunFilter { key: string; values: string[] }

function filterValue(r: RunSpec, key: string): OptValue | undefined {
  return key === 'variant' ? r.variant ?? undefined : r.options[key];
}

function filterMatches(r: RunSpec, f: RunFilter): boolean {
  const v = filterValue(r, f.key);
  if (v === undefined) return false;
  const s = fmtValue(v);
  // Numbers compare as numbers (0.001 = 1e-3).
  return f.values.some((x) => x === s || (x.trim() !== '' && s.trim() !== '' && Number.isFinite(Number(x)) && Number(x) === Number(s)));
}

/**
 * Parse `--where` filters (each `key=v1,v2`; several are ANDed) against a sweep's runs. A key no
 * run has, or a filter set that selects nothing, is a user error naming what there is.
 */
export function parseRunFilters(specs: string[], runs: RunSpec[]): RunFilter[] {
  const filters = specs.map((sp) => {
    const m = /^([A-Za-z][A-Za-z0-9-]*)=(.+)$/.exec(sp.trim());
    if (!m) throw new UserError(`--where '${sp}': give key=value[,value…], e.g. --where lr=0.001 or --where variant=mamba2-mimetic`);
    const key = camel(m[1]!);
    const values = m[2]!.split(',').map((x) => x.trim()).filter(Boolean);
    if (!values.length) throw new UserError(`--where '${sp}': no values after '='`);
    const present = [...new Set(runs.map((r) => filterValue(r, key)).filter((v): v is OptValue => v !== undefined).map(fmtValue))];
    if (!present.length) throw new UserError(`--where '${sp}': no run of this sweep has ${key === 'variant' ? 'a variant name' : `the option ${m[1]}`}; filter on variant or an option the config sets`);
    for (const x of values) {
      if (!runs.some((r) => filterMatches(r, { key, values: [x] }))) throw new UserError(`--where '${sp}': no run has ${m[1]} = ${x}; this sweep has ${present.slice(0, 20).join(', ')}`);
    }
    return { key, values };
  });
  if (filters.length && !selectRuns(runs, filters).length) throw new UserError(`--where ${specs.join(' --where ')}: together these select no run`);
  return filters;
}

export function selectRuns(runs: RunSpec[], filters: RunFilter[]): RunSpec[] {
  return runs.filter((r) => filters.every((f) => filterMatches(r, f)));
}

/** The `mimetic train` arguments for a run's options (without --out/--resume). */
export function trainArgs(options: RunOptionsMap): string[] {
  const args: string[] = [];
  for (const [k, v] of Object.entries(options)) args.push(`--${kebab(k)}`, Array.isArray(v) ? v.join(',') : String(v));
  return args;
}

export type RunStatus = 'pending' | 'partial' | 'finished' | 'target-reached' | 'failed';

export interface SweepRunState {
  status: RunStatus;
  /** Last checkpointed step (0 without one). */
  step: number;
  steps: number | null;
  trainSeconds: number | null;
  error?: string;
}

const metaDir = (sweepDir: string) => path.join(sweepDir, '.sweep');
const metaFile = (sweepDir: string, id: string) => path.join(metaDir(sweepDir), `${id}.json`);
const pidFile = (sweepDir: string, id: string) => path.join(metaDir(sweepDir), `${id}.pid`);
const statusFile = (sweepDir: string, id: string) => path.join(metaDir(sweepDir), `${id}.status.json`);

interface RunMeta { options: RunOptionsMap; error?: string }

export function readRunMeta(sweepDir: string, id: string): RunMeta | null {
  const f = metaFile(sweepDir, id);
  if (!fs.existsSync(f)) return null;
  try {
    return JSON.parse(fs.readFileSync(f, 'utf8')) as RunMeta;
  } catch {
    return null;
  }
}

/** Where a run stands, from its folder alone. */
export function runState(sweepDir: string, id: string): SweepRunState {
  const dir = path.join(sweepDir, id);
  const meta = readRunMeta(sweepDir, id);
  let steps: number | null = null;
  if (fs.existsSync(path.join(dir, RUN_FILE))) {
    try {
      steps = (JSON.parse(fs.readFileSync(path.join(dir, RUN_FILE), 'utf8')) as { config: TrainConfig }).config.steps;
    } catch {
      steps = null;
    }
  }
  const cks = fs.existsSync(dir) ? listCheckpoints(dir) : [];
  const last = cks.at(-1);
  const st = last ? readRunState(last.dir) : undefined;
  const base = { step: st?.step ?? 0, steps, trainSeconds: st?.trainSeconds ?? null };
  if (meta?.error) return { status: 'failed', ...base, error: meta.error };
  if (steps === null) return { status: 'pending', ...base };
  if (st?.stoppedEarly) return { status: 'target-reached', ...base };
  if (st && st.step >= steps) return { status: 'finished', ...base };
  // A run folder copied without its checkpoints (to save space): its metrics say whether it finished.
  if (!cks.length) {
    const lastStep = readMetrics(path.join(dir, METRICS_FILE)).at(-1)?.step ?? 0;
    if (lastStep >= steps) return { status: 'finished', step: lastStep, steps, trainSeconds: null };
  }
  return { status: 'partial', ...base };
}

export const isDone = (s: RunStatus) => s === 'finished' || s === 'target-reached';

export interface SweepRunOptions {
  /** Sweep folder. */
  out: string;
  /** Children at once per GPU (or in all, without GPUs). */
  parallel: number;
  /** GPU indices to spread children over (null: don't choose). */
  gpus: number[] | null;
  /** Stop launching after this many minutes and stop running children gracefully. */
  sliceMinutes: number | null;
  /** --backend for every child (overrides the config's). */
  backend?: string;
  /** Try failed runs again. */
  retryFailed?: boolean;
  /** The command that runs the CLI (default: this node, dist/src/cli/main.js). */
  cli?: string[];
  /** Seconds a child gets to checkpoint after SIGINT before it is killed (default 120). */
  graceSeconds?: number;
  /** Progress lines (default stderr; null: silent). */
  log?: { write(s: string): unknown } | null;
  /** Stop as a slice end would (the CLI aborts it on SIGINT/SIGTERM). */
  signal?: AbortSignal;
  /** Run only the runs these select (parseRunFilters, `--where`); the summary still covers the whole sweep. */
  where?: RunFilter[];
  /**
   * Run only these runs (ids), leaving the others to other sweeps in the same folder: a
   * scheduler's tasks, each on its own GPU or host. Each run is locked while this sweep has it.
   */
  only?: string[];
}

/** Counts over the runs this sweep was given (all of them, or those of `only`). */
export interface SweepOutcome {
  /** Runs selected (all of the sweep without --where). */
  total: number;
  done: number;
  failed: number;
  unfinished: number;
  launched: number;
  /** True when stopped by the slice timer or a signal with work left. */
  stopped: boolean;
}

function cmdlineOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** The pid of a live sweep holding the folder lock `f`, or null when it is free or stale. */
function folderLockHolder(f: string): number | null {
  return lockHolder(f, isSweep)?.pid ?? null;
}

/** A holder that is a sweep (a reused pid of another program is not). */
const isSweep = (h: LockHolder) => h.pid === process.pid || /sweep/.test(cmdlineOf(h.pid) || 'sweep');

/**
 * Take the sweep folder's lock (one sweep per folder, this process's own included); returns the
 * release function. A stale lock (its sweep killed) is taken over atomically (lock.ts).
 */
export function takeSweepLock(sweepDir: string): () => void {
  const f = path.join(metaDir(sweepDir), 'lock');
  fs.mkdirSync(metaDir(sweepDir), { recursive: true });
  const r = takeLock(f, isSweep);
  if ('holder' in r) throw new UserError(`${sweepDir}: another sweep (pid ${r.holder.pid}) is running in this folder; wait for it or stop it first`);
  return r.release;
}

/**
 * Per-run locks for `--only` sweeps. Their holders may be on other hosts of a cluster (a requeued
 * task lands anywhere), so liveness is the lock's mtime, which the holder refreshes
 * (proper-lockfile), not a pid. A task killed outright leaves a lock that goes stale in RUN_LOCK_STALE_MS.
 */
const RUN_LOCK_STALE_MS = 30_000;
const runLockOptions = (sweepDir: string, id: string) => ({ lockfilePath: path.join(metaDir(sweepDir), `${id}.lock`), realpath: false, stale: RUN_LOCK_STALE_MS });
const runLocked = (sweepDir: string, id: string) => lockfile.checkSync(path.join(sweepDir, id), runLockOptions(sweepDir, id));

/** Whether some sweep is running the run now: a live child on this host, or an `--only` sweep's lock. */
export function runIsLive(sweepDir: string, id: string): boolean {
  let pid = NaN;
  try {
    pid = Number(fs.readFileSync(pidFile(sweepDir, id), 'utf8').trim());
  } catch {
    /* no child */
  }
  return (Number.isSafeInteger(pid) && pid > 0 && pidAlive(pid)) || runLocked(sweepDir, id);
}

async function lockRuns(sweepDir: string, runs: RunSpec[], log: (s: string) => void): Promise<() => void> {
  const holder = folderLockHolder(path.join(metaDir(sweepDir), 'lock'));
  if (holder !== null) throw new UserError(`${sweepDir}: a sweep of the whole folder (pid ${holder}) is running; wait for it or stop it first`);
  const releases: (() => Promise<void>)[] = [];
  const releaseAll = () => {
    for (const r of releases.splice(0)) r().catch(() => undefined);
  };
  try {
    for (const r of runs) {
      // A stale lock of a killed task frees itself within RUN_LOCK_STALE_MS: wait that long.
      releases.push(await lockfile.lock(path.join(sweepDir, r.id), {
        ...runLockOptions(sweepDir, r.id), retries: { retries: 15, minTimeout: 1000, maxTimeout: 3000, factor: 1.3 },
        onCompromised: (e) => log(`lock of ${r.id} lost (${e.message}); another sweep may take that run over`),
      }).catch((e: Error & { code?: string }) => {
        if (e.code === 'ELOCKED') throw new UserError(`${path.join(sweepDir, r.id)}: another sweep is running that run (lock ${runLockOptions(sweepDir, r.id).lockfilePath}); wait for it or stop it first`);
        throw e;
      }));
    }
  } catch (e) {
    releaseAll();
    throw e;
  }
  return releaseAll;
}

/** The runs named by `only`, in sweep order; an unknown name is a user error. */
function runsById(all: RunSpec[], only: string[]): RunSpec[] {
  const ids = new Set(all.map((r) => r.id));
  for (const id of only) {
    if (!ids.has(id)) throw new UserError(`--only ${id}: no such run in this sweep; its runs are ${all.slice(0, 6).map((r) => r.id).join(', ')}${all.length > 6 ? ', …' : ''}`);
  }
  return all.filter((r) => only.includes(r.id));
}

/** A run folder made with other options is a different experiment: refuse rather than mix. */
export function checkRunsMatch(sweepDir: string, runs: RunSpec[], shown: string): void {
  for (const r of runs) {
    const meta = readRunMeta(sweepDir, r.id);
    if (meta && JSON.stringify(meta.options) !== JSON.stringify(r.options)) {
      const k = [...new Set([...Object.keys(meta.options), ...Object.keys(r.options)])].find((x) => JSON.stringify(meta.options[x]) !== JSON.stringify(r.options[x]));
      throw new UserError(`${path.join(shown, r.id)}: that run was started with ${k} = ${JSON.stringify(meta.options[k!])}, the config now says ${JSON.stringify(r.options[k!])}; restore the config, or move the sweep folder away (or use --out) to start afresh`);
    }
  }
}

/** Children of an earlier, killed sweep may still run: stop them (they checkpoint) before resuming. */
async function stopOrphans(sweepDir: string, runs: RunSpec[], graceSeconds: number, log: (s: string) => void): Promise<void> {
  for (const r of runs) {
    const f = pidFile(sweepDir, r.id);
    if (!fs.existsSync(f)) continue;
    const pid = Number(fs.readFileSync(f, 'utf8').trim());
    if (Number.isSafeInteger(pid) && pid > 0 && pidAlive(pid) && cmdlineOf(pid).includes(path.join(sweepDir, r.id))) {
      log(`stopping ${r.id}: still running from an earlier sweep (pid ${pid})`);
      process.kill(pid, 'SIGINT');
      const t0 = Date.now();
      while (pidAlive(pid) && Date.now() - t0 < graceSeconds * 1000) await new Promise((res) => setTimeout(res, 200));
      if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    fs.rmSync(f, { force: true });
  }
}

/**
 * `--gpus all|0,2,…`: the GPU indices to spread children over. `list` is the device list
 * (backend.ts's listGpus; null where it was not asked for, as for the tensorflow backend's CUDA
 * indices): `all` takes every GPU in it, and listed indices must be in it.
 */
export function resolveGpus(spec: string, list: VulkanDeviceList | null): number[] {
  const gpus = list ? gpusOf(list) : [];
  const have = () => gpus.length === 0 ? 'this machine has no GPU (the Vulkan driver reports no device)' : `this machine has ${gpus.length} GPU${gpus.length === 1 ? '' : 's'} (${gpus.map(describeDevice).join('; ')})`;
  if (spec.trim() === 'all') {
    if (!gpus.length) throw new UserError(`--gpus all: ${list ? have() : 'the GPUs could not be listed'}; run without --gpus, or list indices (e.g. --gpus 0,1)`);
    return gpus.map((d) => d.gpu!);
  }
  const out = spec.split(',').map((x) => x.trim()).filter(Boolean).map((x) => {
    const n = /^\d+$/.test(x) ? Number(x) : NaN;
    if (!Number.isSafeInteger(n)) throw new UserError(`--gpus: '${printable(x)}' is not a GPU index (0, 1, …) or all`);
    return n;
  });
  if (!out.length || new Set(out).size !== out.length) throw new UserError(`--gpus: '${printable(spec)}' must list distinct GPU indices, e.g. 0,1, or be all`);
  if (list && gpus.length) {
    const missing = out.find((i) => !gpus.some((d) => d.gpu === i));
    if (missing !== undefined) throw new UserError(`--gpus: there is no GPU ${missing}; ${have()}; choose from ${gpus.length === 1 ? '0' : `0 to ${gpus.length - 1}`}, or all`);
  }
  return out;
}

/** The default way to run the CLI: this Node on the built main.js next to this module. */
export function defaultCli(): string[] {
  return [process.execPath, fileURLToPath(new URL('../cli/main.js', import.meta.url))];
}

/**
 * Run (or continue) every unfinished run of the sweep. Children are `mimetic train` processes in
 * their own process group (a terminal's Ctrl-C reaches only the sweep, which then asks each child
 * once, with SIGINT, to checkpoint and stop: the trainer finishes its step and saves).
 */
export async function runSweep(cfg: SweepConfig, o: SweepRunOptions): Promise<SweepOutcome> {
  const sweepDir = path.resolve(o.out);
  const all = expandRuns(cfg);
  const runs = o.only ? runsById(all, o.only) : all;
  const logStream = o.log === undefined ? process.stderr : o.log;
  const log = (s: string) => logStream?.write(`sweep ${cfg.name}: ${s}\n`);
  const grace = o.graceSeconds ?? 120;
  if (!(Number.isSafeInteger(o.parallel) && o.parallel >= 1)) throw new UserError(`--parallel: ${o.parallel} must be a positive integer`);
  fs.mkdirSync(metaDir(sweepDir), { recursive: true });
  fs.mkdirSync(path.join(sweepDir, 'logs'), { recursive: true });
  checkRunsMatch(sweepDir, all, o.out);
  const release = o.only ? await lockRuns(sweepDir, runs, log) : takeSweepLock(sweepDir);
  try {
    writeFileAtomic(path.join(sweepDir, 'sweep.json'), JSON.stringify({ version: 1, config: cfg }, null, 2) + '\n');
    // Runs an `--only` sweep holds are not ours to stop or start.
    const elsewhere = o.only ? new Set<string>() : new Set(runs.filter((r) => runLocked(sweepDir, r.id)).map((r) => r.id));
    await stopOrphans(sweepDir, runs.filter((r) => !elsewhere.has(r.id)), grace, log);

    const selected = o.where?.length ? selectRuns(runs, o.where) : runs;
    const todo: RunSpec[] = [];
    let done = 0, failed = 0;
    for (const r of selected) {
      const st = runState(sweepDir, r.id);
      if (isDone(st.status)) done++;
      else if (st.status === 'failed' && !o.retryFailed) failed++;
      else if (!elsewhere.has(r.id)) todo.push(r);
    }
    log(`${selected.length} runs${selected.length < runs.length ? ` (of ${runs.length}, selected by --where)` : ''}: ${done} finished, ${failed} failed${failed ? ' (--retry-failed to try again)' : ''}, ${todo.length} to run${elsewhere.size ? `, ${elsewhere.size} run by other sweeps (--only)` : ''}`);

    // Each child gets MIMETIC_GPU and CUDA_VISIBLE_DEVICES (gpu-select.ts): the tensorflow backend
    // honours the latter, webgpu the former through the GPU-select Vulkan layer.
    const gpus = o.gpus && o.gpus.length ? o.gpus : [null];
    const slots: { gpu: number | null; child: ChildProcess | null }[] = [];
    for (const g of gpus) for (let i = 0; i < o.parallel; i++) slots.push({ gpu: g, child: null });
    let stopping = false;
    let launched = 0;
    const running = new Set<ChildProcess>();
    const stopChildren = () => {
      for (const c of running) {
        if (c.exitCode === null && c.signalCode === null) {
          try {
            c.kill('SIGINT');
          } catch {
            /* already gone */
          }
          const killer = setTimeout(() => { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); }, grace * 1000);
          killer.unref();
        }
      }
    };
    const stop = (why: string) => {
      if (stopping) return;
      stopping = true;
      if (running.size) log(`${why}: asking ${running.size} running child${running.size > 1 ? 'ren' : ''} to checkpoint and stop`);
      stopChildren();
    };
    const timer = o.sliceMinutes !== null ? setTimeout(() => stop(`slice of ${o.sliceMinutes} min over`), o.sliceMinutes * 60_000) : null;
    if (o.sliceMinutes !== null && o.sliceMinutes <= 0) stopping = true;
    const onAbort = () => stop('stop requested');
    o.signal?.addEventListener('abort', onAbort);
    if (o.signal?.aborted) stopping = true;

    const cli = o.cli ?? defaultCli();
    const launch = (r: RunSpec, slot: (typeof slots)[number]): Promise<void> => {
      const runDir = path.join(sweepDir, r.id);
      const st = runState(sweepDir, r.id);
      let args: string[];
      const fresh = !fs.existsSync(path.join(runDir, RUN_FILE));
      if (fresh) {
        // A folder this sweep started that has no run.json holds nothing of value (the trainer
        // writes run.json first); anything else is left for the trainer to refuse.
        if (fs.existsSync(runDir) && fs.existsSync(metaFile(sweepDir, r.id))) fs.rmSync(runDir, { recursive: true, force: true });
        args = ['train', ...trainArgs(r.options), '--out', runDir];
      } else {
        args = ['train', '--resume', runDir];
        if (r.options.backend !== undefined) args.push('--backend', String(r.options.backend));
      }
      if (o.backend !== undefined) args.push('--backend', o.backend);
      writeFileAtomic(metaFile(sweepDir, r.id), JSON.stringify({ options: r.options }, null, 2) + '\n');
      const logFd = fs.openSync(path.join(sweepDir, 'logs', `${r.id}.log`), 'a');
      fs.writeSync(logFd, `\n=== ${new Date().toISOString()} ${fresh ? 'start' : `resume from step ${st.step}`}: ${args.join(' ')}\n`);
      const status = statusFile(sweepDir, r.id);
      fs.rmSync(status, { force: true });
      const env = { ...process.env, ...(slot.gpu !== null ? childGpuEnv(slot.gpu) : {}), [RUN_STATUS_ENV]: status };
      const child = spawn(cli[0]!, [...cli.slice(1), ...args], { env, stdio: ['ignore', logFd, logFd], detached: true });
      fs.closeSync(logFd);
      launched++;
      slot.child = child;
      running.add(child);
      if (child.pid !== undefined) fs.writeFileSync(pidFile(sweepDir, r.id), String(child.pid));
      log(`${fresh ? 'start' : `resume (step ${st.step})`} ${r.id}${slot.gpu !== null ? ` on GPU ${slot.gpu}` : ''}`);
      if (stopping) stopChildren();
      return new Promise((resolve) => {
        let settled = false;
        child.on('error', (e) => {
          if (settled) return;
          settled = true;
          running.delete(child);
          slot.child = null;
          writeFileAtomic(metaFile(sweepDir, r.id), JSON.stringify({ options: r.options, error: `could not start ${cli[0]}: ${e.message}` }, null, 2) + '\n');
          failed++;
          log(`failed ${r.id}: could not start ${cli[0]}: ${e.message}`);
          resolve();
        });
        child.on('close', (code, signal) => {
          if (settled) return;
          settled = true;
          running.delete(child);
          slot.child = null;
          fs.rmSync(pidFile(sweepDir, r.id), { force: true });
          const now = runState(sweepDir, r.id);
          if (isDone(now.status)) {
            done++;
            log(`${now.status} ${r.id} (step ${now.step})`);
          } else if ((code === 2 || code === 1) && !stopping) {
            // A user error (bad option, divergence) or a crash: the same command would fail again.
            // The child said which in its status file; without one it died before it could.
            const told = readRunStatus(status);
            const msg = told?.error ?? `exit code ${code} before the run reported a status; see ${path.join(o.out, 'logs', `${r.id}.log`)}`;
            writeFileAtomic(metaFile(sweepDir, r.id), JSON.stringify({ options: r.options, error: msg }, null, 2) + '\n');
            failed++;
            log(`failed ${r.id}: ${msg}`);
          } else {
            log(`stopped ${r.id} at step ${now.step} (${signal ?? `exit ${code}`}); the next sweep resumes it`);
          }
          resolve();
        });
      });
    };

    // A pool: each slot takes the next run as soon as it is free.
    let next = 0;
    const worker = async (slot: (typeof slots)[number]) => {
      while (!stopping && next < todo.length) await launch(todo[next++]!, slot);
    };
    await Promise.all(slots.map(worker));
    if (timer) clearTimeout(timer);
    o.signal?.removeEventListener('abort', onAbort);
    let unfinished = 0;
    done = 0;
    failed = 0;
    for (const r of selected) {
      const s = runState(sweepDir, r.id).status;
      if (isDone(s)) done++;
      else if (s === 'failed') failed++;
      else unfinished++;
    }
    return { total: selected.length, done, failed, unfinished, launched, stopped: stopping && unfinished > 0 };
  } finally {
    release();
  }
}
