/**
 * The extension points of DESIGN §2. Tensors are NHWC; images [B, H, W, 3] float32, label maps int32
 * [B, H, W] with 255 = ignore. Implementations own their variables and release them in `dispose()`.
 */
import type * as tf from '@tensorflow/tfjs';
import type { Observable } from 'rxjs';
import type { Ir2fEvent, Ir2fEventInput } from './events.js';
import type { Rng } from './rng.js';

/** Per-call context: step, train/eval mode and an RNG derived from the run seed. */
export interface StepContext {
  /** Iterations completed before this one (0-based); events and messages count from 1. */
  step: number;
  training: boolean;
  rng: Rng;
}

export interface Disposable {
  dispose(): void;
}

export interface Backbone extends Disposable {
  /** Channels of each returned feature map, in order. */
  readonly channels: readonly number[];
  /** Output stride of each returned feature map (e.g. 4, 8, 16, 32). */
  readonly strides: readonly number[];
  /** Trainable variables (optimised by the trainer). */
  readonly variables: readonly tf.Variable[];
  forward(x: tf.Tensor4D, ctx?: StepContext): tf.Tensor4D[];
}

export interface DecodeOutput {
  /** [B, H/4, W/4, K] class logits. */
  logits: tf.Tensor4D;
  /** [B, H/4, W/4, E] the fused embedding the logits are read from (the rectifier's input). */
  embedding: tf.Tensor4D;
}

export interface DecodeHead extends Disposable {
  readonly numClasses: number;
  /** Channels E of `DecodeOutput.embedding` (a rectifier sizes its input projection by it). */
  readonly embeddingChannels: number;
  readonly variables: readonly tf.Variable[];
  forward(features: tf.Tensor4D[], ctx?: StepContext): DecodeOutput;
}

export interface PseudoLabels {
  /** int32 [B, H, W] argmax of the teacher; 255 where ignored. */
  labels: tf.Tensor3D;
  /** float32 [B, H, W] per-pixel weight in [0, 1]. */
  weight: tf.Tensor3D;
  /** float32 [B, H, W, K] teacher probabilities. */
  probs: tf.Tensor4D;
}

export interface PseudoLabeler {
  label(teacherProbs: tf.Tensor4D, ctx: StepContext): PseudoLabels;
}

export interface RectifyInput {
  pseudo: PseudoLabels;
  /** Teacher decoder embedding [B, h, w, E] (detached). */
  features: tf.Tensor4D;
  /** Teacher log-probabilities [B, h, w, K] at feature resolution (detached). */
  logProbs?: tf.Tensor4D;
  /** The target image [B, H, W, 3]. */
  image: tf.Tensor4D;
  /**
   * Whether the step's loss may take gradients through `Rectified.rectification` or `logit` (`Loss.rectificationGradient`;
   * absent: true). When false, a rectifier whose `weight` carries no gradient either may compute r without
   * recording it (`withoutGradients`).
   */
  rectificationGradient?: boolean;
}

export interface Rectified {
  labels: tf.Tensor3D;
  weight: tf.Tensor3D;
  /** r ∈ (0, 1): [B, H, W] (or [B, H, W, K] for per-class rectifiers). */
  rectification: tf.Tensor;
  /** The logit s of r = σ(s), same shape, where the rectifier has one: losses take log r = −softplus(−s) and
   *  log(1 − r) = −softplus(s) from it, exact where r is within float rounding of 0 or 1. */
  logit?: tf.Tensor;
}

/** Source-side supervision a rectifier may use (e.g. DESIGN §5.1.6 calibration). */
export interface RectifierSourceSide {
  teacherProbs: tf.Tensor4D;
  features: tf.Tensor4D;
  logProbs?: tf.Tensor4D;
  labels: tf.Tensor3D;
}

export interface Rectifier extends Disposable {
  readonly variables: readonly tf.Variable[];
  rectify(input: RectifyInput, ctx: StepContext): Rectified;
  /**
   * A source-side loss, added to the step's source pass: it runs before `rectify` of the same step, and with
   * two replicas on another replica (another instance) than `rectify`, so it must not depend on state that
   * `rectify` leaves behind.
   */
  auxLoss?(source: RectifierSourceSide, ctx: StepContext): tf.Scalar;
  /**
   * Which view of the source crop the teacher labels for `auxLoss`: `clean` (default) or `shifted`, the
   * mixer's photometric augmentation at full strength (`Mixer.augment`), so that calibration sees target-like
   * errors (DESIGN §5.1.8).
   */
  readonly calibrationView?: 'clean' | 'shifted';
  /** r [B, H, W] at any resolution from teacher features and log-probabilities (continuous rectifiers). */
  rectifyGrid?(features: tf.Tensor4D, logProbs: tf.Tensor4D, H: number, W: number): tf.Tensor3D;
  /** The trained rectifier as a standalone ONNX model (bytes). */
  exportOnnx?(opts?: { opset?: number }): Uint8Array;
}

export interface LossInput {
  /** [B, H, W, K] student logits on the mixed image. */
  studentLogits: tf.Tensor4D;
  /** Mixed target: labels int32 [B, H, W] (255 ignore), weight [B, H, W]. */
  target: { labels: tf.Tensor3D; weight: tf.Tensor3D };
  /** Rectification of the mixed target (1 on pixels taken from the source). */
  rectified?: Rectified;
  /** 1 where the mixed pixel came from the source image. */
  sourceMask?: tf.Tensor3D;
  /** The teacher's class probabilities on the mixed image [B, H, W, K] (one-hot of the label on source pixels). */
  teacherProbs?: tf.Tensor4D;
  /** The pseudo-labeler's own weight q on the mixed image, before any rectifier (1 on source pixels). */
  quality?: tf.Tensor3D;
}

export interface LossOutput {
  total: tf.Scalar;
  /** Named parts for events (scalars). */
  parts: Record<string, tf.Scalar>;
}

export interface Loss {
  /** Set when `compute` reads `LossInput.teacherProbs` (the trainer mixes them only then). */
  readonly usesTeacherProbs?: boolean;
  /**
   * False when `compute`'s total carries no gradient through `rectified.rectification` or `rectified.logit` (it
   * reads them as constants, or not at all): rectifiers may then compute r off the gradient tape. Absent or
   * true: it may, and r keeps its gradient.
   */
  readonly rectificationGradient?: boolean;
  /**
   * Host state the loss carries from step to step (e.g. a running mixture fit), updated in place by `compute`.
   * The trainer checkpoints it, restores it on resume and on a failed step, and copies it between replicas;
   * float32 so that a checkpoint round trip is exact.
   */
  readonly state?: Float32Array;
  compute(input: LossInput, ctx: StepContext): LossOutput;
}

export interface MixBatch {
  image: tf.Tensor4D;
  labels: tf.Tensor3D;
  weight?: tf.Tensor3D;
  rectification?: tf.Tensor;
  /** The logit of `rectification` (see `Rectified.logit`). */
  rectificationLogit?: tf.Tensor;
  /** The teacher's class probabilities [B, H, W, K] (target side). */
  probs?: tf.Tensor4D;
  /** The pseudo-labeler's weight q (target side; the mix gives source pixels 1). */
  quality?: tf.Tensor3D;
}

export interface MixResult extends MixBatch {
  weight: tf.Tensor3D;
  /** 1 where the pixel came from the source. */
  sourceMask: tf.Tensor3D;
}

export interface Mixer {
  mix(source: MixBatch, target: MixBatch, ctx: StepContext): MixResult;
  /** The mixer's photometric augmentation of an image batch at full strength (every transform applied). */
  augment?(image: tf.Tensor4D, ctx: StepContext): tf.Tensor4D;
}

export interface EventBus {
  emit(event: Ir2fEventInput): void;
  readonly events$: Observable<Ir2fEvent>;
  complete(): void;
}
