/** `mimetic report <checkpoint>`: audit a checkpoint and write an offline HTML/PNG report folder. */
import * as path from 'node:path';
import type { Command } from 'commander';
import { Checkpoint } from '../checkpoint/checkpoint.js';
import { resolveCheckpoint } from '../hub/resolve.js';
import { initBackend } from '../model/backend.js';
import { checkOutput, checkpointName, writeReport } from '../report/report.js';
import { layerProgress } from '../util/progress.js';
import { printable } from '../util/text.js';
import { nonFiniteWarning } from '../analysis/audit.js';
import { hubOptionsFrom } from './hub-options.js';
import { addGpuOption, applyGpuOption } from './gpu-option.js';
import { REFERENCE_NOTICE, addAuditOptions, auditSeriesFor, parseAuditOptions, scoreTable, type AuditCliOptions } from './score.js';
import { checkSeriesOutput, seriesTable, writeSeriesReport } from '../report/series.js';

/** reports/<name>, the name made safe as a folder name. */
export function defaultReportDir(arg: string): string {
  const name = checkpointName(arg).replace(/\.safetensors$/, '').replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'checkpoint';
  return path.join('reports', name);
}

/** `--steps`: the series folder (heatmaps depth × step, each layer against step) instead of one checkpoint's pages. */
async function reportSeriesCommand(arg: string, out: string, o: AuditCliOptions & { force?: boolean }): Promise<void> {
  checkSeriesOutput(out, Boolean(o.force));
  const { series, parsed, backend } = await auditSeriesFor(arg, o, false);
  if (series.nonFinite.length) process.stderr.write(`mimetic: warning: ${printable(`non-finite weights (those layers are unranked): ${series.nonFinite.join('; ')}`)}\n`);
  await writeSeriesReport(series, { out, force: o.force, source: arg, backend, probe: parsed.probe });
  process.stdout.write(`mimetic score per layer and step\n${seriesTable(series)}\nwrote ${path.join(out, 'index.html')} (${series.checkpoints.length} checkpoints, ${series.seconds.toFixed(1)} s)\n`);
}

export async function reportCommand(arg: string, o: AuditCliOptions & { out?: string; force?: boolean }): Promise<void> {
  const out = o.out ?? defaultReportDir(arg);
  if (o.steps !== undefined) {
    await applyGpuOption(o.gpu, o.backend);
    return reportSeriesCommand(arg, out, o);
  }
  // Refuse a foreign output folder before any download or computation.
  checkOutput(out, Boolean(o.force));
  await applyGpuOption(o.gpu, o.backend);
  const dir = await resolveCheckpoint(arg, hubOptionsFrom(o));
  const ckpt = Checkpoint.open(dir);
  try {
    const p = parseAuditOptions(o, ckpt);
    const backend = await initBackend(p.backend);
    const bar = layerProgress('report');
    const report = await writeReport(ckpt, {
      out, force: o.force, probe: p.probe, layers: p.layers, backend, source: arg, channelBlock: p.channelBlock, threads: p.threads,
      progress: (done, total, layer) => bar.update(done, total, layer),
      reference: o.reference !== false,
      onReference: () => { if (o.reference !== false) process.stderr.write(REFERENCE_NOTICE); },
    });
    bar.done();
    const nf = nonFiniteWarning({ layers: report.scores, nonFinite: report.nonFinite });
    if (nf) process.stderr.write(`mimetic: warning: ${printable(nf)}\n`);
    process.stdout.write(`${scoreTable(report.scores, Boolean(process.stdout.isTTY), ckpt.config.numLayers, report.reference ?? undefined)}\nwrote ${path.join(out, 'index.html')} (${report.layers.length} layer pages, ${report.seconds.toFixed(1)} s)\n`);
  } finally {
    ckpt.close();
  }
}

export function register(program: Command): void {
  const cmd = program.command('report').description('audit a checkpoint and write an HTML/PNG report folder (viewable offline)');
  addAuditOptions(cmd)
    .option('--out <dir>', 'output folder (default reports/<checkpoint name>)')
    .option('--force', 'replace the output folder even if it is not a mimetic report')
    .action(async (arg: string, o: AuditCliOptions & { out?: string; force?: boolean }) => {
      await reportCommand(arg, o);
    });
}
