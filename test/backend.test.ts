/**
 * Backend selection: cpu and wasm start; asking for a backend that cannot run is a UserError
 * naming what to do; auto picks wasm on a machine without a hardware GPU (a software WebGPU
 * adapter such as lavapipe is skipped).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { BACKENDS, initBackend, webgpuAdapter } from '../src/model/backend.js';
import { isUserError } from '../src/util/errors.js';

const backendJs = fileURLToPath(new URL('../src/model/backend.js', import.meta.url));

/** Run initBackend(name) in a fresh process with extra environment; returns its stdout and stderr. */
function inChild(name: string, env: Record<string, string>): { out: string; err: string } {
  const code = `import(${JSON.stringify(backendJs)}).then(async (m) => {
    try { console.log('OK ' + await m.initBackend(${JSON.stringify(name)})); }
    catch (e) { console.log((e.name === 'UserError' ? 'USERERROR ' : 'OTHER ') + e.message); }
  });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
  return { out: r.stdout.trim(), err: r.stderr };
}

function hasHardwareGpu(): boolean {
  try {
    execFileSync('nvidia-smi', ['-L'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('BACKENDS lists the choices', () => {
  assert.deepEqual([...BACKENDS], ['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu']);
});

test('cpu starts and computes', async () => {
  assert.equal(await initBackend('cpu'), 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
  assert.deepEqual(Array.from(tf.tensor([1, 2, 3]).square().dataSync()), [1, 4, 9]);
});

test('wasm starts (its .wasm files resolve from node_modules) and computes', async () => {
  assert.equal(await initBackend('wasm'), 'wasm');
  assert.equal(tf.getBackend(), 'wasm');
  const y = tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]]));
  assert.deepEqual(Array.from(y.dataSync()), [17, 39]);
});

test('an unknown backend name is a UserError', async () => {
  await assert.rejects(initBackend('metal' as never), (e: unknown) => isUserError(e) && /unknown backend 'metal'.*auto, webgpu/.test((e as Error).message));
});

test('tensorflow: starts when tfjs-node loads, else a UserError saying what to install', async () => {
  let loadable = false;
  for (const spec of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(spec);
      loadable = true;
    } catch {
      // not loadable here
    }
  }
  if (loadable) {
    assert.equal(await initBackend('tensorflow'), 'tensorflow');
  } else {
    await assert.rejects(initBackend('tensorflow'), (e: unknown) => {
      const m = (e as Error).message;
      return isUserError(e) && /^backend tensorflow is not available: .*tfjs-node-gpu.*use --backend wasm$/.test(m) && !m.includes('\n');
    });
  }
});

test('webgpu without any Vulkan driver is a UserError, not a fallback', () => {
  const r = inChild('webgpu', { VK_DRIVER_FILES: '/nonexistent/icd.json', VK_ICD_FILENAMES: '/nonexistent/icd.json' });
  assert.match(r.out, /^USERERROR backend webgpu is not available: Dawn found no WebGPU adapter \(no Vulkan driver manifest found; set VK_DRIVER_FILES to one\); use --backend wasm/);
});

test('auto without any Vulkan driver picks wasm and says why on stderr', () => {
  const r = inChild('auto', { VK_DRIVER_FILES: '/nonexistent/icd.json', VK_ICD_FILENAMES: '/nonexistent/icd.json' });
  assert.equal(r.out, 'OK wasm');
  assert.match(r.err, /mimetic: backend wasm \(no Vulkan driver installed; tfjs-node not loadable\)/);
});

test('auto picks wasm without a hardware GPU (a software adapter is skipped), webgpu with one', async () => {
  const gpu = hasHardwareGpu();
  assert.equal(await initBackend('auto', { quiet: true }), gpu ? 'webgpu' : 'wasm');
  const a = webgpuAdapter();
  if (gpu) assert.ok(a && !a.software, `expected a hardware adapter, got ${JSON.stringify(a)}`);
  // Without one: either Dawn found nothing, or only a CPU implementation.
  else assert.ok(a === null || a.software, `unexpected hardware adapter ${JSON.stringify(a)}`);
});

test('every command taking --backend says in --help that cpu is a slow reference and auto never picks it', () => {
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  for (const cmd of ['score', 'report', 'forward', 'train', 'sweep']) {
    const r = spawnSync(process.execPath, [cli, cmd, '--help'], { encoding: 'utf8', timeout: 60_000 });
    const help = r.stdout.replace(/\s+/g, ' ');
    if (!help.includes('--backend')) continue;
    assert.match(help, /cpu is plain JS, a slow correctness reference/, `${cmd} --help`);
    assert.match(help, /auto: webgpu on a GPU, else tensorflow, else wasm/, `${cmd} --help`);
  }
});
