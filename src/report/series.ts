/**
 * An audit across training: the scores of every kept checkpoint of one run (`RUN_DIR/checkpoints/
 * step-NNNNNNNN/`, as train/state.ts writes them) or of a folder of checkpoints, as a depth × step
 * heatmap per score and each layer's score against step. Every checkpoint is audited on the same
 * probe, one at a time (only the scores are kept), so a long series needs no more memory than one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Checkpoint } from '../checkpoint/checkpoint.js';
import { UserError } from '../util/errors.js';
import { writeDirAtomic } from '../util/atomic.js';
import { auditCheckpoint } from '../analysis/audit.js';
import type { Probe } from '../analysis/probe.js';
import { referenceScores, type ReferenceScores } from '../analysis/reference.js';
import type { LayerScores } from '../analysis/scores.js';
import { renderHeatmap } from '../render/heatmap.js';
import { renderLineChart, type Series } from '../render/chart.js';
import { seriesColor } from '../render/plot.js';
import { escapeHtml as e } from '../render/escape.js';
import { isMimeticReport } from './report.js';
import { GENERATOR } from './report.js';

export const SERIES_MARKER = { format: 'mimetic-series-report', version: 1 } as const;
export const SERIES_SCORES = ['mimetic', 'maskOnes', 'cbIdentity', 'cbRowCos', 'lookbehind'] as const;
export type SeriesScore = (typeof SERIES_SCORES)[number];

export interface SeriesEntry {
  /** Training step (from the folder name `step-N`, else config.json's mimetic.trained.steps). */
  step: number;
  dir: string;
}

/** Folders under `dir` that hold a checkpoint (config.json or a .safetensors file). */
function isCheckpointDir(d: string): boolean {
  try {
    return fs.statSync(d).isDirectory() && fs.readdirSync(d).some((n) => n === 'config.json' || n.endsWith('.safetensors'));
  } catch {
    return false;
  }
}

function trainedSteps(dir: string): number | null {
  try {
    const j = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { mimetic?: { trained?: { steps?: unknown } } };
    const s = j?.mimetic?.trained?.steps;
    return typeof s === 'number' && Number.isSafeInteger(s) && s >= 0 ? s : null;
  } catch {
    return null;
  }
}

/**
 * The checkpoints of a run folder (its `checkpoints/step-N/`, complete ones only: a killed write
 * leaves a dot-named temporary) or of a folder of checkpoint folders, by step.
 */
export function findSeries(dir: string): SeriesEntry[] {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UserError(`${dir}: not a folder; --steps takes a run folder (with checkpoints/step-N/) or a folder of checkpoint folders`);
  const run = path.join(dir, 'checkpoints');
  const root = fs.existsSync(run) && fs.statSync(run).isDirectory() ? run : dir;
  const names = fs.readdirSync(root).filter((n) => !n.startsWith('.')).sort();
  const out: SeriesEntry[] = [];
  const unstepped: string[] = [];
  for (const n of names) {
    const d = path.join(root, n);
    if (!isCheckpointDir(d)) continue;
    const m = /^step-(\d+)$/.exec(n);
    const s = m ? Number(m[1]) : trainedSteps(d);
    if (s === null) unstepped.push(n);
    else out.push({ step: s, dir: d });
  }
  if (unstepped.length) throw new UserError(`${root}: checkpoint folder${unstepped.length > 1 ? 's' : ''} ${unstepped.slice(0, 3).join(', ')}${unstepped.length > 3 ? ', …' : ''} name${unstepped.length > 1 ? '' : 's'} no training step (neither step-N nor mimetic.trained.steps in config.json); rename them step-N`);
  if (!out.length) throw new UserError(`${dir}: no checkpoints found (looked for checkpoint folders in ${root}); train with --checkpoint-steps log to keep a series`);
  out.sort((a, b) => a.step - b.step);
  for (let i = 1; i < out.length; i++) if (out[i]!.step === out[i - 1]!.step) throw new UserError(`${root}: two checkpoints for step ${out[i]!.step} (${path.basename(out[i - 1]!.dir)}, ${path.basename(out[i]!.dir)}); keep one`);
  return out;
}

/** `--steps all` or a list of steps that the series has. */
export function selectSteps(all: SeriesEntry[], spec: string): SeriesEntry[] {
  const s = spec.trim();
  if (s === 'all') return all;
  const want = s.split(',').map((x) => x.trim()).filter(Boolean);
  if (!want.length) throw new UserError("--steps: empty; give 'all' or a list of kept steps like 1,16,256");
  const picked: SeriesEntry[] = [];
  for (const w of want) {
    const n = Number(w);
    const hit = Number.isSafeInteger(n) ? all.find((x) => x.step === n) : undefined;
    if (!hit) throw new UserError(`--steps: '${w}' is not a kept step; the series has ${all.map((x) => x.step).join(', ')} (or give 'all')`);
    if (!picked.includes(hit)) picked.push(hit);
  }
  return picked.sort((a, b) => a.step - b.step);
}

export interface SeriesResult {
  /** The shape every checkpoint shares. */
  arch: string;
  numLayers: number;
  layers: number[];
  checkpoints: { step: number; dir: string; layers: LayerScores[] }[];
  nonFinite: string[];
  reference: ReferenceScores | null;
  seconds: number;
}

export interface SeriesOptions {
  probe: Probe;
  layers?: number[];
  channelBlock?: number;
  /** Threads sharing the probe's rows (AuditOptions.threads). */
  threads?: number;
  reference?: boolean;
  /** Before checkpoint k (0-based) of n is audited. */
  onCheckpoint?: (k: number, n: number, step: number) => void;
  onLayer?: (layer: number) => void;
  onReference?: () => void;
}

const shapeOf = (c: Checkpoint['config']) => `${c.arch}, ${c.numLayers} layers, d_model ${c.hiddenSize}, d_state ${c.stateSize}, vocab ${c.vocabSize}`;

/** Audit each checkpoint on the same probe; they must share one shape. */
export async function auditSeries(entries: SeriesEntry[], o: SeriesOptions): Promise<SeriesResult> {
  const t0 = performance.now();
  let first: { shape: string; config: Checkpoint['config'] } | undefined;
  const checkpoints: SeriesResult['checkpoints'] = [];
  const nonFinite: string[] = [];
  for (const [k, en] of entries.entries()) {
    o.onCheckpoint?.(k, entries.length, en.step);
    const ckpt = Checkpoint.open(en.dir);
    try {
      const shape = shapeOf(ckpt.config);
      if (!first) first = { shape, config: ckpt.config };
      else if (shape !== first.shape) throw new UserError(`${en.dir}: ${shape}, unlike the series' first checkpoint (${first.shape}); a series is one run's checkpoints`);
      const res = await auditCheckpoint(ckpt, { probe: o.probe, layers: o.layers, channelBlock: o.channelBlock, threads: o.threads, onLayer: (a) => o.onLayer?.(a.scores.layer) });
      checkpoints.push({ step: en.step, dir: en.dir, layers: res.layers });
      nonFinite.push(...res.nonFinite.map((n) => `step ${en.step}: ${n}`));
    } finally {
      ckpt.close();
    }
  }
  if (!first) throw new UserError('no checkpoints to audit');
  let reference: ReferenceScores | null = null;
  if (o.reference) {
    o.onReference?.();
    reference = await referenceScores(first.config, o.probe, { channelBlock: o.channelBlock, threads: o.threads });
  }
  const layers = checkpoints[0]!.layers.map((l) => l.layer);
  return { arch: first.config.arch, numLayers: first.config.numLayers, layers, checkpoints, nonFinite, reference, seconds: (performance.now() - t0) / 1000 };
}

/** score[layer][checkpoint] for one score (null: no lookbehind, or non-finite). */
export function scoreMatrix(r: SeriesResult, score: SeriesScore): (number | null)[][] {
  return r.layers.map((_, li) => r.checkpoints.map((c) => {
    const v = c.layers[li]![score];
    return v === null || !Number.isFinite(v) ? null : v;
  }));
}

const LABELS: Record<SeriesScore, string> = { mimetic: 'mimetic score', maskOnes: 'maskOnes', cbIdentity: 'cbIdentity', cbRowCos: 'cbRowCos', lookbehind: 'lookbehind' };
const RANGES: Record<SeriesScore, [number, number]> = { mimetic: [0, 1], maskOnes: [0, 1], lookbehind: [0, 1], cbIdentity: [-1, 1], cbRowCos: [-1, 1] };

export interface SeriesReportJson {
  mimetic: typeof SERIES_MARKER;
  generator: string;
  created: string;
  source: string;
  arch: string;
  numLayers: number;
  probe: { ids: number[][]; period: number | null };
  backend: string;
  seconds: number;
  steps: number[];
  layers: number[];
  /** Each checkpoint's scores (as `mimetic score --json` gives them). */
  checkpoints: { step: number; dir: string; layers: LayerScores[] }[];
  /** score → [layer][checkpoint], null where undefined. */
  matrices: Record<SeriesScore, (number | null)[][]>;
  reference: ReferenceScores | null;
  nonFinite: string[];
  images: Record<SeriesScore, { heatmap: string; chart: string }>;
}

const CSS = `body { font: 15px/1.5 "DejaVu Sans", Arial, sans-serif; color: #222; margin: 0 auto; max-width: 1320px; padding: 20px 28px; }
h2 { font-size: 18px; border-bottom: 1px solid #e4e4e4; } table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; font-variant-numeric: tabular-nums; } th { background: #f3f5f7; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; } img { display: block; max-width: 100%; } .note { color: #555; font-size: 13px; }`;

function fmt(v: number | null): string {
  return v === null ? '—' : v.toFixed(3);
}

function indexPage(r: SeriesReportJson): string {
  const sections = SERIES_SCORES.map((s) => {
    const m = r.matrices[s];
    if (m.every((row) => row.every((v) => v === null))) return `<h2>${e(LABELS[s])}</h2><p class="note">not scored (the probe has no period)</p>`;
    const head = `<tr><th>layer \\ step</th>${r.steps.map((st) => `<th>${st}</th>`).join('')}</tr>`;
    const rows = r.layers.map((l, li) => `<tr><th>${l}</th>${m[li]!.map((v) => `<td>${fmt(v)}</td>`).join('')}</tr>`).join('\n');
    return `<h2>${e(LABELS[s])}</h2>
<div class="grid"><img src="${e(r.images[s].heatmap)}" alt="${e(LABELS[s])}: depth × checkpoint"><img src="${e(r.images[s].chart)}" alt="${e(LABELS[s])} against step"></div>
<details><summary>numbers</summary><table>${head}\n${rows}</table></details>`;
  }).join('\n');
  const steps = r.steps.map((s, k) => `${k}: ${s}`).join(', ');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${e(`mimetic series: ${r.source}`)}</title><style>${CSS}</style></head>
<body>
<h1>Audit across training: ${e(r.source)}</h1>
<p>${e(r.arch)}, ${r.numLayers} layers; ${r.checkpoints.length} checkpoints; probe ${r.probe.ids.length}×${r.probe.ids[0]!.length}${r.probe.period !== null ? `, period ${r.probe.period}` : ', no period'}; backend ${e(r.backend)}; ${r.seconds.toFixed(1)} s.</p>
<p class="note">Heatmaps: rows are layers (depth), columns the checkpoints in step order (column: step — ${e(steps)}). Charts: each layer's score against log₂ step${r.reference ? ', beside a fresh default-init and mimetic-init layer of the same shape (dashed: constant over steps)' : ''}. Numbers: report.json.</p>
${r.nonFinite.length ? `<p class="note">Non-finite tensors (layers unranked): ${e(r.nonFinite.join('; '))}</p>` : ''}
${sections}
</body></html>
`;
}

/** Refuse to overwrite anything that is not a mimetic report (of either kind) unless forced. */
export function checkSeriesOutput(out: string, force: boolean): void {
  if (!fs.existsSync(out) || force) return;
  if (!fs.statSync(out).isDirectory()) throw new UserError(`${out}: exists and is not a folder; choose another --out or pass --force to replace it`);
  if (!isMimeticReport(out) && !isSeriesReport(out)) throw new UserError(`${out}: exists and is not a mimetic report (no report.json with the mimetic marker); choose another --out or pass --force to replace it`);
}

export function isSeriesReport(dir: string): boolean {
  try {
    const j = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')) as { mimetic?: { format?: unknown } };
    return j?.mimetic?.format === SERIES_MARKER.format;
  } catch {
    return false;
  }
}

/** Write the series folder (index.html, img/, report.json) atomically. */
export async function writeSeriesReport(r: SeriesResult, o: { out: string; force?: boolean; source: string; backend: string; probe: Probe }): Promise<SeriesReportJson> {
  checkSeriesOutput(o.out, o.force ?? false);
  const steps = r.checkpoints.map((c) => c.step);
  const x = steps.map((s) => Math.log2(Math.max(1, s)));
  const matrices = Object.fromEntries(SERIES_SCORES.map((s) => [s, scoreMatrix(r, s)])) as Record<SeriesScore, (number | null)[][]>;
  const images = Object.fromEntries(SERIES_SCORES.map((s) => [s, { heatmap: `img/${s}-heatmap.png`, chart: `img/${s}-steps.png` }])) as SeriesReportJson['images'];
  const json: SeriesReportJson = {
    mimetic: SERIES_MARKER, generator: GENERATOR, created: new Date().toISOString(), source: o.source, arch: r.arch, numLayers: r.numLayers,
    probe: { ids: o.probe.ids, period: o.probe.period }, backend: o.backend, seconds: r.seconds, steps, layers: r.layers,
    checkpoints: r.checkpoints, matrices, reference: r.reference, nonFinite: r.nonFinite, images,
  };
  await writeDirAtomic(o.out, async (dir) => {
    fs.mkdirSync(path.join(dir, 'img'));
    for (const s of SERIES_SCORES) {
      const m = matrices[s];
      if (m.every((row) => row.every((v) => v === null))) continue;
      const data = Float32Array.from(m.flat().map((v) => (v === null ? NaN : v)));
      const hm = await renderHeatmap({ data, rows: r.layers.length, cols: steps.length, kind: 'sequential', title: `${LABELS[s]}: layer × checkpoint`, xLabel: 'training step (one column per kept checkpoint)', colLabels: steps.map(String), yLabel: 'layer', maxPx: 320 });
      fs.writeFileSync(path.join(dir, images[s].heatmap), hm.png);
      const series: Series[] = r.layers.map((l, li) => ({ name: `layer ${l}`, values: m[li]!, color: seriesColor(li) }));
      if (r.reference) {
        for (const k of ['default', 'mimetic'] as const) {
          const v = r.reference[k][s];
          series.push({ name: `ref ${k}`, values: steps.map(() => (v === null || !Number.isFinite(v) ? null : v)), color: k === 'default' ? [150, 150, 150] : [60, 60, 60] });
        }
      }
      const height = Math.max(320, 60 + series.length * 20);
      fs.writeFileSync(path.join(dir, images[s].chart), await renderLineChart({ x, series, title: `${LABELS[s]} against training step`, xLabel: 'log₂ step', yLabel: LABELS[s], yRange: RANGES[s], height }));
    }
    fs.writeFileSync(path.join(dir, 'report.json'), JSON.stringify(json, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 1) + '\n');
    fs.writeFileSync(path.join(dir, 'index.html'), indexPage(json));
  }, { replace: true });
  return json;
}

/** A compact text table: the mimetic score of each layer (rows) at each step (columns). */
export function seriesTable(r: SeriesResult, score: SeriesScore = 'mimetic'): string {
  const m = scoreMatrix(r, score);
  const head = ['layer', ...r.checkpoints.map((c) => `step ${c.step}`)];
  const rows = r.layers.map((l, li) => [String(l), ...m[li]!.map((v) => (v === null ? '—' : v.toFixed(4)))]);
  const w = head.map((h, j) => Math.max(h.length, ...rows.map((row) => row[j]!.length)));
  const line = (row: string[]) => row.map((c, j) => c.padStart(w[j]!)).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}
