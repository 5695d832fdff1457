/** The differentiable Mamba language model (training, and inference with every weight in memory). */
import * as tf from '@tensorflow/tfjs';
import type { MambaConfig } from '../checkpoint/config.js';
import type { Checkpoint } from '../checkpoint/checkpoint.js';
import { UserError } from '../util/errors.js';
import { EMBEDDING, LM_HEAD, NORM_F, layerName, layerPrefix, loadWeights, parseLayerName, type LayerParams, type WeightMap } from './weights.js';
import { A_LOG_PARAM, aLogFromParam, aParamFromALog, block, linear, rmsNorm, type AParam } from './mamba.js';
import { fusedAvailable, rmsNormFused } from './kernels/fused-webgpu.js';

let modelCounter = 0;

export interface MambaLMOptions {
  aParam?: AParam;
  /** Variables trainable (default true). */
  trainable?: boolean;
}

export interface LMForward {
  logits: tf.Tensor3D;
  /**
   * transformers' (5.x) MambaModel hidden_states, as the fixtures hold them: i < numLayers is the
   * residual stream after layer i, and the last (index numLayers) is the output of norm_f.
   */
  hiddenStates: tf.Tensor3D[];
}

/** A Mamba language model whose weights are tf.Variables keyed by HF name. */
export class MambaLM {
  /** HF name (`backbone.layers.0.mixer.A_log`, or `…mixer.A_log_param` with aParam) → variable. */
  readonly variables = new Map<string, tf.Variable>();
  readonly aParam: AParam;
  private readonly layerCache: LayerParams[] = [];

  private constructor(readonly config: MambaConfig, aParam: AParam) {
    this.aParam = aParam;
  }

  /** Build from a config and a weight map by HF name (A_log as stored; converted when aParam is set). */
  static fromWeights(config: MambaConfig, weights: WeightMap, opts: MambaLMOptions = {}): MambaLM {
    const m = new MambaLM(config, opts.aParam);
    const id = modelCounter++;
    const trainable = opts.trainable ?? true;
    try {
      for (const [name, t] of Object.entries(weights)) {
        if (name === LM_HEAD && config.tiedEmbeddings) continue;
        let key = name;
        let data = t.data;
        const pl = parseLayerName(name);
        if (opts.aParam && pl?.short === 'mixer.A_log') {
          key = layerName(pl.layer, A_LOG_PARAM);
          data = aParamFromALog(t.data, opts.aParam.c);
        }
        const init = tf.tensor(data, t.shape, 'float32');
        m.variables.set(key, tf.variable(init, trainable, `mamba${id}/${key}`));
        init.dispose();
      }
      for (const need of [EMBEDDING, NORM_F, ...(config.tiedEmbeddings ? [] : [LM_HEAD])]) {
        if (!m.variables.has(need)) throw new UserError(`weights: '${need}' is missing; a ${config.arch} model needs it`);
      }
      for (let i = 0; i < config.numLayers; i++) {
        const p: LayerParams = {};
        const prefix = layerPrefix(i);
        for (const [k, v] of m.variables) if (k.startsWith(prefix)) p[k.slice(prefix.length)] = v;
        if (!p['norm.weight'] || !(p['mixer.A_log'] || p[A_LOG_PARAM])) throw new UserError(`weights: layer ${i} is incomplete (need norm.weight and mixer.A_log)`);
        m.layerCache.push(p);
      }
    } catch (e) {
      m.dispose();
      throw e;
    }
    return m;
  }

  /** Load every weight of a checkpoint (all in memory). */
  static fromCheckpoint(ckpt: Checkpoint, opts: MambaLMOptions = {}): MambaLM {
    return MambaLM.fromWeights(ckpt.config, loadWeights(ckpt), opts);
  }

  /** Layer i's parameters by short name. */
  layerParams(i: number): LayerParams {
    return this.layerCache[i]!;
  }

  trainableVariables(): tf.Variable[] {
    return [...this.variables.values()].filter((v) => v.trainable);
  }

  /** Logits [B, L, vocab] for int ids [B, L]; differentiable w.r.t. every variable. */
  logits(ids: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const f = this.forward(ids, { hiddenStates: false });
      return f.logits;
    });
  }

  /** Full forward with hidden states (and per-layer mixer internals on request, caller disposes). */
  forward(ids: tf.Tensor2D, opts: { hiddenStates?: boolean; inference?: boolean } = {}): LMForward {
    const keepHidden = opts.hiddenStates ?? true;
    // Inference (no gradients needed): the backend's fused kernels where it has them.
    const fused = (opts.inference ?? false) && fusedAvailable();
    const hidden: tf.Tensor3D[] = [];
    const logits = tf.tidy(() => {
      const emb = this.variables.get(EMBEDDING)!;
      let residual = tf.gather(emb, ids.toInt()) as unknown as tf.Tensor3D;
      for (let i = 0; i < this.config.numLayers; i++) {
        const r = block(this.config, this.layerParams(i), residual, { aParam: this.aParam, fused });
        residual = r.residual;
        if (keepHidden) hidden.push(tf.keep(residual.clone()));
      }
      const normed = (fused ? rmsNormFused(residual, this.variables.get(NORM_F), this.config.layerNormEpsilon) : rmsNorm(residual, this.variables.get(NORM_F), this.config.layerNormEpsilon)) as tf.Tensor3D;
      if (keepHidden) hidden.push(tf.keep(normed.clone()));
      const head = this.config.tiedEmbeddings ? emb : this.variables.get(LM_HEAD)!;
      return linear(normed, head);
    });
    return { logits, hiddenStates: hidden };
  }

  /** Every weight by standard HF name (A_log restored from A_log_param), as plain arrays for saving. */
  toWeights(): WeightMap {
    const out: WeightMap = {};
    for (const [k, v] of this.variables) this.putWeight(out, k, v, Float32Array.from(v.dataSync() as Float32Array));
    return out;
  }

  /** As toWeights, reading asynchronously (the WebGPU backend in Node cannot read synchronously). */
  async toWeightsAsync(): Promise<WeightMap> {
    const out: WeightMap = {};
    for (const [k, v] of this.variables) this.putWeight(out, k, v, Float32Array.from((await v.data()) as Float32Array));
    return out;
  }

  /** One variable's values (a copy) under its standard name: A_log_param back to A_log. */
  private putWeight(out: WeightMap, k: string, v: tf.Variable, data: Float32Array): void {
    const pl = parseLayerName(k);
    if (pl?.short === A_LOG_PARAM && this.aParam) out[layerName(pl.layer, 'mixer.A_log')] = { shape: v.shape.slice(), data: aLogFromParam(data, this.aParam.c) };
    else out[k] = { shape: v.shape.slice(), data };
  }

  dispose(): void {
    for (const v of this.variables.values()) v.dispose();
    this.variables.clear();
    this.layerCache.length = 0;
  }
}
