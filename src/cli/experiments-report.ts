/** `mimetic experiments-report`: one page (HTML + PNGs + experiments.json) over several sweep folders. */
import * as path from 'node:path';
import type { Command } from 'commander';
import { writeExperimentsReport } from '../train/experiments-report.js';
import { UserError } from '../util/errors.js';

export function register(program: Command): void {
  program
    .command('experiments-report')
    .description('build one experiments page from several sweep folders (their summary.json): accuracy against length, generalisation lengths, state size, ablation, per-position curves')
    .argument('<sweep...>', 'sweep folders (each with the summary.json that mimetic sweep writes)')
    .requiredOption('--out <dir>', 'page folder to write (replaced if it exists): index.html, PNGs, experiments.json')
    .option('--title <text>', 'page title', 'Experiments')
    .action(async (dirs: string[], o: { out: string; title: string }) => {
      const out = path.resolve(o.out);
      for (const d of dirs) if (path.resolve(d) === out) throw new UserError(`--out ${o.out} is one of the sweep folders; write the page elsewhere`);
      const data = await writeExperimentsReport(dirs, o.out, o.title);
      process.stdout.write(`${path.join(o.out, 'index.html')}: ${data.sweeps.length} sweep${data.sweeps.length === 1 ? '' : 's'}, ${data.sweeps.reduce((a, s) => a + s.figures.length, 0)} figures (numbers in experiments.json)\n`);
    });
}
