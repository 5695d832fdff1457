/** `mimetic gpus`: the GPUs `--gpu i` and `sweep --gpus` choose among, by index. */
import type { Command } from 'commander';
import { listGpus } from '../model/backend.js';
import { describeDevice, gpusOf } from '../model/gpu-select.js';

export function register(program: Command): void {
  program
    .command('gpus')
    .description('list the GPUs that --gpu i chooses among (Vulkan devices, as Dawn sees them)')
    .option('--json', 'print the device list as JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await listGpus();
      if (o.json) {
        process.stdout.write(JSON.stringify({ gpus: gpusOf(list).length, devices: list.devices }) + '\n');
        return;
      }
      const gpus = gpusOf(list);
      const skipped = list.devices.length - gpus.length;
      process.stdout.write(
        gpus.length === 0
          ? 'no GPU: the Vulkan loader reports no device (is a driver installed? VK_DRIVER_FILES names its manifest)\n'
          : `${gpus.length} GPU${gpus.length === 1 ? '' : 's'}${skipped ? ` (and ${skipped} CPU implementation${skipped === 1 ? '' : 's'}, not counted)` : ''}:\n` +
              gpus.map((d) => `  ${describeDevice(d)}${d.uuid ? `  uuid ${d.uuid}` : ''}\n`).join(''),
      );
    });
}
