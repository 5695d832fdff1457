/**
 * The selective scans, the only sequential part of Mamba. Each backend has its own kernels
 * (scan-cpu.ts: tight loops for cpu/wasm/tensorflow; scan-webgpu.ts: WGSL compute kernels);
 * this file holds the shared contract. Both functions are differentiable with respect to
 * every input (tf.customGrad), so the trainer can use them.
 *
 * Mamba-1 (per batch b, channel d, state n; A is negative):
 *   h_t[d, n] = exp(Δ_t[d] · A[d, n]) · h_{t-1}[d, n] + Δ_t[d] · B_t[n] · u_t[d]
 *   y_t[d]    = Σ_n C_t[n] · h_t[d, n] + D[d] · u_t[d]
 *   shapes: u, delta [B, L, D]; A [D, N]; B, C [B, L, N]; Dskip [D] → y [B, L, D]
 *
 * Mamba-2 SSD (scalar A per head h, head dim P, group g = h / (H / G)):
 *   h_t[h, p, n] = exp(Δ_t[h] · A[h]) · h_{t-1}[h, p, n] + Δ_t[h] · B_t[g, n] · x_t[h, p]
 *   y_t[h, p]    = Σ_n C_t[g, n] · h_t[h, p, n] + D[h] · x_t[h, p]
 *   shapes: x [B, L, H, P]; delta [B, L, H]; A [H]; B, C [B, L, G, N]; Dskip [H] → y [B, L, H, P]
 */
import type * as tf from '@tensorflow/tfjs';
import { getBackend } from '@tensorflow/tfjs';

export type SelectiveScanFn = (u: tf.Tensor3D, delta: tf.Tensor3D, A: tf.Tensor2D, B: tf.Tensor3D, C: tf.Tensor3D, Dskip: tf.Tensor1D) => tf.Tensor3D;
export type SsdScanFn = (x: tf.Tensor4D, delta: tf.Tensor3D, A: tf.Tensor1D, B: tf.Tensor4D, C: tf.Tensor4D, Dskip: tf.Tensor1D) => tf.Tensor4D;

// ---------------------------------------------------------------------------------------------
// Registry: each backend's kernels register here; the model calls the dispatchers below, which
// pick by tf.getBackend(). Unknown backends fall back to the CPU kernels (registered under 'cpu').

export interface ScanKernels {
  selectiveScan: SelectiveScanFn;
  ssdScan: SsdScanFn;
}

const registry = new Map<string, ScanKernels>();

/** Register kernels for the named tf.js backends (a later registration replaces an earlier one). */
export function registerScanKernels(backends: string[], k: ScanKernels): void {
  for (const b of backends) registry.set(b, k);
}

/** The kernels for a backend (default: the current one); CPU kernels when none are registered. */
export function scanKernelsFor(backend: string = getBackend()): ScanKernels {
  const k = registry.get(backend) ?? registry.get('cpu');
  if (!k) throw new Error('no selective-scan kernels registered; import src/model/kernels/scan-cpu.js');
  return k;
}

export const selectiveScan: SelectiveScanFn = (u, delta, A, B, C, Dskip) => scanKernelsFor().selectiveScan(u, delta, A, B, C, Dskip);
export const ssdScan: SsdScanFn = (x, delta, A, B, C, Dskip) => scanKernelsFor().ssdScan(x, delta, A, B, C, Dskip);
