/**
 * Run metrics: one JSON object per line in `metrics.jsonl` (appended and flushed as the run goes,
 * so a killed run keeps its history), and a progress display (a bar on a TTY, plain lines otherwise).
 */
import * as fs from 'node:fs';
import type { EvalScore, GenLengths } from '../tasks/common.js';
import { writeFileAtomic } from '../util/atomic.js';

export interface HeldOut {
  loss: number;
  bpb: number;
  ppl: number;
  accuracy: number;
  tokens: number;
}

export interface MetricsLine {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  /** Seconds since the run (or the resumed part) started. */
  elapsed: number;
  /** Why the run stopped at this step (a non-finite loss; JSON writes the loss itself as null). */
  error?: string;
  /** Accuracies by eval key, on evaluation steps. */
  eval?: Record<string, Omit<EvalScore, 'key'>>;
  /** LM, on evaluation steps: held-out loss (nats per token), bits per byte, perplexity, next-token accuracy. */
  heldout?: HeldOut;
  /** Copy, on evaluation steps: the generalisation lengths of this evaluation (tasks/common.ts). */
  gen?: GenLengths;
}

/** Read the lines of a metrics file, skipping a torn last line (from a kill). */
export function readMetrics(file: string): MetricsLine[] {
  if (!fs.existsSync(file)) return [];
  const out: MetricsLine[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as MetricsLine);
    } catch {
      /* torn write at the moment of a kill */
    }
  }
  return out;
}

export class MetricsWriter {
  private fd: number;

  /** Open for appending; with `keepUpTo`, first drop lines after that step (a resume redoes them). */
  constructor(readonly file: string, keepUpTo?: number) {
    if (keepUpTo !== undefined) {
      const kept = readMetrics(file).filter((m) => m.step <= keepUpTo);
      writeFileAtomic(file, kept.map((m) => JSON.stringify(m) + '\n').join(''));
    }
    this.fd = fs.openSync(file, 'a');
  }

  write(m: MetricsLine): void {
    fs.writeSync(this.fd, JSON.stringify(m) + '\n');
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

export function fmtDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function fmtRate(x: number): string {
  return x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0);
}

/** Progress output: a redrawn bar on a TTY, a plain line every `every` steps otherwise. */
/** Off a terminal, a progress line every this many steps unless --log-every says otherwise: about 20 lines a run. */
export const LOG_LINES = 20;
export function defaultLogEvery(steps: number): number {
  return Math.max(1, Math.ceil(steps / LOG_LINES));
}

export class Progress {
  private readonly tty: boolean;
  private lastDraw = 0;

  constructor(private readonly out: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean } | null, private readonly total: number, private readonly every: number) {
    this.tty = !!out && !!(out as { isTTY?: boolean }).isTTY;
  }

  update(step: number, loss: number, acc: number | undefined, tokensPerSec: number, etaSec: number): void {
    if (!this.out) return;
    const accS = acc === undefined ? '' : ` acc ${acc.toFixed(3)}`;
    const msg = `step ${step}/${this.total} loss ${loss.toFixed(4)}${accS} ${fmtRate(tokensPerSec)} tok/s ETA ${fmtDuration(etaSec)}`;
    if (this.tty) {
      const now = Date.now();
      if (now - this.lastDraw < 100 && step !== this.total) return;
      this.lastDraw = now;
      const width = 24;
      const filled = Math.round((width * step) / this.total);
      this.out.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${msg}\x1b[K`);
    } else if (step % this.every === 0 || step === this.total) {
      this.out.write(msg + '\n');
    }
  }

  /** A message on its own line (keeps the bar intact on a TTY). */
  line(s: string): void {
    if (!this.out) return;
    this.out.write(this.tty ? `\r\x1b[K${s}\n` : `${s}\n`);
  }

  end(): void {
    if (this.out && this.tty) this.out.write('\n');
  }
}
