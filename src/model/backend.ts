/**
 * TensorFlow.js backends: pick one, make it current, and register its selective-scan kernels.
 *
 *   webgpu      tfjs-backend-webgpu over Dawn (the `webgpu` npm package), with the adapter's
 *               maximum limits (tfjs asks for defaults, and e.g. tf.addN with more than 7 inputs
 *               then fails on the 8-storage-buffer default)
 *   tensorflow  @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node, when installed and loadable
 *   wasm        @tensorflow/tfjs-backend-wasm (the default on a machine without a GPU)
 *   cpu         plain JavaScript: the slow correctness reference, never chosen by `auto`
 *
 * `auto` takes webgpu when a hardware adapter exists, else tensorflow when loadable, else wasm.
 * A backend asked for by name that cannot run is a UserError, never a silent fallback.
 */
import { chooseGpu, dawnCreateFlags, gpuLine, layerDir, layerEnv, newListFile, readDeviceList, removeListFile, requestedGpu, VK_LAYER_NAME, type GpuChoice, type VulkanDeviceList } from './gpu-select.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../util/errors.js';
import './kernels/scan-cpu.js';
import { registerWasmSegmentSum } from './kernels/segment-wasm.js';

export const BACKENDS = ['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

/** What --help says about the choice (cpu is the slow reference, never picked by auto). */
export const BACKEND_HELP = `${BACKENDS.join('|')}; auto: webgpu on a GPU, else tensorflow, else wasm; cpu is plain JS, a slow correctness reference`;

export interface InitOptions {
  /** Do not print which backend `auto` picked. */
  quiet?: boolean;
}

/** What the WebGPU adapter says about itself (empty strings where Dawn gives nothing). */
export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU implementation (lavapipe/llvmpipe, SwiftShader): usable, but `auto` skips it. */
  software: boolean;
  limits: Record<string, number>;
}

// Limits we raise to the adapter's maximum. Only names Dawn knows; each is copied if present.
const LIMIT_NAMES = [
  'maxStorageBuffersPerShaderStage',
  'maxUniformBuffersPerShaderStage',
  'maxStorageBufferBindingSize',
  'maxUniformBufferBindingSize',
  'maxBufferSize',
  'maxBindingsPerBindGroup',
  'maxComputeWorkgroupStorageSize',
  'maxComputeWorkgroupsPerDimension',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeInvocationsPerWorkgroup',
] as const;

interface WebGPUProbe {
  adapter: GPUAdapterLike | null;
  /** Why there is no adapter (module failed to load, or Dawn found none). */
  reason: string;
  /** Why the GPU asked for (--gpu / MIMETIC_GPU) cannot be had: fatal whichever backend runs. */
  gpuError?: string;
}

// Minimal structural types: the `webgpu` package's types are DOM-flavoured and not in our lib.
interface GPUAdapterLike {
  features: { has(name: string): boolean };
  limits: Record<string, unknown>;
  info?: Record<string, unknown>;
  requestDevice(desc: unknown): Promise<unknown>;
}
interface GPULike {
  requestAdapter(opts?: unknown): Promise<GPUAdapterLike | null>;
}

let probe: Promise<WebGPUProbe> | null = null;
let adapterDescription: AdapterDescription | null = null;
let gpuChoice: GpuChoice | null = null;
let deviceList: VulkanDeviceList | null = null;
let webgpuRegistered = false;

/**
 * Load Dawn once, expose it as navigator.gpu (what tfjs-backend-webgpu looks for), find an adapter.
 * With a GPU asked for (or `list`), Dawn runs over the GPU-select layer (gpu-select.ts), which
 * keeps that GPU only and reports every device it saw.
 */
function probeWebGPU(list = false): Promise<WebGPUProbe> {
  probe ??= (async (): Promise<WebGPUProbe> => {
    const want = requestedGpu();
    let listFile: string | null = null;
    if (want !== null || list) {
      const dir = layerDir();
      if (!dir) {
        const what = want !== null ? `--gpu ${want}` : 'listing GPUs';
        return { adapter: null, reason: 'GPU-select layer not built', gpuError: `${what}: the Vulkan layer that chooses GPUs by index (dist/native/vk-gpu-select) is not built; run npm run build (needs gcc)${want !== null ? ', or run without --gpu' : ''}` };
      }
      listFile = newListFile();
      Object.assign(process.env, layerEnv(dir, want, listFile));
    }
    try {
      const p = await findAdapter();
      if (listFile === null) return p;
      deviceList = readDeviceList(listFile);
      if (want === null) return p;
      if (!deviceList) {
        const why = p.adapter ? `the Vulkan loader did not run ${VK_LAYER_NAME} (VK_ADD_LAYER_PATH needs loader 1.3.234 or later)` : `no GPU found (${p.reason})`;
        return { ...p, gpuError: `--gpu ${want}: ${why}` };
      }
      try {
        gpuChoice = chooseGpu(deviceList, want);
      } catch (e) {
        if (e instanceof UserError) {
          adapterDescription = null;
          return { adapter: null, reason: e.message, gpuError: e.message };
        }
        throw e;
      }
      return p;
    } finally {
      if (listFile !== null) {
        removeListFile(listFile);
        delete process.env['MIMETIC_VK_GPU_LIST'];
      }
    }
  })();
  return probe;
}

async function findAdapter(): Promise<WebGPUProbe> {
  let mod: { create: (flags: string[]) => GPULike; globals: Record<string, unknown> };
  try {
    mod = (await import('webgpu')) as unknown as typeof mod;
  } catch (e) {
    return { adapter: null, reason: `the webgpu package (Dawn) could not be loaded: ${firstLine(e)}` };
  }
  Object.assign(globalThis, mod.globals);
  const gpu = mod.create(dawnCreateFlags());
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator === undefined) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  } else if (g.navigator.gpu === undefined) {
    // Node >= 21 has a read-only navigator; define the property on it.
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  }
  let adapter: GPUAdapterLike | null = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { adapter: null, reason: `Dawn failed to request an adapter: ${firstLine(e)}` };
  }
  if (!adapter) {
    const drivers = vulkanDriverFiles();
    const why = drivers.length === 0 ? 'no Vulkan driver manifest found; set VK_DRIVER_FILES to one' : `none of the Vulkan drivers ${drivers.map((f) => path.basename(f)).join(', ')} gave one`;
    return { adapter: null, reason: `Dawn found no WebGPU adapter (${why})` };
  }
  adapterDescription = describe(adapter);
  return { adapter, reason: '' };
}

function describe(adapter: GPUAdapterLike): AdapterDescription {
  const info = adapter.info ?? {};
  const str = (k: string): string => (typeof info[k] === 'string' ? (info[k] as string) : '');
  const limits: Record<string, number> = {};
  for (const k of LIMIT_NAMES) {
    const v = adapter.limits[k];
    if (typeof v === 'number') limits[k] = v;
  }
  const text = `${str('vendor')} ${str('architecture')} ${str('device')} ${str('description')}`;
  const software = info['isFallbackAdapter'] === true || /llvmpipe|lavapipe|swiftshader|software/i.test(text);
  return { vendor: str('vendor'), architecture: str('architecture'), device: str('device'), description: str('description'), software, limits };
}

/** The WebGPU adapter in use or found by the last probe; null before any probe or without one. */
export function webgpuAdapter(): AdapterDescription | null {
  return adapterDescription;
}

/** Whether a WebGPU adapter exists (software ones count). Loads Dawn on first call. */
export async function webgpuAvailable(): Promise<boolean> {
  return (await probeWebGPU()).adapter !== null;
}

/**
 * Every Vulkan device Dawn would see, with GPU indices (`mimetic gpus`, `sweep --gpus all`).
 * Loads Dawn over the GPU-select layer; call it before any backend starts.
 */
export async function listGpus(): Promise<VulkanDeviceList> {
  if (vulkanDriverFiles().length === 0) return { requested: null, devices: [] };
  const p = await probeWebGPU(true);
  if (p.gpuError) throw new UserError(p.gpuError);
  return deviceList ?? { requested: null, devices: [] };
}

/**
 * Check the GPU asked for (--gpu / MIMETIC_GPU) before any work: loads Dawn over the GPU-select
 * layer and throws the one-line UserError (how many GPUs there are) when it cannot be had. The
 * backend started later reuses this probe. Does nothing for the CPU backends or without a request.
 */
export async function checkRequestedGpu(backend: BackendName): Promise<void> {
  if (requestedGpu() === null || (backend !== 'webgpu' && backend !== 'auto')) return;
  if (backend === 'auto' && vulkanDriverFiles().length === 0) return;
  const { gpuError } = await probeWebGPU();
  if (gpuError) throw new UserError(gpuError);
}

/** What run.json records about the device: the WebGPU adapter and GPU, or null on other backends. */
export function runDevice(): { adapter: string; gpu: GpuChoice | null } | null {
  if (tf.getBackend() !== 'webgpu' || !adapterDescription) return null;
  return { adapter: adapterSummary(), gpu: gpuChoice };
}

async function registerWebGPU(): Promise<void> {
  const { adapter, reason, gpuError } = await probeWebGPU();
  if (gpuError) throw new UserError(gpuError);
  if (!adapter) {
    throw new UserError(`backend webgpu is not available: ${reason}; use --backend wasm (or auto), or run where a GPU and its Vulkan driver are present`);
  }
  if (webgpuRegistered) return;
  const mod = (await import('@tensorflow/tfjs-backend-webgpu')) as unknown as {
    WebGPUBackend: new (device: unknown, adapterInfo?: unknown) => tf.KernelBackend;
  };
  // The package registers its own factory at import when navigator.gpu exists; replace it with
  // one that asks for the adapter's maximum limits.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend(
    'webgpu',
    async () => {
      const requiredLimits: Record<string, number> = {};
      for (const k of LIMIT_NAMES) {
        const v = adapter.limits[k];
        if (typeof v === 'number') requiredLimits[k] = v;
      }
      const requiredFeatures = adapter.features.has('timestamp-query') ? ['timestamp-query'] : [];
      const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
      const backend = new mod.WebGPUBackend(device, adapter.info) as tf.KernelBackend & { tensorMap: { get(id: object): { values?: unknown } | undefined } };
      // tfjs reads GPU data synchronously through OffscreenCanvas, which Node lacks: values still
      // held on the CPU side read as before, anything else says what to do instead.
      const readSync = backend.readSync.bind(backend);
      backend.readSync = (dataId: object) => {
        if (backend.tensorMap.get(dataId)?.values != null) return readSync(dataId);
        throw new Error('dataSync()/arraySync() cannot read GPU data on the webgpu backend in Node: use await tensor.data() / tensor.array()');
      };
      return backend;
    },
    3,
  );
  webgpuRegistered = true;
  await import('./kernels/scan-webgpu.js');
}

async function registerTensorflow(): Promise<void> {
  if (tf.findBackendFactory('tensorflow')) return;
  const errors: string[] = [];
  // Variable specifiers: these optional packages have no types here and may be absent.
  for (const spec of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(spec);
      if (tf.findBackendFactory('tensorflow')) return;
      errors.push(`${spec} loaded but registered no 'tensorflow' backend (a second copy of @tensorflow/tfjs-core?)`);
    } catch (e) {
      errors.push(`${spec}: ${firstLine(e)}`);
    }
  }
  throw new UserError(
    `backend tensorflow is not available: neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node could be loaded (${errors.join('; ')}); install one with its native binding, or use --backend wasm`,
  );
}

async function registerWasm(): Promise<void> {
  if (!tf.findBackendFactory('wasm')) {
    try {
      await import('@tensorflow/tfjs-backend-wasm');
    } catch (e) {
      throw new UserError(`backend wasm is not available: @tensorflow/tfjs-backend-wasm could not be loaded (${firstLine(e)}); reinstall dependencies with npm ci, or use --backend cpu`);
    }
  }
  // The embedding gradient's kernel, which tfjs-backend-wasm lacks (kernels/segment-wasm.ts).
  registerWasmSegmentSum();
}

async function activate(name: string): Promise<void> {
  let ok = false;
  try {
    ok = await tf.setBackend(name);
    await tf.ready();
  } catch (e) {
    throw new UserError(`backend ${name} failed to start: ${firstLine(e)}; try --backend cpu`);
  }
  if (!ok || tf.getBackend() !== name) throw new UserError(`backend ${name} failed to start (tf.setBackend returned false); try --backend cpu`);
}

/** Can the tensorflow backend load? Does not change the current backend. */
async function tensorflowLoadable(): Promise<boolean> {
  try {
    await registerTensorflow();
    return true;
  } catch {
    return false;
  }
}

/**
 * Make `name` the current tf.js backend and return the name actually in use. `auto` prints its
 * choice (and why) on stderr unless quiet.
 */
export async function initBackend(name: BackendName, opts: InitOptions = {}): Promise<string> {
  if (!(BACKENDS as readonly string[]).includes(name)) {
    throw new UserError(`unknown backend '${String(name)}': choose one of ${BACKENDS.join(', ')}`);
  }
  let chosen: Exclude<BackendName, 'auto'>;
  let why = '';
  if (name === 'auto') {
    // Without any Vulkan driver manifest Dawn can find nothing; skip loading it (and its warnings).
    const { adapter, reason, gpuError } = vulkanDriverFiles().length > 0 ? await probeWebGPU() : { adapter: null, reason: 'no Vulkan driver installed', gpuError: undefined };
    if (gpuError) throw new UserError(gpuError);
    if (adapter && !adapterDescription?.software) {
      chosen = 'webgpu';
      why = `adapter: ${adapterSummary()}`;
    } else if (await tensorflowLoadable()) {
      chosen = 'tensorflow';
      why = adapter ? `only a software WebGPU adapter (${adapterSummary()})` : reason;
    } else {
      chosen = 'wasm';
      why = adapter ? `only a software WebGPU adapter (${adapterSummary()}); tfjs-node not loadable` : `${reason}; tfjs-node not loadable`;
    }
  } else {
    chosen = name;
  }
  switch (chosen) {
    case 'webgpu':
      await registerWebGPU();
      break;
    case 'tensorflow':
      await registerTensorflow();
      break;
    case 'wasm':
      await registerWasm();
      break;
    case 'cpu':
      break;
  }
  await activate(chosen);
  // The cpu backend greets Node users with a banner recommending tfjs-node on first use; mimetic
  // already chose its backend deliberately, so silence it (the `tensorflow` backend is that package).
  if (chosen === 'cpu') (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  if (name === 'auto' && !opts.quiet) process.stderr.write(`mimetic: backend ${chosen} (${why})\n`);
  // Which of several GPUs this process got, whenever one was asked for.
  if (chosen === 'webgpu' && gpuChoice) process.stderr.write(`mimetic: ${gpuLine(gpuChoice)}\n`);
  return chosen;
}

/** Vulkan driver manifests the loader would read (VK_DRIVER_FILES / VK_ICD_FILENAMES or the standard folders). */
export function vulkanDriverFiles(): string[] {
  const env = process.env['VK_DRIVER_FILES'] || process.env['VK_ICD_FILENAMES'];
  if (env) return env.split(':').filter((f) => f && fs.existsSync(f));
  const dirs = ['/usr/share/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/etc/vulkan/icd.d', ...(process.env['XDG_DATA_DIRS'] ?? '').split(':').filter(Boolean).map((d) => path.join(d, 'vulkan/icd.d'))];
  const files: string[] = [];
  for (const d of dirs) {
    try {
      for (const f of fs.readdirSync(d)) if (f.endsWith('.json')) files.push(path.join(d, f));
    } catch {
      // folder absent
    }
  }
  return files;
}

/** One line naming the adapter, e.g. "nvidia hopper (NVIDIA H200)". */
export function adapterSummary(): string {
  const a = adapterDescription;
  if (!a) return 'none';
  const name = a.description || a.device || 'unknown device';
  return `${[a.vendor, a.architecture].filter(Boolean).join(' ') || 'unknown vendor'} (${name})`;
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]!.trim();
}
