/**
 * Language modelling on a prepared corpus (data/): each training row is a random window of
 * `context`+1 tokens from the train split (start drawn from the run's seeded RNG, so a resumed run
 * draws the same windows), loss on every position. Held-out evaluation reads fixed, evenly spaced
 * windows of the held-out split. Copy/MQAR evaluations can ride along (`evalTasks`): their
 * specs and scores are the sub-task's, keyed `copy:len=50`, `mqar:len=256,kv=16`.
 */
import { TokenData } from '../data/tokens.js';
import { UserError } from '../util/errors.js';
import type { Rng } from '../util/rng.js';
import { type Batch, type EvalScore, type EvalSpec, type Task, emptyBatch } from './common.js';
import { BOS, COPY_DEFAULTS, CopyTask, EOS, FIRST_LETTER, PAD, SEP } from './copy.js';
import { MQAR_DEFAULTS, MqarTask } from './mqar.js';

export const EVAL_TASKS = ['copy', 'mqar'] as const;
export type EvalTaskName = (typeof EVAL_TASKS)[number];

export interface LmOptions {
  /** A prepared token folder (absolute path). */
  data: string;
  context: number;
  /** Copy/MQAR evaluations run alongside the held-out loss. */
  evalTasks: EvalTaskName[];
  /** The eval tasks' extra lengths (copy: string lengths; mqar: sequence lengths). */
  evalLengths: number[];
  /** sha256 of the train and held-out files (meta.json), so a resumed run reads the same data. */
  sha256: string;
}

export const LM_DEFAULTS = { context: 256 } as const;

/** The split hashes a run records: `train:heldout`. */
export function dataHash(d: TokenData): string {
  return `${d.meta.splits.train.sha256}:${d.meta.splits.heldout.sha256}`;
}

/**
 * Byte-level models read the copy task as text: `$abc|abc.` in ASCII, so a model pretrained on
 * English bytes sees letters it knows. Other vocabularies keep the copy task's own ids.
 */
function copyByteMap(): Int32Array {
  const m = new Int32Array(FIRST_LETTER + 26);
  m[PAD] = 32; m[BOS] = 36; m[SEP] = 124; m[EOS] = 46;
  for (let i = 0; i < 26; i++) m[FIRST_LETTER + i] = 97 + i;
  return m;
}

export class LmTask implements Task {
  readonly name = 'lm' as const;
  readonly vocabSize: number;
  readonly trainLength: number;
  readonly options: Record<string, unknown>;
  readonly data: TokenData;
  private readonly sub: { prefix: string; task: Task; map: Int32Array | null }[] = [];

  constructor(readonly o: LmOptions) {
    if (!Number.isSafeInteger(o.context) || o.context < 1) throw new UserError(`--context: ${o.context} must be a positive integer`);
    this.data = TokenData.open(o.data);
    const have = dataHash(this.data);
    if (o.sha256 && have !== o.sha256) throw new UserError(`--data ${o.data}: its token files changed since the run started (sha256 ${have.slice(0, 12)}…, the run recorded ${o.sha256.slice(0, 12)}…); resume with the run's own data`);
    const need = o.context + 1;
    for (const s of ['train', 'heldout'] as const) {
      if (this.data.tokens(s) < need) throw new UserError(`--data ${o.data}: the ${s} split has ${this.data.tokens(s)} tokens, fewer than --context ${o.context} + 1; lower --context or give more text`);
    }
    this.vocabSize = this.data.meta.vocab;
    this.trainLength = o.context;
    this.options = { task: 'lm', data: o.data, context: o.context, vocab: this.vocabSize, evalTasks: o.evalTasks, sha256: have };
    const byteLevel = this.data.meta.tokenizer === null && this.vocabSize === 256;
    for (const t of o.evalTasks) {
      if (t === 'copy') {
        if (!byteLevel && this.vocabSize < FIRST_LETTER + COPY_DEFAULTS.alphabet) throw new UserError(`--eval-tasks copy: the vocabulary (${this.vocabSize}) is below the copy task's ${FIRST_LETTER + COPY_DEFAULTS.alphabet} tokens`);
        this.sub.push({ prefix: 'copy:', task: new CopyTask({ ...COPY_DEFAULTS, evalLengths: o.evalLengths }), map: byteLevel ? copyByteMap() : null });
      } else if (t === 'mqar') {
        const vocab = Math.min(MQAR_DEFAULTS.vocab, this.vocabSize);
        this.sub.push({ prefix: 'mqar:', task: new MqarTask({ ...MQAR_DEFAULTS, vocab, evalLengths: o.evalLengths }), map: null });
      } else {
        throw new UserError(`--eval-tasks: unknown task '${String(t)}'; choose ${EVAL_TASKS.join(', ')}`);
      }
    }
  }

  private window(b: Batch, r: number, split: 'train' | 'heldout', start: number, buf: Int32Array): void {
    const L = b.length;
    this.data.read(split, start, L + 1, buf);
    b.ids.set(buf.subarray(0, L), r * L);
    b.targets.set(buf.subarray(1, L + 1), r * L);
    b.mask.fill(1, r * L, (r + 1) * L);
  }

  sampleTrain(rng: Rng, batch: number): Batch {
    const b = emptyBatch(batch, this.trainLength);
    const buf = new Int32Array(this.trainLength + 1);
    const last = this.data.tokens('train') - (this.trainLength + 1);
    for (let r = 0; r < batch; r++) this.window(b, r, 'train', rng.int(0, last), buf);
    return b;
  }

  /** `examples` held-out windows, evenly spaced over the split (the same every evaluation). */
  heldOutBatch(examples: number): Batch {
    const b = emptyBatch(examples, this.trainLength);
    const buf = new Int32Array(this.trainLength + 1);
    const last = this.data.tokens('heldout') - (this.trainLength + 1);
    for (let r = 0; r < examples; r++) this.window(b, r, 'heldout', examples > 1 ? Math.floor((r * last) / (examples - 1)) : 0, buf);
    return b;
  }

  /** Bytes of held-out text per token: bits/byte = nats/token ÷ ln 2 ÷ this. */
  bytesPerToken(): number {
    return this.data.bytesPerToken('heldout');
  }

  private subOf(key: string) {
    const s = this.sub.find((x) => key.startsWith(x.prefix));
    if (!s) throw new Error(`lm task: no evaluation '${key}'`);
    return s;
  }

  evalSpecs(): EvalSpec[] {
    return this.sub.flatMap((s) => s.task.evalSpecs().map((e) => ({ ...e, key: s.prefix + e.key, train: false })));
  }

  sampleEval(rng: Rng, spec: EvalSpec, examples: number): Batch {
    const s = this.subOf(spec.key);
    const b = s.task.sampleEval(rng, { ...spec, key: spec.key.slice(s.prefix.length) }, examples);
    if (s.map) {
      for (let i = 0; i < b.ids.length; i++) { b.ids[i] = s.map[b.ids[i]!]!; b.targets[i] = s.map[b.targets[i]!]!; }
    }
    return b;
  }

  score(spec: EvalSpec, b: Batch, predictions: Int32Array): EvalScore {
    const s = this.subOf(spec.key);
    const e = s.task.score({ ...spec, key: spec.key.slice(s.prefix.length) }, b, predictions);
    return { ...e, key: spec.key, train: false };
  }

  close(): void {
    this.data.close();
  }
}
