/**
 * Every writer goes through here: a file or folder is built under a temporary sibling name and
 * renamed into place, so a crash, a kill or a full disk never leaves a half-written target.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from './errors.js';

/** A sibling temporary path, unique per process and call, so concurrent writers never collide. */
export function tempSibling(target: string, kind: 'tmp' | 'old' = 'tmp'): string {
  const dir = path.dirname(target);
  const base = path.basename(target);
  return path.join(dir, `.${base}.${kind}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`);
}

const FULL: Record<string, string> = { ENOSPC: 'no space left on the device', EDQUOT: 'disk quota exceeded' };

/** A write that failed for want of space: the outermost target is named, whatever file inside it failed. */
export class DiskFullError extends UserError {
  override name = 'DiskFullError';
  constructor(readonly target: string, readonly code: string, kept: boolean) {
    super(`${target}: ${FULL[code]} (${code}) while writing it; the partial copy was removed${kept ? ' and the previous version is unchanged' : ''}; free some space and run again`);
  }
}

/** `e` as a DiskFullError for `target` when it is one (or an ENOSPC/EDQUOT from below), else `e`. */
function asDiskFull(e: unknown, target: string, kept: boolean): unknown {
  const code = e instanceof DiskFullError ? e.code : (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && code in FULL ? new DiskFullError(target, code, kept) : e;
}

/** Whether a process with this pid runs on this machine (EPERM: it does, as another user). */
function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove what killed writers of `target` left beside it: `.<name>.tmp-<pid>-…` whose process is gone.
 * A `.<name>.old-<pid>-…` is the previous target moved aside by a replace that was killed before it
 * finished: put back when the target is missing, else removed.
 */
export function cleanStaleTemporaries(target: string): void {
  const dir = path.dirname(target);
  const base = path.basename(target);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  const prefix = `.${base}.`;
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const m = /^(tmp|old)-(\d+)-[0-9a-z]+-[0-9a-z]+$/.exec(n.slice(prefix.length));
    if (!m || alive(Number(m[2]))) continue;
    const p = path.join(dir, n);
    try {
      if (m[1] === 'old' && !fs.existsSync(target)) fs.renameSync(p, target);
      else fs.rmSync(p, { recursive: true, force: true });
    } catch {
      // Another run cleaning at the same moment; what is left is its to remove.
    }
  }
}

/** Write a file via temp + fsync + rename; `write` gets the temporary file's descriptor. */
export function writeFileAtomicWith(target: string, write: (fd: number) => void): void {
  const kept = fs.existsSync(target);
  cleanStaleTemporaries(target);
  const tmp = tempSibling(target);
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'w');
    write(fd);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, target);
  } catch (e) {
    if (fd !== null) try { fs.closeSync(fd); } catch { /* already closed */ }
    fs.rmSync(tmp, { force: true });
    throw asDiskFull(e, target, kept);
  }
}

/** Write a file via temp + fsync + rename, so a crash never leaves a half-written target. */
export function writeFileAtomic(target: string, data: string | Uint8Array): void {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  writeFileAtomicWith(target, (fd) => {
    let off = 0;
    while (off < bytes.byteLength) off += fs.writeSync(fd, bytes, off, bytes.byteLength - off);
  });
}

/**
 * Build a folder in a temporary sibling and rename it into place at the end. If `fill` throws,
 * the temporary folder is removed and the target is untouched.
 */
export async function writeDirAtomic(target: string, fill: (tmpDir: string) => Promise<void> | void, opts: { replace?: boolean } = {}): Promise<void> {
  const abs = path.resolve(target);
  const kept = fs.existsSync(target);
  let tmp: string | null = null;
  try {
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    cleanStaleTemporaries(abs);
    tmp = tempSibling(abs);
    fs.mkdirSync(tmp);
    await fill(tmp);
    if (opts.replace && fs.existsSync(target)) {
      const old = tempSibling(abs, 'old');
      fs.renameSync(target, old);
      try {
        fs.renameSync(tmp, target);
      } catch (e) {
        fs.renameSync(old, target);
        throw e;
      }
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, target);
    }
  } catch (e) {
    if (tmp !== null) fs.rmSync(tmp, { recursive: true, force: true });
    throw asDiskFull(e, target, kept);
  }
}
