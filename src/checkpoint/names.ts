/** Tensor names of a Hugging Face Mamba checkpoint (transformers' names; state-spaces names are mapped onto them). */

export const EMBEDDING = 'backbone.embeddings.weight';
export const NORM_F = 'backbone.norm_f.weight';
export const LM_HEAD = 'lm_head.weight';

export function layerPrefix(i: number): string {
  return `backbone.layers.${i}.`;
}

export function layerName(i: number, short: string): string {
  return layerPrefix(i) + short;
}

/** Split an HF name into its layer and short name; undefined for non-layer tensors. */
export function parseLayerName(name: string): { layer: number; short: string } | undefined {
  const m = /^backbone\.layers\.(\d+)\.(.+)$/.exec(name);
  return m ? { layer: Number(m[1]), short: m[2]! } : undefined;
}
