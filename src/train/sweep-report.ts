/**
 * A sweep's summary.json and HTML report, rebuilt from the run folders alone (metrics.jsonl and
 * checkpoints), so `--report-only` and a finished sweep give the same result.
 *
 * Aggregation: a group is the runs that differ only in their seed (init label × lr). Only
 * completed runs (finished or target reached) count; mean and sample standard deviation (n − 1;
 * 0 for one run) over their final evaluation. The best lr of an init is the lr whose group has the
 * highest mean final accuracy averaged over all evaluation settings (ties: the first lr listed).
 * Copy runs also get their generalisation lengths (tasks/common.ts) from the final evaluation, and
 * groups the per-position curves of the final evaluation (mean ± std over seeds, from metrics.jsonl).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { escapeHtml as e } from '../render/escape.js';
import { renderBandChart, type BandSeries } from '../render/plot.js';
import { writeFileAtomic } from '../util/atomic.js';
import { type GenLengths, GEN_THRESHOLDS, generalisationLengths } from '../tasks/common.js';
import { MEASURE_NAME, accuracyByLength, evalTaskOf, measuresOf } from './figures.js';
import { type MetricsLine, readMetrics } from './metrics.js';
import { type RunSpec, type RunStatus, type SweepConfig, expandRuns, isDone, runState } from './sweep.js';
import { DEFAULT_LR, METRICS_FILE } from './trainer.js';

export interface EvalPoint { accuracy: number; length: number; size: number; train: boolean; charAccuracy?: number }

export interface RunSummary {
  id: string;
  options: RunSpec['options'];
  label: string;
  lr: number | null;
  seed: number | null;
  status: RunStatus;
  /** Last checkpointed step, and the run's total. */
  step: number;
  steps: number | null;
  trainSeconds: number | null;
  /** Final evaluation (the last one in metrics.jsonl up to the checkpointed step). */
  finalStep: number | null;
  final: Record<string, EvalPoint>;
  /** Best accuracy seen per setting, over all evaluations. */
  best: Record<string, number>;
  /** Copy: generalisation lengths of the final evaluation; null for other tasks or without one. */
  gen: GenLengths | null;
  /** LM: held-out bits per byte at each evaluation step (up to the checkpointed step). */
  heldout?: { step: number; bpb: number }[];
  error?: string;
}

export interface Stat { mean: number; std: number; n: number }

/** A curve over positions: mean and sample std over seeds at each position (rounded to 1e-4). */
export interface CurveStat { mean: number[]; std: number[]; n: number }

export interface GroupPoint extends Stat {
  length: number;
  size: number;
  train: boolean;
  /** Copy: character accuracy over seeds. */
  charAccuracy?: Stat;
  /** Accuracy at each scored position (copy: character i; MQAR: query i), final evaluation. */
  perPosition?: CurveStat;
  /** Copy: fraction of strings right through character i. */
  prefix?: CurveStat;
}

export interface GroupSummary {
  group: string;
  label: string;
  lr: number | null;
  runs: string[];
  /** Completed runs aggregated. */
  n: number;
  final: Record<string, GroupPoint>;
  best: Record<string, Stat>;
  /** Copy: generalisation lengths over seeds (0 for a run where no length reaches the threshold). */
  gen: { string: Stat; char: Stat } | null;
  /** Mean over settings of the final mean accuracy (the best-lr criterion); null without runs. */
  meanAccuracy: number | null;
  /** LM: held-out bits per byte over seeds at each evaluation step that every completed run has. */
  heldout?: HeldoutSeries;
}

/** Held-out bits per byte against step, mean ± sample std over a group's runs (rounded to 1e-4). */
export interface HeldoutSeries { steps: number[]; bpb: Stat[] }

/** The steps every run evaluated, with the mean ± std of their bits per byte there; null without runs or common steps. */
export function heldoutSeries(runs: { step: number; bpb: number }[][]): HeldoutSeries | null {
  if (!runs.length || runs.some((r) => !r.length)) return null;
  const at = runs.map((r) => new Map(r.map((x) => [x.step, x.bpb])));
  const steps = [...at[0]!.keys()].filter((st) => at.every((m) => m.has(st))).sort((a, b) => a - b);
  if (!steps.length) return null;
  const bpb = steps.map((st) => { const m = meanStd(at.map((x) => x.get(st)!)); return { mean: round4(m.mean), std: round4(m.std), n: m.n }; });
  return { steps, bpb };
}

export interface SweepSummary {
  version: 1;
  name: string;
  description?: string;
  task: string;
  created: string;
  counts: Record<RunStatus, number>;
  complete: boolean;
  runs: RunSummary[];
  groups: GroupSummary[];
  bestLr: Record<string, { lr: number | null; group: string; meanAccuracy: number | null }>;
  notes: string[];
}

export function meanStd(xs: number[]): Stat {
  const n = xs.length;
  if (!n) return { mean: NaN, std: NaN, n: 0 };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}

function runMetrics(sweepDir: string, id: string, upTo: number): MetricsLine[] {
  // A resumed run rewrites lines after its checkpoint; a killed one may have lines past it.
  return readMetrics(path.join(sweepDir, id, METRICS_FILE)).filter((m) => m.step <= upTo);
}

type Curves = Record<string, { perPosition?: number[]; prefix?: number[] }>;

function summarizeRun(sweepDir: string, r: RunSpec, task: string): { run: RunSummary; curves: Curves } {
  const st = runState(sweepDir, r.id);
  const ms = runMetrics(sweepDir, r.id, st.step);
  const evals = ms.filter((m) => m.eval);
  const last = evals.at(-1);
  const final: Record<string, EvalPoint> = {};
  const best: Record<string, number> = {};
  const curves: Curves = {};
  if (last) {
    for (const [k, v] of Object.entries(last.eval!)) {
      final[k] = { accuracy: v.accuracy, length: v.length, size: v.size, train: v.train, ...(v.charAccuracy !== undefined ? { charAccuracy: v.charAccuracy } : {}) };
      curves[k] = { perPosition: v.perPosition, prefix: v.prefix };
    }
  }
  for (const m of evals) for (const [k, v] of Object.entries(m.eval!)) best[k] = Math.max(best[k] ?? -Infinity, v.accuracy);
  const gen = task === 'copy' && last ? generalisationLengths(Object.values(final)) : null;
  const run: RunSummary = {
    id: r.id, options: r.options, label: r.label, lr: r.lr, seed: r.seed, status: st.status, step: st.step, steps: st.steps,
    trainSeconds: st.trainSeconds, finalStep: last?.step ?? null, final, best, gen,
  };
  const held = ms.filter((m) => m.heldout && Number.isFinite(m.heldout.bpb)).map((m) => ({ step: m.step, bpb: m.heldout!.bpb }));
  if (held.length) run.heldout = held;
  if (st.error) run.error = st.error;
  return { run, curves };
}

const round4 = (x: number) => Math.round(x * 1e4) / 1e4;

/** Mean ± std at each position over curves of equal length (none when a run lacks the curve). */
export function curveStat(curves: (number[] | undefined)[]): CurveStat | undefined {
  if (!curves.length || curves.some((c) => !c || c.length !== curves[0]!.length)) return undefined;
  const st = curves[0]!.map((_, i) => meanStd(curves.map((c) => c![i]!)));
  return { mean: st.map((x) => round4(x.mean)), std: st.map((x) => round4(x.std)), n: curves.length };
}

export function summarizeSweep(cfg: SweepConfig, sweepDir: string): SweepSummary {
  const specs = expandRuns(cfg);
  const task = String(cfg.base.task ?? specs[0]?.options.task ?? '');
  const summarized = specs.map((r) => summarizeRun(sweepDir, r, task));
  const runs = summarized.map((x) => x.run);
  const curvesOf = new Map(summarized.map((x) => [x.run.id, x.curves]));
  const counts: Record<RunStatus, number> = { pending: 0, partial: 0, finished: 0, 'target-reached': 0, failed: 0 };
  for (const r of runs) counts[r.status]++;
  const groups: GroupSummary[] = [];
  const byGroup = new Map<string, RunSpec[]>();
  for (const s of specs) byGroup.set(s.group, [...(byGroup.get(s.group) ?? []), s]);
  for (const [g, members] of byGroup) {
    const done = runs.filter((r) => members.some((m) => m.id === r.id) && isDone(r.status) && Object.keys(r.final).length);
    const keys = done.length ? Object.keys(done[0]!.final).filter((k) => done.every((r) => k in r.final)) : [];
    const final: GroupSummary['final'] = {};
    const best: GroupSummary['best'] = {};
    for (const k of keys) {
      const p = done[0]!.final[k]!;
      const point: GroupPoint = { ...meanStd(done.map((r) => r.final[k]!.accuracy)), length: p.length, size: p.size, train: p.train };
      if (done.every((r) => r.final[k]!.charAccuracy !== undefined)) point.charAccuracy = meanStd(done.map((r) => r.final[k]!.charAccuracy!));
      const perPosition = curveStat(done.map((r) => curvesOf.get(r.id)![k]?.perPosition));
      if (perPosition) point.perPosition = perPosition;
      const prefix = curveStat(done.map((r) => curvesOf.get(r.id)![k]?.prefix));
      if (prefix) point.prefix = prefix;
      final[k] = point;
      best[k] = meanStd(done.map((r) => r.best[k]!));
    }
    const meanAccuracy = keys.length ? keys.reduce((a, k) => a + final[k]!.mean, 0) / keys.length : null;
    const gen = task === 'copy' && done.length ? { string: meanStd(done.map((r) => r.gen!.string)), char: meanStd(done.map((r) => r.gen!.char)) } : null;
    const group: GroupSummary = { group: g, label: members[0]!.label, lr: members[0]!.lr, runs: members.map((m) => m.id), n: done.length, final, best, gen, meanAccuracy };
    const doneAll = runs.filter((r) => members.some((m) => m.id === r.id) && isDone(r.status));
    const held = doneAll.length && doneAll.every((r) => r.heldout) ? heldoutSeries(doneAll.map((r) => r.heldout!)) : null;
    if (held) group.heldout = held;
    groups.push(group);
  }
  const bestLr: SweepSummary['bestLr'] = {};
  for (const g of groups) {
    const cur = bestLr[g.label];
    if (!cur || (g.meanAccuracy !== null && (cur.meanAccuracy === null || g.meanAccuracy > cur.meanAccuracy))) bestLr[g.label] = { lr: g.lr, group: g.group, meanAccuracy: g.meanAccuracy };
  }
  const out: SweepSummary = {
    version: 1, name: cfg.name, task, created: new Date().toISOString(), counts,
    complete: counts.finished + counts['target-reached'] === runs.length, runs, groups, bestLr,
    notes: [
      'final: the last evaluation of each run; best: the highest accuracy over its evaluations',
      'groups: runs differing only in seed; only finished (or target-reached) runs are aggregated; std is the sample standard deviation (n-1), 0 for a single run',
      'bestLr: per init, the lr whose group has the highest mean final accuracy averaged over all evaluation settings',
      ...(task === 'copy' ? [`gen (copy): the longest evaluated string length with whole-string accuracy >= ${GEN_THRESHOLDS.string} (string) and with character accuracy >= ${GEN_THRESHOLDS.char} (char) at the final evaluation; 0 when no length reaches it`] : []),
      ...(task === 'lm' ? ['heldout (lm): held-out bits per byte at each evaluation step; per group, mean and std over the completed runs at the steps all of them evaluated, rounded to 1e-4'] : []),
      'perPosition: accuracy at each scored position of the final evaluation (copy: character i of the copied string; mqar: the i-th query); prefix (copy): fraction of strings right through character i; mean and std over seeds, rounded to 1e-4',
    ],
  };
  if (cfg.description !== undefined) out.description = cfg.description;
  return out;
}

/** Moving average over `w` points (for readable loss curves). */
function smooth(ys: number[], w: number): number[] {
  if (w <= 1) return ys;
  const out: number[] = [];
  let acc = 0;
  for (let i = 0; i < ys.length; i++) {
    acc += ys[i]!;
    if (i >= w) acc -= ys[i - w]!;
    out.push(acc / Math.min(i + 1, w));
  }
  return out;
}

function thinIdx(n: number, k: number): number[] {
  if (n <= k) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: k }, (_, i) => Math.floor((i * (n - 1)) / (k - 1)));
}

/** Mean (over the group's completed runs) training-loss curve, smoothed and thinned. */
function groupLoss(sweepDir: string, s: SweepSummary, g: GroupSummary): { x: number[]; y: number[]; window: number } | null {
  const rs = s.runs.filter((r) => g.runs.includes(r.id) && (isDone(r.status) || r.status === 'partial'));
  if (!rs.length) return null;
  const curves = rs.map((r) => new Map(runMetrics(sweepDir, r.id, r.step).filter((m) => Number.isFinite(m.loss)).map((m) => [m.step, m.loss])));
  const steps = [...curves[0]!.keys()].filter((st) => curves.every((c) => c.has(st))).sort((a, b) => a - b);
  if (!steps.length) return null;
  const mean = steps.map((st) => curves.reduce((a, c) => a + c.get(st)!, 0) / curves.length);
  const window = Math.max(1, Math.round(steps.length / 50));
  const sm = smooth(mean, window);
  const idx = thinIdx(steps.length, 400);
  return { x: idx.map((i) => steps[i]!), y: idx.map((i) => sm[i]!), window };
}

const fmtAcc = (st: Stat | undefined) => (st && st.n ? `${st.mean.toFixed(3)} ± ${st.std.toFixed(3)}` : '—');
/** A group's cell: string (or query) accuracy, and the character accuracy under it for copy. */
const fmtCell = (p: GroupPoint | undefined) => `${fmtAcc(p)}${p?.charAccuracy ? `<br><small>char ${fmtAcc(p.charAccuracy)}</small>` : ''}`;
const fmtGen = (g: GroupSummary) => (g.gen && g.gen.string.n ? `<td class="n">${g.gen.string.mean.toFixed(1)} ± ${g.gen.string.std.toFixed(1)}</td><td class="n">${g.gen.char.mean.toFixed(1)} ± ${g.gen.char.std.toFixed(1)}</td>` : '<td class="n">—</td><td class="n">—</td>');
/** A run without --lr trains at mimetic train's default: say which value that is. */
const fmtLr = (lr: number | null) => (lr === null ? `${DEFAULT_LR} (train's default)` : String(lr));

/** Write summary.json and report/ (index.html + PNGs) into the sweep folder. */
export async function writeSweepReport(cfg: SweepConfig, sweepDir: string): Promise<SweepSummary> {
  const s = summarizeSweep(cfg, sweepDir);
  writeFileAtomic(path.join(sweepDir, 'summary.json'), JSON.stringify(s, null, 2) + '\n');
  const rep = path.join(sweepDir, 'report');
  fs.mkdirSync(rep, { recursive: true });
  const labels = Object.keys(s.bestLr);
  const copy = s.task === 'copy';
  const bestGroups = labels.map((l) => s.groups.find((g) => g.group === s.bestLr[l]!.group)!);
  // "Best lr" only means something when the sweep tries more than one.
  const lrVaries = new Set(s.groups.map((g) => g.lr)).size > 1;
  const atLr = lrVaries ? 'best lr per init' : `lr ${fmtLr(s.groups[0]?.lr ?? null)}`;
  const imgs: string[] = [];
  const figure = (file: string, alt: string, caption: string) => `<figure class="chart"><img src="${e(file)}" alt="${e(alt)}"><figcaption>${e(caption)}</figcaption></figure>`;

  const et = evalTaskOf(s); // a language model's --eval-tasks evaluations: figures of their task
  for (const m of measuresOf(et)) {
    const accSeries: BandSeries[] = [];
    for (const g of bestGroups) {
      const a = g.n ? accuracyByLength(g, et, m) : null;
      if (a) accSeries.push({ name: `${g.label} (lr ${fmtLr(g.lr)})`, ...a });
    }
    if (!accSeries.length) continue;
    // The first measure keeps the file name older reports (and the README) link to.
    const file = m === 'char' ? 'char-accuracy-vs-length.png' : 'accuracy-vs-length.png';
    writeFileAtomic(path.join(rep, file), await renderBandChart({
      series: accSeries, title: `Final ${MEASURE_NAME[m]} vs evaluation length (mean ± std over seeds, ${atLr})`,
      xLabel: et === 'copy' ? 'string length' : 'sequence length (mean over kv-pair settings)', yLabel: MEASURE_NAME[m], yRange: [0, 1],
    }));
    imgs.push(figure(file, `${MEASURE_NAME[m]} against evaluation length`, `One line per init${lrVaries ? ' at its best lr' : ''}; the band is ± one sample standard deviation over seeds.`));
  }
  const lossSeries: BandSeries[] = [];
  let win = 1;
  for (const g of bestGroups) {
    const c = groupLoss(sweepDir, s, g);
    if (c) { lossSeries.push({ name: `${g.label} (lr ${fmtLr(g.lr)})`, x: c.x, y: c.y }); win = Math.max(win, c.window); }
  }
  if (lossSeries.length) {
    writeFileAtomic(path.join(rep, 'loss.png'), await renderBandChart({ series: lossSeries, title: `Training loss (mean over seeds, ${atLr})`, xLabel: 'step', yLabel: 'loss', markers: false }));
    imgs.push(figure('loss.png', 'training loss curves', `Mean over seeds of the training loss, moving average over ${win} step${win > 1 ? 's' : ''}.`));
  }
  const heldSeries: BandSeries[] = bestGroups.filter((g) => g.heldout).map((g) => ({ name: `${g.label} (lr ${fmtLr(g.lr)})`, x: g.heldout!.steps, y: g.heldout!.bpb.map((b) => b.mean), err: g.heldout!.bpb.map((b) => b.std) }));
  if (heldSeries.length) {
    writeFileAtomic(path.join(rep, 'heldout-bpb.png'), await renderBandChart({ series: heldSeries, title: `Held-out bits per byte (mean ± std over seeds, ${atLr})`, xLabel: 'step', yLabel: 'bits per byte' }));
    imgs.push(figure('heldout-bpb.png', 'held-out bits per byte against step', 'One line per init; the band is ± one sample standard deviation over seeds (summary.json groups[].heldout).'));
  }
  // Per init: loss curves at every lr.
  const perInit: string[] = [];
  for (const [i, l] of labels.entries()) {
    const series: BandSeries[] = [];
    for (const g of s.groups.filter((x) => x.label === l)) {
      const c = groupLoss(sweepDir, s, g);
      if (c) series.push({ name: `lr ${fmtLr(g.lr)}`, x: c.x, y: c.y });
    }
    if (series.length < 2) continue;
    const file = `loss-${String(i).padStart(2, '0')}.png`;
    writeFileAtomic(path.join(rep, file), await renderBandChart({ series, title: `Training loss by lr: ${l}`, xLabel: 'step', yLabel: 'loss', markers: false }));
    perInit.push(figure(file, `training loss by lr for ${l}`, `${l}: mean over seeds at each lr.`));
  }

  // Evaluation settings in order of sequence length, then size (kv pairs).
  const where = new Map<string, [number, number]>();
  for (const r of s.runs) for (const [k, v] of Object.entries(r.final)) where.set(k, [v.length, v.size]);
  const keys = [...where.keys()].sort((a, b) => where.get(a)![0] - where.get(b)![0] || where.get(a)![1] - where.get(b)![1]);
  const bestRows = labels.map((l) => {
    const b = s.bestLr[l]!;
    const g = s.groups.find((x) => x.group === b.group)!;
    return `<tr><td>${e(l)}</td><td class="n">${e(fmtLr(b.lr))}</td><td class="n">${g.n}/${g.runs.length}</td>${copy ? fmtGen(g) : ''}${keys.map((k) => `<td class="n">${fmtCell(g.final[k])}</td>`).join('')}</tr>`;
  }).join('\n');
  const groupRows = s.groups.map((g) => `<tr><td>${e(g.label)}</td><td class="n">${e(fmtLr(g.lr))}</td><td class="n">${g.n}/${g.runs.length}</td><td class="n">${g.meanAccuracy === null ? '—' : g.meanAccuracy.toFixed(3)}</td>${copy ? fmtGen(g) : ''}${keys.map((k) => `<td class="n">${fmtCell(g.final[k])}</td>`).join('')}</tr>`).join('\n');
  const runRows = s.runs.map((r) => {
    const link = fs.existsSync(path.join(sweepDir, r.id, 'report.html')) ? `<a href="../${encodeURIComponent(r.id)}/report.html">${e(r.id)}</a>` : e(r.id);
    return `<tr><td>${link}</td><td>${e(r.status)}${r.error ? `: ${e(r.error)}` : ''}</td><td class="n">${r.step}/${r.steps ?? '?'}</td><td class="n">${r.trainSeconds === null ? '—' : r.trainSeconds.toFixed(0)}</td>${copy ? `<td class="n">${r.gen ? `${r.gen.string} / ${r.gen.char}` : '—'}</td>` : ''}${keys.map((k) => `<td class="n">${r.final[k] ? `${r.final[k]!.accuracy.toFixed(3)}${r.final[k]!.charAccuracy !== undefined ? `<br><small>char ${r.final[k]!.charAccuracy!.toFixed(3)}</small>` : ''}` : '—'}</td>`).join('')}</tr>`;
  }).join('\n');
  const th = keys.map((k) => `<th class="n">${e(k)}</th>`).join('');
  const genTh = copy ? `<th class="n">gen len, string acc ≥ ${GEN_THRESHOLDS.string}</th><th class="n">gen len, char acc ≥ ${GEN_THRESHOLDS.char}</th>` : '';
  const c = s.counts;
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sweep ${e(s.name)}</title>
<style>body{font:15px/1.5 "DejaVu Sans",Arial,sans-serif;color:#222;margin:2em auto;max-width:1280px;padding:0 1em}table{border-collapse:collapse;font-size:14px;margin:6px 0 18px}th,td{padding:3px 9px;border-bottom:1px solid #eee;text-align:left}th{background:#f3f5f7}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:10px 0}figcaption{font-size:13px;color:#555}img{max-width:100%}.note{font-size:13px;color:#555;max-width:1000px}</style>
</head><body>
<h1>Sweep ${e(s.name)}</h1>
${s.description ? `<p class="note">${e(s.description)}</p>` : ''}
<p>${s.runs.length} runs: ${c.finished + c['target-reached']} complete${c['target-reached'] ? ` (${c['target-reached']} stopped at the target accuracy)` : ''}, ${c.partial} partial, ${c.pending} not started, ${c.failed} failed. ${s.complete ? '' : '<b>The sweep is not complete: the numbers below cover the completed runs only.</b>'}</p>
<h2>${lrVaries ? 'Best lr per init' : 'Results per init'}</h2>
<table><tr><th>init</th><th class="n">${lrVaries ? 'best lr' : 'lr'}</th><th class="n">runs</th>${genTh}${th}</tr>
${bestRows}</table>
<p class="note">Final accuracy (copy: whole-string, with the character accuracy under it), mean ± sample std over seeds.${lrVaries ? ' The best lr maximises the mean final accuracy averaged over all evaluation settings.' : ' Every run used the same lr (the sweep does not vary it).'}${copy ? ` Generalisation length: the longest evaluated string length whose final string accuracy is ≥ ${GEN_THRESHOLDS.string} (or character accuracy ≥ ${GEN_THRESHOLDS.char}); 0 when none. The experiments page (mimetic experiments-report) adds per-position curves.` : ''}</p>
${imgs.join('\n')}
${perInit.length ? `<h2>Loss by learning rate</h2>\n${perInit.join('\n')}` : ''}
<h2>All groups</h2>
<table><tr><th>init</th><th class="n">lr</th><th class="n">runs</th><th class="n">mean acc</th>${genTh}${th}</tr>
${groupRows}</table>
<h2>Runs</h2>
<table><tr><th>run</th><th>status</th><th class="n">step</th><th class="n">train s</th>${copy ? '<th class="n">gen len string / char</th>' : ''}${th}</tr>
${runRows}</table>
<p class="note">Numbers: <a href="../summary.json">summary.json</a>; configuration: <a href="../sweep.json">sweep.json</a>; logs in <code>logs/</code>.</p>
</body></html>
`;
  writeFileAtomic(path.join(rep, 'index.html'), html);
  return s;
}
