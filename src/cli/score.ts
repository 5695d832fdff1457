/**
 * `mimetic score <checkpoint>`: the mimetic scores of each layer, ranked (table or --json).
 * The option helpers here are shared with `mimetic report`.
 */
import { Option, type Command } from 'commander';
import { UserError } from '../util/errors.js';
import { printable } from '../util/text.js';
import { Checkpoint } from '../checkpoint/checkpoint.js';
import { resolveCheckpoint } from '../hub/resolve.js';
import { BACKEND_HELP, BACKENDS, initBackend, type BackendName } from '../model/backend.js';
import { auditCheckpoint, auditThreads, nonFiniteWarning, parseLayerSpec } from '../analysis/audit.js';
import { defaultThreads, parseThreads, prestartAuditThreads } from '../analysis/audit-threads.js';
import { probeFromOptions, probeWarning, type Probe } from '../analysis/probe.js';
import { byRank, type LayerScores } from '../analysis/scores.js';
import { highlightCount } from '../report/html.js';
import { layerProgress } from '../util/progress.js';
import { addHubOptions, hubOptionsFrom, type HubCliOptions } from './hub-options.js';
import { addGpuOption, applyGpuOption } from './gpu-option.js';
import { referenceNote, referenceScores, type ReferenceScores } from '../analysis/reference.js';
import { auditSeries, findSeries, selectSteps, seriesTable, type SeriesResult } from '../report/series.js';

export interface AuditCliOptions extends HubCliOptions {
  layers?: string;
  probe?: string;
  seqLen?: string;
  batchSize?: string;
  /** Old name of --batch-size (hidden). */
  batch?: string;
  seed?: string;
  backend: string;
  gpu?: string;
  channelBlock?: string;
  threads?: string;
  /** commander's --no-reference. */
  reference?: boolean;
  /** A run folder's (or a folder of checkpoints') series: 'all' or a list of kept steps. */
  steps?: string;
}

export function addAuditOptions(cmd: Command): Command {
  cmd
    .argument('<checkpoint>', 'checkpoint folder, .safetensors file or Hub id (org/name)')
    .option('--layers <spec>', 'layers to audit, e.g. 0-5,31 (default all)')
    .option('--probe <file>', 'probe JSON {"ids": [[…], …], "period": m} (default: random rows repeated once)')
    .option('--seq-len <n>', 'default probe: sequence length L (a row of ⌊L/2⌋ random ids, repeated); default 128')
    .option('--batch-size <n>', 'default probe: number of sequences; default 4')
    .addOption(new Option('--batch <n>', 'old name of --batch-size').hideHelp())
    .option('--seed <n>', 'default probe: random seed; default 0')
    .option('--backend <name>', `tf.js backend: ${BACKEND_HELP}`, 'auto')
    .option('--channel-block <n>', 'channels (Mamba-1) or heads (Mamba-2) per block in the attention computations')
    .option('--threads <n>', "wasm/cpu backends: threads sharing the probe's sequences (same scores); default: the machine's cores, at most one per sequence, and 1 above 1e9 parameters (each thread holds its own weights); 1 = one thread")
    .option('--no-reference', 'skip the reference rows (a fresh default-init and mimetic-init layer of the same shape, scored on the same probe)')
    .option('--steps <spec>', "audit a run's kept checkpoints (RUN_DIR/checkpoints/step-N, or a folder of checkpoint folders): 'all' or a list of steps");
  addGpuOption(cmd);
  addHubOptions(cmd);
  return cmd;
}

function intOpt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v.trim());
  if (v.trim() === '' || !Number.isSafeInteger(n)) throw new UserError(`${flag}: '${v}' is not an integer`);
  return n;
}

export interface ParsedAudit {
  layers: number[] | undefined;
  probe: Probe;
  channelBlock: number | undefined;
  backend: BackendName;
  /** Threads for the audit (the wasm and cpu backends use them; the others one). */
  threads: number;
}

/** Validate everything that can be checked before the model runs. */
export function parseAuditOptions(o: AuditCliOptions, ckpt: Checkpoint): ParsedAudit {
  if (!(BACKENDS as readonly string[]).includes(o.backend)) throw new UserError(`--backend: unknown backend '${o.backend}'; choose one of ${BACKENDS.join(', ')}`);
  if (o.batch !== undefined && o.batchSize !== undefined) throw new UserError('--batch is the old name of --batch-size; give --batch-size once');
  const channelBlock = intOpt(o.channelBlock, '--channel-block');
  if (channelBlock !== undefined && channelBlock < 1) throw new UserError(`--channel-block: '${o.channelBlock}' is not a positive integer`);
  const threadsOpt = parseThreads(o.threads);
  const layers = o.layers !== undefined ? parseLayerSpec(o.layers, ckpt.config.numLayers) : undefined;
  // The config's vocabulary; never past the embedding's rows (a config may declare more).
  const vocab = Math.min(ckpt.config.configVocabSize, ckpt.config.vocabSize);
  const probe = probeFromOptions(vocab, { probe: o.probe, seqLen: intOpt(o.seqLen, '--seq-len'), batch: o.batch !== undefined ? intOpt(o.batch, '--batch') : intOpt(o.batchSize, '--batch-size'), seed: intOpt(o.seed, '--seed') });
  const warning = probeWarning(probe);
  if (warning) process.stderr.write(`mimetic: warning: ${warning}\n`);
  const threads = threadsOpt ?? defaultThreads(probe.ids.length, ckpt.parameterCount());
  // The workers start while this thread loads its backend (named backends only: auto is not known yet).
  if (threads > 1) prestartAuditThreads(Math.min(threads, probe.ids.length) - 1, o.backend);
  return { layers, probe, channelBlock, backend: o.backend as BackendName, threads };
}

function fmt(v: number | null): string {
  return v === null ? '—' : Number.isFinite(v) ? v.toFixed(4) : String(v);
}

/**
 * The ranked table; the most mimetic rows (3, or 1 in small models) bold green when `color`; then
 * the reference rows (`ref default`, `ref mimetic`) when given.
 */
export function scoreTable(layers: LayerScores[], color: boolean, numLayers: number, ref?: ReferenceScores): string {
  const top = highlightCount(numLayers);
  const head = ['rank', 'layer', 'mimetic', 'cbIdentity', 'cbRowCos', 'maskOnes', 'lookbehind'];
  const cells = (l: Omit<LayerScores, 'rank' | 'layer'>) => [fmt(l.mimetic), fmt(l.cbIdentity), fmt(l.cbRowCos), fmt(l.maskOnes), fmt(l.lookbehind)];
  const rows = [...layers].sort(byRank).map((l) => [l.rank === null ? '—' : String(l.rank), String(l.layer), ...cells(l)]);
  const refRows = ref ? (['default', 'mimetic'] as const).map((k) => ['ref', k, ...cells(ref[k])]) : [];
  const widths = head.map((h, j) => Math.max(h.length, ...[...rows, ...refRows].map((r) => r[j]!.length)));
  const line = (r: string[]) => r.map((c, j) => c.padStart(widths[j]!)).join('  ');
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  ')];
  rows.forEach((r, k) => {
    const s = line(r);
    out.push(color && k < top && r[0] !== '—' ? `\x1b[1;32m${s}\x1b[0m` : s);
  });
  if (refRows.length) out.push(widths.map((w) => '·'.repeat(w)).join('  '), ...refRows.map(line));
  return out.join('\n');
}

export const REFERENCE_NOTICE = 'reference rows: scoring a fresh default-init and a mimetic-init layer of the same shape (--no-reference skips them)\n';

/** The reference rows unless --no-reference (two one-layer audits: seconds on a CPU for a 130m shape). */
export async function referenceFor(ckpt: Checkpoint, p: ParsedAudit, o: AuditCliOptions): Promise<ReferenceScores | undefined> {
  if (o.reference === false) return undefined;
  process.stderr.write(REFERENCE_NOTICE);
  return referenceScores(ckpt.config, p.probe, { channelBlock: p.channelBlock, threads: p.threads });
}

/**
 * The checkpoints `--steps` picks from a run folder, the audit options checked against the first
 * one (which fixes the shape, hence the probe's vocabulary), and the series audited with progress.
 */
export async function auditSeriesFor(arg: string, o: AuditCliOptions, quiet: boolean): Promise<{ series: SeriesResult; parsed: ParsedAudit; backend: string }> {
  const entries = selectSteps(findSeries(arg), o.steps!);
  const first = Checkpoint.open(entries[0]!.dir);
  let p: ParsedAudit;
  let per: number;
  try {
    p = parseAuditOptions(o, first);
    per = p.layers?.length ?? first.config.numLayers;
  } finally {
    first.close();
  }
  const backend = await initBackend(p.backend, { quiet });
  const bar = layerProgress('scoring');
  let done = 0;
  const series = await auditSeries(entries, {
    probe: p.probe, layers: p.layers, channelBlock: p.channelBlock, threads: p.threads, reference: o.reference !== false,
    onLayer: (layer) => bar.update(++done, entries.length * per, layer),
    onReference: () => process.stderr.write(REFERENCE_NOTICE),
  });
  bar.done();
  return { series, parsed: p, backend };
}

async function scoreSeriesCommand(arg: string, o: AuditCliOptions & { json?: boolean }): Promise<void> {
  const { series, parsed } = await auditSeriesFor(arg, o, Boolean(o.json));
  if (series.nonFinite.length) process.stderr.write(`mimetic: warning: ${printable(`non-finite weights (those layers are unranked): ${series.nonFinite.join('; ')}`)}\n`);
  if (o.json) {
    process.stdout.write(JSON.stringify({ source: arg, arch: series.arch, probe: { ids: parsed.probe.ids, period: parsed.probe.period }, threads: auditThreads(parsed.threads, parsed.probe.ids.length), checkpoints: series.checkpoints, ...(series.reference ? { reference: series.reference } : {}) }) + '\n');
    return;
  }
  process.stdout.write(`${printable(arg)}: ${series.arch}, ${series.numLayers} layers, ${series.checkpoints.length} checkpoints; ${series.seconds.toFixed(1)} s\nmimetic score per layer and step\n${seriesTable(series)}\n` +
    (series.reference ? `ref default ${series.reference.default.mimetic.toFixed(4)}, ref mimetic ${series.reference.mimetic.mimetic.toFixed(4)}\n` : ''));
}

export async function scoreCommand(arg: string, o: AuditCliOptions & { json?: boolean }): Promise<void> {
  await applyGpuOption(o.gpu, o.backend);
  if (o.steps !== undefined) return scoreSeriesCommand(arg, o);
  const dir = await resolveCheckpoint(arg, hubOptionsFrom(o, { quiet: Boolean(o.json) }));
  const ckpt = Checkpoint.open(dir);
  try {
    const p = parseAuditOptions(o, ckpt);
    await initBackend(p.backend, { quiet: o.json });
    const total = p.layers?.length ?? ckpt.config.numLayers;
    const bar = layerProgress('scoring');
    let done = 0;
    const res = await auditCheckpoint(ckpt, {
      probe: p.probe,
      layers: p.layers,
      channelBlock: p.channelBlock,
      threads: p.threads,
      onLayer: (a) => bar.update(++done, total, a.scores.layer),
    });
    bar.done();
    const nf = nonFiniteWarning(res);
    if (nf) process.stderr.write(`mimetic: warning: ${printable(nf)}\n`);
    const ref = await referenceFor(ckpt, p, o);
    if (o.json) {
      process.stdout.write(JSON.stringify({ checkpoint: arg, arch: ckpt.config.arch, probe: { ids: p.probe.ids, period: p.probe.period }, threads: res.threads, layers: res.layers, ...(ref ? { reference: ref } : {}) }) + '\n');
      return;
    }
    const B = p.probe.ids.length, L = p.probe.ids[0]!.length;
    process.stdout.write(
      `${arg}: ${ckpt.config.arch}, ${ckpt.config.numLayers} layers; probe ${B}×${L} tokens${p.probe.period !== null ? `, period ${p.probe.period}` : ', no period'}; ${res.seconds.toFixed(1)} s\n` +
        `${scoreTable(res.layers, Boolean(process.stdout.isTTY), ckpt.config.numLayers, ref)}\n` +
        `rank 1 = most mimetic (mimetic = mean of maskOnes, max(0, cbIdentity) and lookbehind)\n` +
        (ref ? `${referenceNote(ref)}\n` : ''),
    );
  } finally {
    ckpt.close();
  }
}

export function register(program: Command): void {
  const cmd = program.command('score').description('score each layer of a checkpoint for mimetic structure, ranked');
  addAuditOptions(cmd)
    .option('--json', 'print JSON instead of a table')
    .action(async (arg: string, o: AuditCliOptions & { json?: boolean }) => {
      await scoreCommand(arg, o);
    });
}
