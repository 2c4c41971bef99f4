/**
 * DeepLabV2's ASPP classifier (mmseg `DLV2Head`): four parallel 3×3 convolutions with dilations 6/12/18/24
 * on the last encoder feature, each producing class logits, summed.
 */
import type * as tf from '@tensorflow/tfjs';
import * as tfl from '@tensorflow/tfjs';
import { Conv2d, Module, ModuleList, type DecodeHead, type DecodeOutput, type OnnxGraph, type Rng } from '@ir2f/core';

export interface DeepLabV2HeadOptions {
  inChannels: number;
  numClasses: number;
  dilations?: number[];
}

export class DeepLabV2Head extends Module implements DecodeHead {
  readonly numClasses: number;
  /** The embedding is the encoder's last feature map. */
  readonly embeddingChannels: number;
  private readonly aspp: Conv2d[];

  constructor(opts: DeepLabV2HeadOptions, rng: Rng) {
    super();
    this.numClasses = opts.numClasses;
    this.embeddingChannels = opts.inChannels;
    const dilations = opts.dilations ?? [6, 12, 18, 24];
    this.aspp = this.child('aspp_modules', new ModuleList(dilations.map((d, i) =>
      new Conv2d(opts.inChannels, opts.numClasses, { kernel: 3, padding: d, dilation: d, bias: true, initStd: 0.01 }, rng.fork(`aspp${i}`))))).items as Conv2d[];
  }

  forward(features: tf.Tensor4D[]): DecodeOutput {
    const x = features[features.length - 1];
    const logits = tfl.addN(this.aspp.map((c) => c.forward(x))) as tf.Tensor4D;
    return { logits, embedding: x };
  }

  toOnnxHead(g: OnnxGraph, features: string[], prefix: string): string {
    const x = features[features.length - 1];
    const outs = this.aspp.map((c, i) => c.toOnnx(g, x, `${prefix}aspp_modules.${i}.`));
    return outs.reduce((acc, o) => g.node('Add', [acc, o], {}, `${prefix}aspp_sum`));
  }
}

