/**
 * Mamba configs as they are found on the Hub, normalised into one description. Fields that the
 * tensor shapes fix are taken from the shapes (see checkpoint.ts); the config supplies the rest.
 */
import { UserError } from '../util/errors.js';
import { preview } from '../util/text.js';

export type Arch = 'mamba1' | 'mamba2' | 'falcon_mamba';

export interface MambaConfig {
  arch: Arch;
  numLayers: number;
  hiddenSize: number;
  intermediateSize: number;
  stateSize: number;
  convKernel: number;
  /** Mamba-1 / Falcon-Mamba: rank of the Δ projection. */
  timeStepRank?: number;
  /** Mamba-2. */
  numHeads?: number;
  headDim?: number;
  nGroups?: number;
  /** Mamba-2: Δ is clamped to this range after softplus. */
  timeStepLimit?: [number, number];
  /** Rows of the embedding (the padded vocabulary). */
  vocabSize: number;
  /** The vocabulary the config declares (may be smaller than vocabSize). */
  configVocabSize: number;
  tiedEmbeddings: boolean;
  useBias: boolean;
  useConvBias: boolean;
  layerNormEpsilon: number;
  /** Falcon-Mamba: epsilon of the weight-free RMS norms on B, C and Δ. */
  mixerRmsEps?: number;
  residualInFp32: boolean;
  /** 'hf' (backbone.embeddings) or 'state-spaces' (backbone.embedding, d_model/n_layer config). */
  layout: 'hf' | 'state-spaces';
}

/**
 * The config as read from disk, before the shapes confirm it. A field is undefined when the file
 * does not state it: dimensions then come from the tensor shapes, never from a class default.
 */
export interface RawConfigHints {
  arch: Arch;
  layout: 'hf' | 'state-spaces';
  numLayers?: number;
  hiddenSize?: number;
  intermediateSize?: number;
  stateSize?: number;
  convKernel?: number;
  timeStepRank?: number;
  numHeads?: number;
  headDim?: number;
  nGroups?: number;
  timeStepLimit?: [number, number];
  vocabSize?: number;
  tiedEmbeddings?: boolean;
  useBias?: boolean;
  useConvBias?: boolean;
  layerNormEpsilon?: number;
  mixerRmsEps?: number;
  residualInFp32?: boolean;
}

/**
 * Python's json.dumps writes non-finite floats as bare `Infinity`, `-Infinity` and `NaN` (older
 * transformers configs carry them); JSON.parse rejects those tokens. Rewrite them, outside strings
 * only, into the `{"__float__": ...}` form that newer transformers writes and the reviver decodes.
 */
function quoteNonFinite(text: string): string {
  if (!/Infinity|NaN/.test(text)) return text;
  let out = '';
  let i = 0;
  let inString = false;
  while (i < text.length) {
    const c = text[i]!;
    if (inString) {
      out += c;
      if (c === '\\') { out += text[i + 1] ?? ''; i += 2; continue; }
      if (c === '"') inString = false;
      i++;
      continue;
    }
    if (c === '"') { inString = true; out += c; i++; continue; }
    const m = /^(-?Infinity|NaN)/.exec(text.slice(i, i + 9));
    if (m) { out += `{"__float__":"${m[1]}"}`; i += m[1]!.length; continue; }
    out += c;
    i++;
  }
  return out;
}

/** JSON.parse that understands Python's non-finite floats: `{"__float__": "Infinity"}` and bare `Infinity`/`NaN`. */
export function parseConfigJson(text: string, where: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(quoteNonFinite(text), (_k, val) => {
      if (val && typeof val === 'object' && !Array.isArray(val)) {
        const keys = Object.keys(val);
        if (keys.length === 1 && keys[0] === '__float__') {
          const f = (val as { __float__: unknown }).__float__;
          if (f === 'Infinity' || f === 'inf') return Infinity;
          if (f === '-Infinity' || f === '-inf') return -Infinity;
          if (f === 'NaN' || f === 'nan') return NaN;
          if (typeof f === 'string' || typeof f === 'number') return Number(f);
        }
      }
      return val;
    });
  } catch (e) {
    throw new UserError(`${where}: not valid JSON (${(e as Error).message}); re-download the checkpoint`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new UserError(`${where}: not a JSON object; re-download the checkpoint`);
  return v as Record<string, unknown>;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const int = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined);
const bool = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);

/** Recognise the architecture and pull out the hints. Throws a UserError for unknown models. */
export function readConfigHints(cfg: Record<string, unknown>, where: string): RawConfigHints {
  const modelType = typeof cfg.model_type === 'string' ? cfg.model_type : undefined;
  const archs = Array.isArray(cfg.architectures) ? cfg.architectures.filter((a): a is string => typeof a === 'string') : [];
  // The original state-spaces configs: d_model, n_layer and ssm_cfg, no model_type.
  if (modelType === undefined && 'd_model' in cfg && 'n_layer' in cfg) {
    const ssm = (cfg.ssm_cfg && typeof cfg.ssm_cfg === 'object' ? cfg.ssm_cfg : {}) as Record<string, unknown>;
    if (ssm.layer !== undefined && ssm.layer !== 'Mamba1' && ssm.layer !== 'Mamba2') {
      throw new UserError(`${where}: unknown ssm_cfg.layer ${preview(ssm.layer)}; mimetic reads Mamba1 and Mamba2 layers`);
    }
    // mamba_ssm's hybrids (attention layers, MLPs between mixers) are another architecture.
    if ((Array.isArray(cfg.attn_layer_idx) && cfg.attn_layer_idx.length > 0) || (int(cfg.d_intermediate) ?? 0) > 0) {
      throw new UserError(`${where}: hybrid Mamba model (attn_layer_idx or d_intermediate set); mimetic reads pure Mamba stacks only`);
    }
    const isM2 = ssm.layer === 'Mamba2';
    return {
      arch: isM2 ? 'mamba2' : 'mamba1',
      layout: 'state-spaces',
      numLayers: int(cfg.n_layer),
      hiddenSize: int(cfg.d_model),
      stateSize: int(ssm.d_state),
      convKernel: int(ssm.d_conv),
      timeStepRank: isM2 ? undefined : int(ssm.dt_rank),
      headDim: isM2 ? int(ssm.headdim) : undefined,
      nGroups: isM2 ? int(ssm.ngroups) : undefined,
      vocabSize: int(cfg.vocab_size),
      tiedEmbeddings: bool(cfg.tie_embeddings),
      useBias: bool(ssm.bias),
      useConvBias: bool(ssm.conv_bias),
      layerNormEpsilon: num(cfg.norm_epsilon) ?? 1e-5,
      residualInFp32: bool(cfg.residual_in_fp32) ?? true,
      timeStepLimit: isM2 ? limitOf(ssm.dt_limit) : undefined,
    };
  }
  let arch: Arch | undefined;
  if (modelType === 'mamba' || archs.includes('MambaForCausalLM')) arch = 'mamba1';
  if (modelType === 'mamba2' || archs.includes('Mamba2ForCausalLM')) arch = 'mamba2';
  if (modelType === 'falcon_mamba' || archs.includes('FalconMambaForCausalLM')) arch = 'falcon_mamba';
  if (!arch) {
    throw new UserError(`${where}: unknown architecture (model_type ${preview(modelType ?? null)}, architectures ${preview(archs)}); mimetic reads Mamba, Mamba-2 and Falcon-Mamba checkpoints`);
  }
  const hints: RawConfigHints = {
    arch,
    layout: 'hf',
    numLayers: int(cfg.num_hidden_layers) ?? int(cfg.n_layer),
    hiddenSize: int(cfg.hidden_size) ?? int(cfg.d_model),
    intermediateSize: int(cfg.intermediate_size),
    stateSize: int(cfg.state_size),
    convKernel: int(cfg.conv_kernel),
    vocabSize: int(cfg.vocab_size),
    tiedEmbeddings: bool(cfg.tie_word_embeddings),
    useBias: bool(cfg.use_bias),
    useConvBias: bool(cfg.use_conv_bias),
    layerNormEpsilon: num(cfg.layer_norm_epsilon) ?? 1e-5,
    residualInFp32: bool(cfg.residual_in_fp32) ?? true,
  };
  if (arch === 'mamba2') {
    hints.numHeads = int(cfg.num_heads);
    hints.headDim = int(cfg.head_dim);
    hints.nGroups = int(cfg.n_groups);
    hints.timeStepLimit = limitOf(cfg.time_step_limit);
  } else {
    hints.timeStepRank = int(cfg.time_step_rank);
    if (arch === 'falcon_mamba') hints.mixerRmsEps = num(cfg.mixer_rms_eps) ?? 1e-6;
  }
  return hints;
}

function limitOf(v: unknown): [number, number] {
  if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'number' && typeof v[1] === 'number') return [v[0], v[1]];
  return [0, Infinity];
}

/** The config.json that transformers writes for a normalised config (used by `init` and `transplant`). */
// Fields transformers' strict config classes type as float: an integer-valued one (`0`, JSON's only
// way to write 0.0 from JavaScript) fails their validation ("expected float"), so they get a `.0`.
const FLOAT_FIELDS = new Set(['time_step_limit', 'time_step_min', 'time_step_max', 'time_step_floor', 'time_step_scale', 'initializer_range', 'layer_norm_epsilon', 'mixer_rms_eps', 'A_initializer_range', 'dt_min', 'dt_max', 'dt_init_floor']);

/** config.json text as transformers reads it: 2-space JSON with float fields written as floats. */
export function hfConfigText(cfg: Record<string, unknown>): string {
  const mark = (v: unknown): unknown => (typeof v === 'number' && Number.isInteger(v) ? `__mimetic_float__${v}` : Array.isArray(v) ? v.map(mark) : v);
  const text = JSON.stringify(cfg, (k, v) => (FLOAT_FIELDS.has(k) ? mark(v) : v), 2);
  return text.replace(/"__mimetic_float__(-?\d+)"/g, '$1.0') + '\n';
}

export function toHfConfigJson(c: MambaConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const common = {
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numLayers,
    state_size: c.stateSize,
    conv_kernel: c.convKernel,
    expand: c.intermediateSize / c.hiddenSize,
    intermediate_size: c.intermediateSize,
    vocab_size: c.vocabSize,
    tie_word_embeddings: c.tiedEmbeddings,
    use_bias: c.useBias,
    use_conv_bias: c.useConvBias,
    layer_norm_epsilon: c.layerNormEpsilon,
    residual_in_fp32: c.residualInFp32,
    hidden_act: 'silu',
    bos_token_id: 0,
    eos_token_id: 0,
    pad_token_id: 0,
  };
  if (c.arch === 'mamba2') {
    const lim = c.timeStepLimit ?? [0, Infinity];
    return {
      architectures: ['Mamba2ForCausalLM'],
      model_type: 'mamba2',
      ...common,
      num_heads: c.numHeads,
      head_dim: c.headDim,
      n_groups: c.nGroups,
      chunk_size: 256,
      time_step_rank: Math.ceil(c.hiddenSize / 16),
      time_step_limit: [lim[0], Number.isFinite(lim[1]) ? lim[1] : { __float__: 'Infinity' }],
      ...extra,
    };
  }
  return {
    architectures: [c.arch === 'falcon_mamba' ? 'FalconMambaForCausalLM' : 'MambaForCausalLM'],
    model_type: c.arch === 'falcon_mamba' ? 'falcon_mamba' : 'mamba',
    ...common,
    time_step_rank: c.timeStepRank,
    ...(c.arch === 'falcon_mamba' ? { mixer_rms_eps: c.mixerRmsEps ?? 1e-6 } : {}),
    ...extra,
  };
}

/**
 * Upper bounds on every dimension, far above any published Mamba (Falcon-Mamba-7B: hidden 4096,
 * 64 layers, vocab 65 024; Mamba-2: state 128). A dimension past them, or 0, comes from a corrupt
 * or hostile file: a zero-sized tensor costs no bytes, so without the check an 11 KB file could
 * claim state 2^40 and make score and forward allocate without end.
 */
export const DIM_LIMITS = {
  numLayers: 1024,
  hiddenSize: 65_536,
  intermediateSize: 262_144,
  stateSize: 4096,
  convKernel: 64,
  timeStepRank: 65_536,
  numHeads: 65_536,
  headDim: 65_536,
  nGroups: 65_536,
  vocabSize: 1 << 22,
} as const;

/** config.json's names for the dimensions, for messages. */
const HF_DIM_NAMES: Record<keyof typeof DIM_LIMITS, string> = {
  numLayers: 'num_hidden_layers', hiddenSize: 'hidden_size', intermediateSize: 'intermediate_size', stateSize: 'state_size',
  convKernel: 'conv_kernel', timeStepRank: 'time_step_rank', numHeads: 'num_heads', headDim: 'head_dim', nGroups: 'n_groups', vocabSize: 'vocab_size',
};

/**
 * Reject a zero or oversized dimension. `names` maps a field to what the user wrote it as (an
 * option for `init`); `fix` ends the message.
 */
export function checkDimensions(c: Partial<Record<keyof typeof DIM_LIMITS, number>>, where: string, names: Partial<Record<keyof typeof DIM_LIMITS, string>> = {}, fix = 'the checkpoint is corrupt or not a Mamba model'): void {
  for (const key of Object.keys(DIM_LIMITS) as (keyof typeof DIM_LIMITS)[]) {
    const v = c[key];
    if (v === undefined) continue;
    const name = names[key] ?? HF_DIM_NAMES[key];
    const at = where ? `${where}: ` : '';
    if (!Number.isSafeInteger(v) || v < 1) throw new UserError(`${at}${name} is ${v}; every Mamba dimension must be at least 1, so ${fix}`);
    if (v > DIM_LIMITS[key]) throw new UserError(`${at}${name} is ${v}, above mimetic's limit of ${DIM_LIMITS[key]}; ${fix}`);
  }
}
