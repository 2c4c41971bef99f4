/**
 * One DAFormer-style self-training iteration (DESIGN §4), built only on the extension points:
 *
 *   teacher(x_t) → softmax → PseudoLabeler → [inside the gradient:] Rectifier → Mixer(x_s, x_t) →
 *   student(x_s) CE on source labels + Loss(student(x_mixed), mixed target) + rectifier aux loss →
 *   one AdamW step over student and rectifier variables → EMA teacher update.
 *
 * Rectify and mix run inside the gradient function so that a trainable rectifier receives gradients from
 * the loss (the RMM path); with the identity rectifier nothing changes. Logits are upsampled to the input size
 * before any loss (as DAFormer's `encode_decode`). Modes `source-only` and `target-oracle` give the bench's
 * bounds. Host reads: the loss values once per step, for events.
 */
import * as tf from '@tensorflow/tfjs';
import type {
  DecodeOutput, Loss, Mixer, PseudoLabeler, Rectifier, StepContext,
} from '../contracts.js';
import { pixelCrossEntropy } from '../defaults/loss-weighted-ce.js';
import { emaAlpha, emaUpdateModule } from '../defaults/ema.js';
import { Ir2fError } from '../errors.js';
import { resizeTo, runningStats, setRunningStats, snapshotRunningStats } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import type { AdamW } from '../optim/adamw.js';

/** A segmentation network as the loop needs it (e.g. @ir2f/backbones' SegmentationModel). */
export interface SegmentationNetwork extends Module {
  forward(x: tf.Tensor4D): DecodeOutput;
  /** The forward pass that also returns the encoder features; needed only for the ImageNet feature distance. */
  forwardWithFeatures?(x: tf.Tensor4D): DecodeOutput & { features: tf.Tensor4D[] };
}

/**
 * DAFormer's ImageNet feature distance: the student's last encoder features stay close to a frozen
 * ImageNet-pretrained copy's on source pixels of thing classes (λ = 0.005).
 */
export interface FeatureDistance {
  imnet: SegmentationNetwork;
  lambda: number;
  /** Train ids the distance applies to (DAFormer: the Cityscapes thing classes). */
  classes: readonly number[];
  /** A feature cell keeps its label only when that class covers this share of it (DAFormer: 0.75). */
  minRatio: number;
  numClasses: number;
}

export type TrainMode = 'uda' | 'source-only' | 'target-oracle';

export interface UdaParts {
  student: SegmentationNetwork;
  teacher: SegmentationNetwork;
  pseudoLabeler: PseudoLabeler;
  rectifier: Rectifier;
  mixer: Mixer;
  loss: Loss;
  optimizer: AdamW;
  featureDistance?: FeatureDistance;
}

export interface UdaBatch {
  /** [B, H, W, 3] normalised images and int32 [B, H, W] labels (255 = ignore). */
  source: { image: tf.Tensor4D; labels: tf.Tensor3D };
  /** Target images; labels only for the target-oracle bound. */
  target: { image: tf.Tensor4D; labels?: tf.Tensor3D };
}

export interface UdaStepResult {
  /** Loss parts by name, plus `total`. */
  losses: Record<string, number>;
  /** Pseudo-label statistics (uda mode). */
  pseudo?: { keptFraction: number; meanConfidence: number };
  /** Wall time of the step's phases (ms), when `profile` is set (each phase waits for its tensors). */
  phases?: { teacher: number; student: number; rectifier: number; optimizer: number };
}

const upsampled = (out: DecodeOutput, like: tf.Tensor4D) => resizeTo(out.logits, like.shape.slice(1, 3));

const meanCE = (logits: tf.Tensor4D, labels: tf.Tensor3D) => tf.mean(pixelCrossEntropy(logits, labels)) as tf.Scalar;

/**
 * Labels at feature resolution as DAFormer's `downscale_label_ratio`: the majority class of each
 * `scale`×`scale` cell, or ignore when it covers less than `minRatio` of the cell (ignored pixels count).
 */
export function downscaleLabels(labels: tf.Tensor3D, scale: number, minRatio: number, numClasses: number, ignoreIndex = 255): tf.Tensor3D {
  return tf.tidy(() => {
    const [B, H, W] = labels.shape;
    if (H % scale !== 0 || W % scale !== 0) {
      throw new Ir2fError('INVALID_ARGUMENT', `label map ${H}×${W} is not a multiple of the feature stride ${scale}`);
    }
    const valid = tf.notEqual(labels, ignoreIndex);
    // ignored pixels become class K so that they dilute the share of every real class
    const cls = tf.where(valid, labels, tf.fill(labels.shape, numClasses, 'int32')) as tf.Tensor3D;
    const share = tf.avgPool(tf.oneHot(tf.reshape(cls, [B, H, W]), numClasses + 1).toFloat() as tf.Tensor4D, scale, scale, 'valid');
    const real = tf.slice(share, [0, 0, 0, 0], [-1, -1, -1, numClasses]);
    const best = tf.max(real, 3);
    return tf.where(tf.greaterEqual(best, minRatio), tf.argMax(real, 3).toInt(), tf.fill(best.shape, ignoreIndex, 'int32')) as tf.Tensor3D;
  });
}

function featureDistance(fd: FeatureDistance, studentFeat: tf.Tensor4D, image: tf.Tensor4D, labels: tf.Tensor3D): tf.Scalar {
  const imnetFeat = tf.tidy(() => fd.imnet.forwardWithFeatures!(image).features.at(-1)!);
  const scale = labels.shape[1] / studentFeat.shape[1];
  const down = downscaleLabels(labels, scale, fd.minRatio, fd.numClasses);
  const mask = tf.tidy(() => fd.classes.map((c) => tf.equal(down, c)).reduce((a, b) => tf.logicalOr(a, b)).toFloat());
  const dist = tf.tidy(() => {
    const norm = tf.sqrt(tf.add(tf.sum(tf.square(tf.sub(studentFeat, imnetFeat)), 3), 1e-12));
    // mean over the masked cells; zero when no thing class is present (as DAFormer skips the term)
    return tf.mul(tf.div(tf.sum(tf.mul(norm, mask)), tf.maximum(tf.sum(mask), 1)), fd.lambda) as tf.Scalar;
  });
  tf.dispose([imnetFeat, down, mask]);
  return dist;
}

const clock = (on: boolean, tensors: () => tf.Tensor[]) => {
  if (!on) return 0;
  for (const t of tensors()) t.dataSync();
  return performance.now();
};

/** Options of one iteration. */
export interface StepOptions {
  mode: TrainMode;
  lr: number;
  ctx: StepContext;
  profile?: boolean;
  /** Upper bound of the EMA momentum (DESIGN §4.1: 0.999). */
  emaMax?: number;
  /**
   * How the teacher's batch norms normalise when labelling: 'batch' (default) with each batch's own
   * statistics, as DAFormer's code (teacher dropout off, batch norm in training mode); 'running' with its
   * EMA-averaged running statistics.
   */
  teacherNorm?: 'batch' | 'running';
}

/**
 * One of the iteration's two backward passes: gradients by variable name, the loss parts it computed (host
 * values), and its timings. The source pass and the target pass touch disjoint inputs and only read the
 * weights, so they can run on two replicas at once (`DataParallelStepper`).
 */
export interface PassResult {
  grads: Record<string, tf.Tensor>;
  /** This pass's loss value (its contribution to `total`) and its named parts. */
  total: number;
  losses: Record<string, number>;
  pseudo?: UdaStepResult['pseudo'];
  /** ms in the teacher and in the rectifier (with `profile`). */
  teacherMs: number;
  rectifierMs: number;
}

function checkStep(parts: Omit<UdaParts, 'optimizer'>, batch: UdaBatch, mode: TrainMode): void {
  if (mode === 'target-oracle' && !batch.target.labels) {
    throw new Ir2fError('INVALID_ARGUMENT', 'target-oracle mode needs target labels (the bound trains on them)');
  }
  const fd = parts.featureDistance;
  if (fd && !(parts.student.forwardWithFeatures && fd.imnet.forwardWithFeatures)) {
    throw new Ir2fError('INVALID_ARGUMENT', 'the feature distance needs networks with forwardWithFeatures(): use a @ir2f/backbones model or implement it');
  }
}

/** The gradients of `f` w.r.t. `variables`, with its value and the named parts it kept, read to the host. */
function pass(variables: tf.Variable[], f: (keep: (name: string, v: tf.Scalar) => tf.Scalar) => tf.Scalar): Omit<PassResult, 'pseudo' | 'teacherMs' | 'rectifierMs'> {
  const named: Record<string, tf.Scalar> = {};
  // a copy for the events: the value itself may be the scalar a gradient pass returns (and disposes)
  const keep = (name: string, v: tf.Scalar) => {
    named[name] = tf.keep(tf.clone(v));
    return v;
  };
  const { value, grads } = tf.variableGrads(() => f(keep), variables);
  const total = value.dataSync()[0];
  const losses = Object.fromEntries(Object.entries(named).map(([k, v]) => [k, v.dataSync()[0]]));
  tf.dispose([value, ...Object.values(named)]);
  return { grads, total, losses };
}

/** The variables a step trains, in a fixed order (student, then rectifier). */
export function stepVariables(parts: Pick<UdaParts, 'student' | 'rectifier'>): tf.Variable[] {
  return [...parts.student.variables, ...parts.rectifier.variables] as tf.Variable[];
}

/** The source pass: cross-entropy on labelled source crops (+ DAFormer's feature distance). */
export function sourcePass(parts: Omit<UdaParts, 'optimizer'>, batch: UdaBatch, opts: StepOptions): PassResult {
  const { student, featureDistance: fd } = parts;
  checkStep(parts, batch, opts.mode);
  student.train(true);
  // dropout and drop path draw from (seed, step, pass) only: resumable, repeatable, and the same whichever
  // replica runs the pass
  student.reseed(opts.ctx.rng.fork('student-noise'));
  const r = pass(stepVariables(parts), (keep) => {
    if (!fd) return keep('source', meanCE(upsampled(student.forward(batch.source.image), batch.source.image), batch.source.labels));
    const out = student.forwardWithFeatures!(batch.source.image);
    const source = keep('source', meanCE(upsampled(out, batch.source.image), batch.source.labels));
    return tf.add(source, keep('featDist', featureDistance(fd, out.features.at(-1)!, batch.source.image, batch.source.labels)));
  });
  return { ...r, teacherMs: 0, rectifierMs: 0 };
}

/** Whether a step in `mode` has a rectifier's source-side loss (DESIGN §5.1.6), and so needs `sourceLabels`. */
export const hasSourceLoss = (parts: Pick<UdaParts, 'rectifier'>, mode: TrainMode): boolean => mode === 'uda' && !!parts.rectifier.auxLoss;

/** The teacher's labels of the source crop for the rectifier's source-side loss. */
export interface SourceLabels {
  /** Probabilities at the crop's resolution [B, H, W, K]. */
  probs: tf.Tensor4D;
  /** The decoder's embedding and log-probabilities at feature resolution. */
  features: tf.Tensor4D;
  logProbs: tf.Tensor4D;
  /** The ms they took (with `profile`). */
  teacherMs: number;
}

/**
 * The teacher on the source crop (or the shifted view of it, so that calibration sees target-like errors:
 * §5.1.8) for the rectifier's source-side loss. It reads only the teacher and the source crop, so on two
 * replicas the worker computes it while the main thread runs the student's source pass.
 */
export function sourceLabels(parts: Pick<UdaParts, 'teacher' | 'rectifier' | 'mixer'>, batch: Pick<UdaBatch, 'source'>, opts: StepOptions): SourceLabels {
  const t0 = clock(!!opts.profile, () => []);
  const view = calibrationView(parts, batch.source.image, opts.ctx);
  const out = teacherPass(parts.teacher, view, opts);
  if (view !== batch.source.image) view.dispose();
  return { ...out, teacherMs: clock(!!opts.profile, () => [out.probs]) - t0 };
}

/**
 * The rectifier's source-side loss on the teacher's source labels, as its own gradient pass (it trains only
 * the rectifier, so the gradients add to the source pass's as in one). Frees `labels`.
 */
export function rectifierSourcePass(parts: Omit<UdaParts, 'optimizer'>, batch: UdaBatch, labels: SourceLabels, opts: StepOptions): PassResult {
  let rectifierMs = 0;
  try {
    const r = pass(stepVariables(parts), (keep) => {
      const a0 = clock(!!opts.profile, () => []);
      const a = parts.rectifier.auxLoss!({ teacherProbs: labels.probs, features: labels.features, logProbs: labels.logProbs, labels: batch.source.labels }, opts.ctx);
      rectifierMs += clock(!!opts.profile, () => [a]) - a0;
      return keep('rectifierAux', a);
    });
    return { ...r, teacherMs: labels.teacherMs, rectifierMs };
  } finally {
    tf.dispose([labels.probs, labels.features, labels.logProbs]);
  }
}

/** Two passes as one: gradients added (the first's first), losses and times together. */
export function joinPasses(a: PassResult, b: PassResult): PassResult {
  return {
    grads: sumGradients([a, b]), total: a.total + b.total, losses: { ...a.losses, ...b.losses }, pseudo: a.pseudo ?? b.pseudo,
    teacherMs: a.teacherMs + b.teacherMs, rectifierMs: a.rectifierMs + b.rectifierMs,
  };
}

/**
 * The target pass: in `uda` mode the teacher labels the target crop, then rectify → mix → the student's loss
 * on the mixed crop; in `target-oracle` mode cross-entropy on true target labels; nothing in `source-only` mode.
 */
export function targetPass(parts: Omit<UdaParts, 'optimizer'>, batch: UdaBatch, opts: StepOptions): PassResult {
  const { student, teacher, pseudoLabeler, rectifier, mixer, loss } = parts;
  const { mode, ctx } = opts;
  checkStep(parts, batch, mode);
  const empty: PassResult = { grads: {}, total: 0, losses: {}, teacherMs: 0, rectifierMs: 0 };
  if (mode === 'source-only') return empty;
  student.train(true);
  student.reseed(ctx.rng.fork('student-noise-target'));
  if (mode === 'target-oracle') {
    return { ...empty, ...pass(stepVariables(parts), (keep) => keep('target', meanCE(upsampled(student.forward(batch.target.image), batch.target.image), batch.target.labels!))) };
  }
  const t0 = clock(!!opts.profile, () => []);
  const tOut = teacherPass(teacher, batch.target.image, opts);
  const p = pseudoLabeler.label(tOut.probs, ctx);
  const teacherMs = clock(!!opts.profile, () => [p.labels]) - t0;
  // forward time of the rectifier (rectify), counted apart from the student's passes
  let rectifierMs = 0;
  try {
    const r = pass(stepVariables(parts), (keep) => {
      const r0 = clock(!!opts.profile, () => []);
      const rect = rectifier.rectify({
        pseudo: p, features: tOut.features, logProbs: tOut.logProbs, image: batch.target.image, rectificationGradient: loss.rectificationGradient ?? true,
      }, ctx);
      rectifierMs += clock(!!opts.profile, () => [rect.rectification]) - r0;
      const mixed = mixer.mix(
        { image: batch.source.image, labels: batch.source.labels },
        {
          image: batch.target.image, labels: rect.labels, weight: rect.weight, rectification: rect.rectification,
          rectificationLogit: rect.logit, probs: loss.usesTeacherProbs ? p.probs : undefined, quality: p.weight,
        },
        ctx);
      const logits = upsampled(student.forward(mixed.image), mixed.image);
      const out = loss.compute({
        studentLogits: logits, target: { labels: mixed.labels, weight: mixed.weight },
        rectified: {
          labels: mixed.labels, weight: mixed.weight, rectification: mixed.rectification ?? mixed.weight, logit: mixed.rectificationLogit,
        },
        sourceMask: mixed.sourceMask, teacherProbs: mixed.probs, quality: mixed.quality,
      }, ctx);
      for (const [k, v] of Object.entries(out.parts)) keep(k === 'ce' ? 'mix' : k, v);
      return out.total;
    });
    const [kept, conf] = tf.tidy(() => [tf.mean(p.weight), tf.mean(tf.max(tOut.probs, 3))]);
    const pseudo = { keptFraction: kept.dataSync()[0], meanConfidence: conf.dataSync()[0] };
    tf.dispose([kept, conf]);
    return { ...r, pseudo, teacherMs, rectifierMs };
  } finally {
    tf.dispose([p.labels, p.weight, p.probs]);
    tf.dispose([tOut.probs, tOut.features, tOut.logProbs]);
  }
}

type TeacherOut = { probs: tf.Tensor4D; features: tf.Tensor4D; logProbs: tf.Tensor4D };

/** The teacher on a crop: probabilities at input resolution, embedding and log-probabilities at feature resolution. */
function teacherPass(teacher: UdaParts['teacher'], image: tf.Tensor4D, opts: Pick<StepOptions, 'teacherNorm'>): TeacherOut {
  if ((opts.teacherNorm ?? 'batch') === 'batch') teacher.batchStatsEval();
  else teacher.train(false);
  return tf.tidy(() => {
    const out = teacher.forward(image);
    return {
      probs: tf.softmax(upsampled(out, image)) as tf.Tensor4D,
      features: out.embedding,
      logProbs: tf.logSoftmax(out.logits) as tf.Tensor4D,
    };
  });
}

/** The source crop the teacher labels for the rectifier's calibration: clean, or the mixer's full augmentation of it. */
function calibrationView(parts: Pick<UdaParts, 'rectifier' | 'mixer'>, image: tf.Tensor4D, ctx: StepContext): tf.Tensor4D {
  if (parts.rectifier.calibrationView !== 'shifted') return image;
  if (!parts.mixer.augment) {
    throw new Ir2fError('INVALID_ARGUMENT', 'the rectifier calibrates on a shifted source view, and this mixer has no augment(): use ClassMix or calibrate on the clean view');
  }
  // its own RNG stream: the option changes nothing else in the step
  return parts.mixer.augment(image, { ...ctx, rng: ctx.rng.fork('calibration-view') });
}

/** The iteration's gradients: the source pass's plus the target pass's, added in that order. */
export function sumGradients(passes: Pick<PassResult, 'grads'>[]): Record<string, tf.Tensor> {
  const grads: Record<string, tf.Tensor> = {};
  for (const p of passes) {
    for (const [k, g] of Object.entries(p.grads)) {
      const prev = grads[k];
      grads[k] = prev ? tf.add(prev, g) : g;
      if (prev) tf.dispose([prev, g]);
    }
  }
  return grads;
}

/** The losses of both passes, with `total`; throws (naming the loss and the step) when one is not finite. */
export function stepLosses(passes: Pick<PassResult, 'total' | 'losses'>[], step: number): Record<string, number> {
  const losses: Record<string, number> = { total: passes.reduce((a, p) => a + p.total, 0) };
  for (const p of passes) Object.assign(losses, p.losses);
  const bad = Object.entries(losses).find(([, v]) => !Number.isFinite(v));
  if (bad) {
    throw new Ir2fError('NON_FINITE_LOSS',
      `loss '${bad[0]}' is ${bad[1]} at step ${step + 1}; the weights were not updated. Lower the learning rate or check the inputs`);
  }
  return losses;
}

/**
 * `stepLosses`, read before the weights are touched: on a non-finite loss the step's gradients are freed and
 * the running statistics put back to `before`, so the model stays as it was.
 */
export function lossesOrRollback(
  passes: Pick<PassResult, 'total' | 'losses'>[], grads: Record<string, tf.Tensor>, stats: { variable: tf.Variable }[], before: Float32Array[], step: number,
  lossState?: { state: Float32Array; before: Float32Array },
): Record<string, number> {
  try {
    return stepLosses(passes, step);
  } catch (err) {
    tf.dispose(Object.values(grads));
    setRunningStats(stats, before);
    lossState?.state.set(lossState.before);
    throw err;
  }
}

/** AdamW on the summed gradients, then the EMA teacher (DESIGN §4.1). Disposes the gradients. */
export function applyUpdate(parts: Pick<UdaParts, 'student' | 'teacher' | 'optimizer'>, grads: Record<string, tf.Tensor>, opts: Pick<StepOptions, 'lr' | 'ctx' | 'emaMax'>): void {
  try {
    parts.optimizer.apply(grads, opts.lr);
    emaUpdateModule(parts.teacher, parts.student, emaAlpha(opts.ctx.step, opts.emaMax));
  } finally {
    tf.dispose(Object.values(grads));
  }
}

/** A step's phases from its passes' teacher and rectifier times, the passes' wall time and the update's. */
export function phasesOf(src: PassResult, tgt: PassResult, passesMs: number, optimizerMs: number): NonNullable<UdaStepResult['phases']> {
  const teacher = src.teacherMs + tgt.teacherMs;
  const rectifier = src.rectifierMs + tgt.rectifierMs;
  return { teacher, student: Math.max(0, passesMs - teacher - rectifier), rectifier, optimizer: optimizerMs };
}

/**
 * One iteration on one replica: the source pass, the target pass, then the update. Two backward passes, as
 * DAFormer's code: the gradients add up to those of the summed loss, and only one student graph is held in
 * memory at a time.
 */
export function udaStep(parts: UdaParts, batch: UdaBatch, opts: StepOptions): UdaStepResult {
  const t0 = clock(!!opts.profile, () => []);
  // the forward passes move batch norms' running statistics: a failed step puts them back
  const stats = runningStats(parts.student);
  const before = snapshotRunningStats(stats);
  const lossState = parts.loss.state && { state: parts.loss.state, before: parts.loss.state.slice() };
  const passes: PassResult[] = [];
  try {
    passes.push(sourcePass(parts, batch, opts));
    // the rectifier's source-side loss runs before `rectify` of the same step (the contract's order)
    if (hasSourceLoss(parts, opts.mode)) passes[0] = joinPasses(passes[0], rectifierSourcePass(parts, batch, sourceLabels(parts, batch, opts), opts));
    passes.push(targetPass(parts, batch, opts));
  } catch (err) {
    for (const p of passes) tf.dispose(Object.values(p.grads));
    setRunningStats(stats, before);
    lossState?.state.set(lossState.before);
    throw err;
  }
  const grads = sumGradients(passes);
  const t2 = clock(!!opts.profile, () => Object.values(grads));
  const losses = lossesOrRollback(passes, grads, stats, before, opts.ctx.step, lossState);
  applyUpdate(parts, grads, opts);
  const t3 = clock(!!opts.profile, () => parts.teacher.variables.slice(-1));
  const [src, tgt] = passes;
  return {
    losses, pseudo: tgt.pseudo,
    phases: opts.profile
      ? phasesOf(src, tgt, t2 - t0, t3 - t2)
      : undefined,
  };
}
