import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { tmpDir } from './helpers/synth-checkpoint.js';
import { safetensorsBytes, splitSafetensors } from './helpers/safetensors-bytes.js';

const ROOT = process.cwd();
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const FIX = path.join(ROOT, 'test', 'fixtures');

interface Run { code: number; stdout: string; stderr: string }

function inspect(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'inspect', ...args], { cwd: ROOT, env: { ...process.env, HF_HUB_OFFLINE: '1' } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** Run at most `n` CLI processes at once (each loads the whole CLI). */
async function pool<T, R>(items: T[], n: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

test('inspect --json prints exactly the documented keys, with values from the fixtures', async () => {
  const [m1, m2, m1file] = await pool([
    [path.join(FIX, 'mamba1-tiny-bf16'), '--json'],
    [path.join(FIX, 'mamba2-tiny-sharded'), '--json'],
    [path.join(FIX, 'mamba1-tiny', 'model.safetensors'), '--json'],
  ], 3, inspect);
  for (const r of [m1!, m2!, m1file!]) assert.equal(r.code, 0, r.stderr);
  const j1 = JSON.parse(m1!.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(j1), ['arch', 'numLayers', 'hiddenSize', 'intermediateSize', 'stateSize', 'convKernel', 'timeStepRank', 'vocabSize', 'tiedEmbeddings', 'useBias', 'useConvBias', 'dtypes', 'parameters', 'files']);
  assert.deepEqual(j1, {
    arch: 'mamba1', numLayers: 2, hiddenSize: 32, intermediateSize: 64, stateSize: 8, convKernel: 4, timeStepRank: 2,
    vocabSize: 64, tiedEmbeddings: true, useBias: false, useConvBias: true, dtypes: { BF16: 22 }, parameters: 18912,
    files: [{ name: 'model.safetensors', bytes: fs.statSync(path.join(FIX, 'mamba1-tiny-bf16', 'model.safetensors')).size }],
  });
  const j2 = JSON.parse(m2!.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(j2), ['arch', 'numLayers', 'hiddenSize', 'intermediateSize', 'stateSize', 'convKernel', 'numHeads', 'headDim', 'nGroups', 'vocabSize', 'tiedEmbeddings', 'useBias', 'useConvBias', 'dtypes', 'parameters', 'files']);
  // total_parameters as transformers wrote it in the index.
  const index = JSON.parse(fs.readFileSync(path.join(FIX, 'mamba2-tiny-sharded', 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_parameters: number } };
  assert.equal(j2.parameters, index.metadata.total_parameters);
  assert.deepEqual([j2.numHeads, j2.headDim, j2.nGroups, j2.stateSize], [8, 8, 1, 16]);
  assert.deepEqual((j2.files as { name: string }[]).map((f) => f.name), [1, 2, 3, 4].map((i) => `model-0000${i}-of-00004.safetensors`));
  assert.equal(JSON.parse(m1file!.stdout).parameters, 18912);
});

test('inspect prints a readable summary', async () => {
  const r = await inspect([path.join(FIX, 'mamba2-tiny')]);
  assert.equal(r.code, 0, r.stderr);
  for (const re of [/architecture\s+Mamba-2/, /layers\s+2\n/, /hidden size\s+32\n/, /d_inner\s+64\n/, /state size\s+16\n/, /conv kernel\s+4\n/, /heads\s+8 × head dim 8/, /groups\s+1\n/, /vocabulary\s+64\n/, /tied to the embedding/, /F32 × 20/, /parameters\s+18,128/, /model\.safetensors\s+74\.4 kB \(74424 bytes\)/]) {
    assert.match(r.stdout, re);
  }
  assert.equal(r.stderr, '');
});

/** A copy of mamba1-tiny whose model.safetensors is replaced; returns the folder. */
function corrupt(root: string, name: string, bytes: Uint8Array, config?: string): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), config ?? fs.readFileSync(path.join(FIX, 'mamba1-tiny', 'config.json')));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), bytes);
  return dir;
}

test('inspect: bad input gives one line on stderr, exit 2, no stack trace, nothing written', async () => {
  const root = tmpDir('cli-bad');
  const good = fs.readFileSync(path.join(FIX, 'mamba1-tiny', 'model.safetensors'));
  const { header, data } = splitSafetensors(good);
  const withHeader = (edit: (h: Record<string, Record<string, unknown>>) => void) => {
    const h = structuredClone(header) as Record<string, Record<string, unknown>>;
    edit(h);
    return safetensorsBytes(h, data);
  };
  const A = 'backbone.layers.0.mixer.A_log';
  const cfg = JSON.parse(fs.readFileSync(path.join(FIX, 'mamba1-tiny', 'config.json'), 'utf8')) as Record<string, unknown>;
  const cases: [string, string, RegExp][] = [
    ['truncated', corrupt(root, 'truncated', good.subarray(0, good.length - 1000)), /truncated or corrupt/],
    ['header length past end', corrupt(root, 'hlen', safetensorsBytes(Buffer.from(good.subarray(8, 8 + 2136)).toString(), data, 10n ** 7n)), /header length 10000000 runs past the end/],
    ['non-JSON header', corrupt(root, 'nonjson', safetensorsBytes('{"a": tru}', data)), /header is not valid UTF-8 JSON/],
    ['non-object header', corrupt(root, 'nonobj', safetensorsBytes('[1,2,3]', data)), /header is not a JSON object/],
    ['unknown dtype', corrupt(root, 'dtype', withHeader((h) => { h[A]!.dtype = 'F8_E4M3'; })), /tensor 'backbone.layers.0.mixer.A_log': unknown dtype "F8_E4M3"/],
    ['offsets out of bounds', corrupt(root, 'oob', withHeader((h) => { h['backbone.norm_f.weight']!.data_offsets = [75520, 99999]; })), /'backbone.norm_f.weight': data_offsets \[75520, 99999\] out of bounds/],
    ['overlapping', corrupt(root, 'overlap', withHeader((h) => { h['backbone.layers.0.mixer.D']!.data_offsets = [8192, 8448]; })), /data overlaps tensor/],
    ['size mismatch', corrupt(root, 'size', withHeader((h) => { h[A]!.shape = [64, 9]; })), /'backbone.layers.0.mixer.A_log': holds 2048 bytes but shape \[64, 9\] of F32 needs 2304/],
    ['unknown architecture', corrupt(root, 'arch', good, JSON.stringify({ ...cfg, model_type: 'rwkv', architectures: ['RwkvForCausalLM'] })), /unknown architecture \(model_type "rwkv"/],
    ['missing layers', corrupt(root, 'layers', good, JSON.stringify({ ...cfg, num_hidden_layers: 4 })), /config says 4 layers but the checkpoint has layers 0-1/],
    ['non-existent path', path.join(root, 'does', 'not', 'exist'), /no such file or folder/],
  ];
  // Without config.json the shapes give the configuration; a truncated lone file is still truncated.
  const noConfig = corrupt(root, 'noconfig', good.subarray(0, good.length - 1000));
  fs.rmSync(path.join(noConfig, 'config.json'));
  cases.push(['truncated, no config.json', path.join(noConfig, 'model.safetensors'), /truncated or corrupt/]);
  const escape = path.join(root, 'escape');
  fs.cpSync(path.join(FIX, 'mamba2-tiny-sharded'), escape, { recursive: true });
  const idxPath = path.join(escape, 'model.safetensors.index.json');
  const idx = JSON.parse(fs.readFileSync(idxPath, 'utf8')) as { weight_map: Record<string, string> };
  idx.weight_map['backbone.norm_f.weight'] = '../escape/model-00004-of-00004.safetensors';
  fs.writeFileSync(idxPath, JSON.stringify(idx));
  cases.push(['shard path escaping the folder', escape, /shard name "\.\.\/escape\/model-00004-of-00004\.safetensors" is not a plain file name inside the checkpoint folder/]);

  const listing = () => execFileList(root);
  const before = listing();
  const runs = await pool(cases, 3, ([, arg]) => inspect([arg]));
  runs.forEach((r, i) => {
    const [what, , re] = cases[i]!;
    assert.equal(r.code, 2, `${what}: exit ${r.code}, stderr ${r.stderr}`);
    assert.equal(r.stdout, '', `${what}: printed to stdout`);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `${what}: stderr is not one line:\n${r.stderr}`);
    assert.ok(lines[0]!.startsWith('mimetic: '), `${what}: ${lines[0]}`);
    assert.ok(!/^\s+at /m.test(r.stderr), `${what}: stack trace`);
    assert.match(lines[0]!, re, what);
  });
  assert.deepEqual(listing(), before, 'inspect wrote or removed files');
  fs.rmSync(root, { recursive: true });
});

test('inspect --debug adds the stack trace to a user error', async () => {
  const r = await inspect([path.join(FIX, 'nope'), '--debug']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^mimetic: .*no such file or folder/);
  assert.match(r.stderr, /\n\s+at /);
});

/** Every path under `root` with its size and mtime. */
function execFileList(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else { const s = fs.statSync(p); out.push(`${p} ${s.size} ${s.mtimeMs}`); }
    }
  };
  walk(root);
  return out.sort();
}

test('inspect shows the provenance that init and transplant record in config.json, without control characters', async () => {
  const dir = tmpDir('inspect-prov-');
  try {
    const fresh = path.join(dir, 'fresh'), tp = path.join(dir, 'tp');
    const run = (args: string[]) => new Promise<void>((resolve, reject) => execFile(process.execPath, [CLI, ...args], (err) => (err ? reject(err) : resolve())));
    await run(['init', '--arch', 'mamba1', '--d-model', '32', '--d-state', '8', '--vocab', '64', '--init', 'mimetic', '--mimetic', 'a,conv', '--a-scale', '4', '--seed', '7', '--out', fresh]);
    await run(['transplant', '--from', path.join(FIX, 'mamba1-tiny'), '--layers', '1', '--into', fresh, '--out', tp]);
    const t = await inspect([tp]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /\ninit +mimetic \(a,conv, c=4\), seed 7\n/);
    assert.match(t.stdout, new RegExp(`\\ntransplant +layer 0 ← layer 1 of ${path.join(FIX, 'mamba1-tiny').replace(/[/.]/g, '\\$&')} \\(mixer\\)\\n`));
    const j = JSON.parse((await inspect([tp, '--json'])).stdout) as { provenance: { init: string; transplant: unknown[] } };
    assert.equal(j.provenance.init, 'mimetic');
    assert.deepEqual(j.provenance.transplant, [0, 1].map((target) => ({ target, source: path.join(FIX, 'mamba1-tiny'), layer: 1, parts: 'mixer' })));
    // A hand-edited record: outside text is printed without its control characters.
    const cfgFile = path.join(tp, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as { mimetic: { transplant: { source: string }[] } };
    cfg.mimetic.transplant[0]!.source = 'evil\u001b[31mred';
    fs.writeFileSync(cfgFile, JSON.stringify(cfg));
    const e = await inspect([tp]);
    assert.match(e.stdout, /of evil\?\[31mred \(mixer\)/);
    assert.ok(!e.stdout.includes('\u001b'));
    const plain = await inspect([path.join(FIX, 'mamba1-tiny')]);
    assert.doesNotMatch(plain.stdout, /\n(init|transplant|trained) /, 'nothing recorded, nothing shown');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
