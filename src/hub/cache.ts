/**
 * The Hugging Face cache layout, shared with Python's huggingface_hub so both tools reuse one
 * download:
 *
 *     <cache>/models--org--name/blobs/<sha256 for LFS files, git blob sha1 otherwise>
 *     <cache>/models--org--name/snapshots/<commit>/<file> -> ../../blobs/<...>   (relative symlinks)
 *     <cache>/models--org--name/refs/<revision>                                 (holds the commit sha)
 *
 * A blob being downloaded lives at `blobs/<etag>.incomplete` until its hash checks out.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../util/errors.js';
import { writeFileAtomic, writeDirAtomic, tempSibling } from '../util/atomic.js';
import { INDEX_FILE, checkShardName } from '../checkpoint/checkpoint.js';
import { parseConfigJson } from '../checkpoint/config.js';

export const COMMIT_RE = /^[0-9a-f]{40}$/;
/** Blob names: a git blob sha1 (40 hex) or an LFS sha256 (64 hex). */
export const ETAG_RE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;
// Repo ids as the Hub accepts them (huggingface_hub's validate_repo_id), restricted to org/name.
const REPO_PART_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const REVISION_RE = /^[A-Za-z0-9_.\-/]+$/;

export interface HubId {
  repo: string;
  revision: string;
  /** Whether the user named a revision (`@...`). */
  explicitRevision: boolean;
}

/** Parse `org/name[@revision]`; null when the string is not shaped like a Hub id. */
export function parseHubId(arg: string): HubId | null {
  const at = arg.indexOf('@');
  const repo = at < 0 ? arg : arg.slice(0, at);
  const revision = at < 0 ? 'main' : arg.slice(at + 1);
  const parts = repo.split('/');
  if (parts.length !== 2 || repo.length > 96) return null;
  for (const p of parts) {
    if (!REPO_PART_RE.test(p) || p.includes('--') || p.includes('..') || p.endsWith('.') || p.endsWith('-')) return null;
  }
  if (!validRevision(revision)) return null;
  return { repo, revision, explicitRevision: at >= 0 };
}

function validRevision(r: string): boolean {
  return r.length > 0 && r.length <= 255 && REVISION_RE.test(r) && !r.startsWith('/') && !r.endsWith('/') && !r.split('/').some((s) => s === '' || s === '.' || s === '..');
}

function isTrue(v: string | undefined): boolean {
  return v !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(v.trim().toUpperCase());
}

/** `HF_HUB_OFFLINE` as huggingface_hub reads it. */
export function envOffline(): boolean {
  return isTrue(process.env.HF_HUB_OFFLINE);
}

/**
 * Where the cache lives, as huggingface_hub decides it (so models it downloaded are found): the
 * explicit dir (`--cache-dir`), else HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE (its older name), else
 * HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
 */
export function hubCacheDir(explicit?: string): string {
  const env = (k: string) => (process.env[k]?.trim() ? process.env[k]!.trim() : undefined);
  if (explicit) return path.resolve(explicit);
  const hubCache = env('HF_HUB_CACHE') ?? env('HUGGINGFACE_HUB_CACHE');
  if (hubCache) return path.resolve(hubCache);
  const home = env('HF_HOME');
  if (home) return path.resolve(home, 'hub');
  return path.resolve(env('XDG_CACHE_HOME') ?? path.join(os.homedir(), '.cache'), 'huggingface', 'hub');
}

export function repoFolderName(repo: string): string {
  return ['models', ...repo.split('/')].join('--');
}

export class RepoCache {
  readonly root: string;
  constructor(cacheDir: string, readonly repo: string) {
    this.root = path.join(cacheDir, repoFolderName(repo));
  }

  blobPath(etag: string): string {
    if (!ETAG_RE.test(etag)) throw new UserError(`${this.repo}: the Hub gave '${etag.slice(0, 80)}' as a file hash, which is not a sha1/sha256; refusing to use it as a cache path`);
    return path.join(this.root, 'blobs', etag);
  }

  snapshotDir(commit: string): string {
    if (!COMMIT_RE.test(commit)) throw new UserError(`${this.repo}: '${commit.slice(0, 80)}' is not a commit sha`);
    return path.join(this.root, 'snapshots', commit);
  }

  refPath(revision: string): string {
    if (!validRevision(revision)) throw new UserError(`${this.repo}: '${revision}' is not a valid revision name`);
    return path.join(this.root, 'refs', ...revision.split('/'));
  }

  /** The commit a revision points at in the cache, or null. A commit sha names itself. */
  readRef(revision: string): string | null {
    const p = this.refPath(revision);
    if (fs.existsSync(p)) {
      const sha = fs.readFileSync(p, 'utf8').trim();
      if (!COMMIT_RE.test(sha)) throw new UserError(`${p}: does not hold a commit sha; delete it and pull again`);
      return sha;
    }
    return COMMIT_RE.test(revision) ? revision : null;
  }

  writeRef(revision: string, commit: string): void {
    if (revision === commit) return; // huggingface_hub writes no ref for a commit sha
    const p = this.refPath(revision);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    if (fs.existsSync(p) && fs.readFileSync(p, 'utf8') === commit) return;
    writeFileAtomic(p, commit);
  }

  /** Whether `snapshots/<commit>/<file>` resolves to an existing blob (or file). */
  hasSnapshotFile(commit: string, file: string): boolean {
    try {
      return fs.statSync(path.join(this.snapshotDir(commit), file)).isFile();
    } catch {
      return false;
    }
  }

  /**
   * Make `snapshots/<commit>/<file>` point at `blobs/<etag>` for every file. A new snapshot folder
   * appears complete in one rename; an existing one (e.g. from Python) gets each link atomically.
   */
  async linkSnapshot(commit: string, files: { name: string; etag: string }[]): Promise<string> {
    const dir = this.snapshotDir(commit);
    const target = (etag: string) => path.join('..', '..', 'blobs', etag);
    for (const f of files) {
      checkShardName(this.repo, f.name);
      if (!fs.existsSync(this.blobPath(f.etag))) throw new Error(`internal: blob ${f.etag} missing before linking ${f.name}`);
    }
    if (!fs.existsSync(dir)) {
      fs.mkdirSync(path.dirname(dir), { recursive: true });
      // Both the temporary sibling and the final folder sit in snapshots/, so relative links hold.
      await writeDirAtomic(dir, (tmp) => {
        for (const f of files) fs.symlinkSync(target(f.etag), path.join(tmp, f.name));
      });
      return dir;
    }
    for (const f of files) {
      const p = path.join(dir, f.name);
      let current: string | null = null;
      try {
        current = fs.readlinkSync(p);
      } catch {
        /* missing or a regular file */
      }
      if (current === target(f.etag) && fs.existsSync(p)) continue;
      const tmp = tempSibling(p);
      fs.symlinkSync(target(f.etag), tmp);
      fs.renameSync(tmp, p);
    }
    return dir;
  }
}

/** Whether a name exists in a folder, even as a dangling link. */
function listed(dir: string, name: string): boolean {
  try {
    fs.lstatSync(path.join(dir, name));
    return true;
  } catch {
    return false;
  }
}

/**
 * Files of a snapshot that a Mamba checkpoint needs: config.json plus the index and its shards,
 * or model.safetensors. Dangling links count as named, so the caller can say what is missing.
 */
export function wantedFromSnapshot(dir: string): string[] | null {
  const index = path.join(dir, INDEX_FILE);
  if (fs.existsSync(index)) {
    const shards = shardsOfIndex(fs.readFileSync(index, 'utf8'), index);
    return ['config.json', INDEX_FILE, ...shards];
  }
  if (listed(dir, INDEX_FILE)) return ['config.json', INDEX_FILE];
  return listed(dir, 'model.safetensors') ? ['config.json', 'model.safetensors'] : null;
}

/** The shard names an index maps tensors to, validated as plain file names. */
export function shardsOfIndex(text: string, where: string): string[] {
  const index = parseConfigJson(text, where);
  const wm = index.weight_map;
  if (!wm || typeof wm !== 'object' || Array.isArray(wm)) throw new UserError(`${where}: no "weight_map" object; the repo's index is corrupt`);
  return [...new Set(Object.values(wm).map((f) => checkShardName(where, f)))].sort();
}

/**
 * The cached snapshot for a Hub id without touching the network, or a UserError saying what is
 * missing. Used offline and as the fallback when the Hub cannot be reached.
 */
export function cachedSnapshot(cacheDir: string, id: HubId): string {
  const cache = new RepoCache(cacheDir, id.repo);
  const commit = cache.readRef(id.revision);
  const hint = `run \`mimetic pull ${id.repo}${id.explicitRevision ? '@' + id.revision : ''}\` while online, or point HF_HUB_CACHE at the cache that holds it`;
  if (!commit || !fs.existsSync(cache.snapshotDir(commit))) {
    throw new UserError(`${id.repo}@${id.revision}: not in the cache at ${cacheDir} (offline); ${hint}`);
  }
  const dir = cache.snapshotDir(commit);
  const wanted = wantedFromSnapshot(dir);
  if (!wanted) throw new UserError(`${id.repo}@${id.revision}: the cached snapshot ${dir} has no config.json and safetensors weights (offline); ${hint}`);
  const missing = wanted.filter((f) => !cache.hasSnapshotFile(commit, f));
  if (missing.length) throw new UserError(`${id.repo}@${id.revision}: the cached snapshot ${dir} lacks ${missing.join(', ')} (offline); ${hint}`);
  return dir;
}
