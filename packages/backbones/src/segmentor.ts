/**
 * An encoder-decoder segmentation model (mmseg's `EncoderDecoder`): `backbone.*` and `decode_head.*` state
 * names, logits at the head's stride, and `predict` upsampling them bilinearly (half-pixel, as PyTorch's
 * `align_corners=False`) to the input size. It exports to ONNX with the upsampling included.
 */
import type * as tf from '@tensorflow/tfjs';
import * as tfl from '@tensorflow/tfjs';
import { Module, resizeTo, unsupportedOp, type Backbone, type DecodeHead, type DecodeOutput, type OnnxExportable, type OnnxGraph } from '@ir2f/core';
import { resizeLike } from './onnx-tokens.js';

export interface OnnxEncoder extends Backbone, Module {
  toOnnxFeatures(g: OnnxGraph, input: string, prefix: string): string[];
}

export interface OnnxDecodeHead extends DecodeHead, Module {
  toOnnxHead(g: OnnxGraph, features: string[], prefix: string): string;
}

export class SegmentationModel extends Module implements OnnxExportable {
  readonly backbone: OnnxEncoder;
  readonly decodeHead: OnnxDecodeHead;

  constructor(backbone: OnnxEncoder, decodeHead: OnnxDecodeHead, readonly preset = 'custom') {
    super();
    this.backbone = this.child('backbone', backbone);
    this.decodeHead = this.child('decode_head', decodeHead);
  }

  get numClasses(): number {
    return this.decodeHead.numClasses;
  }

  /** Logits and embedding at the head's resolution. */
  forward(x: tf.Tensor4D): DecodeOutput {
    return this.decodeHead.forward(this.backbone.forward(x));
  }

  /** The forward pass that also returns the encoder's features (for the ImageNet feature distance). */
  forwardWithFeatures(x: tf.Tensor4D): DecodeOutput & { features: tf.Tensor4D[] } {
    const features = this.backbone.forward(x);
    return { ...this.decodeHead.forward(features), features };
  }

  /** Logits [B, H, W, K] at the input resolution. */
  predict(x: tf.Tensor4D): tf.Tensor4D {
    return tfl.tidy(() => {
      return resizeTo(this.forward(x).logits, x.shape.slice(1, 3));
    });
  }

  toOnnx(g: OnnxGraph, input: string): string {
    for (const [part, fn] of [[this.backbone, 'toOnnxFeatures'], [this.decodeHead, 'toOnnxHead']] as const) {
      if (typeof (part as unknown as Record<string, unknown>)[fn] !== 'function') {
        throw unsupportedOp(part.constructor.name, fn, `implement ${fn}() to export it`);
      }
    }
    const features = this.backbone.toOnnxFeatures(g, input, 'backbone.');
    const logits = this.decodeHead.toOnnxHead(g, features, 'decode_head.');
    // to the input size, H and W staying dynamic
    return resizeLike(g, logits, input, 'logits_full.');
  }
}
