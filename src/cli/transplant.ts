/** `mimetic transplant`: copy pretrained layers into a fresh (or given) model. */
import * as path from 'node:path';
import type { Command } from 'commander';
import { Checkpoint } from '../checkpoint/checkpoint.js';
import { type ResolveOptions, resolveCheckpoint } from '../hub/resolve.js';
import { addHubOptions, hubOptionsFrom, type HubCliOptions } from './hub-options.js';
import { UserError } from '../util/errors.js';
import { freshConfig, initWeights, initRecord } from '../model/init.js';
import { TRANSPLANT_PARTS, type TransplantJob, type TransplantPart, parseLayerList, targetFromCheckpoint, transplantToDir } from '../model/transplant.js';
import { addInitOptions, defaultCheckpointOut, ensureParent, initOptionsFrom, numOpt } from './init.js';

/** Open a checkpoint argument: folder, .safetensors file or Hub id (downloaded to the cache). */
export async function openCheckpointArg(arg: string, opts: ResolveOptions = {}): Promise<{ checkpoint: Checkpoint; name: string }> {
  return { checkpoint: Checkpoint.open(await resolveCheckpoint(arg, opts)), name: arg };
}

export function register(program: Command): void {
  const cmd = program
    .command('transplant')
    .description('copy layers of a pretrained checkpoint into a fresh or given model (HF checkpoint out)')
    .requiredOption('--from <checkpoint>', 'source checkpoint (folder, .safetensors file or Hub id)')
    .requiredOption('--layers <list>', 'source layer(s): one layer fills every target, or one per target (e.g. 31 or 0,1)')
    .option('--into <checkpoint>', 'target checkpoint; without it a fresh model is built with the source\'s widths and the init options below')
    .option('--target-layers <list>', 'target layers: all or a list (e.g. 0,1 or 0-3)', 'all')
    .option('--parts <part>', `what to copy: ${TRANSPLANT_PARTS.join('|')}`, 'mixer')
    .option('--n-layers <n>', 'fresh target: number of layers', '2')
    .option('--vocab <n>', 'fresh target: vocabulary size', '32');
  addInitOptions(cmd);
  addHubOptions(cmd, '--from');
  cmd.option('--out <dir>', 'output checkpoint folder (must not exist; default checkpoints/transplant-<source name>-L<layers>)').action(async (o: Record<string, unknown>) => {
    const out = o.out === undefined ? defaultCheckpointOut(`transplant-${path.basename(String(o.from)).replace(/\.safetensors$/, '')}-L${String(o.layers)}`) : String(o.out);
    const part = String(o.parts);
    if (!(TRANSPLANT_PARTS as readonly string[]).includes(part)) throw new UserError(`--parts: unknown part '${part}'; choose ${TRANSPLANT_PARTS.join(', ')}`);
    const hub = hubOptionsFrom(o as HubCliOptions);
    const from = await openCheckpointArg(String(o.from), hub);
    let into: Checkpoint | undefined;
    try {
      const src = from.checkpoint;
      const sourceLayers = parseLayerList(String(o.layers), '--layers', src.config.numLayers, false);
      let target: TransplantJob['target'];
      if (o.into !== undefined) {
        for (const k of ['nLayers', 'vocab', 'init', 'mimetic', 'aScale', 'bcNoise', 'seed']) {
          if (cmd.getOptionValueSource(k) === 'cli') throw new UserError(`--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} describes a fresh target and cannot be combined with --into; drop one of them`);
        }
        // --revision is --from's; --into names its own as org/name@rev.
        into = Checkpoint.open(await resolveCheckpoint(String(o.into), { ...hub, revision: undefined }));
        target = targetFromCheckpoint(into);
      } else {
        const sc = src.config;
        if (sc.arch === 'falcon_mamba') throw new UserError(`--from ${from.name}: a fresh target cannot be Falcon-Mamba; give --into a Falcon-Mamba checkpoint`);
        const init = initOptionsFrom(o);
        const config = freshConfig({
          arch: sc.arch, numLayers: numOpt(o.nLayers, '--n-layers'), hiddenSize: sc.hiddenSize, stateSize: sc.stateSize,
          headDim: sc.headDim, vocabSize: numOpt(o.vocab, '--vocab'), convKernel: sc.convKernel,
        });
        // A fresh target must share the source's derived widths, or only `block`/`ssm` parts could fit.
        Object.assign(config, { intermediateSize: sc.intermediateSize, timeStepRank: sc.timeStepRank, numHeads: sc.numHeads, headDim: sc.headDim, nGroups: sc.nGroups, useBias: sc.useBias, useConvBias: sc.useConvBias });
        target = { config, weights: initWeights(config, init), mimetic: initRecord(init) as unknown as Record<string, unknown> };
      }
      const targetLayers = parseLayerList(String(o.targetLayers), '--target-layers', target.config.numLayers, true);
      ensureParent(out);
      const records = await transplantToDir({ from: src, sourceName: from.name, sourceLayers, target, targetLayers, part: part as TransplantPart }, out);
      for (const r of records) process.stdout.write(`layer ${r.target} ← ${r.source} layer ${r.layer} (${r.parts})\n`);
      process.stdout.write(`wrote ${out}\n`);
    } finally {
      from.checkpoint.close();
      into?.close();
    }
  });
}
