/**
 * DAFormer's pseudo-labels (DESIGN §4.1): ŷ = argmax of the teacher's probabilities, and one quality weight
 * per batch, q = share of pixels whose max probability exceeds τ (0.968). Optionally rows at the top/bottom of
 * the crop get weight 0 (DAFormer ignores the ego car's bonnet on Cityscapes). No host round trip.
 */
import * as tf from '@tensorflow/tfjs';
import type { PseudoLabeler, PseudoLabels } from '../contracts.js';

export interface ConfidencePseudoLabelerOptions {
  threshold?: number;
  ignoreTop?: number;
  ignoreBottom?: number;
}

export class ConfidencePseudoLabeler implements PseudoLabeler {
  readonly threshold: number;

  constructor(private readonly opts: ConfidencePseudoLabelerOptions = {}) {
    this.threshold = opts.threshold ?? 0.968;
    if (!(this.threshold > 0 && this.threshold < 1)) throw new Error(`pseudo-label threshold must be in (0, 1), got ${this.threshold}`);
  }

  label(teacherProbs: tf.Tensor4D): PseudoLabels {
    return tf.tidy(() => {
      const [B, H, W] = teacherProbs.shape;
      const labels = tf.cast(tf.argMax(teacherProbs, 3), 'int32') as tf.Tensor3D;
      const conf = tf.max(teacherProbs, 3);
      const q = tf.mean(tf.cast(tf.greater(conf, this.threshold), 'float32'));
      let weight = tf.mul(tf.ones([B, H, W]), q) as tf.Tensor3D;
      const top = Math.min(H, this.opts.ignoreTop ?? 0);
      const bottom = Math.min(H - top, this.opts.ignoreBottom ?? 0);
      if (top > 0 || bottom > 0) {
        const rows = tf.concat([tf.zeros([top]), tf.ones([H - top - bottom]), tf.zeros([bottom])]);
        weight = tf.mul(weight, tf.reshape(rows, [1, H, 1])) as tf.Tensor3D;
      }
      return { labels, weight, probs: tf.clone(teacherProbs) };
    });
  }
}
