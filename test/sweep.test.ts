import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { bandRanges } from '../src/render/plot.js';
import { frameTicks } from '../src/render/chart.js';
import { Command } from 'commander';
import { register as registerTrain } from '../src/cli/train.js';
import { expandRuns, parseSweepConfig, trainArgs } from '../src/train/sweep.js';
import { meanStd, type SweepSummary } from '../src/train/sweep-report.js';
import { readMetrics } from '../src/train/metrics.js';
import { listCheckpoints } from '../src/train/state.js';
import { tempDirs } from './helpers/tmpdir.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const EXPERIMENTS = fileURLToPath(new URL('../../experiments/', import.meta.url));
const tmp = tempDirs('mimetic-sweep-');

const known = (() => {
  const p = new Command();
  registerTrain(p);
  return new Set(p.commands[0]!.options.map((o) => o.attributeName()));
})();

interface Res { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

function cli(args: string[], opts: { onSpawn?: (pid: number) => void } = {}): Promise<Res> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    if (opts.onSpawn && c.pid) opts.onSpawn(c.pid);
    c.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

// A tiny copy task: 2 inits × 2 seeds, a 1-layer d_model 8 Mamba, 40 steps (a few seconds per run).
const CONFIG = {
  name: 'tiny',
  base: {
    task: 'copy', alphabet: 2, minLen: 1, maxLen: 3, context: 12, evalLengths: [1, 2], layers: 1, dModel: 8, dState: 4,
    steps: 40, batch: 4, lr: 0.01, evalEvery: 10, evalExamples: 16, checkpointEvery: 3,
  },
  grid: { init: ['default', 'mimetic'], seed: [0, 1] },
};
const IDS = ['init=default,seed=0', 'init=default,seed=1', 'init=mimetic,seed=0', 'init=mimetic,seed=1'];

function writeConfig(dir: string, cfg: unknown, name = 'sweep.config.json'): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, JSON.stringify(cfg));
  return f;
}

const sweepArgs = (cfgFile: string, out: string, ...extra: string[]) => ['sweep', cfgFile, '--out', out, '--parallel', '2', '--backend', 'cpu', ...extra];

/** Every metrics line of every run (step, loss, eval), for exact comparison between sweeps. */
function runMetrics(out: string) {
  return Object.fromEntries(IDS.map((id) => [id, readMetrics(path.join(out, id, 'metrics.jsonl')).map(({ step, loss, lr, gradNorm, eval: e }) => ({ step, loss, lr, gradNorm, eval: e }))]));
}

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const metricsLines = (out: string) => IDS.map((id) => readMetrics(path.join(out, id, 'metrics.jsonl')).length);

test('config: grid × variants expand to stable run folders; train arguments; the shipped experiments are valid', () => {
  const cfg = parseSweepConfig({
    name: 'x', base: { task: 'copy', 'eval-lengths': [50, 100] },
    variants: [{ name: 'default', init: 'default' }, { name: 'mim-a', init: 'mimetic', mimetic: 'a' }],
    grid: { lr: [0.001, 0.0005], seed: [0, 1, 2] },
  }, 'x.json', known);
  const runs = expandRuns(cfg);
  assert.equal(runs.length, 12);
  assert.deepEqual(runs.slice(0, 3).map((r) => r.id), ['default,lr=0.001,seed=0', 'default,lr=0.001,seed=1', 'default,lr=0.001,seed=2']);
  assert.equal(runs[6]!.id, 'mim-a,lr=0.001,seed=0');
  assert.equal(new Set(runs.map((r) => r.group)).size, 4);
  assert.equal(new Set(runs.map((r) => r.label)).size, 2);
  assert.deepEqual(trainArgs(runs[6]!.options), ['--task', 'copy', '--eval-lengths', '50,100', '--init', 'mimetic', '--mimetic', 'a', '--lr', '0.001', '--seed', '0']);
  const sizes: Record<string, number> = { 'copy-mamba1.json': 30, 'copy-mamba2.json': 90, 'mqar.json': 60 };
  for (const [f, n] of Object.entries(sizes)) {
    const c = parseSweepConfig(JSON.parse(fs.readFileSync(path.join(EXPERIMENTS, f), 'utf8')), f, known);
    const rs = expandRuns(c);
    assert.equal(rs.length, n, f);
    assert.deepEqual([...new Set(rs.map((r) => r.lr))], [0.001, 0.0005, 0.0001], f);
    assert.deepEqual([...new Set(rs.map((r) => r.seed))], [0, 1, 2, 3, 4], f);
    assert.ok(c.description && c.description.length > 100, f);
  }
  const m2 = expandRuns(parseSweepConfig(JSON.parse(fs.readFileSync(path.join(EXPERIMENTS, 'copy-mamba2.json'), 'utf8')), 'm2', known));
  assert.deepEqual([...new Set(m2.map((r) => r.label))], ['default', 'mimetic', 'mimetic-a', 'mimetic-dt', 'mimetic-bc', 'mimetic-conv']);
  assert.deepEqual([...new Set(m2.map((r) => r.options.mimetic ?? '-'))], ['-', 'a,dt,bc,conv', 'a', 'dt', 'bc', 'conv']);
});

test('bad configs: one line, exit 2, nothing started', async () => {
  const dir = tmp();
  const bad: [unknown, RegExp][] = [
    [{ ...CONFIG, grid: { init: ['default'], sede: [0] } }, /grid\.sede: unknown option/],
    [{ ...CONFIG, grid: { init: [] } }, /grid\.init: is an empty list/],
    [{ ...CONFIG, grid: { lr: ['fast'] }, base: { ...CONFIG.base, lr: undefined } }, /grid\.lr\[0\]: "fast" must be a number/],
    [{ ...CONFIG, grid: { seed: 3 } }, /grid\.seed: must be a list/],
    [{ ...CONFIG, base: { ...CONFIG.base, steps: true } }, /base\.steps: true must be a number or a string/],
    [{ ...CONFIG, base: { ...CONFIG.base, out: 'x' } }, /the sweep sets --out itself/],
    [{ ...CONFIG, base: { ...CONFIG.base, token: 'hf_secret' } }, /a token does not belong in a sweep config/],
    [{ ...CONFIG, grid: { lr: [0.1] } }, /grid\.lr: also set in "base"/],
    [{ ...CONFIG, name: 'a/b' }, /"name" must be/],
    [{ ...CONFIG, variants: [{ seed: 1 }] }, /variants\[0\]\.seed: also a grid option/],
    [{ ...CONFIG, base: { ...CONFIG.base, init: 'fancy' }, grid: { seed: [0] } }, /base\.init: "fancy" is not one of default, mimetic/],
    // Values of the right type that `mimetic train` refuses: caught before any run starts.
    [{ ...CONFIG, grid: { lr: [-1] }, base: { ...CONFIG.base, lr: undefined } }, /run lr=-1: --lr: -1 must be a number > 0; fix the config/],
    [{ ...CONFIG, grid: { seed: [0], warmup: [5, 10000] } }, /run seed=0,warmup=10000: --warmup: 10000 must be an integer between 0 and --steps/],
  ];
  for (const [i, [cfg, re]] of bad.entries()) {
    const f = writeConfig(dir, cfg, `bad${i}.json`);
    const out = path.join(dir, `out${i}`);
    const r = await cli(sweepArgs(f, out));
    assert.equal(r.code, 2, `${i}: ${r.stderr}`);
    assert.match(r.stderr, re, String(i));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.ok(r.stderr.startsWith('mimetic: '), r.stderr);
    assert.ok(!fs.existsSync(out), `${i}: nothing may be created for a bad config`);
  }
  fs.writeFileSync(path.join(dir, 'notjson.json'), '{"name": ');
  const r = await cli(sweepArgs(path.join(dir, 'notjson.json'), path.join(dir, 'o')));
  assert.equal(r.code, 2);
  assert.match(r.stderr, /not valid JSON/);
  const r2 = await cli(sweepArgs(path.join(dir, 'missing.json'), path.join(dir, 'o')));
  assert.equal(r2.code, 2);
  const r3 = await cli([...sweepArgs(writeConfig(dir, CONFIG), path.join(dir, 'o')), '--parallel', '0']);
  assert.equal(r3.code, 2);
  assert.match(r3.stderr, /--parallel/);
});

let reference: { out: string; metrics: ReturnType<typeof runMetrics>; summary: SweepSummary } | undefined;

test('a tiny sweep runs to completion: summary.json aggregates the run folders, the report has valid PNGs', async () => {
  const dir = tmp();
  const out = path.join(dir, 'sweep');
  const r = await cli(sweepArgs(writeConfig(dir, CONFIG), out, '--compare', 'init=default,init=mimetic'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /4\/4 runs complete, 0 failed, 0 unfinished \(4 launched this time\)/);
  const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as SweepSummary;
  assert.equal(s.complete, true);
  assert.deepEqual(s.runs.map((x) => x.id), IDS);
  // Recompute every number from the run folders' metrics.
  const finals: Record<string, Record<string, number>> = {};
  for (const id of IDS) {
    const ms = readMetrics(path.join(out, id, 'metrics.jsonl'));
    assert.equal(ms.at(-1)!.step, 40);
    const last = ms.filter((m) => m.eval).at(-1)!;
    assert.equal(last.step, 40);
    finals[id] = Object.fromEntries(Object.entries(last.eval!).map(([k, v]) => [k, v.accuracy]));
    const run = s.runs.find((x) => x.id === id)!;
    assert.equal(run.status, 'finished');
    assert.equal(run.step, 40);
    assert.deepEqual(Object.fromEntries(Object.entries(run.final).map(([k, v]) => [k, v.accuracy])), finals[id]);
    for (const k of Object.keys(finals[id]!)) assert.equal(run.best[k], Math.max(...ms.filter((m) => m.eval).map((m) => m.eval![k]!.accuracy)));
    assert.equal(listCheckpoints(path.join(out, id)).at(-1)!.step, 40);
  }
  assert.deepEqual(Object.keys(finals[IDS[0]!]!).sort(), ['len=1', 'len=2', 'len=3']);
  for (const init of ['default', 'mimetic']) {
    const g = s.groups.find((x) => x.label === `init=${init}`)!;
    assert.equal(g.n, 2);
    for (const k of ['len=1', 'len=2', 'len=3']) {
      const xs = [0, 1].map((seed) => finals[`init=${init},seed=${seed}`]![k]!);
      const mean = (xs[0]! + xs[1]!) / 2;
      const std = Math.abs(xs[0]! - xs[1]!) / Math.SQRT2; // sample std of two values
      assert.ok(Math.abs(g.final[k]!.mean - mean) < 1e-12, `${init} ${k} mean`);
      assert.ok(Math.abs(g.final[k]!.std - std) < 1e-12, `${init} ${k} std`);
    }
    assert.equal(s.bestLr[`init=${init}`]!.lr, 0.01);
  }
  // The table and the comparison the completed sweep printed: each group's mean string accuracy, and mimetic − default.
  const mean2 = (init: string, k: string) => (finals[`init=${init},seed=0`]![k]! + finals[`init=${init},seed=1`]![k]!) / 2;
  for (const init of ['default', 'mimetic']) {
    const row = r.stdout.split('\n').find((l) => l.startsWith(`init=${init} lr=0.01 `)) ?? assert.fail(r.stdout);
    assert.match(row, new RegExp(`^init=${init} lr=0\\.01\\s+2\\s+${mean2(init, 'len=1').toFixed(2)}`), row);
  }
  assert.match(r.stdout, /^init=mimetic lr=0\.01 − init=default lr=0\.01 \(2 vs 2 seeds; Welch's t\):$/m);
  for (const k of ['len=1', 'len=2', 'len=3']) {
    const d = mean2('mimetic', k) - mean2('default', k);
    const line = r.stdout.split('\n').find((l) => new RegExp(`^\\s+${k}\\s`).test(l)) ?? assert.fail(r.stdout);
    assert.match(line, new RegExp(`^\\s+${k}\\s+${d >= 0 ? '\\+' : '-'}${Math.abs(d).toFixed(2)}\\s`), line);
  }
  // The accuracies must vary across runs for the check above to mean something.
  assert.ok(new Set(IDS.flatMap((id) => Object.values(finals[id]!))).size > 1, 'all accuracies equal: the tiny task is too easy or too hard to test aggregation');
  const html = fs.readFileSync(path.join(out, 'report', 'index.html'), 'utf8');
  // lr is not in the grid: no "best lr" (every run used base's 0.01).
  assert.match(html, /<h2>Results per init<\/h2>/);
  assert.match(html, /<th class="n">lr<\/th>/);
  assert.doesNotMatch(html, /best lr/i);
  const imgs = [...html.matchAll(/<img src="([^"]+)"/g)].map((m) => m[1]!);
  assert.ok(imgs.includes('accuracy-vs-length.png') && imgs.includes('loss.png'), imgs.join(','));
  for (const img of imgs) {
    const buf = fs.readFileSync(path.join(out, 'report', img));
    assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], img);
    const meta = await sharp(buf).metadata();
    assert.equal(meta.format, 'png');
    assert.ok(meta.width! > 100 && meta.height! > 100);
  }
  for (const m of html.matchAll(/href="\.\.\/([^"]+)"/g)) assert.ok(fs.existsSync(path.join(out, decodeURIComponent(m[1]!))), m[1]);
  reference = { out, metrics: runMetrics(out), summary: s };
});

test('re-running a finished sweep starts no child; --report-only rebuilds the same summary', async () => {
  assert.ok(reference, 'needs the previous test');
  const { out } = reference;
  const logs = IDS.map((id) => fs.readFileSync(path.join(out, 'logs', `${id}.log`), 'utf8'));
  const mtimes = IDS.map((id) => fs.statSync(path.join(out, id, 'metrics.jsonl')).mtimeMs);
  const cfgFile = writeConfig(path.dirname(out), CONFIG);
  const r = await cli(sweepArgs(cfgFile, out));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /4\/4 runs complete, 0 failed, 0 unfinished \(0 launched this time\)/);
  assert.deepEqual(IDS.map((id) => fs.readFileSync(path.join(out, 'logs', `${id}.log`), 'utf8')), logs);
  assert.deepEqual(IDS.map((id) => fs.statSync(path.join(out, id, 'metrics.jsonl')).mtimeMs), mtimes);
  fs.rmSync(path.join(out, 'summary.json'));
  fs.rmSync(path.join(out, 'report'), { recursive: true });
  const rr = await cli(['sweep', cfgFile, '--out', out, '--report-only']);
  assert.equal(rr.code, 0, rr.stderr);
  const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as SweepSummary;
  assert.deepEqual({ ...s, created: '' }, { ...reference.summary, created: '' });
  assert.ok(fs.existsSync(path.join(out, 'report', 'accuracy-vs-length.png')));
  // A copy without checkpoints (as sweeps come back from a GPU host) reports the same results.
  const bare = path.join(path.dirname(out), 'bare');
  fs.cpSync(out, bare, { recursive: true, filter: (src) => path.basename(src) !== 'checkpoints' });
  fs.rmSync(path.join(bare, 'summary.json'));
  const rb = await cli(['sweep', cfgFile, '--out', bare, '--report-only']);
  assert.equal(rb.code, 0, rb.stderr);
  const sb = JSON.parse(fs.readFileSync(path.join(bare, 'summary.json'), 'utf8')) as SweepSummary;
  assert.deepEqual(sb.counts, reference.summary.counts);
  assert.deepEqual(sb.groups, reference.summary.groups);
  assert.deepEqual(sb.runs.map((r) => [r.id, r.status, r.final]), reference.summary.runs.map((r) => [r.id, r.status, r.final]));
  // A config that no longer matches the runs already made is refused.
  const changed = writeConfig(path.dirname(out), { ...CONFIG, base: { ...CONFIG.base, steps: 50 } }, 'changed.json');
  const rc = await cli(sweepArgs(changed, out));
  assert.equal(rc.code, 2);
  assert.match(rc.stderr, /started with steps = 40, the config now says 50/);
});

test('a killed sweep resumes every run from its checkpoint and ends with the same metrics as an uninterrupted one', async () => {
  assert.ok(reference, 'needs the reference sweep');
  const dir = tmp();
  const out = path.join(dir, 'sweep');
  const cfgFile = writeConfig(dir, CONFIG);
  // 1. SIGTERM: the sweep asks its children to checkpoint and stop, and exits 75.
  let pid = 0;
  const p1 = cli(sweepArgs(cfgFile, out), { onSpawn: (x) => (pid = x) });
  await waitFor(() => metricsLines(out).some((n) => n >= 4), 60_000);
  process.kill(pid, 'SIGTERM');
  const r1 = await p1;
  assert.equal(r1.code, 75, r1.stderr);
  const partial = IDS.map((id) => listCheckpoints(path.join(out, id)).at(-1)?.step ?? 0);
  assert.ok(partial.some((st) => st > 0 && st < 40), `some run must stop mid-way: ${partial.join(',')}`);
  const s1 = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as SweepSummary;
  assert.equal(s1.complete, false);
  assert.ok(s1.runs.some((x) => x.status === 'partial'));
  // 2. SIGKILL of the sweep itself: its children live on; the next sweep stops them (they checkpoint) and resumes.
  const p2 = cli(sweepArgs(cfgFile, out), { onSpawn: (x) => (pid = x) });
  const before = metricsLines(out).reduce((a, b) => a + b, 0);
  await waitFor(() => metricsLines(out).reduce((a, b) => a + b, 0) >= before + 3, 60_000);
  process.kill(pid, 'SIGKILL');
  await p2;
  // 3. A slice of 0 minutes launches nothing.
  const r0 = await cli(sweepArgs(cfgFile, out, '--slice-minutes', '0'));
  assert.equal(r0.code, 75, r0.stderr);
  assert.match(r0.stdout, /\(0 launched this time\)/);
  // 4. Resume to the end.
  const r3 = await cli(sweepArgs(cfgFile, out));
  assert.equal(r3.code, 0, r3.stderr);
  assert.match(r3.stdout, /4\/4 runs complete/);
  assert.deepEqual(runMetrics(out), reference.metrics);
  const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as SweepSummary;
  assert.deepEqual(s.runs.map((x) => x.final), reference.summary.runs.map((x) => x.final));
  assert.deepEqual(s.groups, reference.summary.groups);
});

test('a run the trainer rejects is recorded as failed (exit 3), skipped on re-run, tried again with --retry-failed', async () => {
  const dir = tmp();
  const out = path.join(dir, 'sweep');
  // Options the sweep checks up front (a 5-token row cannot hold a 3-letter copy example) never launch.
  const early = await cli(sweepArgs(writeConfig(dir, { ...CONFIG, base: { ...CONFIG.base, context: 5 }, grid: { seed: [0] } }, 'early.json'), path.join(dir, 'early')));
  assert.equal(early.code, 2, early.stderr);
  assert.match(early.stderr, /run seed=0: --context 5 is too short/);
  assert.ok(!fs.existsSync(path.join(dir, 'early')));
  // A run from a checkpoint is left to the child, which refuses a missing one: recorded as failed.
  const { layers: _l, dModel: _d, dState: _s, ...fromModel } = CONFIG.base;
  const f = writeConfig(dir, { ...CONFIG, base: { ...fromModel, model: path.join(dir, 'no-such-checkpoint') }, grid: { seed: [0] } });
  const r = await cli(sweepArgs(f, out));
  assert.equal(r.code, 3, r.stderr);
  const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as SweepSummary;
  assert.equal(s.runs[0]!.status, 'failed');
  assert.match(s.runs[0]!.error!, /^mimetic: .*no-such-checkpoint: no such file or folder/);
  const r2 = await cli(sweepArgs(f, out));
  assert.equal(r2.code, 3);
  assert.match(r2.stdout, /\(0 launched this time\)/);
  const r3 = await cli([...sweepArgs(f, out), '--retry-failed']);
  assert.equal(r3.code, 3);
  assert.match(r3.stdout, /\(1 launched this time\)/);
  const s3 = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as SweepSummary;
  assert.match(s3.runs[0]!.error!, /^mimetic: .*no-such-checkpoint: no such file or folder/);
  assert.match(fs.readFileSync(path.join(out, 'logs', `${s3.runs[0]!.id}.log`), 'utf8'), /=== .* start: train --task copy[^\n]*--model [^\n]*no-such-checkpoint[\s\S]*=== .* start: train --task copy/);
});

test('meanStd: sample standard deviation', () => {
  const st = meanStd([0.5, 0.75, 1]);
  assert.equal(st.mean, 0.75);
  assert.ok(Math.abs(st.std - 0.25) < 1e-15);
  assert.deepEqual(meanStd([0.3]), { mean: 0.3, std: 0, n: 1 });
});

test('sweep charts: one length is one x tick, a flat loss gets readable y ticks', () => {
  const one = bandRanges({ series: [{ name: 'a', x: [3], y: [0.5] }] });
  assert.deepEqual(frameTicks(one.xr, one.yr, 500, one.xInt).x, [3]);
  const lengths = bandRanges({ series: [{ name: 'a', x: [50, 100, 200, 300], y: [1, 0, 0, 0] }] });
  assert.ok(frameTicks(lengths.xr, lengths.yr, 500, lengths.xInt).x.every((t) => Number.isInteger(t)));
  const flat = bandRanges({ series: [{ name: 'loss', x: [1, 2, 3], y: [2.30001, 2.30003, 2.30002] }] });
  const yt = frameTicks(flat.xr, flat.yr, 500, flat.xInt).y;
  assert.ok(yt.length >= 2 && yt[1]! - yt[0]! >= 0.005, `ticks ${yt.join(', ')}`);
  assert.ok(flat.yr[0] <= 2.30001 && flat.yr[1] >= 2.30003);
  // Fractional x keeps fractional ticks; a real range keeps its own ticks.
  const frac = bandRanges({ series: [{ name: 'a', x: [0.1, 0.2], y: [0, 1] }] });
  assert.ok(frameTicks(frac.xr, frac.yr, 500, frac.xInt).x.length >= 2);
  assert.deepEqual(bandRanges({ series: [{ name: 'a', x: [0, 1], y: [0, 0.8] }] }).yr, [0, 0.8]);
});

test('--only: a sweep runs just its runs under a per-run lock; a whole-folder sweep meanwhile leaves those runs to it', async () => {
  const dir = tmp();
  const out = path.join(dir, 'sweep');
  const f = writeConfig(dir, { ...CONFIG, base: { ...CONFIG.base, steps: 300, checkpointEvery: 100, evalEvery: 100 }, grid: { seed: [0, 1] } });
  const only = cli(['sweep', f, '--out', out, '--backend', 'cpu', '--only', 'seed=0']);
  await waitFor(() => fs.existsSync(path.join(out, '.sweep', 'seed=0.lock')) && fs.existsSync(path.join(out, 'seed=0', 'metrics.jsonl')), 60_000);
  const whole = await cli(['sweep', f, '--out', out, '--backend', 'cpu']);
  assert.match(whole.stderr, /2 runs: 0 finished, 0 failed, 1 to run, 1 run by other sweeps \(--only\)/);
  const r = await only;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /1\/1 runs complete, 0 failed, 0 unfinished \(1 launched this time\)/);
  assert.ok(!fs.existsSync(path.join(out, '.sweep', 'seed=0.lock')), 'the lock is released');
  // Each run was started exactly once, by one sweep.
  for (const id of ['seed=0', 'seed=1']) assert.equal(fs.readFileSync(path.join(out, 'logs', `${id}.log`), 'utf8').match(/=== .* start: /g)?.length, 1, id);
  assert.equal(readMetrics(path.join(out, 'seed=0', 'metrics.jsonl')).at(-1)!.step, 300);
});
