/**
 * Turn a checkpoint argument into a local path: an existing file or folder as is, a Hub id
 * (`org/name[@revision]`) pulled into the cache on demand (or found there when offline).
 * Every command that takes a checkpoint goes through here.
 */
import * as fs from 'node:fs';
import { UserError } from '../util/errors.js';
import { type HubId, parseHubId } from './cache.js';
import { pull, withSigint } from './client.js';

export interface ResolveOptions {
  /** Cache only (also HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** Access token (else HF_TOKEN, else the token file). */
  token?: string;
  /** Cache root (else HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Branch, tag or commit of a Hub id (as `org/name@revision`); refused for a local path. */
  revision?: string;
  /** No progress output. */
  quiet?: boolean;
}

export async function resolveCheckpoint(arg: string, opts: ResolveOptions = {}): Promise<string> {
  if (arg === '') throw new UserError('empty checkpoint argument; give a checkpoint folder, a .safetensors file or a Hub id (org/name[@revision])');
  if (fs.existsSync(arg)) {
    if (opts.revision !== undefined) throw new UserError(`--revision ${opts.revision}: ${arg} is a local path, not a Hub id; --revision picks a branch, tag or commit of a Hub id (org/name)`);
    return arg;
  }
  const parsed = parseHubId(arg);
  if (!parsed) {
    throw new UserError(`${arg}: no such file or folder, and not a Hub id (org/name[@revision]); give a checkpoint folder, a .safetensors file or a Hub id`);
  }
  const id = withRevision(parsed, opts.revision, arg);
  const result = await withSigint((signal) =>
    pull(id, { offline: opts.offline, token: opts.token, cacheDir: opts.cacheDir, progress: opts.quiet ? null : process.stderr, signal }),
  );
  return result.snapshotDir;
}

/** A Hub id with `--revision` applied; `org/name@a --revision b` is a contradiction. */
export function withRevision(id: HubId, revision: string | undefined, arg: string): HubId {
  if (revision === undefined) return id;
  const r = parseHubId(`${id.repo}@${revision}`);
  if (!r) throw new UserError(`--revision: '${revision}' is not a valid branch, tag or commit name`);
  if (id.explicitRevision && id.revision !== r.revision) throw new UserError(`${arg}: names revision ${id.revision} but --revision says ${revision}; give one of them`);
  return r;
}
