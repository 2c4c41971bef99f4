/**
 * The default rectifier: r is the pseudo-labeler's own weight (DAFormer's per-batch quality q), labels are
 * unchanged, nothing is trained. The DESIGN §5.3 baseline row.
 */
import type * as tf from '@tensorflow/tfjs';
import type { Rectified, Rectifier, RectifyInput } from './contracts.js';

export class IdentityRectifier implements Rectifier {
  readonly variables: readonly tf.Variable[] = [];

  rectify(input: RectifyInput): Rectified {
    const { labels, weight } = input.pseudo;
    return { labels, weight, rectification: weight };
  }

  dispose(): void {}
}
