/**
 * Pull a Mamba checkpoint from the Hugging Face Hub into the shared HF cache layout (cache.ts).
 *
 * The revision is resolved to a commit and the repo listed through @huggingface/hub
 * (`modelInfo`, `listFiles`); the bytes are fetched here with HTTP Range requests because the
 * library cannot resume a transfer. Only config.json, the safetensors weights and their index are
 * fetched. Each blob is written to `blobs/<hash>.incomplete`, checked against the Hub's hash
 * (LFS sha256, or git blob sha1 for small files) and renamed into place; the snapshot links and
 * the ref are written only once every blob is in place, so an interrupted pull never leaves a
 * half snapshot, and the next pull resumes the `.incomplete` file.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { modelInfo, listFiles, HubApiError, type ListFileEntry } from '@huggingface/hub';
import { UserError } from '../util/errors.js';
import { printable } from '../util/text.js';
import { INDEX_FILE, checkShardName } from '../checkpoint/checkpoint.js';
import { type HubId, RepoCache, COMMIT_RE, ETAG_RE, hubCacheDir, envOffline, cachedSnapshot, shardsOfIndex } from './cache.js';
import { Progress, type ProgressSink, formatBytes } from './progress.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
const MAX_REDIRECTS = 10;
const MAX_ATTEMPTS = 20;
const MAX_STALLED_ATTEMPTS = 5;
const MAX_LISTED_FILES = 100_000;

export interface PullOptions {
  /** Access token; else HF_TOKEN, else the token file. */
  token?: string;
  /** Cache root; else HF_HUB_CACHE, HF_HOME/hub, ./checkpoints. */
  cacheDir?: string;
  /** Use the cache only; also HF_HUB_OFFLINE=1. */
  offline?: boolean;
  /** Hub URL; else HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Where progress goes (default process.stderr); null for none. */
  progress?: ProgressSink | null;
  /** Aborting it stops the transfer, keeps the `.incomplete` file and throws PullInterrupted. */
  signal?: AbortSignal;
}

export interface PulledFile {
  name: string;
  size: number;
  /** Blob name: LFS sha256 or git blob sha1. */
  etag: string;
  lfs: boolean;
  /** Bytes fetched by this pull (0 when the blob was already cached). */
  fetched: number;
}

export interface PullResult {
  repo: string;
  revision: string;
  commit: string;
  snapshotDir: string;
  cacheDir: string;
  files: PulledFile[];
  /** True when the Hub could not be reached and the cached snapshot was used. */
  fromCacheOnly: boolean;
}

/** Ctrl-C (or an aborted signal) during a pull. The CLI exits 130 on it. */
export class PullInterrupted extends UserError {
  readonly exitCode = 130;
}

/** The Hub could not be reached at all (connection refused, DNS, timeout). */
class HubUnreachable extends UserError {}

/* ------------------------------------------------------------------------------------------ */
/* Token, endpoint, redaction                                                                  */

export interface TokenSource {
  token: string;
  /** Where it came from, for messages (never the token itself). */
  source: string;
}

/** The standard token file: HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token. */
export function tokenFilePath(): string {
  if (process.env.HF_TOKEN_PATH) return path.resolve(process.env.HF_TOKEN_PATH);
  const home = process.env.HF_HOME ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface');
  return path.join(home, 'token');
}

/** Token from `--token`, HF_TOKEN, or the token file, in that order; null when none is set. */
export function resolveToken(explicit?: string): TokenSource | null {
  let found: TokenSource | null = null;
  if (explicit !== undefined && explicit.trim() !== '') found = { token: explicit.trim(), source: '--token' };
  else if (process.env.HF_TOKEN?.trim()) found = { token: process.env.HF_TOKEN.trim(), source: 'HF_TOKEN' };
  else {
    const file = tokenFilePath();
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8').trim();
    } catch {
      /* no token file: anonymous */
    }
    if (text) found = { token: text, source: `the token file ${file}` };
  }
  if (found && !/^hf_[A-Za-z0-9_-]+$/.test(found.token)) {
    throw new UserError(`the token from ${found.source} does not look like a Hugging Face access token (they start with hf_ and have no spaces); fix it or unset it`);
  }
  return found;
}

export function hubEndpoint(explicit?: string): string {
  const raw = (explicit ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).trim().replace(/\/+$/, '');
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UserError(`HF_ENDPOINT: '${redact(raw)}' is not a URL; set it to e.g. ${DEFAULT_ENDPOINT}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UserError(`HF_ENDPOINT: '${redact(raw)}' is not an http(s) URL`);
  // Credentials in the URL would be printed in every message naming the endpoint (and fetch refuses them).
  if (u.username || u.password) {
    throw new UserError(`HF_ENDPOINT: '${u.protocol}//***@${printable(u.host)}${printable(u.pathname.replace(/\/$/, ''))}' holds a user name or password; remove them from the URL and give the token with HF_TOKEN or --token`);
  }
  return raw;
}

/** Remove anything secret from a message: the token, anything token-shaped, bearer values, URL credentials and signatures. */
export function redact(s: string, token?: string): string {
  let out = s;
  if (token) out = out.split(token).join('hf_***');
  return out
    .replace(/hf_[A-Za-z0-9_-]{4,}/g, 'hf_***')
    .replace(/(bearer\s+)[^\s"',;)\]}>]+/gi, '$1***')
    .replace(/(\/\/)[^/@\s]+@/g, '$1***@')
    .replace(/([?&](?:token|access_token|signature|x-amz-signature|x-amz-credential|key-pair-id|policy)=)[^&\s"',;)\]}>]+/gi, '$1***');
}

function envSeconds(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UserError(`${name}: '${v}' is not a positive number of seconds`);
  return n;
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP                                                                                        */

interface Ctx {
  id: HubId;
  endpoint: string;
  token: TokenSource | null;
  cache: RepoCache;
  cacheDir: string;
  signal: AbortSignal;
  progress: Progress;
  /** Timeout for metadata requests (HF_HUB_ETAG_TIMEOUT, default 10 s). */
  metaTimeoutMs: number;
  /** Longest wait for the next bytes of a transfer (HF_HUB_DOWNLOAD_TIMEOUT, default 10 s). */
  idleTimeoutMs: number;
  /** X-Error-Code of the last failed metadata response (the library's errors do not carry it). */
  lastErrorCode: string | null;
}

const USER_AGENT = `mimetic/0.1; node/${process.versions.node}`;

/** The fetch handed to @huggingface/hub: bounded in time, abortable, remembers X-Error-Code. */
function metaFetch(ctx: Ctx): typeof fetch {
  return async (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('user-agent', USER_AGENT);
    const signals = [ctx.signal, AbortSignal.timeout(ctx.metaTimeoutMs)];
    if (init?.signal) signals.push(init.signal);
    const res = await fetch(input, { ...init, headers, signal: AbortSignal.any(signals) });
    if (!res.ok) ctx.lastErrorCode = res.headers.get('x-error-code');
    return res;
  };
}

function repoUrl(ctx: Ctx): string {
  return `${ctx.endpoint}/${ctx.id.repo}`;
}

/** Turn anything thrown while talking to the Hub into a one-line, token-free error. */
function hubError(ctx: Ctx, e: unknown, what: string): Error {
  const tok = ctx.token?.token;
  if (e instanceof PullInterrupted) return e;
  if (ctx.signal.aborted) return interrupted(ctx);
  if (e instanceof UserError) return new (e.constructor as typeof UserError)(redact(e.message, tok));
  if (e instanceof HubApiError) {
    const detail = redact(e.message.replace(/\. URL: .*$/s, ''), tok);
    const code = ctx.lastErrorCode;
    const at = `${ctx.id.repo}${ctx.id.explicitRevision ? '@' + ctx.id.revision : ''}`;
    switch (e.statusCode) {
      case 401:
        return ctx.token
          ? new UserError(`${at}: ${ctx.endpoint} rejected the token from ${ctx.token.source} (401: ${detail}) while ${what}; check the token, or that the repo exists`)
          : new UserError(`${at}: no such repo on ${ctx.endpoint}, or it is private (401: ${detail}); check the name, or give a token with --token or HF_TOKEN`);
      case 403:
        return new UserError(`${at}: access denied by ${ctx.endpoint} (403: ${detail}); if the repo is gated, accept its terms at ${repoUrl(ctx)} with the account of your token`);
      case 404:
        if (code === 'RevisionNotFound' || /invalid rev|revision not found/i.test(detail)) return new UserError(`${at}: revision '${ctx.id.revision}' not found in ${ctx.id.repo} on ${ctx.endpoint} (404); check the branch, tag or commit`);
        if (code === 'EntryNotFound') return new UserError(`${at}: a listed file is missing on ${ctx.endpoint} (404: ${detail}) while ${what}; try again later`);
        return new UserError(`${at}: no such repo on ${ctx.endpoint} (404: ${detail}); check the name${ctx.token ? '' : ', or give a token if it is private'}`);
      default:
        return new UserError(`${at}: ${ctx.endpoint} answered ${e.statusCode} (${detail}) while ${what}; try again later`);
    }
  }
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === 'TimeoutError') return new HubUnreachable(`${ctx.endpoint}: no answer within ${ctx.metaTimeoutMs / 1000} s while ${what}; check your connection (HF_HUB_ETAG_TIMEOUT sets the limit) or use --offline`);
  if (err?.name === 'TypeError' && err.message === 'fetch failed') {
    const why = err.cause?.code ?? err.cause?.message ?? 'network error';
    return new HubUnreachable(`${ctx.endpoint}: cannot connect (${redact(String(why), tok)}) while ${what}; check your connection or HF_ENDPOINT, or use --offline to read the cache`);
  }
  return new Error(redact(`${what}: ${err?.message ?? String(e)}`, tok));
}

function interrupted(ctx: Ctx): PullInterrupted {
  return new PullInterrupted(`interrupted; finished files stay in ${ctx.cache.root} and a partial download resumes on the next pull`);
}

/* ------------------------------------------------------------------------------------------ */
/* Resolve and list                                                                            */

interface RemoteFile {
  name: string;
  size: number;
  etag: string;
  lfs: boolean;
}

async function resolveCommit(ctx: Ctx): Promise<string> {
  let sha: string | undefined;
  try {
    const info = await modelInfo({
      name: ctx.id.repo,
      revision: ctx.id.revision,
      hubUrl: ctx.endpoint,
      additionalFields: ['sha'],
      fetch: metaFetch(ctx),
      ...(ctx.token ? { accessToken: ctx.token.token } : {}),
    });
    sha = info.sha;
  } catch (e) {
    throw hubError(ctx, e, `resolving revision '${ctx.id.revision}'`);
  }
  if (typeof sha !== 'string' || !COMMIT_RE.test(sha)) {
    throw new UserError(`${ctx.id.repo}: ${ctx.endpoint} gave no commit sha for revision '${ctx.id.revision}'; is HF_ENDPOINT a Hugging Face Hub?`);
  }
  return sha;
}

async function listRoot(ctx: Ctx, commit: string): Promise<Map<string, RemoteFile>> {
  const out = new Map<string, RemoteFile>();
  let n = 0;
  try {
    for await (const e of listFiles({
      repo: { type: 'model', name: ctx.id.repo },
      revision: commit,
      hubUrl: ctx.endpoint,
      fetch: metaFetch(ctx),
      ...(ctx.token ? { accessToken: ctx.token.token } : {}),
    }) as AsyncGenerator<ListFileEntry>) {
      if (++n > MAX_LISTED_FILES) throw new UserError(`${ctx.id.repo}: the Hub listed more than ${MAX_LISTED_FILES} files at the top level; refusing to go on`);
      if (e.type !== 'file' || e.path.includes('/')) continue;
      const etag = e.lfs ? e.lfs.oid : e.oid;
      const size = e.lfs ? e.lfs.size : e.size;
      if (!etag || !ETAG_RE.test(etag) || !Number.isSafeInteger(size) || size < 0) continue;
      out.set(e.path, { name: e.path, size, etag, lfs: Boolean(e.lfs) });
    }
  } catch (e) {
    throw hubError(ctx, e, 'listing the repo files');
  }
  return out;
}

/* ------------------------------------------------------------------------------------------ */
/* Transfer                                                                                    */

interface Opened {
  res: Response;
  /** Aborts this one request (idle timeout). */
  ctl: AbortController;
}

/** GET a file with manual redirects: the token goes only to the Hub's own origin, never to a CDN. */
async function openTransfer(ctx: Ctx, file: RemoteFile, commit: string, offset: number): Promise<Opened> {
  let url = `${ctx.endpoint}/${ctx.id.repo}/resolve/${commit}/${encodeURIComponent(file.name)}`;
  const origin = new URL(ctx.endpoint).origin;
  const ctl = new AbortController();
  const signal = AbortSignal.any([ctx.signal, ctl.signal]);
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, 'accept-encoding': 'identity' };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    if (ctx.token && new URL(url).origin === origin) headers.authorization = `Bearer ${ctx.token.token}`;
    const timer = setTimeout(() => ctl.abort(new DOMException('no response', 'TimeoutError')), ctx.metaTimeoutMs);
    let res: Response;
    try {
      res = await fetch(url, { headers, redirect: 'manual', signal });
    } finally {
      clearTimeout(timer);
    }
    const repoCommit = res.headers.get('x-repo-commit');
    if (repoCommit && repoCommit !== commit) {
      await res.body?.cancel();
      throw new UserError(`${ctx.id.repo}/${file.name}: the Hub served commit ${repoCommit} when ${commit} was asked; try again`);
    }
    if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
      await res.body?.cancel();
      url = new URL(res.headers.get('location')!, url).href;
      continue;
    }
    return { res, ctl };
  }
  throw new UserError(`${ctx.id.repo}/${file.name}: more than ${MAX_REDIRECTS} redirects; the Hub or a proxy is misconfigured`);
}

async function errorBody(res: Response): Promise<string> {
  try {
    // The body is the server's text: no control character of it reaches the terminal.
    const text = (await res.text()).slice(0, 300);
    try {
      const j = JSON.parse(text) as { error?: unknown; message?: unknown };
      return printable(String(j.error ?? j.message ?? text).replace(/\s+/g, ' ').trim());
    } catch {
      return printable(text.replace(/\s+/g, ' ').trim());
    }
  } catch {
    return '';
  }
}

function parseContentRange(h: string | null): { start: number; total: number } | null {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(h?.trim() ?? '');
  if (!m) return null;
  return { start: Number(m[1]), total: m[3] === '*' ? NaN : Number(m[3]) };
}

function fileSize(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return -1;
  }
}

/**
 * Fetch one file into `blobs/<etag>.incomplete`, resuming what is there, retrying dropped
 * connections with Range requests (bounded), then check its hash and rename it into place.
 */
async function fetchBlob(ctx: Ctx, file: RemoteFile, commit: string): Promise<number> {
  const blob = ctx.cache.blobPath(file.etag);
  const part = `${blob}.incomplete`;
  fs.mkdirSync(path.dirname(blob), { recursive: true });
  let have = fileSize(part);
  if (have > file.size) {
    fs.truncateSync(part, 0);
    have = 0;
  }
  if (have < 0) have = 0;
  const fetchedBefore = have;
  ctx.progress.start(file.name, file.size, have);
  let lastError = '';
  let stalled = 0;
  for (let attempt = 1; have < file.size || !fs.existsSync(part); attempt++) {
    if (attempt > MAX_ATTEMPTS || stalled >= MAX_STALLED_ATTEMPTS) {
      ctx.progress.abort();
      // Only a file that exists is promised to the user (nothing may have arrived at all).
      const kept = fileSize(part) > 0 ? `what arrived is kept in ${part} and the next pull resumes it` : 'nothing arrived; try again later';
      throw new UserError(`${ctx.id.repo}/${file.name}: download failed after ${attempt - 1} attempts (${lastError}); ${kept}`);
    }
    const before = have;
    try {
      have = await transferOnce(ctx, file, commit, part, have);
    } catch (e) {
      if (ctx.signal.aborted) {
        ctx.progress.abort();
        throw interrupted(ctx);
      }
      if (e instanceof UserError) {
        ctx.progress.abort();
        throw hubError(ctx, e, `downloading ${file.name}`);
      }
      const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
      lastError = redact(err?.name === 'TimeoutError' ? `no data for ${ctx.idleTimeoutMs / 1000} s` : `${err?.message ?? e}${err?.cause ? ` (${err.cause.code ?? err.cause.message})` : ''}`, ctx.token?.token);
      have = Math.max(fileSize(part), 0);
      if (have < before || have > file.size) have = 0;
    }
    stalled = have > before ? 0 : stalled + 1;
    if (have < file.size && stalled > 0 && attempt < MAX_ATTEMPTS) {
      // Back off a little when no byte arrived, so a flapping server is not hammered.
      await sleep(Math.min(200 * 2 ** stalled, 5000), ctx.signal).catch(() => undefined);
      if (ctx.signal.aborted) {
        ctx.progress.abort();
        throw interrupted(ctx);
      }
    }
  }
  await verifyBlob(ctx, file, part);
  fs.renameSync(part, blob);
  ctx.progress.finish();
  return file.size - fetchedBefore;
}

/** One HTTP request: append from `have` onwards; returns the bytes now in the partial file. */
async function transferOnce(ctx: Ctx, file: RemoteFile, commit: string, part: string, have: number): Promise<number> {
  const { res, ctl } = await openTransfer(ctx, file, commit, have);
  const where = `${ctx.id.repo}/${file.name}`;
  if (res.status === 416 && have === file.size) {
    await res.body?.cancel();
    return have;
  }
  if (res.status === 401 || res.status === 403 || res.status === 404) {
    const msg = await errorBody(res);
    const why = res.status === 404 ? 'is missing on the Hub' : ctx.token ? `was refused with the token from ${ctx.token.source}` : 'needs a token (--token or HF_TOKEN)';
    throw new UserError(`${where}: ${why} (${res.status}${msg ? ': ' + msg : ''})`);
  }
  if (!res.ok) {
    const msg = await errorBody(res);
    throw new Error(`HTTP ${res.status}${msg ? ': ' + msg : ''}`);
  }
  let start = 0;
  if (res.status === 206) {
    const cr = parseContentRange(res.headers.get('content-range'));
    if (!cr || cr.start !== have || (Number.isFinite(cr.total) && cr.total !== file.size)) {
      await res.body?.cancel();
      if (cr && Number.isFinite(cr.total) && cr.total !== file.size) {
        throw new UserError(`${where}: the server says the file has ${cr.total} bytes but the Hub lists ${file.size}; try again later`);
      }
      fs.truncateSync(part, 0);
      throw new Error(`the server answered the wrong range (${res.headers.get('content-range')})`);
    }
    start = have;
  } else if (have > 0) {
    // 200: the server ignored the Range header and sends the whole file.
    ctx.progress.reset(0);
  }
  const fh = await fs.promises.open(part, start === 0 ? 'w' : 'r+');
  let pos = start;
  let corrupt = false;
  let idle: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => ctl.abort(new DOMException('idle', 'TimeoutError')), ctx.idleTimeoutMs);
  };
  try {
    arm();
    if (res.body) {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        arm();
        if (pos + chunk.byteLength > file.size) {
          corrupt = true;
          throw new UserError(`${where}: the server sent more than the ${file.size} bytes the Hub lists; the partial file was deleted and nothing was added to the cache — run the pull again`);
        }
        // Written as they come, so what arrived before a stall, a reset or Ctrl-C is kept.
        await fh.write(chunk, 0, chunk.byteLength, pos);
        pos += chunk.byteLength;
        ctx.progress.add(chunk.byteLength);
      }
    }
  } finally {
    clearTimeout(idle);
    await fh.sync().catch(() => undefined);
    await fh.truncate(pos).catch(() => undefined);
    await fh.close();
    if (corrupt) fs.rmSync(part, { force: true });
  }
  return pos;
}

async function hashFile(p: string, algo: string, prefix?: string): Promise<string> {
  const h = createHash(algo);
  if (prefix) h.update(prefix);
  for await (const chunk of fs.createReadStream(p, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** LFS files must hash (sha256) to their oid, small files to their git blob sha1. */
async function verifyBlob(ctx: Ctx, file: RemoteFile, part: string): Promise<void> {
  const size = fileSize(part);
  const got = file.lfs ? await hashFile(part, 'sha256') : await hashFile(part, 'sha1', `blob ${size}\0`);
  if (size !== file.size || got !== file.etag) {
    fs.rmSync(part, { force: true });
    ctx.progress.abort();
    const kind = file.lfs ? 'sha256' : 'git sha1';
    throw new UserError(`${ctx.id.repo}/${file.name}: downloaded ${size} bytes with ${kind} ${got}, but the Hub lists ${file.size} bytes with ${kind} ${file.etag}; the transfer was corrupted, so it was deleted and nothing was added to the cache — run the pull again`);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new Error('aborted'));
    }, { once: true });
  });
}

/* ------------------------------------------------------------------------------------------ */
/* Pull                                                                                        */

/** Which files to fetch: config.json, then the index and its shards, or model.safetensors. */
async function selectFiles(ctx: Ctx, listed: Map<string, RemoteFile>, commit: string, ensure: (f: RemoteFile) => Promise<void>): Promise<RemoteFile[]> {
  const need = (name: string): RemoteFile => {
    const f = listed.get(name);
    if (!f) throw new UserError(`${ctx.id.repo}@${ctx.id.revision}: the repo has no ${name}; it is not a complete safetensors checkpoint`);
    return f;
  };
  const config = need('config.json');
  const chosen = [config];
  if (listed.has(INDEX_FILE)) {
    const index = listed.get(INDEX_FILE)!;
    await ensure(index);
    const text = fs.readFileSync(ctx.cache.blobPath(index.etag), 'utf8');
    const shards = shardsOfIndex(text, `${ctx.id.repo}@${commit.slice(0, 8)}/${INDEX_FILE}`);
    chosen.push(index, ...shards.map((s) => {
      checkShardName(INDEX_FILE, s);
      const f = listed.get(s);
      if (!f) throw new UserError(`${ctx.id.repo}@${ctx.id.revision}: ${INDEX_FILE} names the shard ${s}, which is not in the repo; the repo is incomplete`);
      return f;
    }));
    return chosen;
  }
  if (listed.has('model.safetensors')) return [...chosen, listed.get('model.safetensors')!];
  const any = [...listed.keys()].filter((n) => n.endsWith('.safetensors'));
  if (any.length === 1) return [...chosen, listed.get(any[0]!)!];
  const others = [...listed.keys()].filter((n) => /\.(bin|pt|pth|ckpt|h5|msgpack|gguf)$/.test(n));
  throw new UserError(
    any.length > 1
      ? `${ctx.id.repo}@${ctx.id.revision}: ${any.length} .safetensors files and no ${INDEX_FILE}; mimetic cannot tell which hold the model`
      : `${ctx.id.repo}@${ctx.id.revision}: no safetensors weights${others.length ? ` (only ${others.slice(0, 3).join(', ')})` : ''}; mimetic reads safetensors checkpoints — use a repo or revision that has them (e.g. the "-hf" Mamba repos)`,
  );
}

/**
 * Download `id` into the cache (or find it there when offline) and return the snapshot folder,
 * which `Checkpoint.open` reads.
 */
export async function pull(id: HubId, opts: PullOptions = {}): Promise<PullResult> {
  const cacheDir = hubCacheDir(opts.cacheDir);
  const cache = new RepoCache(cacheDir, id.repo);
  const offline = opts.offline ?? envOffline();
  const out = opts.progress === undefined ? process.stderr : opts.progress;
  const progress = new Progress(out);
  if (offline) {
    const dir = cachedSnapshot(cacheDir, id);
    return { repo: id.repo, revision: id.revision, commit: path.basename(dir), snapshotDir: dir, cacheDir, files: [], fromCacheOnly: true };
  }
  const ctx: Ctx = {
    id,
    endpoint: hubEndpoint(opts.endpoint),
    token: resolveToken(opts.token),
    cache,
    cacheDir,
    signal: opts.signal ?? new AbortController().signal,
    progress,
    metaTimeoutMs: envSeconds('HF_HUB_ETAG_TIMEOUT', 10) * 1000,
    idleTimeoutMs: envSeconds('HF_HUB_DOWNLOAD_TIMEOUT', 10) * 1000,
    lastErrorCode: null,
  };
  let commit: string;
  try {
    commit = await resolveCommit(ctx);
  } catch (e) {
    if (!(e instanceof HubUnreachable)) throw e;
    // Like huggingface_hub: when the Hub is unreachable, a cached snapshot still serves.
    let dir: string;
    try {
      dir = cachedSnapshot(cacheDir, id);
    } catch {
      throw new UserError(`${e.message}; ${id.repo} is not in the cache at ${cacheDir} either`);
    }
    progress.note(`mimetic: ${e.message.split(';')[0]}; using the cached snapshot ${dir}`);
    return { repo: id.repo, revision: id.revision, commit: path.basename(dir), snapshotDir: dir, cacheDir, files: [], fromCacheOnly: true };
  }
  const listed = await listRoot(ctx, commit);
  const fetched = new Map<string, number>();
  const ensure = async (f: RemoteFile): Promise<void> => {
    if (fetched.has(f.name)) return;
    const blob = cache.blobPath(f.etag);
    if (fileSize(blob) === f.size) {
      fetched.set(f.name, 0);
      return;
    }
    fetched.set(f.name, await fetchBlob(ctx, f, commit));
  };
  const files = await selectFiles(ctx, listed, commit, ensure);
  const total = files.reduce((a, f) => a + f.size, 0);
  const missing = files.filter((f) => fileSize(cache.blobPath(f.etag)) !== f.size);
  if (missing.length) {
    const bytes = missing.reduce((a, f) => a + f.size, 0);
    progress.note(`${id.repo}@${commit.slice(0, 12)}: fetching ${missing.length} of ${files.length} files, ${formatBytes(bytes)} of ${formatBytes(total)}`);
  }
  for (const f of files) await ensure(f);
  if (ctx.signal.aborted) throw interrupted(ctx);
  const snapshotDir = await cache.linkSnapshot(commit, files.map((f) => ({ name: f.name, etag: f.etag })));
  cache.writeRef(id.revision, commit);
  return {
    repo: id.repo,
    revision: id.revision,
    commit,
    snapshotDir,
    cacheDir,
    files: files.map((f) => ({ name: f.name, size: f.size, etag: f.etag, lfs: f.lfs, fetched: fetched.get(f.name) ?? 0 })),
    fromCacheOnly: false,
  };
}

/**
 * Run `fn` with Ctrl-C turned into an abort: the first SIGINT stops the transfer cleanly (the
 * `.incomplete` file is kept), a second one exits at once.
 */
export async function withSigint<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ctl = new AbortController();
  const onSigint = () => {
    if (ctl.signal.aborted) process.exit(130);
    ctl.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    return await fn(ctl.signal);
  } finally {
    process.off('SIGINT', onSigint);
  }
}
