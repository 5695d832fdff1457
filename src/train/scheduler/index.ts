/**
 * A sweep handed to a cluster scheduler. The pending runs become the tasks of one job (an array);
 * each task runs `mimetic sweep CONFIG --out DIR --only RUN…`, the same code path as a local sweep,
 * in the same folder, so skipping, resuming and the summary work as they do on one machine.
 *
 * What is specific to a scheduler (the job file, how to submit, query and cancel) is one object
 * implementing `Scheduler` (slurm.ts); a Kubernetes indexed Job would be another.
 *
 * Adds to the sweep folder:
 *   <scheduler spec file>      e.g. slurm.sbatch, the job as submitted
 *   .sweep/submission.json     the scheduler, the job id, and the runs of each task
 *   logs/slurm-<job>_<task>.out  the scheduler's log of each task
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempSibling, writeFileAtomic } from '../../util/atomic.js';
import { UserError } from '../../util/errors.js';
import { type SweepConfig, checkRunsMatch, defaultCli, expandRuns, isDone, runIsLive, runState } from '../sweep.js';
import { slurm } from './slurm.js';

export type TaskState = 'pending' | 'running' | 'done' | 'failed';
export interface TaskInfo { state: TaskState; /** The scheduler's own word for it (e.g. Slurm's OUT_OF_MEMORY). */ raw: string }
export interface TaskPlan { index: number; runs: string[] }

export interface JobResources {
  partition?: string;
  gpusPerTask: number;
  /** Time limit per task, in the scheduler's notation (Slurm: [D-]HH:MM:SS or minutes). */
  time?: string;
  /** Tasks at once (null: as many as the scheduler gives). */
  maxParallel?: number;
  /** How long before the time limit the scheduler warns a task, so its runs checkpoint. */
  signalBeforeSeconds: number;
  /** Scheduler options passed through as they are (e.g. --mem=16G). */
  extra: string[];
}

export interface JobSpec {
  name: string;
  cwd: string;
  logDir: string;
  /** The command every task runs, before its `--only RUN` arguments. */
  command: string[];
  tasks: TaskPlan[];
  resources: JobResources;
}

export interface Scheduler {
  readonly name: string;
  /** The job file's name in the sweep folder. */
  readonly specFile: string;
  /** Why this machine cannot submit (one line), or null. */
  missing(): string | null;
  render(job: JobSpec): string;
  /** Submit the job file; returns the job id, or throws a UserError with the scheduler's message. */
  submit(specPath: string): string;
  /** State of each task (by index) the scheduler knows of; null when it cannot be asked. */
  tasks(jobId: string): Map<number, TaskInfo> | null;
  cancel(jobId: string): void;
}

export const SCHEDULERS: Record<string, Scheduler> = { slurm };

export function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((d) => {
    try {
      fs.accessSync(path.join(d || '.', cmd), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** A scheduler's message as one printable line. */
export function oneLine(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.split('\n').map((l) => l.replace(/[\u0000-\u001f\u007f-\u009f]/g, '').trim()).filter(Boolean).join(' / ');
}

interface Submission { version: 1; scheduler: string; jobId: string; submitted: string; spec: string; tasks: string[][] }

const submissionFile = (sweepDir: string) => path.join(sweepDir, '.sweep', 'submission.json');

export function readSubmission(sweepDir: string): Submission | null {
  try {
    return JSON.parse(fs.readFileSync(submissionFile(sweepDir), 'utf8')) as Submission;
  } catch {
    return null;
  }
}

function schedulerOf(sub: Submission): Scheduler {
  const s = SCHEDULERS[sub.scheduler];
  if (!s) throw new UserError(`${sub.scheduler}: unknown scheduler in the sweep's submission record; this mimetic knows ${Object.keys(SCHEDULERS).join(', ')}`);
  return s;
}

/** Runs in groups of `perTask`, one group per task. */
export function planTasks(ids: string[], perTask: number): TaskPlan[] {
  const tasks: TaskPlan[] = [];
  for (let i = 0; i < ids.length; i += perTask) tasks.push({ index: tasks.length, runs: ids.slice(i, i + perTask) });
  return tasks;
}

/**
 * Refuse when the folder's job still has tasks queued or running: two jobs (or a job and a local
 * sweep) would run the same runs. Where the scheduler cannot be asked (the folder copied to
 * another machine), the job is taken as gone.
 */
export function checkNotSubmitted(sweepDir: string, shown: string): void {
  const sub = readSubmission(sweepDir);
  if (!sub) return;
  const tasks = schedulerOf(sub).tasks(sub.jobId);
  const live = tasks ? [...tasks.values()].filter((t) => t.state === 'pending' || t.state === 'running').length : 0;
  if (live) throw new UserError(`${shown}: already submitted to ${sub.scheduler} as job ${sub.jobId}, which has ${live} task${live > 1 ? 's' : ''} queued or running; follow it with --status, or stop it with --cancel first`);
}

export interface SubmitOptions {
  out: string;
  configFile: string;
  scheduler: Scheduler;
  resources: JobResources;
  runsPerTask: number;
  /** Sweep options every task gets (--backend, --parallel, --retry-failed). */
  taskArgs: string[];
  retryFailed: boolean;
  dryRun: boolean;
  /** The command that runs the CLI (default: this node, dist/src/cli/main.js). */
  cli?: string[];
}

export interface SubmitResult { specPath: string; jobId: string | null; tasks: TaskPlan[]; total: number; done: number }

/** Write the job file for the sweep's pending runs and submit it (unless dryRun). */
export function submitSweep(cfg: SweepConfig, o: SubmitOptions): SubmitResult {
  const sweepDir = path.resolve(o.out);
  const all = expandRuns(cfg);
  checkRunsMatch(sweepDir, all, o.out);
  const states = new Map(all.map((r) => [r.id, runState(sweepDir, r.id).status]));
  const pending = all.filter((r) => !isDone(states.get(r.id)!) && (o.retryFailed || states.get(r.id) !== 'failed')).map((r) => r.id);
  const specPath = path.join(sweepDir, o.scheduler.specFile);
  const result: SubmitResult = { specPath, jobId: null, tasks: planTasks(pending, o.runsPerTask), total: all.length, done: all.filter((r) => isDone(states.get(r.id)!)).length };
  if (!pending.length) return result;
  if (!o.dryRun) {
    const why = o.scheduler.missing();
    if (why) throw new UserError(why);
    checkNotSubmitted(sweepDir, o.out);
  }
  const existed = fs.existsSync(sweepDir);
  const logDir = path.join(sweepDir, 'logs');
  fs.mkdirSync(path.join(sweepDir, '.sweep'), { recursive: true });
  fs.mkdirSync(logDir, { recursive: true });
  const text = o.scheduler.render({
    name: cfg.name, cwd: process.cwd(), logDir, tasks: result.tasks, resources: o.resources,
    command: [...(o.cli ?? defaultCli()), 'sweep', path.resolve(o.configFile), '--out', sweepDir, ...o.taskArgs],
  });
  if (o.dryRun) {
    writeFileAtomic(specPath, text);
    return result;
  }
  // Submit from a temporary file: a rejected job leaves no job file (nor a new sweep folder) behind.
  const tmp = tempSibling(specPath);
  fs.writeFileSync(tmp, text, { mode: 0o755 });
  try {
    result.jobId = o.scheduler.submit(tmp);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    if (!existed) fs.rmSync(sweepDir, { recursive: true, force: true });
    throw e;
  }
  fs.renameSync(tmp, specPath);
  const sub: Submission = { version: 1, scheduler: o.scheduler.name, jobId: result.jobId, submitted: new Date().toISOString(), spec: o.scheduler.specFile, tasks: result.tasks.map((t) => t.runs) };
  writeFileAtomic(submissionFile(sweepDir), JSON.stringify(sub, null, 2) + '\n');
  return result;
}

export interface RunStatusRow {
  id: string;
  state: TaskState;
  step: number;
  steps: number | null;
  /** The scheduler task that has the run, and its state there. */
  task: string | null;
  error?: string;
}

/** Each run as pending, running, done or failed: from its folder, and from the scheduler where the sweep was submitted. */
export function sweepStatus(cfg: SweepConfig, out: string): { rows: RunStatusRow[]; submission: Submission | null; asked: boolean } {
  const sweepDir = path.resolve(out);
  const sub = readSubmission(sweepDir);
  const tasks = sub ? schedulerOf(sub).tasks(sub.jobId) : null;
  const taskOf = new Map<string, number>();
  sub?.tasks.forEach((ids, i) => ids.forEach((id) => taskOf.set(id, i)));
  const rows = expandRuns(cfg).map((r): RunStatusRow => {
    const st = runState(sweepDir, r.id);
    const i = taskOf.get(r.id);
    const t = i === undefined ? undefined : tasks?.get(i);
    const row: RunStatusRow = { id: r.id, state: 'pending', step: st.step, steps: st.steps, task: i === undefined || !sub ? null : `${sub.jobId}_${i}${t ? ` ${t.raw}` : ''}` };
    if (isDone(st.status)) row.state = 'done';
    else if (st.status === 'failed') Object.assign(row, { state: 'failed', error: st.error });
    else if (t?.state === 'running' || runIsLive(sweepDir, r.id)) row.state = 'running';
    else if (t?.state === 'failed' || t?.state === 'done') Object.assign(row, { state: 'failed', error: `${sub!.scheduler} task ended ${t.raw} with the run unfinished` });
    return row;
  });
  return { rows, submission: sub, asked: tasks !== null };
}

/** Cancel the folder's job; returns its id. */
export function cancelSweep(out: string): { scheduler: string; jobId: string } {
  const sub = readSubmission(path.resolve(out));
  if (!sub) throw new UserError(`${out}: this sweep was not submitted to a scheduler (no .sweep/submission.json); stop a local sweep with Ctrl-C`);
  const s = schedulerOf(sub);
  const why = s.missing();
  if (why) throw new UserError(why);
  s.cancel(sub.jobId);
  return { scheduler: sub.scheduler, jobId: sub.jobId };
}
