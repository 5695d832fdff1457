/** `mimetic pull org/name[@revision]`: download a checkpoint into the Hugging Face cache layout. */
import type { Command } from 'commander';
import { UserError } from '../util/errors.js';
import { parseHubId } from '../hub/cache.js';
import { pull, withSigint, PullInterrupted } from '../hub/client.js';
import { formatBytes } from '../hub/progress.js';
import { withRevision } from '../hub/resolve.js';
import { addHubOptions, type HubCliOptions } from './hub-options.js';

export function register(program: Command): void {
  const cmd = program
    .command('pull')
    .description('download config.json and the safetensors weights of a Hub model into the HF cache layout; prints the snapshot folder')
    .argument('<repo>', 'Hub id org/name, optionally @revision (branch, tag or commit)');
  addHubOptions(cmd, 'the repo')
    .option('-q, --quiet', 'no progress output')
    .action(async (repo: string, o: HubCliOptions & { quiet?: boolean }) => {
      const parsed = parseHubId(repo);
      if (!parsed) throw new UserError(`${repo}: not a Hub id; write org/name or org/name@revision`);
      const id = withRevision(parsed, o.revision, repo);
      try {
        const r = await withSigint((signal) =>
          pull(id, { token: o.token, offline: o.offline ? true : undefined, cacheDir: o.cacheDir, progress: o.quiet ? null : process.stderr, signal }),
        );
        if (!o.quiet) {
          const got = r.files.reduce((a, f) => a + f.fetched, 0);
          const total = r.files.reduce((a, f) => a + f.size, 0);
          const what = r.fromCacheOnly ? 'from the cache' : got > 0 ? `${r.files.length} files, fetched ${formatBytes(got)} of ${formatBytes(total)}` : `${r.files.length} files, already cached (${formatBytes(total)})`;
          process.stderr.write(`${r.repo}@${r.revision} = ${r.commit}: ${what}\n`);
        }
        process.stdout.write(`${r.snapshotDir}\n`);
      } catch (e) {
        if (e instanceof PullInterrupted) {
          process.stderr.write(`mimetic: ${e.message}\n`);
          process.exitCode = 130;
          return;
        }
        throw e;
      }
    });
}
