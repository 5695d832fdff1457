/**
 * `mimetic forward`: run a checkpoint on token ids and write logits, hidden states and each
 * layer's mixer input, implicit attention, decay and query-key maps (and Δ for Mamba-1) to one
 * safetensors file, named as in test/fixtures' golden.safetensors.
 */
import * as fs from 'node:fs';
import type { Command } from 'commander';
import { UserError } from '../util/errors.js';
import { Checkpoint } from '../checkpoint/checkpoint.js';
import { resolveCheckpoint } from '../checkpoint/resolve.js';
import { writeSafetensors, type WritableTensor } from '../checkpoint/safetensors.js';
import { BACKENDS, initBackend, type BackendName } from '../model/backend.js';
import { checkIds, runCheckpoint } from '../model/mamba.js';

/** Read a JSON file of equal-length arrays of integer token ids. */
export function readIdsFile(file: string, vocab: number): number[][] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new UserError(`${file}: cannot read the ids file; give a JSON file holding an array of equal-length arrays of token ids`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message.replace(/\s+/g, ' ')}); give an array of equal-length arrays of token ids, e.g. [[1, 2, 3]]`);
  }
  if (!Array.isArray(v)) throw new UserError(`${file}: expected an array of arrays of token ids, e.g. [[1, 2, 3]]`);
  if (v.length === 0) throw new UserError(`${file}: empty input; give at least one sequence of at least one token`);
  v.forEach((row, r) => {
    if (!Array.isArray(row)) throw new UserError(`${file}: row ${r} is not an array; expected an array of arrays of token ids`);
  });
  try {
    checkIds(v as number[][], vocab);
  } catch (e) {
    if (e instanceof UserError) throw new UserError(`${file}: ${e.message}`);
    throw e;
  }
  return v as number[][];
}

/** Δ [B, L, Din] → [B, Din, L], the goldens' layout. */
function transposeBLD(data: Float32Array, B: number, L: number, D: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let b = 0; b < B; b++) for (let t = 0; t < L; t++) for (let d = 0; d < D; d++) out[(b * D + d) * L + t] = data[(b * L + t) * D + d]!;
  return out;
}

export async function forwardCommand(checkpointArg: string, o: { ids: string; out: string; backend: string; channelBlock?: string }): Promise<void> {
  if (!(BACKENDS as readonly string[]).includes(o.backend)) throw new UserError(`--backend: unknown backend '${o.backend}'; choose one of ${BACKENDS.join(', ')}`);
  if (!o.out.endsWith('.safetensors')) throw new UserError(`--out ${o.out}: the output must be a .safetensors file`);
  let channelBlock: number | undefined;
  if (o.channelBlock !== undefined) {
    channelBlock = Number(o.channelBlock);
    if (!Number.isSafeInteger(channelBlock) || channelBlock < 1) throw new UserError(`--channel-block: '${o.channelBlock}' is not a positive integer`);
  }
  const dir = await resolveCheckpoint(checkpointArg);
  const ckpt = Checkpoint.open(dir);
  try {
    const ids = readIdsFile(o.ids, ckpt.config.vocabSize);
    await initBackend(o.backend as BackendName);
    const tensors: WritableTensor[] = [];
    const isM1 = ckpt.config.arch !== 'mamba2';
    const res = await runCheckpoint(ckpt, ids, {
      capture: isM1 ? 'internals' : 'attention',
      keepCaptures: false,
      channelBlock,
      onLayer: (i, cap) => {
        tensors.push({ name: `layers.${i}.mixer_input`, ...cap.mixerInput });
        if (isM1) {
          const d = cap.internals!.delta;
          const [B, L, D] = d.shape as [number, number, number];
          tensors.push({ name: `layers.${i}.delta`, shape: [B, D, L], data: transposeBLD(d.data, B, L, D) });
        }
        for (const k of ['attention', 'decay', 'qk'] as const) tensors.push({ name: `layers.${i}.${k}`, ...cap.attention![k] });
      },
    });
    tensors.unshift({ name: 'logits', ...res.logits! }, ...res.hiddenStates.map((h, i) => ({ name: `hidden_states.${i}`, ...h })));
    writeSafetensors(o.out, tensors, { metadata: { source: checkpointArg, arch: ckpt.config.arch, producer: 'mimetic forward' } });
  } finally {
    ckpt.close();
  }
}

export function register(program: Command): void {
  program
    .command('forward')
    .description('run a checkpoint on token ids; write logits, hidden states and per-layer implicit attention to a .safetensors file')
    .argument('<checkpoint>', 'checkpoint folder, .safetensors file or Hub id (org/name)')
    .requiredOption('--ids <file>', 'JSON file: an array of equal-length arrays of token ids')
    .requiredOption('--out <file>', 'output .safetensors file')
    .option('--backend <name>', `tf.js backend: ${BACKENDS.join(', ')}`, 'auto')
    .option('--channel-block <n>', 'channels (Mamba-1) or heads (Mamba-2) per block in the attention computation')
    .action(async (ckpt: string, o: { ids: string; out: string; backend: string; channelBlock?: string }) => {
      await forwardCommand(ckpt, o);
    });
}
