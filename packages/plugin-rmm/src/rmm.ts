/**
 * The rectification-aware mixture model behind the core `Loss` contract (mixed-image part of the step).
 * Source pixels of the mixed image keep weight-1 cross-entropy; target pixels follow the formulation:
 * - `loss-mixture` (DESIGN §5.2 v2, default; maths in `loss-mixture.ts`): a running two-component fit of the
 *   pseudo-label losses with r as each pixel's prior; the rectifier takes λ·L_ψ; the student takes CE at the
 *   rectifier's own weight (default `studentWeight: 'rectifier'`: the mixture reaches it only through r), or
 *   with `studentWeight: 'posterior'` w = min(1, q·γ/γ̄) (or the bootstrapped soft target).
 * - `label-mixture` (v1, for the record; maths in `rmm-loss.ts`): λ·L_RMM end to end.
 * Works with any rectifier: the identity one (r = q), the confidence one (r = teacher max-prob: the control
 * rung) or the INR (its gradient flows from L_ψ / L_RMM).
 */
import * as tf from '@tensorflow/tfjs';
import {
  Ir2fError, pixelCrossEntropy, redistributeWeight, stopGradient, z, type EventBus, type Ir2fEventInput, type Loss, type LossInput, type LossOutput,
  type StepContext,
} from '@ir2f/core';
import { lossMixtureStep, RunningLossMixture } from './loss-mixture.js';
import { logR, rmmTerms } from './rmm-loss.js';

export const RmmOptionsSchema = z.object({
  /** `loss-mixture` (§5.2 v2) or `label-mixture` (v1, collapses; kept for comparison). */
  formulation: z.enum(['loss-mixture', 'label-mixture']).default('loss-mixture'),
  /** λ_RMM: weight of L_ψ (v2) or of L_RMM (v1). */
  lambda: z.number().nonnegative().default(1),
  /** v2: the student's target on target pixels: `hard` (ŷ at weight min(1, q·γ/γ̄)) or `bootstrap` (γ·onehot(ŷ) + (1 − γ)·p_φ at weight q). */
  target: z.enum(['hard', 'bootstrap']).default('hard'),
  /**
   * v2: what weighs the student's target pixels: the `rectifier`'s own weight (default; for the INR
   * min(1, q·r/r̄), as without the RMM), so that the mixture acts on the student only through r, which L_ψ
   * trains end to end; or the mixture's `posterior` γ (§5.2 as written; `target` then picks hard or
   * bootstrapped). Over 5 paired seeds γ-weighting cost 2.0 mIoU on day2night (bench/RESULTS.md).
   */
  studentWeight: z.enum(['posterior', 'rectifier']).default('rectifier'),
  /**
   * v2: where w = min(1, q·γ/γ̄) takes γ̄: over the batch's target pixels (`batch`), or per pseudo-class
   * (`class`: γ moves weight between pixels of one class only, so no class loses its share).
   */
  redistribution: z.enum(['batch', 'class']).default('batch'),
  /** v2: EM iterations per step, started from the running fit. */
  emIterations: z.number().int().positive().default(5),
  /** v2: smoothing of the running fit, θ ← m·θ + (1 − m)·θ_fit. */
  momentum: z.number().min(0).lt(1).default(0.9),
  /** v2: floor on each component's std (on log ℓ). */
  sigmaFloor: z.number().positive().default(0.05),
  /** v1: the noise component, `uniform` over the K classes or `teacher-rest` (the teacher's distribution without its argmax). */
  noise: z.enum(['uniform', 'teacher-rest']).default('uniform'),
  /** v1: floor r_min on r. */
  rMin: z.number().min(0).lt(1).default(0),
  ignoreIndex: z.number().int().default(255),
  /** Emit an `rmm` event at every N-th step (0: never). */
  statsEvery: z.number().int().nonnegative().default(1),
}).strict();

export type RmmOptions = z.output<typeof RmmOptionsSchema>;
export type RmmOptionsInput = z.input<typeof RmmOptionsSchema>;

type RmmEvent = Extract<Ir2fEventInput, { type: 'rmm' }>;

export class RmmLoss implements Loss {
  readonly options: RmmOptions;
  readonly usesTeacherProbs: boolean;
  /** v2's running fit; its state is the loss's (`Loss.state`). */
  readonly mixture?: RunningLossMixture;
  readonly state?: Float32Array;

  constructor(options: RmmOptionsInput = {}, private readonly bus?: EventBus) {
    this.options = RmmOptionsSchema.parse(options);
    const o = this.options;
    const v2 = o.formulation === 'loss-mixture';
    this.usesTeacherProbs = v2 ? o.target === 'bootstrap' && o.studentWeight === 'posterior' : o.noise === 'teacher-rest';
    if (v2) {
      this.mixture = new RunningLossMixture({ iterations: o.emIterations, sigmaFloor: o.sigmaFloor, momentum: o.momentum });
      this.state = this.mixture.state;
    }
  }

  compute(input: LossInput, ctx: StepContext): LossOutput {
    const r = input.rectified?.rectification;
    if (!r || r.rank !== 3) {
      throw new Ir2fError('INVALID_ARGUMENT', 'the RMM loss needs a per-pixel rectification [B, H, W] (LossInput.rectified.rectification)');
    }
    if (this.usesTeacherProbs && !input.teacherProbs) {
      throw new Ir2fError('INVALID_ARGUMENT', `RMM ${this.options.formulation === 'loss-mixture' ? 'target \'bootstrap\'' : 'noise \'teacher-rest\''} needs the teacher's probabilities on the mixed image (LossInput.teacherProbs)`);
    }
    const sourceMask = input.sourceMask ?? tf.zeros(input.target.labels.shape);
    try {
      return this.mixture
        ? this.lossMixture(input, r as tf.Tensor3D, sourceMask as tf.Tensor3D, this.mixture, ctx)
        : this.labelMixture(input, r as tf.Tensor3D, sourceMask as tf.Tensor3D, ctx);
    } finally {
      if (!input.sourceMask) sourceMask.dispose();
    }
  }

  private emit(event: Omit<RmmEvent, 'type' | 'step'>, ctx: StepContext): void {
    // by the step index: a resumed run reports at the same steps as a straight one
    const every = this.options.statsEvery;
    if (this.bus && every > 0 && ctx.step % every === 0) this.bus.emit({ type: 'rmm', step: ctx.step + 1, ...event });
  }

  /** §5.2 v2. */
  private lossMixture(input: LossInput, r: tf.Tensor3D, sourceMask: tf.Tensor3D, mixture: RunningLossMixture, ctx: StepContext): LossOutput {
    const o = this.options;
    const { studentLogits, target } = input;
    const logit = input.rectified?.logit?.rank === 3 ? input.rectified.logit as tf.Tensor3D : undefined;
    const warmup = mixture.warmup;
    const ce = pixelCrossEntropy(studentLogits, target.labels, o.ignoreIndex);
    const valid = tf.tidy(() => tf.mul(tf.cast(tf.logicalAnd(tf.notEqual(target.labels, o.ignoreIndex), tf.less(target.labels, studentLogits.shape[3])), 'float32'), tf.sub(1, sourceMask)) as tf.Tensor3D);
    const logs = tf.tidy(() => logR(r, logit, 0));
    const step = lossMixtureStep(mixture, ce, r, valid, logs as [tf.Tensor, tf.Tensor]);
    const q = input.quality ?? target.weight;
    const parts = tf.tidy(() => {
      const n = tf.maximum(tf.sum(valid), 1);
      const psi = tf.neg(tf.div(tf.sum(step.logLikelihood), n)) as tf.Scalar;
      const qTarget = tf.mul(q, valid) as tf.Tensor3D;
      let targetLoss: tf.Tensor3D;
      if (o.studentWeight === 'rectifier') {
        targetLoss = tf.mul(ce, tf.mul(target.weight, valid)) as tf.Tensor3D;
      } else if (warmup) {
        targetLoss = tf.mul(ce, qTarget) as tf.Tensor3D;
      } else if (o.target === 'bootstrap') {
        // soft target γ·onehot(ŷ) + (1 − γ)·p_φ, at the baseline's weight q
        const K = studentLogits.shape[3];
        const onehot = tf.oneHot(tf.cast(tf.where(tf.cast(valid, 'bool'), target.labels, tf.zerosLike(target.labels)), 'int32'), K);
        const g = tf.expandDims(step.gamma, 3);
        const soft = tf.add(tf.mul(g, onehot), tf.mul(tf.sub(1, g), input.teacherProbs!));
        const softCe = tf.neg(tf.sum(tf.mul(soft, tf.logSoftmax(studentLogits, 3)), 3));
        targetLoss = tf.mul(softCe, qTarget) as tf.Tensor3D;
      } else {
        const perClass = o.redistribution === 'class' ? { labels: target.labels, numClasses: studentLogits.shape[3] } : undefined;
        targetLoss = tf.mul(ce, redistributeWeight(qTarget, step.gamma, valid, perClass)) as tf.Tensor3D;
      }
      // source pixels at weight 1, target pixels as above; mean over all pixels, as the baseline's loss
      const student = tf.mean(tf.add(tf.mul(ce, sourceMask), targetLoss)) as tf.Scalar;
      const meanQ = tf.div(tf.sum(qTarget), n);
      return { student, psi: stopGradientIf(warmup, psi), meanQ };
    });
    const meanQ = parts.meanQ.dataSync()[0];
    const psiValue = parts.psi.dataSync()[0];
    tf.dispose([ce, valid, ...logs, step.gamma, step.logLikelihood, parts.meanQ]);
    this.emit({
      meanGamma: step.meanGamma, meanR: step.meanR, loss: psiValue, lowGammaShare: step.lowGammaShare, meanQ,
      components: step.n ? { clean: { ...step.fit.clean }, noisy: { ...step.fit.noisy } } : undefined, warmup: mixture.warmup,
    }, ctx);
    // during the warm-up ψ trains on L_cal only (L_ψ reported, not added)
    const total = warmup ? parts.student : tf.add(parts.student, tf.mul(parts.psi, o.lambda)) as tf.Scalar;
    return { total, parts: { ce: parts.student, psi: parts.psi } };
  }

  /** §5.2 v1. */
  private labelMixture(input: LossInput, r: tf.Tensor3D, sourceMask: tf.Tensor3D, ctx: StepContext): LossOutput {
    const o = this.options;
    const { studentLogits, target } = input;
    const logit = input.rectified?.logit;
    const parts = tf.tidy(() => {
      const targetMask = tf.sub(1, sourceMask);
      // source pixels: plain cross-entropy, mean over all pixels as the baseline's loss
      const source = tf.mean(tf.mul(pixelCrossEntropy(studentLogits, target.labels, o.ignoreIndex), sourceMask)) as tf.Scalar;
      const terms = rmmTerms(studentLogits, target.labels, r, {
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
    this.emit({ meanGamma: parts.meanGamma.dataSync()[0], meanR: parts.meanR.dataSync()[0], loss: parts.rmm.dataSync()[0] }, ctx);
    tf.dispose([parts.meanGamma, parts.meanR]);
    const total = tf.add(parts.source, tf.mul(parts.rmm, o.lambda)) as tf.Scalar;
    return { total, parts: { mixSource: parts.source, rmm: parts.rmm } };
  }
}

/** L_ψ without its gradient during the warm-up (reported only). */
function stopGradientIf(on: boolean, x: tf.Scalar): tf.Scalar {
  return on ? stopGradient(x) : x;
}
