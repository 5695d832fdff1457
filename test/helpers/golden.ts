import assert from 'node:assert/strict';
import type { SafetensorsReader } from '../../src/checkpoint/safetensors.js';

/** The fixtures' `input_ids` [B, L] (stored as int64) as rows of numbers. */
export function goldenIds(g: SafetensorsReader): number[][] {
  const t = g.readFloat32('input_ids');
  const [B, L] = t.shape as [number, number];
  return Array.from({ length: B }, (_, b) => Array.from(t.data.subarray(b * L, (b + 1) * L)));
}

/** Assert a computed tensor matches a golden within max(1e-4, 1e-4 · max|golden|). */
export function expectClose(name: string, got: { shape: number[]; data: ArrayLike<number> }, want: { shape: number[]; data: Float32Array }): void {
  assert.deepEqual(got.shape, want.shape, `${name}: shape`);
  let scale = 0;
  for (const v of want.data) scale = Math.max(scale, Math.abs(v));
  const tol = Math.max(1e-4, 1e-4 * scale);
  let worst = 0;
  for (let i = 0; i < want.data.length; i++) {
    const d = Math.abs(got.data[i]! - want.data[i]!);
    if (!(d <= worst)) worst = d; // NaN-safe: a NaN makes worst NaN
  }
  assert.ok(worst <= tol, `${name}: max abs diff ${worst} > ${tol}`);
}
