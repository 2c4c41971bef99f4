/**
 * The all-MLP decode heads over a 4-level encoder: each level is embedded by a linear layer (`proj`), upsampled
 * to the stride-4 level and concatenated, then fused.
 * - `SegFormerHead` (Xie et al.): 1×1 ConvModule fusion, dropout, 1×1 classifier. NVlabs names
 *   (`linear_c4.proj`, `linear_fuse.conv|bn`, `linear_pred`).
 * - `DAFormerHead` (Hoyer et al.), context-aware fusion: embedding 256, an ASPP of a 1×1 ConvModule and
 *   depthwise-separable 3×3 ConvModules with dilations 6/12/18 over the concatenation, a 3×3 bottleneck,
 *   dropout and a 1×1 classifier. DAFormer names (`embed_layers.0.proj`, `fuse_layer.aspp_modules.1.depthwise_conv`,
 *   `fuse_layer.bottleneck`, `conv_seg`).
 * The fused map is the head's `embedding` (the rectifier's input).
 */
import type * as tf from '@tensorflow/tfjs';
import * as tfl from '@tensorflow/tfjs';
import {
  attr, Conv2d, ConvBnReLU, Dropout, Layer, Linear, Module, ModuleList, resizeTo, type DecodeHead, type DecodeOutput, type OnnxGraph, type Rng,
} from '@ir2f/core';
import { mapToTokens, resizeLike, tokensToMap } from './onnx-tokens.js';

/** Linear embedding of a feature map, named like mmseg's `MLP` (`proj`). */
class MLPEmbed extends Module {
  readonly proj: Linear;

  constructor(inChannels: number, dim: number, rng: Rng) {
    super();
    this.proj = this.child('proj', new Linear(inChannels, dim, rng));
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return this.proj.forward(x) as tf.Tensor4D; // Linear acts on the last (channel) axis of NHWC
  }

  toOnnx(g: OnnxGraph, map: string, prefix: string): string {
    const shapeOf = g.node('Shape', [map], {}, `${prefix}shape`);
    const tokens = this.proj.toOnnx(g, mapToTokens(g, map, prefix), `${prefix}proj.`);
    return tokensToMap(g, tokens, this.proj.outFeatures, shapeOf, `${prefix}out.`);
  }
}

/** Embed each level, upsample to level 0 and concatenate in `order`. */
function embedAndConcat(embeds: MLPEmbed[], features: tf.Tensor4D[], order: number[]): tf.Tensor4D {
  const e = embeds.map((m, i) => m.forward(features[i]));
  return tfl.concat(order.map((i) => resizeTo(e[i], e[0].shape.slice(1, 3))), 3);
}

function embedAndConcatOnnx(g: OnnxGraph, embeds: MLPEmbed[], features: string[], order: number[], names: string[], prefix: string): string {
  const e = embeds.map((m, i) => m.toOnnx(g, features[i], `${prefix}${names[i]}.`));
  const up = e.map((x, i) => (i === 0 ? x : resizeLike(g, x, e[0], `${prefix}${names[i]}_up.`)));
  return g.node('Concat', order.map((i) => up[i]), { axis: attr.int(1) }, `${prefix}concat`);
}

export interface MLPHeadOptions {
  inChannels: number[];
  numClasses: number;
  embedDim?: number;
  dropout?: number;
}

export class SegFormerHead extends Module implements DecodeHead {
  readonly numClasses: number;
  readonly embeddingChannels: number;
  private readonly embeds: MLPEmbed[];
  private readonly fuse: ConvBnReLU;
  private readonly drop: Dropout;
  private readonly pred: Conv2d;
  private static readonly names = ['linear_c1', 'linear_c2', 'linear_c3', 'linear_c4'];

  constructor(opts: MLPHeadOptions, rng: Rng) {
    super();
    const E = opts.embedDim ?? 256;
    this.embeddingChannels = E;
    this.numClasses = opts.numClasses;
    this.embeds = opts.inChannels.map((c, i) => this.child(SegFormerHead.names[i], new MLPEmbed(c, E, rng.fork(`embed${i}`))));
    this.fuse = this.child('linear_fuse', new ConvBnReLU(4 * E, E, { kernel: 1 }, rng.fork('fuse')));
    this.drop = this.child('dropout', new Dropout(opts.dropout ?? 0.1, rng.fork('dropout')));
    this.pred = this.child('linear_pred', new Conv2d(E, opts.numClasses, { kernel: 1, bias: true, initStd: 0.01 }, rng.fork('pred')));
  }

  forward(features: tf.Tensor4D[]): DecodeOutput {
    const embedding = this.fuse.forward(embedAndConcat(this.embeds, features, [3, 2, 1, 0])) as tf.Tensor4D;
    return { logits: this.pred.forward(this.drop.forward(embedding)) as tf.Tensor4D, embedding };
  }

  toOnnxHead(g: OnnxGraph, features: string[], prefix: string): string {
    const cat = embedAndConcatOnnx(g, this.embeds, features, [3, 2, 1, 0], SegFormerHead.names, prefix);
    return this.pred.toOnnx(g, this.fuse.toOnnx(g, cat, `${prefix}linear_fuse.`), `${prefix}linear_pred.`);
  }
}

/** mmseg's DepthwiseSeparableConvModule: depthwise 3×3 ConvModule, then pointwise 1×1 ConvModule. */
class SepConv extends Layer {
  readonly depthwise: ConvBnReLU;
  readonly pointwise: ConvBnReLU;

  constructor(inCh: number, outCh: number, dilation: number, rng: Rng) {
    super();
    this.depthwise = this.child('depthwise_conv', new ConvBnReLU(inCh, inCh, { kernel: 3, padding: dilation, dilation, groups: inCh }, rng.fork('dw')));
    this.pointwise = this.child('pointwise_conv', new ConvBnReLU(inCh, outCh, { kernel: 1 }, rng.fork('pw')));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.pointwise.forward(this.depthwise.forward(x));
  }

  toOnnx(g: OnnxGraph, input: string, prefix: string): string {
    return this.pointwise.toOnnx(g, this.depthwise.toOnnx(g, input, `${prefix}depthwise_conv.`), `${prefix}pointwise_conv.`);
  }
}

class AsppWrapper extends Module {
  readonly branches: Layer[];
  readonly bottleneck: ConvBnReLU;

  constructor(inCh: number, ch: number, dilations: number[], rng: Rng) {
    super();
    this.branches = this.child('aspp_modules', new ModuleList<Layer>(dilations.map((d, i) => (d === 1
      ? new ConvBnReLU(inCh, ch, { kernel: 1 }, rng.fork(`aspp${i}`))
      : new SepConv(inCh, ch, d, rng.fork(`aspp${i}`)))))).items as Layer[];
    this.bottleneck = this.child('bottleneck', new ConvBnReLU(dilations.length * ch, ch, { kernel: 3, padding: 1 }, rng.fork('bottleneck')));
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return this.bottleneck.forward(tfl.concat(this.branches.map((b) => b.forward(x) as tf.Tensor4D), 3)) as tf.Tensor4D;
  }

  toOnnx(g: OnnxGraph, x: string, prefix: string): string {
    const outs = this.branches.map((b, i) => b.toOnnx(g, x, `${prefix}aspp_modules.${i}.`));
    return this.bottleneck.toOnnx(g, g.node('Concat', outs, { axis: attr.int(1) }, `${prefix}aspp_cat`), `${prefix}bottleneck.`);
  }
}

export class DAFormerHead extends Module implements DecodeHead {
  readonly numClasses: number;
  readonly embeddingChannels: number;
  private readonly embeds: MLPEmbed[];
  private readonly fuse: AsppWrapper;
  private readonly drop: Dropout;
  private readonly cls: Conv2d;

  constructor(opts: MLPHeadOptions & { dilations?: number[] }, rng: Rng) {
    super();
    const E = opts.embedDim ?? 256;
    this.embeddingChannels = E;
    this.numClasses = opts.numClasses;
    this.embeds = opts.inChannels.map((c, i) => new MLPEmbed(c, E, rng.fork(`embed${i}`)));
    this.child('embed_layers', new ModuleList(this.embeds));
    this.fuse = this.child('fuse_layer', new AsppWrapper(4 * E, E, opts.dilations ?? [1, 6, 12, 18], rng.fork('fuse')));
    this.drop = this.child('dropout', new Dropout(opts.dropout ?? 0.1, rng.fork('dropout')));
    this.cls = this.child('conv_seg', new Conv2d(E, opts.numClasses, { kernel: 1, bias: true, initStd: 0.01 }, rng.fork('cls')));
  }

  forward(features: tf.Tensor4D[]): DecodeOutput {
    const embedding = this.fuse.forward(embedAndConcat(this.embeds, features, [0, 1, 2, 3]));
    return { logits: this.cls.forward(this.drop.forward(embedding)) as tf.Tensor4D, embedding };
  }

  toOnnxHead(g: OnnxGraph, features: string[], prefix: string): string {
    const cat = embedAndConcatOnnx(g, this.embeds, features, [0, 1, 2, 3], ['embed_layers.0', 'embed_layers.1', 'embed_layers.2', 'embed_layers.3'], prefix);
    return this.cls.toOnnx(g, this.fuse.toOnnx(g, cat, `${prefix}fuse_layer.`), `${prefix}conv_seg.`);
  }
}
