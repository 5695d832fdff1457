/**
 * `mimetic report`: audit a checkpoint and write a self-contained folder (index.html, one page per
 * layer, PNG images, report.json, the maps as safetensors). The folder is built in a temporary
 * sibling and renamed into place; an existing folder is replaced only if it is a mimetic report
 * (or with force).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Checkpoint } from '../checkpoint/checkpoint.js';
import { writeSafetensors } from '../checkpoint/safetensors.js';
import { UserError } from '../util/errors.js';
import { writeDirAtomic } from '../util/atomic.js';
import { auditCheckpoint, type LayerAudit, type LayerDetail } from '../analysis/audit.js';
import type { Probe } from '../analysis/probe.js';
import { referenceScores } from '../analysis/reference.js';
import type { LayerScores } from '../analysis/scores.js';
import { renderHeatmap, renderThumbnail } from '../render/heatmap.js';
import { binsFor, histogram, renderHistogram, renderLineChart, SERIES_COLORS } from '../render/chart.js';
import { indexPage, layerPage, layerPageName } from './html.js';
import { REPORT_MARKER, type ChannelEntry, type LayerReport, type ReportJson, type Summary } from './types.js';

export const GENERATOR = 'mimetic 0.1.0';

export interface ReportOptions {
  out: string;
  force?: boolean;
  probe: Probe;
  layers?: number[];
  /** The backend in use (recorded in the report). */
  backend: string;
  /** The checkpoint argument as given (recorded and shown). */
  source: string;
  channelBlock?: number;
  /** Threads sharing the probe's rows (AuditOptions.threads; recorded in the report). */
  threads?: number;
  /** How many most/least mimetic channels to draw (default 2 each). */
  channelsShown?: number;
  /** Called after each layer with the number done and the total. */
  progress?: (done: number, total: number, layer: number) => void;
  /** Also score a fresh default-init and mimetic-init layer of the same shape (the scale shown beside the scores). */
  reference?: boolean;
  /** Called before the reference layers are scored. */
  onReference?: () => void;
}

/** Whether a folder holds a mimetic report (report.json with the marker). */
export function isMimeticReport(dir: string): boolean {
  try {
    const j = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')) as { mimetic?: { format?: unknown } };
    return j?.mimetic?.format === REPORT_MARKER.format;
  } catch {
    return false;
  }
}

/** Refuse to overwrite anything that is not a report unless forced. */
export function checkOutput(out: string, force: boolean): void {
  if (!fs.existsSync(out)) return;
  if (force) return;
  if (!fs.statSync(out).isDirectory()) throw new UserError(`${out}: exists and is not a folder; choose another --out or pass --force to replace it`);
  if (!isMimeticReport(out)) throw new UserError(`${out}: exists and is not a mimetic report (no report.json with the mimetic marker); choose another --out or pass --force to replace it`);
}

function summary(v: ArrayLike<number>): Summary {
  let min = Infinity, max = -Infinity, sum = 0, n = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (!Number.isFinite(x)) continue;
    if (x < min) min = x;
    if (x > max) max = x;
    sum += x; n++;
  }
  return n ? { min, max, mean: sum / n } : { min: NaN, max: NaN, mean: NaN };
}

function probeDescription(p: Probe): string {
  const B = p.ids.length, L = p.ids[0]!.length;
  return `${B} sequence${B === 1 ? '' : 's'} of ${L} tokens${p.period !== null ? `, period ${p.period} (x[t] = x[t−${p.period}])` : ', no period'}`;
}

/** Render one layer's images and maps into `dir`; returns its entry in report.json (rank filled in later). */
async function writeLayer(dir: string, a: LayerAudit, numLayers: number, batch: number): Promise<LayerReport> {
  const d: LayerDetail = a.detail!;
  const i = a.scores.layer;
  const page = layerPageName(i, numLayers);
  const stem = page.replace(/\.html$/, '');
  const img = (what: string) => `img/${stem}-${what}.png`;
  const put = (rel: string, buf: Buffer) => fs.writeFileSync(path.join(dir, rel), buf);
  const L = d.L;
  const posLabels = { xLabel: 'source position s', yLabel: 'target position t' };
  const att = await renderHeatmap({ data: d.attention, rows: L, cols: L, causal: true, kind: 'diverging', clipQuantile: 0.99, title: `Layer ${i}: mean attention ᾱ`, ...posLabels });
  put(img('attention'), att.png);
  const dec = await renderHeatmap({ data: d.decay, rows: L, cols: L, causal: true, kind: 'sequential', range: [0, 1], title: `Layer ${i}: decay mask D̄`, ...posLabels });
  put(img('decay'), dec.png);
  const qk = await renderHeatmap({ data: d.qk, rows: L, cols: L, causal: true, kind: 'diverging', clipQuantile: 0.99, title: `Layer ${i}: query-key C·B`, ...posLabels });
  put(img('qk'), qk.png);
  const cbg = await renderHeatmap({ data: d.cbGram, rows: d.N, cols: d.N, kind: 'diverging', title: `Layer ${i}: W_C W_Bᵀ`, xLabel: 'B state n', yLabel: 'C state n' });
  put(img('cbgram'), cbg.png);
  put(img('thumb'), await renderThumbnail({ data: d.attention, rows: L, cols: L, causal: true, kind: 'diverging', clipQuantile: 0.99, px: 128 }));
  const hA = histogram(d.A, binsFor(d.A.length));
  put(img('hist-A'), await renderHistogram(hA, { title: `Layer ${i}: A = −exp(A_log)`, xLabel: 'A' }));
  const hD = histogram(d.delta, binsFor(d.delta.length), true);
  put(img('hist-delta'), await renderHistogram(hD, { title: `Layer ${i}: Δ on the probe`, xLabel: 'log10 Δ', color: SERIES_COLORS[1] }));
  const hC = histogram(d.channelMimetic, binsFor(d.channelMimetic.length));
  put(img('hist-channels'), await renderHistogram(hC, { title: `Layer ${i}: ${d.unit} mimetic-ness`, xLabel: `${d.unit} mimetic-ness`, color: SERIES_COLORS[2] }));
  const tensors: { name: string; shape: number[]; data: Float32Array }[] = [
    { name: 'attention', shape: [L, L], data: d.attention },
    { name: 'decay', shape: [L, L], data: d.decay },
    { name: 'qk', shape: [L, L], data: d.qk },
    { name: 'cb_gram', shape: [d.N, d.N], data: d.cbGram },
    { name: `${d.unit}_maskOnes`, shape: [d.channelMaskOnes.length], data: Float32Array.from(d.channelMaskOnes) },
    { name: `${d.unit}_mimetic`, shape: [d.channelMimetic.length], data: Float32Array.from(d.channelMimetic) },
  ];
  if (d.channelLookbehind) tensors.push({ name: `${d.unit}_lookbehind`, shape: [d.channelLookbehind.length], data: Float32Array.from(d.channelLookbehind) });
  const entry = async (c: LayerDetail['most'][number], which: string): Promise<ChannelEntry> => {
    const rel = img(`${d.unit}-${c.index}`);
    const h = await renderHeatmap({ data: c.attention, rows: L, cols: L, causal: true, kind: 'diverging', clipQuantile: 0.99, title: `Layer ${i}, ${d.unit} ${c.index} (${which})`, ...posLabels });
    put(rel, h.png);
    const tensor = `${d.unit}_${c.index}_attention`;
    tensors.push({ name: tensor, shape: [L, L], data: c.attention });
    return { index: c.index, maskOnes: c.maskOnes, lookbehind: c.lookbehind, mimetic: c.mimetic, image: rel, tensor };
  };
  const most: ChannelEntry[] = [];
  for (const c of d.most) most.push(await entry(c, 'most mimetic'));
  const least: ChannelEntry[] = [];
  for (const c of d.least) least.push(await entry(c, 'least mimetic'));
  const mapsFile = `maps/${stem}.safetensors`;
  writeSafetensors(path.join(dir, mapsFile), tensors, { metadata: { layer: String(i), batch_mean_over: String(batch), generator: GENERATOR } });
  return {
    layer: i,
    page,
    images: { attention: img('attention'), decay: img('decay'), qk: img('qk'), cbGram: img('cbgram'), histA: img('hist-A'), histDelta: img('hist-delta'), histChannels: img('hist-channels'), thumb: img('thumb') },
    maps: { file: mapsFile, tensors: Object.fromEntries(tensors.map((t) => [t.name, t.shape])) },
    colour: {
      attention: att.scale.kind === 'diverging' ? att.scale.absMax : NaN,
      qk: qk.scale.kind === 'diverging' ? qk.scale.absMax : NaN,
      cbGram: cbg.scale.kind === 'diverging' ? cbg.scale.absMax : NaN,
      decay: [0, 1],
    },
    histograms: { A: hA, delta: hD, channelMimetic: hC },
    stats: { A: summary(d.A), delta: summary(d.delta) },
    channels: { unit: d.unit, count: d.channelMimetic.length, most, least },
  };
}

async function renderScoreChart(scores: LayerScores[]): Promise<Buffer> {
  const s = [...scores].sort((a, b) => a.layer - b.layer);
  return renderLineChart({
    x: s.map((l) => l.layer),
    series: [
      { name: 'cbIdentity', values: s.map((l) => l.cbIdentity), color: SERIES_COLORS[0] },
      { name: 'cbRowCos', values: s.map((l) => l.cbRowCos), color: SERIES_COLORS[4] },
      { name: 'maskOnes', values: s.map((l) => l.maskOnes), color: SERIES_COLORS[2] },
      { name: 'lookbehind', values: s.map((l) => l.lookbehind), color: SERIES_COLORS[1] },
      // Drawn last, on top.
      { name: 'mimetic', values: s.map((l) => l.mimetic), color: [20, 20, 20], emphasis: true },
    ],
    title: 'Scores across depth',
    xLabel: 'layer',
    yLabel: 'score',
    width: 820,
    height: 320,
  });
}

/** Audit `ckpt` and write the report folder. Returns report.json's content. */
export async function writeReport(ckpt: Checkpoint, opts: ReportOptions): Promise<ReportJson> {
  const out = opts.out;
  checkOutput(out, opts.force ?? false);
  const c = ckpt.config;
  const total = opts.layers?.length ?? c.numLayers;
  const batch = opts.probe.ids.length;
  let report: ReportJson | undefined;
  await writeDirAtomic(out, async (dir) => {
    fs.mkdirSync(path.join(dir, 'img'));
    fs.mkdirSync(path.join(dir, 'maps'));
    const layers: LayerReport[] = [];
    const res = await auditCheckpoint(ckpt, {
      probe: opts.probe,
      layers: opts.layers,
      detail: true,
      channelBlock: opts.channelBlock,
      threads: opts.threads,
      channelsShown: opts.channelsShown,
      onLayer: async (a) => {
        layers.push(await writeLayer(dir, a, c.numLayers, batch));
        opts.progress?.(layers.length, total, a.scores.layer);
      },
    });
    fs.writeFileSync(path.join(dir, 'img', 'scores.png'), await renderScoreChart(res.layers));
    opts.onReference?.();
    const reference = opts.reference ? await referenceScores(c, opts.probe, { channelBlock: opts.channelBlock, threads: opts.threads }) : null;
    const raw = ckpt.rawConfig;
    report = {
      mimetic: REPORT_MARKER,
      generator: GENERATOR,
      created: new Date().toISOString(),
      checkpoint: {
        source: opts.source,
        name: checkpointName(opts.source),
        arch: c.arch,
        config: c as unknown as Record<string, unknown>,
        rawConfig: raw,
        modelType: typeof raw.model_type === 'string' ? raw.model_type : null,
        parameters: ckpt.parameterCount(),
        dtypes: ckpt.dtypes(),
        files: ckpt.files,
      },
      probe: { ids: opts.probe.ids, period: opts.probe.period, batch, length: opts.probe.ids[0]!.length, description: probeDescription(opts.probe) },
      backend: opts.backend,
      threads: res.threads,
      seconds: res.seconds,
      scores: res.layers,
      nonFinite: res.nonFinite,
      reference,
      layers: layers.sort((a, b) => a.layer - b.layer),
      chart: 'img/scores.png',
    };
    fs.writeFileSync(path.join(dir, 'report.json'), JSON.stringify(report, jsonReplacer, 1) + '\n');
    fs.writeFileSync(path.join(dir, 'index.html'), indexPage(report));
    for (const l of report.layers) fs.writeFileSync(path.join(dir, l.page), layerPage(report, l));
  }, { replace: true });
  return report!;
}

/** A readable name for the checkpoint: the folder's name (or a Hub id as given). */
export function checkpointName(source: string): string {
  const trimmed = source.replace(/[\\/]+$/, '');
  if (!fs.existsSync(trimmed)) return trimmed;
  const base = path.basename(trimmed);
  return base.endsWith('.safetensors') ? path.basename(path.dirname(path.resolve(trimmed))) + '/' + base : base;
}

/** JSON has no Infinity/NaN: write them as strings rather than silently as null. */
function jsonReplacer(_k: string, v: unknown): unknown {
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return v;
}

