/**
 * Layers with a tfjs forward (NHWC) and an ONNX emitter (NCHW) for the same computation. Padding follows
 * PyTorch (explicit, symmetric) so that ImageNet checkpoints behave as trained.
 */
import * as tf from '@tensorflow/tfjs';
import { attr, batchNormTrain, gelu, layerNorm, type OnnxGraph } from '@ir2f/runtime';
import type { Rng } from '../rng.js';
import { blend } from './blend.js';
import { Layer, toTorch, type Module } from './module.js';

export interface Conv2dOptions {
  kernel: number;
  stride?: number;
  padding?: number;
  dilation?: number;
  /** 1 (dense) or inChannels (depthwise, with outChannels a multiple of inChannels). */
  groups?: number;
  bias?: boolean;
  /** Normal(0, initStd) weights instead of He (fan-out); mmseg initialises classifiers with std 0.01. */
  initStd?: number;
}

/** Normal(0, std) values of `shape` from the run's RNG. */
function normal(rng: Rng, shape: number[], std: number): tf.Tensor {
  return tf.tensor(rng.normalArray(shape.reduce((a, b) => a * b, 1), 0, std), shape);
}

/**
 * Bilinear resize of NHWC `x` to [height, width] with half-pixel centres (PyTorch's `align_corners=False`);
 * `x` itself when it already has that size.
 */
export function resizeTo(x: tf.Tensor4D, [height, width]: readonly [number, number] | readonly number[]): tf.Tensor4D {
  return x.shape[1] === height && x.shape[2] === width ? x : tf.image.resizeBilinear(x, [height, width], false, true);
}

export class Conv2d extends Layer {
  readonly weight: tf.Variable;
  readonly bias?: tf.Variable;
  readonly stride: number;
  readonly padding: number;
  readonly dilation: number;
  readonly depthwise: boolean;

  constructor(readonly inChannels: number, readonly outChannels: number, readonly opts: Conv2dOptions, rng: Rng) {
    super();
    const { kernel: k } = opts;
    this.stride = opts.stride ?? 1;
    this.dilation = opts.dilation ?? 1;
    this.padding = opts.padding ?? 0;
    const groups = opts.groups ?? 1;
    if (groups !== 1 && groups !== inChannels) throw new Error(`Conv2d: groups must be 1 or inChannels (${inChannels}), got ${groups}`);
    this.depthwise = groups === inChannels && groups !== 1;
    if (this.depthwise && outChannels % inChannels !== 0) {
      throw new Error(`Conv2d: depthwise outChannels (${outChannels}) must be a multiple of inChannels (${inChannels})`);
    }
    const shape = this.depthwise ? [k, k, inChannels, outChannels / inChannels] : [k, k, inChannels, outChannels];
    const fanOut = this.depthwise ? k * k * (outChannels / inChannels) : k * k * outChannels;
    // He-normal (fan-out, as torchvision's ResNet) unless a std is given
    const init = normal(rng, shape, opts.initStd ?? Math.sqrt(2 / fanOut));
    this.weight = this.param('weight', init, this.depthwise ? 'depthwise' : 'conv');
    if (opts.bias) this.bias = this.param('bias', tf.zeros([outChannels]));
  }

  forward(x: tf.Tensor): tf.Tensor4D {
    const p = this.padding;
    const pad: tf.backend_util.ExplicitPadding = [[0, 0], [p, p], [p, p], [0, 0]];
    const w = this.weight as tf.Tensor4D;
    let y = this.depthwise
      ? tf.depthwiseConv2d(x as tf.Tensor4D, w, this.stride, pad as never, 'NHWC', this.dilation)
      : tf.conv2d(x as tf.Tensor4D, w, this.stride, pad, 'NHWC', this.dilation);
    if (this.bias) y = tf.add(y, this.bias);
    return y;
  }

  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    const w = tf.tidy(() => toTorch(this.weight, this.depthwise ? 'depthwise' : 'conv'));
    const inputs = [input, g.tensor(`${prefix}weight`, w)];
    w.dispose();
    if (this.bias) inputs.push(g.tensor(`${prefix}bias`, this.bias));
    const k = this.opts.kernel;
    const p = this.padding;
    return g.node('Conv', inputs, {
      kernel_shape: attr.ints([k, k]), strides: attr.ints([this.stride, this.stride]), pads: attr.ints([p, p, p, p]),
      dilations: attr.ints([this.dilation, this.dilation]), group: attr.int(this.depthwise ? this.inChannels : 1),
    }, `${prefix}conv`);
  }
}

/**
 * Batch norm over channels: batch statistics in training (running averages updated as PyTorch does, with
 * the unbiased variance), running statistics in eval.
 */
export class BatchNorm2d extends Layer {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;
  readonly runningMean: tf.Variable;
  readonly runningVar: tf.Variable;

  constructor(readonly channels: number, readonly eps = 1e-5, readonly momentum = 0.1) {
    super();
    this.weight = this.param('weight', tf.ones([channels]));
    this.bias = this.param('bias', tf.zeros([channels]));
    this.runningMean = this.buffer('running_mean', tf.zeros([channels]));
    this.runningVar = this.buffer('running_var', tf.ones([channels]));
  }

  private batchStats = false;

  protected override onBatchStats(on: boolean): void {
    this.batchStats = on;
  }

  forward(x: tf.Tensor): tf.Tensor {
    if (!this.training && !this.batchStats) {
      return tf.batchNorm(x, this.runningMean, this.runningVar, this.bias, this.weight, this.eps);
    }
    const { y, mean, variance } = batchNormTrain(x, this.weight as tf.Tensor1D, this.bias as tf.Tensor1D, this.eps);
    if (!this.training) return y;
    const n = x.size / this.channels;
    tf.tidy(() => {
      // one blend kernel each (three element-wise kernels apiece before: a ResNet step runs 24 of these)
      const m = this.momentum;
      this.runningMean.assign(blend(this.runningMean, mean, 1 - m, m));
      this.runningVar.assign(blend(this.runningVar, variance, 1 - m, (m * n) / Math.max(1, n - 1)));
    });
    return y;
  }

  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    const f = (name: string, v: tf.Variable) => g.tensor(`${prefix}${name}`, v);
    return g.node('BatchNormalization',
      [input, f('weight', this.weight), f('bias', this.bias), f('running_mean', this.runningMean), f('running_var', this.runningVar)],
      { epsilon: attr.float(this.eps) }, `${prefix}bn`);
  }
}

export class ReLU extends Layer {
  forward(x: tf.Tensor): tf.Tensor {
    return tf.relu(x);
  }

  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    return g.node('Relu', [input], {}, `${prefix}relu`);
  }
}

/** Max pooling with PyTorch's symmetric padding (padded cells never win). */
export class MaxPool2d extends Layer {
  constructor(readonly kernel: number, readonly stride: number, readonly padding = 0) {
    super();
  }

  forward(x: tf.Tensor): tf.Tensor {
    const p = this.padding;
    if (p === 0) return tf.maxPool(x as tf.Tensor4D, this.kernel, this.stride, 'valid');
    // explicit padding (padded cells never win), not a number: tfjs's numeric pad rounds output sizes
    // differently from PyTorch. Not a -inf tf.pad: its copy forward and slice backward cost more than the pool.
    return tf.maxPool(x as tf.Tensor4D, this.kernel, this.stride, [[0, 0], [p, p], [p, p], [0, 0]]);
  }

  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    const p = this.padding;
    return g.node('MaxPool', [input], {
      kernel_shape: attr.ints([this.kernel, this.kernel]), strides: attr.ints([this.stride, this.stride]),
      pads: attr.ints([p, p, p, p]),
    }, `${prefix}maxpool`);
  }
}

/** Layers applied in order; children are named '0', '1', … as in PyTorch's nn.Sequential. */
export class Sequential extends Layer {
  readonly layers: Layer[];

  constructor(...layers: Layer[]) {
    super();
    this.layers = layers.map((l, i) => this.child(String(i), l));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.layers.reduce((h, l) => l.forward(h), x);
  }

  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    return this.layers.reduce((h, l, i) => l.toOnnx(g, h, `${prefix}${i}.`), input);
  }
}

/** y = x·W + b over the last axis (W stored [in, out] in tfjs, [out, in] in PyTorch state). */
export class Linear extends Layer {
  readonly weight: tf.Variable;
  readonly bias?: tf.Variable;

  constructor(readonly inFeatures: number, readonly outFeatures: number, rng: Rng, bias = true) {
    super();
    // truncated-normal-like init (std 0.02, as ViT/SegFormer)
    const w = rng.normalArray(inFeatures * outFeatures, 0, 0.02).map((v) => Math.max(-0.04, Math.min(0.04, v)));
    this.weight = this.param('weight', tf.tensor2d(w, [inFeatures, outFeatures]), 'linear');
    if (bias) this.bias = this.param('bias', tf.zeros([outFeatures]));
  }

  forward(x: tf.Tensor): tf.Tensor {
    const shape = x.shape;
    const flat = tf.reshape(x, [-1, this.inFeatures]) as tf.Tensor2D;
    let y: tf.Tensor = tf.matMul(flat, this.weight as tf.Tensor2D);
    if (this.bias) y = tf.add(y, this.bias);
    return tf.reshape(y, [...shape.slice(0, -1), this.outFeatures]);
  }

  /** Emitted on the last axis of `input` (tokens [B, N, C] in the exported graphs). */
  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    // tfjs's [in, out] layout is what MatMul needs: no transpose
    const y = g.node('MatMul', [input, g.tensor(`${prefix}weight`, this.weight)], {}, `${prefix}matmul`);
    if (!this.bias) return y;
    return g.node('Add', [y, g.tensor(`${prefix}bias`, this.bias)], {}, `${prefix}linear`);
  }
}

/** Layer normalisation over the last axis. */
export class LayerNorm extends Layer {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;

  constructor(readonly features: number, readonly eps = 1e-5) {
    super();
    this.weight = this.param('weight', tf.ones([features]));
    this.bias = this.param('bias', tf.zeros([features]));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return layerNorm(x, this.weight as tf.Tensor1D, this.bias as tf.Tensor1D, this.eps);
  }

  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    return g.node('LayerNormalization', [
      input,
      g.tensor(`${prefix}weight`, this.weight),
      g.tensor(`${prefix}bias`, this.bias),
    ], { axis: attr.int(-1), epsilon: attr.float(this.eps) }, `${prefix}ln`);
  }
}

/** GELU, exact (erf) form as PyTorch's nn.GELU. */
export class GELU extends Layer {
  forward(x: tf.Tensor): tf.Tensor {
    return gelu(x);
  }

  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    const scaled = g.node('Mul', [input, g.floats(`${prefix}rsqrt2`, new Float32Array([Math.SQRT1_2]), [])], {}, `${prefix}gelu_in`);
    const erf = g.node('Erf', [scaled], {}, `${prefix}erf`);
    const one = g.node('Add', [erf, g.floats(`${prefix}one`, new Float32Array([1]), [])], {}, `${prefix}erf1`);
    const half = g.node('Mul', [input, g.floats(`${prefix}half`, new Float32Array([0.5]), [])], {}, `${prefix}half_x`);
    return g.node('Mul', [half, one], {}, `${prefix}gelu`);
  }
}

/**
 * Dropout (element-wise) or, with `perSample`, stochastic depth (one draw per batch item, DropPath). Active
 * in training only; each call draws a fresh seed from its own RNG stream, so runs are reproducible.
 */
export class Dropout extends Layer {
  constructor(readonly rate: number, private rng: Rng, readonly perSample = false) {
    super();
    if (!(rate >= 0 && rate < 1)) throw new Error(`dropout rate must be in [0, 1), got ${rate}`);
  }

  override reseed(rng: Rng): void {
    this.rng = rng;
  }

  forward(x: tf.Tensor): tf.Tensor {
    if (!this.training || this.rate === 0) return x;
    const seed = this.rng.uint32();
    const noiseShape = this.perSample ? [x.shape[0], ...x.shape.slice(1).map(() => 1)] : x.shape;
    return tf.dropout(x, this.rate, noiseShape, seed);
  }

  /** Identity at inference. */
  toOnnx(_g: OnnxGraph, input: string): string {
    return input;
  }
}

/** conv → batch norm → ReLU (mmcv's ConvModule), children named `conv` and `bn`. */
export class ConvBnReLU extends Layer {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;
  private readonly relu = new ReLU();

  constructor(inChannels: number, outChannels: number, opts: Conv2dOptions, rng: Rng) {
    super();
    this.conv = this.child('conv', new Conv2d(inChannels, outChannels, { ...opts, bias: false }, rng));
    this.bn = this.child('bn', new BatchNorm2d(outChannels));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.relu.forward(this.bn.forward(this.conv.forward(x)));
  }

  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    return this.relu.toOnnx(g, this.bn.toOnnx(g, this.conv.toOnnx(g, input, `${prefix}conv.`), `${prefix}bn.`), prefix);
  }
}

/** Every batch norm's running statistics below `module`, with its momentum, in module order. */
export function runningStats(module: Module): { variable: tf.Variable; momentum: number }[] {
  const out: { variable: tf.Variable; momentum: number }[] = [];
  module.visitModules((m) => {
    if (m instanceof BatchNorm2d) out.push({ variable: m.runningMean, momentum: m.momentum }, { variable: m.runningVar, momentum: m.momentum });
  });
  return out;
}

/** The values of running statistics (as `runningStats` lists them), copied to the host. */
export function snapshotRunningStats(stats: { variable: tf.Variable }[]): Float32Array[] {
  return stats.map(({ variable }) => Float32Array.from(variable.dataSync() as Float32Array));
}

/** Set running statistics (as `runningStats` lists them) to host values, e.g. back to a snapshot. */
export function setRunningStats(stats: { variable: tf.Variable }[], values: Float32Array[]): void {
  // assign keeps the data, not the tensor: tidy frees the tensor objects
  tf.tidy(() => stats.forEach(({ variable }, i) => variable.assign(tf.tensor(values[i], variable.shape))));
}

