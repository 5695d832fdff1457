/**
 * The report: heatmap downsampling keeps every row (block means), PNGs decode to the colours the
 * data implies, the folder is complete and self-contained, checkpoint text is HTML-escaped, and
 * output folders are protected (nothing half-written, foreign folders refused without --force).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { SafetensorsReader } from '../src/checkpoint/safetensors.js';
import { initBackend } from '../src/model/backend.js';
import { downsampleMean, renderHeatmap, fitAxis } from '../src/render/heatmap.js';
import { colorOf, colorAt, VIRIDIS } from '../src/render/colormap.js';
import { histogram, renderLineChart } from '../src/render/chart.js';
import { escapeHtml } from '../src/render/escape.js';
import { writeReport, isMimeticReport } from '../src/report/report.js';
import { defaultProbe } from '../src/analysis/probe.js';
import { auditCheckpoint } from '../src/analysis/audit.js';
import type { ReportJson } from '../src/report/types.js';
import { UserError } from '../src/util/errors.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

function tmp(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

test('downsampleMean averages blocks: no row or column is dropped, partial blocks included', () => {
  const R = 301, C = 7;
  const data = new Float32Array(R * C);
  for (let c = 0; c < C; c++) { data[137 * C + c] = 1; data[300 * C + c] = 5; }
  const g = downsampleMean(data, R, C, 4, 3);
  assert.equal(g.rows, 76);
  assert.equal(g.cols, 3);
  // Row 137 lies in block 34 (rows 136-139): 1/4 of that block's mass.
  for (let c = 0; c < 3; c++) assert.ok(Math.abs(g.data[34 * 3 + c]! - 0.25) < 1e-7);
  // Row 300 alone forms the last block: its mean is its value.
  for (let c = 0; c < 3; c++) assert.ok(Math.abs(g.data[75 * 3 + c]! - 5) < 1e-7);
  // Every other block is 0; weighting each block mean by its cell count gives back the total.
  let total = 0;
  for (let r = 0; r < g.rows; r++) {
    for (let c = 0; c < g.cols; c++) {
      const rows = Math.min(4, R - r * 4), cols = Math.min(3, C - c * 3);
      total += g.data[r * 3 + c]! * rows * cols;
      if (r !== 34 && r !== 75) assert.equal(g.data[r * 3 + c], 0);
    }
  }
  assert.ok(Math.abs(total - (7 + 35)) < 1e-5);
  // With a validity mask only valid cells count; a block with none is NaN.
  const m = downsampleMean(Float32Array.from([1, 9, 3, 5]), 2, 2, 1, 2, (r, c) => c <= r);
  assert.equal(m.data[0], 1);
  assert.equal(m.data[1], 4);
  assert.ok(Number.isNaN(downsampleMean([7, 8], 1, 2, 1, 1, (_r, c) => c === 0).data[1]!));
});

/** RGB of pixel (x, y) of a PNG. */
async function pixels(png: Buffer): Promise<{ at: (x: number, y: number) => [number, number, number]; width: number; height: number }> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, at: (x, y) => { const i = (y * info.width + x) * info.channels; return [data[i]!, data[i + 1]!, data[i + 2]!]; } };
}

test('a map larger than the image is shrunk by block averaging: a single hot row stays visible', async () => {
  const n = 1001, maxPx = 250;
  const fit = fitAxis(n, maxPx);
  assert.deepEqual(fit, { block: 5, cellPx: 1, px: 201 });
  const data = new Float32Array(n * n);
  for (let c = 0; c < n; c++) { data[502 * n + c] = 1; data[1000 * n + c] = 1; }
  const h = await renderHeatmap({ data, rows: n, cols: n, kind: 'sequential', range: [0, 1], title: 't', xLabel: 'x', yLabel: 'y', maxPx });
  assert.deepEqual(h.block, [5, 5]);
  const img = await pixels(h.png);
  assert.equal(img.width, h.width);
  // The map's top-left pixel: find it from the layout (left 62, top 30, see heatmap.ts) by colour.
  const left = 62, top = 30;
  const zero = colorOf({ kind: 'sequential', lo: 0, hi: 1 }, 0);
  assert.deepEqual(img.at(left + 10, top + 10), zero);
  // Row 502 is one of the five rows of block 100: that pixel row is 0.2 of the way up the map.
  assert.deepEqual(img.at(left + 10, top + 100), colorAt(VIRIDIS, 0.2));
  assert.deepEqual(img.at(left + 10, top + 99), zero);
  // Row 1000 is alone in the last block: full value.
  assert.deepEqual(img.at(left + 10, top + 200), colorAt(VIRIDIS, 1));
});

test('a small map is enlarged by whole pixels; causal maps grey out s > t; diverging maps are centred at 0', async () => {
  const L = 8;
  const data = new Float32Array(L * L);
  for (let t = 0; t < L; t++) for (let s = 0; s <= t; s++) data[t * L + s] = s === t ? 2 : -1;
  const h = await renderHeatmap({ data, rows: L, cols: L, causal: true, kind: 'diverging', title: 't', xLabel: 'x', yLabel: 'y', maxPx: 80 });
  assert.deepEqual(h.cellPx, [10, 10]);
  assert.equal(h.scale.kind === 'diverging' && h.scale.absMax, 2);
  const img = await pixels(h.png);
  const at = (t: number, s: number) => img.at(62 + s * 10 + 5, 30 + t * 10 + 5);
  const diag = at(3, 3), below = at(5, 1), above = at(1, 5);
  assert.ok(diag[0] > diag[1] + 50 && diag[0] > diag[2] + 50, `diagonal (positive) is red: ${diag}`);
  assert.ok(below[2] > below[0], `negative is blue: ${below}`);
  assert.deepEqual(above, [236, 236, 236]);
  assert.deepEqual(colorOf({ kind: 'diverging', absMax: 1 }, 0), [247, 247, 247]);
});

test('column labels replace the index ticks (the series heatmaps label checkpoints by step) and must match the columns', async () => {
  const data = new Float32Array(4 * 6).map((_, i) => i);
  const base = { data, rows: 4, cols: 6, kind: 'sequential' as const, title: 't', xLabel: 'x', yLabel: 'y', maxPx: 120 };
  const plain = await renderHeatmap(base);
  const labelled = await renderHeatmap({ ...base, colLabels: ['1', '2', '4', '8', '16', '4000'] });
  assert.equal(labelled.width, plain.width);
  // Same map pixels, different tick text below it.
  const a = await pixels(plain.png), b = await pixels(labelled.png);
  assert.deepEqual(b.at(62 + 5, 30 + 5), a.at(62 + 5, 30 + 5));
  let differ = 0;
  for (let y = 30 + 4 * 30 + 6; y < a.height; y++) for (let x = 0; x < a.width; x++) if (a.at(x, y).join() !== b.at(x, y).join()) differ++;
  assert.ok(differ > 20, `tick text changed (${differ} pixels)`);
  await assert.rejects(renderHeatmap({ ...base, colLabels: ['1', '2'] }), /2 column labels for 6 columns/);
});

test('histograms and line charts', async () => {
  const h = histogram([1, 2, 2, 3, 3, 3, NaN], 3);
  assert.deepEqual(h.counts, [1, 2, 3]);
  assert.equal(h.dropped, 1);
  assert.deepEqual(h.edges.map((e) => +e.toFixed(6)), [1, 1.666667, 2.333333, 3]);
  const lg = histogram([0.001, 0.01, 0.1, 0, -0.1], 2, true);
  assert.deepEqual(lg.counts, [1, 3]);
  assert.equal(lg.dropped, 1);
  const png = await renderLineChart({ x: [0, 1, 2], series: [{ name: 'a', values: [0, 0.5, null] }], title: 't', xLabel: 'x', yLabel: 'y', width: 300, height: 200 });
  const img = await pixels(png);
  assert.equal(img.width, 300);
  assert.equal(img.height, 200);
});

test('escapeHtml', () => {
  assert.equal(escapeHtml(`<script>alert("x" & 'y')</script>`), '&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;');
});

/** A copy of a fixture whose folder name and config carry markup. */
function hostileFixture(root: string): string {
  const dir = path.join(root, 'ck<b onmouseover=alert(1)>');
  fs.mkdirSync(dir);
  const src = path.join(FIXTURES, 'mamba1-tiny');
  fs.copyFileSync(path.join(src, 'model.safetensors'), path.join(dir, 'model.safetensors'));
  const cfg = JSON.parse(fs.readFileSync(path.join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  cfg.model_type = '<script>alert("model_type")</script>';
  cfg._name_or_path = '<script>alert("name")</script>';
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  return dir;
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p).map((f) => path.join(e.name, f)));
    else out.push(e.name);
  }
  return out;
}

test('report folder: complete, relative links only, escaped, report.json matches the audit', async () => {
  await initBackend('wasm');
  const root = tmp('report-');
  try {
    const src = hostileFixture(root);
    const ckpt = Checkpoint.open(src);
    const probe = defaultProbe(ckpt.config.configVocabSize, { seqLen: 24, batch: 2 });
    const out = path.join(root, 'out');
    const report = await writeReport(ckpt, { out, probe, backend: 'wasm', source: src });
    const files = new Set(filesUnder(out));
    assert.ok(files.has('index.html') && files.has('report.json') && files.has('layer-00.html') && files.has('layer-01.html'));
    assert.ok(isMimeticReport(out));
    // No temporary siblings left behind.
    assert.deepEqual(fs.readdirSync(root).sort(), ['ck<b onmouseover=alert(1)>', 'out'].sort());
    const json = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as ReportJson;
    assert.deepEqual(json.scores, report.scores);
    // The scores are those of a plain audit on the same probe.
    const plain = await auditCheckpoint(ckpt, { probe });
    assert.deepEqual(json.scores.map((s) => [s.layer, s.rank, s.maskOnes, s.lookbehind, s.cbIdentity]), plain.layers.map((s) => [s.layer, s.rank, s.maskOnes, s.lookbehind, s.cbIdentity]));
    ckpt.close();
    for (const page of ['index.html', 'layer-00.html', 'layer-01.html']) {
      const html = fs.readFileSync(path.join(out, page), 'utf8');
      assert.ok(!/<script/i.test(html), `${page} contains a script tag`);
      assert.ok(!html.includes('<b onmouseover'), `${page} contains unescaped markup from the folder name`);
      const refs = [...html.matchAll(/(?:src|href)="([^"]*)"/g)].map((m) => m[1]!);
      assert.ok(refs.length > 5);
      for (const r of refs) {
        assert.ok(!/^[a-z]+:|^\/|^\\/i.test(r), `${page}: non-relative link ${r}`);
        assert.ok(files.has(r.replace(/&amp;/g, '&')), `${page}: link to missing file ${r}`);
      }
    }
    const index = fs.readFileSync(path.join(out, 'index.html'), 'utf8');
    assert.ok(index.includes('&lt;script&gt;alert(&quot;model_type&quot;)&lt;/script&gt;'), 'model_type shown, escaped');
    assert.ok(index.includes('&lt;script&gt;alert(\\&quot;name\\&quot;)&lt;/script&gt;'), 'raw config.json shown, escaped');
    assert.ok(index.includes('ck&lt;b onmouseover=alert(1)&gt;'), 'folder name shown, escaped');
    // Every image referenced by report.json decodes; heatmaps of the probe maps match the maps file.
    for (const l of json.layers) {
      for (const rel of [...Object.values(l.images), ...l.channels.most.map((c) => c.image), ...l.channels.least.map((c) => c.image)]) {
        const meta = await sharp(path.join(out, rel)).metadata();
        assert.equal(meta.format, 'png');
        assert.ok((meta.width ?? 0) > 50 || rel.includes('thumb'));
      }
      const maps = SafetensorsReader.open(path.join(out, l.maps.file));
      assert.deepEqual(maps.readFloat32('attention').shape, [24, 24]);
      for (const c of l.channels.most) assert.ok(maps.names().includes(c.tensor));
      maps.close();
    }
    // Rewriting an existing report needs no --force.
    const ckpt2 = Checkpoint.open(src);
    await writeReport(ckpt2, { out, probe, backend: 'wasm', source: src, layers: [1] });
    ckpt2.close();
    assert.ok(!fs.existsSync(path.join(out, 'layer-00.html')), 'the old report was replaced, not merged');
    assert.ok(fs.existsSync(path.join(out, 'layer-01.html')));
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('report output: a foreign folder is refused (kept intact) unless forced; a failed run leaves nothing', async () => {
  await initBackend('wasm');
  const root = tmp('report-out-');
  const ckpt = Checkpoint.open(path.join(FIXTURES, 'mamba2-tiny'));
  try {
    const probe = defaultProbe(64, { seqLen: 12, batch: 1 });
    const foreign = path.join(root, 'mine');
    fs.mkdirSync(foreign);
    fs.writeFileSync(path.join(foreign, 'notes.txt'), 'keep me');
    await assert.rejects(writeReport(ckpt, { out: foreign, probe, backend: 'wasm', source: 'x' }), (e: unknown) => e instanceof UserError && /not a mimetic report/.test((e as Error).message));
    assert.deepEqual(fs.readdirSync(foreign), ['notes.txt']);
    // A report.json without the marker does not count.
    fs.writeFileSync(path.join(foreign, 'report.json'), '{"scores": []}');
    await assert.rejects(writeReport(ckpt, { out: foreign, probe, backend: 'wasm', source: 'x' }), UserError);
    await writeReport(ckpt, { out: foreign, probe, backend: 'wasm', source: 'x', force: true });
    assert.ok(isMimeticReport(foreign));
    assert.ok(!fs.existsSync(path.join(foreign, 'notes.txt')));
    // A run that fails midway (ids outside the embedding) leaves neither the target nor temporaries.
    const failed = path.join(root, 'failed');
    await assert.rejects(writeReport(ckpt, { out: failed, probe: { ids: [[1, 2, 999]], period: null }, backend: 'wasm', source: 'x' }), UserError);
    assert.deepEqual(fs.readdirSync(root), ['mine']);
  } finally {
    ckpt.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('mimetic report (CLI): writes the folder; bad input exits 2 with one line and writes nothing', () => {
  const root = tmp('report-cli-');
  try {
    const fx = path.join(FIXTURES, 'mamba1-tiny');
    const run = (args: string[]) => spawnSync(process.execPath, [CLI, 'report', fx, ...args], { encoding: 'utf8', cwd: root });
    const ok = run(['--out', 'r', '--seq-len', '16', '--batch', '1', '--backend', 'wasm']);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /wrote r\/index\.html/);
    assert.ok(isMimeticReport(path.join(root, 'r')));
    assert.match(ok.stderr, /^report: layer 1\/2, \d+ s\nreport: layer 2\/2, \d+ s\n/, 'plain progress lines off a terminal');
    // The reference rows: what `mimetic score` gives on the same probe, in report.json, the index and the layer pages.
    const rj = JSON.parse(fs.readFileSync(path.join(root, 'r', 'report.json'), 'utf8')) as { reference: { default: { mimetic: number }; mimetic: { mimetic: number } }; layers: { page: string }[] };
    const sc = spawnSync(process.execPath, [CLI, 'score', fx, '--json', '--seq-len', '16', '--batch', '1', '--backend', 'wasm'], { encoding: 'utf8' });
    assert.equal(sc.status, 0, sc.stderr);
    assert.deepEqual(rj.reference, (JSON.parse(sc.stdout) as { reference: unknown }).reference);
    for (const page of ['index.html', rj.layers[0]!.page]) {
      const html = fs.readFileSync(path.join(root, 'r', page), 'utf8');
      assert.ok(html.includes(`<td>fresh default init</td><td class="n">${rj.reference.default.mimetic.toFixed(3)}</td>`), page);
      assert.ok(html.includes(`<td>fresh mimetic init</td><td class="n">${rj.reference.mimetic.mimetic.toFixed(3)}</td>`), page);
      assert.match(html, /ref rows: a fresh layer of this model/);
    }
    assert.match(ok.stdout, /\n\s*ref\s+mimetic\s+/);
    const noRef = run(['--out', 'r', '--seq-len', '16', '--batch', '1', '--backend', 'wasm', '--no-reference']);
    assert.equal(noRef.status, 0, noRef.stderr);
    assert.equal((JSON.parse(fs.readFileSync(path.join(root, 'r', 'report.json'), 'utf8')) as { reference: unknown }).reference, null);
    fs.mkdirSync(path.join(root, 'other'));
    const probeFile = path.join(root, 'p.json');
    fs.writeFileSync(probeFile, JSON.stringify({ ids: [[1, 2, 3, 4]], period: 9 }));
    const cases: [string[], RegExp][] = [
      [['--out', 'other'], /other: exists and is not a mimetic report/],
      [['--out', 'x1', '--layers', '5'], /outside the model/],
      [['--out', 'x2', '--probe', probeFile], /period/],
    ];
    for (const [args, re] of cases) {
      const r = run(args);
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^mimetic: /);
      assert.match(r.stderr, re);
    }
    assert.deepEqual(fs.readdirSync(root).sort(), ['other', 'p.json', 'r']);
    assert.deepEqual(fs.readdirSync(path.join(root, 'other')), []);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
