/**
 * `mimetic pull` and checkpoint resolution, against a fake Hub on 127.0.0.1 (helpers/fake-hub.ts)
 * serving the fixture checkpoints. Blob names are checked against `git hash-object` (an
 * independent implementation of the git blob hash) and node's sha256 of the fixture bytes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FakeHub, commitOf, sha256, type FakeRepo } from './helpers/fake-hub.js';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { pull, redact, resolveToken, hubEndpoint, PullInterrupted } from '../src/hub/client.js';
import { parseHubId, hubCacheDir, repoFolderName } from '../src/hub/cache.js';
import { resolveCheckpoint } from '../src/hub/resolve.js';
import { UserError } from '../src/util/errors.js';
import { Progress, formatBytes } from '../src/hub/progress.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const fixtures = path.join(root, 'test', 'fixtures');
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const TOKEN = 'hf_TestToken0123456789abcdefXYZ';
const WRONG = 'hf_WrongToken9876543210zyxwvuQRS';

function readDir(dir: string): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const f of fs.readdirSync(dir)) out[f] = fs.readFileSync(path.join(dir, f));
  return out;
}

const sharded = readDir(path.join(fixtures, 'mamba2-tiny-sharded'));
const mamba1 = readDir(path.join(fixtures, 'mamba1-tiny'));
// Files a real repo carries besides the weights; pull must never ask for them.
const extras = { 'README.md': Buffer.from('# tiny mamba\n'), 'pytorch_model.bin': Buffer.alloc(4096, 7) };
const SHARDS = Object.keys(sharded).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f)).sort();
const WANTED = ['config.json', 'model.safetensors.index.json', ...SHARDS].sort();

const repos: Record<string, FakeRepo> = {
  'tiny/mamba2-sharded': { revisions: { main: { ...sharded, ...extras }, 'v1.0': { ...readDir(path.join(fixtures, 'mamba2-tiny')) } } },
  'tiny/mamba1': { revisions: { main: { ...mamba1, ...extras } } },
  'tiny/private-mamba': { private: true, revisions: { main: { ...mamba1 } } },
  'tiny/pytorch-only': { revisions: { main: { 'config.json': mamba1['config.json']!, ...extras } } },
};

let hub: FakeHub;
let tmp: string;
let n = 0;

before(async () => {
  hub = await FakeHub.start({ repos, token: TOKEN, pageSize: 3 });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-hub-'));
});

after(async () => {
  await hub.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function freshDir(): string {
  const d = path.join(tmp, `c${n++}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** An environment without the developer's HF settings or token file. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HF_') && !k.startsWith('HUGGING')) env[k] = v;
  env.HOME = path.join(tmp, 'home');
  env.XDG_CACHE_HOME = path.join(tmp, 'home', '.cache');
  env.HF_ENDPOINT = hub.url;
  return { ...env, ...extra };
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], extra: Record<string, string> = {}, opts: { cwd?: string; onStart?: (p: ReturnType<typeof spawn>) => void } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [cli, ...args], { env: cleanEnv(extra), cwd: opts.cwd ?? root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`mimetic ${args.join(' ')} timed out; stderr: ${stderr}`));
    }, 60_000);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    opts.onStart?.(p);
  });
}

function fileSize(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return -1;
  }
}

/** Poll until cond() holds (bounded: 20 s). */
async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
}

function gitHashObject(file: string): string {
  return execFileSync('git', ['hash-object', '--no-filters', file], { encoding: 'utf8' }).trim();
}

/** Every file under dir (following nothing), for leak and leftover checks. */
function walk(dir: string): string[] {
  const out: string[] = [];
  if (!fs.existsSync(dir)) return out;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

function assertOneLineError(r: Run, pattern: RegExp): void {
  assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected, got: ${r.stderr}`);
  assert.match(lines[0]!, /^mimetic: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('pull lays out blobs/, snapshots/<sha>/ and refs/main like huggingface_hub, and the snapshot opens', async () => {
  const cacheDir = freshDir();
  const mark = hub.requests.length;
  const r = await runCli(['pull', 'tiny/mamba2-sharded', '--cache-dir', cacheDir]);
  assert.equal(r.code, 0, r.stderr);
  const commit = commitOf('tiny/mamba2-sharded', 'main');
  const repoDir = path.join(cacheDir, 'models--tiny--mamba2-sharded');
  const snap = path.join(repoDir, 'snapshots', commit);
  assert.equal(r.stdout.trim(), snap);
  assert.equal(fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8'), commit);
  assert.deepEqual(fs.readdirSync(snap).sort(), WANTED);
  for (const f of WANTED) {
    const src = path.join(fixtures, 'mamba2-tiny-sharded', f);
    // LFS files are named by sha256, small files by their git blob sha1 (what huggingface_hub does).
    const etag = f.endsWith('.safetensors') ? sha256(fs.readFileSync(src)) : gitHashObject(src);
    assert.equal(fs.readlinkSync(path.join(snap, f)), path.join('..', '..', 'blobs', etag), f);
    assert.deepEqual(fs.readFileSync(path.join(snap, f)), fs.readFileSync(src), f);
  }
  assert.deepEqual(fs.readdirSync(path.join(repoDir, 'blobs')).sort(), WANTED.map((f) => {
    const src = path.join(fixtures, 'mamba2-tiny-sharded', f);
    return f.endsWith('.safetensors') ? sha256(fs.readFileSync(src)) : gitHashObject(src);
  }).sort());
  // Only the wanted files were asked for; README.md, pytorch_model.bin and golden.safetensors never.
  for (const f of ['README.md', 'pytorch_model.bin', 'golden.safetensors']) assert.equal(hub.fileRequests(f).length, 0, f);
  const resolved = hub.requests.slice(mark).filter((q) => q.server === 'hub' && q.url.includes('/resolve/')).map((q) => decodeURIComponent(q.url.split('/').pop()!));
  assert.deepEqual([...new Set(resolved)].sort(), WANTED);
  // The listing was paginated (3 per page) and every page was read.
  assert.ok(hub.requests.slice(mark).filter((q) => q.url.includes('/tree/')).length >= 3);

  const ck = Checkpoint.open(snap);
  const ref = Checkpoint.open(path.join(fixtures, 'mamba2-tiny-sharded'));
  try {
    assert.equal(ck.config.arch, 'mamba2');
    assert.deepEqual(ck.names().sort(), ref.names().sort());
    for (const name of ['backbone.layers.1.mixer.A_log', 'backbone.embeddings.weight']) assert.deepEqual(ck.read(name).data, ref.read(name).data);
  } finally {
    ck.close();
    ref.close();
  }

  // A second pull finds everything cached: metadata only, no bytes.
  const mark2 = hub.requests.length;
  const again = await runCli(['pull', 'tiny/mamba2-sharded', '--cache-dir', cacheDir]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout.trim(), snap);
  assert.match(again.stderr, /already cached/);
  assert.equal(hub.requests.slice(mark2).filter((q) => q.server === 'cdn' || q.url.includes('/resolve/')).length, 0);
});

test('single-file repo: config.json and model.safetensors only; cache in ~/.cache/huggingface/hub by default (never ./checkpoints), HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE and HF_HOME honoured', async () => {
  const cwd = freshDir();
  const r = await runCli(['pull', 'tiny/mamba1'], { XDG_CACHE_HOME: '' }, { cwd });
  assert.equal(r.code, 0, r.stderr);
  const snap = path.join(tmp, 'home', '.cache', 'huggingface', 'hub', 'models--tiny--mamba1', 'snapshots', commitOf('tiny/mamba1', 'main'));
  assert.ok(!fs.existsSync(path.join(cwd, 'checkpoints')));
  assert.equal(r.stdout.trim(), snap);
  assert.deepEqual(fs.readdirSync(snap).sort(), ['config.json', 'model.safetensors']);
  const ck = Checkpoint.open(snap);
  assert.equal(ck.config.arch, 'mamba1');
  ck.close();

  const hubCache = freshDir();
  const r2 = await runCli(['pull', 'tiny/mamba1', '-q'], { HF_HUB_CACHE: hubCache, HF_HOME: freshDir() }, { cwd });
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(r2.stderr, '');
  assert.ok(r2.stdout.startsWith(path.join(hubCache, 'models--tiny--mamba1', 'snapshots')));

  const home = freshDir();
  const r3 = await runCli(['pull', 'tiny/mamba1', '-q'], { HF_HOME: home }, { cwd });
  assert.equal(r3.code, 0, r3.stderr);
  assert.ok(r3.stdout.startsWith(path.join(home, 'hub', 'models--tiny--mamba1', 'snapshots')));

  const old = freshDir();
  const r4 = await runCli(['pull', 'tiny/mamba1', '-q'], { HUGGINGFACE_HUB_CACHE: old, HF_HOME: freshDir() }, { cwd });
  assert.equal(r4.code, 0, r4.stderr);
  assert.ok(r4.stdout.startsWith(path.join(old, 'models--tiny--mamba1', 'snapshots')));
});

test('a dropped connection resumes with a Range request and ends with the right sha256', async () => {
  const cacheDir = freshDir();
  const shard = SHARDS[1]!;
  const data = sharded[shard]!;
  const at = Math.floor(data.length / 2);
  const part = path.join(cacheDir, 'models--tiny--mamba2-sharded', 'blobs', `${sha256(data)}.incomplete`);
  // Drop only once the client has the first bytes on disk (undici discards unread bytes on a reset).
  hub.faults = { dropOnce: { file: shard, at, before: () => waitFor(() => fileSize(part) === at) } };
  const mark = hub.requests.length;
  try {
    const res = await pull(parseHubId('tiny/mamba2-sharded')!, { cacheDir, endpoint: hub.url, progress: null, token: undefined });
    const cdn = hub.fileRequests(shard, mark).filter((q) => q.server === 'cdn');
    assert.equal(cdn.length, 2, 'one dropped transfer and one resumed');
    assert.equal(cdn[0]!.headers.range, undefined);
    const m = /^bytes=(\d+)-$/.exec(String(cdn[1]!.headers.range));
    assert.ok(m, `second request is a Range request: ${cdn[1]!.headers.range}`);
    assert.equal(Number(m[1]), at);
    const blob = path.join(cacheDir, 'models--tiny--mamba2-sharded', 'blobs', sha256(data));
    assert.equal(sha256(fs.readFileSync(blob)), sha256(data));
    assert.equal(res.files.find((f) => f.name === shard)!.fetched, data.length);
    assert.ok(!walk(cacheDir).some((f) => f.endsWith('.incomplete')));
  } finally {
    hub.faults = {};
  }
});

test('Ctrl-C stops the transfer, keeps .incomplete, leaves no snapshot, exits 130; the next pull resumes', async () => {
  const cacheDir = freshDir();
  const shard = SHARDS[2]!;
  const data = sharded[shard]!;
  const at = 10_000;
  const repoDir = path.join(cacheDir, 'models--tiny--mamba2-sharded');
  const part = path.join(repoDir, 'blobs', `${sha256(data)}.incomplete`);
  hub.faults = { stall: { file: shard, at } };
  let r: Run;
  try {
    r = await runCli(['pull', 'tiny/mamba2-sharded', '--cache-dir', cacheDir], {}, {
      onStart: (p) => {
        hub.onStall = () => void waitFor(() => fileSize(part) === at).then(() => p.kill('SIGINT'));
      },
    });
  } finally {
    hub.faults = {};
    hub.onStall = null;
  }
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /interrupted/);
  assert.ok(!fs.existsSync(path.join(repoDir, 'snapshots')), 'no snapshot');
  assert.ok(!fs.existsSync(path.join(repoDir, 'refs')), 'no ref');
  assert.equal(fs.statSync(part).size, at);
  assert.deepEqual(fs.readFileSync(part), data.subarray(0, at));

  const mark = hub.requests.length;
  const again = await runCli(['pull', 'tiny/mamba2-sharded', '--cache-dir', cacheDir]);
  assert.equal(again.code, 0, again.stderr);
  const cdn = hub.requests.slice(mark).filter((q) => q.server === 'cdn' && q.url.includes(sha256(data)));
  assert.deepEqual(cdn.map((q) => q.headers.range), [`bytes=${at}-`]);
  assert.deepEqual(fs.readFileSync(path.join(again.stdout.trim(), shard)), data);
  assert.ok(!fs.existsSync(part));
});

test('corrupted bytes are rejected with a clear error and nothing is placed in snapshots/', async () => {
  const cacheDir = freshDir();
  const shard = SHARDS[0]!;
  hub.faults = { corrupt: { file: shard } };
  let r: Run;
  try {
    r = await runCli(['pull', 'tiny/mamba2-sharded', '--cache-dir', cacheDir]);
  } finally {
    hub.faults = {};
  }
  assert.equal(r.code, 2, r.stderr);
  const last = r.stderr.trim().split('\n').pop()!;
  assert.match(last, new RegExp(`^mimetic: tiny/mamba2-sharded/${shard}: .*sha256 [0-9a-f]{64}.*corrupted`));
  assert.ok(last.includes(sha256(sharded[shard]!)), 'names the expected sha256');
  const repoDir = path.join(cacheDir, 'models--tiny--mamba2-sharded');
  assert.ok(!fs.existsSync(path.join(repoDir, 'snapshots')));
  assert.ok(!fs.existsSync(path.join(repoDir, 'blobs', sha256(sharded[shard]!))));
  assert.ok(!walk(cacheDir).some((f) => f.includes(sha256(sharded[shard]!))), 'no partial file kept for bad bytes');
});

test('the token is sent as Authorization: Bearer to the Hub only, and never appears in output or files', async () => {
  const cacheDir = freshDir();
  const mark = hub.requests.length;
  const r = await runCli(['pull', 'tiny/private-mamba', '--cache-dir', cacheDir], { HF_TOKEN: TOKEN });
  assert.equal(r.code, 0, r.stderr);
  const reqs = hub.requests.slice(mark);
  assert.ok(reqs.filter((q) => q.server === 'hub').length >= 4);
  for (const q of reqs.filter((q) => q.server === 'hub')) assert.equal(q.headers.authorization, `Bearer ${TOKEN}`, q.url);
  // The CDN is another origin: the token must not follow the redirect.
  assert.ok(reqs.some((q) => q.server === 'cdn'));
  for (const q of reqs.filter((q) => q.server === 'cdn')) assert.equal(q.headers.authorization, undefined);
  assert.ok(!(r.stdout + r.stderr).includes(TOKEN));
  for (const f of walk(cacheDir)) assert.ok(!fs.readFileSync(f).includes(TOKEN), f);

  // --token and the token file work too.
  const r2 = await runCli(['pull', 'tiny/private-mamba', '--cache-dir', freshDir(), '--token', TOKEN]);
  assert.equal(r2.code, 0, r2.stderr);
  const tokenFile = path.join(freshDir(), 'tok');
  fs.writeFileSync(tokenFile, `${TOKEN}\n`);
  const r3 = await runCli(['pull', 'tiny/private-mamba', '--cache-dir', freshDir()], { HF_TOKEN_PATH: tokenFile });
  assert.equal(r3.code, 0, r3.stderr);
  const hfHome = freshDir();
  fs.writeFileSync(path.join(hfHome, 'token'), TOKEN);
  const r4 = await runCli(['pull', 'tiny/private-mamba', '--cache-dir', freshDir()], { HF_HOME: hfHome });
  assert.equal(r4.code, 0, r4.stderr);
});

test('401 and 404 answers give one line without the token, even when the server echoes it', async () => {
  const noToken = await runCli(['pull', 'tiny/private-mamba', '--cache-dir', freshDir()]);
  assertOneLineError(noToken, /private.*(--token|HF_TOKEN)/);

  // The fake Hub echoes the Authorization header it got into its 401 body.
  const wrong = await runCli(['pull', 'tiny/private-mamba', '--cache-dir', freshDir()], { HF_TOKEN: WRONG });
  assertOneLineError(wrong, /rejected the token from HF_TOKEN \(401/);
  assert.ok(!wrong.stderr.includes(WRONG) && !wrong.stdout.includes(WRONG));
  assert.ok(!wrong.stderr.includes(WRONG.slice(3)), 'not even the token without its prefix');

  const missing = await runCli(['pull', 'tiny/no-such-model', '--cache-dir', freshDir(), '--token', TOKEN]);
  assertOneLineError(missing, /tiny\/no-such-model: no such repo on http:\/\/127\.0\.0\.1:\d+ \(404/);
  assert.ok(!missing.stderr.includes(TOKEN));

  // A file refused mid-pull (e.g. a revoked token), with the token echoed in the body.
  const cacheDir = freshDir();
  hub.faults = { status: { file: 'model.safetensors', code: 401 } };
  let midway: Run;
  try {
    midway = await runCli(['pull', 'tiny/private-mamba', '--cache-dir', cacheDir], { HF_TOKEN: TOKEN });
  } finally {
    hub.faults = {};
  }
  assert.equal(midway.code, 2);
  assert.match(midway.stderr.trim().split('\n').pop()!, /^mimetic: tiny\/private-mamba\/model\.safetensors: was refused with the token from HF_TOKEN \(401/);
  assert.ok(!midway.stderr.includes(TOKEN) && !midway.stdout.includes(TOKEN));
  assert.ok(!fs.existsSync(path.join(cacheDir, 'models--tiny--private-mamba', 'snapshots')));
  for (const f of walk(cacheDir)) assert.ok(!fs.readFileSync(f).includes(TOKEN), f);
});

test('a non-existent repo exits 2 with one line; a non-Hub-id too', async () => {
  assertOneLineError(await runCli(['pull', 'nobody/nothing', '--cache-dir', freshDir()]), /nobody\/nothing: no such repo/);
  assertOneLineError(await runCli(['pull', 'not-a-hub-id']), /not a Hub id/);
});

test('@revision resolves to its commit and writes refs/<revision>; a commit sha writes no ref; unknown revisions fail clearly', async () => {
  const cacheDir = freshDir();
  const r = await runCli(['pull', 'tiny/mamba2-sharded@v1.0', '--cache-dir', cacheDir]);
  assert.equal(r.code, 0, r.stderr);
  const commit = commitOf('tiny/mamba2-sharded', 'v1.0');
  const repoDir = path.join(cacheDir, 'models--tiny--mamba2-sharded');
  assert.equal(fs.readFileSync(path.join(repoDir, 'refs', 'v1.0'), 'utf8'), commit);
  assert.ok(!fs.existsSync(path.join(repoDir, 'refs', 'main')));
  assert.equal(r.stdout.trim(), path.join(repoDir, 'snapshots', commit));
  // v1.0 holds the unsharded model.
  assert.deepEqual(fs.readdirSync(r.stdout.trim()).sort(), ['config.json', 'model.safetensors']);

  const main = commitOf('tiny/mamba2-sharded', 'main');
  const bySha = await runCli(['pull', `tiny/mamba2-sharded@${main}`, '--cache-dir', cacheDir]);
  assert.equal(bySha.code, 0, bySha.stderr);
  assert.equal(bySha.stdout.trim(), path.join(repoDir, 'snapshots', main));
  assert.deepEqual(fs.readdirSync(path.join(repoDir, 'refs')), ['v1.0']);

  assertOneLineError(await runCli(['pull', 'tiny/mamba2-sharded@nope', '--cache-dir', cacheDir]), /revision 'nope' not found/);
});

test('offline mode reads the cache only and fails clearly when something is not cached', async () => {
  const cacheDir = freshDir();
  const online = await runCli(['pull', 'tiny/mamba1', '--cache-dir', cacheDir, '-q']);
  assert.equal(online.code, 0, online.stderr);
  const mark = hub.requests.length;
  const off = await runCli(['pull', 'tiny/mamba1', '--cache-dir', cacheDir, '--offline']);
  assert.equal(off.code, 0, off.stderr);
  assert.equal(off.stdout, online.stdout);
  const env = await runCli(['pull', 'tiny/mamba1', '-q'], { HF_HUB_OFFLINE: '1', HF_HUB_CACHE: cacheDir });
  assert.equal(env.stdout, online.stdout);
  assert.equal(hub.requests.length, mark, 'no request offline');

  assertOneLineError(await runCli(['pull', 'tiny/mamba2-sharded', '--cache-dir', cacheDir, '--offline']), /not in the cache .*offline/);
  assertOneLineError(await runCli(['pull', 'tiny/mamba1@v2', '--cache-dir', cacheDir, '--offline']), /tiny\/mamba1@v2: not in the cache/);
  // A blob deleted behind our back: the snapshot is incomplete.
  const blob = path.join(cacheDir, 'models--tiny--mamba1', 'blobs', sha256(mamba1['model.safetensors']!));
  fs.rmSync(blob);
  assertOneLineError(await runCli(['pull', 'tiny/mamba1', '--cache-dir', cacheDir, '--offline']), /lacks model\.safetensors/);
  assert.equal(hub.requests.length, mark);
  // Online again, the missing blob is fetched and relinked.
  const fixed = await runCli(['pull', 'tiny/mamba1', '--cache-dir', cacheDir]);
  assert.equal(fixed.code, 0, fixed.stderr);
  assert.deepEqual(fs.readFileSync(blob), mamba1['model.safetensors']);
});

test('an unreachable Hub falls back to a cached snapshot, and fails clearly without one', async () => {
  const cacheDir = freshDir();
  const ok = await runCli(['pull', 'tiny/mamba1', '--cache-dir', cacheDir, '-q']);
  assert.equal(ok.code, 0, ok.stderr);
  const dead = await FakeHub.start({ repos: {} });
  const deadUrl = dead.url;
  await dead.close();
  const r = await runCli(['pull', 'tiny/mamba1', '--cache-dir', cacheDir], { HF_ENDPOINT: deadUrl });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, ok.stdout);
  assert.match(r.stderr, /cannot connect .*using the cached snapshot/);
  assertOneLineError(await runCli(['pull', 'tiny/mamba2-sharded', '--cache-dir', cacheDir], { HF_ENDPOINT: deadUrl }), /cannot connect \(ECONNREFUSED\).*not in the cache/);
});

test('a repo without safetensors weights is refused before any download', async () => {
  const mark = hub.requests.length;
  assertOneLineError(await runCli(['pull', 'tiny/pytorch-only', '--cache-dir', freshDir()]), /no safetensors weights \(only pytorch_model\.bin\)/);
  assert.equal(hub.requests.slice(mark).filter((q) => q.url.includes('/resolve/')).length, 0);
});

test('resolveCheckpoint: local paths as is, Hub ids pulled or read from the cache, anything else a UserError', async () => {
  const local = path.join(fixtures, 'mamba1-tiny');
  assert.equal(await resolveCheckpoint(local), local);
  const file = path.join(local, 'model.safetensors');
  assert.equal(await resolveCheckpoint(file), file);
  await assert.rejects(resolveCheckpoint('./no/such/dir/here'), (e: unknown) => e instanceof UserError && /no such file or folder, and not a Hub id/.test((e as Error).message));
  await assert.rejects(resolveCheckpoint('nothing-here.safetensors'), UserError);

  const cacheDir = freshDir();
  const saved = process.env.HF_ENDPOINT;
  process.env.HF_ENDPOINT = hub.url;
  try {
    await assert.rejects(resolveCheckpoint('tiny/mamba1', { cacheDir, offline: true }), /not in the cache/);
    const dir = await resolveCheckpoint('tiny/mamba1', { cacheDir, quiet: true });
    assert.equal(dir, path.join(cacheDir, 'models--tiny--mamba1', 'snapshots', commitOf('tiny/mamba1', 'main')));
    assert.equal(await resolveCheckpoint('tiny/mamba1', { cacheDir, offline: true }), dir);
    const ck = Checkpoint.open(await resolveCheckpoint('tiny/mamba1@main', { cacheDir, offline: true }));
    assert.equal(ck.config.numLayers, 2);
    ck.close();
  } finally {
    if (saved === undefined) delete process.env.HF_ENDPOINT;
    else process.env.HF_ENDPOINT = saved;
  }
});

test('an aborted signal throws PullInterrupted (exit 130 in the CLI) and keeps no snapshot', async () => {
  const cacheDir = freshDir();
  const ctl = new AbortController();
  ctl.abort();
  await assert.rejects(pull(parseHubId('tiny/mamba1')!, { cacheDir, endpoint: hub.url, progress: null, signal: ctl.signal }), (e: unknown) => e instanceof PullInterrupted && e.exitCode === 130);
  assert.ok(!fs.existsSync(path.join(cacheDir, 'models--tiny--mamba1', 'snapshots')));
});

test('Hub ids, cache dirs, tokens and redaction', () => {
  assert.deepEqual(parseHubId('state-spaces/mamba-130m-hf'), { repo: 'state-spaces/mamba-130m-hf', revision: 'main', explicitRevision: false });
  assert.deepEqual(parseHubId('tiiuae/falcon-mamba-7b@refs/pr/1'), { repo: 'tiiuae/falcon-mamba-7b', revision: 'refs/pr/1', explicitRevision: true });
  for (const bad of ['mamba', 'a/b/c', './a/b', 'a/../b', '../a/b', 'a/b@', 'a/b@../x', 'a/b@x/../../y', '/a/b', 'a--x/b', 'a/b c']) assert.equal(parseHubId(bad), null, bad);
  assert.equal(repoFolderName('state-spaces/mamba-130m-hf'), 'models--state-spaces--mamba-130m-hf');

  const saved = { ...process.env };
  try {
    for (const k of Object.keys(process.env)) if (k.startsWith('HF_') || k.startsWith('HUGGING')) delete process.env[k];
    process.env.HOME = path.join(tmp, 'nohome');
    delete process.env.XDG_CACHE_HOME;
    assert.equal(hubCacheDir(), path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
    process.env.XDG_CACHE_HOME = path.join(tmp, 'nohome', '.xdg');
    assert.equal(hubCacheDir(), path.join(tmp, 'nohome', '.xdg', 'huggingface', 'hub'));
    process.env.HF_HOME = '/x/hf';
    assert.equal(hubCacheDir(), '/x/hf/hub');
    process.env.HUGGINGFACE_HUB_CACHE = '/z/old';
    assert.equal(hubCacheDir(), '/z/old');
    process.env.HF_HUB_CACHE = '/y/cache';
    assert.equal(hubCacheDir(), '/y/cache');
    assert.equal(hubCacheDir('rel'), path.resolve('rel'));

    delete process.env.HF_HOME;
    assert.equal(resolveToken(), null);
    process.env.HF_TOKEN = TOKEN;
    assert.deepEqual(resolveToken(), { token: TOKEN, source: 'HF_TOKEN' });
    assert.deepEqual(resolveToken(WRONG), { token: WRONG, source: '--token' });
    process.env.HF_TOKEN = 'not a token';
    assert.throws(() => resolveToken(), (e: unknown) => e instanceof UserError && !(e as Error).message.includes('not a token'));
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }

  const msg = `GET https://user:pw@huggingface.co/x?token=abc&X-Amz-Signature=sig failed: Authorization: Bearer ${TOKEN} / ${WRONG}`;
  const red = redact(msg, TOKEN);
  for (const secret of [TOKEN, WRONG, 'user:pw', 'token=abc', 'Signature=sig']) assert.ok(!red.includes(secret), `${secret} in ${red}`);
  assert.ok(red.startsWith('GET https://'));
});

test('progress: a redrawn bar with bytes and speed on a TTY, plain lines otherwise', () => {
  const ttyOut: string[] = [];
  const bar = new Progress({ write: (s: string) => ttyOut.push(s), isTTY: true, columns: 0 });
  bar.start('model.safetensors', 2_000_000, 0);
  bar.add(1_000_000);
  bar.finish();
  const drawn = ttyOut.join('');
  assert.match(drawn, /\r\x1b\[2Kmodel\.safetensors \[-+\]\s+0% 0 B\/2\.0 MB/);
  assert.match(drawn, /model\.safetensors: 2\.0 MB in [\d.]+ s \([\d.]+ [kMG]?B\/s\)\n$/);

  const plain: string[] = [];
  const lines = new Progress({ write: (s: string) => plain.push(s), isTTY: false });
  lines.start('model.safetensors', 2_000_000, 500_000);
  lines.add(1_500_000);
  lines.finish();
  assert.ok(plain.every((l) => !l.includes('\r') && l.endsWith('\n')));
  assert.match(plain[0]!, /^resuming model\.safetensors at 500 kB of 2\.0 MB\n$/);
  assert.match(plain.at(-1)!, /done model\.safetensors: 2\.0 MB in .* \([\d.]+ [kMG]?B\/s\)/);
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(4_900_000_000), '4.9 GB');
});

test('HF_ENDPOINT with a user name or password in the URL is refused before any request, without printing them', async () => {
  const mark = hub.requests.length;
  const u = new URL(hub.url);
  const withCreds = `http://alice:s3cr3tPass@${u.host}`;
  const r = await runCli(['pull', 'tiny/mamba1', '--cache-dir', freshDir()], { HF_ENDPOINT: withCreds });
  assertOneLineError(r, new RegExp(`^mimetic: HF_ENDPOINT: 'http://\\*\\*\\*@${u.host.replace(/\./g, '\\.')}' holds a user name or password; remove them from the URL and give the token with HF_TOKEN or --token$`));
  assert.ok(!(r.stdout + r.stderr).includes('s3cr3tPass') && !(r.stdout + r.stderr).includes('alice'));
  assert.equal(hub.requests.length, mark, 'no request reached the Hub');
  assert.throws(() => hubEndpoint('https://hf_abcdef123456@huggingface.co/'), (e: unknown) => e instanceof UserError && !(e as Error).message.includes('hf_abcdef'));
  assert.equal(hubEndpoint('https://huggingface.co/'), 'https://huggingface.co');
});

test('redaction removes the secret and keeps what follows it, the closing bracket included', async () => {
  assert.equal(redact(`header (Bearer ${TOKEN}) refused`), 'header (Bearer ***) refused');
  assert.equal(redact('header (Bearer abc.def-ghi) refused'), 'header (Bearer ***) refused');
  assert.equal(redact('url (https://cdn/x?X-Amz-Signature=sig123) failed'), 'url (https://cdn/x?X-Amz-Signature=***) failed');
  assert.equal(redact('[bearer zzz] {Bearer yyy} <Bearer xxx>'), '[bearer ***] {Bearer ***} <Bearer ***>');
  // Through the CLI: the fake Hub echoes the wrong token inside brackets.
  const wrong = await runCli(['pull', 'tiny/private-mamba', '--cache-dir', freshDir()], { HF_TOKEN: WRONG });
  assert.equal(wrong.code, 2, wrong.stderr);
  assert.match(wrong.stderr, /Authorization header \(Bearer \*\*\*\)/);
});

test("a failed download promises '.incomplete' only when that file exists", async () => {
  const shard = SHARDS[1]!;
  const data = sharded[shard]!;
  const env = { HF_HUB_DOWNLOAD_TIMEOUT: '2' };
  // Progress lines come first; the error is the last line, and the only mimetic: one.
  const lastLine = (r: Run, pattern: RegExp) => {
    assert.equal(r.code, 2, r.stderr);
    const errs = r.stderr.trim().split('\n').filter((l) => l.startsWith('mimetic:'));
    assert.equal(errs.length, 1, r.stderr);
    assert.equal(errs[0], r.stderr.trim().split('\n').pop());
    assert.match(errs[0]!, pattern);
    assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
  };
  // Nothing arrives: every request for the file is answered 500.
  const none = freshDir();
  hub.faults = { status: { file: shard, code: 500 } };
  let r: Run;
  try {
    r = await runCli(['pull', 'tiny/mamba2-sharded', '--cache-dir', none], env);
  } finally {
    hub.faults = {};
  }
  lastLine(r, new RegExp(`tiny/mamba2-sharded/${shard}: download failed after \\d+ attempts \\(HTTP 500[^)]*\\); nothing arrived; try again later$`));
  assert.doesNotMatch(r.stderr, /incomplete/);
  assert.ok(!walk(none).some((f) => f.endsWith('.incomplete')));

  // Half arrives, then the server starts refusing: the message names the file, which holds that half.
  // (Another shard: the fake Hub drops a file only once, and an earlier test dropped this one.)
  const shard2 = SHARDS[2]!;
  const data2 = sharded[shard2]!;
  const half = freshDir();
  const at = Math.floor(data2.length / 2);
  const part = path.join(half, 'models--tiny--mamba2-sharded', 'blobs', `${sha256(data2)}.incomplete`);
  hub.faults = {
    dropOnce: { file: shard2, at, before: async () => { await waitFor(() => fileSize(part) === at); hub.faults.status = { file: shard2, code: 500 }; } },
  };
  try {
    r = await runCli(['pull', 'tiny/mamba2-sharded', '--cache-dir', half], env);
  } finally {
    hub.faults = {};
  }
  lastLine(r, new RegExp(`download failed after \\d+ attempts .*; what arrived is kept in ${part.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} and the next pull resumes it$`));
  assert.equal(fileSize(part), at);
});

test('a server error body cannot forge a line or reach the terminal: newlines, ANSI and OSC escapes come out as one printable line', async () => {
  // A body built to forge a second `mimetic:` line, retitle the terminal (OSC) and clear the screen (CSI).
  const evil = 'denied\r\nmimetic: forged line\u001b]0;owned\u0007\u001b[2J\u009b31m\u202eend';
  const control = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e]/;
  const cases: [number, string, RegExp][] = [
    [403, JSON.stringify({ error: evil }), /^mimetic: tiny\/mamba1\/model\.safetensors: needs a token \(--token or HF_TOKEN\) \(403: denied mimetic: forged line\?\]0;owned\?\?\[2J\?31m\?end\)$/],
    [404, evil, /^mimetic: tiny\/mamba1\/config\.json: is missing on the Hub \(404: denied mimetic: forged line\?\]0;owned\?\?\[2J\?31m\?end\)$/],
  ];
  for (const [code, body, re] of cases) {
    const file = code === 403 ? 'model.safetensors' : 'config.json';
    hub.faults = { status: { file, code, body } };
    let r: Run;
    try {
      r = await runCli(['pull', 'tiny/mamba1', '--cache-dir', freshDir()]);
    } finally {
      hub.faults = {};
    }
    assert.equal(r.code, 2, r.stderr);
    const errs = r.stderr.split('\n').filter((l) => l.includes('mimetic:'));
    assert.equal(errs.length, 1, `one mimetic: line: ${JSON.stringify(r.stderr)}`);
    assert.match(errs[0]!, re, JSON.stringify(errs[0]));
    assert.doesNotMatch(r.stderr.replace(/\n/g, ''), control, JSON.stringify(r.stderr));
    assert.doesNotMatch(r.stdout, control);
  }
});

test('--token and --revision reach the Hub from score, forward and transplant --from, not only pull', async () => {
  const ids = path.join(freshDir(), 'ids.json');
  fs.writeFileSync(ids, '[[1, 2, 3, 4]]');
  const out = freshDir();
  const cmds: [string, string[]][] = [
    ['score', ['score', 'tiny/private-mamba', '--backend', 'cpu', '--seq-len', '16', '--batch-size', '1', '--no-reference', '--json']],
    ['forward', ['forward', 'tiny/private-mamba', '--ids', ids, '--out', path.join(out, 'f.safetensors'), '--backend', 'cpu', '--no-attention']],
    ['transplant', ['transplant', '--from', 'tiny/private-mamba', '--layers', '1', '--out', path.join(out, 't')]],
  ];
  for (const [name, args] of cmds) {
    // Without a token the private repo is refused; with --token (and no HF_TOKEN) it is pulled and used.
    assertOneLineError(await runCli([...args, '--cache-dir', freshDir()]), /private.*(--token|HF_TOKEN)/);
    const mark = hub.requests.length;
    const r = await runCli([...args, '--cache-dir', freshDir(), '--token', TOKEN]);
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    const reqs = hub.requests.slice(mark).filter((q) => q.server === 'hub');
    assert.ok(reqs.length > 0 && reqs.every((q) => q.headers.authorization === `Bearer ${TOKEN}`), name);
    assert.ok(!(r.stdout + r.stderr).includes(TOKEN), name);
  }
  assert.ok(fs.existsSync(path.join(out, 'f.safetensors')) && fs.existsSync(path.join(out, 't', 'config.json')));
  // --revision is the revision asked of the Hub.
  const rev = await runCli(['score', 'tiny/mamba2-sharded', '--revision', 'v1.0', '--cache-dir', freshDir(), '--backend', 'cpu', '--seq-len', '16', '--batch-size', '1', '--no-reference']);
  assert.equal(rev.code, 0, rev.stderr);
  const unknown = await runCli(['score', 'tiny/mamba2-sharded', '--revision', 'v9', '--cache-dir', freshDir(), '--backend', 'cpu']);
  assertOneLineError(unknown, /v9/);
});
