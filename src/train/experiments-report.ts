/**
 * One experiments page over several sweeps: a folder with index.html, its PNGs and
 * experiments.json (every number plotted or tabled), built from each sweep folder's summary.json
 * alone. Per sweep: accuracy against evaluation length (copy: string and character accuracy),
 * generalisation lengths, generalisation length against log2 N when the sweep varies the state
 * size, the mimetic-parts ablation when it varies the parts, and per-position accuracy curves.
 * Every band and error bar is ± one sample standard deviation over seeds.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { escapeHtml as e } from '../render/escape.js';
import { renderBandChart, renderBarChart, type BandSeries } from '../render/plot.js';
import { GEN_THRESHOLDS } from '../tasks/common.js';
import { writeDirAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import {
  MEASURE_NAME, ablation, accuracyByLength, bestGroups, evalTaskOf, longestMqarKey, measuresOf, mimeticSubset, groupOptions, pointAt, positionSizes,
  stateSizeSeries, trainedSize,
} from './figures.js';
import type { GroupSummary, Stat, SweepSummary } from './sweep-report.js';

/** A figure as plotted: its file and the series drawn (y ± err). */
export interface FigureData {
  file: string;
  title: string;
  kind: 'band' | 'bar';
  xLabel: string;
  yLabel: string;
  series: { name: string; x: (number | string)[]; y: number[]; err: number[] }[];
}

export interface SweepSection {
  dir: string;
  name: string;
  task: string;
  counts: SweepSummary['counts'];
  complete: boolean;
  figures: FigureData[];
  /** Copy: generalisation lengths of every group (all lrs). */
  gen: { group: string; label: string; lr: number | null; n: number; string: Stat; char: Stat }[];
  /** LM: the series reports (report RUN --steps all) found in the sweep folder, their heatmaps copied in. */
  series?: { name: string; index: string; heatmaps: number }[];
}

/** The maskOnes, cbIdentity, lookbehind and mimetic heatmaps shown per series report (the rest are linked). */
const SERIES_HEATMAPS = ['mimetic', 'maskOnes', 'cbIdentity', 'lookbehind'];

/**
 * Series reports (`mimetic report RUN --steps all --out SWEEP/series-*`, as scripts/gpu-lm.sh writes
 * them) inside a sweep folder: their index.html and the headline heatmaps that exist.
 */
export function seriesReports(dir: string): { name: string; index: string; heatmaps: string[] }[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((n) => n.startsWith('series') && fs.existsSync(path.join(dir, n, 'index.html'))).sort().map((n) => ({
    name: n, index: path.resolve(dir, n, 'index.html'),
    heatmaps: SERIES_HEATMAPS.map((k) => path.join(dir, n, 'img', `${k}-heatmap.png`)).filter((f) => fs.existsSync(f)),
  }));
}

export interface ExperimentsData { version: 1; created: string; sweeps: SweepSection[]; notes: string[] }

/** More series than this in one figure are unreadable: the figure then shows the headline groups. */
const MAX_SERIES = 12;

export function readSummary(dir: string): SweepSummary {
  const f = path.join(dir, 'summary.json');
  if (!fs.existsSync(f)) throw new UserError(`${dir}: no summary.json; give a sweep folder, or rebuild its summary with 'mimetic sweep CONFIG --out ${dir} --report-only'`);
  let s: SweepSummary;
  try {
    s = JSON.parse(fs.readFileSync(f, 'utf8')) as SweepSummary;
  } catch (err) {
    throw new UserError(`${f}: not valid JSON (${(err as Error).message}); rebuild it with 'mimetic sweep CONFIG --out ${dir} --report-only'`);
  }
  if (s.version !== 1 || !Array.isArray(s.groups) || !Array.isArray(s.runs)) throw new UserError(`${f}: not a sweep summary (version 1 with runs and groups); rebuild it with 'mimetic sweep CONFIG --out ${dir} --report-only'`);
  return s;
}

const fmtLr = (lr: number | null) => (lr === null ? 'default' : String(lr));
const seriesName = (g: GroupSummary) => `${g.label} (lr ${fmtLr(g.lr)})`;
const fmtStat = (st: Stat | undefined, d = 3) => (st && st.n ? `${st.mean.toFixed(d)} ± ${st.std.toFixed(d)}` : '—');
const fmtLen = (st: Stat | undefined) => (st && st.n ? `${st.mean.toFixed(1)} ± ${st.std.toFixed(1)}` : '—');

/** The groups a line figure shows: all at their best lr, or the default and full-mimetic ones when there are too many. */
function shown(s: SweepSummary): { groups: GroupSummary[]; note: string } {
  const gs = bestGroups(s);
  if (gs.length <= MAX_SERIES) return { groups: gs, note: '' };
  const head = gs.filter((g) => [0, 4].includes(mimeticSubset(groupOptions(s, g)).length));
  const groups = (head.length ? head : gs).slice(0, MAX_SERIES);
  return { groups, note: ` Shown: ${groups.length} of ${gs.length} inits (${head.length ? 'default and all mimetic parts' : 'the first ones'}); the tables have all.` };
}

export async function writeExperimentsReport(dirs: string[], out: string, title = 'Experiments'): Promise<ExperimentsData> {
  if (!dirs.length) throw new UserError('give at least one sweep folder');
  const summaries = dirs.map((d) => ({ dir: d, s: readSummary(d) }));
  const data: ExperimentsData = {
    version: 1, created: new Date().toISOString(), sweeps: [],
    notes: [
      'bands and error bars: ± one sample standard deviation over seeds (n-1); each init at its best lr (summary.json bestLr)',
      `generalisation length (copy): the longest evaluated string length with whole-string accuracy >= ${GEN_THRESHOLDS.string} (string) or character accuracy >= ${GEN_THRESHOLDS.char} (char); 0 when none`,
      'mqar accuracy against length: the query accuracy averaged over the kv-pair settings evaluated at that length',
    ],
  };
  const html: string[] = [];
  await writeDirAtomic(out, async (tmp) => {
    for (const [i, { dir, s }] of summaries.entries()) {
      const sec: SweepSection = { dir, name: s.name, task: s.task, counts: s.counts, complete: s.complete, figures: [], gen: [] };
      const pre = `s${String(i + 1).padStart(2, '0')}-`;
      const parts: string[] = [];
      const pair = async (figs: { file: string; title: string; xLabel: string; yLabel: string; series: BandSeries[]; yRange?: [number, number]; markers?: boolean }[], caption: string) => {
        const imgs: string[] = [];
        for (const f of figs) {
          if (!f.series.length) continue;
          const file = pre + f.file;
          fs.writeFileSync(path.join(tmp, file), await renderBandChart({ series: f.series, title: f.title, xLabel: f.xLabel, yLabel: f.yLabel, yRange: f.yRange, markers: f.markers }));
          sec.figures.push({ file, title: f.title, kind: 'band', xLabel: f.xLabel, yLabel: f.yLabel, series: f.series.map((x) => ({ name: x.name, x: x.x, y: x.y, err: x.err ?? x.y.map(() => 0) })) });
          imgs.push(`<img src="${e(file)}" alt="${e(f.title)}">`);
        }
        if (imgs.length) parts.push(`<figure><div class="row">${imgs.join('')}</div><figcaption>${e(caption)}</figcaption></figure>`);
      };
      const { groups: gs, note } = shown(s);
      const steps = [...new Set(s.runs.map((r) => r.steps).filter((x) => x !== null))].join(', ') || '?';
      const seeds = [...new Set(s.runs.map((r) => r.seed).filter((x) => x !== null))].length;
      const c = s.counts;
      parts.push(`<h2 id="${e(pre + s.name)}">${e(s.name)}</h2>`);
      if (s.description) parts.push(`<p class="note">${e(s.description)}</p>`);
      parts.push(`<p>${e(dir)}: ${s.runs.length} runs (${seeds} seed${seeds === 1 ? '' : 's'}, ${e(steps)} steps): ${c.finished + c['target-reached']} complete, ${c.partial} partial, ${c.pending} not started, ${c.failed} failed.${s.complete ? '' : ' <b>Not complete: the numbers cover the completed runs only.</b>'}</p>`);

      // 1. Accuracy against evaluation length, one panel per measure.
      const et = evalTaskOf(s); // a language model's --eval-tasks evaluations: figures of their task
      const xLabel = et === 'copy' ? 'string length' : 'sequence length';
      await pair(measuresOf(et).map((m) => ({
        file: `accuracy-${m}.png`, title: `${MEASURE_NAME[m]} vs evaluation length`, xLabel, yLabel: MEASURE_NAME[m], yRange: [0, 1] as [number, number],
        series: gs.flatMap((g) => { const a = accuracyByLength(g, et, m); return a ? [{ name: seriesName(g), ...a }] : []; }),
      })), `Final accuracy against evaluation length, mean ± std over seeds, each init at its best lr.${note}`);

      // 1b. Language modelling: held-out bits per byte against step, and the audit across training.
      if (s.task === 'lm') {
        await pair([{
          file: 'heldout-bpb.png', title: 'held-out bits per byte vs step', xLabel: 'step', yLabel: 'bits per byte', markers: true,
          series: gs.flatMap((g) => (g.heldout ? [{ name: seriesName(g), x: g.heldout.steps, y: g.heldout.bpb.map((b) => b.mean), err: g.heldout.bpb.map((b) => b.std) }] : [])),
        }], `Held-out bits per byte at each evaluation, mean ± std over seeds, each init at its best lr.${note}`);
        const rows = s.groups.filter((g) => g.heldout).map((g) => {
          const h = g.heldout!;
          const j = h.steps.length - 1;
          return `<tr><td>${e(g.label)}</td><td class="n">${e(fmtLr(g.lr))}</td><td class="n">${h.bpb[j]!.n}/${g.runs.length}</td><td class="n">${h.steps[0]}</td><td class="n">${fmtStat(h.bpb[0])}</td><td class="n">${h.steps[j]}</td><td class="n">${fmtStat(h.bpb[j])}</td></tr>`;
        }).join('\n');
        if (rows) parts.push(`<h3>Held-out bits per byte</h3><table><tr><th>init</th><th class="n">lr</th><th class="n">runs</th><th class="n">first eval step</th><th class="n">bpb</th><th class="n">last eval step</th><th class="n">bpb</th></tr>\n${rows}</table>`);
        const series = seriesReports(dir);
        if (series.length) {
          sec.series = [];
          const items: string[] = [];
          for (const [j, r] of series.entries()) {
            const imgs: string[] = [];
            for (const png of r.heatmaps) {
              const file = `${pre}series${j + 1}-${path.basename(png)}`;
              fs.copyFileSync(png, path.join(tmp, file));
              imgs.push(`<img src="${e(file)}" alt="${e(`${r.name}: ${path.basename(png, '.png')}`)}">`);
            }
            sec.series.push({ name: r.name, index: path.relative(path.resolve(out), r.index), heatmaps: imgs.length });
            items.push(`<h4>${e(r.name)}: <a href="${e(path.relative(path.resolve(out), r.index))}">the audit across training</a></h4>${imgs.length ? `<figure><div class="row">${imgs.join('')}</div><figcaption>Depth × training-step heatmaps of the layer scores (mimetic report RUN --steps all).</figcaption></figure>` : ''}`);
          }
          parts.push(`<h3>The audit across training</h3>${items.join('\n')}`);
        }
      }

      // 2. Generalisation lengths (copy).
      if (s.task === 'copy') {
        const t = trainedSize(s);
        const dbl = t === null ? null : 2 * t;
        for (const g of s.groups) if (g.gen && g.n) sec.gen.push({ group: g.group, label: g.label, lr: g.lr, n: g.n, string: g.gen.string, char: g.gen.char });
        const rows = s.groups.filter((g) => g.gen && g.n).map((g) => `<tr><td>${e(g.label)}</td><td class="n">${e(fmtLr(g.lr))}</td><td class="n">${g.n}/${g.runs.length}</td><td class="n">${fmtLen(g.gen!.string)}</td><td class="n">${fmtLen(g.gen!.char)}</td>`
          + `<td class="n">${t === null ? '—' : fmtStat(pointAt(g, t))}</td><td class="n">${dbl === null ? '—' : fmtStat(pointAt(g, dbl))}</td><td class="n">${dbl === null ? '—' : fmtStat(pointAt(g, dbl)?.charAccuracy)}</td></tr>`).join('\n');
        if (rows) {
          parts.push(`<h3>Generalisation length</h3><table><tr><th>init</th><th class="n">lr</th><th class="n">runs</th><th class="n">string acc ≥ ${GEN_THRESHOLDS.string}</th><th class="n">char acc ≥ ${GEN_THRESHOLDS.char}</th><th class="n">string acc, len ${t ?? '?'}</th><th class="n">string acc, len ${dbl ?? '?'}</th><th class="n">char acc, len ${dbl ?? '?'}</th></tr>\n${rows}</table>`);
          parts.push(`<p class="note">Generalisation length: the longest evaluated string length whose final accuracy reaches the threshold (0: none), mean ± std over seeds; accuracies likewise.</p>`);
        }
      }

      // 3. Generalisation length against log2 N.
      const st = stateSizeSeries(s);
      if (st) {
        parts.push('<h3>Generalisation length against state size</h3>');
        await pair((['string', 'char'] as const).map((m) => ({
          file: `gen-vs-state-${m}.png`, title: `generalisation length (${m === 'string' ? `string acc ≥ ${GEN_THRESHOLDS.string}` : `char acc ≥ ${GEN_THRESHOLDS.char}`}) vs log2 N`,
          xLabel: 'log2 state size N', yLabel: 'string length',
          series: st.map((x) => ({ name: x.name, x: x.x, y: x.gen[m].map((v) => v.mean), err: x.gen[m].map((v) => v.std) })),
        })), 'Each point: the group at its best lr, mean ± std over seeds.');
        const Ns = [...new Set(st.flatMap((x) => x.N))].sort((a, b) => a - b);
        parts.push(`<table><tr><th>init</th>${Ns.map((N) => `<th class="n">N ${N}: string / char</th>`).join('')}</tr>\n${st.map((x) => `<tr><td>${e(x.name)}</td>${Ns.map((N) => { const j = x.N.indexOf(N); return `<td class="n">${j < 0 ? '—' : `${fmtLen(x.gen.string[j])} / ${fmtLen(x.gen.char[j])}`}</td>`; }).join('')}</tr>`).join('\n')}</table>`);
      }

      // 4. Ablation over mimetic parts.
      const ab = ablation(s);
      if (ab) {
        const dl = ab.doubleSize;
        parts.push(`<h3>Ablation: mimetic parts</h3><table><tr><th>mimetic parts</th>${ab.facets.map((f) => `<th class="n">${e(f)}: runs</th><th class="n">string acc, len ${ab.trainedSize}</th><th class="n">char acc, len ${dl ?? '?'}</th><th class="n">gen len (string)</th><th class="n">gen len (char)</th>`).join('')}</tr>\n`
          + ab.rows.map((r) => `<tr><td>${e(r.name)}</td>${ab.facets.map((f) => { const c = r.cells[f]; return c ? `<td class="n">${c.n}</td><td class="n">${fmtStat(c.trained)}</td><td class="n">${fmtStat(c.double?.charAccuracy)}</td><td class="n">${fmtLen(c.gen?.string)}</td><td class="n">${fmtLen(c.gen?.char)}</td>` : '<td>—</td><td>—</td><td>—</td><td>—</td><td>—</td>'; }).join('')}</tr>`).join('\n') + '</table>');
        const imgs: string[] = [];
        const bars = [
          { file: 'ablation-string.png', title: `whole-string accuracy at length ${ab.trainedSize} (trained)`, yLabel: 'whole-string accuracy', pick: (c: (typeof ab.rows)[number]['cells'][string] | undefined) => c?.trained },
          { file: 'ablation-char.png', title: `character accuracy at length ${dl ?? '?'}`, yLabel: 'character accuracy', pick: (c: (typeof ab.rows)[number]['cells'][string] | undefined) => c?.double?.charAccuracy },
        ];
        for (const b of bars) {
          const series = ab.facets.map((f) => ({ name: f, x: ab.rows.map((r) => r.name), y: ab.rows.map((r) => b.pick(r.cells[f])?.mean ?? NaN), err: ab.rows.map((r) => b.pick(r.cells[f])?.std ?? 0) }));
          // Summaries from before character accuracy was recorded have nothing for the second chart.
          if (series.every((x) => x.y.every((y) => !Number.isFinite(y)))) continue;
          const file = pre + b.file;
          fs.writeFileSync(path.join(tmp, file), await renderBarChart({ categories: ab.rows.map((r) => r.name), series: series.map((x) => ({ name: x.name, values: x.y, err: x.err })), title: b.title, xLabel: '', yLabel: b.yLabel, yRange: [0, 1] }));
          sec.figures.push({ file, title: b.title, kind: 'bar', xLabel: 'mimetic parts', yLabel: b.yLabel, series });
          imgs.push(`<img src="${e(file)}" alt="${e(b.title)}">`);
        }
        parts.push(`<figure><div class="row">${imgs.join('')}</div><figcaption>Each bar: the subset at its best lr, mean ± std over seeds.</figcaption></figure>`);
      }

      // 5. Per-position accuracy.
      const posFigs: Parameters<typeof pair>[0] = [];
      if (et === 'copy') {
        for (const n of positionSizes(s)) {
          for (const [m, field, what] of [['char', 'perPosition', 'character accuracy at each position'], ['string', 'prefix', 'strings right through each position']] as const) {
            const series = gs.flatMap((g) => { const p = pointAt(g, n)?.[field]; return p ? [{ name: seriesName(g), x: p.mean.map((_, j) => j + 1), y: p.mean, err: p.std }] : []; });
            posFigs.push({ file: `position-${n}-${m}.png`, title: `length ${n}: ${what}`, xLabel: 'position in the copied string', yLabel: m === 'char' ? 'character accuracy' : 'fraction of strings', yRange: [0, 1], series, markers: false });
          }
        }
      } else {
        const k = longestMqarKey(s);
        if (k) {
          const series = gs.flatMap((g) => { const p = g.final[k]?.perPosition; return p ? [{ name: seriesName(g), x: p.mean.map((_, j) => j + 1), y: p.mean, err: p.std }] : []; });
          posFigs.push({ file: 'position-query.png', title: `${k}: accuracy of the i-th query`, xLabel: 'query (in sequence order)', yLabel: 'query accuracy', yRange: [0, 1], series, markers: false });
        }
      }
      if (posFigs.some((f) => f.series.length)) {
        parts.push('<h3>Per-position accuracy</h3>');
        for (let j = 0; j < posFigs.length; j += s.task === 'copy' ? 2 : 1) {
          await pair(posFigs.slice(j, j + (s.task === 'copy' ? 2 : 1)), s.task === 'copy'
            ? 'Left: fraction of strings with character i right (teacher forcing); right: fraction with characters 1..i all right (at the last position, string accuracy without the final dot). Mean ± std over seeds, final evaluation.' + note
            : 'Accuracy of the i-th query of an example, mean ± std over seeds, final evaluation.' + note);
        }
      }
      data.sweeps.push(sec);
      html.push(parts.join('\n'));
    }
    fs.writeFileSync(path.join(tmp, 'experiments.json'), JSON.stringify(data, null, 1) + '\n');
    const toc = summaries.map(({ s }, i) => `<li><a href="#${e(`s${String(i + 1).padStart(2, '0')}-${s.name}`)}">${e(s.name)}</a></li>`).join('');
    fs.writeFileSync(path.join(tmp, 'index.html'), `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${e(title)}</title>
<style>body{font:15px/1.5 "DejaVu Sans",Arial,sans-serif;color:#222;margin:2em auto;max-width:1600px;padding:0 1em}table{border-collapse:collapse;font-size:14px;margin:6px 0 18px}th,td{padding:3px 9px;border-bottom:1px solid #eee;text-align:left}th{background:#f3f5f7}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:10px 0}.row{display:flex;flex-wrap:wrap;gap:8px}figcaption{font-size:13px;color:#555}img{max-width:100%}.note{font-size:13px;color:#555;max-width:1100px}</style>
</head><body>
<h1>${e(title)}</h1>
<p class="note">${data.notes.map(e).join('. ')}. Numbers: <a href="experiments.json">experiments.json</a>. Built ${e(data.created)}.</p>
<ul>${toc}</ul>
${html.join('\n')}
</body></html>
`);
  }, { replace: true });
  return data;
}

