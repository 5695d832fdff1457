/**
 * `train --gpu i` and `sweep --gpus all|0,2,…` (issue 16): which GPUs a sweep spreads its children
 * over, with the device list stubbed (two identical cards, as on a multi-GPU host), and on the
 * machine's own Vulkan driver (lavapipe in CI): --gpu 0 trains and run.json records the GPU, the
 * first index past the last GPU is one line before anything is written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { VulkanDeviceList } from '../src/model/gpu-select.js';
import { parseSweepConfig, resolveGpus, runSweep } from '../src/train/sweep.js';
import { requiresWebGPU } from './helpers/requires.js';
import { tempDirs } from './helpers/tmpdir.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const tmp = tempDirs('mimetic-train-gpu-');

const card = (gpu: number | null, name: string, type: string, uuid: string) => ({ gpu, name, type, vendorID: 0x10de, deviceID: 0x2335, uuid, kept: true });
/** Two identical H100s and lavapipe, which is not counted where hardware GPUs exist. */
const TWO: VulkanDeviceList = { requested: null, devices: [card(0, 'NVIDIA H100', 'discrete', 'aa'), card(null, 'llvmpipe', 'cpu', 'cc'), card(1, 'NVIDIA H100', 'discrete', 'bb')] };
const NONE: VulkanDeviceList = { requested: null, devices: [] };

test('sweep --gpus: all is every GPU of the list; listed indices must exist; without a list (CUDA) they pass unchecked', () => {
  assert.deepEqual(resolveGpus('all', TWO), [0, 1]);
  assert.deepEqual(resolveGpus(' all ', { requested: null, devices: [card(0, 'llvmpipe', 'cpu', 'cc')] }), [0], 'a CPU implementation counts where it is the only device (CI)');
  assert.deepEqual(resolveGpus('1,0', TWO), [1, 0]);
  assert.throws(() => resolveGpus('0,2', TWO), /^UserError: --gpus: there is no GPU 2; this machine has 2 GPUs \(0: NVIDIA H100 \(discrete\); 1: NVIDIA H100 \(discrete\)\); choose from 0 to 1, or all$/);
  assert.throws(() => resolveGpus('all', NONE), /--gpus all: this machine has no GPU/);
  assert.throws(() => resolveGpus('all', null), /--gpus all: the GPUs could not be listed/);
  assert.deepEqual(resolveGpus('3,5', null), [3, 5]);
  assert.deepEqual(resolveGpus('3', NONE), [3], 'no Vulkan device: the indices are for CUDA');
  assert.throws(() => resolveGpus('0,0', TWO), /distinct GPU indices/);
  assert.throws(() => resolveGpus('0,x', TWO), /'x' is not a GPU index/);
  assert.throws(() => resolveGpus('-1', TWO), /'-1' is not a GPU index/);
});

test('a sweep over two GPUs gives each child the GPU of its slot, and uses both', async () => {
  const dir = tmp();
  // A stand-in for `mimetic train` that records the GPU its environment names and stops.
  const fake = path.join(dir, 'fake-train.mjs');
  fs.writeFileSync(fake, `import * as fs from 'node:fs';
const out = process.argv[process.argv.indexOf('--out') + 1];
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(out + '/gpu', JSON.stringify({ gpu: process.env.MIMETIC_GPU, cuda: process.env.CUDA_VISIBLE_DEVICES }));
`);
  const cfg = parseSweepConfig({ name: 'g', base: { task: 'copy', steps: 1 }, grid: { seed: [0, 1, 2, 3] } }, 'g.json');
  const lines: string[] = [];
  const out = path.join(dir, 'sweep');
  await runSweep(cfg, { out, parallel: 1, gpus: resolveGpus('all', TWO), sliceMinutes: null, cli: [process.execPath, fake], log: { write: (s: string) => lines.push(s) } });
  // The sweep's own account (`start seed=2 on GPU 1`) and what each child was given agree.
  const said = new Map(lines.map((l) => /start (seed=\d) on GPU (\d)\n$/.exec(l)).filter((m) => m !== null).map((m) => [m[1]!, m[2]!]));
  assert.equal(said.size, 4, lines.join(''));
  for (const [id, gpu] of said) {
    const g = JSON.parse(fs.readFileSync(path.join(out, id, 'gpu'), 'utf8')) as { gpu: string; cuda: string };
    assert.deepEqual(g, { gpu, cuda: gpu }, id);
  }
  assert.deepEqual(new Set(said.values()), new Set(['0', '1']));
});

function cli(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300_000 });
}

const TINY = ['train', '--task', 'copy', '--alphabet', '3', '--min-len', '1', '--max-len', '2', '--context', '8', '--n-layers', '1', '--d-model', '8', '--d-state', '2',
  '--steps', '2', '--batch-size', '2', '--eval-every', '2', '--eval-examples', '2', '--backend', 'webgpu', '--quiet'];

test('train --gpu 0 trains on that GPU and run.json records it; --gpu <count> is one line, nothing written', await requiresWebGPU(), () => {
  const listed = cli(['gpus', '--json']);
  assert.equal(listed.status, 0, listed.stderr);
  const count = (JSON.parse(listed.stdout.trim().split('\n').at(-1)!) as { gpus: number }).gpus;
  assert.ok(count >= 1, listed.stdout);
  const dir = tmp();
  const ok = cli([...TINY, '--gpu', '0', '--out', path.join(dir, 'run')]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stderr, new RegExp(`^mimetic: GPU 0 of ${count}: `, 'm'));
  const run = JSON.parse(fs.readFileSync(path.join(dir, 'run', 'run.json'), 'utf8')) as { device: { adapter: string; gpu: { index: number; count: number; uuid: string | null } } };
  assert.equal(run.device.gpu.index, 0);
  assert.equal(run.device.gpu.count, count);
  assert.ok(run.device.adapter.length > 0);
  const bad = cli([...TINY, '--gpu', String(count), '--out', path.join(dir, 'bad')]);
  assert.equal(bad.status, 2, bad.stderr);
  const own = bad.stderr.split('\n').filter((l) => l.startsWith('mimetic: '));
  assert.equal(own.length, 1, bad.stderr);
  assert.match(own[0]!, new RegExp(`^mimetic: --gpu ${count}: this machine has ${count} GPUs?( |;)`));
  assert.ok(!fs.existsSync(path.join(dir, 'bad')), 'nothing written');
});

test('sweep --gpus all runs each child on a listed GPU (run.json says which); a GPU past the last is one line, nothing made', await requiresWebGPU(), () => {
  const dir = tmp();
  const cfgFile = path.join(dir, 'g.json');
  fs.writeFileSync(cfgFile, JSON.stringify({
    name: 'g', base: { task: 'copy', alphabet: 3, minLen: 1, maxLen: 2, context: 8, nLayers: 1, dModel: 8, dState: 2, steps: 2, batchSize: 2, evalEvery: 2, evalExamples: 2 },
    grid: { seed: [0] },
  }));
  const out = path.join(dir, 'sweep');
  const r = cli(['sweep', cfgFile, '--out', out, '--gpus', 'all', '--backend', 'webgpu']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /start seed=0 on GPU 0\n/);
  const run = JSON.parse(fs.readFileSync(path.join(out, 'seed=0', 'run.json'), 'utf8')) as { device: { gpu: { index: number } } };
  assert.equal(run.device.gpu.index, 0);
  const listed = cli(['gpus', '--json']);
  const count = (JSON.parse(listed.stdout.trim().split('\n').at(-1)!) as { gpus: number }).gpus;
  const bad = cli(['sweep', cfgFile, '--out', path.join(dir, 'bad'), '--gpus', String(count), '--backend', 'webgpu']);
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr, new RegExp(`^mimetic: --gpus: there is no GPU ${count}; this machine has ${count} GPU`, 'm'));
  assert.ok(!fs.existsSync(path.join(dir, 'bad')));
});

/** A tiny Mamba-2 copy run on webgpu (d_state N, `steps` steps, one evaluation at the end). */
const tinyMamba2Args = (N: number, steps: number) => ['train', '--task', 'copy', '--arch', 'mamba2', '--n-layers', '1', '--d-model', '32', '--d-state', String(N), '--head-dim', '16', '--alphabet', '4',
  '--min-len', '2', '--max-len', '4', '--context', '32', '--batch-size', '8', '--steps', String(steps), '--eval-every', String(steps), '--eval-examples', '8', '--backend', 'webgpu', '--quiet'];
/** The training losses of a run folder's metrics.jsonl, in step order. */
const losses = (run: string) => fs.readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss?: number }).filter((m) => m.loss !== undefined).map((m) => m.loss!);

test('--scan-chunk and --micro-batches are recorded in run.json and leave the losses as they were; 0 is one line', await requiresWebGPU(), () => {
  const dir = tmp();
  const args = tinyMamba2Args(16, 6);
  const plain = path.join(dir, 'plain');
  const knobs = path.join(dir, 'knobs');
  assert.equal(spawnSync(process.execPath, [CLI, ...args, '--out', plain], { encoding: 'utf8' }).status, 0);
  const r = spawnSync(process.execPath, [CLI, ...args, '--scan-chunk', '4', '--micro-batches', '2', '--out', knobs], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const rec = JSON.parse(fs.readFileSync(path.join(knobs, 'run.json'), 'utf8')) as { config: { gpuStep?: unknown } };
  assert.deepEqual(rec.config.gpuStep, { scanChunk: 4, microBatches: 2 });
  const a = losses(plain);
  const b = losses(knobs);
  assert.equal(a.length, 6);
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]!) < 1e-5, `step ${i + 1}: ${x} vs ${b[i]}`));
  const bad = spawnSync(process.execPath, [CLI, ...args, '--scan-chunk', '0', '--out', path.join(dir, 'bad')], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr.trim(), /^mimetic: --scan-chunk: 0 must be a positive integer/);
  assert.equal(fs.existsSync(path.join(dir, 'bad')), false);
});

test('--scan-layout state-fastest is recorded in run.json and gives the same losses bit for bit; an unknown layout is one line', await requiresWebGPU(), () => {
  const dir = tmp();
  // d_state 64: 4 threads per scan lane, so the two layouts map the threads differently.
  const args = tinyMamba2Args(64, 4);
  const plain = path.join(dir, 'plain');
  const other = path.join(dir, 'state-fastest');
  assert.equal(spawnSync(process.execPath, [CLI, ...args, '--out', plain], { encoding: 'utf8' }).status, 0);
  const r = spawnSync(process.execPath, [CLI, ...args, '--scan-layout', 'state-fastest', '--out', other], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const rec = JSON.parse(fs.readFileSync(path.join(other, 'run.json'), 'utf8')) as { config: { gpuStep?: unknown } };
  assert.deepEqual(rec.config.gpuStep, { scanLayout: 'state-fastest' });
  assert.equal(losses(plain).length, 4);
  assert.deepEqual(losses(other), losses(plain));
  const bad = spawnSync(process.execPath, [CLI, ...args, '--scan-layout', 'diagonal', '--out', path.join(dir, 'bad')], { encoding: 'utf8' });
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr.trim(), /^mimetic: --scan-layout: 'diagonal' is not one of state-fastest, lane-fastest$/);
  assert.equal(fs.existsSync(path.join(dir, 'bad')), false);
});

test('MIMETIC_DAWN_TOGGLES (no index clamping, no zeroed workgroup memory) gives the same losses bit for bit; a malformed list is one line', await requiresWebGPU(), () => {
  const dir = tmp();
  // d_state 64: the scan backward's lane sums use workgroup memory, which a kernel must not read unwritten.
  const args = tinyMamba2Args(64, 4);
  const plain = path.join(dir, 'plain');
  const fast = path.join(dir, 'toggles');
  assert.equal(spawnSync(process.execPath, [CLI, ...args, '--out', plain], { encoding: 'utf8' }).status, 0);
  const env = { ...process.env, MIMETIC_DAWN_TOGGLES: 'disable_robustness,disable_workgroup_init' };
  const r = spawnSync(process.execPath, [CLI, ...args, '--out', fast], { encoding: 'utf8', env });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(losses(plain).length, 4);
  assert.deepEqual(losses(fast), losses(plain));
  const bad = spawnSync(process.execPath, [CLI, ...args, '--out', path.join(dir, 'bad')], { encoding: 'utf8', env: { ...process.env, MIMETIC_DAWN_TOGGLES: 'disable robustness' } });
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr.trim(), /^mimetic: MIMETIC_DAWN_TOGGLES: 'disable robustness' is not a comma-separated list of Dawn toggle names/);
  assert.equal(fs.existsSync(path.join(dir, 'bad')), false);
});

test('--scan-form ssd (with --ssd-chunk) is recorded in run.json and follows the recurrent losses; on Mamba-1, or an unknown form, it is one line', await requiresWebGPU(), () => {
  const dir = tmp();
  // Context 32 in chunks of 12: three chunks, the last one short.
  const args = tinyMamba2Args(64, 4);
  const plain = path.join(dir, 'plain');
  const ssd = path.join(dir, 'ssd');
  assert.equal(spawnSync(process.execPath, [CLI, ...args, '--out', plain], { encoding: 'utf8' }).status, 0);
  const r = spawnSync(process.execPath, [CLI, ...args, '--scan-form', 'ssd', '--ssd-chunk', '12', '--out', ssd], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const rec = JSON.parse(fs.readFileSync(path.join(ssd, 'run.json'), 'utf8')) as { config: { gpuStep?: unknown } };
  assert.deepEqual(rec.config.gpuStep, { scanForm: 'ssd', ssdChunk: 12 });
  const a = losses(plain), b = losses(ssd);
  assert.equal(a.length, 4);
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]!) <= 1e-5 * Math.abs(x), `step ${i + 1}: ${b[i]} (ssd) vs ${x}`));
  const m1 = args.map((x) => (x === 'mamba2' ? 'mamba1' : x)).filter((x, i, all) => x !== '--head-dim' && all[i - 1] !== '--head-dim');
  for (const [extra, want] of [[['--scan-form', 'ssd'], /^mimetic: --scan-form: 'ssd' needs --arch mamba2/], [['--scan-form', 'matrix'], /^mimetic: --scan-form: 'matrix' is not one of recurrent, ssd$/]] as const) {
    const bad = spawnSync(process.execPath, [CLI, ...(extra[1] === 'ssd' ? m1 : args), ...extra, '--out', path.join(dir, 'bad')], { encoding: 'utf8' });
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr.trim(), want);
    assert.ok(!bad.stderr.trim().includes('\n'), bad.stderr);
    assert.equal(fs.existsSync(path.join(dir, 'bad')), false);
  }
  // A Mamba-1 checkpoint: its arch is known only once loaded, still before the run folder is made.
  const ck = spawnSync(process.execPath, [CLI, 'train', '--task', 'copy', '--model', path.join(ROOT, 'checkpoints', 'examples', 'mamba1-tiny'), '--steps', '2', '--backend', 'webgpu', '--scan-form', 'ssd', '--out', path.join(dir, 'bad')], { encoding: 'utf8' });
  assert.equal(ck.status, 2, ck.stderr);
  // (The last line: Dawn's adapter warnings on lavapipe come first.)
  assert.match(ck.stderr.trim().split('\n').at(-1)!, /^mimetic: --scan-form: 'ssd' needs a Mamba-2 model \(a scalar A per head\); this one is mamba1/);
  assert.equal(fs.existsSync(path.join(dir, 'bad')), false);
});

test('--read-every and --compiled-step are training options: in --help, recorded in run.json, 0 trains through autodiff; out of range is one line', await requiresWebGPU(), () => {
  const dir = tmp();
  const help = spawnSync(process.execPath, [CLI, 'train', '--help'], { encoding: 'utf8' });
  assert.match(help.stdout, /--read-every <n>/);
  assert.match(help.stdout, /--compiled-step <0\|1>/);
  const args = ['train', '--task', 'copy', '--arch', 'mamba1', '--n-layers', '1', '--d-model', '16', '--d-state', '4', '--alphabet', '4',
    '--min-len', '2', '--max-len', '3', '--context', '16', '--batch-size', '4', '--steps', '4', '--eval-every', '4', '--eval-examples', '4', '--backend', 'webgpu'];
  const out = path.join(dir, 'auto');
  const r = spawnSync(process.execPath, [CLI, ...args, '--read-every', '3', '--compiled-step', '0', '--out', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /training step: tf\.js autodiff \(--compiled-step 0\)/);
  const rec = JSON.parse(fs.readFileSync(path.join(out, 'run.json'), 'utf8')) as { config: { gpuStep?: unknown } };
  assert.deepEqual(rec.config.gpuStep, { readEvery: 3, compiledStep: 0 });
  for (const [flag, v, msg] of [['--read-every', '300', /^mimetic: --read-every: 300 must be a positive integer up to 256/], ['--compiled-step', '2', /^mimetic: --compiled-step: 2 must be 0 \(tf\.js autodiff\) or 1/]] as const) {
    const bad = spawnSync(process.execPath, [CLI, ...args, flag, v, '--out', path.join(dir, 'bad')], { encoding: 'utf8' });
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr.trim(), msg);
    assert.ok(!bad.stderr.trim().includes('\n'), bad.stderr);
    assert.equal(fs.existsSync(path.join(dir, 'bad')), false);
  }
});

test('a compiled-step run at d_state 256 over several scan chunks, killed with SIGKILL mid-run, resumes to the uninterrupted losses bit for bit', await requiresWebGPU(), async () => {
  const { spawn } = await import('node:child_process');
  const { listCheckpoints } = await import('../src/train/state.js');
  const dir = tmp();
  // Context 32 in scan chunks of 12 (three, the last short); a checkpoint every 3 steps.
  const args = [...tinyMamba2Args(256, 24), '--scan-chunk', '12', '--checkpoint-every', '3'];
  const whole = path.join(dir, 'whole');
  const killed = path.join(dir, 'killed');
  assert.equal(spawnSync(process.execPath, [CLI, ...args, '--out', whole], { encoding: 'utf8' }).status, 0);
  const child = spawn(process.execPath, [CLI, ...args, '--out', killed], { stdio: 'ignore' });
  const ended = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
  // Kill once a checkpoint past step 6 is complete (state.json written last), so the resume starts mid-run.
  let stepAtKill = 0;
  for (let i = 0; i < 6000 && child.exitCode === null; i++) {
    const ck = listCheckpoints(killed).at(-1);
    if (ck && ck.step >= 6) { stepAtKill = ck.step; child.kill('SIGKILL'); break; }
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(await ended, 'SIGKILL', 'the run must still be going when it is killed (make it longer if this machine is faster)');
  assert.ok(stepAtKill >= 6 && stepAtKill < 24, `killed at checkpoint ${stepAtKill}`);
  const r = spawnSync(process.execPath, [CLI, 'train', '--resume', killed, '--quiet'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  // A killed run may have written lines past its checkpoint; the resumed one rewrites them: last line per step wins.
  const byStep = (run: string) => {
    const m = new Map<number, number>();
    for (const l of fs.readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n')) {
      const x = JSON.parse(l) as { step: number; loss?: number };
      if (x.loss !== undefined) m.set(x.step, x.loss);
    }
    return [...m.entries()].sort((a, b) => a[0] - b[0]);
  };
  assert.deepEqual(byStep(killed), byStep(whole));
  assert.equal(byStep(whole).length, 24);
});

test('what the compiled step cannot train (d_state over 1024, a batch past its offsets) is one line before the run folder exists', await requiresWebGPU(), () => {
  const dir = tmp();
  const args = tinyMamba2Args(2048, 2);
  const r = spawnSync(process.execPath, [CLI, ...args, '--out', path.join(dir, 'big')], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr.trim().split('\n').at(-1)!, /^mimetic: d_state 2048 is over the compiled WebGPU step's 1024: use --d-state 1024 or less/);
  assert.equal(fs.existsSync(path.join(dir, 'big')), false);
  // A batch the compiled step cannot lay out (offsets past u32) is found when the step is built, also before the folder.
  const huge = ['train', '--task', 'copy', '--arch', 'mamba2', '--n-layers', '1', '--d-model', '64', '--d-state', '64', '--head-dim', '16', '--context', '8192', '--batch-size', '4096', '--steps', '1', '--backend', 'webgpu', '--quiet', '--out', path.join(dir, 'huge')];
  const h = spawnSync(process.execPath, [CLI, ...huge], { encoding: 'utf8' });
  assert.equal(h.status, 2, h.stderr);
  assert.match(h.stderr.trim().split('\n').at(-1)!, /^mimetic: compiled WebGPU step for batch 4096x8192: .*; shorten --context, lower --d-state, or pass --compiled-step 0 for the tf\.js path$/);
  assert.equal(fs.existsSync(path.join(dir, 'huge')), false);
});
