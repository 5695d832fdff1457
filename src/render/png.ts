/**
 * A raw RGBA canvas: pixels are drawn here, then sharp encodes them as PNG. Text is not drawn
 * pixel by pixel: it goes into an SVG overlay (rendered by librsvg inside sharp) composited on top.
 */
import * as fs from 'node:fs';
import sharp from 'sharp';
import type { RGB } from './colormap.js';
import { escapeXml } from './escape.js';

let fontsChecked = false;

/**
 * librsvg finds fonts through fontconfig; on a machine with neither fonts nor a fontconfig file every
 * label renders as a box (seen on the GPU host). Say so once instead of writing silently bad PNGs.
 */
function warnIfNoFonts(): void {
  if (fontsChecked) return;
  fontsChecked = true;
  if (process.platform !== 'linux' || process.env.FONTCONFIG_FILE || fs.existsSync('/etc/fonts/fonts.conf')) return;
  process.stderr.write('mimetic: warning: no fontconfig configuration (/etc/fonts/fonts.conf), so text in the PNGs will render as boxes; install fonts-dejavu-core (or set FONTCONFIG_FILE); bundle/run.sh brings its own\n');
}

export class Canvas {
  readonly pixels: Uint8Array;
  /** SVG text elements composited over the pixels when encoded. */
  private readonly texts: string[] = [];

  constructor(readonly width: number, readonly height: number, background: RGB = [255, 255, 255]) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) throw new Error(`canvas size ${width}×${height} is not positive`);
    this.pixels = new Uint8Array(width * height * 4);
    this.fillRect(0, 0, width, height, background);
  }

  setPixel(x: number, y: number, c: RGB, alpha = 1): void {
    x = Math.round(x); y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = (y * this.width + x) * 4;
    const p = this.pixels;
    if (alpha >= 1) {
      p[i] = c[0]; p[i + 1] = c[1]; p[i + 2] = c[2];
    } else {
      p[i] = Math.round(p[i]! + alpha * (c[0] - p[i]!));
      p[i + 1] = Math.round(p[i + 1]! + alpha * (c[1] - p[i + 1]!));
      p[i + 2] = Math.round(p[i + 2]! + alpha * (c[2] - p[i + 2]!));
    }
    p[i + 3] = 255;
  }

  fillRect(x: number, y: number, w: number, h: number, c: RGB): void {
    const x0 = Math.max(0, Math.round(x)), y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w)), y1 = Math.min(this.height, Math.round(y + h));
    for (let yy = y0; yy < y1; yy++) {
      for (let xx = x0; xx < x1; xx++) {
        const i = (yy * this.width + xx) * 4;
        this.pixels[i] = c[0]; this.pixels[i + 1] = c[1]; this.pixels[i + 2] = c[2]; this.pixels[i + 3] = 255;
      }
    }
  }

  /** A one-pixel rectangle outline. */
  strokeRect(x: number, y: number, w: number, h: number, c: RGB): void {
    this.fillRect(x, y, w, 1, c);
    this.fillRect(x, y + h - 1, w, 1, c);
    this.fillRect(x, y, 1, h, c);
    this.fillRect(x + w - 1, y, 1, h, c);
  }

  /** An anti-aliased line of the given width (distance-to-segment coverage). */
  line(x0: number, y0: number, x1: number, y1: number, c: RGB, width = 1): void {
    const r = width / 2;
    const minX = Math.floor(Math.min(x0, x1) - r - 1), maxX = Math.ceil(Math.max(x0, x1) + r + 1);
    const minY = Math.floor(Math.min(y0, y1) - r - 1), maxY = Math.ceil(Math.max(y0, y1) + r + 1);
    const dx = x1 - x0, dy = y1 - y0;
    const len2 = dx * dx + dy * dy;
    for (let y = Math.max(0, minY); y <= Math.min(this.height - 1, maxY); y++) {
      for (let x = Math.max(0, minX); x <= Math.min(this.width - 1, maxX); x++) {
        const px = x + 0.5, py = y + 0.5;
        const t = len2 > 0 ? Math.min(1, Math.max(0, ((px - x0) * dx + (py - y0) * dy) / len2)) : 0;
        const d = Math.hypot(px - (x0 + t * dx), py - (y0 + t * dy));
        const cover = Math.min(1, Math.max(0, r + 0.5 - d));
        if (cover > 0) this.setPixel(x, y, c, cover);
      }
    }
  }

  /** A filled disc (markers on line charts). */
  disc(cx: number, cy: number, radius: number, c: RGB): void {
    for (let y = Math.floor(cy - radius - 1); y <= Math.ceil(cy + radius + 1); y++) {
      for (let x = Math.floor(cx - radius - 1); x <= Math.ceil(cx + radius + 1); x++) {
        const d = Math.hypot(x + 0.5 - cx, y + 0.5 - cy);
        const cover = Math.min(1, Math.max(0, radius + 0.5 - d));
        if (cover > 0) this.setPixel(x, y, c, cover);
      }
    }
  }

  /** Queue a text label; `anchor` is SVG's text-anchor, (x, y) the baseline point. */
  text(x: number, y: number, s: string, opts: { size?: number; anchor?: 'start' | 'middle' | 'end'; color?: RGB; bold?: boolean; rotate?: number } = {}): void {
    const size = opts.size ?? 12;
    const c = opts.color ?? [34, 34, 34];
    const rot = opts.rotate ? ` transform="rotate(${opts.rotate} ${x.toFixed(1)} ${y.toFixed(1)})"` : '';
    this.texts.push(
      `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-size="${size}" text-anchor="${opts.anchor ?? 'start'}"${opts.bold ? ' font-weight="bold"' : ''} fill="rgb(${c.join(',')})"${rot}>${escapeXml(s)}</text>`,
    );
  }

  /** Encode as PNG (with the text overlay). */
  async toPng(): Promise<Buffer> {
    const img = sharp(Buffer.from(this.pixels.buffer, this.pixels.byteOffset, this.pixels.byteLength), { raw: { width: this.width, height: this.height, channels: 4 } });
    if (this.texts.length) {
      warnIfNoFonts();
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${this.width}" height="${this.height}" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif">${this.texts.join('')}</svg>`;
      img.composite([{ input: Buffer.from(svg), top: 0, left: 0 }]);
    }
    return img.png({ compressionLevel: 9 }).toBuffer();
  }
}

/** "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 × 10^k, the count closest to `target`. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) return [lo];
  const mag = Math.pow(10, Math.floor(Math.log10((hi - lo) / Math.max(1, target))));
  const ticksFor = (step: number): number[] => {
    const out: number[] = [];
    for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) out.push(k === 0 ? 0 : Number((k * step).toPrecision(12)));
    return out;
  };
  let best: number[] = [];
  for (const m of [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50]) {
    const t = ticksFor(m * mag);
    // Closest count to the target; on a tie the smaller step (earlier candidate) wins.
    if (!best.length || Math.abs(t.length - target) < Math.abs(best.length - target)) best = t;
  }
  return best;
}

/** A compact number label: 3 significant digits, exponent form for very large/small values. */
export function fmtNum(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1).replace('e+', 'e');
  return String(Number(v.toPrecision(3)));
}

/** Tick labels: as many decimals as the tick step needs (so close ticks stay distinct). */
export function fmtTicks(ticks: number[]): string[] {
  if (ticks.length < 2) return ticks.map(fmtNum);
  const step = Math.abs(ticks[1]! - ticks[0]!);
  const maxAbs = Math.max(...ticks.map(Math.abs));
  if (!(step > 0) || maxAbs >= 1e5 || maxAbs < 1e-3 || step < 1e-8) return ticks.map((v) => (v === 0 ? '0' : v.toExponential(Math.max(0, Math.ceil(Math.log10(maxAbs / step)) - 1)).replace('e+', 'e')));
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return ticks.map((v) => (v === 0 ? '0' : v.toFixed(decimals)));
}
