/**
 * Audit benchmark: a full audit (scores, then the report) of random checkpoints shaped like
 * mamba-130m-hf (24 layers, hidden 768, d_inner 1536, state 16, dt rank 48) and mamba-2.8b-hf
 * (64 layers, hidden 2560, d_inner 5120, state 16, dt rank 160), vocab 50280, F32, with the
 * default probe (4 × 128 tokens, period 64). The checkpoint is written one layer per shard (plus an
 * index), tensor by tensor, so writing the 11 GB 2.8B model never holds it in memory. Each audit
 * runs in a child process, so its wall time and peak RSS are its own. Prints one JSON object.
 *
 *   node dist/bench/score.js --backend wasm [--models 130m,2.8b] [--layers 0-3] [--skip-report]
 *                            [--dir FOLDER (keep and reuse the checkpoints)] [--channel-block N]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { toHfConfigJson, type MambaConfig } from '../src/checkpoint/config.js';
import { writeSafetensors, type WritableTensor } from '../src/checkpoint/safetensors.js';
import { expectedShapes, parseLayerName } from '../src/model/weights.js';
import { fill } from './fill.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

const base = { arch: 'mamba1', stateSize: 16, convKernel: 4, vocabSize: 50280, configVocabSize: 50280, tiedEmbeddings: true, useBias: false, useConvBias: true, layerNormEpsilon: 1e-5, residualInFp32: true, layout: 'hf' } as const;
const SHAPES: Record<string, MambaConfig> = {
  '130m': { ...base, numLayers: 24, hiddenSize: 768, intermediateSize: 1536, timeStepRank: 48 },
  '2.8b': { ...base, numLayers: 64, hiddenSize: 2560, intermediateSize: 5120, timeStepRank: 160 },
};


/** One tensor with the usual init's scales (A_log = log n, Δ in [1e-3, 0.1], D = 1, norms 1). */
function tensor(c: MambaConfig, name: string, shape: number[], seed: number): WritableTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  let data: Float32Array;
  if (name.endsWith('A_log')) data = Float32Array.from({ length: n }, (_, i) => Math.log(1 + (i % c.stateSize)));
  else if (name.endsWith('.D') || name.endsWith('norm.weight') || name.endsWith('norm_f.weight')) data = new Float32Array(n).fill(1);
  else if (name.endsWith('dt_proj.bias')) {
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
function timed(args: string[]): { wall_s: number; peak_rss_mb: number; stdout: string } {
  const script = `const m = await import(${JSON.stringify(pathToFileURL(CLI).href)});
const code = await m.main(process.argv.slice(1));
process.stderr.write('\\nMAXRSS ' + process.resourceUsage().maxRSS + '\\n');
process.exitCode = code;`;
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`mimetic ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  const m = /MAXRSS (\d+)\s*$/.exec(r.stderr);
  if (!m) throw new Error(`no MAXRSS line from the child: ${r.stderr}`);
  return { wall_s: Math.round(wall * 10) / 10, peak_rss_mb: Math.round(Number(m[1]) / 1024), stdout: r.stdout };
}

async function main(): Promise<void> {
  const backend = arg('backend', 'wasm');
  const models = arg('models', '130m').split(',');
  const layers = arg('layers', '');
  const cb = arg('channel-block', '');
  const skipReport = process.argv.includes('--skip-report');
  const keepDir = arg('dir', '');
  const results: Record<string, unknown>[] = [];
  for (const m of models) {
    const c = SHAPES[m];
    if (!c) throw new Error(`unknown model ${m}; choose 130m or 2.8b`);
    const dir = keepDir ? path.join(keepDir, m) : fs.mkdtempSync(path.join(os.tmpdir(), `mimetic-bench-score-${m}-`));
    const out = fs.mkdtempSync(path.join(os.tmpdir(), `mimetic-bench-report-${m}-`));
    try {
      const tw = performance.now();
      if (!fs.existsSync(path.join(dir, 'config.json'))) writeRandomCheckpoint(dir, c);
      const writeS = (performance.now() - tw) / 1000;
      const common = ['--backend', backend, ...(layers ? ['--layers', layers] : []), ...(cb ? ['--channel-block', cb] : [])];
      const score = timed(['score', dir, '--json', ...common]);
      const scores = JSON.parse(score.stdout) as { layers: unknown[] };
      const r: Record<string, unknown> = {
        model: `mamba-${m}-hf shape (random weights)`,
        layers_audited: scores.layers.length,
        checkpoint_gb: Math.round(fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0) / 1e8) / 10,
        checkpoint_write_s: Math.round(writeS),
        score: { wall_s: score.wall_s, peak_rss_mb: score.peak_rss_mb },
      };
      if (!skipReport) {
        const rep = timed(['report', dir, '--out', path.join(out, 'r'), ...common]);
        r.report = { wall_s: rep.wall_s, peak_rss_mb: rep.peak_rss_mb, folder_mb: Math.round(du(path.join(out, 'r')) / 1e5) / 10 };
      }
      results.push(r);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
      if (!keepDir) fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  process.stdout.write(JSON.stringify({ bench: 'score', backend, probe: '4 × 128 tokens, period 64 (default)', results, node: process.version, cpus: os.cpus().length }, null, 2) + '\n');
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
