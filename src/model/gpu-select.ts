/**
 * Which GPU a process uses: `--gpu i` on the commands that compute, or MIMETIC_GPU=i from a parent
 * (`mimetic sweep --gpus 0,1`), since a child's backend starts before any option could reach it.
 *
 *   tensorflow backend  CUDA_VISIBLE_DEVICES=i (tfjs-node-gpu, CUDA), set with MIMETIC_GPU.
 *   webgpu backend      Dawn (the `webgpu` package) can choose an adapter only by name
 *                       (`create(['adapter=NAME'])`), and the GPUs of one host have identical
 *                       names. So, like llama.cpp's GGML_VK_VISIBLE_DEVICES, the choice is made by
 *                       enumeration index one level down: a Vulkan layer built with the toolkit
 *                       (native/vk-gpu-select) hides every physical device but GPU i, so Dawn sees
 *                       one adapter. The layer also writes the device list it saw, from which
 *                       chooseGpu() says which GPU a run got, or how many there are.
 *
 * GPU indices count the devices that are not CPU implementations (lavapipe, SwiftShader), in the
 * driver's order; where every device is a CPU one (CI), those count, so `--gpu 0` still works.
 */
import { printable } from '../util/text.js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../util/errors.js';

export const GPU_ENV = 'MIMETIC_GPU';
export const GPU_ADAPTER_ENV = 'MIMETIC_GPU_ADAPTER';
export const VK_LAYER_NAME = 'VK_LAYER_MIMETIC_gpu_select';
const LAYER_LIB = 'libVkLayer_MIMETIC_gpu_select.so';
const LAYER_MANIFEST = 'VkLayer_MIMETIC_gpu_select.json';

/** One physical device as the layer saw it (its MIMETIC_VK_GPU_LIST file). */
export interface VulkanDevice {
  /** GPU index, or null for a CPU implementation skipped because hardware GPUs exist. */
  gpu: number | null;
  name: string;
  /** discrete, integrated, virtual, cpu or other. */
  type: string;
  vendorID: number;
  deviceID: number;
  /** VkPhysicalDeviceIDProperties.deviceUUID as hex; null below Vulkan 1.1. */
  uuid: string | null;
  /** Whether the layer let it through to Dawn. */
  kept: boolean;
}
export interface VulkanDeviceList {
  requested: number | null;
  devices: VulkanDevice[];
}

/** The GPU a process got: what run.json records and mimetic prints. */
export interface GpuChoice {
  index: number;
  /** How many GPUs there were to choose from. */
  count: number;
  name: string;
  type: string;
  uuid: string | null;
}

/** `--gpu <i>`: a GPU index, or a UserError naming the option. */
export function parseGpuIndex(value: unknown, option = '--gpu'): number {
  const s = String(value).trim();
  const n = /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n)) throw new UserError(`${option}: '${printable(value)}' is not a GPU index (0, 1, …); \`mimetic gpus\` lists them`);
  return n;
}

/** The environment a parent gives a child meant to run on GPU `index`. */
export function childGpuEnv(index: number, adapterName?: string): Record<string, string> {
  const env: Record<string, string> = { [GPU_ENV]: String(index), CUDA_VISIBLE_DEVICES: String(index) };
  if (adapterName) env[GPU_ADAPTER_ENV] = adapterName;
  return env;
}

/** `--gpu i` for this process: the same variables a sweep gives its children, set before any backend loads. */
export function requestGpu(index: number, env: NodeJS.ProcessEnv = process.env): void {
  Object.assign(env, childGpuEnv(index));
}

/** The GPU index asked for by the environment, or null; a malformed MIMETIC_GPU is a UserError. */
export function requestedGpu(env: NodeJS.ProcessEnv = process.env): number | null {
  const v = env[GPU_ENV];
  if (v === undefined || v === '') return null;
  return parseGpuIndex(v, GPU_ENV);
}

/** Dawn toggles to turn on, comma-separated (bench/gpu-train-step.sh's A/B of the shader safety passes). */
export const DAWN_TOGGLES_ENV = 'MIMETIC_DAWN_TOGGLES';

/**
 * Flags for the webgpu package's `create(flags)`: `adapter=<name>` when MIMETIC_GPU_ADAPTER is
 * set (GPUs with different names), and `enable-dawn-features=<toggles>` when MIMETIC_DAWN_TOGGLES
 * is (e.g. disable_robustness,disable_workgroup_init: no index clamping, no zeroed workgroup memory).
 */
export function dawnCreateFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  const name = env[GPU_ADAPTER_ENV];
  const flags = name ? [`adapter=${name}`] : [];
  const toggles = env[DAWN_TOGGLES_ENV];
  if (toggles) {
    if (!/^[a-z0-9_]+(,[a-z0-9_]+)*$/.test(toggles)) throw new UserError(`${DAWN_TOGGLES_ENV}: '${printable(toggles)}' is not a comma-separated list of Dawn toggle names (e.g. disable_robustness,disable_workgroup_init)`);
    flags.push(`enable-dawn-features=${toggles}`);
  }
  return flags;
}

/** The folder holding the built layer and its manifest, or null when it was not built. */
export function layerDir(): string | null {
  // dist/src/model/gpu-select.js → dist/native/vk-gpu-select (native/vk-gpu-select/build.sh).
  const dir = fileURLToPath(new URL('../../native/vk-gpu-select/', import.meta.url));
  return fs.existsSync(path.join(dir, LAYER_LIB)) && fs.existsSync(path.join(dir, LAYER_MANIFEST)) ? dir : null;
}

/**
 * The variables that make the Vulkan loader run the layer: keep GPU `index` (null: keep all,
 * only list them) and write the device list to `listFile`. Mesa's own device-select layer is
 * turned off: it reorders devices, and it crashes when a layer below it reports none.
 */
export function layerEnv(dir: string, index: number | null, listFile: string, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const join = (name: string, value: string) => (env[name] ? `${value}:${env[name]}` : value);
  const out: Record<string, string> = {
    VK_ADD_LAYER_PATH: join('VK_ADD_LAYER_PATH', dir),
    VK_INSTANCE_LAYERS: (env['VK_INSTANCE_LAYERS'] ?? '').split(':').includes(VK_LAYER_NAME) ? env['VK_INSTANCE_LAYERS']! : join('VK_INSTANCE_LAYERS', VK_LAYER_NAME),
    MIMETIC_VK_GPU_LIST: listFile,
    NODEVICE_SELECT: '1',
  };
  if (index !== null) out['MIMETIC_VK_GPU'] = String(index);
  return out;
}

/** A fresh path for the layer's list (in its own temp folder, removed by removeListFile). */
export function newListFile(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-gpus-')), 'devices.json');
}

export function removeListFile(file: string): void {
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
}

/** The layer's device list, or null when it wrote none (layer not loaded, or no Vulkan instance). */
export function readDeviceList(file: string): VulkanDeviceList | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const j = JSON.parse(text) as VulkanDeviceList;
  if (!j || !Array.isArray(j.devices)) throw new Error(`${file}: not a device list from ${VK_LAYER_NAME}`);
  return j;
}

/** The GPUs of a device list, by index. */
export function gpusOf(list: VulkanDeviceList): VulkanDevice[] {
  return list.devices.filter((d) => d.gpu !== null).sort((a, b) => a.gpu! - b.gpu!);
}

/** GPU `index` of the list, or a one-line UserError saying how many GPUs there are. */
export function chooseGpu(list: VulkanDeviceList, index: number): GpuChoice {
  const gpus = gpusOf(list);
  const d = gpus.find((g) => g.gpu === index);
  if (!d) {
    const have = gpus.length === 0 ? 'this machine has no GPU (the Vulkan driver reports no device)' : `this machine has ${gpus.length} GPU${gpus.length === 1 ? '' : 's'} (${gpus.map(describeDevice).join('; ')})`;
    const fix = gpus.length === 0 ? 'run without --gpu, or where a GPU and its Vulkan driver are present' : `choose --gpu ${gpus.length === 1 ? '0' : `0 to ${gpus.length - 1}`}`;
    throw new UserError(`--gpu ${index}: ${have}; ${fix}`);
  }
  return { index, count: gpus.length, name: driverText(d.name), type: d.type, uuid: d.uuid };
}

/** "0: NVIDIA H200 (discrete)". */
export function describeDevice(d: VulkanDevice): string {
  return `${d.gpu}: ${driverText(d.name) || 'unnamed device'} (${d.type === 'cpu' ? 'a CPU implementation' : d.type})`;
}

/** What mimetic prints once a run has its GPU, e.g. "GPU 1 of 8: NVIDIA H200 (discrete, uuid 4f…)". */
export function gpuLine(c: GpuChoice): string {
  return `GPU ${c.index} of ${c.count}: ${c.name || 'unnamed device'} (${c.type === 'cpu' ? 'a CPU implementation' : c.type}${c.uuid ? `, uuid ${c.uuid}` : ''})`;
}

/** Driver text goes to a terminal: util/text's printable, kept short. */
function driverText(s: string): string {
  return printable(s).slice(0, 200);
}
