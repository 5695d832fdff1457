/**
 * The Hugging Face options of every command that takes a Hub id (org/name[@revision]), with the
 * names and meaning huggingface_hub users know: --revision, --offline (also HF_HUB_OFFLINE=1),
 * --token (else HF_TOKEN, else the token file) and --cache-dir (else HF_HUB_CACHE, HF_HOME/hub,
 * ~/.cache/huggingface/hub).
 */
import type { Command } from 'commander';
import type { ResolveOptions } from '../hub/resolve.js';

export interface HubCliOptions {
  revision?: string;
  offline?: boolean;
  token?: string;
  cacheDir?: string;
}

/** Add the four options; `what` names the argument they apply to (e.g. "--from"). */
export function addHubOptions(cmd: Command, what = 'a Hub id'): Command {
  return cmd
    .option('--revision <rev>', `branch, tag or commit of ${what} (same as org/name@rev; default main)`)
    .option('--offline', `use the Hub cache only for ${what} (also HF_HUB_OFFLINE=1)`)
    .option('--token <token>', 'Hugging Face access token (default: HF_TOKEN, then the token file; prefer those, arguments show up in ps)')
    .option('--cache-dir <dir>', 'Hub cache (default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)');
}

/** The options for resolveCheckpoint / pull. */
export function hubOptionsFrom(o: HubCliOptions, extra: Pick<ResolveOptions, 'quiet'> = {}): ResolveOptions {
  return { revision: o.revision, offline: o.offline ? true : undefined, token: o.token, cacheDir: o.cacheDir, ...extra };
}
