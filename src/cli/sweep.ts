/** `mimetic sweep`: a grid of training runs (child `mimetic train` processes), resumable, with a summary report. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { BACKENDS } from '../model/backend.js';
import { writeSweepReport } from '../train/sweep-report.js';
import { expandRuns, parseRunFilters, parseSweepConfig, runSweep } from '../train/sweep.js';
import { UserError } from '../util/errors.js';
import { checkTrainOptions, register as registerTrain } from './train.js';

/** Exit code of a sweep stopped (slice over, or a signal) with runs left: run it again to continue. */
export const EXIT_UNFINISHED = 75;
/** Exit code when every run ended but some failed. */
export const EXIT_FAILED_RUNS = 3;

/** The option names `mimetic train` accepts (commander attribute names), read from the command itself. */
function trainOptionNames(): Set<string> {
  const p = new Command();
  registerTrain(p);
  const t = p.commands.find((c) => c.name() === 'train')!;
  return new Set(t.options.map((o) => o.attributeName()));
}

export function register(program: Command): void {
  program
    .command('sweep')
    .description(`run a grid of training runs (init × lr × seed …) from a JSON config; resumable, with summary.json and an HTML report (exit 0: all runs complete; ${EXIT_UNFINISHED}: stopped with runs left, run it again; ${EXIT_FAILED_RUNS}: some runs failed)`)
    .argument('<config>', 'sweep config JSON: {"name", "description"?, "base": {train options}, "grid": {option: [values]}, "variants"?: [{"name"?, options…}]}')
    .option('--out <dir>', 'sweep folder (default runs/<name>)')
    .option('--parallel <n>', 'runs at once per GPU (or in all without --gpus)', '1')
    .option('--gpus <list>', 'GPU indices to spread runs over, e.g. 0,1,2,3 (passed to each child as MIMETIC_GPU / CUDA_VISIBLE_DEVICES)')
    .option('--slice-minutes <m>', `stop launching after m minutes and stop running children at their next step (they checkpoint); exit ${EXIT_UNFINISHED} if runs are left`)
    .option('--backend <name>', `backend for every run: ${BACKENDS.join('|')} (default: the config's, else auto)`)
    .option('--retry-failed', 'run failed runs again')
    .option('--only <key=values>', 'run only the runs whose option (or variant name: variant=…) is one of the comma-separated values; repeat to AND several, e.g. --only variant=mamba2-default,mamba2-mimetic --only lr=0.001 (the summary still covers every run)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--report-only', 'only rebuild summary.json and the report from the run folders')
    .action(async (configFile: string, o: Record<string, unknown>) => {
      if (!fs.existsSync(configFile)) throw new UserError(`${configFile}: no such file; give a sweep config JSON (see experiments/)`);
      let raw: unknown;
      try {
        raw = JSON.parse(fs.readFileSync(configFile, 'utf8'));
      } catch (err) {
        throw new UserError(`${configFile}: not valid JSON (${(err as Error).message}); fix the file`);
      }
      const cfg = parseSweepConfig(raw, configFile, trainOptionNames());
      const out = o.out === undefined ? path.join('runs', cfg.name) : String(o.out);
      const only = parseRunFilters(o.only as string[], expandRuns(cfg));
      if (o.reportOnly) {
        if (!fs.existsSync(out)) throw new UserError(`--out ${out}: no such sweep folder; run the sweep first (or give --out)`);
        const s = await writeSweepReport(cfg, out);
        process.stdout.write(`summary ${path.join(out, 'summary.json')}, report ${path.join(out, 'report', 'index.html')} (${s.counts.finished + s.counts['target-reached']}/${s.runs.length} runs complete)\n`);
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
      let gpus: number[] | null = null;
      if (o.gpus !== undefined) {
        gpus = String(o.gpus).split(',').map((x) => x.trim()).filter(Boolean).map((x) => {
          const n = Number(x);
          if (!Number.isSafeInteger(n) || n < 0) throw new UserError(`--gpus: '${x}' is not a GPU index (0, 1, …)`);
          return n;
        });
        if (!gpus.length || new Set(gpus).size !== gpus.length) throw new UserError(`--gpus: '${String(o.gpus)}' must list distinct GPU indices, e.g. 0,1`);
      }
      let slice: number | null = null;
      if (o.sliceMinutes !== undefined) {
        slice = Number(o.sliceMinutes);
        if (!Number.isFinite(slice) || slice < 0) throw new UserError(`--slice-minutes: '${String(o.sliceMinutes)}' must be a number of minutes ≥ 0`);
      }
      if (o.backend !== undefined && !(BACKENDS as readonly string[]).includes(String(o.backend))) throw new UserError(`--backend: unknown backend '${String(o.backend)}'; choose ${BACKENDS.join(', ')}`);
      const ac = new AbortController();
      const onSignal = () => {
        if (!ac.signal.aborted) process.stderr.write('\nmimetic: sweep interrupted: running children checkpoint and stop; the next sweep resumes them\n');
        ac.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const r = await runSweep(cfg, {
          out, parallel, gpus, sliceMinutes: slice, backend: o.backend === undefined ? undefined : String(o.backend), retryFailed: !!o.retryFailed, signal: ac.signal, only,
        });
        await writeSweepReport(cfg, out);
        process.stdout.write(`${r.done}/${r.total} ${only.length ? 'selected ' : ''}runs complete, ${r.failed} failed, ${r.unfinished} unfinished (${r.launched} launched this time)\nsummary ${path.join(out, 'summary.json')}, report ${path.join(out, 'report', 'index.html')}\n`);
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
