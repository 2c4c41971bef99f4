/**
 * The parameter-free rectifier of DESIGN §5.3's control rung: r(x) = max_k p_φ(k | x), the teacher's own
 * confidence in its pseudo-label, per pixel at label resolution. With the RMM loss (`@ir2f/plugin-rmm`) it is
 * the prior the INR must beat; alone it weights the target loss by §5.1.7 (`redistribute`, default) or
 * replaces q by it (`replace`). Nothing is trained.
 */
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import type { Rectified, Rectifier, RectifyInput } from './contracts.js';
import { definePlugin } from './plugin.js';
import { Tokens } from './tokens.js';
import { instanceCachingFactory } from './di.js';
import { RECTIFIER_WEIGHTINGS, redistributeWeight, type RectifierWeighting } from './rectifier-weighting.js';

/** r's logit is clipped to ±LOGIT_MAX (r within 1e-7 of 0 or 1 in float32 would give ±∞). */
const LOGIT_MAX = 16;

export class ConfidenceRectifier implements Rectifier {
  readonly variables: readonly tf.Variable[] = [];

  constructor(readonly weighting: RectifierWeighting = 'redistribute') {}

  rectify(input: RectifyInput): Rectified {
    const { labels, weight: q, probs } = input.pseudo;
    return tf.tidy(() => {
      const r = tf.max(probs, 3) as tf.Tensor3D;
      const logit = tf.clipByValue(tf.sub(tf.log(r), tf.log1p(tf.neg(r))), -LOGIT_MAX, LOGIT_MAX) as tf.Tensor3D;
      const weight = this.weighting === 'redistribute' ? redistributeWeight(q, r) : tf.clone(r);
      // labels pass through: the caller owns the pseudo-labels (as the identity rectifier's)
      return { labels, weight, rectification: r, logit } as unknown as tf.TensorContainer;
    }) as unknown as Rectified;
  }

  dispose(): void {}
}

export const ConfidenceRectifierOptionsSchema = z.object({
  /** How r weights the target loss when the loss reads the weight (DESIGN §5.1.7). */
  weighting: z.enum(RECTIFIER_WEIGHTINGS).default('redistribute'),
}).strict();

/** The confidence rectifier as a plugin value (binds the `Rectifier` token), e.g. for configs. */
export const confidenceRectifier = definePlugin({
  name: '@ir2f/core/confidence-rectifier',
  options: ConfidenceRectifierOptionsSchema,
  register(container, options) {
    container.register(Tokens.Rectifier, { useFactory: instanceCachingFactory(() => new ConfidenceRectifier(options.weighting)) });
  },
});
