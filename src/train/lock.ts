/**
 * Host-local locks held by a live process: a sweep folder's `.sweep/lock`, a run folder's `.lock`.
 * The file names its holder (pid, the process's start time, a token per lock taken), so a lock
 * left by a killed process is known stale at once, and a second lock taken in the same process is
 * refused like any other. Taking over a stale lock is atomic: the check that it is still the stale
 * one and its removal happen under a short guard file that one process at a time can create, so two
 * processes that both found it stale cannot both end up holding it (one would otherwise remove the
 * lock the other had just made).
 */
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';

export interface LockHolder {
  pid: number;
  /** Process start time (/proc/<pid>/stat field 22) where there is one: guards against a reused pid. */
  start: string | null;
  token: string;
}

function startTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** Whether a process with this pid exists (EPERM: it does, owned by another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parse(text: string): LockHolder | null {
  // Older sweeps wrote the bare pid.
  const [pid, start, token] = text.trim().split(':');
  const n = Number(pid);
  return Number.isSafeInteger(n) && n > 0 ? { pid: n, start: start || null, token: token ?? '' } : null;
}

function read(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** The live holder of lock `file`, or null when it is free or stale (its process is gone). */
export function lockHolder(file: string, alive: (h: LockHolder) => boolean = () => true): LockHolder | null {
  const text = read(file);
  const h = text === null ? null : parse(text);
  if (!h || !pidAlive(h.pid)) return null;
  const start = startTime(h.pid);
  if (h.start && start && h.start !== start) return null; // the pid was reused
  return alive(h) ? h : null;
}

/** Exclusive create of `file` holding `text`: false when it exists. */
function create(file: string, text: string): boolean {
  try {
    fs.writeFileSync(file, text, { flag: 'wx' });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

/** A takeover lasts milliseconds; a guard older than this was left by a process killed mid-takeover. */
const GUARD_STALE_MS = 10_000;

/** Remove `file` if it still holds `stale`, with no other process doing the same at the same time. */
function removeIfStill(file: string, stale: string): void {
  const guard = `${file}.takeover`;
  const me = `${process.pid}:${randomBytes(6).toString('hex')}`;
  for (let i = 0; !create(guard, me); i++) {
    try {
      if (Date.now() - fs.statSync(guard).mtimeMs > GUARD_STALE_MS) fs.rmSync(guard, { force: true });
    } catch {
      /* gone meanwhile */
    }
    if (i > 200) return; // another process is taking it over; the caller tries again
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
  try {
    if (read(file) === stale) fs.rmSync(file, { force: true });
  } finally {
    if (read(guard) === me) fs.rmSync(guard, { force: true });
  }
}

/**
 * Take lock `file`; returns its release, or the live holder when another process (or another lock
 * of this one) has it. `alive` may add a check of the holder (the sweep's: its command is a sweep).
 */
export function takeLock(file: string, alive?: (h: LockHolder) => boolean): { release: () => void } | { holder: LockHolder } {
  const mine = `${process.pid}:${startTime(process.pid) ?? ''}:${randomBytes(8).toString('hex')}`;
  for (let attempt = 0; attempt < 5; attempt++) {
    if (create(file, mine)) return { release: () => { if (read(file) === mine) fs.rmSync(file, { force: true }); } };
    const text = read(file);
    if (text === null) continue; // released meanwhile
    const holder = lockHolder(file, alive);
    if (holder) return { holder };
    removeIfStill(file, text);
  }
  const holder = lockHolder(file, alive);
  if (holder) return { holder };
  throw new Error(`${file}: could not take the lock (it keeps changing hands)`);
}
