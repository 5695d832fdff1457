/**
 * Turn a checkpoint argument into a local path: an existing file or folder as is, a Hub id
 * (`org/name[@revision]`) pulled into the cache on demand (or found there when offline).
 * Every command that takes a checkpoint goes through here.
 */
import * as fs from 'node:fs';
import { UserError } from '../util/errors.js';
import { parseHubId } from './hub-cache.js';
import { pull, withSigint } from './hub.js';

export interface ResolveOptions {
  /** Cache only (also HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** Access token (else HF_TOKEN, else the token file). */
  token?: string;
  /** Cache root (else HF_HUB_CACHE, HF_HOME/hub, ./checkpoints). */
  cacheDir?: string;
  /** No progress output. */
  quiet?: boolean;
}

export async function resolveCheckpoint(arg: string, opts: ResolveOptions = {}): Promise<string> {
  if (arg === '') throw new UserError('empty checkpoint argument; give a checkpoint folder, a .safetensors file or a Hub id (org/name[@revision])');
  if (fs.existsSync(arg)) return arg;
  const id = parseHubId(arg);
  if (!id) {
    throw new UserError(`${arg}: no such file or folder, and not a Hub id (org/name[@revision]); give a checkpoint folder, a .safetensors file or a Hub id`);
  }
  const result = await withSigint((signal) =>
    pull(id, { offline: opts.offline, token: opts.token, cacheDir: opts.cacheDir, progress: opts.quiet ? null : process.stderr, signal }),
  );
  return result.snapshotDir;
}
