/** An LM sweep's summary: held-out bits per byte per step per init (mean ± std over seeds), its figure, and the experiments page with the series reports. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import sharp from 'sharp';
import { register as registerTrain } from '../src/cli/train.js';
import { parseSweepConfig } from '../src/train/sweep.js';
import { heldoutSeries, writeSweepReport } from '../src/train/sweep-report.js';
import { writeExperimentsReport } from '../src/train/experiments-report.js';
import { evalTaskOf } from '../src/train/figures.js';
import { renderBandChart } from '../src/render/plot.js';
import { tempDirs } from './helpers/tmpdir.js';

const tmp = tempDirs('mimetic-lm-report-');
const known = (() => {
  const p = new Command();
  registerTrain(p);
  return new Set(p.commands[0]!.options.map((o) => o.attributeName()));
})();

test('heldoutSeries: the steps every run evaluated, mean and sample std there', () => {
  const h = heldoutSeries([
    [{ step: 10, bpb: 7 }, { step: 20, bpb: 6 }],
    [{ step: 10, bpb: 5 }, { step: 20, bpb: 4 }, { step: 30, bpb: 3 }],
  ])!;
  assert.deepEqual(h.steps, [10, 20]);
  assert.deepEqual(h.bpb, [{ mean: 6, std: 1.4142, n: 2 }, { mean: 5, std: 1.4142, n: 2 }]);
  assert.equal(heldoutSeries([]), null);
  assert.equal(heldoutSeries([[{ step: 10, bpb: 1 }], [{ step: 20, bpb: 1 }]]), null, 'no step in common');
  assert.deepEqual(heldoutSeries([[{ step: 4, bpb: 2.5 }]])!.bpb, [{ mean: 2.5, std: 0, n: 1 }]);
});

/** Held-out bits per byte of each run at steps 10, 20, 30 (by init, then seed); the partial run stops at 20. */
const BPB: Record<string, number[]> = {
  'default,seed=0': [7.0, 5.0, 4.0],
  'default,seed=1': [6.0, 4.0, 3.0],
  'mimetic,seed=0': [6.5, 4.5, 3.25],
  'mimetic,seed=1': [6.5, 3.5, 2.75],
  'mimetic,seed=2': [9.0, 9.0], // partial: left out of the aggregate
};

function fakeSweep(dir: string): ReturnType<typeof parseSweepConfig> {
  const cfg = parseSweepConfig({
    name: 'tiny-lm',
    base: { task: 'lm', data: 'corpus', context: 32, evalTasks: 'copy', evalLengths: [10, 20], steps: 30, evalEvery: 10 },
    variants: [{ name: 'default', init: 'default' }, { name: 'mimetic', init: 'mimetic' }],
    grid: { seed: [0, 1, 2] },
  }, 'tiny-lm.json', known);
  for (const [id, bpb] of Object.entries(BPB)) {
    fs.mkdirSync(path.join(dir, id), { recursive: true });
    fs.writeFileSync(path.join(dir, id, 'run.json'), JSON.stringify({ config: { steps: 30 } }));
    const lines = [];
    for (let step = 1; step <= bpb.length * 10; step++) {
      const line: Record<string, unknown> = { step, loss: 5 - step / 10, lr: 1e-3, gradNorm: 1, tokensPerSec: 1, elapsed: step };
      if (step % 10 === 0) {
        const b = bpb[step / 10 - 1]!;
        line.heldout = { loss: b * Math.LN2, bpb: b, ppl: 2 ** b, accuracy: 0.1, tokens: 100 };
        line.eval = Object.fromEntries([10, 20].map((n) => [`copy:len=${n}`, { length: 2 * n + 3, size: n, train: false, examples: 4, accuracy: 0, charAccuracy: 0.5 - n / 100 }]));
      }
      lines.push(JSON.stringify(line));
    }
    fs.writeFileSync(path.join(dir, id, 'metrics.jsonl'), lines.join('\n') + '\n');
  }
  return cfg;
}

test('an LM sweep: summary.json holds held-out bits per byte per step per init; the sweep report and the experiments page plot it and embed the series heatmaps', async () => {
  const dir = tmp();
  const cfg = fakeSweep(dir);
  const s = await writeSweepReport(cfg, dir);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8')).groups.map((g: { heldout: unknown }) => g.heldout), s.groups.map((g) => g.heldout));
  const byLabel = Object.fromEntries(s.groups.map((g) => [g.label, g]));
  assert.deepEqual(byLabel.default!.heldout, { steps: [10, 20, 30], bpb: [{ mean: 6.5, std: 0.7071, n: 2 }, { mean: 4.5, std: 0.7071, n: 2 }, { mean: 3.5, std: 0.7071, n: 2 }] });
  assert.deepEqual(byLabel.mimetic!.heldout, { steps: [10, 20, 30], bpb: [{ mean: 6.5, std: 0, n: 2 }, { mean: 4, std: 0.7071, n: 2 }, { mean: 3, std: 0.3536, n: 2 }] });
  // no checkpoint, so nothing past step 0 counts (a resumed run rewrites those lines)
  assert.equal(s.runs.find((r) => r.id === 'mimetic,seed=2')!.heldout, undefined);
  assert.equal(s.runs.find((r) => r.id === 'mimetic,seed=2')!.status, 'partial');
  assert.ok(s.notes.some((n) => n.startsWith('heldout (lm)')));
  assert.equal(evalTaskOf(s), 'copy', 'the copy evaluations of an LM sweep are drawn as copy figures');
  const png = await sharp(path.join(dir, 'report', 'heldout-bpb.png')).metadata();
  assert.equal(png.format, 'png');
  assert.match(fs.readFileSync(path.join(dir, 'report', 'index.html'), 'utf8'), /heldout-bpb\.png/);
  assert.ok(fs.existsSync(path.join(dir, 'report', 'char-accuracy-vs-length.png')), 'the copy evaluations: character accuracy against length');

  // a series report inside the sweep folder (as scripts/gpu-lm.sh writes it)
  const series = path.join(dir, 'series-default-0');
  fs.mkdirSync(path.join(series, 'img'), { recursive: true });
  fs.writeFileSync(path.join(series, 'index.html'), '<html></html>');
  const heat = await renderBandChart({ series: [{ name: 'x', x: [1, 2], y: [0, 1] }], title: 'maskOnes', xLabel: 'step', yLabel: 'layer' });
  fs.writeFileSync(path.join(series, 'img', 'maskOnes-heatmap.png'), heat);
  const out = path.join(tmp(), 'page');
  const data = await writeExperimentsReport([dir], out);
  const sec = data.sweeps[0]!;
  const fig = sec.figures.find((f) => f.file === 's01-heldout-bpb.png')!;
  assert.deepEqual(fig.series.map((x) => [x.name, x.x, x.y, x.err]), [
    ['default (lr default)', [10, 20, 30], [6.5, 4.5, 3.5], [0.7071, 0.7071, 0.7071]],
    ['mimetic (lr default)', [10, 20, 30], [6.5, 4, 3], [0, 0.7071, 0.3536]],
  ]);
  assert.ok(!sec.figures.some((f) => f.file.includes('query')), 'no MQAR figures for copy evaluations');
  assert.deepEqual(sec.series, [{ name: 'series-default-0', index: path.relative(out, path.join(series, 'index.html')), heatmaps: 1 }]);
  assert.deepEqual(fs.readFileSync(path.join(out, 's01-series1-maskOnes-heatmap.png')), heat);
  const html = fs.readFileSync(path.join(out, 'index.html'), 'utf8');
  assert.ok(html.includes(`href="${path.relative(out, path.join(series, 'index.html'))}"`));
  assert.match(html, /Held-out bits per byte<\/h3>[\s\S]*<td class="n">30<\/td><td class="n">3\.500 ± 0\.707<\/td>/);
});
