/**
 * Audit benchmark: a full audit (scores, then the report) of random checkpoints shaped like
 * mamba-130m-hf (24 layers, hidden 768, d_inner 1536, state 16, dt rank 48), mamba-2.8b-hf
 * (64 layers, hidden 2560, d_inner 5120, state 16, dt rank 160) and mamba2-130m (`m2-130m`: 24
 * layers, hidden 768, d_inner 1536, 24 heads of 64, state 128, one group), vocab 50280, F32, with
 * the default probe (4 × 128 tokens, period 64). The checkpoint is written one layer per shard (plus
 * an index), tensor by tensor, so writing the 11 GB 2.8B model never holds it in memory. Each audit
 * runs in a child process, so its wall time and peak RSS are its own.
 *
 * Where python3 with numpy is present, bench/score_numpy.py (the same forward pass, maps and
 * scores in vectorised numpy) runs on the same checkpoint and probe, and the JSON gives the
 * per-layer score agreement and mimetic's time over numpy's. `--train` adds the demo model's
 * training step (the `make demo` run's shape, more steps) and `--demo` times `make demo` itself
 * (its recipe, not the build). Prints one JSON object.
 *
 *   node dist/bench/score.js --backend wasm [--models 130m,m2-130m,2.8b|none] [--layers 0-3] [--skip-report]
 *        [--no-numpy] [--train] [--demo] [--dir FOLDER (keep and reuse the checkpoints)] [--channel-block N]
 *        [--threads N (passed to score/report; default theirs: the cores, at most one per probe row)]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { toHfConfigJson, type MambaConfig } from '../src/checkpoint/config.js';
import { writeSafetensors, type WritableTensor } from '../src/checkpoint/safetensors.js';
import { expectedShapes, parseLayerName } from '../src/model/weights.js';
import { defaultProbe } from '../src/analysis/probe.js';
import { fill } from './fill.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(HERE, '..', 'src', 'cli', 'main.js');
// score_numpy.py sits in bench/ of the source tree; this file runs from dist/bench/.
const NUMPY_PEER = path.join(HERE, '..', '..', 'bench', 'score_numpy.py');
const REPO = path.join(HERE, '..', '..');

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

const base = { arch: 'mamba1', stateSize: 16, convKernel: 4, vocabSize: 50280, configVocabSize: 50280, tiedEmbeddings: true, useBias: false, useConvBias: true, layerNormEpsilon: 1e-5, residualInFp32: true, layout: 'hf' } as const;
const SHAPES: Record<string, MambaConfig> = {
  '130m': { ...base, numLayers: 24, hiddenSize: 768, intermediateSize: 1536, timeStepRank: 48 },
  '2.8b': { ...base, numLayers: 64, hiddenSize: 2560, intermediateSize: 5120, timeStepRank: 160 },
  'm2-130m': { ...base, arch: 'mamba2', numLayers: 24, hiddenSize: 768, intermediateSize: 1536, stateSize: 128, numHeads: 24, headDim: 64, nGroups: 1, timeStepLimit: [0, Infinity] },
};


/** One tensor with the usual init's scales (A_log = log n, Δ in [1e-3, 0.1], D = 1, norms 1). */
function tensor(c: MambaConfig, name: string, shape: number[], seed: number): WritableTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  let data: Float32Array;
  if (name.endsWith('A_log')) data = Float32Array.from({ length: n }, (_, i) => Math.log(1 + (i % c.stateSize)));
  else if (name.endsWith('.D') || name.endsWith('norm.weight') || name.endsWith('norm_f.weight')) data = new Float32Array(n).fill(1);
  else if (name.endsWith('dt_proj.bias') || name.endsWith('dt_bias')) {
    data = Float32Array.from(fill(n, 1, seed), (u) => {
      const dt = Math.exp(Math.log(1e-3) + ((u + 1) / 2) * (Math.log(0.1) - Math.log(1e-3)));
      return dt + Math.log(-Math.expm1(-dt)); // inverse softplus
    });
  } else data = fill(n, 1 / Math.sqrt(shape[shape.length - 1]!), seed);
  return { name, shape, data };
}

/** Write the checkpoint one shard per layer (and one for the rest), each tensor generated as it is written. */
function writeRandomCheckpoint(dir: string, c: MambaConfig): void {
  fs.mkdirSync(dir, { recursive: true });
  const groups = new Map<string, [string, number[]][]>();
  for (const [name, shape] of Object.entries(expectedShapes(c))) {
    const pl = parseLayerName(name);
    const key = pl ? `layer-${String(pl.layer).padStart(3, '0')}` : 'other';
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push([name, shape]);
  }
  const keys = [...groups.keys()].sort();
  const weightMap: Record<string, string> = {};
  let seed = 1, total = 0;
  keys.forEach((k, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(keys.length).padStart(5, '0')}.safetensors`;
    // writeSafetensors encodes one tensor at a time; a layer's tensors are generated together
    // (≤ 200 MB for the 2.8B shape), the embedding alone.
    const ts = groups.get(k)!.map(([name, shape]) => tensor(c, name, shape, seed++));
    writeSafetensors(path.join(dir, file), ts);
    for (const t of ts) { weightMap[t.name] = file; total += t.data.length * 4; }
  });
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(toHfConfigJson(c)));
}

/**
 * Run the CLI in a child process; its wall time and peak RSS (the child reports its own
 * getrusage maxRSS on a last stderr line, so no /usr/bin/time is needed on a bare GPU host).
 */
function timed(args: string[]): { wall_s: number; cpu_s: number; peak_rss_mb: number; stdout: string } {
  const script = `const m = await import(${JSON.stringify(pathToFileURL(CLI).href)});
const code = await m.main(process.argv.slice(1));
const u = process.resourceUsage();
process.stderr.write('\\nCPU ' + (u.userCPUTime + u.systemCPUTime) / 1e6 + ' MAXRSS ' + u.maxRSS + '\\n');
process.exitCode = code;`;
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, ...args], { encoding: 'utf8', maxBuffer: 1 << 28, cwd: REPO });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`mimetic ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  const m = /CPU ([0-9.]+) MAXRSS (\d+)\s*$/.exec(r.stderr);
  if (!m) throw new Error(`no CPU/MAXRSS line from the child: ${r.stderr}`);
  return { wall_s: Math.round(wall * 10) / 10, cpu_s: Math.round(Number(m[1]) * 10) / 10, peak_rss_mb: Math.round(Number(m[2]) / 1024), stdout: r.stdout };
}

interface ScoreRow { layer: number; cbIdentity: number; cbRowCos: number; maskOnes: number; lookbehind: number | null; mimetic: number }
const SCORE_KEYS = ['cbIdentity', 'cbRowCos', 'maskOnes', 'lookbehind', 'mimetic'] as const;

/** Whether python3 can import numpy (the peer runs only then). */
function numpyVersion(): string | null {
  const r = spawnSync('python3', ['-c', 'import numpy; print(numpy.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** The numpy peer on the same checkpoint and probe, timed as a child like the CLI. */
function numpyPeer(dir: string, probeFile: string, layers: string): { wall_s: number; cpu_s: number; peak_rss_mb: number; layers: ScoreRow[] } {
  const t0 = performance.now();
  const py = `import resource, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name='__main__')
finally:
    u = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write('\\nCPU %f MAXRSS %d\\n' % (u.ru_utime + u.ru_stime, u.ru_maxrss))`;
  const r = spawnSync('python3', ['-c', py, NUMPY_PEER, dir, '--probe', probeFile, ...(layers ? ['--layers', layers] : [])], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`score_numpy.py failed (${r.status}): ${r.stderr}`);
  const m = /CPU ([0-9.]+) MAXRSS (\d+)\s*$/.exec(r.stderr);
  if (!m) throw new Error(`no CPU/MAXRSS line from score_numpy.py: ${r.stderr}`);
  return { wall_s: Math.round(wall * 10) / 10, cpu_s: Math.round(Number(m[1]) * 10) / 10, peak_rss_mb: Math.round(Number(m[2]) / 1024), layers: (JSON.parse(r.stdout) as { layers: ScoreRow[] }).layers };
}

/** Largest |mimetic − numpy| per score over the layers, and the layer where the mimetic scores differ most. */
function agreement(ours: ScoreRow[], theirs: ScoreRow[]): Record<string, unknown> {
  if (ours.length !== theirs.length) throw new Error(`mimetic scored ${ours.length} layers, numpy ${theirs.length}`);
  const maxAbs: Record<string, number> = {};
  const perLayer = ours.map((o, i) => {
    const t = theirs[i]!;
    if (t.layer !== o.layer) throw new Error(`layer order differs: ${o.layer} vs ${t.layer}`);
    let worst = 0;
    for (const k of SCORE_KEYS) {
      const d = o[k] === null || t[k] === null ? (o[k] === t[k] ? 0 : Infinity) : Math.abs(o[k]! - t[k]!);
      maxAbs[k] = Math.max(maxAbs[k] ?? 0, d);
      worst = Math.max(worst, d);
    }
    return { layer: o.layer, max_abs_diff: worst };
  });
  return { max_abs_diff: maxAbs, per_layer_max_abs_diff: perLayer.map((p) => Number(p.max_abs_diff.toPrecision(3))) };
}

/**
 * The demo model's training step: `make demo`'s run (Mamba-1, 2 layers, d_model 32, state 8, batch
 * 16 × 32 tokens, copy task) for 40 steps; the median step time after the first.
 */
function trainStep(backend: string): Record<string, unknown> {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-bench-train-'));
  try {
    const steps = 40;
    const r = timed(['train', '--task', 'copy', '--arch', 'mamba1', '--n-layers', '2', '--d-model', '32', '--d-state', '8', '--init', 'mimetic',
      '--alphabet', '4', '--min-len', '2', '--max-len', '4', '--context', '32', '--batch-size', '16', '--steps', String(steps), '--lr', '5e-3', '--warmup', '10',
      '--eval-every', String(steps), '--eval-examples', '32', '--eval-lengths', '6', '--seed', '0', '--backend', backend, '--out', path.join(out, 'run')]);
    const lines = fs.readFileSync(path.join(out, 'run', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number; tokensPerSec: number });
    const tokens = 16 * 32;
    const stepS = lines.slice(1).map((l) => tokens / l.tokensPerSec).sort((a, b) => a - b);
    return {
      what: 'make demo\'s training run (Mamba-1 2L d32 state 8, batch 16 × 32, copy), 40 steps',
      backend, steps, median_step_s: Number(stepS[Math.floor(stepS.length / 2)]!.toPrecision(3)), wall_s: r.wall_s,
      first_loss: lines[0]!.loss, last_loss: lines[lines.length - 1]!.loss,
    };
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

/** `make demo`'s recipe (build taken as done: `make -o build`), timed. */
function demoTime(): Record<string, unknown> {
  const t0 = performance.now();
  const r = spawnSync('make', ['-s', '-o', 'build', 'demo'], { cwd: REPO, encoding: 'utf8', maxBuffer: 1 << 26 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`make demo failed (${r.status}): ${r.stderr}`);
  // The training run's progress lines (stderr) and its last line (stdout): the loss should fall.
  const losses = [...(r.stderr + r.stdout).matchAll(/step (\d+)\/\d+ loss ([0-9.]+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
  return { what: 'make -o build demo (inspect, score, report, 150-step training run on wasm)', wall_s: Math.round(wall * 10) / 10, train_loss_by_step: losses };
}

const LOAD_AT_START = os.loadavg().map((x) => Math.round(x * 10) / 10);

async function main(): Promise<void> {
  const backend = arg('backend', 'wasm');
  const models = arg('models', '130m').split(',').filter((m) => m && m !== 'none'); // 'none': only --train / --demo
  const layers = arg('layers', '');
  const cb = arg('channel-block', '');
  const threads = arg('threads', '');
  const skipReport = process.argv.includes('--skip-report');
  const keepDir = arg('dir', '');
  const np = process.argv.includes('--no-numpy') ? null : numpyVersion();
  const results: Record<string, unknown>[] = [];
  for (const m of models) {
    const c = SHAPES[m];
    if (!c) throw new Error(`unknown model ${m}; choose ${Object.keys(SHAPES).join(', ')}`);
    const dir = keepDir ? path.join(keepDir, m) : fs.mkdtempSync(path.join(os.tmpdir(), `mimetic-bench-score-${m}-`));
    const out = fs.mkdtempSync(path.join(os.tmpdir(), `mimetic-bench-report-${m}-`));
    try {
      const tw = performance.now();
      if (!fs.existsSync(path.join(dir, 'config.json'))) writeRandomCheckpoint(dir, c);
      const writeS = (performance.now() - tw) / 1000;
      // The default probe, written out so the numpy peer reads the very same ids.
      const probeFile = path.join(out, 'probe.json');
      fs.writeFileSync(probeFile, JSON.stringify(defaultProbe(Math.min(c.configVocabSize, c.vocabSize))));
      const common = ['--backend', backend, '--probe', probeFile, ...(layers ? ['--layers', layers] : []), ...(cb ? ['--channel-block', cb] : []), ...(threads ? ['--threads', threads] : [])];
      const score = timed(['score', dir, '--json', ...common]);
      const scores = JSON.parse(score.stdout) as { layers: ScoreRow[]; threads?: number };
      const r: Record<string, unknown> = {
        model: `${c.arch === 'mamba2' ? 'mamba2-130m' : `mamba-${m}-hf`} shape (random weights)`,
        layers_audited: scores.layers.length,
        checkpoint_gb: Math.round(fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0) / 1e8) / 10,
        checkpoint_write_s: Math.round(writeS),
        score: { wall_s: score.wall_s, cpu_s: score.cpu_s, peak_rss_mb: score.peak_rss_mb, threads: scores.threads ?? 1 },
      };
      if (np) {
        const peer = numpyPeer(dir, probeFile, layers);
        r.numpy = { version: np, wall_s: peer.wall_s, cpu_s: peer.cpu_s, peak_rss_mb: peer.peak_rss_mb, ...agreement(scores.layers, peer.layers) };
        // On a shared machine wall time swings with the load; CPU time (user + system) less so.
        r.score_over_numpy = { wall: Math.round((score.wall_s / peer.wall_s) * 100) / 100, cpu: Math.round((score.cpu_s / peer.cpu_s) * 100) / 100 };
      }
      if (!skipReport) {
        const rep = timed(['report', dir, '--out', path.join(out, 'r'), ...common]);
        r.report = { wall_s: rep.wall_s, cpu_s: rep.cpu_s, peak_rss_mb: rep.peak_rss_mb, folder_mb: Math.round(du(path.join(out, 'r')) / 1e5) / 10 };
      }
      results.push(r);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
      if (!keepDir) fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  const extra: Record<string, unknown> = {};
  if (process.argv.includes('--train')) extra.train_step = trainStep(backend);
  if (process.argv.includes('--demo')) extra.make_demo = demoTime();
  process.stdout.write(JSON.stringify({
    bench: 'score', backend, probe: '4 × 128 tokens, period 64 (default)', numpy: np ?? 'absent (peer skipped)', results, ...extra,
    node: process.version, cpus: os.cpus().length, loadavg_at_start: LOAD_AT_START, loadavg_at_end: os.loadavg().map((x) => Math.round(x * 10) / 10),
  }, null, 2) + '\n');
}

function du(p: string): number {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.size;
  return fs.readdirSync(p).reduce((s, f) => s + du(path.join(p, f)), 0);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
