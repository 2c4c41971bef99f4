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
}

const upsampled = (out: DecodeOutput, like: tf.Tensor4D) => resizeTo(out.logits, like.shape.slice(1, 3));

const meanCE = (logits: tf.Tensor4D, labels: tf.Tensor3D) => tf.mean(pixelCrossEntropy(logits, labels)) as tf.Scalar;

export function udaStep(parts: UdaParts, batch: UdaBatch, opts: { mode: TrainMode; lr: number; ctx: StepContext }): UdaStepResult {
  const { student, teacher, pseudoLabeler, rectifier, mixer, loss, optimizer } = parts;
  const { mode, ctx } = opts;
  if (mode === 'target-oracle' && !batch.target.labels) {
    throw new Ir2fError('INVALID_ARGUMENT', 'target-oracle mode needs target labels (the bound trains on them)');
  }
  student.train(true);
  teacher.train(false);

  // teacher pass: pseudo-labels at input resolution, embedding and log-probabilities at feature resolution
  let teacherOut: { probs: tf.Tensor4D; features: tf.Tensor4D; logProbs: tf.Tensor4D } | undefined;
  let pseudo: ReturnType<PseudoLabeler['label']> | undefined;
  if (mode === 'uda') {
    teacherOut = tf.tidy(() => {
      const out = teacher.forward(batch.target.image);
      return {
        probs: tf.softmax(upsampled(out, batch.target.image)) as tf.Tensor4D,
        features: out.embedding,
        logProbs: tf.logSoftmax(out.logits) as tf.Tensor4D,
      };
    });
    pseudo = pseudoLabeler.label(teacherOut.probs, ctx);
  }

  const named: Record<string, tf.Scalar> = {};
  const variables = [...student.variables, ...rectifier.variables] as tf.Variable[];
  const { value, grads } = tf.variableGrads(() => {
    const source = meanCE(upsampled(student.forward(batch.source.image), batch.source.image), batch.source.labels);
    named.source = tf.keep(source);
    let total: tf.Scalar = source;
    if (mode === 'target-oracle') {
      const t = meanCE(upsampled(student.forward(batch.target.image), batch.target.image), batch.target.labels!);
      named.target = tf.keep(t);
      total = tf.add(total, t);
    } else if (mode === 'uda' && teacherOut && pseudo) {
      const rect = rectifier.rectify({ pseudo, features: teacherOut.features, logProbs: teacherOut.logProbs, image: batch.target.image }, ctx);
      const mixed = mixer.mix(
        { image: batch.source.image, labels: batch.source.labels },
        { image: batch.target.image, labels: rect.labels, weight: rect.weight, rectification: rect.rectification },
        ctx);
      const logits = upsampled(student.forward(mixed.image), mixed.image);
      const out = loss.compute({
        studentLogits: logits, target: { labels: mixed.labels, weight: mixed.weight },
        rectified: { labels: mixed.labels, weight: mixed.weight, rectification: mixed.rectification ?? mixed.weight },
        sourceMask: mixed.sourceMask,
      }, ctx);
      for (const [k, v] of Object.entries(out.parts)) named[k === 'ce' ? 'mix' : k] = tf.keep(v);
      total = tf.add(total, out.total);
    }
    return total as tf.Scalar;
  }, variables);
  // read the losses before touching the weights: a non-finite loss leaves the model as it was
  const losses: Record<string, number> = { total: value.dataSync()[0] };
  for (const [k, v] of Object.entries(named)) losses[k] = v.dataSync()[0];
  const bad = Object.entries(losses).find(([, v]) => !Number.isFinite(v));
  let stats: UdaStepResult['pseudo'];
  if (pseudo && teacherOut) {
    const [kept, conf] = tf.tidy(() => [tf.mean(pseudo!.weight), tf.mean(tf.max(teacherOut!.probs, 3))]);
    stats = { keptFraction: kept.dataSync()[0], meanConfidence: conf.dataSync()[0] };
    tf.dispose([kept, conf, pseudo.labels, pseudo.weight, pseudo.probs, teacherOut.probs, teacherOut.features, teacherOut.logProbs]);
  }
  if (!bad) {
    optimizer.apply(grads, opts.lr);
    emaUpdateModule(teacher, student, emaAlpha(ctx.step));
  }
  tf.dispose([value, ...Object.values(grads), ...Object.values(named)]);
  if (bad) {
    throw new Ir2fError('NON_FINITE_LOSS',
      `loss '${bad[0]}' is ${bad[1]} at step ${ctx.step}; the weights were not updated. Lower the learning rate or check the inputs`);
  }
  return { losses, pseudo: stats };
}
