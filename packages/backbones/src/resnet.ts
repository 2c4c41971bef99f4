/**
 * ResNet encoders as torchvision builds them (v1.5: the stride sits in the 3×3 conv), with basic or bottleneck
 * blocks, depths 18/34/50/101/152, and DeepLab-style dilation: an output stride of 8 or 16 replaces the
 * strides of the last stages with dilation (the first block of a dilated stage keeps the previous dilation,
 * as torchvision's `replace_stride_with_dilation` and mmseg's `contract_dilation`). Parameter names follow
 * torchvision (`layer1.0.conv1.weight`), so its ImageNet checkpoints load by name.
 */
import type * as tf from '@tensorflow/tfjs';
import * as tfl from '@tensorflow/tfjs';
import {
  BatchNorm2d, Conv2d, Layer, MaxPool2d, Module, ReLU, Sequential, type Backbone, type OnnxGraph, type Rng,
} from '@ir2f/core';

export interface BlockArgs {
  inplanes: number;
  planes: number;
  stride: number;
  dilation: number;
  downsample?: Sequential;
}

abstract class Block extends Layer {
  protected readonly relu = new ReLU();
  abstract readonly body: Layer[];
  abstract readonly downsample?: Sequential;

  /** One tidy per block: intermediates are freed as the forward goes (the tape keeps what backprop needs). */
  forward(x: tf.Tensor): tf.Tensor {
    return tfl.tidy(() => {
      const identity = this.downsample ? this.downsample.forward(x) : x;
      let h = x;
      this.body.forEach((l) => (h = l.forward(h)));
      return tfl.relu(tfl.add(h, identity));
    });
  }

  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    const identity = this.downsample ? this.downsample.toOnnx(g, input, `${prefix}downsample.`) : input;
    let h = input;
    this.body.forEach((l, i) => (h = l.toOnnx(g, h, `${prefix}${this.bodyNames[i]}.`)));
    const sum = g.node('Add', [h, identity], {}, `${prefix}add`);
    return g.node('Relu', [sum], {}, `${prefix}out`);
  }

  protected abstract readonly bodyNames: string[];
}

export class BasicBlock extends Block {
  static readonly expansion = 1;
  readonly body: Layer[];
  readonly downsample?: Sequential;
  protected readonly bodyNames = ['conv1', 'bn1', 'relu', 'conv2', 'bn2'];

  constructor(a: BlockArgs, rng: Rng) {
    super();
    const conv1 = this.child('conv1', new Conv2d(a.inplanes, a.planes, { kernel: 3, stride: a.stride, padding: a.dilation, dilation: a.dilation }, rng));
    const bn1 = this.child('bn1', new BatchNorm2d(a.planes));
    const conv2 = this.child('conv2', new Conv2d(a.planes, a.planes, { kernel: 3, padding: a.dilation, dilation: a.dilation }, rng));
    const bn2 = this.child('bn2', new BatchNorm2d(a.planes));
    this.body = [conv1, bn1, this.relu, conv2, bn2];
    if (a.downsample) this.downsample = this.child('downsample', a.downsample);
  }
}

export class Bottleneck extends Block {
  static readonly expansion = 4;
  readonly body: Layer[];
  readonly downsample?: Sequential;
  protected readonly bodyNames = ['conv1', 'bn1', 'relu', 'conv2', 'bn2', 'relu', 'conv3', 'bn3'];

  constructor(a: BlockArgs, rng: Rng) {
    super();
    const conv1 = this.child('conv1', new Conv2d(a.inplanes, a.planes, { kernel: 1 }, rng));
    const bn1 = this.child('bn1', new BatchNorm2d(a.planes));
    const conv2 = this.child('conv2', new Conv2d(a.planes, a.planes, { kernel: 3, stride: a.stride, padding: a.dilation, dilation: a.dilation }, rng));
    const bn2 = this.child('bn2', new BatchNorm2d(a.planes));
    const conv3 = this.child('conv3', new Conv2d(a.planes, a.planes * 4, { kernel: 1 }, rng));
    const bn3 = this.child('bn3', new BatchNorm2d(a.planes * 4));
    this.body = [conv1, bn1, this.relu, conv2, bn2, this.relu, conv3, bn3];
    if (a.downsample) this.downsample = this.child('downsample', a.downsample);
  }
}

export const RESNET_DEPTHS = {
  18: { block: 'basic', layers: [2, 2, 2, 2] },
  34: { block: 'basic', layers: [3, 4, 6, 3] },
  50: { block: 'bottleneck', layers: [3, 4, 6, 3] },
  101: { block: 'bottleneck', layers: [3, 4, 23, 3] },
  152: { block: 'bottleneck', layers: [3, 8, 36, 3] },
} as const;

export interface ResNetOptions {
  depth?: keyof typeof RESNET_DEPTHS;
  /** Override the blocks per stage (e.g. [1, 1, 1, 1] for a small embedded model). */
  layers?: [number, number, number, number];
  block?: 'basic' | 'bottleneck';
  /** Channels of the stem and first stage (64 in torchvision). */
  width?: number;
  /** 32 (plain), 16 or 8 (DeepLab: dilated last stages). */
  outputStride?: 8 | 16 | 32;
}

export class ResNet extends Module implements Backbone {
  readonly channels: number[];
  readonly strides: number[];
  private readonly stem: Layer[];
  private readonly stages: Sequential[];

  constructor(opts: ResNetOptions, rng: Rng) {
    super();
    const spec = RESNET_DEPTHS[opts.depth ?? 50];
    if (!spec) throw new Error(`ResNet depth must be one of ${Object.keys(RESNET_DEPTHS).join(', ')}, got ${opts.depth}`);
    const layers = opts.layers ?? spec.layers;
    const kind = opts.block ?? spec.block;
    const Block = kind === 'basic' ? BasicBlock : Bottleneck;
    const expansion = Block.expansion;
    const width = opts.width ?? 64;
    const os = opts.outputStride ?? 32;
    if (![8, 16, 32].includes(os)) throw new Error(`ResNet outputStride must be 8, 16 or 32, got ${os}`);
    const dilate = [false, false, os <= 8, os <= 16];

    const conv1 = this.child('conv1', new Conv2d(3, width, { kernel: 7, stride: 2, padding: 3 }, rng));
    const bn1 = this.child('bn1', new BatchNorm2d(width));
    this.stem = [conv1, bn1, new ReLU(), new MaxPool2d(3, 2, 1)];
    let inplanes = width;
    let dilation = 1;
    this.stages = [];
    this.channels = [];
    this.strides = [];
    let stride = 4;
    for (let s = 0; s < 4; s++) {
      const planes = width * 2 ** s;
      let blockStride = s === 0 ? 1 : 2;
      const previousDilation = dilation;
      if (dilate[s]) {
        dilation *= blockStride;
        blockStride = 1;
      }
      stride *= blockStride;
      const blockRng = rng.fork(`layer${s + 1}`);
      const blocks: Layer[] = [];
      let downsample: Sequential | undefined;
      if (blockStride !== 1 || inplanes !== planes * expansion) {
        downsample = new Sequential(
          new Conv2d(inplanes, planes * expansion, { kernel: 1, stride: blockStride }, blockRng),
          new BatchNorm2d(planes * expansion));
      }
      blocks.push(new Block({ inplanes, planes, stride: blockStride, dilation: previousDilation, downsample }, blockRng));
      inplanes = planes * expansion;
      for (let b = 1; b < layers[s]; b++) blocks.push(new Block({ inplanes, planes, stride: 1, dilation }, blockRng));
      this.stages.push(this.child(`layer${s + 1}`, new Sequential(...blocks)));
      this.channels.push(inplanes);
      this.strides.push(stride);
    }
  }

  forward(x: tf.Tensor4D): tf.Tensor4D[] {
    let h: tf.Tensor = x;
    for (const l of this.stem) h = l.forward(h);
    return this.stages.map((stage) => (h = stage.forward(h)) as tf.Tensor4D);
  }

  toOnnxFeatures(g: OnnxGraph, input: string, prefix: string): string[] {
    const names = ['conv1', 'bn1', 'relu', 'maxpool'];
    let h = input;
    this.stem.forEach((l, i) => (h = l.toOnnx(g, h, `${prefix}${names[i]}.`)));
    return this.stages.map((stage, s) => (h = stage.toOnnx(g, h, `${prefix}layer${s + 1}.`)));
  }
}
