/** Line charts (scores across depth) and histograms, drawn from raw pixels with SVG text labels. */
import { Canvas, niceTicks, fmtTicks } from './png.js';
import type { RGB } from './colormap.js';

export const SERIES_COLORS: readonly RGB[] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75]];
const AXIS: RGB = [60, 60, 60];
const GRID: RGB = [228, 228, 228];

export interface Series {
  name: string;
  /** One value per x; null leaves a gap. */
  values: (number | null)[];
  color?: RGB;
  /** Thicker line (e.g. the combined score). */
  emphasis?: boolean;
}

/** What every chart has: labels, an optional y range, a size. */
export interface ChartFrameSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  yRange?: [number, number];
  width?: number;
  height?: number;
}

export interface LineChartSpec extends ChartFrameSpec {
  x: number[];
  series: Series[];
  /** Default: [min(0, data), max(1, data)] widened to whole ticks. */
  yRange?: [number, number];
}

export interface Frame { cv: Canvas; px: (x: number) => number; py: (y: number) => number; left: number; top: number; w: number; h: number }

/** [lo, hi] widened to whole tick steps, so the y axis ends on labelled values. */
export function tickRange(lo: number, hi: number): [number, number] {
  const t = niceTicks(lo, hi, 5);
  const step = t.length > 1 ? t[1]! - t[0]! : 1;
  return [Math.floor(lo / step + 1e-9) * step, Math.ceil(hi / step - 1e-9) * step];
}

/** The ticks `frame` draws for x range `xr` (a plot `w` pixels wide) and y range `yr`. */
export function frameTicks(xr: [number, number], yr: [number, number], w: number, xInt: boolean, yInt = false): { x: number[]; y: number[] } {
  const xs = xr[1] > xr[0] ? xr : [xr[0] - 0.5, xr[0] + 0.5];
  const x = niceTicks(xs[0]!, xs[1]!, Math.min(10, Math.max(2, Math.round(w / 70)))).filter((v) => !xInt || Number.isInteger(v));
  return { x, y: niceTicks(yr[0], yr[1], 5).filter((v) => !yInt || Number.isInteger(v)) };
}

/** Canvas, title, axis labels, grid and ticks of a chart; px / py map data to pixels. */
export function frame(width: number, height: number, xr: [number, number], yr: [number, number], title: string, xLabel: string, yLabel: string, rightPad: number, xInt: boolean, yInt = false, opts: { bottom?: number; xTicks?: boolean } = {}): Frame {
  const left = 62, top = 32, bottom = opts.bottom ?? 46;
  const w = width - left - rightPad, h = height - top - bottom;
  const cv = new Canvas(width, height);
  const xs = xr[1] > xr[0] ? xr : [xr[0] - 0.5, xr[0] + 0.5];
  const px = (x: number) => left + ((x - xs[0]!) / (xs[1]! - xs[0]!)) * w;
  const py = (y: number) => top + h - ((y - yr[0]) / (yr[1] - yr[0])) * h;
  const ticks = frameTicks(xr, yr, w, xInt, yInt);
  const yt = ticks.y;
  const yl = fmtTicks(yt);
  yt.forEach((t, k) => {
    cv.fillRect(left, py(t), w, 1, GRID);
    cv.fillRect(left - 5, py(t), 5, 1, AXIS);
    cv.text(left - 8, py(t) + 4, yl[k]!, { size: 11, anchor: 'end' });
  });
  const xt = opts.xTicks === false ? [] : ticks.x;
  const xl = fmtTicks(xt);
  xt.forEach((t, k) => {
    cv.fillRect(px(t), top + h, 1, 5, AXIS);
    cv.text(px(t), top + h + 18, xl[k]!, { size: 11, anchor: 'middle' });
  });
  cv.fillRect(left, top, 1, h + 1, AXIS);
  cv.fillRect(left, top + h, w, 1, AXIS);
  cv.text(left + w / 2, height - 8, xLabel, { size: 12, anchor: 'middle' });
  cv.text(16, top + h / 2, yLabel, { size: 12, anchor: 'middle', rotate: -90 });
  cv.text(left, 20, title, { size: 13, bold: true });
  return { cv, px, py, left, top, w, h };
}

export async function renderLineChart(spec: LineChartSpec): Promise<Buffer> {
  const width = spec.width ?? 720, height = spec.height ?? 300;
  let lo = 0, hi = 1;
  for (const s of spec.series) for (const v of s.values) if (v !== null && Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const yr = spec.yRange ?? tickRange(lo, hi);
  // Half a step of padding on x so end markers clear the axes.
  const xr: [number, number] = [Math.min(...spec.x) - 0.5, Math.max(...spec.x) + 0.5];
  const f = frame(width, height, xr, yr, spec.title, spec.xLabel, spec.yLabel, 150, true);
  spec.series.forEach((s, k) => {
    const c = s.color ?? SERIES_COLORS[k % SERIES_COLORS.length]!;
    const lw = s.emphasis ? 3 : 1.8;
    for (let i = 0; i < spec.x.length; i++) {
      const v = s.values[i];
      if (v === null || v === undefined || !Number.isFinite(v)) continue;
      const nx = s.values[i + 1];
      if (i + 1 < spec.x.length && nx !== null && nx !== undefined && Number.isFinite(nx)) f.cv.line(f.px(spec.x[i]!), f.py(v), f.px(spec.x[i + 1]!), f.py(nx), c, lw);
      if (spec.x.length <= 64) f.cv.disc(f.px(spec.x[i]!), f.py(v), s.emphasis ? 3.5 : 2.5, c);
    }
    // Legend on the right.
    const ly = f.top + 8 + k * 20;
    const lx = f.left + f.w + 16;
    f.cv.line(lx, ly, lx + 22, ly, c, lw);
    f.cv.text(lx + 28, ly + 4, s.name, { size: 12 });
  });
  return f.cv.toPng();
}

export interface Histogram {
  /** Bin edges (bins + 1), in the plotted (possibly log10) units. */
  edges: number[];
  counts: number[];
  /** Values left out (non-finite, or ≤ 0 on a log axis). */
  dropped: number;
  log10: boolean;
}

/** A bin count for n values: √n, between 5 and 40. */
export function binsFor(n: number): number {
  return Math.min(40, Math.max(5, Math.ceil(Math.sqrt(n))));
}

/** Equal-width bins over [min, max] of the values (of log10|v| when `log10`). */
export function histogram(values: ArrayLike<number>, bins: number, log10 = false): Histogram {
  const xs: number[] = [];
  let dropped = 0;
  for (let i = 0; i < values.length; i++) {
    let v = values[i]!;
    if (log10) v = Math.abs(v) > 0 ? Math.log10(Math.abs(v)) : NaN;
    if (Number.isFinite(v)) xs.push(v); else dropped++;
  }
  let lo = Infinity, hi = -Infinity;
  for (const v of xs) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (!xs.length) { lo = 0; hi = 1; }
  if (hi === lo) { lo -= 0.5; hi += 0.5; }
  const edges = Array.from({ length: bins + 1 }, (_, i) => lo + ((hi - lo) * i) / bins);
  const counts = new Array<number>(bins).fill(0);
  for (const v of xs) counts[Math.min(bins - 1, Math.floor(((v - lo) / (hi - lo)) * bins))]!++;
  return { edges, counts, dropped, log10 };
}

export async function renderHistogram(h: Histogram, spec: { title: string; xLabel: string; width?: number; height?: number; color?: RGB }): Promise<Buffer> {
  const width = spec.width ?? 400, height = spec.height ?? 260;
  const maxC = Math.max(1, ...h.counts);
  const f = frame(width, height, [h.edges[0]!, h.edges[h.edges.length - 1]!], [0, maxC * 1.05], spec.title, spec.xLabel, 'count', 20, false, true);
  const c = spec.color ?? SERIES_COLORS[0]!;
  for (let i = 0; i < h.counts.length; i++) {
    const x0 = f.px(h.edges[i]!), x1 = f.px(h.edges[i + 1]!);
    const y = f.py(h.counts[i]!);
    if (h.counts[i]! > 0) f.cv.fillRect(x0 + 0.5, y, Math.max(1, x1 - x0 - 1), f.top + f.h - y, c);
  }
  return f.cv.toPng();
}
