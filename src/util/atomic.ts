import * as fs from 'node:fs';
import * as path from 'node:path';

/** A sibling temporary path, unique per process and call, so concurrent writers never collide. */
export function tempSibling(target: string): string {
  const dir = path.dirname(target);
  const base = path.basename(target);
  return path.join(dir, `.${base}.tmp-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`);
}

/** Write a file via temp + fsync + rename, so a crash never leaves a half-written target. */
export function writeFileAtomic(target: string, data: string | Uint8Array): void {
  const tmp = tempSibling(target);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, target);
}

/**
 * Build a folder in a temporary sibling and rename it into place at the end. If `fill` throws,
 * the temporary folder is removed and the target is untouched.
 */
export async function writeDirAtomic(target: string, fill: (tmpDir: string) => Promise<void> | void, opts: { replace?: boolean } = {}): Promise<void> {
  fs.mkdirSync(path.dirname(path.resolve(target)), { recursive: true });
  const tmp = tempSibling(path.resolve(target));
  fs.mkdirSync(tmp);
  try {
    await fill(tmp);
    if (opts.replace && fs.existsSync(target)) {
      const old = tempSibling(path.resolve(target));
      fs.renameSync(target, old);
      fs.renameSync(tmp, target);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, target);
    }
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
