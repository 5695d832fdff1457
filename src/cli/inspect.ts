/** `mimetic inspect <checkpoint> [--json]`: what a checkpoint is, read from its config and tensor shapes. */
import type { Command } from 'commander';
import { Checkpoint } from '../checkpoint/checkpoint.js';
import { resolveCheckpoint } from '../hub/resolve.js';
import { formatBytes } from '../hub/progress.js';
import { addHubOptions, hubOptionsFrom, type HubCliOptions } from './hub-options.js';

import { printable } from '../util/text.js';

/** What `mimetic init`, `transplant` and `train` recorded under "mimetic" in config.json, as label/text rows. */
export function provenanceRows(raw: Record<string, unknown>): [string, string][] {
  const m = raw.mimetic;
  if (!m || typeof m !== 'object' || Array.isArray(m)) return [];
  const r = m as Record<string, unknown>;
  const rows: [string, string][] = [];
  if (r.init === 'default' || r.init === 'mimetic') {
    const parts = Array.isArray(r.parts) && r.parts.length ? ` (${r.parts.map(printable).join(',')}${typeof r.aScale === 'number' ? `, c=${r.aScale}` : ''}${typeof r.bcNoise === 'number' && r.bcNoise > 0 ? `, bc noise ${r.bcNoise}` : ''})` : '';
    rows.push(['init', `${r.init}${parts}${r.seed !== undefined ? `, seed ${printable(r.seed)}` : ''}`]);
  }
  if (Array.isArray(r.transplant)) {
    for (const t of r.transplant as Record<string, unknown>[]) {
      rows.push(['transplant', `layer ${printable(t.target)} ← layer ${printable(t.layer)} of ${printable(t.source)} (${printable(t.parts)})`]);
    }
  }
  if (r.trained && typeof r.trained === 'object') {
    const tr = r.trained as Record<string, unknown>;
    const task = tr.task && typeof tr.task === 'object' ? printable((tr.task as Record<string, unknown>).task) : '?';
    rows.push(['trained', `${task}, ${printable(tr.steps)} steps, seed ${printable(tr.seed)}${typeof r.aScale === 'number' ? `, A = −exp(−${r.aScale}·A_log_param)` : ''}`]);
  }
  return rows;
}

/** The `--json` summary: exactly these keys, Mamba-2 with heads/head dim/groups instead of dt rank, plus `provenance` (config.json's "mimetic") when recorded. */
export function inspectSummary(ckpt: Checkpoint): Record<string, unknown> {
  const c = ckpt.config;
  return {
    arch: c.arch,
    numLayers: c.numLayers,
    hiddenSize: c.hiddenSize,
    intermediateSize: c.intermediateSize,
    stateSize: c.stateSize,
    convKernel: c.convKernel,
    ...(c.arch === 'mamba2' ? { numHeads: c.numHeads, headDim: c.headDim, nGroups: c.nGroups } : { timeStepRank: c.timeStepRank }),
    vocabSize: c.vocabSize,
    tiedEmbeddings: c.tiedEmbeddings,
    useBias: c.useBias,
    useConvBias: c.useConvBias,
    dtypes: ckpt.dtypes(),
    parameters: ckpt.parameterCount(),
    files: ckpt.files.map((f) => ({ name: f.name, bytes: f.bytes })),
    ...(provenanceRows(ckpt.rawConfig).length ? { provenance: ckpt.rawConfig.mimetic } : {}),
    ...(ckpt.inferred ? { configInferred: ckpt.inferred } : {}),
  };
}

const ARCH_NAMES = { mamba1: 'Mamba-1', mamba2: 'Mamba-2', falcon_mamba: 'Falcon-Mamba' } as const;

export function inspectText(ckpt: Checkpoint, where: string): string {
  const c = ckpt.config;
  const rows: [string, string][] = [
    ['checkpoint', where],
    ['architecture', `${ARCH_NAMES[c.arch]} (${c.layout === 'hf' ? 'transformers layout' : 'state-spaces layout'})`],
    ['layers', String(c.numLayers)],
    ['hidden size', String(c.hiddenSize)],
    ['d_inner', String(c.intermediateSize)],
    ['state size', String(c.stateSize)],
    ['conv kernel', String(c.convKernel)],
  ];
  if (c.arch === 'mamba2') {
    rows.push(['heads', `${c.numHeads} × head dim ${c.headDim}`], ['groups', String(c.nGroups)]);
  } else {
    rows.push(['dt rank', String(c.timeStepRank)]);
  }
  rows.push(
    ['vocabulary', c.configVocabSize === c.vocabSize ? String(c.vocabSize) : `${c.configVocabSize} (padded to ${c.vocabSize} embedding rows)`],
    ['lm head', c.tiedEmbeddings ? 'tied to the embedding' : 'separate lm_head.weight'],
    ['biases', `in/out projections ${c.useBias ? 'yes' : 'no'}, conv ${c.useConvBias ? 'yes' : 'no'}`],
    ['dtypes', Object.entries(ckpt.dtypes()).map(([d, n]) => `${d} × ${n}`).join(', ')],
    ['parameters', `${ckpt.parameterCount().toLocaleString('en-US')}`],
  );
  if (ckpt.inferred) rows.push(['config', 'none: inferred from the tensor shapes, with transformers\' defaults']);
  rows.push(...provenanceRows(ckpt.rawConfig));
  const total = ckpt.files.reduce((a, f) => a + f.bytes, 0);
  rows.push(['files', `${ckpt.files.length} (${formatBytes(total)})`]);
  const w = Math.max(...rows.map((r) => r[0].length));
  const lines = rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
  for (const f of ckpt.files) lines.push(`${' '.repeat(w)}    ${f.name}  ${formatBytes(f.bytes)} (${f.bytes} bytes)`);
  // Paths and shard names are outside text: no control characters reach the terminal.
  return lines.map(printable).join('\n') + '\n';
}

export function register(program: Command): void {
  const cmd = program
    .command('inspect')
    .description('summarise a Mamba checkpoint: architecture, dimensions, vocabulary, dtypes, parameters, files')
    .argument('<checkpoint>', 'checkpoint folder, .safetensors file or Hub id (org/name[@revision])')
    .option('--json', 'print the summary as JSON');
  addHubOptions(cmd)
    .action(async (arg: string, o: HubCliOptions & { json?: boolean }) => {
      const local = await resolveCheckpoint(arg, hubOptionsFrom(o, { quiet: Boolean(o.json) }));
      const ckpt = Checkpoint.open(local);
      try {
        // Build the whole text before printing, so an error never leaves half a summary.
        const out = o.json ? JSON.stringify(inspectSummary(ckpt), null, 2) + '\n' : inspectText(ckpt, local);
        process.stdout.write(out);
      } finally {
        ckpt.close();
      }
    });
}
