/**
 * Pixel-weighted cross-entropy (mmseg's CrossEntropyLoss with a per-pixel `seg_weight`): mean over all pixels
 * of w · CE, ignored pixels contributing 0. The baseline's loss on mixed images (DESIGN §5.3, rows 2–3).
 */
import * as tf from '@tensorflow/tfjs';
import { softmaxCrossEntropy } from '@ir2f/runtime';
import type { Loss, LossInput, LossOutput } from '../contracts.js';

/**
 * Per-pixel cross-entropy [B, H, W] of logits [B, H, W, K] against int labels; 0 where the label is ignored
 * (or outside [0, K)). One fused kernel and gradient on wasm and cpu (@ir2f/runtime's softmaxCrossEntropy).
 */
export function pixelCrossEntropy(logits: tf.Tensor4D, labels: tf.Tensor3D, ignoreIndex = 255): tf.Tensor3D {
  return softmaxCrossEntropy(logits, labels, ignoreIndex) as tf.Tensor3D;
}

export class WeightedCrossEntropy implements Loss {
  /** The rectification reaches this loss only through the target weight. */
  readonly rectificationGradient = false;

  constructor(private readonly ignoreIndex = 255) {}

  compute(input: LossInput): LossOutput {
    const total = tf.tidy(() => {
      const ce = pixelCrossEntropy(input.studentLogits, input.target.labels, this.ignoreIndex);
      return tf.mean(tf.mul(ce, input.target.weight)) as tf.Scalar;
    });
    return { total, parts: { ce: total } };
  }
}
