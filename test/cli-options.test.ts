/**
 * The command line's conventions (issue 12): --n-layers for counts and --layers for indices,
 * --batch-size (with --batch kept), the Hub options on every command that takes a Hub id,
 * `mimetic --version`, commander's own errors as one `mimetic:` line, old sweep keys, and a lone
 * .safetensors file without config.json.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { readRunConfig } from '../src/train/trainer.js';
import { parseSweepConfig, trainArgs } from '../src/train/sweep.js';
import { checkTrainOptions, register as registerTrain } from '../src/cli/train.js';
import { Command } from 'commander';
import { tempDirs } from './helpers/tmpdir.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const FIX = path.join(ROOT, 'test', 'fixtures');
const tmp = tempDirs('mimetic-options-');

/** The CLI with the developer's HF settings removed and HOME pointed at `home`. */
function cli(args: string[], home = tmp(), cwd = ROOT): { status: number | null; stdout: string; stderr: string } {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HF_') && !k.startsWith('HUGGING')) env[k] = v;
  env.HOME = home;
  delete env.XDG_CACHE_HOME;
  env.HF_ENDPOINT = 'http://127.0.0.1:9'; // nothing listens: a test never reaches the real Hub
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, timeout: 120_000, cwd });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function oneLine(r: { status: number | null; stderr: string }, re: RegExp): void {
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^mimetic: [^\n]+\n$/, r.stderr);
  assert.match(r.stderr, re);
}

const TINY_TRAIN = ['train', '--task', 'copy', '--alphabet', '3', '--min-len', '1', '--max-len', '2', '--context', '8', '--d-model', '8', '--d-state', '2',
  '--steps', '1', '--eval-every', '1', '--eval-examples', '1', '--backend', 'cpu', '--quiet'];

test('mimetic --version prints package.json\'s version', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const r = cli(['--version']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `${pkg.version}\n`);
});

test("commander's own errors are one mimetic: line, exit 2, with the nearest option or command", () => {
  oneLine(cli(['train', '--batchsize', '4']), /^mimetic: unknown option '--batchsize' \(did you mean --batch-size\?\); see mimetic train --help$/m);
  oneLine(cli(['score', 'x', '--ofline']), /unknown option '--ofline' \(did you mean --offline\?\); see mimetic score --help/);
  oneLine(cli(['scor', 'x']), /unknown command 'scor' \(did you mean score\?\)/);
  oneLine(cli(['score']), /missing required argument 'checkpoint'; see mimetic score --help/);
  oneLine(cli(['forward', 'x', '--ids']), /option '--ids <file>' argument missing/);
});

test('--n-layers is the layer count of init and train; --layers N there is a one-line hint, nothing written', () => {
  const dir = tmp();
  for (const cmd of [['init', '--out', path.join(dir, 'a')], [...TINY_TRAIN, '--out', path.join(dir, 'b')]]) {
    oneLine(cli([...cmd, '--layers', '3']), /--layers 3: (init|train) takes the number of layers as --n-layers 3; --layers names layer indices/);
  }
  assert.deepEqual(fs.readdirSync(dir), []);
  const r = cli(['init', '--n-layers', '3', '--d-model', '8', '--d-state', '2', '--vocab', '8', '--out', path.join(dir, 'c')]);
  assert.equal(r.status, 0, r.stderr);
  const ck = Checkpoint.open(path.join(dir, 'c'));
  assert.equal(ck.config.numLayers, 3);
  ck.close();
  assert.doesNotMatch(cli(['init', '--help']).stdout, /--layers/, '--layers is hidden from init --help');
});

test('train: --batch-size sets the rows per step; --batch is its old name; both at once is an error', () => {
  const dir = tmp();
  for (const [flag, n] of [['--batch-size', 3], ['--batch', 5]] as const) {
    const out = path.join(dir, flag.slice(2));
    const r = cli([...TINY_TRAIN, '--n-layers', '1', flag, String(n), '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readRunConfig(out).batch, n);
  }
  oneLine(cli([...TINY_TRAIN, '--batch', '2', '--batch-size', '2', '--out', path.join(dir, 'x')]), /--batch is the old name of --batch-size/);
  assert.ok(!fs.existsSync(path.join(dir, 'x')));
});

test('score and report: --batch-size shapes the probe (--batch still accepted)', () => {
  const fx = path.join(FIX, 'mamba1-tiny');
  const a = cli(['score', fx, '--json', '--seq-len', '8', '--batch-size', '3', '--backend', 'cpu', '--no-reference']);
  const b = cli(['score', fx, '--json', '--seq-len', '8', '--batch', '3', '--backend', 'cpu', '--no-reference']);
  assert.equal(a.status, 0, a.stderr);
  const pa = (JSON.parse(a.stdout) as { probe: { ids: number[][] } }).probe;
  assert.equal(pa.ids.length, 3);
  assert.deepEqual((JSON.parse(b.stdout) as { probe: unknown }).probe, pa);
});

test('every command that takes a Hub id has --revision, --offline, --token and --cache-dir, and uses them', () => {
  const cache = tmp();
  const wants = (r: ReturnType<typeof cli>, rev = 'main') => oneLine(r, new RegExp(`tiny/none@${rev}: not in the cache at ${cache.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(offline\\)`));
  const hub = ['--offline', '--cache-dir', cache];
  const out = tmp();
  const ids = path.join(tmp(), 'ids.json');
  fs.writeFileSync(ids, '[[1, 2, 3]]');
  const runs: string[][] = [
    ['inspect', 'tiny/none', ...hub],
    ['pull', 'tiny/none', ...hub],
    ['score', 'tiny/none', ...hub],
    ['report', 'tiny/none', '--out', path.join(out, 'r'), ...hub],
    ['forward', 'tiny/none', '--ids', ids, '--out', path.join(out, 'f.safetensors'), ...hub],
    ['transplant', '--from', 'tiny/none', '--layers', '0', '--out', path.join(out, 't'), ...hub],
    ['train', '--task', 'copy', '--model', 'tiny/none', '--out', path.join(out, 'm'), ...hub],
  ];
  for (const args of runs) {
    wants(cli(args));
    wants(cli([...args, '--revision', 'v2']), 'v2');
    const help = cli([args[0]!, '--help']).stdout;
    for (const o of ['--revision <rev>', '--offline', '--token <token>', '--cache-dir <dir>']) assert.ok(help.includes(o), `${args[0]} --help lacks ${o}`);
  }
  assert.deepEqual(fs.readdirSync(out), [], 'nothing written');
  oneLine(cli(['score', path.join(FIX, 'mamba1-tiny'), '--revision', 'v2']), /--revision v2: .* is a local path, not a Hub id/);
  oneLine(cli(['inspect', 'tiny/none@v1', '--revision', 'v2', ...hub]), /names revision v1 but --revision says v2/);
  oneLine(cli(['train', ...TINY_TRAIN.slice(1), '--revision', 'v2', '--out', path.join(out, 'z')]), /--revision goes with --model/);
});

test('the Hub cache defaults to ~/.cache/huggingface/hub: a model downloaded by Python tools is found offline', () => {
  const home = tmp();
  const repo = path.join(home, '.cache', 'huggingface', 'hub', 'models--tiny--mamba1');
  const commit = 'a'.repeat(40);
  const snap = path.join(repo, 'snapshots', commit);
  fs.mkdirSync(path.join(repo, 'blobs'), { recursive: true });
  fs.mkdirSync(snap, { recursive: true });
  fs.mkdirSync(path.join(repo, 'refs'));
  fs.writeFileSync(path.join(repo, 'refs', 'main'), commit);
  // huggingface_hub's layout: snapshot files are relative links into blobs/.
  for (const [f, blob] of [['config.json', 'b'.repeat(40)], ['model.safetensors', 'c'.repeat(64)]] as const) {
    fs.copyFileSync(path.join(FIX, 'mamba1-tiny', f), path.join(repo, 'blobs', blob));
    fs.symlinkSync(path.join('..', '..', 'blobs', blob), path.join(snap, f));
  }
  const r = cli(['inspect', 'tiny/mamba1', '--offline', '--json'], home);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { numLayers: number }).numLayers, 2);
  // ./checkpoints is no longer the cache: the bundled examples live there, and what init/transplant/train write.
  oneLine(cli(['inspect', 'tiny/mamba1', '--offline', '--cache-dir', path.join(ROOT, 'checkpoints')], home), /not in the cache at .*checkpoints \(offline\)/);
});

test('sweep configs with the old keys layers and batch run as --n-layers and --batch-size', async () => {
  const p = new Command();
  registerTrain(p);
  const known = new Set(p.commands[0]!.options.map((o) => o.attributeName()));
  const file = path.join(ROOT, 'experiments', 'copy-mamba1-2k.json');
  const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as { base: Record<string, unknown> };
  assert.equal(raw.base.layers, 4);
  const cfg = parseSweepConfig(raw, file, known);
  assert.equal(cfg.base.nLayers, 4);
  assert.equal(cfg.base.batchSize, 32);
  assert.ok(!('layers' in cfg.base) && !('batch' in cfg.base));
  const args = trainArgs(cfg.base);
  assert.deepEqual(args.slice(args.indexOf('--n-layers'), args.indexOf('--n-layers') + 2), ['--n-layers', '4']);
  assert.deepEqual(args.slice(args.indexOf('--batch-size'), args.indexOf('--batch-size') + 2), ['--batch-size', '32']);
  await checkTrainOptions({ ...cfg.base, init: 'mimetic', lr: 0.001, seed: 0 } as Record<string, string | number>);
  assert.throws(() => parseSweepConfig({ ...raw, base: { ...raw.base, nLayers: 2 } }, file, known), /given twice/);
});

test('a lone .safetensors file: the configuration comes from the shapes (as its config.json says), and is said; a truncated one says truncated', () => {
  for (const name of ['mamba1-tiny', 'mamba2-tiny']) {
    const dir = tmp();
    const lone = path.join(dir, 'weights.safetensors');
    fs.copyFileSync(path.join(FIX, name, 'model.safetensors'), lone);
    const withConfig = Checkpoint.open(path.join(FIX, name));
    const alone = Checkpoint.open(lone);
    assert.deepEqual(alone.config, withConfig.config, name);
    withConfig.close();
    alone.close();
    const r = cli(['inspect', lone, '--json']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^mimetic: note: .*weights\.safetensors: no config\.json beside it; configuration inferred from the tensor shapes: Mamba-[12], 2 layers, hidden 32, .*transformers' defaults layer_norm_epsilon/);
    assert.equal(r.stderr.split('\n').length, 2, 'one line');
    const j = JSON.parse(r.stdout) as { configInferred?: string };
    assert.match(j.configInferred ?? '', /inferred from the tensor shapes/);
    const bytes = fs.readFileSync(lone);
    fs.writeFileSync(lone, bytes.subarray(0, bytes.length - 4096));
    oneLine(cli(['score', lone, '--backend', 'cpu']), /truncated/);
  }
});

test('init, transplant and train write into checkpoints/ when --out is not given', () => {
  const cwd = tmp();
  const a = cli(['init', '--n-layers', '1', '--d-model', '8', '--d-state', '2', '--vocab', '8', '--init', 'mimetic', '--seed', '3'], tmp(), cwd);
  assert.equal(a.status, 0, a.stderr);
  const made = path.join(cwd, 'checkpoints', 'mamba1-mimetic-1x8-seed3');
  assert.equal(a.stdout.split(':')[0], `wrote ${path.join('checkpoints', 'mamba1-mimetic-1x8-seed3')}`);
  Checkpoint.open(made).close();
  oneLine(cli(['init', '--n-layers', '1', '--d-model', '8', '--d-state', '2', '--vocab', '8', '--init', 'mimetic', '--seed', '3'], tmp(), cwd), /already exists/);
  const t = cli(['transplant', '--from', path.join(FIX, 'mamba1-tiny'), '--layers', '1'], tmp(), cwd);
  assert.equal(t.status, 0, t.stderr);
  const ck = Checkpoint.open(path.join(cwd, 'checkpoints', 'transplant-mamba1-tiny-L1'));
  assert.equal(ck.config.numLayers, 2);
  ck.close();
  const r = cli([...TINY_TRAIN, '--n-layers', '1', '--init', 'mimetic', '--seed', '4'], tmp(), cwd);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(readRunConfig(path.join(cwd, 'checkpoints', 'train-copy-mamba1-mimetic-seed4')).seed, 4);
});
