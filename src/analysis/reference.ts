/**
 * A scale for the scores: one fresh layer of the audited model's shape with the mamba_ssm default
 * init and one with the mimetic init (all parts, seeded), scored by the same audit on the same
 * probe. A user reads a layer's 0.4 against what an untrained default layer (about 0.1) and an
 * untrained mimetic layer (about 0.65) give on that probe.
 *
 * The fresh layers read the probe through a fresh random embedding; the probe's ids are renumbered
 * 0…k−1 (k distinct ids) so that embedding has k rows, not the model's vocabulary — which tokens
 * repeat where is all the scores depend on.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checkpoint } from '../checkpoint/checkpoint.js';
import type { MambaConfig } from '../checkpoint/config.js';
import { initWeights, initRecord, writeCheckpointFiles, MIMETIC_PARTS, type InitOptions, type InitRecord } from '../model/init.js';
import { auditCheckpoint, type UnrankedScores } from './audit.js';
import type { Probe } from './probe.js';

export interface ReferenceScores {
  /** Scores of the fresh default-init and mimetic-init layer (`layer` is 0, the fresh model's only layer). */
  default: UnrankedScores;
  mimetic: UnrankedScores;
  /** The two inits exactly as `mimetic init` records them. */
  inits: { default: InitRecord; mimetic: InitRecord };
}

export const REFERENCE_SEED = 0;

export const REFERENCE_INITS: { default: InitOptions; mimetic: InitOptions } = {
  default: { init: 'default', parts: [], aScale: 8, bcNoise: 0, seed: REFERENCE_SEED },
  mimetic: { init: 'mimetic', parts: [...MIMETIC_PARTS], aScale: 8, bcNoise: 0, seed: REFERENCE_SEED },
};

/** The probe's ids renumbered by first appearance (equal ids stay equal, distinct stay distinct). */
export function renumberProbe(p: Probe): { probe: Probe; vocab: number } {
  const map = new Map<number, number>();
  const ids = p.ids.map((row) => row.map((id) => {
    let v = map.get(id);
    if (v === undefined) map.set(id, (v = map.size));
    return v;
  }));
  return { probe: { ids, period: p.period }, vocab: map.size };
}

/** The one-layer config of the references: the model's layer shape, tied embedding of `vocab` rows. */
export function referenceConfig(c: MambaConfig, vocab: number): MambaConfig {
  return { ...c, numLayers: 1, vocabSize: vocab, configVocabSize: vocab, tiedEmbeddings: true, layout: 'hf' };
}

export async function referenceScores(c: MambaConfig, probe: Probe, opts: { channelBlock?: number; threads?: number } = {}): Promise<ReferenceScores> {
  const { probe: p, vocab } = renumberProbe(probe);
  const rc = referenceConfig(c, vocab);
  const score = async (o: InitOptions): Promise<UnrankedScores> => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-reference-'));
    try {
      writeCheckpointFiles(dir, rc, initWeights(rc, o), initRecord(o) as unknown as Record<string, unknown>);
      const ck = Checkpoint.open(dir);
      try {
        const res = await auditCheckpoint(ck, { probe: p, channelBlock: opts.channelBlock, threads: opts.threads });
        const { rank: _rank, ...s } = res.layers[0]!;
        return s;
      } finally {
        ck.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  return {
    default: await score(REFERENCE_INITS.default),
    mimetic: await score(REFERENCE_INITS.mimetic),
    inits: { default: initRecord(REFERENCE_INITS.default), mimetic: initRecord(REFERENCE_INITS.mimetic) },
  };
}

/** One line saying what the reference rows are. */
export function referenceNote(r: ReferenceScores): string {
  const m = r.inits.mimetic;
  return `ref rows: a fresh layer of this model's shape, initialised by mamba_ssm's default recipe or by the mimetic init (${m.parts.join(',')}, c=${m.aScale}), seed ${m.seed}, scored on the same probe`;
}
