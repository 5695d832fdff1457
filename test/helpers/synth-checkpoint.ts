/**
 * Small synthetic Mamba checkpoints for tests, written with the project's writer: every variant the
 * loader must recognise (HF Mamba-1/2, Falcon-Mamba, state-spaces layouts, many groups, untied
 * head, padded vocabulary, biases). Values come from a seeded generator, so a test can compare what
 * it reads with what was written.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeCheckpointWeights, type WritableTensor, type WriteDType } from '../../src/checkpoint/safetensors.js';

export interface SynthSpec {
  arch: 'mamba1' | 'mamba2' | 'falcon_mamba';
  layout?: 'hf' | 'state-spaces';
  numLayers: number;
  hidden: number;
  dInner: number;
  state: number;
  conv: number;
  /** Mamba-1 / Falcon. */
  dtRank?: number;
  /** Mamba-2. */
  numHeads?: number;
  nGroups?: number;
  /** The vocabulary the config declares. */
  vocab: number;
  /** Embedding rows (default: vocab). */
  paddedVocab?: number;
  /** Write no lm_head.weight (default true). */
  tied?: boolean;
  /** Store lm_head.weight although tied (state-spaces checkpoints do). */
  storeTiedHead?: boolean;
  bias?: boolean;
  convBias?: boolean;
  dtype?: WriteDType;
  maxShardBytes?: number;
  seed?: number;
  /** Merged into config.json last; a value of undefined deletes the key. */
  configPatch?: Record<string, unknown>;
}

/** mulberry32: a tiny seeded generator, uniform in [-1, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function randomTensor(next: () => number, name: string, shape: number[]): WritableTensor {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = next();
  return { name, shape, data };
}

/** Tensors in state-dict order (the order transformers shards in), with HF or state-spaces names. */
export function synthTensors(s: SynthSpec): WritableTensor[] {
  const next = rng(s.seed ?? 1);
  const rows = s.paddedVocab ?? s.vocab;
  const ss = s.layout === 'state-spaces';
  const out: WritableTensor[] = [randomTensor(next, ss ? 'backbone.embedding.weight' : 'backbone.embeddings.weight', [rows, s.hidden])];
  const convBias = s.convBias ?? true;
  for (let i = 0; i < s.numLayers; i++) {
    const p = `backbone.layers.${i}.`;
    const t = (name: string, shape: number[]) => out.push(randomTensor(next, p + name, shape));
    t('norm.weight', [s.hidden]);
    if (s.arch === 'mamba2') {
      const H = s.numHeads!;
      const G = s.nGroups ?? 1;
      const convDim = s.dInner + 2 * G * s.state;
      t('mixer.dt_bias', [H]);
      t('mixer.A_log', [H]);
      t('mixer.D', [H]);
      t('mixer.conv1d.weight', [convDim, 1, s.conv]);
      if (convBias) t('mixer.conv1d.bias', [convDim]);
      t('mixer.in_proj.weight', [2 * s.dInner + 2 * G * s.state + H, s.hidden]);
      if (s.bias) t('mixer.in_proj.bias', [2 * s.dInner + 2 * G * s.state + H]);
      t('mixer.norm.weight', [s.dInner]);
      t('mixer.out_proj.weight', [s.hidden, s.dInner]);
      if (s.bias) t('mixer.out_proj.bias', [s.hidden]);
    } else {
      const R = s.dtRank!;
      t('mixer.A_log', [s.dInner, s.state]);
      t('mixer.D', [s.dInner]);
      t('mixer.conv1d.weight', [s.dInner, 1, s.conv]);
      if (convBias) t('mixer.conv1d.bias', [s.dInner]);
      t('mixer.in_proj.weight', [2 * s.dInner, s.hidden]);
      if (s.bias) t('mixer.in_proj.bias', [2 * s.dInner]);
      t('mixer.x_proj.weight', [R + 2 * s.state, s.dInner]);
      t('mixer.dt_proj.weight', [s.dInner, R]);
      t('mixer.dt_proj.bias', [s.dInner]);
      t('mixer.out_proj.weight', [s.hidden, s.dInner]);
      if (s.bias) t('mixer.out_proj.bias', [s.hidden]);
    }
  }
  out.push(randomTensor(next, 'backbone.norm_f.weight', [s.hidden]));
  if (s.tied === false) out.push(randomTensor(next, 'lm_head.weight', [rows, s.hidden]));
  else if (s.storeTiedHead) out.push({ name: 'lm_head.weight', shape: [rows, s.hidden], data: out[0]!.data });
  if (s.dtype) for (const t of out) t.dtype = s.dtype;
  return out;
}

/** config.json as the library that wrote such a checkpoint would. */
export function synthConfig(s: SynthSpec): Record<string, unknown> {
  let cfg: Record<string, unknown>;
  if (s.layout === 'state-spaces') {
    const ssm: Record<string, unknown> = { d_state: s.state, d_conv: s.conv, expand: s.dInner / s.hidden };
    if (s.arch === 'mamba2') Object.assign(ssm, { layer: 'Mamba2', headdim: s.dInner / s.numHeads!, ngroups: s.nGroups ?? 1 });
    else ssm.dt_rank = s.dtRank;
    if (s.bias !== undefined) ssm.bias = s.bias;
    if (s.convBias !== undefined) ssm.conv_bias = s.convBias;
    cfg = {
      d_model: s.hidden, d_intermediate: 0, n_layer: s.numLayers, vocab_size: s.vocab, ssm_cfg: ssm,
      attn_layer_idx: [], attn_cfg: {}, rms_norm: true, residual_in_fp32: true, fused_add_norm: true,
      pad_vocab_size_multiple: 8, tie_embeddings: s.tied ?? true,
    };
  } else {
    cfg = {
      architectures: [{ mamba1: 'MambaForCausalLM', mamba2: 'Mamba2ForCausalLM', falcon_mamba: 'FalconMambaForCausalLM' }[s.arch]],
      model_type: { mamba1: 'mamba', mamba2: 'mamba2', falcon_mamba: 'falcon_mamba' }[s.arch],
      hidden_size: s.hidden, num_hidden_layers: s.numLayers, state_size: s.state, conv_kernel: s.conv,
      expand: s.dInner / s.hidden, vocab_size: s.vocab, tie_word_embeddings: s.tied ?? true,
      use_bias: s.bias ?? false, use_conv_bias: s.convBias ?? true, layer_norm_epsilon: 1e-5, residual_in_fp32: true,
    };
    if (s.arch === 'mamba2') {
      Object.assign(cfg, { num_heads: s.numHeads, head_dim: s.dInner / s.numHeads!, n_groups: s.nGroups ?? 1, chunk_size: 256, time_step_limit: [0.0, { __float__: 'Infinity' }] });
    } else {
      Object.assign(cfg, { intermediate_size: s.dInner, time_step_rank: s.dtRank });
      // Falcon-Mamba-7B's config says expand 16 with hidden 4096 and intermediate 8192: misleading on purpose here too.
      if (s.arch === 'falcon_mamba') Object.assign(cfg, { expand: 16, mixer_rms_eps: 1e-6 });
    }
  }
  for (const [k, v] of Object.entries(s.configPatch ?? {})) {
    if (v === undefined) delete cfg[k];
    else cfg[k] = v;
  }
  return cfg;
}

/** Write config.json and weights into `dir` (created); returns the tensors written. */
export function writeSynthCheckpoint(dir: string, s: SynthSpec, configText?: string): WritableTensor[] {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = synthTensors(s);
  writeCheckpointWeights(dir, tensors, { maxShardBytes: s.maxShardBytes });
  fs.writeFileSync(path.join(dir, 'config.json'), configText ?? JSON.stringify(synthConfig(s), null, 2));
  return tensors;
}

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? '/tmp'), `mimetic-${prefix}-`));
}
