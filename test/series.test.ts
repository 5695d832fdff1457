/** The audit across training: `score`/`report --steps` over a tiny run's kept checkpoints agree with a separate `score` of each. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { tempDirs } from './helpers/tmpdir.js';
import { findSeries, selectSteps, SERIES_SCORES, type SeriesReportJson } from '../src/report/series.js';
import { UserError } from '../src/util/errors.js';

const tmp = tempDirs('mimetic-series-');
const main = path.resolve('dist/src/cli/main.js');
const cli = (args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' });
const probe = ['--seq-len', '32', '--batch-size', '2', '--backend', 'wasm'];

test('report --steps all: a depth × step heatmap and a chart per score; report.json equals score --json of each checkpoint', () => {
  const dir = tmp();
  const run = path.join(dir, 'run');
  const t = cli(['train', '--task', 'copy', '--arch', 'mamba2', '--n-layers', '2', '--d-model', '32', '--d-state', '8', '--head-dim', '16', '--steps', '6',
    '--batch-size', '4', '--lr', '1e-2', '--warmup', '1', '--checkpoint-steps', '1,2,4', '--seed', '0', '--backend', 'wasm', '--quiet', '--out', run]);
  assert.equal(t.status, 0, t.stderr);
  const series = findSeries(run);
  assert.deepEqual(series.map((s) => s.step), [1, 2, 4, 6]);

  const out = path.join(dir, 'rep');
  const r = cli(['report', run, '--steps', 'all', '--out', out, ...probe]);
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as SeriesReportJson;
  assert.equal(j.mimetic.format, 'mimetic-series-report');
  assert.deepEqual(j.steps, [1, 2, 4, 6]);
  assert.deepEqual(j.layers, [0, 1]);
  for (const s of SERIES_SCORES) {
    for (const f of [j.images[s].heatmap, j.images[s].chart]) {
      const png = fs.readFileSync(path.join(out, f));
      assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG', f);
    }
    assert.equal(j.matrices[s].length, 2);
    assert.equal(j.matrices[s][0]!.length, 4);
  }
  assert.match(fs.readFileSync(path.join(out, 'index.html'), 'utf8'), /img\/mimetic-heatmap\.png/);

  // The numbers: each checkpoint scored on its own, on the same probe, gives the same scores.
  for (const [k, c] of j.checkpoints.entries()) {
    const s = cli(['score', series[k]!.dir, '--json', '--no-reference', ...probe]);
    assert.equal(s.status, 0, s.stderr);
    const alone = (JSON.parse(s.stdout) as { layers: unknown[] }).layers;
    assert.deepEqual(c.layers, alone, `step ${c.step}`);
    for (const sc of SERIES_SCORES) {
      for (const [li, l] of (alone as Record<string, number | null>[]).entries()) assert.equal(j.matrices[sc][li]![k], l[sc], `${sc} layer ${li} step ${c.step}`);
    }
  }
  // Training changes the layers: the series is not one checkpoint repeated.
  assert.notDeepEqual(j.checkpoints[0]!.layers, j.checkpoints[3]!.layers);
  // the reference rows are scored once, for the series' shape
  assert.ok(j.reference && Number.isFinite(j.reference.mimetic.mimetic));

  // score --steps with a subset, as JSON; a folder of checkpoints (not a run) works the same
  const sj = cli(['score', run, '--steps', '2,6', '--json', '--no-reference', ...probe]);
  assert.equal(sj.status, 0, sj.stderr);
  const got = JSON.parse(sj.stdout) as { checkpoints: { step: number; layers: unknown }[] };
  assert.deepEqual(got.checkpoints.map((c) => c.step), [2, 6]);
  assert.deepEqual(got.checkpoints[1]!.layers, j.checkpoints[3]!.layers);
  const folder = path.join(dir, 'folder');
  fs.mkdirSync(folder);
  fs.cpSync(series[0]!.dir, path.join(folder, 'early'), { recursive: true });
  fs.cpSync(series[3]!.dir, path.join(folder, 'late'), { recursive: true });
  const fj = cli(['score', folder, '--steps', 'all', '--json', '--no-reference', ...probe]);
  assert.equal(fj.status, 0, fj.stderr);
  const byConfig = JSON.parse(fj.stdout) as { checkpoints: { step: number; layers: unknown }[] };
  assert.deepEqual(byConfig.checkpoints.map((c) => c.step), [1, 6]); // from config.json's mimetic.trained.steps
  assert.deepEqual(byConfig.checkpoints[1]!.layers, j.checkpoints[3]!.layers);

  // bad input: one line, exit 2
  const bad = cli(['score', run, '--steps', '3', ...probe]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--steps: '3' is not a kept step; the series has 1, 2, 4, 6/);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  const none = cli(['score', dir, '--steps', 'all', ...probe]);
  assert.equal(none.status, 2);
  assert.match(none.stderr, /no checkpoints found/);
});

test('selectSteps: all, a sorted subset, and unknown steps refused', () => {
  const all = [1, 2, 4].map((step) => ({ step, dir: `d${step}` }));
  assert.deepEqual(selectSteps(all, 'all'), all);
  assert.deepEqual(selectSteps(all, '4, 1').map((x) => x.step), [1, 4]);
  assert.throws(() => selectSteps(all, '5'), UserError);
  assert.throws(() => selectSteps(all, ''), UserError);
});
