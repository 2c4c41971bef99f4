import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { evaluate, inferLogits, initBackend, type DecodeOutput, type EvalSample } from '@ir2f/core';

test.before(async () => {
  await initBackend('wasm');
});

/** A per-pixel "network": logits are a fixed linear map of each pixel, so windows cannot change them. */
const pointwise = {
  forward(x: tf.Tensor4D): DecodeOutput {
    const logits = tf.tidy(() => tf.matMul(tf.reshape(x, [-1, 3]), tf.tensor2d([[1, 0, -1], [0, 2, 0], [0, 0, 1]])).reshape([...x.shape.slice(0, 3), 3])) as tf.Tensor4D;
    return { logits, embedding: logits };
  },
};

test('sliding-window logits equal whole-image logits for a per-pixel network, with overlapping and border windows', (t) => {
  const x = tf.randomNormal([1, 23, 37, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
  const whole = inferLogits(pointwise, x);
  const before = tf.memory().numTensors;
  const slid = inferLogits(pointwise, x, { crop: [16, 16], stride: [10, 11] });
  t.is(tf.memory().numTensors, before + 1);
  const err = tf.tidy(() => tf.max(tf.abs(tf.sub(whole, slid))).dataSync()[0]);
  t.true(err < 1e-6, `max difference ${err}`);
  tf.dispose([x, whole, slid]);
  t.throws(() => inferLogits(pointwise, tf.zeros([1, 20, 20, 3]) as tf.Tensor4D, { crop: [8, 8], stride: [0, 4] }));
});

test('evaluate: confusion matrix and mIoU over the chosen classes, against hand-computed values', async (t) => {
  // pixel (r, g, b) → logits (r − b, 2g, b): craft pixels whose argmax is 0, 1 or 2
  const px: Record<number, number[]> = { 0: [3, 0, 0], 1: [0, 3, 0], 2: [0, 0, 3] };
  const pred = [0, 0, 1, 1, 2, 2];
  const truth = [0, 0, 0, 1, 1, 255];
  const sample: EvalSample = {
    image: Float32Array.from(pred.flatMap((p) => px[p])), label: Uint8Array.from(truth), height: 2, width: 3,
  };
  const r = await evaluate(pointwise, [sample], { numClasses: 3 });
  t.deepEqual([...r.matrix.counts], [2, 1, 0, 0, 1, 1, 0, 0, 0]);
  // IoU0 = 2/3, IoU1 = 1/3, IoU2 = 0/1 (predicted once, never true)
  t.deepEqual(r.perClassIoU.map((v) => (v == null ? null : Math.round(v * 1e6) / 1e6)), [0.666667, 0.333333, 0]);
  t.true(Math.abs(r.miou - (2 / 3 + 1 / 3 + 0) / 3) < 1e-9);
  const sub = await evaluate(pointwise, [sample], { numClasses: 3, classes: [0, 1] });
  t.true(Math.abs(sub.miou - 0.5) < 1e-9);
  t.is(r.images, 1);
});
