import type { ReferenceScores } from '../analysis/reference.js';
/** The content of report.json: everything the report's pages show, and where its files are. */
import type { LayerScores } from '../analysis/scores.js';
import type { Histogram } from '../render/chart.js';

/** The marker that identifies a folder as a mimetic report (checked before overwriting). */
export const REPORT_MARKER = { format: 'mimetic-layer-report', version: 1 } as const;

export interface ChannelEntry {
  index: number;
  maskOnes: number;
  lookbehind: number | null;
  mimetic: number;
  /** Relative path of its attention heatmap. */
  image: string;
  /** Name of its map in the layer's maps file. */
  tensor: string;
}

export interface LayerReport {
  layer: number;
  page: string;
  images: { attention: string; decay: string; qk: string; cbGram: string; histA: string; histDelta: string; histChannels: string; thumb: string };
  /** Maps as shown (batch-mean, full resolution) in a safetensors file; tensor name → shape. */
  maps: { file: string; tensors: Record<string, number[]> };
  /** Colour ranges of the heatmaps: ±absMax for signed maps, [lo, hi] otherwise. */
  colour: { attention: number; qk: number; cbGram: number; decay: [number, number] };
  histograms: { A: Histogram; delta: Histogram; channelMimetic: Histogram };
  stats: { A: Summary; delta: Summary };
  channels: { unit: 'channel' | 'head'; count: number; most: ChannelEntry[]; least: ChannelEntry[] };
}

export interface Summary {
  min: number;
  max: number;
  mean: number;
}

export interface ReportJson {
  mimetic: typeof REPORT_MARKER;
  generator: string;
  created: string;
  checkpoint: {
    source: string;
    name: string;
    arch: string;
    config: Record<string, unknown>;
    /** config.json as read. */
    rawConfig: Record<string, unknown>;
    modelType: string | null;
    parameters: number;
    dtypes: Record<string, number>;
    files: { name: string; bytes: number }[];
  };
  probe: { ids: number[][]; period: number | null; batch: number; length: number; description: string };
  backend: string;
  /** Threads the probe's rows were shared among (absent in reports written before --threads). */
  threads?: number;
  seconds: number;
  /** Scores in layer order (audited layers only). */
  scores: LayerScores[];
  /** Tensors holding NaN or Inf (their layers are unranked), as `name (k NaN, j Inf)`. */
  nonFinite: string[];
  /** A fresh default-init and mimetic-init layer of the same shape on the same probe; null when not computed. */
  reference: ReferenceScores | null;
  layers: LayerReport[];
  chart: string;
}
