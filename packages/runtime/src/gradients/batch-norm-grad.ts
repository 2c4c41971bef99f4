/**
 * tfjs's FusedBatchNorm gradient tiles rsqrt(variance) to the full [B, H, W, C] shape before multiplying
 * it into dy; on wasm that Tile alone measured ~30% of a toy training step. The input gradient only needs
 * a broadcast multiply, dx = dy · scale · rsqrt(variance + ε); the other gradients are tfjs's own.
 */
import * as tf from '@tensorflow/tfjs';

let installed = false;

export function registerBatchNormGradient(): void {
  if (installed) return;
  const original = tf.getGradient('FusedBatchNorm');
  if (original == null) throw new Error('tfjs has no gradient registered for FusedBatchNorm');
  tf.registerGradient({
    kernelName: 'FusedBatchNorm',
    inputsToSave: original.inputsToSave,
    gradFunc: (dy, saved, attrs) => {
      const grads = original.gradFunc(dy, saved, attrs);
      const [x, , variance, scale] = saved;
      const eps = (attrs as unknown as { varianceEpsilon: number }).varianceEpsilon;
      return {
        ...grads,
        x: () => {
          const factor = tf.rsqrt(tf.add(variance, eps));
          return tf.reshape(tf.mul(dy as tf.Tensor, scale == null ? factor : tf.mul(factor, scale)), x.shape);
        },
      };
    },
  });
  installed = true;
}
