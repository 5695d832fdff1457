/**
 * The report's pages, as strings built from report.json alone. Every value that comes from the
 * checkpoint (names, config values, paths) goes through escapeHtml. No scripts, no external
 * resources: the folder works offline and from a plain file server.
 */
import { byRank, type LayerScores } from '../analysis/scores.js';
import { referenceNote } from '../analysis/reference.js';
import { escapeHtml as e } from '../render/escape.js';
import type { ChannelEntry, LayerReport, ReportJson } from './types.js';

/** How many layers are highlighted as most mimetic: 3, or 1 in models of up to 4 layers. */
export function highlightCount(numLayers: number): number {
  return numLayers <= 4 ? 1 : 3;
}

export function fmt(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined) return '—';
  if (!Number.isFinite(v)) return String(v);
  return v.toFixed(digits);
}

export function layerPageName(layer: number, numLayers: number): string {
  const width = Math.max(2, String(Math.max(0, numLayers - 1)).length);
  return `layer-${String(layer).padStart(width, '0')}.html`;
}

const CSS = `
:root { color-scheme: light; }
body { font: 15px/1.5 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #222; margin: 0; background: #fafafa; }
main { max-width: 1320px; margin: 0 auto; padding: 20px 28px 48px; background: #fff; min-height: 100vh; box-shadow: 0 0 12px rgba(0,0,0,.06); }
h1 { font-size: 24px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #e4e4e4; padding-bottom: 4px; }
.sub { color: #666; margin: 0 0 12px; word-break: break-all; }
nav { font-size: 14px; margin-bottom: 8px; }
nav a { margin-right: 14px; }
a { color: #1f5fa8; text-decoration: none; }
a:hover { text-decoration: underline; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eee; text-align: left; }
th { background: #f3f5f7; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; font-family: "DejaVu Sans Mono", monospace; font-size: 13px; }
tr.top td { background: #eaf6ea; }
tr.top td:first-child { font-weight: bold; }
tr.ref td { color: #555; font-style: italic; border-top: 1px dotted #bbb; }
.kv td:first-child { color: #555; white-space: nowrap; }
.kv td { word-break: break-all; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 0; }
figcaption { font-size: 13px; color: #555; max-width: 420px; margin-top: 2px; }
img { display: block; image-rendering: pixelated; }
.chart img { image-rendering: auto; max-width: 100%; }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; }
.thumb { border: 1px solid #ddd; padding: 6px; border-radius: 4px; background: #fff; text-align: center; font-size: 12px; width: 108px; }
.thumb.top { border-color: #3a9a3a; background: #f1faf1; }
.thumb img { margin: 0 auto 4px; width: 96px; height: 96px; image-rendering: auto; }
.note { font-size: 13px; color: #555; max-width: 900px; }
dl.defs dt { font-weight: 600; margin-top: 6px; font-family: "DejaVu Sans Mono", monospace; font-size: 14px; }
dl.defs dd { margin: 0 0 0 18px; font-size: 14px; color: #333; max-width: 900px; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 13px; background: #f3f3f3; padding: 0 3px; border-radius: 2px; }
.score-big { font-size: 20px; font-weight: bold; }
details { margin-top: 10px; }
summary { cursor: pointer; color: #1f5fa8; font-size: 14px; }
pre.config { font: 12px/1.4 "DejaVu Sans Mono", monospace; background: #f6f6f6; padding: 8px 12px; max-height: 420px; overflow: auto; white-space: pre-wrap; word-break: break-all; }
.cols { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
`;

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${e(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

const DEFINITIONS = `
<dl class="defs">
<dt>cbIdentity</dt><dd>tr(M) / (√N · ‖M‖<sub>F</sub>) for M = W<sub>C</sub><sup>T</sup> W<sub>B</sub>, the weights producing C and B (N state rows each). In [−1, 1]; 1 exactly when W<sub>C</sub><sup>T</sup>W<sub>B</sub> is a positive multiple of a rank-N projection (query-key ≈ identity). Mamba-2: mean over groups.</dd>
<dt>cbRowCos</dt><dd>Mean over state rows n of cos(W<sub>C</sub>[n], W<sub>B</sub>[n]).</dd>
<dt>maskOnes</dt><dd>Mean of the decay mask D̄[t, s] = exp(Σ<sub>k=s+1..t</sub> Δ<sub>k</sub>A) (averaged over channels/heads and states) over the probe batch and all s ≤ t. 1 = no decay.</dd>
<dt>lookbehind</dt><dd>On a probe with period m (x[t] = x[t−m]): mean over rows t ≥ m of (|ᾱ[t, t−m]| + |ᾱ[t, t−m+1]|) / Σ<sub>s≤t</sub>|ᾱ[t, s]|, the share of the mean attention that looks one period back. — when the probe has no period.</dd>
<dt>mimetic</dt><dd>Mean of maskOnes, max(0, cbIdentity) and lookbehind (of the first two without a period). Rank 1 = most mimetic.</dd>
</dl>
<p class="note">ᾱ is the implicit attention α[t, s] = Σ<sub>n</sub> C<sub>t</sub>[n] · exp(A[n] Σ<sub>k=s+1..t</sub>Δ<sub>k</sub>) · Δ<sub>s</sub> B<sub>s</sub>[n] (y<sub>t</sub> = Σ<sub>s</sub> α[t, s] x<sub>s</sub> + D x<sub>t</sub>), averaged over channels (Mamba-1) or heads (Mamba-2). After Trockman et al. 2024, <i>Mimetic Initialization Helps State Space Models Learn to Recall</i>.</p>`;

function scoreRow(s: LayerScores, link: string | null, top: boolean): string {
  const name = link ? `<a href="${e(link)}">layer ${s.layer}</a>` : `layer ${s.layer}`;
  return `<tr${top ? ' class="top"' : ''}><td class="n">${s.rank ?? '—'}</td><td>${name}${top ? ' ★' : ''}</td><td class="n">${fmt(s.mimetic)}</td><td class="n">${fmt(s.cbIdentity)}</td><td class="n">${fmt(s.cbRowCos)}</td><td class="n">${fmt(s.maskOnes)}</td><td class="n">${fmt(s.lookbehind)}</td></tr>`;
}

/** The reference rows under a score table, and the note saying what they are. */
function referenceRows(r: ReportJson): string {
  if (!r.reference) return '';
  return (['default', 'mimetic'] as const).map((k) => {
    const s = r.reference![k];
    return `<tr class="ref"><td class="n">ref</td><td>fresh ${k} init</td><td class="n">${fmt(s.mimetic)}</td><td class="n">${fmt(s.cbIdentity)}</td><td class="n">${fmt(s.cbRowCos)}</td><td class="n">${fmt(s.maskOnes)}</td><td class="n">${fmt(s.lookbehind)}</td></tr>`;
  }).join('\n');
}

function referenceNoteHtml(r: ReportJson): string {
  return r.reference ? `<p class="note">${e(referenceNote(r.reference))}: a layer near the <i>ref default</i> row has no more mimetic structure than an untrained layer; one near <i>ref mimetic</i> has as much as the mimetic init gives.</p>` : '';
}

const SCORE_HEAD = '<tr><th class="n">rank</th><th>layer</th><th class="n">mimetic</th><th class="n">cbIdentity</th><th class="n">cbRowCos</th><th class="n">maskOnes</th><th class="n">lookbehind</th></tr>';

function bytes(n: number): string {
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0, v = n;
  while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${u[i]}`;
}

const ARCH_NAMES: Record<string, string> = { mamba1: 'Mamba-1', mamba2: 'Mamba-2', falcon_mamba: 'Falcon-Mamba' };

/** One line of the model's dimensions. */
function sizes(c: Record<string, unknown>): string {
  const parts = [`hidden ${c.hiddenSize}`, `d_inner ${c.intermediateSize}`, `state N ${c.stateSize}`, `conv ${c.convKernel}`];
  if (c.arch === 'mamba2') parts.push(`${c.numHeads} heads × ${c.headDim}`, `${c.nGroups} group${c.nGroups === 1 ? '' : 's'}`);
  else parts.push(`dt rank ${c.timeStepRank}`);
  return e(parts.join(' · '));
}

function vocab(c: Record<string, unknown>): string {
  return e(c.configVocabSize === c.vocabSize ? `${c.vocabSize}` : `${c.configVocabSize} (${c.vocabSize} embedding rows)`) + (c.tiedEmbeddings ? ', tied output head' : ', separate output head');
}

export function indexPage(r: ReportJson): string {
  const c = r.checkpoint.config;
  const HIGHLIGHT = highlightCount(c.numLayers as number);
  const ranked = [...r.scores].sort(byRank);
  const pageOf = new Map(r.layers.map((l) => [l.layer, l.page]));
  const thumbs = [...r.layers].sort((a, b) => a.layer - b.layer).map((l) => {
    const s = r.scores.find((x) => x.layer === l.layer)!;
    const top = s.rank !== null && s.rank <= HIGHLIGHT;
    return `<a class="thumb${top ? ' top' : ''}" href="${e(l.page)}"><img src="${e(l.images.thumb)}" alt="layer ${l.layer} mean attention" width="96" height="96">layer ${l.layer}<br>${s.rank === null ? 'unranked' : `rank ${s.rank}`} · ${fmt(s.mimetic, 2)}</a>`;
  }).join('\n');
  const files = r.checkpoint.files.map((f) => `${e(f.name)} (${bytes(f.bytes)})`).join(', ');
  const dtypes = Object.entries(r.checkpoint.dtypes).map(([k, v]) => `${e(k)}: ${v}`).join(', ');
  const body = `
<h1>Mimetic layer audit</h1>
<p class="sub">${e(r.checkpoint.name)}</p>
<h2>Checkpoint</h2>
<table class="kv">
<tr><td>source</td><td>${e(r.checkpoint.source)}</td></tr>
<tr><td>architecture</td><td>${e(ARCH_NAMES[r.checkpoint.arch] ?? r.checkpoint.arch)}${r.checkpoint.modelType ? ` (model_type ${e(r.checkpoint.modelType)})` : ''}, ${e(c.numLayers)} layers</td></tr>
<tr><td>sizes</td><td>${sizes(c)}</td></tr>
<tr><td>vocabulary</td><td>${vocab(c)}</td></tr>
<tr><td>parameters</td><td>${r.checkpoint.parameters.toLocaleString('en-US')}</td></tr>
<tr><td>stored dtypes</td><td>${dtypes}</td></tr>
<tr><td>files</td><td>${files}</td></tr>
<tr><td>probe</td><td>${e(r.probe.description)}</td></tr>
<tr><td>audit</td><td>backend ${e(r.backend)}${r.threads !== undefined && r.threads > 1 ? `, ${r.threads} threads` : ''}, ${r.seconds.toFixed(1)} s, ${r.scores.length} of ${e(c.numLayers)} layers</td></tr>
</table>
<details><summary>config.json</summary><pre class="config">${e(JSON.stringify(r.checkpoint.rawConfig, null, 2))}</pre></details>
<h2>Layers ranked by mimetic score</h2>
<p class="note">${Math.min(HIGHLIGHT, ranked.length) === 1 ? 'The most mimetic layer is' : `The ${Math.min(HIGHLIGHT, ranked.length)} most mimetic layers are`} highlighted (★). Definitions below.</p>
<table>
${SCORE_HEAD}
${ranked.map((s) => scoreRow(s, pageOf.get(s.layer) ?? null, s.rank !== null && s.rank <= HIGHLIGHT)).join('\n')}
${referenceRows(r)}
</table>
${referenceNoteHtml(r)}
<h2>Scores across depth</h2>
<figure class="chart"><img src="${e(r.chart)}" alt="scores across depth"></figure>
<h2>Layers</h2>
<p class="note">Each thumbnail is the layer's mean implicit attention ᾱ on the probe (batch mean; red positive, blue negative); click for the layer's page.</p>
<div class="thumbs">
${thumbs}
</div>
<h2>Definitions</h2>
${DEFINITIONS}
<p class="note">Generated by ${e(r.generator)} on ${e(r.created)}. Raw numbers: <a href="report.json">report.json</a>.</p>
`;
  return page(`Mimetic audit — ${r.checkpoint.name}`, body);
}

function channelFigure(unit: string, c: ChannelEntry, which: string): string {
  return `<figure><img src="${e(c.image)}" alt="${unit} ${c.index} attention"><figcaption>${which}: ${unit} ${c.index} — mimetic ${fmt(c.mimetic)} (maskOnes ${fmt(c.maskOnes)}, lookbehind ${fmt(c.lookbehind)})</figcaption></figure>`;
}

export function layerPage(r: ReportJson, l: LayerReport): string {
  const HIGHLIGHT = highlightCount(r.checkpoint.config.numLayers as number);
  const s = r.scores.find((x) => x.layer === l.layer)!;
  const sorted = [...r.layers].sort((a, b) => a.layer - b.layer);
  const k = sorted.findIndex((x) => x.layer === l.layer);
  const prev = k > 0 ? sorted[k - 1]! : null, next = k < sorted.length - 1 ? sorted[k + 1]! : null;
  const unit = l.channels.unit;
  const period = r.probe.period;
  const nav = `<nav><a href="index.html">↑ index</a>${prev ? `<a href="${e(prev.page)}">← layer ${prev.layer}</a>` : ''}${next ? `<a href="${e(next.page)}">layer ${next.layer} →</a>` : ''}</nav>`;
  const body = `
${nav}
<h1>Layer ${l.layer}</h1>
<p class="sub">${e(r.checkpoint.name)} — ${s.rank === null ? 'not ranked (non-finite scores)' : `rank ${s.rank}`} of ${r.scores.length}, mimetic score <span class="score-big">${fmt(s.mimetic)}</span></p>
<table>
${SCORE_HEAD}
${scoreRow(s, null, s.rank !== null && s.rank <= HIGHLIGHT)}
${referenceRows(r)}
</table>
${referenceNoteHtml(r)}
<h2>Attention and decay on the probe</h2>
<p class="note">Maps are averaged over the probe batch (${r.probe.batch} × ${r.probe.length} tokens${period ? `, period ${period}: the lookbehind diagonals are s = t − ${period} and s = t − ${period - 1}` : ''}). Grey cells (s &gt; t) are undefined. Signed maps use a diverging scale centred at 0, clipped at the 99th percentile of |value| (the colour bar gives the range); maps larger than the image are shrunk by averaging blocks of cells.</p>
<div class="grid">
<figure><img src="${e(l.images.attention)}" alt="mean attention"><figcaption>Mean implicit attention ᾱ[t, s] over ${unit}s (colour range ±${fmt(l.colour.attention, 4)}).</figcaption></figure>
<figure><img src="${e(l.images.decay)}" alt="decay mask"><figcaption>Decay mask D̄[t, s] = mean exp(A Σ<sub>k=s+1..t</sub> Δ<sub>k</sub>); 1 = no decay.</figcaption></figure>
<figure><img src="${e(l.images.qk)}" alt="query-key map"><figcaption>Query-key map C<sub>t</sub> · B<sub>s</sub>${r.checkpoint.arch === 'mamba2' ? ' (mean over heads)' : ''}, without decay or Δ.</figcaption></figure>
<figure><img src="${e(l.images.cbGram)}" alt="W_C W_B^T"><figcaption>W<sub>C</sub> W<sub>B</sub><sup>T</sup> (N × N)${r.checkpoint.arch === 'mamba2' ? ', mean over groups' : ''}: a mimetic layer has a dominant positive diagonal.</figcaption></figure>
</div>
<h2>A and Δ</h2>
<div class="grid">
<figure><img src="${e(l.images.histA)}" alt="histogram of A"><figcaption>A = −exp(A_log), ${l.histograms.A.counts.reduce((a, b) => a + b, 0)} values; min ${fmt(l.stats.A.min, 4)}, max ${fmt(l.stats.A.max, 4)}, mean ${fmt(l.stats.A.mean, 4)}.</figcaption></figure>
<figure><img src="${e(l.images.histDelta)}" alt="histogram of delta"><figcaption>Δ on the probe (log<sub>10</sub> scale; every ${unit}, position and batch row); min ${fmt(l.stats.delta.min, 5)}, max ${fmt(l.stats.delta.max, 4)}, mean ${fmt(l.stats.delta.mean, 4)}.</figcaption></figure>
</div>
<h2>Individual ${unit}s</h2>
<p class="note">Each ${unit}'s own mimetic-ness is the mean of its maskOnes (its decay mask averaged over s ≤ t${unit === 'channel' ? ' and states' : ''}) and its lookbehind (the same formula as the layer's, on its own attention map)${period ? '' : '; without a period, maskOnes alone'}. Below, the most and least mimetic of the layer's ${l.channels.count} ${unit}s, and the distribution over all of them.</p>
<div class="grid">
${l.channels.most.map((c) => channelFigure(unit, c, 'most mimetic')).join('\n')}
${l.channels.least.map((c) => channelFigure(unit, c, 'least mimetic')).join('\n')}
<figure><img src="${e(l.images.histChannels)}" alt="histogram of ${unit} mimetic-ness"><figcaption>Mimetic-ness of all ${l.channels.count} ${unit}s.</figcaption></figure>
</div>
<h2>Data</h2>
<p class="note">The maps above at full resolution: <a href="${e(l.maps.file)}">${e(l.maps.file)}</a> (safetensors: ${Object.entries(l.maps.tensors).map(([n, sh]) => `<code>${e(n)}</code> [${sh.join(', ')}]`).join(', ')}). All numbers: <a href="report.json">report.json</a>.</p>
<h2>Definitions</h2>
${DEFINITIONS}
${nav}
`;
  return page(`Layer ${l.layer} — ${r.checkpoint.name}`, body);
}
