/**
 * Read benchmark: a synthetic BF16 checkpoint shaped like `state-spaces/mamba-1.4b-hf` (48 layers,
 * hidden 2048, d_inner 4096, state 16, dt_rank 128, conv 4, vocab 50280, tied), sharded, decoded to
 * float32 layer by layer through Checkpoint.readLayer, against a plain `cat` of the same files (both
 * with a warm page cache). Prints JSON: throughput, peak RSS, largest layer, and whether the targets
 * hold (peak RSS < 1.5 × largest layer as F32 + 150 MB; throughput within 2× of cat).
 *
 *   node dist/bench/read.js [--dir <folder>] [--keep] [--layers N]
 *
 * The checkpoint is written by a child process, so the writer's memory never counts in the
 * reader's peak RSS (maxRSS is a per-process high-water mark).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Checkpoint, type LayerWeights } from '../src/checkpoint/checkpoint.js';
import { writeCheckpointWeights, type WritableTensor } from '../src/checkpoint/safetensors.js';
import { layerPrefix } from '../src/checkpoint/names.js';

const SHAPE = { numLayers: 48, hidden: 2048, dInner: 4096, state: 16, dtRank: 128, conv: 4, vocab: 50280 };
const MAX_SHARD_BYTES = 1_000_000_000;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Cheap deterministic values in [-0.05, 0.05): the benchmark measures bytes, not numerics. */
function filler(seed: number, n: number): () => Float32Array {
  return () => {
    const out = new Float32Array(n);
    let s = seed >>> 0 || 1;
    for (let i = 0; i < n; i++) {
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
      out[i] = ((s >>> 0) / 4294967296 - 0.5) * 0.1;
    }
    return out;
  };
}

function writeCheckpoint(dir: string, numLayers: number): void {
  const { hidden: d, dInner: di, state: n, dtRank: r, conv: k, vocab: v } = SHAPE;
  const specs: WritableTensor[] = [];
  let seed = 1;
  const t = (name: string, shape: number[]) => specs.push({ name, shape, data: filler(seed++, shape.reduce((a, b) => a * b, 1)) });
  t('backbone.embeddings.weight', [v, d]);
  for (let i = 0; i < numLayers; i++) {
    const p = layerPrefix(i);
    t(p + 'norm.weight', [d]);
    t(p + 'mixer.A_log', [di, n]);
    t(p + 'mixer.D', [di]);
    t(p + 'mixer.conv1d.weight', [di, 1, k]);
    t(p + 'mixer.conv1d.bias', [di]);
    t(p + 'mixer.in_proj.weight', [2 * di, d]);
    t(p + 'mixer.x_proj.weight', [r + 2 * n, di]);
    t(p + 'mixer.dt_proj.weight', [di, r]);
    t(p + 'mixer.dt_proj.bias', [di]);
    t(p + 'mixer.out_proj.weight', [d, di]);
  }
  t('backbone.norm_f.weight', [d]);
  fs.mkdirSync(dir, { recursive: true });
  writeCheckpointWeights(dir, specs, { dtype: 'BF16', maxShardBytes: MAX_SHARD_BYTES });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    architectures: ['MambaForCausalLM'], model_type: 'mamba', hidden_size: d, intermediate_size: di, state_size: n,
    num_hidden_layers: numLayers, conv_kernel: k, time_step_rank: r, expand: 2, vocab_size: v, tie_word_embeddings: true,
    use_bias: false, use_conv_bias: true, layer_norm_epsilon: 1e-5, residual_in_fp32: true, torch_dtype: 'bfloat16',
  }, null, 2));
}

function timeCat(files: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('sh', ['-c', 'cat "$@" > /dev/null', 'cat', ...files], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`cat failed with status ${r.status}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function main(): void {
  const writeDir = arg('--write');
  const numLayers = Number(arg('--layers') ?? SHAPE.numLayers);
  if (writeDir) {
    writeCheckpoint(writeDir, numLayers);
    return;
  }
  const given = arg('--dir');
  const dir = given ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-bench-read-'));
  try {
    const loadStart = os.loadavg();
    const tWrite0 = Date.now();
    if (!fs.existsSync(path.join(dir, 'config.json'))) {
      const self = fileURLToPath(import.meta.url);
      const w = spawnSync(process.execPath, [self, '--write', dir, '--layers', String(numLayers)], { stdio: 'inherit' });
      if (w.status !== 0) throw new Error(`writing the checkpoint failed with status ${w.status}`);
    }
    const writeSeconds = (Date.now() - tWrite0) / 1000;
    const ckpt = Checkpoint.open(dir);
    const files = ckpt.files.map((f) => path.join(dir, f.name));
    const fileBytes = ckpt.files.reduce((a, f) => a + f.bytes, 0);

    // Warm the page cache, then time cat (best of 3).
    timeCat(files);
    const catSeconds = Math.min(timeCat(files), timeCat(files), timeCat(files));

    // Decode every layer to float32, one layer alive at a time (best of 2 passes): first with
    // fresh buffers (plain readLayer), then reusing the previous layer's buffers (readLayer(i, {into})).
    let layerBytes = 0;
    for (let i = 0; i < ckpt.config.numLayers; i++) layerBytes += ckpt.layerBytes(i);
    let largestLayerF32 = 0;
    let checksum = 0;
    let prev: LayerWeights | undefined;
    const pass = (reuse: boolean): number => {
      let best = Infinity;
      for (let rep = 0; rep < 2; rep++) {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < ckpt.config.numLayers; i++) {
          const layer = ckpt.readLayer(i, reuse ? { into: prev } : {});
          let f32 = 0;
          for (const t of Object.values(layer)) {
            f32 += t.data.byteLength;
            checksum += t.data[t.data.length - 1]!;
          }
          largestLayerF32 = Math.max(largestLayerF32, f32);
          prev = layer;
        }
        best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
      }
      return best;
    };
    // Reuse first: maxRSS is a high-water mark, so this order shows each mode's peak.
    const reuseSeconds = pass(true);
    prev = undefined;
    const reuseRss = process.resourceUsage().maxRSS * 1024;
    const freshSeconds = pass(false);
    const peakRssBytes = process.resourceUsage().maxRSS * 1024;
    ckpt.close();

    const MB = 1e6;
    const GB = 1e9;
    const freshGBps = layerBytes / freshSeconds / GB;
    const reuseGBps = layerBytes / reuseSeconds / GB;
    const catGBps = fileBytes / catSeconds / GB;
    const rssLimit = 1.5 * largestLayerF32 + 150 * MB;
    const report = {
      bench: 'read',
      checkpoint: { shape: 'mamba-1.4b-hf', ...SHAPE, numLayers, dtype: 'BF16', files: ckpt.files.length, bytes: fileBytes, writeSeconds },
      readLayers: { what: 'Checkpoint.readLayer(i) for every layer, BF16 decoded to fresh F32 buffers, best of 2', storedBytes: layerBytes, seconds: freshSeconds, GBps: freshGBps },
      readLayersReuse: { what: 'Checkpoint.readLayer(i, { into: previous layer }), buffers reused, best of 2', storedBytes: layerBytes, seconds: reuseSeconds, GBps: reuseGBps },
      cat: { what: 'cat <files> > /dev/null, warm page cache, best of 3', bytes: fileBytes, seconds: catSeconds, GBps: catGBps },
      peakRssMB: { reuse: reuseRss / MB, fresh: peakRssBytes / MB },
      largestLayerF32MB: largestLayerF32 / MB,
      targets: {
        peakRssReuse: { limitMB: rssLimit / MB, ok: reuseRss < rssLimit },
        peakRssFresh: { limitMB: rssLimit / MB, ok: peakRssBytes < rssLimit },
        throughputFresh: { ratioToCat: freshGBps / catGBps, ok: freshGBps * 2 >= catGBps },
        throughputReuse: { ratioToCat: reuseGBps / catGBps, ok: reuseGBps * 2 >= catGBps },
      },
      checksum,
      node: process.version,
      cpus: os.cpus().length,
      // Other jobs share the 2 cores: the 1-minute load average around the run says how much.
      loadAverage1m: { start: loadStart[0], end: os.loadavg()[0] },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    if (!given && !process.argv.includes('--keep')) fs.rmSync(dir, { recursive: true, force: true });
  }
}

main();
