/**
 * LM data benchmark: `data prepare` throughput (byte-level, and through a tokenizer.json when
 * given) and the training loop's window reads (random windows of context+1 tokens by position,
 * as tasks/lm.ts draws them), against reading the same text files whole. Prints JSON.
 *
 *   node dist/bench/lm-data.js [--text PATH...] [--mb 64] [--tokenizer tokenizer.json] [--context 256] [--batch 32] [--batches 2000]
 *
 * Without --text it writes a synthetic corpus (--mb MB of pseudo-random lower-case words in 64
 * documents) to a temporary folder; with the page cache warm either way (it reads the text once
 * first), so the figures are CPU and syscall cost, not disk.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { prepareCorpus, listDocuments } from '../src/data/prepare.js';
import { TokenData } from '../src/data/tokens.js';
import { LmTask } from '../src/tasks/lm.js';
import { Rng } from '../src/util/rng.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
function args(name: string): string[] {
  const i = process.argv.indexOf(name);
  if (i < 0) return [];
  const out: string[] = [];
  for (let j = i + 1; j < process.argv.length && !process.argv[j]!.startsWith('--'); j++) out.push(process.argv[j]!);
  return out;
}

function syntheticCorpus(dir: string, mb: number): void {
  const words = ['the', 'whale', 'sea', 'of', 'and', 'ship', 'captain', 'a', 'to', 'in', 'state', 'union', 'congress', 'mail', 'free', 'offer'];
  let s = 12345;
  const docs = 64, per = Math.ceil((mb * 1e6) / docs);
  for (let d = 0; d < docs; d++) {
    const parts: string[] = [];
    let n = 0;
    while (n < per) {
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
      const w = words[(s >>> 0) % words.length]!;
      parts.push(w);
      n += w.length + 1;
      if ((s >>> 8) % 12 === 0) { parts.push('.\n'); n += 2; }
    }
    fs.writeFileSync(path.join(dir, `doc-${String(d).padStart(3, '0')}.txt`), parts.join(' '));
  }
}

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

async function main(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mimetic-lm-data-'));
  try {
    let inputs = args('--text');
    const mb = Number(arg('--mb') ?? 64);
    if (!inputs.length) {
      const t = path.join(tmp, 'text');
      fs.mkdirSync(t);
      syntheticCorpus(t, mb);
      inputs = [t];
    }
    const docs = listDocuments(inputs);
    // Warm the page cache and time a plain whole-file read: the floor for prepare.
    let bytes = 0;
    for (const d of docs) bytes += fs.readFileSync(d.file).length;
    let t0 = process.hrtime.bigint();
    for (const d of docs) fs.readFileSync(d.file);
    const readSec = seconds(t0);

    const results: Record<string, unknown> = {
      bench: 'lm-data', node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? null,
      input: { documents: docs.length, bytes, synthetic: !args('--text').length },
      readWhole: { seconds: readSec, mbPerSec: bytes / 1e6 / readSec },
    };

    t0 = process.hrtime.bigint();
    const meta = await prepareCorpus(inputs, { out: path.join(tmp, 'bytes'), heldOut: 0.05 });
    const prepSec = seconds(t0);
    results.prepareBytes = { seconds: prepSec, mbPerSec: bytes / 1e6 / prepSec, tokens: meta.splits.train.tokens + meta.splits.heldout.tokens, peakRssMb: process.resourceUsage().maxRSS / 1024 };

    const tok = arg('--tokenizer');
    if (tok) {
      t0 = process.hrtime.bigint();
      const m = await prepareCorpus(inputs, { out: path.join(tmp, 'tok'), heldOut: 0.05, tokenizer: tok });
      const s = seconds(t0);
      const tokens = m.splits.train.tokens + m.splits.heldout.tokens;
      results.prepareTokenizer = { seconds: s, mbPerSec: bytes / 1e6 / s, tokens, bytesPerToken: bytes / tokens, vocab: m.vocab, dtype: m.dtype, peakRssMb: process.resourceUsage().maxRSS / 1024 };
    }

    const context = Number(arg('--context') ?? 256), batch = Number(arg('--batch') ?? 32), batches = Number(arg('--batches') ?? 2000);
    // Raw positional reads of one window each.
    const data = TokenData.open(path.join(tmp, 'bytes'));
    const buf = new Int32Array(context + 1);
    const rng = new Rng(0);
    const last = data.tokens('train') - (context + 1);
    const windows = batch * batches;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < windows; i++) data.read('train', rng.int(0, last), context + 1, buf);
    const rs = seconds(t0);
    data.close();
    results.windowRead = { context, windows, seconds: rs, windowsPerSec: windows / rs, tokensPerSec: (windows * (context + 1)) / rs, usPerWindow: (rs / windows) * 1e6 };

    // The task's batches (window reads + the ids/targets/mask arrays), as the trainer draws them.
    const task = new LmTask({ data: path.join(tmp, 'bytes'), context, evalTasks: [], evalLengths: [], sha256: '' });
    const r2 = new Rng(1);
    t0 = process.hrtime.bigint();
    for (let i = 0; i < batches; i++) task.sampleTrain(r2, batch);
    const bs = seconds(t0);
    task.close();
    results.sampleTrain = { context, batch, batches, seconds: bs, msPerBatch: (bs / batches) * 1e3, tokensPerSec: (batches * batch * context) / bs };
    results.peakRssMb = process.resourceUsage().maxRSS / 1024;
    process.stdout.write(JSON.stringify(results, null, 1) + '\n');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
