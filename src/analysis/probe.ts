/**
 * The probe: the token ids the audit runs through the model to measure attention and decay.
 *
 * Default probe (deterministic): `batch` rows; each row draws m = ⌊L/2⌋ ids uniformly from
 * [0, vocab) with the mulberry32 generator of src/util/rng.ts seeded with `seed` (rows drawn in
 * order, ids left to right, id = ⌊u·vocab⌋ for each uniform u), then tiles them so x[t] = x[t mod m];
 * the period is m. Defaults: batch 4, L 128 (m 64), seed 0.
 *
 * A probe file is JSON `{"ids": [[…], …], "period": m}`; the period is optional and taken as given.
 */
import * as fs from 'node:fs';
import { UserError } from '../util/errors.js';
import { preview } from '../util/text.js';
import { Rng } from '../util/rng.js';
import { checkTokenCount } from '../model/mamba.js';

export interface Probe {
  /** [batch][L] token ids. */
  ids: number[][];
  /** x[t] = x[t − period] for t ≥ period; null when the probe has no period. */
  period: number | null;
}

export const DEFAULT_PROBE = { batch: 4, seqLen: 128, seed: 0 } as const;

export function defaultProbe(vocab: number, opts: { batch?: number; seqLen?: number; seed?: number } = {}): Probe {
  const batch = opts.batch ?? DEFAULT_PROBE.batch;
  const L = opts.seqLen ?? DEFAULT_PROBE.seqLen;
  const seed = opts.seed ?? DEFAULT_PROBE.seed;
  if (!Number.isInteger(batch) || batch < 1) throw new UserError(`--batch-size ${batch}: give a positive integer`);
  if (!Number.isInteger(L) || L < 2) throw new UserError(`--seq-len ${L}: give an integer of at least 2 (the probe repeats a row of ⌊L/2⌋ ids)`);
  checkTokenCount(batch, L, `--batch-size ${batch} --seq-len ${L}`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new UserError(`--seed ${seed}: give an integer in [0, 2^32)`);
  if (!Number.isInteger(vocab) || vocab < 1) throw new Error(`vocabulary size ${vocab} is not a positive integer`);
  const m = Math.floor(L / 2);
  const rng = new Rng(seed);
  const ids: number[][] = [];
  for (let b = 0; b < batch; b++) {
    const row: number[] = [];
    for (let j = 0; j < m; j++) row.push(Math.floor(rng.next() * vocab));
    ids.push(Array.from({ length: L }, (_, t) => row[t % m]!));
  }
  return { ids, period: m };
}

/** Check a probe against the model's vocabulary; throws a UserError naming `where`. */
export function validateProbe(p: { ids: unknown; period?: unknown }, vocab: number, where: string): Probe {
  if (!Array.isArray(p.ids) || p.ids.length === 0) throw new UserError(`${where}: "ids" must be a non-empty array of rows of token ids, e.g. {"ids": [[1, 2, 3, 1, 2, 3]], "period": 3}`);
  const L = Array.isArray(p.ids[0]) ? p.ids[0].length : -1;
  checkTokenCount(p.ids.length, L, where);
  const ids: number[][] = [];
  p.ids.forEach((row: unknown, b: number) => {
    if (!Array.isArray(row)) throw new UserError(`${where}: ids[${b}] is not an array of token ids`);
    if (row.length !== L) throw new UserError(`${where}: rows have unequal lengths (ids[0] has ${L}, ids[${b}] has ${row.length}); give rows of equal length`);
    row.forEach((id: unknown, t: number) => {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocab) {
        throw new UserError(`${where}: ids[${b}][${t}] = ${preview(id)} is outside the vocabulary [0, ${vocab}); give integer token ids below ${vocab}`);
      }
    });
    ids.push(row as number[]);
  });
  if (L < 2) throw new UserError(`${where}: rows have ${L} token(s); give at least 2`);
  let period: number | null = null;
  if (p.period !== undefined && p.period !== null) {
    if (typeof p.period !== 'number' || !Number.isInteger(p.period) || p.period < 1) throw new UserError(`${where}: "period" ${preview(p.period)} must be a positive integer (or omitted)`);
    if (p.period >= L) throw new UserError(`${where}: "period" ${p.period} is not smaller than the sequence length ${L}; give a period below ${L} or omit it`);
    period = p.period;
  }
  return { ids, period };
}

export function readProbeFile(file: string, vocab: number): Probe {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`${file}: cannot read the probe file (${(e as NodeJS.ErrnoException).code ?? String(e)}); give a JSON file {"ids": [[…]], "period": m}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message}); give {"ids": [[…]], "period": m}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new UserError(`${file}: not a JSON object; give {"ids": [[…]], "period": m}`);
  return validateProbe(json as { ids: unknown; period?: unknown }, vocab, file);
}

/** The probe the command-line options describe. */
export function probeFromOptions(vocab: number, o: { probe?: string; seqLen?: number; batch?: number; seed?: number }): Probe {
  if (o.probe !== undefined) {
    if (o.seqLen !== undefined || o.batch !== undefined || o.seed !== undefined) {
      throw new UserError('--probe cannot be combined with --seq-len, --batch-size or --seed (those shape the default probe); give one or the other');
    }
    return readProbeFile(o.probe, vocab);
  }
  return defaultProbe(vocab, o);
}

/**
 * Below this period lookbehind's two entries, s = t − m and t − m + 1, are among the last few
 * positions, which any decaying layer attends to: a default-init layer then looks "mimetic"
 * (the bundled Mamba-1 rises from 0.14 to 0.64 at --seq-len 3, period 1).
 */
export const MIN_PERIOD = 8;

/** The smallest m ≥ 1 with x[t] = x[t − m] for every row and t ≥ m; null when the rows do not repeat. */
export function repetitionPeriod(ids: number[][]): number | null {
  const L = ids[0]?.length ?? 0;
  for (let m = 1; m < L; m++) {
    if (ids.every((row) => row.every((x, t) => t < m || x === row[t - m]))) return m;
  }
  return null;
}

/** A warning for a probe on which the scores mean little, or null. */
export function probeWarning(p: Probe): string | null {
  if (p.period !== null && p.period < MIN_PERIOD) {
    return `the probe's period is ${p.period}: below ${MIN_PERIOD} lookbehind measures attention to the last few tokens, not recall, and the scores run high; use --seq-len ${2 * MIN_PERIOD} or more (period ⌊L/2⌋), or a probe file with a period of at least ${MIN_PERIOD}`;
  }
  if (p.period === null) {
    const m = repetitionPeriod(p.ids);
    if (m !== null && m >= MIN_PERIOD) return `the probe repeats with period ${m} but gives no "period", so lookbehind is not scored; add "period": ${m} to the probe file`;
  }
  return null;
}
