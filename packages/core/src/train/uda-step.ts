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
import { resizeTo } from '../nn/layers.js';
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

export function udaStep(
  parts: UdaParts, batch: UdaBatch, opts: {
    mode: TrainMode; lr: number; ctx: StepContext; profile?: boolean;
    /** Upper bound of the EMA momentum (DESIGN §4.1: 0.999). */
    emaMax?: number;
    /**
     * How the teacher's batch norms normalise when labelling: 'batch' (default) with each batch's own
     * statistics, as DAFormer's code (teacher dropout off, batch norm in training mode); 'running' with its
     * EMA-averaged running statistics.
     */
    teacherNorm?: 'batch' | 'running';
  },
): UdaStepResult {
  const { student, teacher, pseudoLabeler, rectifier, mixer, loss, optimizer, featureDistance: fd } = parts;
  const { mode, ctx } = opts;
  if (mode === 'target-oracle' && !batch.target.labels) {
    throw new Ir2fError('INVALID_ARGUMENT', 'target-oracle mode needs target labels (the bound trains on them)');
  }
  if (fd && !(student.forwardWithFeatures && fd.imnet.forwardWithFeatures)) {
    throw new Ir2fError('INVALID_ARGUMENT', 'the feature distance needs networks with forwardWithFeatures(): use a @ir2f/backbones model or implement it');
  }
  student.train(true);
  if ((opts.teacherNorm ?? 'batch') === 'batch') teacher.batchStatsEval();
  else teacher.train(false);
  // dropout and drop path draw from (seed, step) only: resumable and repeatable
  student.reseed(ctx.rng.fork('student-noise'));
  const t0 = clock(!!opts.profile, () => []);

  // teacher pass: pseudo-labels at input resolution, embedding and log-probabilities at feature resolution
  const teacherPass = (image: tf.Tensor4D) => tf.tidy(() => {
    const out = teacher.forward(image);
    return {
      probs: tf.softmax(upsampled(out, image)) as tf.Tensor4D,
      features: out.embedding,
      logProbs: tf.logSoftmax(out.logits) as tf.Tensor4D,
    };
  });
  let teacherOut: ReturnType<typeof teacherPass> | undefined;
  let teacherSource: ReturnType<typeof teacherPass> | undefined;
  let pseudo: ReturnType<PseudoLabeler['label']> | undefined;
  if (mode === 'uda') {
    teacherOut = teacherPass(batch.target.image);
    pseudo = pseudoLabeler.label(teacherOut.probs, ctx);
    // the teacher also labels the source crop for a rectifier's source-side loss (DESIGN §5.1.6)
    if (rectifier.auxLoss) teacherSource = teacherPass(batch.source.image);
  }
  const t1 = clock(!!opts.profile, () => (pseudo ? [pseudo.labels] : []));

  const named: Record<string, tf.Scalar> = {};
  // a copy for the events: the value itself may be the scalar a gradient pass returns (and disposes)
  const keep = (name: string, v: tf.Scalar) => {
    named[name] = tf.keep(tf.clone(v));
    return v;
  };
  const variables = [...student.variables, ...rectifier.variables] as tf.Variable[];
  // forward time of the rectifier (rectify and its source loss), counted apart from the student's passes
  let rectifierMs = 0;
  // two backward passes, as DAFormer's code (source loss, then the target side): the gradients add up to
  // those of the summed loss, and only one student graph is held in memory at a time
  const grads: Record<string, tf.Tensor> = {};
  const values: tf.Scalar[] = [];
  const accumulate = (f: () => tf.Scalar) => {
    const r = tf.variableGrads(f, variables);
    values.push(r.value);
    for (const [k, g] of Object.entries(r.grads)) {
      const prev = grads[k];
      grads[k] = prev ? tf.add(prev, g) : g;
      if (prev) tf.dispose([prev, g]);
    }
  };
  accumulate(() => {
    if (!fd) return keep('source', meanCE(upsampled(student.forward(batch.source.image), batch.source.image), batch.source.labels));
    const out = student.forwardWithFeatures!(batch.source.image);
    const source = keep('source', meanCE(upsampled(out, batch.source.image), batch.source.labels));
    return tf.add(source, keep('featDist', featureDistance(fd, out.features.at(-1)!, batch.source.image, batch.source.labels)));
  });
  if (mode === 'target-oracle') {
    accumulate(() => keep('target', meanCE(upsampled(student.forward(batch.target.image), batch.target.image), batch.target.labels!)));
  } else if (mode === 'uda' && teacherOut && pseudo) {
    const [tOut, p] = [teacherOut, pseudo];
    accumulate(() => {
      const r0 = clock(!!opts.profile, () => []);
      const rect = rectifier.rectify({ pseudo: p, features: tOut.features, logProbs: tOut.logProbs, image: batch.target.image }, ctx);
      rectifierMs += clock(!!opts.profile, () => [rect.rectification]) - r0;
      const mixed = mixer.mix(
        { image: batch.source.image, labels: batch.source.labels },
        {
          image: batch.target.image, labels: rect.labels, weight: rect.weight, rectification: rect.rectification,
          rectificationLogit: rect.logit, probs: loss.usesTeacherProbs ? p.probs : undefined,
        },
        ctx);
      const logits = upsampled(student.forward(mixed.image), mixed.image);
      const out = loss.compute({
        studentLogits: logits, target: { labels: mixed.labels, weight: mixed.weight },
        rectified: {
          labels: mixed.labels, weight: mixed.weight, rectification: mixed.rectification ?? mixed.weight, logit: mixed.rectificationLogit,
        },
        sourceMask: mixed.sourceMask, teacherProbs: mixed.probs,
      }, ctx);
      for (const [k, v] of Object.entries(out.parts)) keep(k === 'ce' ? 'mix' : k, v);
      let total = out.total;
      if (teacherSource && rectifier.auxLoss) {
        const a0 = clock(!!opts.profile, () => []);
        const aux = rectifier.auxLoss({ teacherProbs: teacherSource.probs, features: teacherSource.features, logProbs: teacherSource.logProbs, labels: batch.source.labels }, ctx);
        rectifierMs += clock(!!opts.profile, () => [aux]) - a0;
        total = tf.add(total, keep('rectifierAux', aux));
      }
      return total;
    });
  }
  const value = values.length === 1 ? values[0] : tf.addN(values) as tf.Scalar;
  if (values.length > 1) tf.dispose(values);
  // read the losses before touching the weights: a non-finite loss leaves the model as it was
  const losses: Record<string, number> = { total: value.dataSync()[0] };
  for (const [k, v] of Object.entries(named)) losses[k] = v.dataSync()[0];
  const t2 = clock(!!opts.profile, () => Object.values(grads));
  const bad = Object.entries(losses).find(([, v]) => !Number.isFinite(v));
  let stats: UdaStepResult['pseudo'];
  if (pseudo && teacherOut) {
    const [kept, conf] = tf.tidy(() => [tf.mean(pseudo!.weight), tf.mean(tf.max(teacherOut!.probs, 3))]);
    stats = { keptFraction: kept.dataSync()[0], meanConfidence: conf.dataSync()[0] };
    tf.dispose([kept, conf, pseudo.labels, pseudo.weight, pseudo.probs]);
  }
  for (const o of [teacherOut, teacherSource]) if (o) tf.dispose([o.probs, o.features, o.logProbs]);
  if (!bad) {
    optimizer.apply(grads, opts.lr);
    emaUpdateModule(teacher, student, emaAlpha(ctx.step, opts.emaMax));
  }
  tf.dispose([value, ...Object.values(grads), ...Object.values(named)]);
  if (bad) {
    throw new Ir2fError('NON_FINITE_LOSS',
      `loss '${bad[0]}' is ${bad[1]} at step ${ctx.step + 1}; the weights were not updated. Lower the learning rate or check the inputs`);
  }
  const t3 = clock(!!opts.profile, () => teacher.variables.slice(-1));
  return {
    losses, pseudo: stats,
    phases: opts.profile ? { teacher: t1 - t0, student: t2 - t1 - rectifierMs, rectifier: rectifierMs, optimizer: t3 - t2 } : undefined,
  };
}
