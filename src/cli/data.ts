/** `mimetic data prepare PATH... --out DIR`: text files or folders → a prepared token folder. */
import type { Command } from 'commander';
import { DEFAULT_HELD_OUT, prepareCorpus } from '../data/prepare.js';
import { UserError } from '../util/errors.js';

function num(v: unknown, flag: string): number {
  const n = Number(v);
  if (v === undefined || String(v).trim() === '' || !Number.isFinite(n)) throw new UserError(`${flag}: '${String(v)}' is not a number`);
  return n;
}

export function register(program: Command): void {
  const data = program.command('data').description('prepare text corpora for the language-model task');
  data
    .command('prepare')
    .description('tokenize text files (each file a document) into train.bin, heldout.bin and meta.json')
    .argument('<paths...>', 'text files or folders of them')
    .requiredOption('--out <dir>', 'output folder (must not exist)')
    .option('--tokenizer <file>', 'a Hugging Face tokenizer.json (default: bytes, vocab 256)')
    .option('--held-out <fraction>', 'fraction of documents held out', String(DEFAULT_HELD_OUT))
    .option('--split-seed <n>', 'seed of the held-out split', '0')
    .option('--quiet', 'no progress output')
    .action(async (paths: string[], o: { out: string; tokenizer?: string; heldOut: string; splitSeed: string; quiet?: boolean }) => {
      const t0 = Date.now();
      let last = Date.now(), bytes = 0;
      const meta = await prepareCorpus(paths, {
        out: o.out, tokenizer: o.tokenizer, heldOut: num(o.heldOut, '--held-out'), splitSeed: num(o.splitSeed, '--split-seed'),
        onDocument: (done, total, b) => {
          bytes += b;
          if (o.quiet || Date.now() - last < 1000) return;
          last = Date.now();
          process.stderr.write(`prepare: ${done}/${total} documents, ${(bytes / 1e6).toFixed(1)} MB\n`);
        },
      });
      const s = meta.splits;
      const sec = (Date.now() - t0) / 1000;
      process.stdout.write(
        `${o.out}: ${meta.documents.length} documents, vocab ${meta.vocab} (${meta.tokenizer ? 'tokenizer.json' : 'bytes'}, ${meta.dtype}); ` +
          `train ${s.train.tokens} tokens (${s.train.documents} documents, ${s.train.bytes} bytes), held out ${s.heldout.tokens} tokens (${s.heldout.documents} documents, ${s.heldout.bytes} bytes); ` +
          `${sec.toFixed(1)} s\n`,
      );
    });
}
