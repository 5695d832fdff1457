/**
 * `mimetic forward`: run a checkpoint on token ids and write logits, hidden states and each
 * chosen layer's mixer input, implicit attention, decay and query-key maps (and Δ for Mamba-1),
 * optionally per-channel / per-head maps, to one safetensors file, named as in test/fixtures'
 * golden.safetensors; the file's __metadata__ says what each tensor is.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../util/errors.js';
import { Checkpoint } from '../checkpoint/checkpoint.js';
import { resolveCheckpoint } from '../hub/resolve.js';
import { writeSafetensors, type WritableTensor } from '../checkpoint/safetensors.js';
import { BACKEND_HELP, BACKENDS, initBackend, type BackendName } from '../model/backend.js';
import { checkIds } from '../model/mamba.js';
import { runCheckpoint } from '../analysis/capture.js';
import { parseIndexSpec, parseLayerSpec } from '../analysis/audit.js';
import { layerProgress } from '../util/progress.js';
import { formatBytes } from '../hub/progress.js';
import { addHubOptions, hubOptionsFrom, type HubCliOptions } from './hub-options.js';
import { addGpuOption, applyGpuOption } from './gpu-option.js';

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

/** Refuse an output path that cannot be written, before any download or computation. */
export function checkOutputFile(file: string, flag: string): void {
  const dir = path.dirname(path.resolve(file));
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new UserError(`${flag} ${file}: the folder ${dir} does not exist; create it first or choose another path`);
  }
  if (!st.isDirectory()) throw new UserError(`${flag} ${file}: ${dir} is not a folder; choose another path`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new UserError(`${flag} ${file}: the folder ${dir} is not writable; choose another path`);
  }
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new UserError(`${flag} ${file}: is a folder; give a file name ending in .safetensors`);
}

/** What each tensor of the output means, for the file's __metadata__ (keys `describe.<name>`, `{i}` = layer). */
export function forwardTensorDescriptions(arch: string, numLayers: number): Record<string, string> {
  const m2 = arch === 'mamba2';
  const unit = m2 ? 'heads' : 'channels';
  const d: Record<string, string> = {
    logits: '[B, L, vocab] next-token logits (lm_head of the final norm_f output)',
    'hidden_states.{i}': `[B, L, hidden]: for i < ${numLayers}, the residual stream after layer i; hidden_states.${numLayers} is the final norm_f output (the goldens' layout: no embedding entry)`,
    'layers.{i}.mixer_input': '[B, L, hidden] input of layer i\'s mixer (the residual after the block\'s RMSNorm)',
  };
  if (!m2) d['layers.{i}.delta'] = '[B, d_inner, L] the step size Δ = softplus(dt_proj(x) + bias) of each channel at each position';
  d['layers.{i}.attention'] = `[B, L, L] implicit attention α[t, s] (row t = target, column s = source; 0 for s > t) of the SSM as a linear-attention map, averaged over ${unit}`;
  d['layers.{i}.decay'] = `[B, L, L] decay mask exp(A·Σ_{k=s+1..t} Δ_k) (1 = no decay), averaged over ${m2 ? 'heads' : 'channels and states'}`;
  d['layers.{i}.qk'] = `[B, L, L] query-key map C_t·B_s${m2 ? ' (averaged over heads)' : ''}`;
  d['layers.{i}.channel_attention'] = `[B, k, L, L] α[t, s] of each of the k ${unit} listed in the metadata key 'channels', in that order`;
  return d;
}

export interface ForwardOptions extends HubCliOptions {
  ids: string;
  out: string;
  backend: string;
  channelBlock?: string;
  layers?: string;
  attention?: boolean;
  channels?: string;
  gpu?: string;
}

export async function forwardCommand(checkpointArg: string, o: ForwardOptions): Promise<void> {
  if (!(BACKENDS as readonly string[]).includes(o.backend)) throw new UserError(`--backend: unknown backend '${o.backend}'; choose one of ${BACKENDS.join(', ')}`);
  if (!o.out.endsWith('.safetensors')) throw new UserError(`--out ${o.out}: the output must be a .safetensors file`);
  checkOutputFile(o.out, '--out');
  await applyGpuOption(o.gpu, o.backend);
  const withAttention = o.attention ?? true;
  if (!withAttention && o.channels !== undefined) throw new UserError('--channels draws per-channel attention maps and cannot be combined with --no-attention; drop one of them');
  let channelBlock: number | undefined;
  if (o.channelBlock !== undefined) {
    channelBlock = Number(o.channelBlock);
    if (!Number.isSafeInteger(channelBlock) || channelBlock < 1) throw new UserError(`--channel-block: '${o.channelBlock}' is not a positive integer`);
  }
  const dir = await resolveCheckpoint(checkpointArg, hubOptionsFrom(o));
  const ckpt = Checkpoint.open(dir);
  try {
    const c = ckpt.config;
    const isM1 = c.arch !== 'mamba2';
    const layers = o.layers !== undefined ? parseLayerSpec(o.layers, c.numLayers) : undefined;
    const channels = o.channels !== undefined ? parseIndexSpec(o.channels, isM1 ? c.intermediateSize : c.numHeads!, '--channels', isM1 ? 'channel' : 'head') : undefined;
    const ids = readIdsFile(o.ids, c.vocabSize);
    await initBackend(o.backend as BackendName);
    const tensors: WritableTensor[] = [];
    const bar = layerProgress('forward');
    const t0 = performance.now();
    const captured: number[] = [];
    const res = await runCheckpoint(ckpt, ids, {
      capture: isM1 ? 'internals' : 'attention',
      layers,
      attention: withAttention,
      channels,
      keepCaptures: false,
      channelBlock,
      onProgress: (done, total, layer) => bar.update(done, total, layer),
      onLayer: (i, cap) => {
        captured.push(i);
        tensors.push({ name: `layers.${i}.mixer_input`, ...cap.mixerInput });
        if (isM1) {
          const d = cap.internals!.delta;
          const [B, L, D] = d.shape as [number, number, number];
          tensors.push({ name: `layers.${i}.delta`, shape: [B, D, L], data: transposeBLD(d.data, B, L, D) });
        }
        if (cap.attention) for (const k of ['attention', 'decay', 'qk'] as const) tensors.push({ name: `layers.${i}.${k}`, ...cap.attention[k] });
        if (cap.channelAttention) tensors.push({ name: `layers.${i}.channel_attention`, ...cap.channelAttention });
      },
    });
    bar.done();
    tensors.unshift({ name: 'logits', ...res.logits! }, ...res.hiddenStates.map((h, i) => ({ name: `hidden_states.${i}`, ...h })));
    const names = new Set(tensors.map((t) => t.name.replace(/^(hidden_states|layers)\.\d+/, '$1.{i}')));
    const describe = Object.fromEntries(Object.entries(forwardTensorDescriptions(c.arch, c.numLayers)).filter(([k]) => names.has(k)).map(([k, v]) => [`describe.${k}`, v]));
    const metadata: Record<string, string> = {
      source: checkpointArg, arch: c.arch, producer: 'mimetic forward',
      input_shape: `[${ids.length}, ${ids[0]!.length}] (B, L)`,
      layers: captured.join(','),
      attention: withAttention ? 'yes' : 'no (--no-attention)',
      ...(channels ? { channels: channels.join(','), channel_unit: isM1 ? 'channel' : 'head' } : {}),
      ...describe,
    };
    writeSafetensors(o.out, tensors, { metadata });
    const bytes = tensors.reduce((a, t) => a + 4 * t.shape.reduce((x, y) => x * y, 1), 0);
    process.stdout.write(`wrote ${o.out}: ${tensors.length} tensors (${formatBytes(bytes)}), maps of ${captured.length} of ${c.numLayers} layers${withAttention ? '' : ' (no attention)'}, ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  } finally {
    ckpt.close();
  }
}

export function register(program: Command): void {
  const cmd = program
    .command('forward')
    .description('run a checkpoint on token ids; write logits, hidden states and per-layer implicit attention to a .safetensors file (its __metadata__ describes each tensor)')
    .argument('<checkpoint>', 'checkpoint folder, .safetensors file or Hub id (org/name)')
    .requiredOption('--ids <file>', 'JSON file: an array of equal-length arrays of token ids')
    .requiredOption('--out <file>', 'output .safetensors file')
    .option('--layers <spec>', 'layers whose mixer input, Δ and maps are written, e.g. 0-5,23 (default all)')
    .option('--no-attention', 'skip the attention, decay and query-key maps (much faster; logits, hidden states, mixer inputs and Δ only)')
    .option('--channels <list>', 'also write layers.{i}.channel_attention: the maps of these channels (Mamba-1) or heads (Mamba-2), e.g. 0,5,10-12')
    .option('--backend <name>', `tf.js backend: ${BACKEND_HELP}`, 'auto')
    .option('--channel-block <n>', 'channels (Mamba-1) or heads (Mamba-2) per block in the attention computation');
  addGpuOption(cmd);
  addHubOptions(cmd)
    .action(async (ckpt: string, o: ForwardOptions) => {
      await forwardCommand(ckpt, o);
    });
}
