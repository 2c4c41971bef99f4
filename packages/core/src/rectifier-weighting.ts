/**
 * DESIGN §5.1.7 (v2): how a rectification value r weights the target loss. v1 let r *replace* DAFormer's
 * batch quality q, which gave early, mostly wrong pseudo-labels 2–4× the baseline's weight; v2 keeps the
 * baseline's total target weight and lets r only *redistribute* it across pixels:
 *
 *   w(x) = min(1, q(x) · r(x) / r̄),   r̄ = mean of r over the pixels that carry weight (q > 0), detached.
 *
 * Σ w ≤ Σ q, so the target side never weighs more than in the baseline. Also used for the RMM's posterior γ
 * (§5.2 v2: w = min(1, q · γ / γ̄)).
 */
import * as tf from '@tensorflow/tfjs';
import { stopGradient } from '@ir2f/runtime';

/** `replace` (v1): w = r; `redistribute` (v2): w = min(1, q · r / r̄). */
export type RectifierWeighting = 'replace' | 'redistribute';
export const RECTIFIER_WEIGHTINGS = ['replace', 'redistribute'] as const;

/**
 * w = min(1, q · r / r̄) over [B, H, W] maps; r̄ is the mean of r where q > 0 (and `mask`, when given, is 1),
 * taken without gradient. The gradient of w reaches r only where r itself carries one (detach it for a
 * detached weight).
 *
 * With `perClass` (the pseudo-labels and K), r̄ is taken per pseudo-class, r̄_c over the pixels labelled c: r
 * then moves weight between pixels of one class only, and each class keeps the baseline's share (a
 * batch-wide r̄ moves weight from classes the teacher finds hard, often the rare ones, to easy ones).
 */
export function redistributeWeight(
  q: tf.Tensor3D, r: tf.Tensor3D, mask?: tf.Tensor3D, perClass?: { labels: tf.Tensor3D; numClasses: number },
): tf.Tensor3D {
  return tf.tidy(() => {
    let carries = tf.cast(tf.greater(q, 0), 'float32');
    if (mask) carries = tf.mul(carries, mask);
    let rBar: tf.Tensor;
    if (perClass) {
      const K = perClass.numClasses;
      // ignored labels (255) one-hot to zeros: they carry no weight
      const onehot = tf.mul(tf.oneHot(tf.cast(perClass.labels, 'int32'), K), tf.expandDims(carries, 3));
      const sums = tf.sum(tf.mul(onehot, tf.expandDims(r, 3)), [0, 1, 2]);
      const means = tf.div(sums, tf.maximum(tf.sum(onehot, [0, 1, 2]), 1));
      rBar = stopGradient(tf.sum(tf.mul(onehot, means), 3));
    } else {
      rBar = stopGradient(tf.div(tf.sum(tf.mul(r, carries)), tf.maximum(tf.sum(carries), 1)));
    }
    return tf.minimum(tf.div(tf.mul(q, r), tf.maximum(rBar, 1e-6)), 1) as tf.Tensor3D;
  });
}

