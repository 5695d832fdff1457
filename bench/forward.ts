/**
 * Forward-pass benchmark: random models shaped like mamba-130m-hf (Mamba-1) and mamba2-130m, written
 * to a temporary checkpoint folder and run through runCheckpoint (the real streaming path), batch 1 ×
 * 512 tokens by default. Prints one JSON object: ms per forward (min and median of --reps), the
 * implicit-attention maps' ms per layer (timed alone, over --attention-layers layers), a measured
 * forward with those layers captured, the estimate for capturing all layers, and peak RSS.
 *
 *   node dist/bench/forward.js --backend wasm [--tokens 512] [--reps 3] [--models mamba1,mamba2]
 *                              [--attention-layers 24] [--channel-block N] [--dir FOLDER (keep and reuse the checkpoints)]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { toHfConfigJson, type MambaConfig } from '../src/checkpoint/config.js';
import { writeCheckpointWeights, type WritableTensor } from '../src/checkpoint/safetensors.js';
import { expectedShapes } from '../src/model/weights.js';
import * as tf from '@tensorflow/tfjs';
import { MambaLM } from '../src/model/lm.js';
import { runCheckpoint } from '../src/analysis/capture.js';
import { attentionSummaries, internalsToTf } from '../src/analysis/attention.js';
import { initBackend, type BackendName } from '../src/model/backend.js';
import { setFusedKernels } from '../src/model/kernels/fused-webgpu.js';
import { fill } from './fill.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

const SHAPES: Record<string, MambaConfig> = {
  mamba1: {
    arch: 'mamba1', numLayers: 24, hiddenSize: 768, intermediateSize: 1536, stateSize: 16, convKernel: 4, timeStepRank: 48,
    vocabSize: 50280, configVocabSize: 50280, tiedEmbeddings: true, useBias: false, useConvBias: true, layerNormEpsilon: 1e-5, residualInFp32: true, layout: 'hf',
  },
  mamba2: {
    arch: 'mamba2', numLayers: 24, hiddenSize: 768, intermediateSize: 1536, stateSize: 128, convKernel: 4, numHeads: 24, headDim: 64, nGroups: 1,
    timeStepLimit: [0, Infinity], vocabSize: 50280, configVocabSize: 50280, tiedEmbeddings: true, useBias: false, useConvBias: true, layerNormEpsilon: 1e-5, residualInFp32: true, layout: 'hf',
  },
};


/** Random weights with the usual init's scales (A_log = log n, Δ in [1e-3, 0.1], D = 1, norms 1). */
function randomWeights(c: MambaConfig): WritableTensor[] {
  const out: WritableTensor[] = [];
  let seed = 1;
  for (const [name, shape] of Object.entries(expectedShapes(c))) {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (name.endsWith('A_log')) data = Float32Array.from({ length: n }, (_, i) => Math.log(c.arch === 'mamba2' ? 1 + (i % 16) : 1 + (i % c.stateSize)));
    else if (name.endsWith('.D') || name.endsWith('norm.weight') || name.endsWith('norm_f.weight')) data = new Float32Array(n).fill(1);
    else if (name.endsWith('dt_proj.bias') || name.endsWith('dt_bias')) {
      data = Float32Array.from(fill(n, 1, seed++), (u) => {
        const dt = Math.exp(Math.log(1e-3) + ((u + 1) / 2) * (Math.log(0.1) - Math.log(1e-3)));
        return dt + Math.log(-Math.expm1(-dt)); // inverse softplus
      });
    } else data = fill(n, 1 / Math.sqrt(shape[shape.length - 1]!), seed++);
    out.push({ name, shape, data });
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const backend = arg('backend', 'wasm') as BackendName;
  const tokens = Number(arg('tokens', '512'));
  const reps = Number(arg('reps', '3'));
  const models = arg('models', 'mamba1,mamba2').split(',');
  const attnLayers = Number(arg('attention-layers', '24'));
  const cbArg = arg('channel-block', '');
  const channelBlock = cbArg ? Number(cbArg) : undefined;
  const used = await initBackend(backend, { quiet: true });
  const results: Record<string, unknown>[] = [];
  for (const m of models) {
    const shape = SHAPES[m];
    if (!shape) throw new Error(`unknown model ${m}; choose mamba1 or mamba2`);
    // --vocab / --layers shrink the model (a quick check on a small device, e.g. lavapipe's 128 MiB bindings).
    const c: MambaConfig = { ...shape, vocabSize: Number(arg('vocab', String(shape.vocabSize))), numLayers: Number(arg('layers', String(shape.numLayers))) };
    const keepDir = arg('dir', '');
    const dir = keepDir ? path.join(keepDir, m) : fs.mkdtempSync(path.join(os.tmpdir(), `mimetic-bench-${m}-`));
    try {
      if (!fs.existsSync(path.join(dir, 'config.json'))) {
        fs.mkdirSync(dir, { recursive: true });
        writeCheckpointWeights(dir, randomWeights(c));
        fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(toHfConfigJson(c)));
      }
      const ckpt = Checkpoint.open(dir);
      const ids = [Array.from({ length: tokens }, (_, i) => (i * 7919) % c.vocabSize)];
      await runCheckpoint(ckpt, ids); // warm-up (kernel compilation, allocator)
      const plain: number[] = [];
      for (let r = 0; r < reps; r++) {
        const t0 = performance.now();
        await runCheckpoint(ckpt, ids);
        plain.push(performance.now() - t0);
      }
      // Attention: the captured layers' maps timed on their own (from the layers' scan inputs),
      // and one full forward with capture of those layers.
      const layers = Array.from({ length: Math.min(attnLayers, c.numLayers) }, (_, i) => i);
      const attnTimes: number[] = [];
      let withAttn = NaN;
      if (layers.length) {
        const kind = c.arch === 'mamba2' ? 'mamba2' : 'mamba1';
        const t0 = performance.now();
        await runCheckpoint(ckpt, ids, {
          capture: 'internals', layers, keepCaptures: false, channelBlock,
          onLayer: async (_i, cap) => {
            const int = internalsToTf(cap.internals!);
            const t1 = performance.now();
            const maps = attentionSummaries(kind, int, { channelBlock });
            await Promise.all([maps.attention.data(), maps.decay.data(), maps.qk.data()]);
            attnTimes.push(performance.now() - t1);
            tf.dispose([maps.attention, maps.decay, maps.qk, ...Object.values(int)]);
          },
        });
        // runCheckpoint also computed each captured layer's maps once itself (capture implies them).
        withAttn = performance.now() - t0 - attnTimes.reduce((x, y) => x + y, 0);
      }
      // Where a streamed forward's time goes: reading + decoding the weights alone (no tf), and the
      // same model's forward with every weight already on the device (MambaLM, in memory), with
      // the device's own kernel time (tf.time) and the number of kernels one forward launches.
      const tr = performance.now();
      ckpt.readEmbedding();
      for (let i = 0; i < c.numLayers; i++) ckpt.readLayer(i);
      const readMs = performance.now() - tr;
      const lm = MambaLM.fromCheckpoint(ckpt, { trainable: false });
      const idsT = tf.tensor2d(ids, [1, tokens], 'int32');
      // The same forward with the fused kernels off (the tf-op path: "before").
      const tfops: Record<string, number> = {};
      if (backend === 'webgpu' || used === 'webgpu') {
        setFusedKernels(false);
        await runCheckpoint(ckpt, ids);
        const st: number[] = [];
        for (let r = 0; r < reps; r++) {
          const t0 = performance.now();
          await runCheckpoint(ckpt, ids);
          st.push(performance.now() - t0);
        }
        const f0 = lm.forward(idsT, { hiddenStates: false, inference: true });
        await f0.logits.data();
        f0.logits.dispose();
        const im: number[] = [];
        for (let r = 0; r < reps; r++) {
          const t0 = performance.now();
          const f = lm.forward(idsT, { hiddenStates: false, inference: true });
          await f.logits.data();
          f.logits.dispose();
          im.push(performance.now() - t0);
        }
        const pr = await tf.profile(async () => {
          const f = lm.forward(idsT, { hiddenStates: false, inference: true });
          await f.logits.data();
          f.logits.dispose();
        });
        setFusedKernels(true);
        Object.assign(tfops, { forward_ms: Math.round(Math.min(...st)), inmemory_forward_ms: Math.round(Math.min(...im)), inmemory_kernels_per_forward: pr.kernels.length });
      }
      const inMem = async (): Promise<number> => {
        const t0 = performance.now();
        const f = lm.forward(idsT, { hiddenStates: false, inference: true });
        await f.logits.data();
        f.logits.dispose();
        return performance.now() - t0;
      };
      await inMem();
      const mem: number[] = [];
      for (let r = 0; r < reps; r++) mem.push(await inMem());
      const prof = await tf.profile(async () => {
        const f = lm.forward(idsT, { hiddenStates: false, inference: true });
        await f.logits.data();
        f.logits.dispose();
      });
      const byKernel: Record<string, number> = {};
      for (const k of prof.kernels) byKernel[k.name] = (byKernel[k.name] ?? 0) + 1;
      const timed = await tf.time(() => {
        const f = lm.forward(idsT, { hiddenStates: false, inference: true });
        f.logits.dispose();
      }).catch(() => undefined);
      lm.dispose();
      idsT.dispose();
      const perLayer = attnTimes.length ? attnTimes.reduce((x, y) => x + y, 0) / attnTimes.length : NaN;
      const plainMin = Math.min(...plain);
      results.push({
        model: m === 'mamba1' ? 'mamba-130m-hf shape' : 'mamba2-130m shape',
        parameters: ckpt.parameterCount(),
        forward_ms: Math.round(plainMin),
        forward_ms_median: Math.round(median(plain)),
        forward_ms_all: plain.map(Math.round),
        attention_layers_measured: layers.length,
        attention_ms_per_layer: Math.round(perLayer),
        forward_with_attention_ms_measured: Math.round(withAttn),
        forward_with_attention_all_layers_ms_estimate: Math.round(plainMin + perLayer * c.numLayers),
        read_weights_ms: Math.round(readMs),
        inmemory_forward_ms: Math.round(Math.min(...mem)),
        inmemory_forward_ms_all: mem.map(Math.round),
        inmemory_kernels_per_forward: prof.kernels.length,
        inmemory_kernels_by_name: Object.fromEntries(Object.entries(byKernel).sort((a, b) => b[1] - a[1])),
        tf_ops_path: tfops,
        inmemory_tf_time: timed ? { wallMs: Math.round(timed.wallMs), kernelMs: typeof timed.kernelMs === 'number' ? Math.round(timed.kernelMs) : timed.kernelMs } : null,
      });
      ckpt.close();
    } finally {
      if (!keepDir) fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  const rss = process.resourceUsage().maxRSS; // KiB
  process.stdout.write(JSON.stringify({ bench: 'forward', backend: used, batch: 1, tokens, reps, results, peak_rss_mb: Math.round(rss / 1024), node: process.version, cpus: os.cpus().length }, null, 2) + '\n');
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
