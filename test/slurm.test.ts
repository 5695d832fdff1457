/**
 * `mimetic sweep --scheduler slurm` against a real Slurm: a one-node cluster on this machine
 * (scripts/slurm-local.sh: slurmctld, slurmd and munged bound to 127.0.0.1, 2 CPUs, no GPUs),
 * started here when we are root and Debian's slurm-wlm and munge are installed, stopped at the end.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readMetrics } from '../src/train/metrics.js';
import { listCheckpoints } from '../src/train/state.js';
import type { SweepSummary } from '../src/train/sweep-report.js';
import { requires } from './helpers/requires.js';
import { tempDirs } from './helpers/tmpdir.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const SCRIPT = fileURLToPath(new URL('../../scripts/slurm-local.sh', import.meta.url));
const tmp = tempDirs('mimetic-slurm-');

const has = (bin: string) => ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => fs.existsSync(path.join(d, bin)));
const canStart = process.getuid?.() === 0 && ['sbatch', 'slurmctld', 'slurmd', 'munged', 'mungekey'].every(has);
const SKIP = requires(canStart, 'a local Slurm (root, with slurm-wlm and munge)', 'sudo apt-get install -y slurm-wlm munge, then run the tests as root');

let clusterDir: string | null = null;
let startError = '';

before(() => {
  if (!canStart) return;
  clusterDir = path.join(os.tmpdir(), `mimetic-slurm-cluster-${process.pid}`);
  const r = spawnSync('bash', [SCRIPT, 'start', clusterDir], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) {
    startError = `${r.stdout}${r.stderr}`.trim();
    clusterDir = null;
    return;
  }
  process.env.SLURM_CONF = path.join(clusterDir, 'slurm.conf');
});

after(() => {
  if (!clusterDir) return;
  spawnSync('bash', [SCRIPT, 'stop', clusterDir], { timeout: 60_000 });
  fs.rmSync(clusterDir, { recursive: true, force: true });
});

function cluster(): void {
  assert.ok(clusterDir, `no local Slurm: ${canStart ? startError : 'needs root, slurm-wlm and munge'}`);
}

interface Res { code: number | null; stdout: string; stderr: string }

function cli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Res> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '', stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const sh = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** True once no task of the job is queued or running any more. */
const jobEnded = (jobId: string) => {
  const r = sh('squeue', ['-h', '-r', '-j', jobId, '-t', 'PD,R,CG,CF,S,RQ,SO', '-o', '%i']);
  return r.status === 0 && r.stdout.trim() === '';
};

// The tiny copy task of test/sweep.test.ts: 2 inits × 2 seeds, a few seconds per run on the CPU.
const BASE = {
  task: 'copy', alphabet: 2, minLen: 1, maxLen: 3, context: 12, evalLengths: [1, 2], layers: 1, dModel: 8, dState: 4,
  steps: 40, batch: 4, lr: 0.01, evalEvery: 10, evalExamples: 16, checkpointEvery: 3,
};
const CONFIG = { name: 'tiny', base: BASE, grid: { init: ['default', 'mimetic'], seed: [0, 1] } };
const IDS = ['init=default,seed=0', 'init=default,seed=1', 'init=mimetic,seed=0', 'init=mimetic,seed=1'];

function writeConfig(dir: string, cfg: unknown, name = 'sweep.config.json'): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, JSON.stringify(cfg));
  return f;
}

const metrics = (out: string, id: string) => readMetrics(path.join(out, id, 'metrics.jsonl')).map(({ step, loss, lr, gradNorm, eval: e }) => ({ step, loss, lr, gradNorm, eval: e }));
const summary = (out: string) => JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8')) as SweepSummary;
/** The summary without what depends on the clock: when it was written and each run's seconds of training. */
const timeless = (s: SweepSummary) => ({ ...s, created: '', runs: s.runs.map((r) => ({ ...r, trainSeconds: null })) });
const jobOf = (out: string) => (JSON.parse(fs.readFileSync(path.join(out, '.sweep', 'submission.json'), 'utf8')) as { jobId: string }).jobId;

test('--dry-run writes the job array script and submits nothing; without sbatch a submission is one line, exit 2, nothing written', async () => {
  const dir = tmp();
  const cfg = writeConfig(dir, CONFIG);
  const out = path.join(dir, 'sweep');
  const r = await cli(['sweep', cfg, '--out', out, '--scheduler', 'slurm', '--dry-run', '--max-parallel', '2', '--time', '00:30:00', '--partition', 'gpu', '--sbatch-arg', '--mem=4G', '--backend', 'webgpu']);
  assert.equal(r.code, 0, r.stderr);
  const script = fs.readFileSync(path.join(out, 'slurm.sbatch'), 'utf8');
  for (const line of ['#SBATCH --array=0-3%2', '#SBATCH --gres=gpu:1', '#SBATCH --time=00:30:00', '#SBATCH --partition=gpu', '#SBATCH --requeue', '#SBATCH --signal=B:USR1@120', '#SBATCH --mem=4G', '#SBATCH --open-mode=append']) {
    assert.ok(script.split('\n').includes(line), `${line} in\n${script}`);
  }
  IDS.forEach((id, i) => assert.ok(script.includes(`  ${i}) runs=(--only '${id}') ;;`), id));
  assert.match(script, /'sweep' '[^']+sweep\.config\.json' '--out' '[^']+' '--parallel' '1' '--backend' 'webgpu' "\$\{runs\[@\]\}" &/);
  assert.equal(sh('bash', ['-n', path.join(out, 'slurm.sbatch')]).status, 0, 'the script parses as bash');
  assert.ok(!fs.existsSync(path.join(out, '.sweep', 'submission.json')));
  const grouped = await cli(['sweep', cfg, '--out', path.join(dir, 'g'), '--scheduler', 'slurm', '--dry-run', '--runs-per-task', '3', '--gpus-per-task', '0']);
  assert.equal(grouped.code, 0, grouped.stderr);
  const g = fs.readFileSync(path.join(dir, 'g', 'slurm.sbatch'), 'utf8');
  assert.match(g, /#SBATCH --array=0-1\n/);
  assert.ok(g.includes(`  0) runs=(--only '${IDS[0]}' --only '${IDS[1]}' --only '${IDS[2]}') ;;`) && g.includes(`  1) runs=(--only '${IDS[3]}') ;;`), g);
  assert.ok(!g.includes('--gres'));
  // No sbatch on the PATH.
  const none = path.join(dir, 'none');
  const r2 = await cli(['sweep', cfg, '--out', none, '--scheduler', 'slurm'], { ...process.env, PATH: path.join(dir, 'empty-bin') });
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /^mimetic: sbatch is not on the PATH/);
  assert.equal(r2.stderr.trim().split('\n').length, 1, r2.stderr);
  assert.ok(!fs.existsSync(none));
  const r3 = await cli(['sweep', cfg, '--out', none, '--only', 'init=fancy']);
  assert.equal(r3.code, 2);
  assert.match(r3.stderr, /--only init=fancy: no such run in this sweep/);
});

let local: { out: string; summary: SweepSummary } | undefined;

test('a 4-run sweep as a Slurm job array: every run finishes, summary.json equals the local sweep\'s to the last digit', SKIP, async () => {
  cluster();
  const dir = tmp();
  const cfg = writeConfig(dir, CONFIG);
  const ref = path.join(dir, 'local');
  const rl = await cli(['sweep', cfg, '--out', ref, '--parallel', '2', '--backend', 'cpu']);
  assert.equal(rl.code, 0, rl.stderr);
  local = { out: ref, summary: summary(ref) };

  const out = path.join(dir, 'slurm');
  // A rejected submission shows Slurm's message and leaves nothing behind.
  const bad = await cli(['sweep', cfg, '--out', out, '--scheduler', 'slurm', '--gpus-per-task', '0', '--partition', 'nosuch']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^mimetic: sbatch rejected the job: .*invalid partition/i);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  assert.ok(!fs.existsSync(out), 'a rejected submission must leave no sweep folder');

  const r = await cli(['sweep', cfg, '--out', out, '--scheduler', 'slurm', '--gpus-per-task', '0', '--max-parallel', '2', '--backend', 'cpu']);
  assert.equal(r.code, 0, r.stderr);
  const job = jobOf(out);
  assert.match(r.stdout, new RegExp(`submitted slurm job ${job}: 4 tasks for 4 runs`));
  assert.match(r.stdout, /--status/);
  // The folder is taken while the job runs: neither a second submission nor a local sweep may start.
  const again = await cli(['sweep', cfg, '--out', out, '--scheduler', 'slurm', '--gpus-per-task', '0']);
  assert.equal(again.code, 2);
  assert.match(again.stderr, new RegExp(`already submitted to slurm as job ${job}`));
  const loc = await cli(['sweep', cfg, '--out', out, '--backend', 'cpu']);
  assert.equal(loc.code, 2);
  assert.match(loc.stderr, /already submitted/);

  await waitFor(() => jobEnded(job) && fs.existsSync(path.join(out, 'summary.json')), 180_000, `Slurm job ${job}`);
  const st = await cli(['sweep', cfg, '--out', out, '--status']);
  assert.equal(st.code, 0, st.stderr);
  for (const [i, id] of IDS.entries()) assert.match(st.stdout, new RegExp(`${id.replace(/[+.]/g, '\\$&')}\\s+done\\s+step 40/40\\s+task ${job}_${i} COMPLETED`));
  assert.match(st.stdout, /4 runs: 4 done, 0 running, 0 pending, 0 failed/);
  for (const id of IDS) assert.deepEqual(metrics(out, id), metrics(ref, id), id);
  assert.deepEqual(timeless(summary(out)), timeless(local.summary));
  assert.equal(summary(out).complete, true);
  // Every task ran its run with the sweep's --only, each its own array task.
  for (let i = 0; i < 4; i++) assert.match(fs.readFileSync(path.join(out, 'logs', `slurm-${job}_${i}.out`), 'utf8'), /1\/1 runs complete, 0 failed/);
  const nothing = await cli(['sweep', cfg, '--out', out, '--scheduler', 'slurm', '--gpus-per-task', '0']);
  assert.equal(nothing.code, 0, nothing.stderr);
  assert.match(nothing.stdout, /nothing to submit: 4\/4 runs complete/);
});

test('a task signalled mid-run (scancel --signal=TERM --full) checkpoints, requeues, resumes, and ends at the uninterrupted run\'s loss', SKIP, async () => {
  cluster();
  const dir = tmp();
  // One longer run, checkpointed only when told to stop and at the end.
  const cfg = writeConfig(dir, { name: 'requeue', base: { ...BASE, steps: 200, checkpointEvery: 1000, evalEvery: 50 }, grid: { seed: [0] } });
  const id = 'seed=0';
  const out = path.join(dir, 'slurm');
  const r = await cli(['sweep', cfg, '--out', out, '--scheduler', 'slurm', '--gpus-per-task', '0', '--backend', 'cpu']);
  assert.equal(r.code, 0, r.stderr);
  const job = jobOf(out);
  const mf = path.join(out, id, 'metrics.jsonl');
  const ref = path.join(dir, 'local');
  // The uninterrupted reference runs meanwhile, on the other CPU.
  const rl = cli(['sweep', cfg, '--out', ref, '--backend', 'cpu']);
  await waitFor(() => fs.existsSync(mf) && readMetrics(mf).length >= 5, 120_000, 'the run to log 5 steps');
  const sig = sh('scancel', ['--signal=TERM', '--full', `${job}_0`]);
  assert.equal(sig.status, 0, sig.stderr);
  await waitFor(() => /restart 1\)/.test(fs.readFileSync(path.join(out, 'logs', `slurm-${job}_0.out`), 'utf8')), 120_000, 'the task to be requeued and restarted');
  assert.equal((await rl).code, 0);
  await waitFor(() => jobEnded(job) && fs.existsSync(path.join(out, 'summary.json')), 180_000, `Slurm job ${job}`);

  const slurmLog = fs.readFileSync(path.join(out, 'logs', `slurm-${job}_0.out`), 'utf8');
  assert.match(slurmLog, /runs left: requeueing task 0/);
  const runLog = fs.readFileSync(path.join(out, 'logs', `${id}.log`), 'utf8');
  const stopped = Number(/interrupted at step (\d+)/.exec(runLog)?.[1]);
  const resumed = Number(/resume from step (\d+)/.exec(runLog)?.[1]);
  assert.ok(stopped >= 5 && stopped < 200, `interrupted at step ${stopped}:\n${runLog}`);
  assert.equal(resumed, stopped, 'the requeued task resumes from the checkpoint written at the signal');
  assert.deepEqual(listCheckpoints(path.join(out, id)).map((c) => c.step).at(-1), 200);
  assert.deepEqual(metrics(out, id), metrics(ref, id));
  assert.equal(metrics(out, id).at(-1)!.loss, metrics(ref, id).at(-1)!.loss);
  assert.deepEqual(timeless(summary(out)), timeless(summary(ref)));
  const restarts = /Restarts=(\d+)/.exec(sh('scontrol', ['show', 'job', `${job}_0`, '-o']).stdout)?.[1];
  assert.equal(restarts, '1');
});
