/** `mimetic sweep`: a grid of training runs (child `mimetic train` processes), resumable, with a summary report. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { BACKEND_HELP, BACKENDS, listGpus } from '../model/backend.js';
import type { VulkanDeviceList } from '../model/gpu-select.js';
import { SCHEDULERS, cancelSweep, checkNotSubmitted, submitSweep, sweepStatus } from '../train/scheduler/index.js';
import { writeSweepReport, type SweepSummary } from '../train/sweep-report.js';
import { compareVariants, sweepTable } from '../train/sweep-table.js';
import { expandRuns, isDone, parseRunFilters, parseSweepConfig, resolveGpus, runState, runSweep } from '../train/sweep.js';
import { UserError } from '../util/errors.js';
import { checkTrainOptions } from './train.js';

/** Exit code of a sweep stopped (slice over, or a signal) with runs left: run it again to continue. */
export const EXIT_UNFINISHED = 75;
/** Exit code when every run ended but some failed. */
export const EXIT_FAILED_RUNS = 3;

/** The GPUs for --gpus: required for `all`; for a list, a check made where the GPUs can be listed. */
async function gpuList(spec: string): Promise<VulkanDeviceList | null> {
  try {
    return await listGpus();
  } catch (e) {
    if (spec.trim() === 'all' || !(e instanceof UserError)) throw e;
    return null;
  }
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** `--compare A,B`: two variant names (checked before any run starts). */
function parseCompare(v: unknown): [string, string] | null {
  if (v === undefined) return null;
  const parts = String(v).split(',').map((x) => x.trim());
  if (parts.length !== 2 || parts.some((x) => !x) || parts[0] === parts[1]) throw new UserError(`--compare: '${String(v)}' must name two different variants, e.g. --compare default,mimetic`);
  return [parts[0]!, parts[1]!];
}

/** The summary's table, and the comparison when asked, on stdout. */
function printSummary(s: SweepSummary, compare: [string, string] | null): void {
  const lines = [...sweepTable(s), ...(compare ? ['', ...compareVariants(s, ...compare)] : [])];
  process.stdout.write(`${lines.join('\n')}\n`);
}

function posInt(v: unknown, name: string, min = 1): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new UserError(`${name}: '${String(v)}' must be an integer ≥ ${min}`);
  return n;
}

/** `--scheduler`: write the job for the pending runs and submit it (or only write it, --dry-run). */
function submit(cfg: ReturnType<typeof parseSweepConfig>, configFile: string, out: string, o: Record<string, unknown>): void {
  const scheduler = SCHEDULERS[String(o.scheduler)];
  if (!scheduler) throw new UserError(`--scheduler: unknown scheduler '${String(o.scheduler)}'; choose ${Object.keys(SCHEDULERS).join(', ')}`);
  if (o.time !== undefined && !/^(\d+-)?\d+(:\d+){0,2}$/.test(String(o.time))) throw new UserError(`--time: '${String(o.time)}' is not a time limit; give minutes, HH:MM:SS or D-HH:MM:SS`);
  const extra = (o.sbatchArg as string[] | undefined) ?? [];
  for (const a of extra) if (!/^--?[A-Za-z]/.test(a) || /[\n\r]/.test(a)) throw new UserError(`--sbatch-arg: '${a}' must be one sbatch option, e.g. --mem=16G`);
  const taskArgs = ['--parallel', String(posInt(o.parallel, '--parallel'))];
  if (o.backend !== undefined) taskArgs.push('--backend', String(o.backend));
  if (o.retryFailed) taskArgs.push('--retry-failed');
  const r = submitSweep(cfg, {
    out, configFile, scheduler, runsPerTask: posInt(o.runsPerTask, '--runs-per-task'), taskArgs, retryFailed: !!o.retryFailed, dryRun: !!o.dryRun,
    resources: {
      partition: o.partition === undefined ? undefined : String(o.partition), gpusPerTask: posInt(o.gpusPerTask, '--gpus-per-task', 0),
      time: o.time === undefined ? undefined : String(o.time), maxParallel: o.maxParallel === undefined ? undefined : posInt(o.maxParallel, '--max-parallel'),
      signalBeforeSeconds: posInt(o.signalBefore, '--signal-before'), extra,
    },
  });
  const runs = r.tasks.reduce((a, t) => a + t.runs.length, 0);
  if (!r.tasks.length) {
    process.stdout.write(`nothing to submit: ${r.done}/${r.total} runs complete, the others failed (--retry-failed to submit them); mimetic sweep ${configFile} --out ${out} --report-only\n`);
  } else if (r.jobId === null) {
    process.stdout.write(`wrote ${r.specPath} (${r.tasks.length} tasks, ${runs} runs); nothing submitted (--dry-run)\n`);
  } else {
    process.stdout.write(`submitted ${scheduler.name} job ${r.jobId}: ${r.tasks.length} tasks for ${runs} runs (${r.done} already complete), script ${r.specPath}
follow it:  mimetic sweep ${configFile} --out ${out} --status   (task logs: ${path.join(out, 'logs')}/)
stop it:    mimetic sweep ${configFile} --out ${out} --cancel
the last task writes summary.json and the report; or: mimetic sweep ${configFile} --out ${out} --report-only
`);
  }
}

function status(cfg: ReturnType<typeof parseSweepConfig>, out: string): void {
  const { rows, submission, asked } = sweepStatus(cfg, out);
  const w = Math.max(...rows.map((r) => r.id.length));
  const lines = rows.map((r) => `${r.id.padEnd(w)}  ${r.state.padEnd(7)}  step ${r.step}/${r.steps ?? '?'}${r.task ? `  task ${r.task}` : ''}${r.error ? `  ${r.error}` : ''}`);
  const n = (s: string) => rows.filter((r) => r.state === s).length;
  const head = submission ? `${submission.scheduler} job ${submission.jobId}, submitted ${submission.submitted}${asked ? '' : ` (${submission.scheduler} could not be asked: states from the run folders only)`}` : 'not submitted to a scheduler';
  process.stdout.write(`${head}\n${lines.join('\n')}\n${rows.length} runs: ${n('done')} done, ${n('running')} running, ${n('pending')} pending, ${n('failed')} failed\n`);
}

export function register(program: Command): void {
  program
    .command('sweep')
    .description(`run a grid of training runs (init × lr × seed …) from a JSON config; resumable, with summary.json and an HTML report (exit 0: all runs complete; ${EXIT_UNFINISHED}: stopped with runs left, run it again; ${EXIT_FAILED_RUNS}: some runs failed)`)
    .argument('<config>', 'sweep config JSON: {"name", "description"?, "base": {train options}, "grid": {option: [values]}, "variants"?: [{"name"?, options…}]}')
    .option('--out <dir>', 'sweep folder (default runs/<name>)')
    .option('--parallel <n>', 'runs at once per GPU (or in all without --gpus)', '1')
    .option('--gpus <list|all>', 'GPUs to spread runs over: all (every GPU `mimetic gpus` lists) or indices, e.g. 0,2 (each child gets MIMETIC_GPU / CUDA_VISIBLE_DEVICES; webgpu children choose by Vulkan device index)')
    .option('--slice-minutes <m>', `stop launching after m minutes and stop running children at their next step (they checkpoint); exit ${EXIT_UNFINISHED} if runs are left`)
    .option('--backend <name>', `backend for every run: ${BACKEND_HELP} (default: the config's, else auto)`)
    .option('--retry-failed', 'run failed runs again')
    .option('--where <key=values>', 'run only the runs whose option (or variant name: variant=…) is one of the comma-separated values; repeat to AND several, e.g. --where variant=mamba2-default,mamba2-mimetic --where lr=0.001 (the summary still covers every run)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--report-only', 'only rebuild summary.json and the report from the run folders (and print the summary table)')
    .option('--compare <a,b>', 'after the summary table, b against a per evaluated setting: differences of mean string and character accuracy and of the generalisation lengths, with Welch\'s t and its degrees of freedom, e.g. --compare default,mimetic')
    .option('--only <run>', 'run only this run (a folder name; repeat for more); other sweeps may run the others in the same folder (how scheduler tasks run)', collect)
    .option('--scheduler <name>', `hand the pending runs to a scheduler as one job array instead: ${Object.keys(SCHEDULERS).join('|')}`)
    .option('--partition <p>', 'scheduler: partition (queue) to submit to')
    .option('--gpus-per-task <n>', 'scheduler: GPUs per task (0 for CPU runs)', '1')
    .option('--time <limit>', 'scheduler: time limit per task, e.g. 00:30:00; runs checkpoint before it and the task requeues')
    .option('--max-parallel <n>', 'scheduler: tasks running at once')
    .option('--runs-per-task <n>', 'scheduler: runs per task, run one after another (or --parallel at once)', '1')
    .option('--signal-before <s>', 'scheduler: seconds before the time limit at which a task is told to checkpoint', '120')
    .option('--sbatch-arg <arg>', 'scheduler: an extra sbatch option, e.g. --mem=16G (repeat for more)', collect)
    .option('--dry-run', 'scheduler: write the job script into the sweep folder, submit nothing')
    .option('--status', 'show each run as pending, running, done or failed (run folders, plus the scheduler where submitted)')
    .option('--cancel', "cancel the sweep's scheduler job (its runs checkpoint; submit again to continue)")
    .action(async (configFile: string, o: Record<string, unknown>) => {
      if (!fs.existsSync(configFile)) throw new UserError(`${configFile}: no such file; give a sweep config JSON (see experiments/)`);
      let raw: unknown;
      try {
        raw = JSON.parse(fs.readFileSync(configFile, 'utf8'));
      } catch (err) {
        throw new UserError(`${configFile}: not valid JSON (${(err as Error).message}); fix the file`);
      }
      const cfg = parseSweepConfig(raw, configFile);
      const out = o.out === undefined ? path.join('runs', cfg.name) : String(o.out);
      if (o.status || o.cancel) {
        if (!fs.existsSync(out)) throw new UserError(`--out ${out}: no such sweep folder; run or submit the sweep first (or give --out)`);
        if (o.status) return status(cfg, out);
        const c = cancelSweep(out);
        process.stdout.write(`cancelled ${c.scheduler} job ${c.jobId}; its runs checkpoint as they stop; submit again to continue them\n`);
        return;
      }
      if (o.scheduler !== undefined) return submit(cfg, configFile, out, o);
      const where = parseRunFilters(o.where as string[], expandRuns(cfg));
      const compare = parseCompare(o.compare);
      if (o.reportOnly) {
        if (!fs.existsSync(out)) throw new UserError(`--out ${out}: no such sweep folder; run the sweep first (or give --out)`);
        const s = await writeSweepReport(cfg, out);
        process.stdout.write(`summary ${path.join(out, 'summary.json')}, report ${path.join(out, 'report', 'index.html')} (${s.counts.finished + s.counts['target-reached']}/${s.runs.length} runs complete)\n`);
        printSummary(s, compare);
        return;
      }
      // Every run's options as `mimetic train` checks them, before a folder or child exists.
      // Runs from a --model checkpoint are left to the child (checking them would load the model).
      for (const r of expandRuns(cfg)) {
        if (r.options.model !== undefined) continue;
        try {
          await checkTrainOptions(r.options);
        } catch (e) {
          if (e instanceof UserError) throw new UserError(`${configFile}: run ${r.id}: ${e.message}; fix the config`);
          throw e;
        }
      }
      const parallel = Number(o.parallel);
      if (!Number.isSafeInteger(parallel) || parallel < 1) throw new UserError(`--parallel: '${String(o.parallel)}' must be a positive integer`);
      // `all`, or indices checked against the GPUs there are (the tensorflow backend's are CUDA's, not listed here).
      const gpus = o.gpus === undefined ? null : resolveGpus(String(o.gpus), String(o.gpus).trim() === 'all' || o.backend !== 'tensorflow' ? await gpuList(String(o.gpus)) : null);
      let slice: number | null = null;
      if (o.sliceMinutes !== undefined) {
        slice = Number(o.sliceMinutes);
        if (!Number.isFinite(slice) || slice < 0) throw new UserError(`--slice-minutes: '${String(o.sliceMinutes)}' must be a number of minutes ≥ 0`);
      }
      if (o.backend !== undefined && !(BACKENDS as readonly string[]).includes(String(o.backend))) throw new UserError(`--backend: unknown backend '${String(o.backend)}'; choose ${BACKENDS.join(', ')}`);
      const only = o.only as string[] | undefined;
      if (!only) checkNotSubmitted(path.resolve(out), out);
      const ac = new AbortController();
      const onSignal = () => {
        if (!ac.signal.aborted) process.stderr.write('\nmimetic: sweep interrupted: running children checkpoint and stop; the next sweep resumes them\n');
        ac.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const r = await runSweep(cfg, {
          out, parallel, gpus, sliceMinutes: slice, backend: o.backend === undefined ? undefined : String(o.backend), retryFailed: !!o.retryFailed, signal: ac.signal, only, where,
        });
        const selected = where.length ? 'selected ' : '';
        process.stdout.write(`${r.done}/${r.total} ${selected}runs complete, ${r.failed} failed, ${r.unfinished} unfinished (${r.launched} launched this time)\n`);
        // A scheduler's task (--only) writes the summary once every run of the sweep is complete: the last one does.
        if (!only || expandRuns(cfg).every((x) => isDone(runState(path.resolve(out), x.id).status))) {
          const s = await writeSweepReport(cfg, out);
          process.stdout.write(`summary ${path.join(out, 'summary.json')}, report ${path.join(out, 'report', 'index.html')}\n`);
          printSummary(s, compare);
        }
        if (r.unfinished > 0) {
          process.stdout.write(`run the same command again to continue\n`);
          process.exitCode = EXIT_UNFINISHED;
        } else if (r.failed > 0) {
          process.exitCode = EXIT_FAILED_RUNS;
        }
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
