/**
 * The gradient of bilinear resizing. tfjs 4.22's ResizeBilinearGrad ignores `halfPixelCenters` (it returns
 * the gradient of the corner-aligned grid: wrong for PyTorch's align_corners=False, which every logits and
 * feature upsampling here uses) and, on the cpu backend, swaps height and width for non-square inputs.
 *
 * Bilinear resizing is separable and linear: y = R_h · x · R_wᵀ per image and channel, with R the
 * [out, in] interpolation matrices built exactly as tfjs's forward kernel samples (source = ratio·(o + ½) − ½,
 * floor clamped at 0, ceil clamped at in − 1). Its gradient is dx = R_hᵀ · dy · R_w: two batched matmuls
 * that every backend runs fast, with no transposes.
 */
import * as tf from '@tensorflow/tfjs';

interface ResizeAttrs {
  alignCorners: boolean;
  halfPixelCenters: boolean;
  size: [number, number];
}

/** [out, in] matrix of the 1-D resampling tfjs's ResizeBilinear applies along one axis. */
export function bilinearMatrix(inSize: number, outSize: number, alignCorners: boolean, halfPixelCenters: boolean): Float32Array {
  const m = new Float32Array(outSize * inSize);
  const effIn = alignCorners && outSize > 1 ? inSize - 1 : inSize;
  const effOut = alignCorners && outSize > 1 ? outSize - 1 : outSize;
  const ratio = effIn / effOut;
  for (let o = 0; o < outSize; o++) {
    const src = halfPixelCenters ? ratio * (o + 0.5) - 0.5 : ratio * o;
    const lo = Math.max(0, Math.floor(src));
    const hi = Math.min(inSize - 1, Math.ceil(src));
    const frac = src - lo;
    m[o * inSize + lo] += 1 - frac;
    m[o * inSize + hi] += frac;
  }
  return m;
}

let installed = false;

export function registerResizeBilinearGradient(): void {
  if (installed) return;
  tf.registerGradient({
    kernelName: 'ResizeBilinear',
    inputsToSave: ['images'],
    gradFunc: (dy, saved, attrs) => {
      const [images] = saved as [tf.Tensor4D];
      const { alignCorners, halfPixelCenters } = attrs as unknown as ResizeAttrs;
      return {
        images: () => tf.tidy(() => {
          const [B, Hi, Wi, C] = images.shape;
          const g = dy as tf.Tensor4D;
          const [, Ho, Wo] = g.shape;
          // R_wᵀ [Wi, Wo] · dy rows [B·Ho, Wo, C] → [B·Ho, Wi, C]
          const rwT = tf.transpose(tf.tensor2d(bilinearMatrix(Wi, Wo, alignCorners, halfPixelCenters), [Wo, Wi]));
          const alongW = tf.matMul(tf.expandDims(rwT, 0) as tf.Tensor3D, tf.reshape(g, [B * Ho, Wo, C]) as tf.Tensor3D);
          // R_hᵀ [Hi, Ho] · [B, Ho, Wi·C] → [B, Hi, Wi·C]
          const rhT = tf.transpose(tf.tensor2d(bilinearMatrix(Hi, Ho, alignCorners, halfPixelCenters), [Ho, Hi]));
          const alongH = tf.matMul(tf.expandDims(rhT, 0) as tf.Tensor3D, tf.reshape(alongW, [B, Ho, Wi * C]) as tf.Tensor3D);
          return tf.reshape(alongH, [B, Hi, Wi, C]);
        }),
      };
    },
  });
  installed = true;
}
