/**
 * Issue 12's locks: one sweep per sweep folder (a stale lock taken over by exactly one of several
 * sweeps, and a second sweep of the same process refused), one trainer per run folder, and a
 * resumed run keeping its --keep.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { initBackend } from '../src/model/backend.js';
import { type TrainConfig, train, trainDefaults } from '../src/train/trainer.js';
import { takeSweepLock } from '../src/train/sweep.js';
import { listCheckpoints } from '../src/train/state.js';
import { UserError } from '../src/util/errors.js';
import { tempDirs } from './helpers/tmpdir.js';

await initBackend('cpu');
const tmp = tempDirs('mimetic-locks-');
const SWEEP = new URL('../src/train/sweep.js', import.meta.url).href;

/** A pid no process has any more. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

test('a sweep folder takes one sweep: a second lock in the same process is refused, and released it can be taken again', () => {
  const dir = tmp();
  const release = takeSweepLock(dir);
  assert.throws(() => takeSweepLock(dir), (e: unknown) => e instanceof UserError && new RegExp(`another sweep \\(pid ${process.pid}\\) is running in this folder`).test((e as Error).message));
  release();
  takeSweepLock(dir)();
  assert.deepEqual(fs.readdirSync(path.join(dir, '.sweep')), [], 'nothing left behind');
});

test('a stale sweep lock (its sweep killed) is taken over by exactly one of several sweeps starting at once', async () => {
  for (let round = 0; round < 3; round++) {
    const dir = tmp();
    fs.mkdirSync(path.join(dir, '.sweep'));
    fs.writeFileSync(path.join(dir, '.sweep', 'lock'), String(deadPid()));
    const go = path.join(dir, 'go');
    // Each contender waits for the same moment, tries, and holds what it got for a while.
    const script = `const { takeSweepLock } = await import(${JSON.stringify(SWEEP)});
while (!(await import('node:fs')).existsSync(${JSON.stringify(go)})) {}
try { const release = takeSweepLock(${JSON.stringify(dir)}); process.stdout.write('got'); setTimeout(release, 1500); }
catch (e) { process.stdout.write(/another sweep/.test(e.message) ? 'busy' : 'error ' + e.message); }`;
    const outs = Array.from({ length: 6 }, () => {
      const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      return new Promise<string>((res) => c.on('close', () => res(out)));
    });
    await new Promise((r) => setTimeout(r, 1500)); // every contender loaded and waiting
    fs.writeFileSync(go, '');
    const got = await Promise.all(outs);
    assert.deepEqual(got.filter((o) => o === 'got').length, 1, `round ${round}: ${got.join(', ')}`);
    assert.deepEqual(got.filter((o) => o !== 'got' && o !== 'busy'), []);
    assert.deepEqual(fs.readdirSync(path.join(dir, '.sweep')), [], 'the lock and its takeover guard are gone');
  }
});

const copyTask = { task: 'copy' as const, alphabet: 4, minLen: 2, maxLen: 6, context: 24, evalLengths: [] };
function tinyConfig(over: Partial<TrainConfig> = {}): TrainConfig {
  return trainDefaults(copyTask, {
    kind: 'fresh', shape: { arch: 'mamba1', numLayers: 1, hiddenSize: 8, stateSize: 4, vocabSize: 8 },
    init: { init: 'default', parts: [], aScale: 8, bcNoise: 0, seed: 0 },
  }, { steps: 8, batch: 2, warmup: 0, evalEvery: 8, evalExamples: 2, checkpointEvery: 1, ...over });
}

test('a run folder takes one trainer: a second --resume of it while the first runs is refused; afterwards it resumes', async () => {
  const out = path.join(tmp(), 'run');
  const cfg = tinyConfig();
  await train(cfg, { out, progress: null, noReport: true, haltAfterStep: 2 });
  const first = train(cfg, { out, resume: true, progress: null, noReport: true });
  await assert.rejects(train(cfg, { out, resume: true, progress: null, noReport: true }),
    (e: unknown) => e instanceof UserError && new RegExp(`another mimetic train \\(pid ${process.pid}\\) is running this run`).test((e as Error).message));
  assert.equal((await first).step, 8);
  assert.ok(!fs.existsSync(path.join(out, '.lock')), 'the lock is released');
  // A trainer killed outright leaves its lock behind: stale at once, the next resume takes it.
  fs.writeFileSync(path.join(out, '.lock'), `${deadPid()}::x`);
  assert.equal((await train({ ...cfg, steps: 8 }, { out, resume: true, progress: null, noReport: true })).status, 'finished');
});

test('--keep is kept on resume (run.json records it); given again, the new value wins', async () => {
  const out = path.join(tmp(), 'run');
  const cfg = tinyConfig();
  await train(cfg, { out, progress: null, noReport: true, keep: 3, haltAfterStep: 5 });
  assert.deepEqual(listCheckpoints(out).map((c) => c.step), [2, 3, 4]);
  await train(cfg, { out, resume: true, progress: null, noReport: true });
  assert.deepEqual(listCheckpoints(out).map((c) => c.step), [6, 7, 8]);
  const again = path.join(tmp(), 'run');
  await train(cfg, { out: again, progress: null, noReport: true, keep: 3, haltAfterStep: 5 });
  await train(cfg, { out: again, resume: true, progress: null, noReport: true, keep: 2 });
  assert.deepEqual(listCheckpoints(again).map((c) => c.step), [7, 8]);
});
