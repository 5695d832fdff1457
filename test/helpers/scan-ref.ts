/**
 * Reference selective scans built from plain tf ops, one time step at a time, differentiated by
 * tf.js autodiff. Slow; the tests' check of the real kernels (forward and gradients).
 */
import * as tf from '@tensorflow/tfjs';
import type { SelectiveScanFn, SsdScanFn } from '../../src/model/kernels/scan.js';

export const selectiveScanRef: SelectiveScanFn = (u, delta, A, B, C, Dskip) =>
  tf.tidy(() => {
    const [Bsz, L, D] = u.shape;
    const N = A.shape[1];
    let h: tf.Tensor = tf.zeros([Bsz, D, N]);
    const ys: tf.Tensor[] = [];
    for (let t = 0; t < L; t++) {
      const ut = u.slice([0, t, 0], [Bsz, 1, D]).reshape([Bsz, D, 1]);
      const dt = delta.slice([0, t, 0], [Bsz, 1, D]).reshape([Bsz, D, 1]);
      const Bt = B.slice([0, t, 0], [Bsz, 1, N]); // [B, 1, N]
      const Ct = C.slice([0, t, 0], [Bsz, 1, N]);
      h = tf.add(tf.mul(tf.exp(tf.mul(dt, A)), h), tf.mul(tf.mul(dt, ut), Bt));
      const y = tf.add(tf.sum(tf.mul(h, Ct), 2), tf.mul(ut.reshape([Bsz, D]), Dskip));
      ys.push(y);
    }
    return tf.stack(ys, 1) as tf.Tensor3D;
  });

export const ssdScanRef: SsdScanFn = (x, delta, A, B, C, Dskip) =>
  tf.tidy(() => {
    const [Bsz, L, H, P] = x.shape;
    const G = B.shape[2];
    const N = B.shape[3];
    const rep = H / G;
    // Expand B, C from groups to heads: head h uses group floor(h / rep).
    const idx = tf.tensor1d(Array.from({ length: H }, (_, h) => Math.floor(h / rep)), 'int32');
    const Bh = tf.gather(B, idx, 2); // [B, L, H, N]
    const Ch = tf.gather(C, idx, 2);
    let h: tf.Tensor = tf.zeros([Bsz, H, P, N]);
    const ys: tf.Tensor[] = [];
    for (let t = 0; t < L; t++) {
      const xt = x.slice([0, t, 0, 0], [Bsz, 1, H, P]).reshape([Bsz, H, P, 1]);
      const dt = delta.slice([0, t, 0], [Bsz, 1, H]).reshape([Bsz, H, 1, 1]);
      const Bt = Bh.slice([0, t, 0, 0], [Bsz, 1, H, N]).reshape([Bsz, H, 1, N]);
      const Ct = Ch.slice([0, t, 0, 0], [Bsz, 1, H, N]).reshape([Bsz, H, 1, N]);
      const dA = tf.exp(tf.mul(dt, A.reshape([1, H, 1, 1])));
      h = tf.add(tf.mul(dA, h), tf.mul(tf.mul(dt, xt), Bt));
      const y = tf.add(tf.sum(tf.mul(h, Ct), 3), tf.mul(xt.reshape([Bsz, H, P]), Dskip.reshape([1, H, 1])));
      ys.push(y);
    }
    return tf.stack(ys, 1) as tf.Tensor4D;
  });
