/**
 * Layers with a tfjs forward (NHWC) and an ONNX emitter (NCHW) for the same computation. Padding follows
 * PyTorch (explicit, symmetric) so that ImageNet checkpoints behave as trained.
 */
import * as tf from '@tensorflow/tfjs';
import { attr, type OnnxGraph } from '../onnx/graph.js';
import type { Rng } from '../rng.js';
import { Layer, toTorch } from './module.js';

export interface Conv2dOptions {
  kernel: number;
  stride?: number;
  padding?: number;
  dilation?: number;
  /** 1 (dense) or inChannels (depthwise, with outChannels a multiple of inChannels). */
  groups?: number;
  bias?: boolean;
}

/** He-normal (fan-out, as torchvision's ResNet init). */
function heNormal(rng: Rng, shape: number[], fanOut: number): tf.Tensor {
  return tf.tensor(rng.normalArray(shape.reduce((a, b) => a * b, 1), 0, Math.sqrt(2 / fanOut)), shape);
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
    this.weight = this.param('weight', heNormal(rng, shape, fanOut), this.depthwise ? 'depthwise' : 'conv');
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
    const inputs = [input, g.floats(`${prefix}weight`, w.dataSync() as Float32Array, w.shape)];
    w.dispose();
    if (this.bias) inputs.push(g.floats(`${prefix}bias`, this.bias.dataSync() as Float32Array, [this.outChannels]));
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

  forward(x: tf.Tensor): tf.Tensor {
    if (!this.training) {
      return tf.batchNorm(x, this.runningMean, this.runningVar, this.bias, this.weight, this.eps);
    }
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    const n = x.size / this.channels;
    tf.tidy(() => {
      const m = this.momentum;
      this.runningMean.assign(tf.add(tf.mul(this.runningMean, 1 - m), tf.mul(mean, m)));
      this.runningVar.assign(tf.add(tf.mul(this.runningVar, 1 - m), tf.mul(variance, (m * n) / Math.max(1, n - 1))));
    });
    return tf.batchNorm(x, mean, variance, this.bias, this.weight, this.eps);
  }

  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    const f = (name: string, v: tf.Variable) => g.floats(`${prefix}${name}`, v.dataSync() as Float32Array, [this.channels]);
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
    // pad with -inf explicitly: tfjs's numeric pad rounds output sizes differently from PyTorch
    const padded = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], -Infinity) as tf.Tensor4D;
    return tf.maxPool(padded, this.kernel, this.stride, 'valid');
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
