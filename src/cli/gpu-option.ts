/** `--gpu <i>`, shared by the commands that compute (score, report, forward, train). */
import type { Command } from 'commander';
import { BACKENDS, checkRequestedGpu, type BackendName } from '../model/backend.js';
import { parseGpuIndex, requestGpu } from '../model/gpu-select.js';
import { UserError } from '../util/errors.js';
import { printable } from '../util/text.js';

export const GPU_HELP = 'use GPU i of several (0 = first; `mimetic gpus` lists them): webgpu by Vulkan device index, tensorflow by CUDA_VISIBLE_DEVICES';

export function addGpuOption(cmd: Command): Command {
  return cmd.option('--gpu <i>', GPU_HELP);
}

/**
 * Take `--gpu` (undefined: not given) for this process and check, before any work, that the GPU
 * exists: `--gpu 1` on a one-GPU machine is one line saying so, with nothing written.
 */
export async function applyGpuOption(value: unknown, backend: string): Promise<void> {
  if (value === undefined) return;
  const i = parseGpuIndex(value);
  if (!(BACKENDS as readonly string[]).includes(backend)) throw new UserError(`--backend: unknown backend '${printable(backend)}'; choose one of ${BACKENDS.join(', ')}`);
  if (backend === 'wasm' || backend === 'cpu') throw new UserError(`--gpu ${i} goes with --backend webgpu, tensorflow or auto; the ${backend} backend runs on the CPU`);
  requestGpu(i);
  await checkRequestedGpu(backend as BackendName);
}
