/**
 * The rectification-aware mixture model behind the core `Loss` contract (mixed-image part of the step):
 * source pixels keep weight-1 cross-entropy, target pixels take λ·L_RMM (maths in `rmm-loss.ts`). Works with
 * any rectifier: with the identity one r is the per-batch quality weight and carries no gradient; with the
 * INR rectifier the gradient flows into it.
 */
import * as tf from '@tensorflow/tfjs';
import { Ir2fError, pixelCrossEntropy, z, type EventBus, type Loss, type LossInput, type LossOutput, type StepContext } from '@ir2f/core';
import { rmmTerms } from './rmm-loss.js';

export const RmmOptionsSchema = z.object({
  /** λ_RMM. */
  lambda: z.number().nonnegative().default(1),
  /** The noise component: `uniform` over the K classes, or `teacher-rest` (the teacher's distribution without its argmax). */
  noise: z.enum(['uniform', 'teacher-rest']).default('uniform'),
  /** Floor r_min on r. */
  rMin: z.number().min(0).lt(1).default(0),
  ignoreIndex: z.number().int().default(255),
  /** Emit an `rmm` event every N steps (0: never). */
  statsEvery: z.number().int().nonnegative().default(1),
}).strict();

export type RmmOptions = z.output<typeof RmmOptionsSchema>;
export type RmmOptionsInput = z.input<typeof RmmOptionsSchema>;

export class RmmLoss implements Loss {
  readonly options: RmmOptions;
  readonly usesTeacherProbs: boolean;
  private calls = 0;

  constructor(options: RmmOptionsInput = {}, private readonly bus?: EventBus) {
    this.options = RmmOptionsSchema.parse(options);
    this.usesTeacherProbs = this.options.noise === 'teacher-rest';
  }

  compute(input: LossInput, ctx: StepContext): LossOutput {
    const r = input.rectified?.rectification;
    if (!r || r.rank !== 3) {
      throw new Ir2fError('INVALID_ARGUMENT', 'the RMM loss needs a per-pixel rectification [B, H, W] (LossInput.rectified.rectification)');
    }
    const o = this.options;
    const { studentLogits, target } = input;
    if (o.noise === 'teacher-rest' && !input.teacherProbs) {
      throw new Ir2fError('INVALID_ARGUMENT', 'RMM noise \'teacher-rest\' needs the teacher\'s probabilities on the mixed image (LossInput.teacherProbs)');
    }
    const logit = input.rectified?.logit;
    const sourceMask = input.sourceMask ?? tf.zeros(target.labels.shape);
    const parts = tf.tidy(() => {
      const targetMask = tf.sub(1, sourceMask);
      // source pixels: plain cross-entropy, mean over all pixels as the baseline's loss
      const source = tf.mean(tf.mul(pixelCrossEntropy(studentLogits, target.labels, o.ignoreIndex), sourceMask)) as tf.Scalar;
      const terms = rmmTerms(studentLogits, target.labels, r as tf.Tensor3D, {
        rMin: o.rMin, ignoreIndex: o.ignoreIndex, logit: logit?.rank === 3 ? logit as tf.Tensor3D : undefined,
        noise: o.noise === 'teacher-rest' ? { kind: 'teacher-rest', teacherProbs: input.teacherProbs! } : { kind: 'uniform' },
      });
      const kept = tf.mul(terms.valid, targetMask);
      const n = tf.maximum(tf.sum(kept), 1);
      const rmm = tf.div(tf.sum(tf.mul(terms.nll, targetMask)), n) as tf.Scalar;
      const meanGamma = tf.div(tf.sum(tf.mul(terms.gamma, targetMask)), n) as tf.Scalar;
      const meanR = tf.div(tf.sum(tf.mul(r, kept)), n) as tf.Scalar;
      return { source, rmm, meanGamma, meanR };
    });
    if (!input.sourceMask) sourceMask.dispose();
    this.calls++;
    if (this.bus && o.statsEvery > 0 && (this.calls - 1) % o.statsEvery === 0) {
      this.bus.emit({
        type: 'rmm', step: ctx.step + 1, meanGamma: parts.meanGamma.dataSync()[0], meanR: parts.meanR.dataSync()[0], loss: parts.rmm.dataSync()[0],
      });
    }
    tf.dispose([parts.meanGamma, parts.meanR]);
    const total = tf.add(parts.source, tf.mul(parts.rmm, o.lambda)) as tf.Scalar;
    return { total, parts: { mixSource: parts.source, rmm: parts.rmm } };
  }
}
