import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { Command } from 'commander';
import { register as registerTrain } from '../src/cli/train.js';
import { expandRuns, parseRunFilters, parseSweepConfig, selectRuns } from '../src/train/sweep.js';
import { curveStat, meanStd, type SweepSummary } from '../src/train/sweep-report.js';
import { welch } from '../src/train/sweep-table.js';
import type { ExperimentsData } from '../src/train/experiments-report.js';
import { generalisationLengths } from '../src/tasks/common.js';
import { readMetrics } from '../src/train/metrics.js';
import { UserError } from '../src/util/errors.js';
import { tempDirs } from './helpers/tmpdir.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const EXPERIMENTS = fileURLToPath(new URL('../../experiments/', import.meta.url));
const tmp = tempDirs('mimetic-experiments-');

const known = (() => {
  const p = new Command();
  registerTrain(p);
  return new Set(p.commands[0]!.options.map((o) => o.attributeName()));
})();

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

// Tiny copy sweep: three inits (default, mimetic A only, all parts: an ablation) × two state sizes × two seeds.
const COPY = {
  name: 'tiny-copy',
  base: { task: 'copy', alphabet: 2, minLen: 1, maxLen: 3, context: 12, evalLengths: [2, 3, 4, 6, 9], layers: 1, dModel: 8, steps: 40, batch: 4, lr: 0.01, evalEvery: 20, evalExamples: 16, checkpointEvery: 20 },
  variants: [{ name: 'default', init: 'default' }, { name: 'mimetic-a', init: 'mimetic', mimetic: 'a' }, { name: 'mimetic', init: 'mimetic', mimetic: 'a,dt,bc,conv' }],
  grid: { dState: [2, 4], seed: [0, 1] },
};
const MQAR = {
  name: 'tiny-mqar',
  base: { task: 'mqar', vocab: 16, context: [16], kvPairs: [2, 4], evalLengths: [32], layers: 1, dModel: 8, dState: 4, steps: 20, batch: 4, lr: 0.01, evalEvery: 10, evalExamples: 8, checkpointEvery: 10 },
  grid: { init: ['default', 'mimetic'], seed: [0, 1] },
};

const close = (a: number, b: number, tol = 1e-12) => Math.abs(a - b) <= tol;

test('--where: filters by option or variant name, numbers compare as numbers, bad filters are one-line errors', () => {
  const runs = expandRuns(parseSweepConfig(COPY, 'c.json', known));
  assert.equal(runs.length, 12);
  const pick = (...f: string[]) => selectRuns(runs, parseRunFilters(f, runs)).map((r) => r.id);
  assert.deepEqual(pick('variant=mimetic', 'seed=1'), ['mimetic,dState=2,seed=1', 'mimetic,dState=4,seed=1']);
  assert.deepEqual(pick('variant=default,mimetic-a', 'd-state=4', 'seed=0'), ['default,dState=4,seed=0', 'mimetic-a,dState=4,seed=0']);
  assert.equal(pick('lr=1e-2').length, 12);
  assert.equal(pick('mimetic=a').length, 4);
  for (const [f, re] of [['lr', /give key=value/], ['sede=1', /no run of this sweep has the option sede/], ['seed=7', /no run has seed = 7; this sweep has 0, 1/], ['variant=x', /no run has variant = x/]] as const) {
    assert.throws(() => parseRunFilters([f], runs), (e: unknown) => e instanceof UserError && re.test((e as Error).message), f);
  }
  assert.throws(() => parseRunFilters(['variant=default', 'mimetic=a'], runs), /together these select no run/);
});

test('study configs: valid, the grids the issue asks for, string lengths 50-300 evaluated', () => {
  const cfg = (f: string) => parseSweepConfig(JSON.parse(fs.readFileSync(path.join(EXPERIMENTS, f), 'utf8')), f, known);
  const s1 = expandRuns(cfg('study1-copy.json'));
  assert.equal(s1.length, 2 * 2 * 3 * 5);
  assert.deepEqual([...new Set(s1.map((r) => r.variant))], ['mamba2-default', 'mamba2-mimetic', 'mamba1-default', 'mamba1-mimetic']);
  for (const r of s1) {
    assert.deepEqual(r.options.evalLengths, [50, 60, 75, 100, 125, 150, 200, 300]);
    assert.equal(r.options.steps, 5000);
    assert.equal(r.options.dState, r.options.arch === 'mamba2' ? 128 : 16);
  }
  // The decisive first slice is a --where selection of study 1: Mamba-2, lr 1e-3, 5 seeds × 2 inits.
  assert.equal(selectRuns(s1, parseRunFilters(['variant=mamba2-default,mamba2-mimetic', 'lr=0.001'], s1)).length, 10);
  const s2 = expandRuns(cfg('study2-state.json'));
  assert.deepEqual([...new Set(s2.map((r) => r.options.dState))].sort((a, b) => Number(a) - Number(b)), [16, 32, 64, 128, 256, 512]);
  assert.equal(s2.length, 2 * 6 * 3);
  const s3 = expandRuns(cfg('study3-ablation.json'));
  assert.equal(s3.length, 16 * 2 * 5);
  const subsets = new Set(s3.map((r) => `${r.options.arch}:${r.options.init === 'default' ? '' : String(r.options.mimetic)}`));
  assert.equal(subsets.size, 32);
  const s4 = expandRuns(cfg('study4-c.json'));
  assert.deepEqual([...new Set(s4.map((r) => r.options.aScale))], [2, 4, 8]);
  assert.equal(s4.length, 3 * 3);
  const s5 = expandRuns(cfg('study5-mqar.json'));
  assert.ok(s5.every((r) => r.options.task === 'mqar'));
  assert.deepEqual([...new Set(s5.map((r) => r.options.init))], ['default', 'mimetic']);
  assert.equal(new Set(s5.map((r) => r.seed)).size, 3);
});

test('experiments page over a copy and an MQAR sweep: every plotted number is the summary.json one, PNGs valid', async () => {
  const dir = tmp();
  for (const c of [COPY, MQAR]) {
    fs.writeFileSync(path.join(dir, `${c.name}.json`), JSON.stringify(c));
    const r = await cli(['sweep', path.join(dir, `${c.name}.json`), '--out', path.join(dir, c.name), '--parallel', '2', '--backend', 'cpu']);
    assert.equal(r.code, 0, r.stderr);
  }
  const sc = JSON.parse(fs.readFileSync(path.join(dir, 'tiny-copy', 'summary.json'), 'utf8')) as SweepSummary;
  const sm = JSON.parse(fs.readFileSync(path.join(dir, 'tiny-mqar', 'summary.json'), 'utf8')) as SweepSummary;

  // Summary: per run, generalisation lengths from the final evaluation and the metrics' own record.
  for (const r of sc.runs) {
    const ms = readMetrics(path.join(dir, 'tiny-copy', r.id, 'metrics.jsonl'));
    const last = ms.filter((m) => m.eval).at(-1)!;
    assert.deepEqual(r.gen, generalisationLengths(Object.values(last.eval!)));
    assert.deepEqual(last.gen, r.gen);
    for (const [k, v] of Object.entries(last.eval!)) {
      assert.equal(r.final[k]!.charAccuracy, v.charAccuracy);
      assert.equal(v.perPosition!.length, v.size);
    }
  }
  // Groups: means and stds of the runs' numbers, per-position curves from the metrics files.
  for (const g of sc.groups) {
    const rs = sc.runs.filter((r) => g.runs.includes(r.id));
    assert.deepEqual(g.gen, { string: meanStd(rs.map((r) => r.gen!.string)), char: meanStd(rs.map((r) => r.gen!.char)) });
    for (const [k, p] of Object.entries(g.final)) {
      assert.deepEqual(p.charAccuracy, meanStd(rs.map((r) => r.final[k]!.charAccuracy!)));
      const curves = rs.map((r) => readMetrics(path.join(dir, 'tiny-copy', r.id, 'metrics.jsonl')).filter((m) => m.eval).at(-1)!.eval![k]!.perPosition!);
      p.perPosition!.mean.forEach((m, i) => assert.ok(close(m, (curves[0]![i]! + curves[1]![i]!) / 2, 5e-5), `${g.group} ${k} position ${i}`));
      assert.deepEqual(p.perPosition, curveStat(curves));
    }
  }
  const allAcc = sc.runs.flatMap((r) => Object.values(r.final).map((v) => v.charAccuracy));
  assert.ok(new Set(allAcc).size > 3, 'the tiny runs must differ for the comparisons to mean something');

  const page = path.join(dir, 'page');
  const r = await cli(['experiments-report', path.join(dir, 'tiny-copy'), path.join(dir, 'tiny-mqar'), '--out', page]);
  assert.equal(r.code, 0, r.stderr);
  const d = JSON.parse(fs.readFileSync(path.join(page, 'experiments.json'), 'utf8')) as ExperimentsData;
  assert.deepEqual(d.sweeps.map((x) => x.name), ['tiny-copy', 'tiny-mqar']);
  const [c, m] = d.sweeps as [ExperimentsData['sweeps'][number], ExperimentsData['sweeps'][number]];
  const fig = (sec: typeof c, file: string) => sec.figures.find((f) => f.file === file) ?? assert.fail(`no figure ${file}: ${sec.figures.map((f) => f.file).join(', ')}`);
  const best = (s: SweepSummary, label: string) => s.groups.find((g) => g.group === s.bestLr[label]!.group)!;
  const labelOf = (name: string) => name.replace(/ \(lr [^)]*\)$/, '');
  // 1. Accuracy against length: string and char, copy; each point the group's final mean ± std.
  for (const [file, field] of [['s01-accuracy-string.png', 'string'], ['s01-accuracy-char.png', 'char']] as const) {
    const f = fig(c, file);
    assert.equal(f.series.length, 6);
    for (const se of f.series) {
      const g = best(sc, labelOf(se.name));
      se.x.forEach((x, i) => {
        const p = Object.values(g.final).find((v) => v.size === x)!;
        const st = field === 'string' ? p : p.charAccuracy!;
        assert.equal(se.y[i], st.mean);
        assert.equal(se.err[i], st.std);
      });
      assert.deepEqual(se.x, [2, 3, 4, 6, 9]);
    }
  }
  // 2. Generalisation lengths of every group.
  assert.deepEqual(c.gen.map((x) => [x.group, x.string, x.char]), sc.groups.map((g) => [g.group, g.gen!.string, g.gen!.char]));
  // 3. Against log2 N: one series per init, x = 1, 2 (N = 2, 4).
  const gs = fig(c, 's01-gen-vs-state-char.png');
  assert.deepEqual(gs.series.map((x) => x.name), ['default', 'mimetic-a', 'mimetic']);
  for (const se of gs.series) {
    assert.deepEqual(se.x, [1, 2]);
    se.y.forEach((y, i) => assert.equal(y, best(sc, `${se.name},dState=${2 ** (i + 1)}`).gen!.char.mean));
  }
  // 4. Ablation: rows none, a, all parts; facets by state size; string accuracy at the trained length 3, char at 6.
  const ab = fig(c, 's01-ablation-char.png');
  assert.deepEqual(ab.series.map((x) => x.name), ['dState=2', 'dState=4']);
  assert.deepEqual(ab.series[0]!.x, ['none (default init)', 'a', 'a+dt+bc+conv']);
  const variants = ['default', 'mimetic-a', 'mimetic'];
  ab.series.forEach((se, fi) => se.y.forEach((y, i) => assert.equal(y, best(sc, `${variants[i]},dState=${2 * (fi + 1)}`).final['len=6']!.charAccuracy!.mean)));
  fig(c, 's01-ablation-string.png').series[1]!.y.forEach((y, i) => assert.equal(y, best(sc, `${variants[i]},dState=4`).final['len=3']!.mean));
  // 5. Per-position curves at 1×, 2× and 3× the trained length (1.5× = 4.5 is not evaluated).
  assert.deepEqual(c.figures.filter((f) => f.file.includes('position')).map((f) => f.file), ['s01-position-3-char.png', 's01-position-3-string.png', 's01-position-6-char.png', 's01-position-6-string.png', 's01-position-9-char.png', 's01-position-9-string.png']);
  for (const se of fig(c, 's01-position-6-string.png').series) assert.deepEqual({ mean: se.y, std: se.err }, (({ mean, std }) => ({ mean, std }))(best(sc, labelOf(se.name)).final['len=6']!.prefix!));
  // MQAR: query accuracy against sequence length (mean over kv settings), per-query curve at the longest setting.
  const mq = fig(m, 's02-accuracy-query.png');
  for (const se of mq.series) {
    const g = best(sm, labelOf(se.name));
    se.x.forEach((x, i) => {
      const ps = Object.values(g.final).filter((v) => v.length === x);
      assert.ok(close(se.y[i]!, ps.reduce((a, p) => a + p.mean, 0) / ps.length));
    });
  }
  const pq = fig(m, 's02-position-query.png');
  assert.equal(pq.title, 'len=32,kv=4: accuracy of the i-th query');
  for (const se of pq.series) assert.deepEqual(se.y, best(sm, labelOf(se.name)).final['len=32,kv=4']!.perPosition!.mean);
  assert.equal(m.gen.length, 0);

  // The page: every image exists and is a PNG; nothing links outside the folder.
  const html = fs.readFileSync(path.join(page, 'index.html'), 'utf8');
  const imgs = [...html.matchAll(/<img src="([^"]+)"/g)].map((x) => x[1]!);
  assert.deepEqual(imgs.sort(), [...c.figures, ...m.figures].map((f) => f.file).sort());
  for (const img of imgs) {
    const meta = await sharp(fs.readFileSync(path.join(page, img))).metadata();
    assert.equal(meta.format, 'png');
    assert.ok(meta.width! > 300 && meta.height! > 200, img);
  }
  for (const h of html.matchAll(/href="([^"#][^"]*)"/g)) assert.ok(fs.existsSync(path.join(page, h[1]!)), h[1]);
  assert.match(html, /Ablation: mimetic parts/);
  assert.match(html, /Generalisation length against state size/);

  // A folder without summary.json: one line, exit 2, no page.
  const bad = await cli(['experiments-report', dir, '--out', path.join(dir, 'page2')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^mimetic: .*no summary\.json; give a sweep folder/);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  assert.ok(!fs.existsSync(path.join(dir, 'page2')));
});

test('welch: t and degrees of freedom as scipy.stats.ttest_ind(equal_var=False) and @stdlib/stats-ttest2 give them', () => {
  // Values from scipy 1.x (and @stdlib/stats-ttest2 0.2.3, which agrees to the last digit); t is for b − a.
  const cases: [number[], number[], number, number][] = [
    [[4, 5, 6], [1, 2, 3], -3.6742346141747673, 4],
    [[0.4, 0.45, 0.41], [0.5, 0.6, 0.9], 2.036011894865378, 2.0645985278397774],
  ];
  for (const [a, b, t, df] of cases) {
    const w = welch(a, b)!;
    assert.ok(close(w.t, t, 1e-12) && close(w.df, df, 1e-12), `${a} vs ${b}: t ${w.t}, df ${w.df}`);
  }
  assert.equal(welch([1], [2, 3]), null);
  assert.equal(welch([1, 1], [1, 1]), null);
});

test('reproduce.json is study 2 at N 32, run for run; --compare on H200 run folders prints scipy\'s Welch t', async () => {
  const cfg = (f: string) => parseSweepConfig(JSON.parse(fs.readFileSync(path.join(EXPERIMENTS, f), 'utf8')), f, known);
  const rp = expandRuns(cfg('reproduce.json'));
  const s2 = expandRuns(cfg('study2-state.json')).filter((r) => r.options.dState === 32);
  assert.equal(rp.length, 6);
  for (const r of rp) {
    const twin = s2.find((x) => x.variant === r.variant && x.seed === r.seed) ?? assert.fail(`no study 2 twin of ${r.id}`);
    assert.deepEqual(r.options, twin.options, r.id);
  }

  // Four finished transplant runs from the H200 (bench/results/lm-h200/lm-transplant), as a sweep of their own.
  const src = fileURLToPath(new URL('../../bench/results/lm-h200/lm-transplant/', import.meta.url));
  const whole = JSON.parse(fs.readFileSync(path.join(EXPERIMENTS, 'lm-transplant.json'), 'utf8')) as { base: object; variants: { name: string }[] };
  const dir = tmp();
  const four = { name: 'four', base: whole.base, variants: whole.variants.filter((v) => ['top-mixer', 'middle-ssm'].includes(v.name)), grid: { seed: [0, 1] } };
  fs.writeFileSync(path.join(dir, 'four.json'), JSON.stringify(four));
  const out = path.join(dir, 'four');
  for (const id of ['top-mixer,seed=0', 'top-mixer,seed=1', 'middle-ssm,seed=0', 'middle-ssm,seed=1']) {
    fs.mkdirSync(path.join(out, id), { recursive: true });
    for (const f of ['metrics.jsonl', 'run.json']) fs.copyFileSync(path.join(src, id, f), path.join(out, id, f));
  }
  const r = await cli(['sweep', path.join(dir, 'four.json'), '--out', out, '--report-only', '--compare', 'top-mixer,middle-ssm']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\(4\/4 runs complete\)/);
  // Character accuracy at 100 (middle-ssm − top-mixer), from the metrics files here; t and df from scipy on the same four values.
  const finalChar = (id: string) => readMetrics(path.join(out, id, 'metrics.jsonl')).filter((m) => m.eval).at(-1)!.eval!['len=100']!.charAccuracy!;
  const d = (finalChar('middle-ssm,seed=0') + finalChar('middle-ssm,seed=1') - finalChar('top-mixer,seed=0') - finalChar('top-mixer,seed=1')) / 2;
  const line = r.stdout.split('\n').find((l) => /^\s+len=100\s/.test(l)) ?? assert.fail(r.stdout);
  assert.match(line, new RegExp(`\\+${d.toFixed(2)}\\s+t 7\\.4, df 1\\.5`), line);
  assert.match(r.stdout.split('\n').find((l) => /^\s+len=75\s/.test(l))!, /\+0\.73\s+t 44\.3, df 2\.0\s+\+0\.08\s+t 2\.4, df 1\.0/);
  assert.match(r.stdout, /^middle-ssm lr=0\.001 − top-mixer lr=0\.001 \(2 vs 2 seeds; Welch's t\):$/m);
  // The table: a row per variant with its seeds' final figures.
  assert.match(r.stdout, /^middle-ssm lr=0\.001\s+2\s+1\.00±0\.01 \(1\.00±0\.00\)\s+0\.99±0\.01 \(1\.00±0\.00\)\s+0\.75±0\.02 /m);

  for (const [v, re] of [['top-mixer', /must name two different variants/], ['a,b,c', /must name two different variants/], ['top-mixer,nope', /nope has no completed runs in this sweep \(variants: top-mixer, middle-ssm\)/]] as const) {
    const bad = await cli(['sweep', path.join(dir, 'four.json'), '--out', out, '--report-only', '--compare', v]);
    assert.equal(bad.code, 2, `${v}: ${bad.stderr}`);
    assert.match(bad.stderr, re);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  }
});
