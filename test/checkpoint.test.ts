import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Checkpoint, checkShardName } from '../src/checkpoint/checkpoint.js';
import { parseConfigJson } from '../src/checkpoint/config.js';
import { SafetensorsReader, writeCheckpointWeights, type WritableTensor } from '../src/checkpoint/safetensors.js';
import { bf16ToF32, f32ToBf16 } from '../src/checkpoint/dtypes.js';
import { UserError } from '../src/util/errors.js';
import { synthTensors, synthConfig, writeSynthCheckpoint, tmpDir, type SynthSpec } from './helpers/synth-checkpoint.js';

const FIX = path.join(process.cwd(), 'test', 'fixtures');
const fx = (name: string) => path.join(FIX, name);

test('fixtures: config and dimensions recognised from config.json and shapes', () => {
  for (const name of ['mamba1-tiny', 'mamba1-tiny-bf16']) {
    const c = Checkpoint.open(fx(name));
    assert.deepEqual(
      { arch: c.config.arch, L: c.config.numLayers, d: c.config.hiddenSize, di: c.config.intermediateSize, n: c.config.stateSize, k: c.config.convKernel, r: c.config.timeStepRank, v: c.config.vocabSize, tied: c.config.tiedEmbeddings, bias: c.config.useBias, convBias: c.config.useConvBias, layout: c.config.layout },
      { arch: 'mamba1', L: 2, d: 32, di: 64, n: 8, k: 4, r: 2, v: 64, tied: true, bias: false, convBias: true, layout: 'hf' },
    );
    assert.deepEqual(c.dtypes(), name.endsWith('bf16') ? { BF16: 22 } : { F32: 22 });
    c.close();
  }
  for (const name of ['mamba2-tiny', 'mamba2-tiny-sharded']) {
    const c = Checkpoint.open(fx(name));
    const cf = c.config;
    assert.deepEqual(
      { arch: cf.arch, L: cf.numLayers, d: cf.hiddenSize, di: cf.intermediateSize, n: cf.stateSize, H: cf.numHeads, P: cf.headDim, G: cf.nGroups, lim: cf.timeStepLimit, v: cf.vocabSize, tied: cf.tiedEmbeddings },
      { arch: 'mamba2', L: 2, d: 32, di: 64, n: 16, H: 8, P: 8, G: 1, lim: [0, Infinity], v: 64, tied: true },
    );
    // transformers wrote total_parameters into the sharded index: an independent count.
    assert.equal(c.parameterCount(), 18128);
    c.close();
  }
  const idx = JSON.parse(fs.readFileSync(fx('mamba2-tiny-sharded/model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number } };
  const s = Checkpoint.open(fx('mamba2-tiny-sharded'));
  assert.equal(s.files.length, 4);
  assert.equal(s.files.reduce((a, f) => a + f.bytes, 0) - s.files.length * 8 - s.files.reduce((a, f) => a + SafetensorsReader.open(path.join(s.dir, f.name)).headerSize, 0), idx.metadata.total_size);
  s.close();
});

test('fixtures: embedding and norm decode to transformers\' own first mixer input (RMSNorm of embedding rows)', () => {
  for (const name of ['mamba1-tiny', 'mamba1-tiny-bf16', 'mamba2-tiny', 'mamba2-tiny-sharded']) {
    const c = Checkpoint.open(fx(name));
    const g = SafetensorsReader.open(fx(`${name}/golden.safetensors`));
    const ids = g.read('input_ids').data as BigInt64Array;
    const x0 = g.readFloat32('layers.0.mixer_input').data;
    const emb = c.readEmbedding();
    const w = c.readLayer(0)['norm.weight']!.data;
    const d = c.config.hiddenSize;
    assert.deepEqual(emb.shape, [64, 32]);
    let worst = 0;
    for (let t = 0; t < ids.length; t++) {
      const row = emb.data.subarray(Number(ids[t]!) * d, (Number(ids[t]!) + 1) * d);
      const ms = row.reduce((a, v) => a + v * v, 0) / d;
      const scale = 1 / Math.sqrt(ms + c.config.layerNormEpsilon);
      for (let j = 0; j < d; j++) worst = Math.max(worst, Math.abs(row[j]! * scale * w[j]! - x0[t * d + j]!));
    }
    // float32 arithmetic in torch vs float64 here: agreement to ~1e-6, while a wrong decode is off by O(1).
    assert.ok(worst < 2e-5, `${name}: max |difference| ${worst}`);
    assert.deepEqual(c.readLmHead().data, emb.data);
    g.close();
    c.close();
  }
});

test('sharded fixture holds the same tensors as the single-file one; readLayer reads that layer only', () => {
  const a = Checkpoint.open(fx('mamba2-tiny'));
  const b = Checkpoint.open(fx('mamba2-tiny-sharded'));
  assert.deepEqual(a.names().sort(), b.names().sort());
  for (let i = 0; i < 2; i++) {
    const before = b.bytesRead();
    const la = a.readLayer(i);
    const lb = b.readLayer(i);
    // Layer 0 spans shards 1 and 2, layer 1 shards 3 and 4: still only its own bytes are read.
    assert.equal(b.bytesRead() - before, b.layerBytes(i));
    assert.deepEqual(Object.keys(lb).sort(), ['mixer.A_log', 'mixer.D', 'mixer.conv1d.bias', 'mixer.conv1d.weight', 'mixer.dt_bias', 'mixer.in_proj.weight', 'mixer.norm.weight', 'mixer.out_proj.weight', 'norm.weight']);
    for (const k of Object.keys(la)) {
      assert.deepEqual(lb[k]!.shape, la[k]!.shape);
      assert.deepEqual(lb[k]!.data, la[k]!.data, k);
    }
  }
  // Streaming over layers with reused buffers gives the same values as fresh reads.
  const l0 = b.readLayer(0);
  const bufs = new Set(Object.values(l0).map((t) => t.data.buffer));
  const l1 = b.readLayer(1, { into: l0 });
  const fresh = a.readLayer(1);
  for (const k of Object.keys(fresh)) {
    assert.deepEqual(l1[k]!.data, fresh[k]!.data, k);
    assert.ok(bufs.has(l1[k]!.data.buffer), `${k} was not read into the given buffer`);
  }
  assert.throws(() => b.readLayer(2), (e: unknown) => e instanceof UserError && /layer 2 is out of range: the model has layers 0-1/.test(e.message));
  a.close();
  b.close();
});

/** Write a synthetic checkpoint, open it, and check every tensor reads back as written. */
function roundTrip(spec: SynthSpec, check: (c: Checkpoint, tensors: WritableTensor[]) => void): void {
  const dir = tmpDir('ckpt');
  const tensors = writeSynthCheckpoint(dir, spec);
  const c = Checkpoint.open(dir);
  try {
    const round = (x: number) => (spec.dtype === 'BF16' ? bf16ToF32(f32ToBf16(x)) : x);
    const byName = new Map(tensors.map((t) => [t.name.replace('backbone.embedding.weight', 'backbone.embeddings.weight'), t]));
    for (let i = 0; i < c.config.numLayers; i++) {
      const layer = c.readLayer(i);
      const want = tensors.filter((t) => t.name.startsWith(`backbone.layers.${i}.`));
      assert.equal(Object.keys(layer).length, want.length);
      for (const t of want) {
        const got = layer[t.name.slice(`backbone.layers.${i}.`.length)]!;
        assert.deepEqual(got.shape, t.shape);
        const src = t.data as Float32Array;
        for (let j = 0; j < src.length; j++) assert.equal(got.data[j], round(src[j]!), `${t.name}[${j}]`);
      }
    }
    const emb = byName.get('backbone.embeddings.weight')!;
    assert.deepEqual(c.readEmbedding().data, (emb.data as Float32Array).map(round));
    check(c, tensors);
  } finally {
    c.close();
    fs.rmSync(dir, { recursive: true });
  }
}

const cfgOf = (c: Checkpoint) => c.config;

test('Falcon-Mamba: trusts intermediate_size and shapes over the misleading expand', () => {
  roundTrip({ arch: 'falcon_mamba', numLayers: 2, hidden: 16, dInner: 32, state: 4, conv: 4, dtRank: 3, vocab: 40, tied: false }, (c) => {
    assert.equal(cfgOf(c).arch, 'falcon_mamba');
    assert.equal(cfgOf(c).intermediateSize, 32); // config expand says 16 × 16 = 256
    assert.equal(cfgOf(c).mixerRmsEps, 1e-6);
    assert.equal(cfgOf(c).timeStepRank, 3);
    assert.equal(cfgOf(c).tiedEmbeddings, false);
    assert.notDeepEqual(c.readLmHead().data, c.readEmbedding().data);
  });
});

test('state-spaces Mamba-1: backbone.embedding.weight, d_model/n_layer/ssm_cfg, padded vocabulary, stored tied head', () => {
  roundTrip({ arch: 'mamba1', layout: 'state-spaces', numLayers: 3, hidden: 16, dInner: 32, state: 8, conv: 4, dtRank: 1, vocab: 50, paddedVocab: 56, storeTiedHead: true }, (c) => {
    const cf = cfgOf(c);
    assert.equal(cf.layout, 'state-spaces');
    assert.equal(cf.arch, 'mamba1');
    assert.deepEqual([cf.numLayers, cf.hiddenSize, cf.intermediateSize, cf.stateSize, cf.timeStepRank, cf.vocabSize, cf.configVocabSize], [3, 16, 32, 8, 1, 56, 50]);
    assert.equal(cf.tiedEmbeddings, true);
    assert.ok(c.has('backbone.embeddings.weight'));
    // The stored copy of a tied head counts once.
    const perLayer = 32 * 8 + 32 + 32 * 4 + 32 + 64 * 16 + (1 + 16) * 32 + 32 * 1 + 32 + 16 * 32 + 16;
    assert.equal(c.parameterCount(), 56 * 16 + 3 * perLayer + 16);
  });
});

test('state-spaces Mamba-2: ssm_cfg layer Mamba2 with headdim and 2 groups', () => {
  roundTrip({ arch: 'mamba2', layout: 'state-spaces', numLayers: 2, hidden: 16, dInner: 32, state: 8, conv: 4, numHeads: 4, nGroups: 2, vocab: 30, paddedVocab: 32 }, (c) => {
    const cf = cfgOf(c);
    assert.deepEqual([cf.arch, cf.layout, cf.numHeads, cf.headDim, cf.nGroups, cf.stateSize, cf.vocabSize, cf.configVocabSize], ['mamba2', 'state-spaces', 4, 8, 2, 8, 32, 30]);
  });
});

test('Mamba-2 with 8 groups (Mamba-Codestral shape), untied head, sharded BF16, bare Infinity in config', () => {
  const spec: SynthSpec = { arch: 'mamba2', numLayers: 3, hidden: 16, dInner: 32, state: 4, conv: 4, numHeads: 16, nGroups: 8, vocab: 48, tied: false, dtype: 'BF16', maxShardBytes: 4000 };
  const dir = tmpDir('codestral');
  // Older transformers configs carry Python's bare Infinity token.
  const text = JSON.stringify(synthConfig(spec), null, 2).replace(/\{\s*"__float__": "Infinity"\s*\}/, 'Infinity');
  assert.match(text, /"time_step_limit": \[\s*0,\s*Infinity\s*\]/);
  writeSynthCheckpoint(dir, spec, text);
  const c = Checkpoint.open(dir);
  const cf = c.config;
  assert.deepEqual([cf.numHeads, cf.headDim, cf.nGroups, cf.stateSize, cf.intermediateSize, cf.tiedEmbeddings, cf.timeStepLimit], [16, 2, 8, 4, 32, false, [0, Infinity]]);
  assert.ok(c.files.length > 2);
  assert.deepEqual(c.dtypes(), { BF16: 3 * 9 + 3 });
  c.close();
  // Without n_groups the state size fixes the groups; without either, n_groups would be a guess.
  const cfg = synthConfig(spec);
  delete cfg.n_groups;
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  const c2 = Checkpoint.open(dir);
  assert.equal(c2.config.nGroups, 8);
  c2.close();
  fs.rmSync(dir, { recursive: true });
  roundTrip(spec, (c3) => assert.equal(c3.config.nGroups, 8));
});

test('biases: use_bias adds in/out projection biases, use_conv_bias false drops the conv bias', () => {
  roundTrip({ arch: 'mamba1', numLayers: 2, hidden: 8, dInner: 16, state: 4, conv: 3, dtRank: 1, vocab: 10, bias: true, convBias: false }, (c) => {
    assert.equal(c.config.useBias, true);
    assert.equal(c.config.useConvBias, false);
    assert.equal(c.config.convKernel, 3);
    assert.deepEqual(c.readLayer(1)['mixer.in_proj.bias']!.shape, [32]);
    assert.equal(c.readLayer(1)['mixer.conv1d.bias'], undefined);
  });
  roundTrip({ arch: 'mamba2', numLayers: 1, hidden: 8, dInner: 16, state: 4, conv: 4, numHeads: 4, vocab: 10, bias: true }, (c) => {
    assert.equal(c.config.useBias, true);
    assert.deepEqual(c.readLayer(0)['mixer.out_proj.bias']!.shape, [8]);
  });
});

test('readLayer into reused buffers decodes BF16 (in-place widening, odd and even sizes) like a fresh read', () => {
  roundTrip({ arch: 'mamba1', numLayers: 3, hidden: 7, dInner: 15, state: 3, conv: 4, dtRank: 1, vocab: 11, dtype: 'BF16', bias: true }, (c) => {
    let prev = c.readLayer(0);
    for (let i = 1; i < 3; i++) {
      const fresh = c.readLayer(i);
      const reused = c.readLayer(i, { into: prev });
      for (const k of Object.keys(fresh)) assert.deepEqual(reused[k]!.data, fresh[k]!.data, `layer ${i} ${k}`);
      assert.equal(reused['mixer.A_log']!.data.buffer, prev['mixer.A_log']!.data.buffer);
      prev = reused;
    }
  });
});

test('a single .safetensors file path opens with the config beside it', () => {
  const c = Checkpoint.open(fx('mamba1-tiny/model.safetensors'));
  assert.equal(c.config.numLayers, 2);
  c.close();
});

// ---------------------------------------------------------------------------------------------
// Bad checkpoints: typed errors that say what, where and what to do.

function expectUserError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected UserError, got ${String(e)}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
}

const BASE: SynthSpec = { arch: 'mamba1', numLayers: 2, hidden: 8, dInner: 16, state: 4, conv: 4, dtRank: 1, vocab: 10 };

function badCheckpoint(spec: SynthSpec, edit: (tensors: WritableTensor[], cfg: Record<string, unknown>) => void): string {
  const dir = tmpDir('bad');
  const tensors = synthTensors(spec);
  const cfg = synthConfig(spec);
  edit(tensors, cfg);
  writeCheckpointWeights(dir, tensors);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  return dir;
}

test('config/shape mismatches name the tensor, the expected and the found shape', () => {
  const dirs: string[] = [];
  const bad = (spec: SynthSpec, edit: (t: WritableTensor[], c: Record<string, unknown>) => void) => {
    const d = badCheckpoint(spec, edit);
    dirs.push(d);
    return d;
  };
  const reshape = (name: string, shape: number[]) => (ts: WritableTensor[]) => {
    const t = ts.find((x) => x.name === name)!;
    t.shape = shape;
    t.data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  };
  expectUserError(() => Checkpoint.open(bad(BASE, (_t, c) => { c.hidden_size = 12; })), /config hidden_size = 12 but tensor 'backbone.embeddings.weight' has shape \[10, 8\]/);
  expectUserError(() => Checkpoint.open(bad(BASE, reshape('backbone.layers.1.mixer.x_proj.weight', [10, 16]))), /tensor 'backbone.layers.1.mixer.x_proj.weight' has shape \[10, 16\] but the config implies \[9, 16\]/);
  expectUserError(() => Checkpoint.open(bad(BASE, reshape('backbone.layers.0.mixer.A_log', [16, 5]))), /config state_size = 4 but tensor 'backbone.layers.0.mixer.A_log' has shape \[16, 5\]/);
  expectUserError(() => Checkpoint.open(bad(BASE, reshape('backbone.norm_f.weight', [9]))), /'backbone.norm_f.weight' has shape \[9\] but the config implies \[8\]/);
  expectUserError(() => Checkpoint.open(bad({ ...BASE, tied: false }, reshape('lm_head.weight', [11, 8]))), /'lm_head.weight' has shape \[11, 8\] but the config implies \[10, 8\]/);
  expectUserError(() => Checkpoint.open(bad(BASE, (_t, c) => { c.num_hidden_layers = 3; })), /config says 3 layers but the checkpoint has layers 0-1 \(tensor 'backbone.layers.2.mixer.A_log' is missing\)/);
  expectUserError(() => Checkpoint.open(bad(BASE, (t) => { t.splice(t.findIndex((x) => x.name === 'backbone.layers.1.mixer.D'), 1); })), /tensor 'backbone.layers.1.mixer.D' is missing/);
  expectUserError(() => Checkpoint.open(bad({ ...BASE, numLayers: 3 }, (t, c) => {
    c.num_hidden_layers = 2;
    for (let i = t.length - 1; i >= 0; i--) if (t[i]!.name.startsWith('backbone.layers.1.')) t.splice(i, 1);
  })), /layer 1 is missing/);
  expectUserError(() => Checkpoint.open(bad(BASE, (_t, c) => { c.use_bias = true; })), /config use_bias = true but tensor 'backbone.layers.0.mixer.in_proj.bias' is missing/);
  expectUserError(() => Checkpoint.open(bad(BASE, (_t, c) => { c.use_conv_bias = false; })), /config use_conv_bias = false but tensor 'backbone.layers.0.mixer.conv1d.bias' is present/);
  expectUserError(() => Checkpoint.open(bad(BASE, (_t, c) => { c.tie_word_embeddings = false; })), /tie_word_embeddings = false but tensor 'lm_head.weight' is missing/);
  expectUserError(() => Checkpoint.open(bad(BASE, (_t, c) => { c.vocab_size = 11; })), /config vocab_size = 11 but tensor 'backbone.embeddings.weight' has shape \[10, 8\]/);
  expectUserError(() => Checkpoint.open(bad({ arch: 'mamba2', numLayers: 1, hidden: 8, dInner: 16, state: 4, conv: 4, numHeads: 4, vocab: 10 }, (_t, c) => { c.n_groups = 3; })), /tensor 'backbone.layers.0.mixer.conv1d.weight' has shape \[24, 1, 4\] but the config implies \[16 \+ 2·3·state, 1, 4\]/);
  expectUserError(() => Checkpoint.open(bad({ arch: 'mamba2', numLayers: 1, hidden: 8, dInner: 16, state: 4, conv: 4, numHeads: 4, vocab: 10 }, (_t, c) => { c.head_dim = 8; })), /config head_dim = 8 but tensor 'backbone.layers.0.mixer.norm.weight' has shape \[16\] \(implies 4\)/);
  expectUserError(() => Checkpoint.open(bad(BASE, (_t, c) => { c.model_type = 'llama'; c.architectures = ['LlamaForCausalLM']; })), /unknown architecture \(model_type "llama"/);
  expectUserError(() => Checkpoint.open(bad({ ...BASE, layout: 'state-spaces' }, (_t, c) => { c.attn_layer_idx = [1]; })), /hybrid Mamba model/);
  for (const d of dirs) fs.rmSync(d, { recursive: true });
});

test('missing and hostile files: config.json, paths, shard names escaping the folder', () => {
  expectUserError(() => Checkpoint.open('/nonexistent/mimetic/ckpt'), /no such file or folder/);
  const dir = tmpDir('files');
  writeSynthCheckpoint(dir, { ...BASE, maxShardBytes: 800 });
  const withConfig = Checkpoint.open(dir);
  const stated = withConfig.config;
  withConfig.close();
  fs.rmSync(path.join(dir, 'config.json'));
  // No config.json: the shapes (and transformers' defaults) give the same configuration.
  const inferred = Checkpoint.open(dir);
  assert.deepEqual(inferred.config, stated);
  assert.match(inferred.inferred ?? '', /^configuration inferred from the tensor shapes/);
  inferred.close();
  fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "mamba",');
  expectUserError(() => Checkpoint.open(dir), /config\.json: not valid JSON/);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(synthConfig(BASE)));
  const idxPath = path.join(dir, 'model.safetensors.index.json');
  const idx = JSON.parse(fs.readFileSync(idxPath, 'utf8')) as { weight_map: Record<string, string> };
  const firstShard = idx.weight_map['backbone.norm_f.weight']!;
  for (const hostile of ['../model.safetensors', '/etc/passwd', 'sub/x.safetensors', '..', 'a\\b.safetensors', '']) {
    fs.writeFileSync(idxPath, JSON.stringify({ weight_map: { ...idx.weight_map, 'backbone.norm_f.weight': hostile } }));
    expectUserError(() => Checkpoint.open(dir), /is not a plain file name inside the checkpoint folder/);
  }
  expectUserError(() => checkShardName('i.json', 7), /not a plain file name/);
  assert.equal(checkShardName('i.json', 'model-00001-of-00002.safetensors'), 'model-00001-of-00002.safetensors');
  fs.writeFileSync(idxPath, JSON.stringify({ weight_map: { ...idx.weight_map, 'backbone.norm_f.weight': 'model-00099-of-00099.safetensors' } }));
  expectUserError(() => Checkpoint.open(dir), /model-00099-of-00099\.safetensors: shard named in model\.safetensors\.index\.json is missing/);
  const other = Object.values(idx.weight_map).find((f) => f !== firstShard)!;
  fs.writeFileSync(idxPath, JSON.stringify({ weight_map: { ...idx.weight_map, 'backbone.norm_f.weight': other } }));
  expectUserError(() => Checkpoint.open(dir), /tensor 'backbone.norm_f.weight' is mapped to .*, which does not contain it/);
  fs.writeFileSync(idxPath, JSON.stringify({ metadata: {} }));
  expectUserError(() => Checkpoint.open(dir), /no "weight_map" object/);
  fs.rmSync(idxPath);
  expectUserError(() => Checkpoint.open(dir), /no model\.safetensors or model\.safetensors\.index\.json found \(found \d+ \.safetensors files and no index\)/);
  fs.rmSync(dir, { recursive: true });
});

test('config JSON quirks: {"__float__": ...} and bare Infinity/NaN, but never inside strings', () => {
  const v = parseConfigJson('{"a": [0.0, Infinity], "b": -Infinity, "c": NaN, "d": {"__float__": "Infinity"}, "s": "NaN and Infinity \\" Infinity"}', 'x');
  assert.deepEqual(v.a, [0, Infinity]);
  assert.equal(v.b, -Infinity);
  assert.ok(Number.isNaN(v.c));
  assert.equal(v.d, Infinity);
  assert.equal(v.s, 'NaN and Infinity " Infinity');
  expectUserError(() => parseConfigJson('[1]', 'cfg.json'), /cfg\.json: not a JSON object/);
  expectUserError(() => parseConfigJson('{"a": Infinit}', 'cfg.json'), /cfg\.json: not valid JSON/);
});
