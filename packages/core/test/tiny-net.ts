/** A small segmentation network for trainer tests: conv-BN-ReLU at stride 2, another at stride 4, 1×1 classifier. */
import * as tf from '@tensorflow/tfjs';
import { BatchNorm2d, Conv2d, Module, Rng, type DecodeOutput, type SegmentationNetwork } from '@ir2f/core';

export class TinyNet extends Module implements SegmentationNetwork {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly head: Conv2d;

  constructor(readonly numClasses: number, seed: number, width = 8) {
    super();
    const rng = new Rng(seed);
    this.conv1 = this.child('conv1', new Conv2d(3, width, { kernel: 3, stride: 2, padding: 1 }, rng.fork('c1')));
    this.bn1 = this.child('bn1', new BatchNorm2d(width));
    this.conv2 = this.child('conv2', new Conv2d(width, width, { kernel: 3, stride: 2, padding: 1 }, rng.fork('c2')));
    this.head = this.child('decode_head', new Conv2d(width, numClasses, { kernel: 1 }, rng.fork('h')));
  }

  forward(x: tf.Tensor4D): DecodeOutput {
    const { logits, embedding, features } = this.forwardWithFeatures(x);
    features[0].dispose();
    return { logits, embedding };
  }

  /** Encoder features: stride 2 and stride 4 (the last is also the embedding). */
  forwardWithFeatures(x: tf.Tensor4D): DecodeOutput & { features: tf.Tensor4D[] } {
    return tf.tidy(() => {
      const h = tf.relu(this.bn1.forward(this.conv1.forward(x))) as tf.Tensor4D;
      const embedding = tf.relu(this.conv2.forward(h)) as tf.Tensor4D;
      return { logits: this.head.forward(embedding) as tf.Tensor4D, embedding, features: [h, embedding] };
    });
  }
}
