/**
 * Colour maps as piecewise-linear interpolation between anchors taken from matplotlib's
 * `viridis` (sequential, for maps in [0, 1] such as the decay mask) and `RdBu_r` (diverging,
 * centred at 0, for signed maps such as C·B and W_C W_Bᵀ).
 */
export type RGB = [number, number, number];

const hex = (h: string): RGB => [parseInt(h.slice(1, 3), 16), parseInt(h.slice(3, 5), 16), parseInt(h.slice(5, 7), 16)];

export const VIRIDIS: readonly RGB[] = ['#440154', '#482475', '#414487', '#355f8d', '#2a788e', '#21918c', '#22a884', '#44bf70', '#7ad151', '#bddf26', '#fde725'].map(hex);
export const RDBU_R: readonly RGB[] = ['#053061', '#2166ac', '#4393c3', '#92c5de', '#d1e5f0', '#f7f7f7', '#fddbc7', '#f4a582', '#d6604d', '#b2182b', '#67001f'].map(hex);

/** Colour of u ∈ [0, 1] (clamped; NaN maps to grey) on a map given by equally spaced anchors. */
export function colorAt(map: readonly RGB[], u: number): RGB {
  if (Number.isNaN(u)) return [128, 128, 128];
  const x = Math.min(1, Math.max(0, u)) * (map.length - 1);
  const i = Math.min(map.length - 2, Math.floor(x));
  const f = x - i;
  const a = map[i]!, b = map[i + 1]!;
  return [Math.round(a[0] + f * (b[0] - a[0])), Math.round(a[1] + f * (b[1] - a[1])), Math.round(a[2] + f * (b[2] - a[2]))];
}

export type ColorScale = { kind: 'sequential'; lo: number; hi: number } | { kind: 'diverging'; absMax: number };

/** The colour of value v under a scale. */
export function colorOf(scale: ColorScale, v: number): RGB {
  if (scale.kind === 'sequential') {
    const span = scale.hi - scale.lo;
    return colorAt(VIRIDIS, span > 0 ? (v - scale.lo) / span : 0.5);
  }
  return colorAt(RDBU_R, scale.absMax > 0 ? 0.5 + v / (2 * scale.absMax) : 0.5);
}
