/**
 * Which GPU a process should use, chosen by its parent (e.g. `mimetic sweep --gpus 0,1`) through
 * the environment, since a child's backend starts before any option could reach it.
 *
 *   MIMETIC_GPU=<i>              the i-th GPU. Also sets CUDA_VISIBLE_DEVICES=<i> in the child,
 *                                which the tensorflow backend (tfjs-node-gpu, CUDA) honours.
 *   MIMETIC_GPU_ADAPTER=<name>   WebGPU: the first adapter whose device name contains <name>.
 *
 * Dawn (the `webgpu` package) cannot pick an adapter by index: `create(['adapter=NAME'])` takes
 * the first adapter whose name contains NAME (dawn/node/binding/GPU.cpp), and requestAdapter's
 * powerPreference only orders by adapter type. Identical GPUs (e.g. 8 × H200) all have the same
 * name, and the Vulkan loader has no variable that hides all but one device, so on the webgpu
 * backend every child lands on the first matching GPU: `--gpus` spreads work only for backends
 * that honour CUDA_VISIBLE_DEVICES, or for GPUs with different names (MIMETIC_GPU_ADAPTER).
 */

export const GPU_ENV = 'MIMETIC_GPU';
export const GPU_ADAPTER_ENV = 'MIMETIC_GPU_ADAPTER';

/** The environment a parent gives a child meant to run on GPU `index`. */
export function childGpuEnv(index: number, adapterName?: string): Record<string, string> {
  const env: Record<string, string> = { [GPU_ENV]: String(index), CUDA_VISIBLE_DEVICES: String(index) };
  if (adapterName) env[GPU_ADAPTER_ENV] = adapterName;
  return env;
}

/** The GPU index asked for by the environment, or null. */
export function requestedGpu(env: NodeJS.ProcessEnv = process.env): number | null {
  const v = env[GPU_ENV];
  if (v === undefined || v === '') return null;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/**
 * Flags for the webgpu package's `create(flags)`: `adapter=<name>` when MIMETIC_GPU_ADAPTER is
 * set, else none. The backend calls `create(dawnCreateFlags())` in place of `create([])`.
 */
export function dawnCreateFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  const name = env[GPU_ADAPTER_ENV];
  return name ? [`adapter=${name}`] : [];
}
