/** A Hugging Face tokenizer.json through @huggingface/tokenizers (no hand-written BPE). */
import * as fs from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { UserError } from '../util/errors.js';

export interface TextTokenizer {
  /** Ids below this. */
  vocab: number;
  encode(text: string): number[];
}

export function loadTokenizer(file: string): TextTokenizer {
  if (!fs.existsSync(file)) throw new UserError(`--tokenizer ${file}: no such file; give a Hugging Face tokenizer.json`);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`--tokenizer ${file}: not JSON (${(e as Error).message}); give a Hugging Face tokenizer.json`);
  }
  let tk: Tokenizer;
  try {
    tk = new Tokenizer(json as object, {});
  } catch (e) {
    throw new UserError(`--tokenizer ${file}: not a tokenizer the tokenizers library reads (${(e as Error).message})`);
  }
  let vocab = 0;
  for (const id of tk.get_vocab(true).values()) vocab = Math.max(vocab, id + 1);
  if (vocab < 2) throw new UserError(`--tokenizer ${file}: its vocabulary is empty`);
  return { vocab, encode: (text) => tk.encode(text, { add_special_tokens: false }).ids };
}
