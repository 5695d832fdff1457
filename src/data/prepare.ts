/**
 * `mimetic data prepare`: text files (or folders of them) → a prepared token folder (meta.ts).
 * Each file is one document. Files are streamed in chunks; with a tokenizer a document is encoded
 * whole up to the chunk size, and a longer one in pieces cut before a line break (tokenizerCut). The
 * held-out split is by document: a document is held out when a hash of (seed, its name) falls
 * below the fraction, so the split depends on neither file order nor content. The folder is
 * built under a temporary name and renamed into place.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeDirAtomic, writeFileAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { deriveSeed } from '../util/rng.js';
import { type CorpusMeta, type DocumentEntry, META_FILE, META_FORMAT, type Split, type SplitEntry, dtypeFor } from './meta.js';
import { loadTokenizer, type TextTokenizer } from './tokenizer.js';

export interface PrepareOptions {
  out: string;
  /** A Hugging Face tokenizer.json; undefined: byte-level (vocab 256). */
  tokenizer?: string;
  /** Fraction of documents held out (default 0.05). */
  heldOut?: number;
  splitSeed?: number;
  /** Read chunk in bytes (default 4 MiB). */
  chunk?: number;
  onDocument?: (done: number, total: number, bytes: number) => void;
}

export const DEFAULT_HELD_OUT = 0.05;

interface Source { name: string; file: string }

/** The documents under the inputs, in a fixed order: each input in turn, a folder's files sorted by path (hidden ones skipped). */
export function listDocuments(inputs: string[]): Source[] {
  if (!inputs.length) throw new UserError('data prepare: give at least one text file or folder');
  const out: Source[] = [];
  const seen = new Set<string>();
  const add = (name: string, file: string) => {
    if (seen.has(name)) throw new UserError(`data prepare: two documents named '${name}'; give inputs with different names`);
    seen.add(name);
    out.push({ name, file });
  };
  for (const input of inputs) {
    if (!fs.existsSync(input)) throw new UserError(`data prepare: ${input}: no such file or folder`);
    const base = path.basename(path.resolve(input));
    if (fs.statSync(input).isFile()) { add(base, input); continue; }
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        if (e.name.startsWith('.')) continue;
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) files.push(path.relative(input, p).split(path.sep).join('/'));
      }
    };
    walk(input);
    files.sort();
    for (const f of files) add(`${base}/${f}`, path.join(input, f));
  }
  if (!out.length) throw new UserError(`data prepare: no files under ${inputs.join(', ')}`);
  return out;
}

/** Held-out documents: hash(seed, name) / 2³² < fraction; at least one of each split when there are two or more documents. */
export function splitOf(names: string[], fraction: number, seed: number): Split[] {
  const u = names.map((n) => deriveSeed(seed, `heldout:${n}`) / 2 ** 32);
  const split: Split[] = u.map((x) => (x < fraction ? 'heldout' : 'train'));
  if (fraction > 0 && names.length >= 2) {
    const order = u.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
    if (!split.includes('heldout')) split[order[0]![1]] = 'heldout';
    if (!split.includes('train')) split[order.at(-1)![1]] = 'train';
  }
  return split;
}

class SplitWriter {
  readonly fd: number;
  readonly hash = createHash('sha256');
  tokens = 0;
  bytes = 0;
  documents = 0;
  constructor(readonly file: string, readonly bpt: number) {
    this.fd = fs.openSync(file, 'w');
  }
  writeIds(ids: ArrayLike<number>): void {
    const arr = this.bpt === 1 ? Uint8Array.from(ids) : this.bpt === 2 ? Uint16Array.from(ids) : Uint32Array.from(ids);
    this.writeRaw(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength), ids.length);
  }
  writeRaw(b: Uint8Array, tokens: number): void {
    let off = 0;
    while (off < b.length) off += fs.writeSync(this.fd, b, off, b.length - off);
    this.hash.update(b);
    this.tokens += tokens;
  }
  finish(): SplitEntry {
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    return { file: path.basename(this.file), tokens: this.tokens, bytes: this.bytes, documents: this.documents, sha256: this.hash.digest('hex') };
  }
}

/** ASCII whitespace: space, \t, \n, \v, \f, \r. */
const isSpace = (b: number) => b === 32 || (b >= 9 && b <= 13);

/**
 * Where a tokenizer chunk may end: before the last line break that follows a non-space byte (so
 * the chunk ends inside no character, and no whitespace run is split: a run cut at the chunk's end
 * pre-tokenizes differently, e.g. GPT-2's byte-level regex takes "\n\n" at the end of a string as
 * one piece but as two before a word). -1 when there is none.
 */
export function tokenizerCut(b: Uint8Array): number {
  for (let i = b.length - 1; i > 0; i--) if (b[i] === 10 && !isSpace(b[i - 1]!)) return i;
  return -1;
}

/**
 * Stream one document into w (byte-level, or through the tokenizer). Returns its bytes. With a
 * tokenizer a document of up to `chunk` bytes is encoded whole; a longer one in pieces of at least
 * `chunk` bytes cut by tokenizerCut (or, past 8 chunks with no such place, at any line break).
 */
function streamDocument(file: string, w: SplitWriter, tk: TextTokenizer | null, chunk: number): number {
  const fd = fs.openSync(file, 'r');
  const buf = new Uint8Array(chunk);
  let bytes = 0;
  let pending: Uint8Array = new Uint8Array(0);
  const encode = (b: Uint8Array) => {
    if (b.length === 0) return;
    const ids = tk!.encode(Buffer.from(b.buffer, b.byteOffset, b.length).toString('utf8'));
    for (const id of ids) if (!(id >= 0 && id < tk!.vocab)) throw new UserError(`--tokenizer: id ${id} outside its vocabulary of ${tk!.vocab}`);
    w.writeIds(ids);
  };
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, chunk, null);
      if (n === 0) break;
      bytes += n;
      const got = buf.subarray(0, n);
      if (!tk) { w.writeRaw(got, n); continue; }
      pending = concat(pending, got);
      if (pending.length < chunk) continue;
      let cut = tokenizerCut(pending);
      if (cut < 0 && pending.length >= 8 * chunk) cut = pending.lastIndexOf(10) + 1;
      if (cut > 0) {
        encode(pending.subarray(0, cut));
        pending = pending.slice(cut);
      }
    }
    if (tk) encode(pending);
  } finally {
    fs.closeSync(fd);
  }
  return bytes;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Prepare the corpus; returns its meta. The output folder must not exist (or be empty). */
export async function prepareCorpus(inputs: string[], o: PrepareOptions): Promise<CorpusMeta> {
  const fraction = o.heldOut ?? DEFAULT_HELD_OUT;
  if (!(fraction >= 0 && fraction <= 0.5)) throw new UserError(`--held-out: ${fraction} must be between 0 and 0.5`);
  const seed = o.splitSeed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new UserError(`--split-seed: ${seed} must be an integer ≥ 0`);
  if (fs.existsSync(o.out) && (!fs.statSync(o.out).isDirectory() || fs.readdirSync(o.out).length > 0)) {
    throw new UserError(`--out ${o.out}: already exists and is not empty; choose a new folder or remove it`);
  }
  const docs = listDocuments(inputs);
  if (fraction > 0 && docs.length < 2) throw new UserError(`data prepare: one document (${docs[0]!.name}) cannot be split by document; give two or more files, or --held-out 0`);
  const tk = o.tokenizer ? loadTokenizer(o.tokenizer) : null;
  const vocab = tk ? tk.vocab : 256;
  const dtype = dtypeFor(vocab);
  const splits = splitOf(docs.map((d) => d.name), fraction, seed);
  const chunk = o.chunk ?? 4 << 20;
  let meta!: CorpusMeta;
  if (fs.existsSync(o.out)) fs.rmdirSync(o.out);
  await writeDirAtomic(o.out, (tmp) => {
    const bpt = dtype === 'uint8' ? 1 : dtype === 'uint16' ? 2 : 4;
    const writers: Record<Split, SplitWriter> = { train: new SplitWriter(path.join(tmp, 'train.bin'), bpt), heldout: new SplitWriter(path.join(tmp, 'heldout.bin'), bpt) };
    const entries: DocumentEntry[] = [];
    try {
      docs.forEach((d, i) => {
        const w = writers[splits[i]!];
        const start = w.tokens;
        const bytes = streamDocument(d.file, w, tk, chunk);
        o.onDocument?.(i + 1, docs.length, bytes);
        if (bytes === 0) return; // an empty file is no document
        w.bytes += bytes;
        w.documents++;
        entries.push({ name: d.name, split: splits[i]!, start, tokens: w.tokens - start, bytes });
      });
    } catch (e) {
      for (const w of Object.values(writers)) { try { fs.closeSync(w.fd); } catch { /* closed */ } }
      throw e;
    }
    const train = writers.train.finish(), heldout = writers.heldout.finish();
    let tokenizer: CorpusMeta['tokenizer'] = null;
    if (o.tokenizer) {
      const text = fs.readFileSync(o.tokenizer);
      fs.writeFileSync(path.join(tmp, 'tokenizer.json'), text);
      tokenizer = { file: 'tokenizer.json', sha256: createHash('sha256').update(text).digest('hex') };
    }
    meta = { format: META_FORMAT, version: 1, vocab, dtype, tokenizer, heldOutFraction: fraction, splitSeed: seed, splits: { train, heldout }, documents: entries };
    writeFileAtomic(path.join(tmp, META_FILE), JSON.stringify(meta, null, 1) + '\n');
  });
  return meta;
}
