/**
 * Train the toy net on a dataset read by @ir2f/datasets and evaluate it on another: the smoke check that an
 * embedded benchmark's domain shift is real (source-only loses clearly against a target-label oracle),
 * until the UDA trainer provides the real numbers.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfusionMatrix, Rng } from '@ir2f/core';
import { createLoader, horizontalFlip, loadSample, normalize, type Dataset } from '@ir2f/datasets';
import { ToySegNet, trainStep } from './toy-seg-net.js';

export interface ToyTrainOptions {
  steps: number;
  batchSize?: number;
  width?: number;
  seed?: number;
  lr?: number;
  numClasses?: number;
}

export async function trainToyOn(dataset: Dataset, opts: ToyTrainOptions): Promise<ToySegNet> {
  const K = opts.numClasses ?? 19;
  const rng = new Rng(opts.seed ?? 0);
  const net = new ToySegNet({ numClasses: K, width: opts.width ?? 16 }, rng.fork('init'));
  const optimizer = tf.train.adam(opts.lr ?? 3e-3);
  const classWeights = tf.ones([K]) as tf.Tensor1D;
  const loader = createLoader(dataset, {
    batchSize: opts.batchSize ?? 4, transform: (s, r) => horizontalFlip(s, r), seed: opts.seed ?? 0, maxBatches: opts.steps,
  });
  for await (const b of loader) {
    const x = tf.tensor4d(b.images, [b.batchSize, b.height, b.width, 3]);
    const y = tf.tensor3d(Int32Array.from(b.labels!), [b.batchSize, b.height, b.width], 'int32');
    const loss = trainStep(net, optimizer, x, y, classWeights);
    tf.dispose([x, y]);
    if (!Number.isFinite(loss)) throw new Error(`loss became ${loss}`);
  }
  optimizer.dispose();
  classWeights.dispose();
  return net;
}

export async function evaluateToy(net: ToySegNet, dataset: Dataset, classes: readonly number[]): Promise<{ miou: number; iou: (number | null)[] }> {
  const cm = new ConfusionMatrix(net.numClasses);
  for (const item of dataset.items) {
    const s = await loadSample(item);
    const x = tf.tensor4d(normalize(s.image), [1, s.image.height, s.image.width, 3]);
    // read outside tf.tidy: tidy walks a returned typed array element by element
    const argmax = tf.tidy(() => tf.argMax(net.forward(x, false), 3));
    const pred = argmax.dataSync();
    tf.dispose([x, argmax]);
    cm.update(pred, s.label!.data);
  }
  return { miou: cm.miou(classes), iou: cm.iou() };
}
