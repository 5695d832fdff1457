/**
 * Per-layer progress of the long model commands (score, report, forward), on stderr so stdout
 * stays clean for `--json`: a redrawn bar on a terminal, and plain lines (`scoring: layer 3/24,
 * 41 s`) when stderr is a file or a pipe, so nohup and CI logs show the run is alive.
 */

export interface ProgressOut {
  write(s: string): unknown;
  isTTY?: boolean;
}

export interface LayerProgress {
  /** `done` of `total` layers finished, the last being `layer`. */
  update(done: number, total: number, layer: number): void;
  /** Clear the bar (a terminal); plain lines need no ending. */
  done(): void;
}

export function layerProgress(label: string, out: ProgressOut | null = process.stderr): LayerProgress {
  const tty = Boolean(out?.isTTY);
  const t0 = Date.now();
  let drawn = false;
  return {
    update(done, total, layer) {
      if (!out) return;
      const secs = (Date.now() - t0) / 1000;
      if (!tty) {
        // `layer 3/24` when the layers run in order from 0, else which layer the count reached.
        const which = done === layer + 1 ? `layer ${done}/${total}` : `${done}/${total} layers (layer ${layer})`;
        out.write(`${label}: ${which}, ${secs.toFixed(0)} s\n`);
        return;
      }
      const w = 28, f = Math.round((done / Math.max(1, total)) * w);
      const eta = done > 0 ? (secs / done) * (total - done) : NaN;
      out.write(`\r\x1b[2K${label} [${'#'.repeat(f)}${'-'.repeat(w - f)}] ${done}/${total} layers (last: ${layer}) ${secs.toFixed(0)} s${Number.isFinite(eta) && done < total ? `, ETA ${eta.toFixed(0)} s` : ''}`);
      drawn = true;
    },
    done() {
      if (out && tty && drawn) out.write('\r\x1b[2K');
      drawn = false;
    },
  };
}
