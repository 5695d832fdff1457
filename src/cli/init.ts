/** `mimetic init`: write a freshly initialised (default or mimetic) Mamba checkpoint. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import { UserError } from '../util/errors.js';
import { type InitOptions, type ModelShape, parseMimeticParts, writeFreshCheckpoint } from '../model/init.js';

/** Parse a number option strictly (commander hands us strings). */
export function numOpt(v: unknown, flag: string, kind: 'int' | 'float' = 'int'): number {
  const s = String(v).trim();
  const n = Number(s);
  if (s === '' || !Number.isFinite(n) || (kind === 'int' && !Number.isSafeInteger(n))) {
    throw new UserError(`${flag}: '${String(v)}' is not ${kind === 'int' ? 'an integer' : 'a number'}`);
  }
  return n;
}

/** The options that describe a fresh model (shared by init, transplant and train). */
export function addModelOptions(cmd: Command, defaults: { nLayers?: string; dModel?: string; dState?: string; vocab?: string } = {}): Command {
  return cmd
    .option('--arch <arch>', 'mamba1 or mamba2', 'mamba1')
    .option('--n-layers <n>', 'number of layers', defaults.nLayers ?? '2')
    // --layers names layer indices everywhere (score, report, forward, transplant); here it is a mistake to explain.
    .addOption(new Option('--layers <n>').hideHelp())
    .option('--d-model <n>', 'hidden size (d_inner = 2·d_model)', defaults.dModel ?? '256')
    .option('--d-state <n>', 'SSM state size N', defaults.dState ?? '16')
    .option('--head-dim <n>', 'Mamba-2 head dim', '64')
    .option('--conv-kernel <n>', 'conv1d width', '4')
    .option('--vocab <n>', 'vocabulary size (embedding rows)', defaults.vocab ?? '32');
}

export function addInitOptions(cmd: Command): Command {
  return cmd
    .option('--init <kind>', 'default (mamba_ssm recipe) or mimetic', 'default')
    .option('--mimetic <parts>', 'mimetic parts: any of a,dt,bc,conv', 'a,dt,bc,conv')
    .option('--a-scale <c>', 'c in A = −exp(−c·A_log) (2, 4 or 8)', '8')
    .option('--bc-noise <alpha>', 'W_C = W_B + α·Z', '0')
    .option('--seed <n>', 'random seed', '0');
}

/** `--layers N` where a count is meant: one line pointing at --n-layers. */
export function rejectLayersCount(o: Record<string, unknown>, command: string): void {
  if (o.layers === undefined) return;
  throw new UserError(`--layers ${String(o.layers)}: ${command} takes the number of layers as --n-layers ${String(o.layers)}; --layers names layer indices (score, report, forward, transplant)`);
}

export function modelShapeFrom(o: Record<string, unknown>): ModelShape {
  const arch = String(o.arch);
  if (arch !== 'mamba1' && arch !== 'mamba2') throw new UserError(`--arch: unknown architecture '${arch}'; choose mamba1 or mamba2`);
  return {
    arch,
    numLayers: numOpt(o.nLayers, '--n-layers'),
    hiddenSize: numOpt(o.dModel, '--d-model'),
    stateSize: numOpt(o.dState, '--d-state'),
    headDim: numOpt(o.headDim, '--head-dim'),
    convKernel: numOpt(o.convKernel, '--conv-kernel'),
    vocabSize: numOpt(o.vocab, '--vocab'),
  };
}

export function initOptionsFrom(o: Record<string, unknown>): InitOptions {
  const init = String(o.init);
  if (init !== 'default' && init !== 'mimetic') throw new UserError(`--init: unknown init '${init}'; choose default or mimetic`);
  return {
    init,
    parts: parseMimeticParts(String(o.mimetic)),
    aScale: numOpt(o.aScale, '--a-scale', 'float'),
    bcNoise: numOpt(o.bcNoise, '--bc-noise', 'float'),
    seed: numOpt(o.seed, '--seed'),
  };
}

/** The default --out of init and transplant: `checkpoints/<name>` under the current folder. */
export function defaultCheckpointOut(name: string): string {
  return path.join('checkpoints', name.replace(/[^A-Za-z0-9._+,-]+/g, '_').replace(/^[._]+/, '') || 'checkpoint');
}

/** Make the parent of an --out folder (checkpoints/ in a fresh folder) just before writing. */
export function ensureParent(out: string): void {
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
}

export function register(program: Command): void {
  const cmd = program.command('init').description('write a freshly initialised Mamba checkpoint (HF format)');
  addModelOptions(cmd);
  addInitOptions(cmd);
  cmd.option('--out <dir>', 'output checkpoint folder (must not exist; default checkpoints/<arch>-<init>-<n-layers>x<d-model>-seed<seed>)').action(async (o: Record<string, unknown>) => {
    rejectLayersCount(o, 'init');
    const shape = modelShapeFrom(o);
    const init = initOptionsFrom(o);
    const out = o.out === undefined ? defaultCheckpointOut(`${shape.arch}-${init.init}-${shape.numLayers}x${shape.hiddenSize}-seed${init.seed}`) : String(o.out);
    ensureParent(out);
    const { config, record, parameters } = await writeFreshCheckpoint(out, shape, init);
    process.stdout.write(
      `wrote ${out}: ${config.arch}, ${config.numLayers} layers, d_model ${config.hiddenSize}, d_state ${config.stateSize}, ` +
        `init ${record.init}${record.parts.length ? ` (${record.parts.join(',')}${record.aScale ? `, c=${record.aScale}` : ''})` : ''}, seed ${record.seed}, ${parameters} parameters\n`,
    );
  });
}
