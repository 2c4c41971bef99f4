/**
 * A small convolutional segmentation network written directly against tfjs ops, used by the demo, the
 * backend benchmark (with a PyTorch twin in bench/reference/toy_seg_net.py) and the gradient tests until
 * @ir2f/backbones lands. It exercises every op the real models need a gradient for: strided and dilated
 * conv2d, depthwise conv2d, batch norm with running statistics, bilinear resize; `gather` appears in the loss.
 *
 * stem 3×3/2 → depthwise 3×3 + 1×1 → 3×3/2 → [3×3 dil 2 ‖ 1×1] (ASPP-like) → 1×1 classifier → ×4 bilinear.
 */
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '@ir2f/core';

export interface ToyNetOptions {
  numClasses: number;
  width?: number;
}

interface ConvParams { w: tf.Variable; b?: tf.Variable }
interface BnParams { gamma: tf.Variable; beta: tf.Variable; mean: tf.Variable; variance: tf.Variable }

const BN_MOMENTUM = 0.1;
const BN_EPS = 1e-5;

let instances = 0;

export class ToySegNet {
  /** tfjs variable names are global: each net gets its own prefix. */
  private readonly prefix = `toy${instances++}`;
  readonly trainable: tf.Variable[] = [];
  readonly stats: tf.Variable[] = [];
  private readonly p: Record<string, ConvParams> = {};
  private readonly bn: Record<string, BnParams> = {};
  readonly numClasses: number;

  constructor(opts: ToyNetOptions, rng: Rng) {
    const w = opts.width ?? 16;
    this.numClasses = opts.numClasses;
    this.conv('stem', [3, 3, 3, w], rng);
    this.norm('stem', w);
    this.conv('dw', [3, 3, w, 1], rng);
    this.norm('dw', w);
    this.conv('pw', [1, 1, w, 2 * w], rng);
    this.norm('pw', 2 * w);
    this.conv('down', [3, 3, 2 * w, 2 * w], rng);
    this.norm('down', 2 * w);
    this.conv('atrous', [3, 3, 2 * w, 2 * w], rng);
    this.conv('point', [1, 1, 2 * w, 2 * w], rng);
    this.norm('aspp', 2 * w);
    this.conv('cls', [1, 1, 2 * w, opts.numClasses], rng, true);
  }

  private conv(name: string, shape: [number, number, number, number], rng: Rng, bias = false): void {
    const fanIn = shape[0] * shape[1] * shape[2];
    const values = rng.normalArray(shape.reduce((a, b) => a * b, 1), 0, Math.sqrt(2 / fanIn));
    const w = tf.variable(tf.tensor4d(values, shape), true, `${this.prefix}/${name}/w`);
    this.trainable.push(w);
    const params: ConvParams = { w };
    if (bias) {
      params.b = tf.variable(tf.zeros([shape[3]]), true, `${this.prefix}/${name}/b`);
      this.trainable.push(params.b);
    }
    this.p[name] = params;
  }

  private norm(name: string, c: number): void {
    const bn: BnParams = {
      gamma: tf.variable(tf.ones([c]), true, `${this.prefix}/${name}/gamma`),
      beta: tf.variable(tf.zeros([c]), true, `${this.prefix}/${name}/beta`),
      mean: tf.variable(tf.zeros([c]), false, `${this.prefix}/${name}/mean`),
      variance: tf.variable(tf.ones([c]), false, `${this.prefix}/${name}/var`),
    };
    this.trainable.push(bn.gamma, bn.beta);
    this.stats.push(bn.mean, bn.variance);
    this.bn[name] = bn;
  }

  /** Batch norm: batch statistics in training (queued running-average updates), running statistics otherwise. */
  private batchNorm(name: string, x: tf.Tensor4D, training: boolean, updates: [tf.Variable, tf.Tensor][]): tf.Tensor4D {
    const bn = this.bn[name];
    if (!training) return tf.batchNorm(x, bn.mean, bn.variance, bn.beta, bn.gamma, BN_EPS) as tf.Tensor4D;
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    updates.push(
      [bn.mean, tf.keep(tf.add(tf.mul(bn.mean, 1 - BN_MOMENTUM), tf.mul(mean, BN_MOMENTUM)))],
      [bn.variance, tf.keep(tf.add(tf.mul(bn.variance, 1 - BN_MOMENTUM), tf.mul(variance, BN_MOMENTUM)))],
    );
    return tf.batchNorm(x, mean, variance, bn.beta, bn.gamma, BN_EPS) as tf.Tensor4D;
  }

  /** Logits [B, H, W, K]. In training, batch-norm updates are appended to `updates` (kept tensors). */
  forward(x: tf.Tensor4D, training: boolean, updates: [tf.Variable, tf.Tensor][] = []): tf.Tensor4D {
    const [, H, W] = x.shape;
    const p = this.p;
    let h = tf.relu(this.batchNorm('stem', tf.conv2d(x, p.stem.w as tf.Tensor4D, 2, 'same'), training, updates));
    h = tf.relu(this.batchNorm('dw', tf.depthwiseConv2d(h, p.dw.w as tf.Tensor4D, 1, 'same'), training, updates));
    h = tf.relu(this.batchNorm('pw', tf.conv2d(h, p.pw.w as tf.Tensor4D, 1, 'same'), training, updates));
    h = tf.relu(this.batchNorm('down', tf.conv2d(h, p.down.w as tf.Tensor4D, 2, 'same'), training, updates));
    const atrous = tf.conv2d(h, p.atrous.w as tf.Tensor4D, 1, 'same', 'NHWC', 2);
    const point = tf.conv2d(h, p.point.w as tf.Tensor4D, 1, 'same');
    h = tf.relu(this.batchNorm('aspp', tf.add(atrous, point), training, updates));
    const logits = tf.add(tf.conv2d(h, p.cls.w as tf.Tensor4D, 1, 'same'), p.cls.b!) as tf.Tensor4D;
    return tf.image.resizeBilinear(logits, [H, W], false, true);
  }

  dispose(): void {
    for (const v of [...this.trainable, ...this.stats]) v.dispose();
  }
}

/**
 * Class-weighted pixel cross-entropy; the per-pixel weight is looked up with `gather` (labels 255 = ignore
 * get weight 0).
 */
export function weightedCrossEntropy(logits: tf.Tensor4D, labels: tf.Tensor3D, classWeights: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const K = logits.shape[3];
    const flat = tf.reshape(logits, [-1, K]);
    const y = tf.reshape(labels, [-1]);
    const valid = tf.cast(tf.less(y, K), 'float32');
    const safe = tf.mul(y, tf.cast(valid, 'int32')) as tf.Tensor1D;
    const logp = tf.logSoftmax(flat);
    const picked = tf.sum(tf.mul(logp, tf.oneHot(safe, K)), 1);
    const w = tf.mul(tf.gather(classWeights, safe), valid);
    return tf.div(tf.neg(tf.sum(tf.mul(picked, w))), tf.maximum(tf.sum(w), 1e-6)) as tf.Scalar;
  });
}

/** One optimiser step: loss, gradients of all trainable variables, Adam update, batch-norm statistics. */
export function trainStep(
  net: ToySegNet, optimizer: tf.Optimizer, x: tf.Tensor4D, y: tf.Tensor3D, classWeights: tf.Tensor1D,
): number {
  const updates: [tf.Variable, tf.Tensor][] = [];
  const lossValue = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(
      () => weightedCrossEntropy(net.forward(x, true, updates), y, classWeights), net.trainable);
    optimizer.applyGradients(grads);
    return value;
  });
  for (const [v, t] of updates) {
    v.assign(t);
    t.dispose();
  }
  const loss = lossValue.dataSync()[0];
  lossValue.dispose();
  return loss;
}
