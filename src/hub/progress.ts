/**
 * Download progress on stderr: one redrawn line with bytes, speed and ETA on a terminal, plain
 * start/end lines (and one every 30 s for long files) when stderr is a file or a pipe.
 */

export function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let u = 0;
  let v = n;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
}

function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export interface ProgressSink {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export class Progress {
  private file = '';
  private total = 0;
  private done = 0;
  private startBytes = 0;
  private t0 = 0;
  private lastDraw = 0;
  private lastPlain = 0;
  private drawn = false;

  constructor(private readonly out: ProgressSink | null, private readonly tty = Boolean(out?.isTTY)) {}

  /** A message on its own line (clears a bar being drawn). */
  note(msg: string): void {
    if (!this.out) return;
    this.clearBar();
    this.out.write(`${msg}\n`);
  }

  start(file: string, total: number, already: number): void {
    this.file = file;
    this.total = total;
    this.done = already;
    this.startBytes = already;
    this.t0 = Date.now();
    this.lastDraw = 0;
    this.lastPlain = this.t0;
    if (!this.tty) {
      this.note(already > 0 ? `resuming ${file} at ${formatBytes(already)} of ${formatBytes(total)}` : `downloading ${file} (${formatBytes(total)})`);
    } else {
      this.draw(true);
    }
  }

  /** The byte count restarted (e.g. the server ignored a Range request). */
  reset(bytes: number): void {
    this.done = bytes;
    this.startBytes = bytes;
    this.t0 = Date.now();
  }

  add(bytes: number): void {
    this.done += bytes;
    const now = Date.now();
    if (this.tty && now - this.lastDraw >= 100) this.draw(false);
    else if (!this.tty && now - this.lastPlain >= 30_000) {
      this.lastPlain = now;
      this.note(`  ${this.file}: ${formatBytes(this.done)} of ${formatBytes(this.total)} (${this.speed()})`);
    }
  }

  finish(): void {
    const secs = (Date.now() - this.t0) / 1000;
    const msg = `${this.file}: ${formatBytes(this.total)} in ${formatDuration(secs)} (${this.speed()})`;
    if (this.tty) {
      this.clearBar();
      this.out?.write(`${msg}\n`);
    } else {
      this.note(`  done ${msg}`);
    }
  }

  /** Leave the terminal on a clean line (after an error or Ctrl-C). */
  abort(): void {
    this.clearBar();
  }

  private speed(): string {
    const secs = Math.max((Date.now() - this.t0) / 1000, 1e-3);
    return `${formatBytes(Math.round((this.done - this.startBytes) / secs))}/s`;
  }

  private draw(force: boolean): void {
    if (!this.out) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const frac = this.total > 0 ? Math.min(this.done / this.total, 1) : 1;
    const secs = Math.max((now - this.t0) / 1000, 1e-3);
    const rate = (this.done - this.startBytes) / secs;
    const eta = rate > 0 ? (this.total - this.done) / rate : Infinity;
    const width = 24;
    const filled = Math.round(frac * width);
    const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
    let line = `${this.file} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(this.done)}/${formatBytes(this.total)} ${this.speed()} ETA ${formatDuration(eta)}`;
    const cols = this.out.columns || 100; // 0 when the terminal size is unknown
    if (line.length > cols - 1) line = line.slice(line.length - (cols - 1));
    this.out.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }

  private clearBar(): void {
    if (this.tty && this.drawn && this.out) {
      this.out.write('\r\x1b[2K');
      this.drawn = false;
    }
  }
}
