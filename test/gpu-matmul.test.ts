/**
 * The compiled step's matmul (src/train/gpu/kernels.ts) alone against a float64 CPU product: every
 * tile of MATMUL_TILES, both memory orders of A and of B, sizes that are not multiples of any tile
 * or K step, split-K slices, accumulate and add flags.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/model/backend.js';
import { Engine } from '../src/train/gpu/engine.js';
import * as K from '../src/train/gpu/kernels.js';
import { mulberry32 } from '../src/util/rng.js';
import { requiresWebGPU } from './helpers/requires.js';

const GPU = await requiresWebGPU();
before(async () => {
  if (!GPU.skip) await initBackend('webgpu');
});

interface Case { M: number; N: number; K: number; aRowFast: boolean; bColFast: boolean; splits: number; acc: boolean; add: boolean }

async function check(tileName: string, c: Case): Promise<void> {
  const tile = K.MATMUL_TILES[tileName]!;
  const { M, N, K: Kd, aRowFast, bColFast, splits } = c;
  const rnd = mulberry32(M * 7 + N * 13 + Kd + splits);
  const device = (tf.backend() as unknown as { device: unknown }).device;
  const e = new Engine(device);
  // X holds A, B, the add term and C (starting non-zero, for the accumulate flag), at odd offsets.
  const aOff = 3, bOff = aOff + M * Kd + 5, addOff = bOff + Kd * N + 1, cOff = addOff + M * N + 2, top = cOff + M * N;
  const X = new Float32Array(top);
  for (let i = 0; i < top; i++) X[i] = rnd() * 2 - 1;
  const a = (i: number, k: number) => X[aOff + (aRowFast ? i + k * M : i * Kd + k)]!;
  const b = (k: number, j: number) => X[bOff + (bColFast ? k * N + j : k + j * Kd)]!;
  const want = new Float64Array(M * N);
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let s = 0;
    for (let k = 0; k < Kd; k++) s += a(i, k) * b(k, j);
    if (c.add) s += X[addOff + i * N + j]!;
    if (c.acc) s += X[cOff + i * N + j]!;
    want[i * N + j] = s;
  }
  e.alloc('X', top);
  e.alloc('S', splits * M * N);
  e.write('X', 0, X);
  const kChunk = Math.ceil(Kd / splits / 16) * 16;
  const z = Math.ceil(Kd / kChunk);
  const base = { M, N, K: Kd, aOff, aRs: aRowFast ? 1 : Kd, aCs: aRowFast ? M : 1, bOff, bRs: bColFast ? N : 1, bCs: bColFast ? 1 : Kd, kChunk, addOff };
  const groups: [number, number, number] = [Math.ceil(N / tile.BN), Math.ceil(M / tile.BM), z];
  e.begin('mm');
  if (z === 1) {
    e.op(K.matmul('X', 'X', 'X', aRowFast, bColFast, tile), { ...base, cOff, cRs: N, flags: (c.acc ? 1 : 0) | (c.add ? 2 : 0), zStride: 0 }, groups);
  } else {
    e.op(K.matmul('X', 'X', 'S', aRowFast, bColFast, tile), { ...base, cOff: 0, cRs: N, flags: 0, zStride: M * N }, groups);
    e.op(K.sumSlices('X'), { n: M * N, slices: z, srcOff: 0, dstOff: cOff, rows: M, dstRs: N, cols: N, acc: c.acc ? 1 : 0 }, [Math.ceil((M * N) / 256), 1, 1]);
  }
  e.finish();
  e.run('mm');
  const got = await e.read('X', cOff, M * N);
  e.destroy();
  let err = 0, scale = 1e-6;
  for (let i = 0; i < M * N; i++) { err = Math.max(err, Math.abs(got[i]! - want[i]!)); scale = Math.max(scale, Math.abs(want[i]!)); }
  assert.ok(err / scale < 1e-5, `${tileName} ${JSON.stringify(c)}: relative error ${(err / scale).toExponential(2)}`);
}

for (const tileName of Object.keys(K.MATMUL_TILES)) {
  test(`matmul ${tileName}: every memory order, ragged sizes, split-K, accumulate and add`, GPU, async () => {
    for (const aRowFast of [false, true]) for (const bColFast of [false, true]) {
      await check(tileName, { M: 131, N: 70, K: 37, aRowFast, bColFast, splits: 1, acc: false, add: aRowFast });
    }
    await check(tileName, { M: 9, N: 200, K: 300, aRowFast: true, bColFast: false, splits: 4, acc: true, add: false });
    await check(tileName, { M: 257, N: 129, K: 8, aRowFast: false, bColFast: true, splits: 1, acc: true, add: true });
    await check(tileName, { M: 1, N: 1, K: 1, aRowFast: false, bColFast: false, splits: 1, acc: false, add: false });
  });
}
