/**
 * The library as a user gets it: `npm pack` the package, unpack the tarball into a temporary
 * folder's node_modules/mimetic (its dependencies linked from this checkout's node_modules, so
 * nothing is downloaded), and run the README's "Library" examples there, importing `mimetic` by name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { tempDirs } from './helpers/tmpdir.js';
import { requires } from './helpers/requires.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const tmp = tempDirs('mimetic-package-');
// A checkout has what this needs; the GPU bundle (make bundle) has no README, npm or typescript.
const inCheckout = ['README.md', 'checkpoints/examples/mamba1-tiny', 'node_modules/typescript'].every((p) => fs.existsSync(path.join(ROOT, p))) && spawnSync('npm', ['--version']).status === 0;

/** The ```js blocks of the README's "## Library" section. */
function libraryExamples(): string[] {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Library\n');
  assert.ok(start >= 0, 'README has a "## Library" section');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** A folder with node_modules/mimetic unpacked from `npm pack`'s tarball. */
function installPacked(): { dir: string; files: string[] } {
  const dir = tmp();
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const info = JSON.parse(out) as { filename: string; files: { path: string }[] }[];
  const tgz = path.join(dir, path.basename(info[0]!.filename));
  const pkg = path.join(dir, 'node_modules', 'mimetic');
  fs.mkdirSync(pkg, { recursive: true });
  execFileSync('tar', ['-xzf', tgz, '-C', pkg, '--strip-components=1']);
  for (const e of fs.readdirSync(path.join(ROOT, 'node_modules'))) {
    if (e.startsWith('.') || e === 'mimetic') continue;
    fs.symlinkSync(path.join(ROOT, 'node_modules', e), path.join(dir, 'node_modules', e));
  }
  fs.symlinkSync(path.join(ROOT, 'checkpoints'), path.join(dir, 'checkpoints'));
  return { dir, files: info[0]!.files.map((f) => f.path) };
}

const run = (dir: string, file: string, code: string) => {
  fs.writeFileSync(path.join(dir, file), code);
  return execFileSync(process.execPath, [file], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
};

test('the packed package imports by name and runs the README examples', requires(inCheckout, 'a checkout with npm (README.md, checkpoints/examples, node_modules/typescript)', 'run it in a checkout after npm ci, not the GPU bundle'), async () => {
  const examples = libraryExamples();
  assert.equal(examples.length, 2, 'two examples in the Library section');
  const { dir, files } = installPacked();
  for (const f of ['package.json', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/main.js']) assert.ok(files.includes(f), `the tarball holds ${f}`);
  assert.ok(!files.some((f) => f.startsWith('dist/test/') || f.startsWith('src/') || f.startsWith('test/')), 'the tarball holds the built library only');
  assert.ok(!fs.existsSync(path.join(dir, 'node_modules', 'mimetic', 'node_modules')));

  // 1: forward, scores, report. The scores must be what the CLI prints (its own option parsing and probe).
  const out1 = run(dir, 'example1.mjs', examples[0]!);
  assert.match(out1, /^logits \[ 1, 6, 64 \] attention \[ 1, 6, 6 \]$/m);
  const cli = JSON.parse(execFileSync(process.execPath, [path.join(ROOT, 'dist/src/cli/main.js'), 'score', path.join(ROOT, 'checkpoints/examples/mamba1-tiny'), '--backend', 'wasm', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as {
    layers: { layer: number; mimetic: number; rank: number }[];
    reference: { default: { mimetic: number }; mimetic: { mimetic: number } };
  };
  for (const l of cli.layers) assert.match(out1, new RegExp(`^layer ${l.layer}: mimetic ${l.mimetic.toFixed(4)}, rank ${l.rank}$`, 'm'));
  assert.match(out1, new RegExp(`^ref default ${cli.reference.default.mimetic.toFixed(4)}, ref mimetic ${cli.reference.mimetic.mimetic.toFixed(4)}$`, 'm'));
  const report = JSON.parse(fs.readFileSync(path.join(dir, 'reports/example/report.json'), 'utf8')) as { scores: { mimetic: number }[]; layers: unknown[] };
  assert.deepEqual(report.scores.map((s) => s.mimetic), cli.layers.map((l) => l.mimetic));
  assert.equal(report.layers.length, 2);
  assert.ok(fs.statSync(path.join(dir, 'reports/example/index.html')).size > 0);

  // 2: init, transplant, train. Both target layers hold the source layer 0's SSM; the run finished.
  const out2 = run(dir, 'example2.mjs', examples[1]!);
  assert.match(out2, /^finished after 40 steps, loss \d+\.\d{3}$/m);
  const src = Checkpoint.open(path.join(ROOT, 'checkpoints/examples/mamba1-tiny'));
  const moved = Checkpoint.open(path.join(dir, 'runs/example/transplanted'));
  try {
    for (const t of [0, 1]) assert.deepEqual(moved.read(`backbone.layers.${t}.mixer.A_log`).data, src.read('backbone.layers.0.mixer.A_log').data);
    assert.deepEqual((moved.rawConfig.mimetic as { transplant: { target: number; layer: number }[] }).transplant.map((r) => [r.target, r.layer]), [[0, 0], [1, 0]]);
  } finally {
    src.close();
    moved.close();
  }
  assert.ok(fs.existsSync(path.join(dir, 'runs/example/copy/run.json')));

  // The types come with it (package.json "types"): a TypeScript user's code checks, and a wrong use fails.
  const use = "import { openCheckpoint, scoreCheckpoint, type ScoreResult } from 'mimetic';\nconst m = await openCheckpoint('checkpoints/examples/mamba1-tiny');\nconst r: ScoreResult = await scoreCheckpoint(m, { reference: false });\n";
  fs.writeFileSync(path.join(dir, 'package.json'), '{"type": "module"}');
  fs.writeFileSync(path.join(dir, 'good.ts'), use + 'const x: number = r.layers[0]!.mimetic;\nconsole.log(x);\n');
  fs.writeFileSync(path.join(dir, 'bad.ts'), use + 'const x: string = r.layers[0]!.mimetic;\nconsole.log(x);\n');
  let errors = '';
  try {
    execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', 'good.ts', 'bad.ts'], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    errors = String((e as { stdout?: string }).stdout);
  }
  assert.deepEqual(errors.trim().split('\n').map((l) => l.replace(/:.*/, '')), ['bad.ts(4,7)'], errors);
  assert.match(errors, /error TS2322: Type 'number' is not assignable to type 'string'/);
});
