/**
 * Heatmaps rendered from raw pixels: the map, axis ticks and labels, a title and a colour bar.
 * A map larger than the image is shrunk by averaging blocks of cells (every row and column
 * contributes; none is dropped); a smaller one is enlarged by an integer factor.
 */
import { Canvas, niceTicks, fmtTicks } from './png.js';
import { colorOf, type ColorScale, type RGB } from './colormap.js';

export interface Grid {
  data: Float32Array;
  rows: number;
  cols: number;
}

/**
 * Average blocks of `br`×`bc` cells (the last block in each direction may be smaller). With
 * `valid`, only valid cells are averaged; a block with none is NaN.
 */
export function downsampleMean(data: ArrayLike<number>, rows: number, cols: number, br: number, bc: number, valid?: (r: number, c: number) => boolean): Grid {
  const R = Math.ceil(rows / br), C = Math.ceil(cols / bc);
  const sum = new Float64Array(R * C), cnt = new Float64Array(R * C);
  for (let r = 0; r < rows; r++) {
    const orow = Math.floor(r / br) * C;
    for (let c = 0; c < cols; c++) {
      if (valid && !valid(r, c)) continue;
      const o = orow + Math.floor(c / bc);
      sum[o]! += data[r * cols + c]!;
      cnt[o]! += 1;
    }
  }
  const out = new Float32Array(R * C);
  for (let i = 0; i < out.length; i++) out[i] = cnt[i]! > 0 ? sum[i]! / cnt[i]! : NaN;
  return { data: out, rows: R, cols: C };
}

/** The q-quantile (0..1) of |v| over finite values. */
export function absQuantile(values: ArrayLike<number>, q: number): number {
  const a: number[] = [];
  for (let i = 0; i < values.length; i++) { const v = values[i]!; if (Number.isFinite(v)) a.push(Math.abs(v)); }
  if (!a.length) return 0;
  a.sort((x, y) => x - y);
  return a[Math.min(a.length - 1, Math.floor(q * (a.length - 1) + 0.5))]!;
}

export interface HeatmapSpec {
  data: ArrayLike<number>;
  rows: number;
  cols: number;
  /** Cells above the diagonal (col > row) are undefined and drawn grey. */
  causal?: boolean;
  /** 'sequential' (viridis) or 'diverging' (RdBu, centred at 0). */
  kind: 'sequential' | 'diverging';
  /** Sequential range; default [min, max] of the defined cells. */
  range?: [number, number];
  /** Diverging: colour range ±(this quantile of |v|); default 1 (the maximum). */
  clipQuantile?: number;
  title: string;
  xLabel: string;
  yLabel: string;
  /** Tick text per column (e.g. the training step of each checkpoint); default the column index. */
  colLabels?: string[];
  /** Largest side of the map itself, in pixels. */
  maxPx?: number;
}

export interface RenderedHeatmap {
  png: Buffer;
  width: number;
  height: number;
  scale: ColorScale;
  /** Cells averaged per pixel block (1 = none); the map's pixel size per cell when enlarged. */
  block: [number, number];
  cellPx: [number, number];
}

const UNDEFINED_GREY: RGB = [236, 236, 236];
const AXIS: RGB = [60, 60, 60];

/** Per-axis block size (shrink) and cell size in pixels (enlarge) to fit n cells into maxPx. */
export function fitAxis(n: number, maxPx: number): { block: number; cellPx: number; px: number } {
  if (n > maxPx) {
    const block = Math.ceil(n / maxPx);
    return { block, cellPx: 1, px: Math.ceil(n / block) };
  }
  const cellPx = Math.max(1, Math.floor(maxPx / n));
  return { block: 1, cellPx, px: n * cellPx };
}

export function scaleFor(spec: Pick<HeatmapSpec, 'kind' | 'range' | 'clipQuantile'>, values: ArrayLike<number>): ColorScale {
  if (spec.kind === 'diverging') {
    const m = absQuantile(values, spec.clipQuantile ?? 1);
    return { kind: 'diverging', absMax: m > 0 ? m : 1 };
  }
  if (spec.range) return { kind: 'sequential', lo: spec.range[0], hi: spec.range[1] };
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < values.length; i++) { const v = values[i]!; if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
  if (!(hi > lo)) { lo = Number.isFinite(lo) ? lo - 0.5 : 0; hi = lo + 1; }
  return { kind: 'sequential', lo, hi };
}

export async function renderHeatmap(spec: HeatmapSpec): Promise<RenderedHeatmap> {
  const { rows, cols } = spec;
  if (spec.data.length !== rows * cols) throw new Error(`heatmap '${spec.title}': ${spec.data.length} values for ${rows}×${cols}`);
  if (spec.colLabels && spec.colLabels.length !== cols) throw new Error(`heatmap '${spec.title}': ${spec.colLabels.length} column labels for ${cols} columns`);
  const maxPx = spec.maxPx ?? 256;
  const fr = fitAxis(rows, maxPx), fc = fitAxis(cols, maxPx);
  const valid = spec.causal ? (r: number, c: number) => c <= r : undefined;
  const grid = fr.block > 1 || fc.block > 1 || valid ? downsampleMean(spec.data, rows, cols, fr.block, fc.block, valid) : { data: Float32Array.from(spec.data), rows, cols };
  const scale = scaleFor(spec, grid.data);

  const left = 62, top = 30, bottom = 46, gap = 16, barW = 14, barLabels = 56;
  const mapW = fc.px, mapH = fr.px;
  const width = left + mapW + gap + barW + barLabels, height = top + mapH + bottom;
  const cv = new Canvas(width, height);
  // The map.
  for (let r = 0; r < grid.rows; r++) {
    for (let c = 0; c < grid.cols; c++) {
      const v = grid.data[r * grid.cols + c]!;
      cv.fillRect(left + c * fc.cellPx, top + r * fr.cellPx, fc.cellPx, fr.cellPx, Number.isNaN(v) ? UNDEFINED_GREY : colorOf(scale, v));
    }
  }
  cv.strokeRect(left - 1, top - 1, mapW + 2, mapH + 2, AXIS);
  // Ticks at cell centres, in cell-index units.
  const idxTicks = (n: number) => niceTicks(0, n - 1, 5).filter((v) => Number.isInteger(v) && v >= 0 && v < n);
  for (const i of idxTicks(cols)) {
    const x = left + ((i + 0.5) / cols) * mapW;
    cv.fillRect(x, top + mapH + 1, 1, 4, AXIS);
    cv.text(x, top + mapH + 17, spec.colLabels?.[i] ?? String(i), { size: 11, anchor: 'middle' });
  }
  for (const i of idxTicks(rows)) {
    const y = top + ((i + 0.5) / rows) * mapH;
    cv.fillRect(left - 5, y, 4, 1, AXIS);
    cv.text(left - 8, y + 4, String(i), { size: 11, anchor: 'end' });
  }
  cv.text(left + mapW / 2, top + mapH + 36, spec.xLabel, { size: 12, anchor: 'middle' });
  cv.text(16, top + mapH / 2, spec.yLabel, { size: 12, anchor: 'middle', rotate: -90 });
  cv.text(left, 19, spec.title, { size: 13, bold: true });
  // Colour bar: top = high end.
  const bx = left + mapW + gap;
  const [lo, hi] = scale.kind === 'sequential' ? [scale.lo, scale.hi] : [-scale.absMax, scale.absMax];
  for (let y = 0; y < mapH; y++) {
    const v = hi - ((y + 0.5) / mapH) * (hi - lo);
    cv.fillRect(bx, top + y, barW, 1, colorOf(scale, v));
  }
  cv.strokeRect(bx - 1, top - 1, barW + 2, mapH + 2, AXIS);
  const ticks = niceTicks(lo, hi, 4);
  const labels = fmtTicks(ticks);
  ticks.forEach((v, k) => {
    const y = top + ((hi - v) / (hi - lo)) * mapH;
    cv.fillRect(bx + barW + 1, y, 4, 1, AXIS);
    cv.text(bx + barW + 7, y + 4, labels[k]!, { size: 10 });
  });
  return { png: await cv.toPng(), width, height, scale, block: [fr.block, fc.block], cellPx: [fr.cellPx, fc.cellPx] };
}

/** A label-free miniature (index thumbnails): the map alone, `px` pixels wide at most. */
export async function renderThumbnail(spec: Pick<HeatmapSpec, 'data' | 'rows' | 'cols' | 'causal' | 'kind' | 'range' | 'clipQuantile'> & { px: number }): Promise<Buffer> {
  const fr = fitAxis(spec.rows, spec.px), fc = fitAxis(spec.cols, spec.px);
  const valid = spec.causal ? (r: number, c: number) => c <= r : undefined;
  const grid = downsampleMean(spec.data, spec.rows, spec.cols, fr.block, fc.block, valid);
  const scale = scaleFor(spec, grid.data);
  const cv = new Canvas(fc.px, fr.px);
  for (let r = 0; r < grid.rows; r++) {
    for (let c = 0; c < grid.cols; c++) {
      const v = grid.data[r * grid.cols + c]!;
      cv.fillRect(c * fc.cellPx, r * fr.cellPx, fc.cellPx, fr.cellPx, Number.isNaN(v) ? UNDEFINED_GREY : colorOf(scale, v));
    }
  }
  return cv.toPng();
}
