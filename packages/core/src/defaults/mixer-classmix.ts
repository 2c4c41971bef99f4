/**
 * ClassMix with DACS's strong augmentation (DESIGN §4.1): for each pair, half of the classes present in the
 * source label (⌈n/2⌉, chosen at random) are pasted onto the target image; the mixed label takes the source
 * label there and the pseudo-label elsewhere, the weight is 1 on pasted pixels and the pseudo-label weight
 * elsewhere. Then, as in DAFormer, colour jitter (strength 0.2, applied with probability 0.8) and Gaussian blur
 * (probability 0.5, σ ∈ [0.15, 1.15], odd kernel of ⌈0.1·H⌉ rounded down) on the mixed image. DAFormer's σ is in
 * pixels of its 512² crops while its kernel scales with H: σ is scaled by H/512 (`blurReferenceSize`) so that
 * the blur is the same relative to the scene at any crop size (exactly DAFormer's at 512). Class choice runs on
 * tensors (random scores from the run's RNG, ranks among present classes), so there is no host round trip.
 */
import * as tf from '@tensorflow/tfjs';
import type { MixBatch, Mixer, MixResult, StepContext } from '../contracts.js';
import { colorJitter, drawColorJitter } from './color-jitter.js';

export interface ClassMixOptions {
  numClasses: number;
  ignoreIndex?: number;
  colorJitterStrength?: number;
  /** DAFormer's `color_jitter_p`: jitter is applied when a uniform draw exceeds it. */
  colorJitterThreshold?: number;
  blur?: boolean;
  /** The crop height DAFormer's σ range refers to (default 512); σ scales by H / this. */
  blurReferenceSize?: number;
}

/**
 * The ClassMix mask [B, H, W] (1 = take the source) from source labels and per-class random scores [B, K]. Class
 * presence is a count per (image, class) and the mask a lookup of each pixel's class, so no [B, H·W, K] one-hot
 * is made (its reduction over pixels cost more than the rest of the mix on wasm).
 */
export function classMixMask(labels: tf.Tensor3D, scores: tf.Tensor2D, numClasses: number): tf.Tensor3D {
  return tf.tidy(() => {
    const [B, H, W] = labels.shape;
    const K = numClasses;
    const lab = tf.cast(labels, 'float32');
    // ignored and out-of-range labels → class K, a slot that is never chosen; each image's classes at b·(K + 1)
    // (in float32, exact for these integers: tfjs-wasm broadcasts an int32 add element by element, 2.7 ms here)
    const cls = tf.where(tf.logicalAnd(tf.greaterEqual(lab, 0), tf.less(lab, K)), lab, tf.fill(lab.shape, K));
    const slot = tf.cast(tf.reshape(tf.add(cls, tf.reshape(tf.range(0, B * (K + 1), K + 1), [B, 1, 1])), [B * H * W]), 'int32') as tf.Tensor1D;
    const counts = tf.unsortedSegmentSum(tf.onesLike(slot).toFloat(), slot, B * (K + 1));
    const present = tf.cast(tf.greater(tf.slice(tf.reshape(counts, [B, K + 1]), [0, 0], [B, K]), 0), 'float32'); // [B, K]
    const n = tf.sum(present, 1, true); // [B, 1]
    // rank of class k among present classes by score
    const less = tf.cast(tf.less(tf.expandDims(scores, 1), tf.expandDims(scores, 2)), 'float32'); // [B, K(k), K(j)]: s_j < s_k
    const rank = tf.sum(tf.mul(less, tf.expandDims(present, 1)), 2); // [B, K]
    const half = tf.floor(tf.div(tf.add(n, 1), 2)); // ⌈n/2⌉
    const chosen = tf.mul(present, tf.cast(tf.less(rank, half), 'float32'));
    const table = tf.reshape(tf.concat([chosen, tf.zeros([B, 1])], 1), [B * (K + 1)]) as tf.Tensor1D;
    return tf.reshape(tf.gather(table, slot), [B, H, W]) as tf.Tensor3D;
  });
}

/**
 * Separable Gaussian blur with reflect padding. Each pass is a convolution whose filter is the 1-D kernel on the
 * channels' diagonal: C× a depthwise convolution's multiply-adds, but on the backends' dense kernels (with three
 * channels a depthwise kernel has too few lanes to vectorise: 2.1 ms against ~0.2 on wasm for a 128² pair).
 */
export function gaussianBlur(x: tf.Tensor4D, sigma: number, size: number): tf.Tensor4D {
  return tf.tidy(() => {
    const r = size >> 1;
    const k = Array.from({ length: size }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
    const sum = k.reduce((a, b) => a + b, 0);
    const C = x.shape[3];
    const taps = tf.mul(tf.reshape(tf.tensor1d(k.map((v) => v / sum)), [size, 1, 1]), tf.eye(C)); // [size, C, C]
    const kx = tf.reshape(taps, [1, size, C, C]) as tf.Tensor4D;
    const ky = tf.reshape(taps, [size, 1, C, C]) as tf.Tensor4D;
    const padded = tf.mirrorPad(x, [[0, 0], [r, r], [r, r], [0, 0]], 'reflect');
    return tf.conv2d(tf.conv2d(padded, kx, 1, 'valid'), ky, 1, 'valid');
  });
}

export class ClassMix implements Mixer {
  constructor(private readonly opts: ClassMixOptions) {}

  mix(source: MixBatch, target: MixBatch, ctx: StepContext): MixResult {
    const { numClasses } = this.opts;
    const [B, H] = source.labels.shape;
    const scores = tf.tensor2d(Array.from({ length: B * numClasses }, () => ctx.rng.next()), [B, numClasses]);
    const jitter = ctx.rng.next() > (this.opts.colorJitterThreshold ?? 0.2);
    const blur = (this.opts.blur ?? true) && ctx.rng.next() > 0.5;
    const sigma = ctx.rng.uniform(0.15, 1.15) * (H / (this.opts.blurReferenceSize ?? 512));
    const result = tf.tidy(() => {
      const mask = classMixMask(source.labels, scores, numClasses);
      // the mask over the channels as a product with ones (exact): on wasm, 0.3 ms for a 128² pair against 0.8
      // with broadcasting products and 4.8 with Tile
      const [, , , C] = source.image.shape;
      const m4 = tf.reshape(tf.matMul(tf.reshape(mask, [-1, 1]), tf.ones([1, C])), source.image.shape);
      const image = tf.add(tf.mul(m4, source.image), tf.mul(tf.sub(1, m4), target.image)) as tf.Tensor4D;
      const fromSource = tf.cast(mask, 'bool');
      const labels = tf.where(fromSource, tf.cast(source.labels, 'int32'), tf.cast(target.labels, 'int32')) as tf.Tensor3D;
      const weight = tf.where(fromSource, tf.onesLike(mask), target.weight ?? tf.onesLike(mask)) as tf.Tensor3D;
      const out: MixResult = { image, labels, weight, sourceMask: mask };
      if (target.quality) out.quality = tf.where(fromSource, tf.onesLike(mask), target.quality) as tf.Tensor3D;
      if (target.rectification && target.rectification.rank === 3) {
        out.rectification = tf.where(fromSource, tf.onesLike(mask), target.rectification as tf.Tensor3D);
      }
      // pasted source pixels are certain: r = 1 (a logit of 30 is 1 in float32), the teacher's class is the label
      if (target.rectificationLogit && target.rectificationLogit.rank === 3) {
        out.rectificationLogit = tf.where(fromSource, tf.fill(mask.shape, 30), target.rectificationLogit as tf.Tensor3D);
      }
      if (target.probs) {
        // ignored source labels (255) one-hot to zeros
        const sourceProbs = tf.cast(tf.oneHot(tf.cast(source.labels, 'int32'), target.probs.shape[3]), 'float32');
        out.probs = tf.where(tf.expandDims(fromSource, 3), sourceProbs, target.probs) as tf.Tensor4D;
      }
      if (jitter || blur) out.image = this.photometric(image, { jitter, blur, sigma }, ctx);
      return out as unknown as tf.TensorContainer;
    }) as unknown as MixResult;
    scores.dispose();
    return result;
  }

  /**
   * DACS's colour jitter and blur on a normalised image batch (each when its flag is set). The blur runs on the
   * normalised image: a normalised kernel with reflect padding commutes with the per-channel affine map.
   */
  private photometric(image: tf.Tensor4D, on: { jitter: boolean; blur: boolean; sigma: number }, ctx: StepContext): tf.Tensor4D {
    return tf.tidy(() => {
      let out = image;
      if (on.jitter) out = colorJitter(image, drawColorJitter(image.shape[0], this.opts.colorJitterStrength ?? 0.2, ctx.rng));
      // DAFormer's kernel: ⌈0.1·H⌉, made odd by rounding down
      const k = Math.ceil(0.1 * image.shape[1]);
      const size = k % 2 === 1 ? k : k - 1;
      if (on.blur && size >= 3) out = gaussianBlur(out, on.sigma, size);
      return out;
    });
  }

  /** The mixed image's augmentation at full strength: colour jitter always, blur always (when enabled) at a random σ. */
  augment(image: tf.Tensor4D, ctx: StepContext): tf.Tensor4D {
    const sigma = ctx.rng.uniform(0.15, 1.15) * (image.shape[1] / (this.opts.blurReferenceSize ?? 512));
    return this.photometric(image, { jitter: true, blur: this.opts.blur ?? true, sigma }, ctx);
  }
}
