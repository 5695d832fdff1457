/**
 * The copy task in the layout of Jelassi et al. 2024 ("Repeat After Me"): `$ s | s .` where s is
 * a string of uniform random letters. Training rows pack whole examples back-to-back; the loss
 * counts only the copied string and the final `.`. Evaluation reads one example per row with
 * teacher forcing and scores the argmax at each copied position.
 */
import { UserError } from '../util/errors.js';
import type { Rng } from '../util/rng.js';
import { type Batch, type EvalScore, type EvalSpec, type Task, emptyBatch, setRow } from './common.js';

export const PAD = 0;
export const BOS = 1;
export const SEP = 2;
export const EOS = 3;
export const FIRST_LETTER = 4;

export interface CopyOptions {
  alphabet: number;
  minLen: number;
  maxLen: number;
  context: number;
  evalLengths: number[];
}

export const COPY_DEFAULTS: CopyOptions = { alphabet: 26, minLen: 5, maxLen: 50, context: 220, evalLengths: [] };

/** Tokens of one example for string s (letter indices 0..alphabet-1). */
export function copyExample(s: ArrayLike<number>): number[] {
  const letters = Array.from(s, (c) => FIRST_LETTER + c);
  return [BOS, ...letters, SEP, ...letters, EOS];
}

/** Render tokens as text (`$abc|abc.`, pad `*`), for debugging and tests. */
export function copyText(tokens: ArrayLike<number>): string {
  let out = '';
  for (const t of Array.from(tokens)) {
    out += t === PAD ? '*' : t === BOS ? '$' : t === SEP ? '|' : t === EOS ? '.' : t - FIRST_LETTER < 26 ? String.fromCharCode(97 + t - FIRST_LETTER) : `<${t - FIRST_LETTER}>`;
  }
  return out;
}

export class CopyTask implements Task {
  readonly name = 'copy' as const;
  readonly vocabSize: number;
  readonly trainLength: number;
  readonly options: Record<string, unknown>;

  constructor(readonly o: CopyOptions) {
    const int = (v: number, flag: string, min: number) => {
      if (!Number.isSafeInteger(v) || v < min) throw new UserError(`${flag}: ${v} must be an integer ≥ ${min}`);
    };
    int(o.alphabet, '--alphabet', 2);
    int(o.minLen, '--min-len', 1);
    int(o.maxLen, '--max-len', 1);
    int(o.context, '--context', 1);
    if (o.minLen > o.maxLen) throw new UserError(`--min-len ${o.minLen} is above --max-len ${o.maxLen}; give min ≤ max`);
    if (o.context < 2 * o.maxLen + 3) {
      throw new UserError(`--context ${o.context} is too short for --max-len ${o.maxLen}: one example takes 2·${o.maxLen}+3 = ${2 * o.maxLen + 3} tokens; raise --context or lower --max-len`);
    }
    this.vocabSize = FIRST_LETTER + o.alphabet;
    this.trainLength = o.context;
    this.options = { task: 'copy', alphabet: o.alphabet, minLen: o.minLen, maxLen: o.maxLen, context: o.context };
  }

  private randomString(rng: Rng, n: number): number[] {
    const s = new Array<number>(n);
    for (let i = 0; i < n; i++) s[i] = rng.int(0, this.o.alphabet - 1);
    return s;
  }

  /** One packed training row of `context` tokens (+1 trailing pad) and its target mask. */
  trainRow(rng: Rng): { row: number[]; mask: number[] } {
    const C = this.o.context;
    const row: number[] = [];
    const mask: number[] = [];
    for (;;) {
      const n = rng.int(this.o.minLen, this.o.maxLen);
      if (row.length + 2 * n + 3 > C) break;
      const ex = copyExample(this.randomString(rng, n));
      // Mask on the token being predicted: the second copy of s (positions n+2..2n+1) and EOS.
      ex.forEach((tok, i) => { row.push(tok); mask.push(i >= n + 2 ? 1 : 0); });
    }
    while (row.length < C + 1) { row.push(PAD); mask.push(0); }
    return { row, mask };
  }

  sampleTrain(rng: Rng, batch: number): Batch {
    const b = emptyBatch(batch, this.trainLength);
    for (let r = 0; r < batch; r++) {
      const { row, mask } = this.trainRow(rng);
      setRow(b, r, row, mask);
    }
    return b;
  }

  evalSpecs(): EvalSpec[] {
    const specs: EvalSpec[] = [];
    const add = (n: number, train: boolean) => {
      if (!specs.some((s) => s.size === n)) specs.push({ key: `len=${n}`, length: 2 * n + 3, size: n, train });
    };
    // The training lengths: the longest trained length (the hardest one seen in training).
    add(this.o.maxLen, true);
    for (const n of this.o.evalLengths) add(n, n >= this.o.minLen && n <= this.o.maxLen);
    return specs;
  }

  sampleEval(rng: Rng, spec: EvalSpec, examples: number): Batch {
    const n = spec.size;
    const b = emptyBatch(examples, spec.length);
    for (let r = 0; r < examples; r++) {
      const row = [...copyExample(this.randomString(rng, n)), PAD];
      const mask = row.map((_, i) => (i >= n + 2 && i <= 2 * n + 2 ? 1 : 0));
      setRow(b, r, row, mask);
    }
    return b;
  }

  score(spec: EvalSpec, b: Batch, predictions: Int32Array): EvalScore {
    const L = b.length, n = spec.size;
    let strings = 0, chars = 0;
    const right = new Array<number>(n).fill(0);
    const prefix = new Array<number>(n).fill(0);
    for (let r = 0; r < b.batch; r++) {
      let all = true;
      // Targets at t = n+1..2n are the copied letters (position i = t-n-1), t = 2n+1 is the EOS.
      for (let t = n + 1; t <= 2 * n + 1; t++) {
        const ok = predictions[r * L + t] === b.targets[r * L + t];
        if (!ok) all = false;
        if (t <= 2 * n) {
          if (ok) { chars++; right[t - n - 1]!++; }
          if (all) prefix[t - n - 1]!++;
        }
      }
      if (all) strings++;
    }
    return {
      key: spec.key, length: spec.length, size: n, train: spec.train, examples: b.batch, accuracy: strings / b.batch, charAccuracy: chars / (b.batch * n),
      perPosition: right.map((c) => c / b.batch), prefix: prefix.map((c) => c / b.batch),
    };
  }
}
