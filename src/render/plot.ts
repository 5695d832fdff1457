/**
 * Multi-series line charts on a numeric x axis with optional error bands (mean ± std), e.g.
 * accuracy against evaluation length over seeds, or mean loss curves; and grouped bar charts with
 * error bars over named categories (an ablation). Drawn on the same raw canvas as chart.ts
 * (pixels + an SVG text overlay, encoded by sharp).
 */
import { frame, SERIES_COLORS, tickRange, type ChartFrameSpec } from './chart.js';
import type { RGB } from './colormap.js';

const MORE_COLORS: readonly RGB[] = [...SERIES_COLORS, [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [0, 0, 128], [170, 110, 40]];

export interface BandSeries {
  name: string;
  x: number[];
  y: number[];
  /** Half-width of the band at each x (e.g. the std); omitted: no band. */
  err?: number[];
  color?: RGB;
}

export interface BandChartSpec extends ChartFrameSpec {
  series: BandSeries[];
  /** Default: the data's range widened to whole ticks. */
  yRange?: [number, number];
  /** Draw a marker at each point (default: when a series has at most 64 points). */
  markers?: boolean;
}

export function seriesColor(k: number): RGB {
  return MORE_COLORS[k % MORE_COLORS.length]!;
}

/** The axes' data ranges of a band chart, and whether x ticks are whole numbers. */
export function bandRanges(spec: Pick<BandChartSpec, 'series' | 'yRange'>): { xr: [number, number]; yr: [number, number]; xInt: boolean } {
  let xlo = Infinity, xhi = -Infinity, ylo = Infinity, yhi = -Infinity;
  for (const s of spec.series) {
    s.x.forEach((x, i) => {
      const y = s.y[i]!, e = s.err?.[i] ?? 0;
      if (!Number.isFinite(x) || !Number.isFinite(y)) return;
      xlo = Math.min(xlo, x); xhi = Math.max(xhi, x);
      ylo = Math.min(ylo, y - e); yhi = Math.max(yhi, y + e);
    });
  }
  if (!Number.isFinite(xlo)) { xlo = 0; xhi = 1; ylo = 0; yhi = 1; }
  if (xhi === xlo) { xlo -= 0.5; xhi += 0.5; }
  if (yhi === ylo) { ylo -= 0.5; yhi += 0.5; }
  // A range tiny against its values (a flat loss) would get ticks 1e-5 apart: show at least 2 % of the magnitude.
  const minSpan = 0.02 * Math.max(Math.abs(ylo), Math.abs(yhi));
  if (yhi - ylo < minSpan) { const mid = (ylo + yhi) / 2; ylo = mid - minSpan / 2; yhi = mid + minSpan / 2; }
  const yr = spec.yRange ?? tickRange(ylo, yhi);
  const pad = (xhi - xlo) * 0.03;
  // Integer data (lengths, steps) get integer ticks only: one length is one tick, not 2.6–3.4.
  const xInt = spec.series.every((s) => s.x.every((x) => Number.isInteger(x)));
  return { xr: [xlo - pad, xhi + pad], yr, xInt };
}

export async function renderBandChart(spec: BandChartSpec): Promise<Buffer> {
  // The legend sits right of the plot: widen the image for long series names (~7 px a character at 12 px).
  const longest = Math.max(0, ...spec.series.map((s) => s.name.length));
  const right = Math.max(190, 44 + Math.ceil(7 * longest));
  const width = (spec.width ?? 760) + (right - 190), height = spec.height ?? 340;
  const { xr, yr, xInt } = bandRanges(spec);
  const f = frame(width, height, xr, yr, spec.title, spec.xLabel, spec.yLabel, right, xInt);
  const { cv, px } = f;
  // Bands and lines are clipped to the y range.
  const py = (y: number) => f.py(Math.min(yr[1], Math.max(yr[0], y)));
  // Bands first (translucent), then lines on top.
  spec.series.forEach((s, k) => {
    if (!s.err) return;
    const c = s.color ?? seriesColor(k);
    for (let i = 0; i + 1 < s.x.length; i++) {
      const x0 = px(s.x[i]!), x1 = px(s.x[i + 1]!);
      for (let X = Math.round(x0); X <= Math.round(x1); X++) {
        const t = x1 > x0 ? Math.min(1, Math.max(0, (X - x0) / (x1 - x0))) : 0;
        const m = s.y[i]! + t * (s.y[i + 1]! - s.y[i]!);
        const e = s.err[i]! + t * (s.err[i + 1]! - s.err[i]!);
        const ya = Math.round(py(m + e)), yb = Math.round(py(m - e));
        for (let Y = ya; Y <= yb; Y++) cv.setPixel(X, Y, c, 0.16);
      }
    }
    if (s.x.length === 1) {
      const X = px(s.x[0]!);
      for (let Y = Math.round(py(s.y[0]! + s.err[0]!)); Y <= Math.round(py(s.y[0]! - s.err[0]!)); Y++) cv.fillRect(X - 1, Y, 3, 1, c);
    }
  });
  spec.series.forEach((s, k) => {
    const c = s.color ?? seriesColor(k);
    const marks = spec.markers ?? s.x.length <= 64;
    for (let i = 0; i < s.x.length; i++) {
      if (i + 1 < s.x.length) cv.line(px(s.x[i]!), py(s.y[i]!), px(s.x[i + 1]!), py(s.y[i + 1]!), c, 1.8);
      if (marks) cv.disc(px(s.x[i]!), py(s.y[i]!), 2.8, c);
    }
    const ly = f.top + 8 + k * 20;
    const lx = f.left + f.w + 16;
    cv.line(lx, ly, lx + 22, ly, c, 2);
    cv.text(lx + 28, ly + 4, s.name, { size: 12 });
  });
  return cv.toPng();
}

export interface BarChartSpec extends ChartFrameSpec {
  /** One group of bars per category, labelled under the axis. */
  categories: string[];
  /** One bar per category per series; NaN leaves the bar out. */
  series: { name: string; values: number[]; err?: number[]; color?: RGB }[];
}

export async function renderBarChart(spec: BarChartSpec): Promise<Buffer> {
  const longestName = Math.max(0, ...spec.series.map((s) => s.name.length));
  const right = Math.max(150, 44 + Math.ceil(7 * longestName));
  // Category labels are written vertically under the axis: leave room for the longest.
  const bottom = 40 + Math.ceil(6.5 * Math.max(1, ...spec.categories.map((c) => c.length)));
  const width = Math.max(spec.width ?? 760, 62 + right + 22 * spec.categories.length * Math.max(1, spec.series.length));
  const height = (spec.height ?? 300) + bottom - 46;
  let hi = 0, lo = 0;
  for (const s of spec.series) s.values.forEach((v, i) => { if (Number.isFinite(v)) { hi = Math.max(hi, v + (s.err?.[i] ?? 0)); lo = Math.min(lo, v - (s.err?.[i] ?? 0)); } });
  const yr = spec.yRange ?? tickRange(lo, hi > lo ? hi : lo + 1);
  const C = spec.categories.length;
  const f = frame(width, height, [-0.5, C - 0.5], yr, spec.title, spec.xLabel, spec.yLabel, right, false, false, { bottom, xTicks: false });
  const { cv, px } = f;
  const py = (y: number) => f.py(Math.min(yr[1], Math.max(yr[0], y)));
  const S = Math.max(1, spec.series.length);
  const slot = (px(1) - px(0)) * 0.8 / S;
  spec.categories.forEach((cat, ci) => {
    cv.text(px(ci) + 4, f.top + f.h + 8, cat, { size: 11, anchor: 'end', rotate: -90 });
    spec.series.forEach((s, k) => {
      const v = s.values[ci]!;
      if (!Number.isFinite(v)) return;
      const c = s.color ?? seriesColor(k);
      const x0 = px(ci) - (S * slot) / 2 + k * slot;
      const y0 = py(Math.max(yr[0], 0)), y1 = py(v);
      cv.fillRect(x0 + 1, Math.min(y0, y1), Math.max(1, slot - 2), Math.max(1, Math.abs(y0 - y1)), c);
      const e = s.err?.[ci];
      if (e !== undefined && e > 0) {
        const xm = x0 + slot / 2;
        cv.line(xm, py(v - e), xm, py(v + e), [40, 40, 40], 1.2);
        cv.line(xm - 3, py(v - e), xm + 3, py(v - e), [40, 40, 40], 1.2);
        cv.line(xm - 3, py(v + e), xm + 3, py(v + e), [40, 40, 40], 1.2);
      }
    });
  });
  spec.series.forEach((s, k) => {
    const ly = f.top + 8 + k * 20, lx = f.left + f.w + 16;
    cv.fillRect(lx, ly - 5, 22, 10, s.color ?? seriesColor(k));
    cv.text(lx + 28, ly + 4, s.name, { size: 12 });
  });
  return cv.toPng();
}
