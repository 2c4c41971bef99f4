/**
 * DESIGN §5.2, the rectification-aware mixture model in one place. A target pixel's observed pseudo-label ŷ
 * is clean with probability r (then it follows the student, p_θ(ŷ|x)) or noise with probability 1 − r
 * (uniform over K classes):
 *
 *   P(ŷ | x) = r · p_θ(ŷ | x) + (1 − r) / K
 *   L_RMM    = − mean over target pixels of the mixed image of log P(ŷ | x)
 *
 * computed stably from log-probabilities: log P = logsumexp(log r + log p_θ(ŷ), log(1 − r) − log K), with r
 * clamped to [max(r_min, ε), 1 − ε] so that r at 0 or 1 gives finite values and gradients. No detach: the
 * gradient reaches the rectifier (end to end). The student's gradient is cross-entropy weighted by the
 * posterior responsibility γ = r·p_θ(ŷ) / P(ŷ | x) (the EM view). Source pixels keep weight-1 cross-entropy.
 */
import * as tf from '@tensorflow/tfjs';

export interface RmmTerms {
  /** −log P(ŷ|x) per pixel [B, H, W] (0 on ignored pixels). */
  nll: tf.Tensor3D;
  /** Posterior responsibility γ [B, H, W]. */
  gamma: tf.Tensor3D;
  /** 1 on valid (not ignored) pixels. */
  valid: tf.Tensor3D;
}

const EPS = 1e-6;

/** Per-pixel mixture terms for logits [B, H, W, K], labels ŷ [B, H, W] and rectification r [B, H, W]. */
export function rmmTerms(logits: tf.Tensor4D, labels: tf.Tensor3D, r: tf.Tensor3D, opts: { rMin?: number; ignoreIndex?: number } = {}): RmmTerms {
  return tf.tidy(() => {
    const K = logits.shape[3];
    const valid = tf.logicalAnd(tf.notEqual(labels, opts.ignoreIndex ?? 255), tf.less(labels, K));
    const safe = tf.where(valid, labels, tf.zerosLike(labels));
    const logp = tf.sum(tf.mul(tf.logSoftmax(logits, 3), tf.oneHot(tf.cast(safe, 'int32'), K)), 3) as tf.Tensor3D;
    const rc = tf.clipByValue(r, Math.max(opts.rMin ?? 0, EPS), 1 - EPS);
    const clean = tf.add(tf.log(rc), logp);
    const noise = tf.sub(tf.log1p(tf.neg(rc)), Math.log(K));
    const logP = tf.logSumExp(tf.stack([clean, noise], 3), 3) as tf.Tensor3D;
    const validF = tf.cast(valid, 'float32') as tf.Tensor3D;
    return {
      nll: tf.mul(tf.neg(logP), validF) as tf.Tensor3D,
      gamma: tf.mul(tf.exp(tf.sub(clean, logP)), validF) as tf.Tensor3D,
      valid: validF,
    };
  });
}
