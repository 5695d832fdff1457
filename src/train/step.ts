/**
 * One optimizer step, two ways. `AutodiffStep` differentiates the tf.js model (any backend; on
 * webgpu one fused kernel does AdamW). `CompiledWebGPUStep` adapts gpu/step.ts, which runs forward,
 * backward and AdamW as raw WGSL dispatches and keeps the losses on the GPU until `settle`.
 * `makeStep` picks one, once: the only place training asks which backend it is on.
 */
import * as tf from '@tensorflow/tfjs';
import type { MambaConfig } from '../checkpoint/config.js';
import type { GpuStepKnobs } from './config.js';
import type { MambaLM } from '../model/lm.js';
import type { Batch } from '../tasks/common.js';
import { UserError } from '../util/errors.js';
import { type AdamWHParams, type AdamWState, adamwStep } from './adamw.js';
import { adamwStepWebGPU } from './adamw-webgpu.js';
import { CompiledStep, MAX_STATE, RING, StepTooBig, compiledStepUnsupported } from './gpu/step.js';

/** What one step did: its loss and gradient norm, once read back. */
export interface StepRecord {
  step: number;
  lr: number;
  tokens: number;
  loss: number;
  gradNorm: number;
}

export interface Step {
  /** How steps run, for one progress line (null: the CPU backends, nothing worth saying). */
  readonly how: string | null;
  /** Steps between read-backs of the losses (1: each step's loss is known at once). */
  readonly readEvery: number;
  /** Steps run but not yet settled. */
  readonly queued: number;
  /** Build what batches of b's shape need, so that a shape the step cannot take fails before the run starts (optional). */
  prepare?(b: Batch): void;
  /** Run optimizer step `s` (AdamW's own count is `opt.step`, advanced here) on batch `b`. */
  run(b: Batch, s: number, hp: AdamWHParams): Promise<void>;
  /** The queued steps' records, oldest first, and the queue emptied. */
  settle(): Promise<StepRecord[]>;
  /** Bring parameters and optimizer moments back to the tf.js variables (before evaluating or saving). */
  sync(): void;
  dispose(): void;
}

/**
 * Mean next-token cross-entropy over the masked positions. The target logit is picked with a
 * one-hot product (not a gather, whose gradient needs UnsortedSegmentSum, missing on wasm); the
 * one-hot is the size of the logits' gradient anyway.
 */
export function maskedLoss(logits: tf.Tensor3D, targets: tf.Tensor1D, mask: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const V = logits.shape[2];
    const flat = logits.reshape([-1, V]);
    const lse = tf.logSumExp(flat, 1);
    const picked = tf.sum(tf.mul(flat, tf.oneHot(targets, V)), 1);
    const nll = tf.sub(lse, picked);
    return tf.div(tf.sum(tf.mul(nll, mask)), tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
  });
}

function batchTensors(b: Batch) {
  return {
    ids: tf.tensor2d(b.ids, [b.batch, b.length], 'int32'),
    targets: tf.tensor1d(b.targets, 'int32'),
    mask: tf.tensor1d(b.mask, 'float32'),
  };
}

export class AutodiffStep implements Step {
  readonly readEvery = 1;
  private pending: StepRecord[] = [];
  private readonly varKey = new Map<string, string>();

  /** `fusedAdamW`: one WebGPU kernel updates every parameter (a tf-op chain costs ~100 ms a step there). */
  constructor(private readonly model: MambaLM, private readonly params: Map<string, tf.Variable>, private readonly opt: AdamWState,
    private readonly fusedAdamW: boolean, readonly how: string | null) {
    for (const [k, v] of params) this.varKey.set(v.name, k);
  }

  get queued(): number {
    return this.pending.length;
  }

  async run(b: Batch, s: number, hp: AdamWHParams): Promise<void> {
    const bt = batchTensors(b);
    try {
      const { value, grads } = tf.variableGrads(() => maskedLoss(this.model.logits(bt.ids), bt.targets, bt.mask), [...this.params.values()]);
      const loss = (await value.data())[0]!;
      value.dispose();
      let gradNorm = NaN;
      // A non-finite loss is not applied: the run stops on it with the weights of the step before.
      if (Number.isFinite(loss)) {
        const byKey = new Map<string, tf.Tensor>();
        for (const [name, g] of Object.entries(grads)) byKey.set(this.varKey.get(name) ?? name, g);
        const norm = this.fusedAdamW ? adamwStepWebGPU(this.params, byKey, this.opt, hp) : adamwStep(this.params, byKey, this.opt, hp);
        gradNorm = (await norm.data())[0]!;
        norm.dispose();
      }
      for (const g of Object.values(grads)) g.dispose();
      this.pending.push({ step: s, lr: hp.lr, tokens: b.batch * b.length, loss, gradNorm });
    } finally {
      for (const t of Object.values(bt)) t.dispose();
    }
  }

  async settle(): Promise<StepRecord[]> {
    return this.pending.splice(0);
  }

  sync(): void {}

  dispose(): void {}
}

/** gpu/step.ts's CompiledStep behind the Step interface: one per batch shape (MQAR mixes lengths), sharing the parameter buffers. */
export class CompiledWebGPUStep implements Step {
  readonly how = 'training step: compiled WebGPU kernels';
  private readonly shapes = new Map<string, CompiledStep>();
  private first: CompiledStep | undefined;
  private pending: { rec: Omit<StepRecord, 'loss' | 'gradNorm'>; cs: CompiledStep }[] = [];

  constructor(private readonly model: MambaLM, private readonly params: Map<string, tf.Variable>, private readonly opt: AdamWState, readonly readEvery: number, private readonly knobs: GpuStepKnobs = {}) {}

  get queued(): number {
    return this.pending.length;
  }

  private forShape(b: Batch): CompiledStep {
    const key = `${b.batch}x${b.length}`;
    let cs = this.shapes.get(key);
    if (!cs) {
      try {
        cs = new CompiledStep(this.model, this.params, b.batch, b.length, this.first, this.knobs);
      } catch (e) {
        // Any other UserError already names what to change (an option that does not fit the model).
        if (e instanceof UserError && !(e instanceof StepTooBig)) throw new UserError(`compiled WebGPU step for batch ${key}: ${e.message}`);
        throw new UserError(`compiled WebGPU step for batch ${key}: ${(e as Error).message}; shorten --context, lower --d-state, or pass --compiled-step 0 for the tf.js path`);
      }
      cs.setDecay(this.opt);
      if (!this.first) cs.push(this.opt);
      this.shapes.set(key, cs);
      this.first ??= cs;
    }
    return cs;
  }

  prepare(b: Batch): void {
    this.forShape(b);
  }

  async run(b: Batch, s: number, hp: AdamWHParams): Promise<void> {
    const cs = this.forShape(b);
    cs.setBatch(b, s);
    cs.step(hp, this.opt.step + 1);
    this.opt.step += 1;
    this.pending.push({ rec: { step: s, lr: hp.lr, tokens: b.batch * b.length }, cs });
  }

  async settle(): Promise<StepRecord[]> {
    const hist = new Map<CompiledStep, { loss: number[]; gradNorm: number[] }>();
    for (const cs of new Set(this.pending.map((p) => p.cs))) hist.set(cs, await cs.history(0, RING));
    return this.pending.splice(0).map(({ rec, cs }) => {
      const h = hist.get(cs)!;
      return { ...rec, loss: h.loss[rec.step % RING]!, gradNorm: h.gradNorm[rec.step % RING]! };
    });
  }

  sync(): void {
    this.first?.pull(this.opt);
  }

  dispose(): void {
    for (const cs of [...this.shapes.values()].reverse()) cs.dispose();
  }
}

/** Steps between loss read-backs of the compiled step (--read-every; a ring slot is reused after RING steps). */
export function compiledReadEvery(knobs: GpuStepKnobs = {}): number {
  const n = knobs.readEvery ?? 25;
  if (!(Number.isSafeInteger(n) && n >= 1 && n <= RING)) throw new UserError(`--read-every ${n}: must be an integer from 1 to ${RING}`);
  return n;
}

/** The compiled step on webgpu where it supports the model (and --compiled-step is not 0), else autodiff. */
export function makeStep(model: MambaLM, config: MambaConfig, params: Map<string, tf.Variable>, opt: AdamWState, readEvery: number, knobs: GpuStepKnobs = {}): Step {
  const webgpu = tf.getBackend() === 'webgpu';
  const why = !webgpu ? 'not on webgpu' : knobs.compiledStep === 0 ? '--compiled-step 0' : compiledStepUnsupported(config, params);
  if (!why) return new CompiledWebGPUStep(model, params, opt, readEvery, knobs);
  // tf.js autodiff's scan keeps a state per step: past the compiled step's largest state it outgrows the GPU's bindings at once.
  if (webgpu && knobs.compiledStep !== 0 && config.stateSize > MAX_STATE) {
    throw new UserError(`d_state ${config.stateSize} is over the compiled WebGPU step's ${MAX_STATE}: use --d-state ${MAX_STATE} or less (or a model with such a state), or --compiled-step 0 to try tf.js autodiff (a state per step: far more memory, much slower)`);
  }
  return new AutodiffStep(model, params, opt, webgpu, webgpu ? `training step: tf.js autodiff (${why})` : null);
}
