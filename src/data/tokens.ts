/**
 * Positional reads from a prepared corpus: a window is read from the token file at its offset
 * (one pread), so a corpus larger than memory works; nothing reads a file whole.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../util/errors.js';
import { BYTES_PER_TOKEN, type CorpusMeta, type Split, readMeta } from './meta.js';

export class TokenData {
  private fds = new Map<Split, number>();
  private constructor(readonly dir: string, readonly meta: CorpusMeta) {}

  static open(dir: string): TokenData {
    return new TokenData(dir, readMeta(dir));
  }

  tokens(split: Split): number {
    return this.meta.splits[split].tokens;
  }

  /** Bytes of text per token in a split (1 for the byte vocabulary): turns nats/token into bits/byte. */
  bytesPerToken(split: Split): number {
    const s = this.meta.splits[split];
    return s.tokens > 0 ? s.bytes / s.tokens : 1;
  }

  /** Read tokens [start, start+n) of a split into out[at..at+n). */
  read(split: Split, start: number, n: number, out: Int32Array, at = 0): void {
    const total = this.tokens(split);
    if (start < 0 || start + n > total) throw new Error(`TokenData.read: [${start}, ${start + n}) outside the ${split} split's ${total} tokens`);
    let fd = this.fds.get(split);
    if (fd === undefined) {
      fd = fs.openSync(path.join(this.dir, this.meta.splits[split].file), 'r');
      this.fds.set(split, fd);
    }
    const bpt = BYTES_PER_TOKEN[this.meta.dtype];
    // A fresh ArrayBuffer: aligned for the typed view below.
    const buf = new Uint8Array(n * bpt);
    let got = 0;
    while (got < buf.length) {
      const r = fs.readSync(fd, buf, got, buf.length - got, start * bpt + got);
      if (r === 0) throw new UserError(`${path.join(this.dir, this.meta.splits[split].file)}: ends early; prepare the corpus again`);
      got += r;
    }
    const view = bpt === 1 ? buf : bpt === 2 ? new Uint16Array(buf.buffer) : new Uint32Array(buf.buffer);
    out.set(view, at);
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }
}
