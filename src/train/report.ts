/**
 * The run folder's small HTML report: loss curve, accuracy curves (copy: string and character),
 * the last accuracy table with the generalisation lengths, and the last evaluation's per-position curves.
 */
import * as path from 'node:path';
import { renderLineChart } from '../render/chart.js';
import { renderBandChart, type BandSeries } from '../render/plot.js';
import { escapeHtml } from '../render/escape.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { MetricsLine } from './metrics.js';
import type { TaskOptions } from '../tasks/index.js';
import type { InitRecord } from '../model/init.js';

/** Keep at most n points, evenly spaced (always the last one). */
function thin<T>(xs: T[], n: number): T[] {
  if (xs.length <= n) return xs;
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(xs[Math.floor((i * (xs.length - 1)) / (n - 1))]!);
  return out;
}

/** The task as a reader wants it in the run report (not JSON). */
export function taskFact(t: TaskOptions): string {
  const ev = t.evalLengths.length ? `; also evaluated at ${t.evalLengths.join(', ')}` : '';
  if (t.task === 'lm') return `language modelling on ${t.data}, windows of ${t.context} tokens${t.evalTasks.length ? `; also evaluated on ${t.evalTasks.join(', ')}` : ''}${ev}`;
  if (t.task === 'copy') return `copy: strings of ${t.minLen}–${t.maxLen} letters from ${t.alphabet}, rows of ${t.context} tokens${ev}`;
  return `MQAR: vocabulary ${t.vocab}, ${t.kvPairs.join('/')} key-value pairs, rows of ${t.contexts.join('/')} tokens, query gaps p(g) ∝ g^(a−1) with a = ${t.powerA}${ev}`;
}

/** A fresh model's init record as words. */
export function initFact(r: InitRecord): string {
  if (r.init === 'default') return `default (mamba_ssm recipe), seed ${r.seed}`;
  return `mimetic: ${r.parts.join(', ')}${r.aScale !== null ? `, A scale c = ${r.aScale}` : ''}${r.bcNoise > 0 ? `, W_C = W_B + ${r.bcNoise}·Z` : ''}, seed ${r.seed}`;
}

export interface RunReportHeader {
  title: string;
  /** Rows of `key: value` shown above the charts. */
  facts: [string, string][];
  status: string;
}

export async function writeRunReport(runDir: string, metrics: MetricsLine[], s: RunReportHeader): Promise<void> {
  const train = thin(metrics.filter((m) => Number.isFinite(m.loss)), 800);
  const evals = metrics.filter((m) => m.eval);
  let lossImg = '', accImg = '', posImg = '';
  if (train.length >= 1) {
    const png = await renderLineChart({ x: train.map((m) => m.step), series: [{ name: 'train loss', values: train.map((m) => m.loss) }], title: 'Training loss', xLabel: 'step', yLabel: 'loss' });
    writeFileAtomic(path.join(runDir, 'loss.png'), png);
    lossImg = '<img src="loss.png" alt="training loss curve">';
  }
  const held = metrics.filter((m) => m.heldout);
  let heldImg = '';
  if (held.length >= 1) {
    writeFileAtomic(path.join(runDir, 'heldout-bpb.png'), await renderLineChart({
      x: held.map((m) => m.step), series: [{ name: 'held-out bits per byte', values: held.map((m) => m.heldout!.bpb) }], title: 'Held-out bits per byte', xLabel: 'step', yLabel: 'bits per byte',
    }));
    heldImg = '<img src="heldout-bpb.png" alt="held-out bits per byte">';
  }
  const lastHeld = held.at(-1);
  const keys = evals.length ? Object.keys(evals[evals.length - 1]!.eval!) : [];
  if (evals.length >= 1 && keys.length) {
    const png = await renderLineChart({
      x: evals.map((m) => m.step), title: 'Accuracy', xLabel: 'step', yLabel: 'accuracy', yRange: [0, 1],
      series: keys.slice(0, 6).map((k) => ({ name: k, values: evals.map((m) => m.eval![k]?.accuracy ?? null) })),
    });
    writeFileAtomic(path.join(runDir, 'accuracy.png'), png);
    accImg = '<img src="accuracy.png" alt="accuracy by evaluation setting">';
    if (keys.some((k) => evals.at(-1)!.eval![k]!.charAccuracy !== undefined)) {
      writeFileAtomic(path.join(runDir, 'char-accuracy.png'), await renderLineChart({
        x: evals.map((m) => m.step), title: 'Character accuracy', xLabel: 'step', yLabel: 'character accuracy', yRange: [0, 1],
        series: keys.slice(0, 6).map((k) => ({ name: k, values: evals.map((m) => m.eval![k]?.charAccuracy ?? null) })),
      }));
      accImg += '<img src="char-accuracy.png" alt="character accuracy by evaluation setting">';
    }
  }
  const lastEval = evals.at(-1)?.eval;
  const pos = lastEval ? keys.filter((k) => lastEval[k]!.perPosition?.length).slice(0, 8) : [];
  if (pos.length) {
    const series: BandSeries[] = pos.map((k) => ({ name: k, x: lastEval![k]!.perPosition!.map((_, i) => i + 1), y: lastEval![k]!.perPosition! }));
    writeFileAtomic(path.join(runDir, 'per-position.png'), await renderBandChart({
      series, title: `Accuracy at each position (step ${evals.at(-1)!.step})`, xLabel: lastEval![pos[0]!]!.charAccuracy !== undefined ? 'position in the copied string' : 'query (in sequence order)', yLabel: 'accuracy', yRange: [0, 1], markers: false,
    }));
    posImg = '<img src="per-position.png" alt="accuracy at each position">';
  }
  const last = evals[evals.length - 1];
  const rows = last
    ? keys.map((k) => {
        const e = last.eval![k]!;
        return `<tr><td>${escapeHtml(k)}</td><td>${e.train ? 'yes' : 'no'}</td><td>${e.accuracy.toFixed(4)}</td><td>${e.charAccuracy === undefined ? '' : e.charAccuracy.toFixed(4)}</td><td>${e.examples}</td></tr>`;
      }).join('\n')
    : '';
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>${escapeHtml(s.title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:900px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}</style>
</head><body>
<h1>${escapeHtml(s.title)}</h1>
<p>${escapeHtml(s.status)}</p>
<table>${s.facts.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</table>
<h2>Loss</h2>
${lossImg || '<p>No steps recorded.</p>'}
${lastHeld ? `<h2>Held-out text (step ${lastHeld.step})</h2>\n<p>${lastHeld.heldout!.bpb.toFixed(4)} bits per byte, perplexity ${lastHeld.heldout!.ppl.toFixed(3)} per token, next-token accuracy ${lastHeld.heldout!.accuracy.toFixed(4)} (${lastHeld.heldout!.tokens} tokens).</p>\n${heldImg}` : ''}
<h2>Accuracy${last ? ` (step ${last.step})` : ''}</h2>
${last ? `<table><tr><th>setting</th><th>trained</th><th>accuracy</th><th>char accuracy</th><th>examples</th></tr>\n${rows}</table>` : '<p>No evaluation yet.</p>'}
${last?.gen ? `<p>Generalisation length: ${last.gen.string} (longest evaluated string length with string accuracy ≥ 0.5), ${last.gen.char} (character accuracy ≥ 0.9).</p>` : ''}
${accImg}
${posImg}
<p>Raw numbers: <a href="metrics.jsonl">metrics.jsonl</a>.</p>
</body></html>
`;
  writeFileAtomic(path.join(runDir, 'report.html'), html);
}
