/**
 * DESIGN §5.2 v1 (`formulation: 'label-mixture'`, kept for the record: it collapses, γ → 1; v2 is in
 * `loss-mixture.ts`), the rectification-aware label mixture in one place. A target pixel's observed pseudo-label ŷ
 * is clean with probability r (then it follows the student, p_θ(ŷ|x)) or noise with probability 1 − r:
 *
 *   P(ŷ | x) = r · p_θ(ŷ | x) + (1 − r) · N(x)
 *   L_RMM    = − mean over target pixels of the mixed image of log P(ŷ | x)
 *
 * The noise term N is the student's likelihood when the true class is drawn from a noise distribution n:
 * N = Σ_k n(k) p_θ(k | x).
 *   - `uniform` (DESIGN's default): n = 1/K, so N = 1/K whatever the student says.
 *   - `teacher-rest`: n = the teacher's distribution without its argmax ŷ, renormalised,
 *     n(k) = p_φ(k) / (1 − p_φ(ŷ)) for k ≠ ŷ: a wrong pseudo-label is most likely the teacher's runner-up.
 *     (Read literally as a distribution over the observed label it would give ŷ zero mass and push r to 1.)
 *
 * Computed from log-probabilities: log P = logsumexp(log r + log p_θ(ŷ), log(1 − r) + log N), with log r and
 * log(1 − r) from r's logit s when the rectifier gives one (−softplus(−s), −softplus(s): exact at r ≈ 0 or 1),
 * else from r clamped to [ε, 1 − ε]; the floor r_min applies in either case. No detach: the gradient reaches
 * the rectifier (end to end). The student's gradient is cross-entropy weighted by the posterior
 * responsibility γ = r·p_θ(ŷ) / P(ŷ | x) (the EM view) plus, for `teacher-rest`, the noise term's pull
 * toward the teacher's other classes. Source pixels keep weight-1 cross-entropy (in `rmm.ts`).
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

export interface RmmTermOptions {
  rMin?: number;
  ignoreIndex?: number;
  /** r's logit s [B, H, W] (r = σ(s)); without it log r and log(1 − r) come from r clamped to [ε, 1 − ε]. */
  logit?: tf.Tensor3D;
  /** Noise component: `uniform`, or `teacher-rest` with the teacher's probabilities [B, H, W, K]. */
  noise?: { kind: 'uniform' } | { kind: 'teacher-rest'; teacherProbs: tf.Tensor4D };
}

const EPS = 1e-6;

/** log r and log(1 − r), floored at r_min (from the logit s when given: −softplus(−s), −softplus(s)). */
export function logR(r: tf.Tensor3D, logit: tf.Tensor3D | undefined, rMin: number): [tf.Tensor, tf.Tensor] {
  let logr: tf.Tensor;
  let log1mr: tf.Tensor;
  if (logit) {
    logr = tf.neg(tf.softplus(tf.neg(logit)));
    log1mr = tf.neg(tf.softplus(logit));
  } else {
    const rc = tf.clipByValue(r, EPS, 1 - EPS);
    logr = tf.log(rc);
    log1mr = tf.log1p(tf.neg(rc));
  }
  // r' = max(r, r_min): log r' = max(log r, log r_min), log(1 − r') = min(log(1 − r), log(1 − r_min))
  if (rMin > 0) return [tf.maximum(logr, Math.log(rMin)), tf.minimum(log1mr, Math.log1p(-rMin))];
  return [logr, log1mr];
}

/** Per-pixel mixture terms for logits [B, H, W, K], labels ŷ [B, H, W] and rectification r [B, H, W]. */
export function rmmTerms(logits: tf.Tensor4D, labels: tf.Tensor3D, r: tf.Tensor3D, opts: RmmTermOptions = {}): RmmTerms {
  return tf.tidy(() => {
    const K = logits.shape[3];
    const valid = tf.logicalAnd(tf.notEqual(labels, opts.ignoreIndex ?? 255), tf.less(labels, K));
    const onehot = tf.oneHot(tf.cast(tf.where(valid, labels, tf.zerosLike(labels)), 'int32'), K);
    const logpAll = tf.logSoftmax(logits, 3);
    const logp = tf.sum(tf.mul(logpAll, onehot), 3) as tf.Tensor3D;
    const [logr, log1mr] = logR(r, opts.logit, opts.rMin ?? 0);
    const clean = tf.add(logr, logp);
    let logN: tf.Tensor;
    if (opts.noise?.kind === 'teacher-rest') {
      // log Σ_{k≠ŷ} p_φ(k) p_θ(k) − log Σ_{k≠ŷ} p_φ(k): the rest renormalised by its own sum (no 1 − p_φ(ŷ)
      // cancellation; a teacher certain of ŷ leaves the rest uniform); ŷ's own term is pushed to −1e30
      const logRest = tf.add(tf.log(tf.maximum(opts.noise.teacherProbs, 1e-30)), tf.mul(onehot, -1e30));
      logN = tf.sub(tf.logSumExp(tf.add(logRest, logpAll), 3), tf.logSumExp(logRest, 3));
    } else {
      logN = tf.scalar(-Math.log(K));
    }
    const noise = tf.add(log1mr, logN);
    const logP = tf.logSumExp(tf.stack([clean, tf.broadcastTo(noise, clean.shape)], 3), 3) as tf.Tensor3D;
    const validF = tf.cast(valid, 'float32') as tf.Tensor3D;
    return {
      nll: tf.mul(tf.neg(logP), validF) as tf.Tensor3D,
      gamma: tf.mul(tf.exp(tf.sub(clean, logP)), validF) as tf.Tensor3D,
      valid: validF,
    };
  });
}
