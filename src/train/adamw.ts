/**
 * AdamW (Loshchilov & Hutter), as torch.optim.AdamW computes it, with global-norm gradient
 * clipping folded in. The whole update is one function over all parameters so a backend can
 * later fuse it into a single kernel.
 *
 *   g ← g · min(1, maxNorm / (‖g‖ + 1e-6))           (torch.nn.utils.clip_grad_norm_)
 *   m ← β1·m + (1−β1)·g,   v ← β2·v + (1−β2)·g²
 *   p ← p·(1 − lr·wd) − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)   (wd only on decayed parameters)
 */
import * as tf from '@tensorflow/tfjs';

export interface AdamWHParams {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global gradient-norm clip (0 or Infinity: none). */
  clipNorm: number;
}

export const ADAMW_DEFAULTS: Omit<AdamWHParams, 'lr'> = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, clipNorm: 1.0 };

export interface AdamWState {
  /** Updates done so far. */
  step: number;
  m: Map<string, tf.Variable>;
  v: Map<string, tf.Variable>;
  /** Names that get weight decay. */
  decay: Set<string>;
}

/**
 * No weight decay on A_log (or its mimetic parameter), D, Δ biases, norms and biases, as in
 * mamba_ssm's training recipe; decay on the embedding and the projection / conv weights.
 */
export function decays(name: string): boolean {
  return !(/(?:^|\.)(?:A_log|A_log_param|D|dt_bias)$/.test(name) || /norm(?:_f)?\.weight$/.test(name) || name.endsWith('.bias'));
}

export function createAdamWState(params: Map<string, tf.Variable>): AdamWState {
  const m = new Map<string, tf.Variable>(), v = new Map<string, tf.Variable>();
  // Inside tidy so the zero tensors the variables are made from are freed (variables survive tidy).
  tf.tidy(() => {
    for (const [k, p] of params) {
      m.set(k, tf.variable(tf.zerosLike(p), false));
      v.set(k, tf.variable(tf.zerosLike(p), false));
    }
  });
  return { step: 0, m, v, decay: new Set([...params.keys()].filter(decays)) };
}

export function disposeAdamWState(s: AdamWState): void {
  for (const t of [...s.m.values(), ...s.v.values()]) t.dispose();
}

/**
 * Global L2 norm of the gradients (a scalar tensor). Summed pairwise in a fixed order rather than
 * with one addN: WebGPU caps storage buffers per shader (often 16), and addN binds one per input.
 */
export function globalNorm(grads: Map<string, tf.Tensor>): tf.Scalar {
  return tf.tidy(() => {
    let acc: tf.Tensor = tf.scalar(0);
    for (const g of grads.values()) acc = tf.add(acc, tf.sum(tf.square(g)));
    return tf.sqrt(acc) as tf.Scalar;
  });
}

/**
 * One AdamW step over every parameter that has a gradient. Returns the gradient norm before
 * clipping (a scalar tensor the caller disposes).
 */
export function adamwStep(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, state: AdamWState, hp: AdamWHParams): tf.Scalar {
  const norm = globalNorm(grads);
  state.step += 1;
  const t = state.step;
  const bc1 = 1 - Math.pow(hp.beta1, t);
  const bc2 = 1 - Math.pow(hp.beta2, t);
  tf.tidy(() => {
    const clip = hp.clipNorm > 0 && Number.isFinite(hp.clipNorm) ? tf.minimum(tf.div(hp.clipNorm, tf.add(norm, 1e-6)), 1) : tf.scalar(1);
    const stepSize = hp.lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    for (const [k, p] of params) {
      const g0 = grads.get(k);
      if (!g0) continue;
      const g = tf.mul(g0, clip);
      const m = state.m.get(k)!, v = state.v.get(k)!;
      const m1 = tf.add(tf.mul(m, hp.beta1), tf.mul(g, 1 - hp.beta1));
      const v1 = tf.add(tf.mul(v, hp.beta2), tf.mul(tf.square(g), 1 - hp.beta2));
      const denom = tf.add(tf.div(tf.sqrt(v1), sqrtBc2), hp.eps);
      const decayed = state.decay.has(k) && hp.weightDecay > 0 ? tf.mul(p, 1 - hp.lr * hp.weightDecay) : p;
      m.assign(m1);
      v.assign(v1);
      p.assign(tf.sub(decayed, tf.mul(tf.div(m1, denom), stepSize)));
    }
  });
  return norm;
}
