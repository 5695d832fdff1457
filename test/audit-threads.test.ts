/**
 * The audit on several threads (issue 17, src/analysis/audit-threads.ts): the probe's rows split
 * between this thread and workers give the single-threaded audit's scores and detail; the
 * fixtures' goldens still hold with threads 2; --threads is checked as one line, exit 2; a
 * worker's error is one line too, and no worker keeps a process alive.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { SafetensorsReader } from '../src/checkpoint/safetensors.js';
import { initBackend } from '../src/model/backend.js';
import { auditCheckpoint, auditThreads, type LayerAudit, type LayerDetail } from '../src/analysis/audit.js';
import { THREADED_MAX_PARAMS, closeAuditThreads, defaultThreads, parseThreads, splitRows, startRowsJobs, workerExecArgv } from '../src/analysis/audit-threads.js';
import { defaultProbe } from '../src/analysis/probe.js';
import { referenceScores } from '../src/analysis/reference.js';
import { lookbehind, maskOnes } from '../src/analysis/scores.js';
import { UserError } from '../src/util/errors.js';
import { goldenIds } from './helpers/golden.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');

after(() => closeAuditThreads());

const SCORE_KEYS = ['cbIdentity', 'cbRowCos', 'maskOnes', 'lookbehind', 'mimetic'] as const;

function close(a: ArrayLike<number>, b: ArrayLike<number>, what: string, tol = 1e-6): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let k = 0; k < a.length; k++) assert.ok(Math.abs(a[k]! - b[k]!) <= tol, `${what}[${k}]: ${a[k]} vs ${b[k]}`);
}

function sameDetail(a: LayerDetail, b: LayerDetail, what: string): void {
  for (const k of ['attention', 'decay', 'qk', 'cbGram', 'A', 'delta', 'channelMaskOnes', 'channelMimetic'] as const) close(a[k], b[k], `${what} ${k}`);
  if (a.channelLookbehind || b.channelLookbehind) close(a.channelLookbehind!, b.channelLookbehind!, `${what} channelLookbehind`);
  // The channels picked for the report are the same ones, with the same maps.
  for (const side of ['most', 'least'] as const) {
    assert.deepEqual(a[side].map((c) => c.index), b[side].map((c) => c.index), `${what} ${side}`);
    a[side].forEach((c, j) => close(c.attention, b[side][j]!.attention, `${what} ${side}[${j}] map`));
  }
}

test('splitRows and parseThreads', () => {
  assert.deepEqual(splitRows([1, 2, 3, 4], 2), [[1, 2], [3, 4]]);
  assert.deepEqual(splitRows([1, 2, 3, 4, 5], 3), [[1, 2], [3, 4], [5]]);
  assert.deepEqual(splitRows([1, 2], 4), [[1], [2]]);
  assert.deepEqual(splitRows([1, 2, 3], 1), [[1, 2, 3]]);
  assert.equal(parseThreads(undefined), null);
  assert.equal(parseThreads(' 3 '), 3);
  for (const bad of ['0', '-1', '1.5', 'two', '', '2e0', '0x2']) assert.throws(() => parseThreads(bad), (e: unknown) => e instanceof UserError && /--threads/.test((e as Error).message), bad);
  // The default: the cores, at most one per probe row; one thread for a model whose copies per thread would not fit (1.4B and up).
  const cores = os.availableParallelism();
  assert.equal(defaultThreads(4), Math.min(cores, 4));
  assert.equal(defaultThreads(1), 1);
  assert.equal(defaultThreads(4, 129_135_360), Math.min(cores, 4), 'mamba-130m: threaded');
  assert.equal(defaultThreads(4, 1_372_178_432), 1, 'mamba-1.4b: one thread');
  assert.equal(defaultThreads(4, THREADED_MAX_PARAMS + 1), 1);
});

for (const fx of ['mamba1-tiny', 'mamba2-tiny']) {
  test(`${fx}: the audit on 2 threads gives the single-threaded scores and detail; the goldens hold`, async () => {
    await initBackend('wasm');
    const dir = path.join(FIXTURES, fx);
    const g = SafetensorsReader.open(path.join(dir, 'golden.safetensors'));
    const ckpt = Checkpoint.open(dir);
    try {
      const ids = goldenIds(g);
      const B = ids.length, L = ids[0]!.length;
      const period = 5; // as scores.test.ts: the goldens' ids have no period; the formula takes the one given
      const run = async (threads: number) => {
        const audits: LayerAudit[] = [];
        const res = await auditCheckpoint(ckpt, { probe: { ids, period }, detail: true, threads, onLayer: (a) => { audits.push(a); } });
        return { res, audits };
      };
      const one = await run(1), two = await run(2);
      assert.equal(one.res.threads, 1);
      assert.equal(two.res.threads, 2);
      assert.equal(auditThreads(8, B), B, 'at most one thread per row');
      assert.deepEqual(two.res.layers.map((l) => l.rank), one.res.layers.map((l) => l.rank));
      for (const [k, l] of two.res.layers.entries()) {
        for (const key of SCORE_KEYS) assert.ok(Math.abs((l[key] ?? 0) - (one.res.layers[k]![key] ?? 0)) <= 1e-6, `layer ${l.layer} ${key}: ${l[key]} vs ${one.res.layers[k]![key]}`);
      }
      assert.equal(two.audits.length, ckpt.config.numLayers);
      for (const [k, a] of two.audits.entries()) {
        const i = a.scores.layer;
        sameDetail(a.detail!, one.audits[k]!.detail!, `layer ${i}`);
        assert.equal(a.detail!.batch, B);
        assert.equal(a.detail!.delta.length, one.audits[k]!.detail!.delta.length, 'Δ of every row');
        // The goldens (PyTorch), as scores.test.ts checks them single-threaded.
        const att = g.readFloat32(`layers.${i}.attention`).data, dec = g.readFloat32(`layers.${i}.decay`).data;
        const gm = maskOnes(dec, B, L), gl = lookbehind(att, B, L, period)!;
        assert.ok(Math.abs(a.scores.maskOnes - gm) < 1e-5, `layer ${i} maskOnes ${a.scores.maskOnes} vs golden ${gm}`);
        assert.ok(Math.abs(a.scores.lookbehind! - gl) < 1e-4 * Math.max(1, gl), `layer ${i} lookbehind ${a.scores.lookbehind} vs golden ${gl}`);
        close(a.detail!.attention, meanRows(att, B), `layer ${i} attention vs golden`, 1e-4);
        close(a.detail!.decay, meanRows(dec, B), `layer ${i} decay vs golden`, 1e-4);
      }
    } finally {
      ckpt.close();
      g.close();
    }
  });
}

function meanRows(d: Float32Array, B: number): Float32Array {
  const n = d.length / B, out = new Float32Array(n);
  for (let b = 0; b < B; b++) for (let q = 0; q < n; q++) out[q]! += d[b * n + q]! / B;
  return out;
}

test('4 rows on 3 threads, a layer subset, and the reference rows: the single-threaded scores', async () => {
  await initBackend('wasm');
  const ckpt = Checkpoint.open(path.join(FIXTURES, 'mamba2-tiny'));
  try {
    const probe = defaultProbe(64, { batch: 4, seqLen: 32 });
    const one = await auditCheckpoint(ckpt, { probe, layers: [1], threads: 1 });
    const three = await auditCheckpoint(ckpt, { probe, layers: [1], threads: 3 });
    assert.equal(three.threads, 3);
    assert.deepEqual(three.layers, one.layers);
    const r1 = await referenceScores(ckpt.config, probe, { threads: 1 });
    const r2 = await referenceScores(ckpt.config, probe, { threads: 2 });
    for (const k of ['default', 'mimetic'] as const) for (const key of SCORE_KEYS) assert.ok(Math.abs((r2[k][key] ?? 0) - (r1[k][key] ?? 0)) <= 1e-6, `ref ${k} ${key}`);
  } finally {
    ckpt.close();
  }
});

test('an id out of the vocabulary in a later row is named by its row in the probe, not in a chunk', async () => {
  await initBackend('wasm');
  const ckpt = Checkpoint.open(path.join(FIXTURES, 'mamba1-tiny'));
  try {
    const ids = [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 999, 4]];
    const msg = async (threads: number) => {
      try {
        await auditCheckpoint(ckpt, { probe: { ids, period: null }, threads });
      } catch (e) {
        assert.ok(e instanceof UserError, String(e));
        return (e as Error).message;
      }
      assert.fail('no error');
    };
    assert.equal(await msg(2), await msg(1));
    assert.match(await msg(2), /3/);
  } finally {
    ckpt.close();
  }
});

test("a worker's error reaches the caller as the worker's UserError", async () => {
  await initBackend('wasm');
  const [s] = startRowsJobs([{ source: path.join(FIXTURES, 'no-such-checkpoint'), backend: 'wasm', ids: [[1, 2, 3]], layers: [0], capture: 'attention' }]);
  await assert.rejects(s!.next(0), (e: unknown) => e instanceof UserError && /no such file or folder/.test((e as Error).message));
  // The worker serves the next job after a failed one.
  const ckpt = Checkpoint.open(path.join(FIXTURES, 'mamba1-tiny'));
  try {
    const probe = defaultProbe(64, { batch: 2, seqLen: 16 });
    const res = await auditCheckpoint(ckpt, { probe, threads: 2 });
    assert.equal(res.threads, 2);
  } finally {
    ckpt.close();
  }
});

test('no worker keeps a process alive: after an audit, after a failing one, and after a worker error', () => {
  const mod = (f: string) => JSON.stringify(path.join(ROOT, 'dist', 'src', f));
  const script = `
    const { Checkpoint } = await import(${mod('checkpoint/checkpoint.js')});
    const { initBackend } = await import(${mod('model/backend.js')});
    const { auditCheckpoint } = await import(${mod('analysis/audit.js')});
    const { defaultProbe } = await import(${mod('analysis/probe.js')});
    await initBackend('wasm');
    const ckpt = Checkpoint.open(${JSON.stringify(path.join(FIXTURES, 'mamba2-tiny'))});
    const probe = defaultProbe(64, { batch: 2, seqLen: 16 });
    const ok = await auditCheckpoint(ckpt, { probe, threads: 2 });
    let caught = '';
    try { await auditCheckpoint(ckpt, { probe, threads: 2, onLayer: () => { throw new Error('caller failed'); } }); } catch (e) { caught = e.message; }
    const again = await auditCheckpoint(ckpt, { probe, threads: 2 });
    const { startRowsJobs } = await import(${mod('analysis/audit-threads.js')});
    let workerError = '';
    try { await startRowsJobs([{ source: '/nonexistent-checkpoint', backend: 'wasm', ids: [[1, 2]], layers: [0], capture: 'attention' }])[0].next(0); } catch (e) { workerError = e.name; }
    console.log(JSON.stringify({ threads: ok.threads, caught, same: JSON.stringify(again.layers) === JSON.stringify(ok.layers), workerError }));
  `;
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, cwd: ROOT });
  assert.equal(r.status, 0, `status ${r.status} signal ${r.signal}: ${r.stderr}`);
  assert.deepEqual(JSON.parse(r.stdout), { threads: 2, caught: 'caller failed', same: true, workerError: 'UserError' });
  assert.ok(performance.now() - t0 < 60_000);
});

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000, cwd: ROOT });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('--threads 0, negative or non-integer: one line, exit 2, for score and report', () => {
  for (const cmd of ['score', 'report']) {
    for (const bad of ['0', '1.5', 'two', '-2']) {
      const r = cli([cmd, path.join(FIXTURES, 'mamba2-tiny'), '--backend', 'wasm', '--threads', bad, ...(cmd === 'report' ? ['--out', path.join(ROOT, 'reports', 'never-written-threads-test')] : [])]);
      assert.equal(r.status, 2, `${cmd} --threads ${bad}: ${r.stderr}`);
      assert.match(r.stderr, /^mimetic: --threads: '[^']*' is not a positive integer[^\n]*\n$/, r.stderr);
    }
  }
});

test('score --threads 2 --json records the threads, scores as --threads 1, and the process exits', () => {
  const fx = path.join(FIXTURES, 'mamba1-tiny');
  const run = (t: string) => {
    const r = cli(['score', fx, '--backend', 'wasm', '--threads', t, '--json']);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { threads: number; layers: Record<string, number>[]; reference: Record<string, Record<string, number>> };
  };
  const one = run('1'), two = run('2');
  assert.equal(one.threads, 1);
  assert.equal(two.threads, 2);
  for (const [k, l] of two.layers.entries()) for (const key of SCORE_KEYS) assert.ok(Math.abs((l[key] ?? 0) - (one.layers[k]![key] ?? 0)) <= 1e-6, `${key}`);
  for (const k of ['default', 'mimetic']) for (const key of SCORE_KEYS) assert.ok(Math.abs((two.reference[k]![key] ?? 0) - (one.reference[k]![key] ?? 0)) <= 1e-6);
});

test('the CLI run as `node --input-type=module -e` (as bench/score.ts runs it) starts its audit threads', () => {
  assert.deepEqual(workerExecArgv(['--cpu-prof', '--input-type=module', '-e', 'x', '--max-old-space-size=900']), ['--cpu-prof', '--max-old-space-size=900']);
  assert.deepEqual(workerExecArgv(['--input-type', 'module', '--eval', 'x']), []);
  const script = `const m = await import(${JSON.stringify(CLI)}); process.exitCode = await m.main(process.argv.slice(1));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, 'score', path.join(FIXTURES, 'mamba1-tiny'), '--backend', 'wasm', '--threads', '2', '--json', '--no-reference'], { encoding: 'utf8', timeout: 120_000, cwd: ROOT });
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { threads: number }).threads, 2);
});

test('report --threads 2: the same report.json scores and channel picks as --threads 1', () => {
  const fx = path.join(FIXTURES, 'mamba2-tiny');
  const base = fs.mkdtempSync('/tmp/mimetic-threads-report-');
  try {
    const run = (t: string) => {
      const out = path.join(base, `t${t}`);
      const r = cli(['report', fx, '--backend', 'wasm', '--threads', t, '--out', out, '--no-reference']);
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as { threads: number; scores: unknown[]; layers: { most?: unknown; least?: unknown }[] };
    };
    const one = run('1'), two = run('2');
    assert.equal(one.threads, 1);
    assert.equal(two.threads, 2);
    assert.deepEqual(two.scores, one.scores);
    assert.deepEqual(JSON.stringify(two.layers), JSON.stringify(one.layers));
    // The maps drawn (the PNGs and their data files) are the same bytes.
    for (const sub of ['maps', 'img']) {
      const files = fs.readdirSync(path.join(base, 't1', sub)).sort();
      assert.deepEqual(fs.readdirSync(path.join(base, 't2', sub)).sort(), files);
      for (const f of files) assert.ok(fs.readFileSync(path.join(base, 't1', sub, f)).equals(fs.readFileSync(path.join(base, 't2', sub, f))), `${sub}/${f}`);
    }
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});
