/**
 * The files of a checkpoint folder are read only when they are what they seem: regular files whose
 * real path lies inside the folder, or inside the Hugging Face cache's `blobs/` (a cache snapshot is
 * a folder of links into it). A link out of the folder would put the outside file's content into
 * reports; a FIFO would block the read forever.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../util/errors.js';

/** What a non-regular file is, in words. */
function kindOf(s: fs.Stats): string {
  return s.isDirectory() ? 'a folder' : s.isFIFO() ? 'a FIFO (named pipe)' : s.isSocket() ? 'a socket' : s.isCharacterDevice() || s.isBlockDevice() ? 'a device' : 'not a regular file';
}

const inside = (p: string, root: string): boolean => p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);

/** The folders a checkpoint folder's files may live in: itself, and its repo's `blobs/` when it is a cache snapshot. */
function allowedRoots(dir: string): string[] {
  const real = fs.realpathSync(dir);
  const snapshots = path.dirname(real);
  const repo = path.dirname(snapshots);
  const roots = [real];
  if (path.basename(snapshots) === 'snapshots' && /^(models|datasets|spaces)--/.test(path.basename(repo))) roots.push(path.join(repo, 'blobs'));
  return roots;
}

/** Whether `name` is listed in `dir` at all (a dangling link counts). */
export function listed(dir: string, name: string): boolean {
  try {
    fs.lstatSync(path.join(dir, name));
    return true;
  } catch {
    return false;
  }
}

/**
 * The path of `name` in checkpoint folder `dir`, checked: it must resolve to a regular file inside
 * the folder (or its cache repo's blobs/). Stat only: nothing is opened.
 */
export function checkpointFile(dir: string, name: string): string {
  const p = path.join(dir, name);
  let real: string;
  try {
    real = fs.realpathSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && listed(dir, name)) throw new UserError(`${p}: is a symbolic link to a file that does not exist; re-download the checkpoint`);
    throw new UserError(`${p}: ${code === 'ENOENT' ? 'no such file' : `cannot read (${code ?? String(e)})`}`);
  }
  if (!allowedRoots(dir).some((r) => inside(real, r))) {
    throw new UserError(`${p}: is a symbolic link to ${real}, outside the checkpoint folder; mimetic reads only files inside it (or in the Hugging Face cache's blobs/); copy the file in if you trust it`);
  }
  const s = fs.statSync(real);
  if (!s.isFile()) throw new UserError(`${p}: is ${kindOf(s)}, not a regular file; give the checkpoint's real files`);
  return p;
}

/**
 * Open a file for reading without ever blocking: O_NONBLOCK makes opening a FIFO return at once (a
 * file swapped in after the check), and a non-regular file is refused before any read.
 */
export function openRegular(file: string, describe: (problem: string) => Error): number {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw describe(code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a file' : `cannot open (${code ?? String(e)})`);
  }
  const s = fs.fstatSync(fd);
  if (!s.isFile()) {
    fs.closeSync(fd);
    throw describe(`is ${kindOf(s)}, not a regular file`);
  }
  return fd;
}

/** A small text file of a checkpoint folder (config.json, the shard index), checked as above. */
export function readCheckpointText(dir: string, name: string): string {
  const p = checkpointFile(dir, name);
  const fd = openRegular(p, (problem) => new UserError(`${p}: ${problem}`));
  try {
    return fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}
