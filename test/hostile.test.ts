/**
 * Hostile input (issue 12): checkpoints, files and environments built to break mimetic. Each one must
 * end in one `mimetic:` line and exit 2, with nothing written, no hang and no large allocation.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFile, spawnSync } from 'node:child_process';
import { tempDirs } from './helpers/tmpdir.js';
import { synthConfig, synthTensors, writeSynthCheckpoint, type SynthSpec } from './helpers/synth-checkpoint.js';
import { STRICT, requires } from './helpers/requires.js';
import { cleanStaleTemporaries, writeDirAtomic, writeFileAtomic, writeFileAtomicWith } from '../src/util/atomic.js';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { SafetensorsReader, parseHeader, writeCheckpointWeights } from '../src/checkpoint/safetensors.js';
import { cbIdentityPair, cbRowCosPair, lookbehind, rankLayers } from '../src/analysis/scores.js';
import { writeRawSafetensors } from './helpers/safetensors-bytes.js';
import { isUserError } from '../src/util/errors.js';
import { freshConfig, type ModelShape } from '../src/model/init.js';

const ROOT = process.cwd();
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const tmp = tempDirs('mimetic-hostile-');

interface Run { code: number; stdout: string; stderr: string }

/** Run the CLI; a hang is a failure (the limit is far above what any of these needs). */
function cli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; maxOldSpaceMb?: number } = {}): Promise<Run> {
  const node = opts.maxOldSpaceMb ? [`--max-old-space-size=${opts.maxOldSpaceMb}`] : [];
  return new Promise((resolve) => {
    execFile(process.execPath, [...node, CLI, ...args], { cwd: opts.cwd ?? ROOT, timeout: 60_000, maxBuffer: 1 << 24, env: { ...process.env, HF_HUB_OFFLINE: '1', ...opts.env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** The project's error form: exactly one line, `mimetic: …`, exit 2. */
function assertOneLine(r: Run, pattern: RegExp): void {
  assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l && !l.startsWith('mimetic: note:') && !l.startsWith('mimetic: warning:'));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^mimetic: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /internal error|    at /);
}

const TINY: SynthSpec = { arch: 'mamba1', numLayers: 1, hidden: 8, dInner: 16, state: 4, conv: 4, dtRank: 1, vocab: 16 };

test('zero-sized dimensions and huge claims: inspect, score, forward, transplant refuse them; init caps its options', async () => {
  const dir = tmp();
  // intermediate_size 0: every tensor that uses the state size has zero bytes, so the file (a few KB) can claim 2^40.
  const bogus = path.join(dir, 'bogus');
  writeSynthCheckpoint(bogus, { ...TINY, dInner: 0, state: 2 ** 40, configPatch: { intermediate_size: 0, state_size: 2 ** 40 } });
  assert.ok(fs.statSync(path.join(bogus, 'model.safetensors')).size < 20_000);
  const ids = path.join(dir, 'ids.json');
  fs.writeFileSync(ids, '[[1,2,3,4]]');
  const runs = await Promise.all([
    cli(['inspect', bogus]),
    cli(['score', bogus, '--backend', 'cpu', '--seq-len', '8'], { maxOldSpaceMb: 512 }),
    cli(['forward', bogus, '--ids', ids, '--out', path.join(dir, 'f.safetensors'), '--backend', 'cpu'], { maxOldSpaceMb: 512 }),
    cli(['transplant', '--from', bogus, '--layers', '0', '--out', path.join(dir, 't')], { maxOldSpaceMb: 512 }),
  ]);
  for (const r of runs) assertOneLine(r, /intermediate_size is 0; every Mamba dimension must be at least 1/);
  assert.ok(!fs.existsSync(path.join(dir, 'f.safetensors')) && !fs.existsSync(path.join(dir, 't')));

  // Each zero dimension named: vocab, hidden, conv kernel; a state past the limit.
  const zeros: [string, Partial<SynthSpec>, RegExp][] = [
    ['vocab', { vocab: 0, configPatch: { vocab_size: 0 } }, /vocab_size is 0/],
    ['hidden', { hidden: 0, configPatch: { hidden_size: 0 } }, /hidden_size is 0/],
    ['conv', { conv: 0, configPatch: { conv_kernel: 0 } }, /conv_kernel is 0/],
    ['state', { state: 5000, configPatch: { state_size: 5000 } }, /state_size is 5000, above mimetic's limit of 4096/],
  ];
  for (const [name, patch, msg] of zeros) {
    const d = path.join(dir, name);
    writeSynthCheckpoint(d, { ...TINY, ...patch });
    assert.throws(() => Checkpoint.open(d), (e: Error) => isUserError(e) && msg.test(e.message));
  }

  // init: a dimension past its limit, or a product of dimensions worth GBs, is refused before allocating.
  const shape: ModelShape = { arch: 'mamba1', numLayers: 2, hiddenSize: 8, stateSize: 4, convKernel: 4, vocabSize: 16 };
  const refuses = (s: Partial<ModelShape>, msg: RegExp) => assert.throws(() => freshConfig({ ...shape, ...s }), (e: Error) => isUserError(e) && msg.test(e.message));
  refuses({ stateSize: 100_000 }, /--d-state is 100000, above mimetic's limit of 4096/);
  refuses({ vocabSize: 0 }, /--vocab/);
  refuses({ convKernel: 0 }, /--conv-kernel/);
  refuses({ hiddenSize: 20_000, numLayers: 4 }, /billion parameters .* choose smaller dimensions/);
  assertOneLine(await cli(['init', '--d-model', '20000', '--n-layers', '4', '--out', path.join(dir, 'i2')], { maxOldSpaceMb: 256 }), /billion parameters/);
  assert.ok(!fs.existsSync(path.join(dir, 'i2')));
});

test('a shape nested 3 million deep, ids nested 100 000 deep and a row of 2 million ids: one line each, exit 2', async () => {
  const dir = tmp();
  const depth = 3_000_000;
  const file = path.join(dir, 'deep.safetensors');
  writeRawSafetensors(file, `{"a":{"dtype":"F32","shape":${'['.repeat(depth)}${']'.repeat(depth)},"data_offsets":[0,0]}}`);
  assert.throws(() => SafetensorsReader.open(file), (e: Error) => isUserError(e) && /tensor 'a': shape \[\[…\]\] is not a list of non-negative integers/.test(e.message));
  // The same for every other value a message quotes: a dtype, data_offsets, an architecture.
  assert.throws(() => parseHeader('h', Buffer.from(`{"a":{"dtype":${'['.repeat(200_000)}${']'.repeat(200_000)}}}`), 8, 8), /unknown dtype \[\[…\]\]/);

  const ckpt = path.join(dir, 'ckpt');
  writeSynthCheckpoint(ckpt, TINY);
  const deepIds = path.join(dir, 'deep-ids.json');
  fs.writeFileSync(deepIds, `[[${'['.repeat(100_000)}${']'.repeat(100_000)}]]`);
  const longRow = path.join(dir, 'long-row.json');
  fs.writeFileSync(longRow, `[[${'1,'.repeat(2_000_000)}1]]`);
  const probe = path.join(dir, 'probe.json');
  fs.writeFileSync(probe, `{"ids": [[${'1,'.repeat(2_000_000)}1]]}`);
  const out = path.join(dir, 'f.safetensors');
  const [deep, long, score, seqLen] = await Promise.all([
    cli(['forward', ckpt, '--ids', deepIds, '--out', out, '--backend', 'cpu']),
    cli(['forward', ckpt, '--ids', longRow, '--out', out, '--backend', 'cpu'], { maxOldSpaceMb: 512 }),
    cli(['score', ckpt, '--probe', probe, '--backend', 'cpu'], { maxOldSpaceMb: 512 }),
    cli(['score', ckpt, '--seq-len', '2000000', '--backend', 'cpu'], { maxOldSpaceMb: 512 }),
  ]);
  assertOneLine(deep, /deep-ids\.json: token ids: id \[\[…\]\] at row 0, position 0 is outside the vocabulary/);
  assertOneLine(long, /1 × 2000001 = 2000001 tokens, above mimetic's limit of 65536/);
  assertOneLine(score, /probe\.json: 1 × 2000001 = 2000001 tokens, above mimetic's limit/);
  assertOneLine(seqLen, /--seq-len 2000000: 4 × 2000000 = 8000000 tokens/);
  assert.ok(!fs.existsSync(out));
});

/** A tiny checkpoint whose layer 1 x_proj holds NaN (and, for `inf`, an Inf in its D). */
function nanCheckpoint(dir: string, spec: SynthSpec = { ...TINY, numLayers: 2 }): string {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = synthTensors(spec);
  for (const t of tensors) {
    if (t.name === 'backbone.layers.1.mixer.x_proj.weight') (t.data as Float32Array).fill(NaN);
    if (t.name === 'backbone.layers.1.mixer.D') (t.data as Float32Array)[0] = Infinity;
  }
  writeCheckpointWeights(dir, tensors);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(synthConfig(spec)));
  return dir;
}

test('NaN weights: the scores say NaN (not 0.000), the layer is unranked, and a warning names the tensors', async () => {
  // The `!(x > 0)` guards turned all-NaN weights into 0.
  const nan = new Float32Array(8).fill(NaN);
  assert.ok(Number.isNaN(cbIdentityPair(nan, nan, 2, 4)));
  assert.ok(Number.isNaN(cbRowCosPair(nan, nan, 2, 4)));
  const att = new Float32Array(4).fill(NaN);
  assert.ok(Number.isNaN(lookbehind(att, 1, 2, 1)!));
  const base = { cbIdentity: 0.5, cbRowCos: 0.5, maskOnes: 0.5, lookbehind: 0.5 };
  const ranked = rankLayers([{ layer: 0, ...base, mimetic: 0.2 }, { layer: 1, ...base, cbIdentity: NaN, mimetic: NaN }, { layer: 2, ...base, mimetic: 0.9 }]);
  assert.deepEqual(ranked.map((l) => l.rank), [2, null, 1]);

  const dir = nanCheckpoint(path.join(tmp(), 'nan'));
  const r = await cli(['score', dir, '--backend', 'cpu', '--seq-len', '16', '--batch-size', '1', '--no-reference']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /mimetic: warning: layer 1 scored NaN or Inf and is left out of the ranking: non-finite values in backbone\.layers\.1\.mixer\.D \(1 Inf\), backbone\.layers\.1\.mixer\.x_proj\.weight \(144 NaN\)/);
  const row = r.stdout.split('\n').find((l) => /^\s+—\s+1\s/.test(l));
  assert.ok(row, r.stdout);
  assert.match(row, /NaN/);
  assert.doesNotMatch(row, /0\.0000/);
  assert.match(r.stdout, /^\s+1\s+0\s/m);
});

test('train from a NaN checkpoint says the checkpoint holds non-finite values, not that the lr is too high', async () => {
  const dir = tmp();
  const ck = nanCheckpoint(path.join(dir, 'nan'), { ...TINY, numLayers: 2, vocab: 32 });
  const out = path.join(dir, 'run');
  const r = await cli(['train', '--task', 'copy', '--alphabet', '3', '--min-len', '1', '--max-len', '2', '--context', '8', '--model', ck,
    '--steps', '1', '--eval-every', '1', '--eval-examples', '1', '--backend', 'cpu', '--quiet', '--out', out]);
  assertOneLine(r, /nan: the checkpoint holds non-finite values \(NaN or Inf\) in backbone\.layers\.1\.mixer\.D, backbone\.layers\.1\.mixer\.x_proj\.weight; training cannot start from it/);
  assert.doesNotMatch(r.stderr, /--lr/);
  assert.ok(!fs.existsSync(out));
});

/** Whether `unshare -rm` can mount a tmpfs here (a user namespace where we are root). */
function canMountTmpfs(): boolean {
  const d = tmp();
  return spawnSync('unshare', ['-rm', 'sh', '-c', 'mount -t tmpfs -o size=64k mimetic-probe "$1"', 'sh', d], { stdio: 'ignore' }).status === 0;
}
const FULL_DISK = requires(canMountTmpfs(), 'unshare -rm with tmpfs mounts (a user namespace)', 'apt-get install util-linux, and allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)');

test('a full disk (ENOSPC) in init, report and the training checkpoint: one line naming the target, old outputs intact, no temporaries left', FULL_DISK, () => {
  const dir = tmp();
  const ckpt = path.join(dir, 'ckpt');
  writeSynthCheckpoint(ckpt, TINY);
  const mnt = path.join(dir, 'mnt');
  const res = path.join(dir, 'res');
  fs.mkdirSync(mnt);
  fs.mkdirSync(res);
  // Everything on the tmpfs must be checked inside the namespace: the mount goes with it.
  const script = String.raw`
    set -u
    M=$1; R=$2; NODE=$3; CLI=$4; CK=$5
    run() { name=$1; shift; "$NODE" "$CLI" "$@" >"$R/$name.out" 2>"$R/$name.err"; echo $? >"$R/$name.rc"; }
    fill() { avail=$(df --output=avail -k "$M" | tail -1); head -c $(( (avail - $1) * 1024 )) /dev/zero >>"$M/filler" 2>/dev/null || true; }
    mount -t tmpfs -o size=4m mimetic-full "$M" || exit 99
    run rep1 report "$CK" --backend cpu --seq-len 8 --no-reference --out "$M/rep"
    run train1 train --task copy --alphabet 3 --min-len 1 --max-len 2 --context 8 --n-layers 1 --d-model 32 --d-state 4 --steps 2 \
      --eval-every 1 --eval-examples 1 --checkpoint-every 1 --keep 2 --batch-size 2 --backend cpu --quiet --out "$M/run"
    # As if killed after step 1's checkpoint; the resumed run then finds room for its metrics but not for step 2's checkpoint.
    rm -r "$M/run/checkpoints/step-00000002"
    sha256sum "$M/rep/report.json" "$M/run/checkpoints/step-00000001/"* >"$R/before.sha"
    fill 16
    run train2 train --resume "$M/run" --backend cpu --quiet
    fill 0
    run init init --n-layers 1 --d-model 8 --out "$M/new"
    run rep2 report "$CK" --backend cpu --seq-len 8 --no-reference --out "$M/rep"
    sha256sum "$M/rep/report.json" "$M/run/checkpoints/step-00000001/"* >"$R/after.sha"
    (cd "$M" && find . -name '*tmp*' -o -name '*.old-*' -o -name new) >"$R/left"
  `;
  const r = spawnSync('unshare', ['-rm', 'sh', '-c', script, 'sh', mnt, res, process.execPath, CLI, ckpt], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const read = (f: string) => fs.readFileSync(path.join(res, f), 'utf8');
  const run = (name: string): Run => ({ code: Number(read(`${name}.rc`)), stdout: read(`${name}.out`), stderr: read(`${name}.err`) });
  assert.equal(run('rep1').code, 0, run('rep1').stderr);
  assert.equal(run('train1').code, 0, run('train1').stderr);
  const target = (p: string) => new RegExp(`^mimetic: ${path.join(mnt, p).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: no space left on the device \\(ENOSPC\\) while writing it; the partial copy was removed`);
  assertOneLine(run('train2'), target('run/checkpoints/step-00000002'));
  assertOneLine(run('init'), target('new'));
  assertOneLine(run('rep2'), target('rep'));
  assert.match(run('rep2').stderr, /and the previous version is unchanged; free some space and run again$/m);
  assert.doesNotMatch(run('init').stderr, /previous version/);
  assert.equal(read('after.sha'), read('before.sha'));
  assert.equal(read('left'), '');
});

test('EDQUOT is named like ENOSPC, from a file or a folder write', async () => {
  const dir = tmp();
  const quota = () => Object.assign(new Error('EDQUOT: disk quota exceeded, write'), { code: 'EDQUOT' });
  await assert.rejects(writeDirAtomic(path.join(dir, 'out'), () => { throw quota(); }),
    (e: Error) => isUserError(e) && e.message === `${path.join(dir, 'out')}: disk quota exceeded (EDQUOT) while writing it; the partial copy was removed; free some space and run again`);
  // From a file inside the folder being built: the folder is named, not its temporary name.
  await assert.rejects(writeDirAtomic(path.join(dir, 'out'), (t) => writeFileAtomicWith(path.join(t, 'x'), () => { throw quota(); })),
    (e: Error) => isUserError(e) && e.message.startsWith(`${path.join(dir, 'out')}: disk quota exceeded`));
  fs.writeFileSync(path.join(dir, 'f'), 'old');
  assert.throws(() => writeFileAtomicWith(path.join(dir, 'f'), () => { throw quota(); }), /f: disk quota exceeded \(EDQUOT\) while writing it; the partial copy was removed and the previous version is unchanged/);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['f']);
  assert.equal(fs.readFileSync(path.join(dir, 'f'), 'utf8'), 'old');
  // Other errors pass through as they are.
  assert.throws(() => writeFileAtomicWith(path.join(dir, 'f'), () => { throw new Error('boom'); }), /^Error: boom$/);
});

/** The pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

test('temporaries of killed writers are cleaned by the next write there: dead pids only; a moved-aside old copy comes back', async () => {
  const dir = tmp();
  const dead = deadPid();
  const mk = (name: string, isDir = true) => {
    const p = path.join(dir, name);
    if (isDir) { fs.mkdirSync(p); fs.writeFileSync(path.join(p, 'x'), 'x'); } else fs.writeFileSync(p, 'x');
    return name;
  };
  const stale = [mk(`.new.tmp-${dead}-mb1x2y-abc123`), mk(`.rep.tmp-${dead}-mb1x2y-def456`), mk(`.f.tmp-${dead}-mb1x2y-0a1b2c`, false)];
  const kept = [
    mk(`.new.tmp-${process.pid}-mb1x2y-abc123`), // a live writer (this process)
    mk(`.other.tmp-${dead}-mb1x2y-abc123`), // beside another target
    mk(`.new.tmp-notapid`),
  ];
  // A replace killed between its two renames: the old version is put back.
  mk(`.rep.old-${dead}-mb1x2y-aaaaaa`);
  cleanStaleTemporaries(path.join(dir, 'rep'));
  assert.equal(fs.readFileSync(path.join(dir, 'rep', 'x'), 'utf8'), 'x');
  writeFileAtomic(path.join(dir, 'f'), 'new');
  const ckpt = path.join(dir, 'ckpt');
  writeSynthCheckpoint(ckpt, TINY);
  const [init, rep] = await Promise.all([
    cli(['init', '--n-layers', '1', '--d-model', '8', '--out', path.join(dir, 'new')]),
    cli(['report', ckpt, '--backend', 'cpu', '--seq-len', '8', '--no-reference', '--force', '--out', path.join(dir, 'rep')]),
  ]);
  assert.equal(init.code, 0, init.stderr);
  assert.equal(rep.code, 0, rep.stderr);
  const left = fs.readdirSync(dir);
  for (const s of stale) assert.ok(!left.includes(s), `${s} left`);
  for (const k of kept) assert.ok(left.includes(k), `${k} removed`);
  assert.deepEqual(left.filter((n) => n.includes('.old-')), []);
});

test('a 98 MB header of empty entries is refused before it is parsed (it took 2.3 GB); commas inside strings do not count', async () => {
  const dir = tmp();
  const entry = (i: number) => `"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`;
  const parts: string[] = [];
  for (let i = 0, len = 0; len < 98_000_000; i++) { const e = entry(i); parts.push(e); len += e.length + 1; }
  const ckpt = path.join(dir, 'ckpt');
  fs.mkdirSync(ckpt);
  writeRawSafetensors(path.join(ckpt, 'model.safetensors'), `{${parts.join(',')}}`);
  parts.length = 0;
  fs.writeFileSync(path.join(ckpt, 'config.json'), JSON.stringify(synthConfig(TINY)));
  // 256 MB of heap: parsing that header needs several times more.
  assertOneLine(await cli(['inspect', ckpt], { maxOldSpaceMb: 256 }), /model\.safetensors: header holds more than 1048576 JSON values, more than 65536 tensors could need \(mimetic's limit per file\); the file is corrupt or hostile/);

  // Within the value budget but past the tensor count.
  const many = Array.from({ length: 70_000 }, (_, i) => entry(i)).join(',');
  assert.throws(() => parseHeader('h', Buffer.from(`{${many}}`), 8, 8), /h: header lists 70000 tensors, above mimetic's limit of 65536 per file/);
  // Commas, brackets and escaped quotes inside strings are text, not values.
  const text = `x\\",${',[{'.repeat(1_200_000)}`;
  const parsed = parseHeader('h', Buffer.from(`{"__metadata__":{"note":"${text}"},${entry(0)}}`), 8, 8);
  assert.equal(parsed.metadata.note!.length, 3 + 3 * 1_200_000);
  assert.deepEqual([...parsed.tensors.keys()], ['t0']);
  // Arrays nested past their own bound (an empty array each, which commas do not count).
  assert.throws(() => parseHeader('h', Buffer.from(`{"a":${'['.repeat(4_200_000)}${']'.repeat(4_200_000)}}`), 8, 8), /h: header holds more than 4194304 JSON arrays/);
});

test('files that are not what they seem: links out of the folder and FIFOs are refused with one line naming the file; cache links into blobs/ are read', async () => {
  const dir = tmp();
  const outside = path.join(dir, 'outside');
  writeSynthCheckpoint(outside, TINY);
  // Valid JSON and a valid config, so only the link itself can be the reason for refusing it.
  fs.writeFileSync(path.join(outside, 'secret.json'), JSON.stringify({ ...synthConfig(TINY), secret: 'OUTSIDE-SECRET' }));
  const folder = (name: string, links: Record<string, string>, copy: string[] = []) => {
    const d = path.join(dir, name);
    fs.mkdirSync(d);
    for (const f of copy) fs.copyFileSync(path.join(outside, f), path.join(d, f));
    for (const [f, to] of Object.entries(links)) fs.symlinkSync(to, path.join(d, f));
    return d;
  };
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  const linkOut = (d: string, f: string, to: string) => new RegExp(`^mimetic: ${esc(path.join(d, f))}: is a symbolic link to ${esc(fs.realpathSync(to))}, outside the checkpoint folder; mimetic reads only files inside it \\(or in the Hugging Face cache's blobs/\\)`);

  const cfgOut = folder('cfg-out', { 'config.json': path.join(outside, 'secret.json') }, ['model.safetensors']);
  const weightsOut = folder('weights-out', { 'model.safetensors': path.join(outside, 'model.safetensors') }, ['config.json']);
  // A folder named blobs/ that is not a cache repo's does not count.
  fs.mkdirSync(path.join(dir, 'blobs'));
  fs.copyFileSync(path.join(outside, 'secret.json'), path.join(dir, 'blobs', 'abc'));
  const fakeBlobs = folder('fake-blobs', { 'config.json': path.join(dir, 'blobs', 'abc') }, ['model.safetensors']);
  const rep = path.join(dir, 'rep');
  const runs = await Promise.all([
    cli(['inspect', cfgOut]),
    cli(['report', cfgOut, '--backend', 'cpu', '--seq-len', '8', '--no-reference', '--out', rep]),
    cli(['inspect', weightsOut]),
    cli(['score', weightsOut, '--backend', 'cpu', '--seq-len', '8', '--no-reference']),
    cli(['inspect', fakeBlobs]),
  ]);
  assertOneLine(runs[0]!, linkOut(cfgOut, 'config.json', path.join(outside, 'secret.json')));
  assertOneLine(runs[1]!, linkOut(cfgOut, 'config.json', path.join(outside, 'secret.json')));
  assertOneLine(runs[2]!, linkOut(weightsOut, 'model.safetensors', path.join(outside, 'model.safetensors')));
  assertOneLine(runs[3]!, linkOut(weightsOut, 'model.safetensors', path.join(outside, 'model.safetensors')));
  assertOneLine(runs[4]!, linkOut(fakeBlobs, 'config.json', path.join(dir, 'blobs', 'abc')));
  for (const r of runs) assert.doesNotMatch(r.stdout + r.stderr, /OUTSIDE-SECRET/);
  assert.ok(!fs.existsSync(rep));

  // A shard of an index, linked out.
  const sharded = path.join(dir, 'sharded');
  fs.mkdirSync(sharded);
  const tensors = synthTensors(TINY);
  writeCheckpointWeights(sharded, tensors, { maxShardBytes: 2000 });
  fs.writeFileSync(path.join(sharded, 'config.json'), JSON.stringify(synthConfig(TINY)));
  const shard = fs.readdirSync(sharded).filter((f) => /^model-0+2-of/.test(f))[0]!;
  fs.renameSync(path.join(sharded, shard), path.join(outside, shard));
  fs.symlinkSync(path.join(outside, shard), path.join(sharded, shard));
  assert.throws(() => Checkpoint.open(sharded), (e: Error) => isUserError(e) && e.message.startsWith(`${path.join(sharded, shard)}: is a symbolic link to ${path.join(outside, shard)}, outside`));

  // The Hugging Face cache's layout: snapshots/<commit>/<file> -> ../../blobs/<hash>; and a link inside the folder.
  const repo = path.join(dir, 'hub', 'models--org--tiny');
  const snap = path.join(repo, 'snapshots', 'a'.repeat(40));
  fs.mkdirSync(path.join(repo, 'blobs'), { recursive: true });
  fs.mkdirSync(snap, { recursive: true });
  for (const [f, blob] of [['config.json', 'c0ffee'], ['model.safetensors', 'beef00']]) {
    fs.copyFileSync(path.join(outside, f!), path.join(repo, 'blobs', blob!));
    fs.symlinkSync(path.join('..', '..', 'blobs', blob!), path.join(snap, f!));
  }
  const inner = folder('inner-link', { 'config.json': 'real-config.json' }, ['model.safetensors']);
  fs.copyFileSync(path.join(outside, 'config.json'), path.join(inner, 'real-config.json'));
  for (const d of [snap, inner]) {
    const r = await cli(['inspect', d]);
    assert.equal(r.code, 0, r.stderr);
  }

  // FIFOs: refused without opening them (a read would block forever); a hang fails the test.
  const fifos: [string, string][] = [];
  for (const f of ['config.json', 'model.safetensors', 'model.safetensors.index.json']) {
    const d = path.join(dir, `fifo-${f}`);
    writeSynthCheckpoint(d, TINY);
    fs.rmSync(path.join(d, f), { force: true });
    fifos.push([d, f]);
  }
  const lone = path.join(dir, 'lone.safetensors');
  const mkfifo = spawnSync('mkfifo', [...fifos.map(([d, f]) => path.join(d, f)), lone]);
  assert.equal(mkfifo.status, 0, String(mkfifo.stderr));
  const fifoRuns = await Promise.all([...fifos.map(([d]) => cli(['inspect', d])), cli(['inspect', lone])]);
  fifos.forEach(([d, f], i) => assertOneLine(fifoRuns[i]!, new RegExp(`^mimetic: ${esc(path.join(d, f))}: is a FIFO \\(named pipe\\), not a regular file`)));
  assertOneLine(fifoRuns[3]!, new RegExp(`^mimetic: ${esc(lone)}: is not a regular file or a folder`));
  // A link to nothing (a blob deleted from the cache) is named as such, not taken for a missing config.
  const dangling = folder('dangling', { 'config.json': path.join(dir, 'nowhere.json') }, ['model.safetensors']);
  assert.throws(() => Checkpoint.open(dangling), /config\.json: is a symbolic link to a file that does not exist/);
});

test('terminal injection: tensor names holding newlines and ANSI/OSC escapes print as one line without control characters', async () => {
  const dir = tmp();
  const evil = 'w\nmimetic: forged\u001b]0;owned\u0007\u001b[31m\u202e';
  const control = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e]/;
  const files = [
    writeRawSafetensors(path.join(dir, 'dtype.safetensors'), { [evil]: { dtype: 'Q9', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
    writeRawSafetensors(path.join(dir, 'short.safetensors'), { [evil]: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)),
  ];
  const runs = await Promise.all(files.map((f) => cli(['inspect', f])));
  for (const r of runs) {
    assertOneLine(r, /tensor 'w\?mimetic: forged\?\]0;owned\?\?\[31m\?': /);
    assert.doesNotMatch(r.stderr.replace(/\n$/, ''), control, JSON.stringify(r.stderr));
  }
});

test('NaN weights in report: the layer is unranked and NaN in the table and report.json, and a warning names the tensor', async () => {
  const dir = tmp();
  const ck = nanCheckpoint(path.join(dir, 'nan'));
  const out = path.join(dir, 'rep');
  const r = await cli(['report', ck, '--backend', 'cpu', '--seq-len', '16', '--batch-size', '1', '--no-reference', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^mimetic: warning: layer 1 scored NaN or Inf and is left out of the ranking: non-finite values in backbone\.layers\.1\.mixer\.D \(1 Inf\), backbone\.layers\.1\.mixer\.x_proj\.weight \(144 NaN\)/m);
  const j = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as { scores: { layer: number; rank: number | null; mimetic: unknown; cbIdentity: unknown }[]; nonFinite: string[] };
  assert.deepEqual(j.scores.map((s) => s.rank), [1, null]);
  assert.equal(j.scores[1]!.mimetic, 'NaN');
  assert.equal(j.scores[1]!.cbIdentity, 'NaN', 'not 0 from a !(x > 0) guard');
  assert.ok(j.nonFinite.some((s) => s.startsWith('backbone.layers.1.mixer.x_proj.weight')), JSON.stringify(j.nonFinite));
  const html = fs.readFileSync(path.join(out, 'index.html'), 'utf8');
  assert.match(html, /<tr><td class="n">—<\/td><td><a href="layer-01\.html">layer 1<\/a><\/td>(<td class="n">NaN<\/td>){5}<\/tr>/);
});
