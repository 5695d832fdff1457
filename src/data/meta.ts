/**
 * A prepared corpus: `train.bin` and `heldout.bin` (little-endian token ids, uint8 for the byte
 * vocabulary, uint16/uint32 for a tokenizer's) and `meta.json` describing them: vocabulary,
 * tokenizer, the documents with their split and boundaries, and each file's sha256.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../util/errors.js';

export const META_FILE = 'meta.json';
export const META_FORMAT = 'mimetic-tokens';
export const SPLITS = ['train', 'heldout'] as const;
export type Split = (typeof SPLITS)[number];
export type TokenDtype = 'uint8' | 'uint16' | 'uint32';

export const BYTES_PER_TOKEN: Record<TokenDtype, number> = { uint8: 1, uint16: 2, uint32: 4 };

/** The narrowest dtype that holds ids below `vocab`. */
export function dtypeFor(vocab: number): TokenDtype {
  return vocab <= 256 ? 'uint8' : vocab <= 65536 ? 'uint16' : 'uint32';
}

export interface DocumentEntry {
  /** Path of the source file relative to the input it came from (its basename first). */
  name: string;
  split: Split;
  /** First token of the document in its split's file. */
  start: number;
  tokens: number;
  /** UTF-8 bytes of the document's text. */
  bytes: number;
}

export interface SplitEntry {
  file: string;
  tokens: number;
  bytes: number;
  documents: number;
  sha256: string;
}

export interface CorpusMeta {
  format: typeof META_FORMAT;
  version: 1;
  vocab: number;
  dtype: TokenDtype;
  /** null: byte-level (token = byte). Else the tokenizer copied into the folder. */
  tokenizer: { file: string; sha256: string } | null;
  /** The held-out split: documents whose hash of (seed, name) falls below this fraction. */
  heldOutFraction: number;
  splitSeed: number;
  splits: Record<Split, SplitEntry>;
  documents: DocumentEntry[];
}

/** Read and check a prepared folder's meta.json (every problem one line). */
export function readMeta(dir: string): CorpusMeta {
  const file = path.join(dir, META_FILE);
  if (!fs.existsSync(file)) throw new UserError(`${dir}: no ${META_FILE}; prepare the corpus with 'mimetic data prepare PATH... --out ${dir}'`);
  let m: CorpusMeta;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8')) as CorpusMeta;
  } catch (e) {
    throw new UserError(`${file}: unreadable (${(e as Error).message}); prepare the corpus again`);
  }
  if (m?.format !== META_FORMAT || m.version !== 1) throw new UserError(`${file}: not a mimetic token folder (format ${JSON.stringify(m?.format)}); prepare the corpus with 'mimetic data prepare'`);
  if (!(m.dtype in BYTES_PER_TOKEN)) throw new UserError(`${file}: unknown dtype ${JSON.stringify(m.dtype)}`);
  for (const s of SPLITS) {
    const e = m.splits?.[s];
    if (!e) throw new UserError(`${file}: no '${s}' split`);
    const bin = path.join(dir, e.file);
    const size = fs.existsSync(bin) ? fs.statSync(bin).size : -1;
    if (size !== e.tokens * BYTES_PER_TOKEN[m.dtype]) {
      throw new UserError(`${bin}: ${size < 0 ? 'missing' : `${size} bytes, meta.json says ${e.tokens} ${m.dtype} tokens`}; the folder is damaged, prepare the corpus again`);
    }
  }
  return m;
}

/** Is this path a prepared token folder? */
export function isPrepared(p: string): boolean {
  return fs.existsSync(path.join(p, META_FILE));
}
