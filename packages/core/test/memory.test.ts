import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend, Rng } from '@ir2f/core';
import { ToySegNet, trainStep } from '../../../examples/toy/toy-seg-net.js';
import { makeToyBatch } from '../../../examples/toy/toy-task.js';

test('50 training steps on wasm keep tf.memory() flat (tensors and bytes)', async (t) => {
  await initBackend('wasm');
  const rng = new Rng(5);
  const net = new ToySegNet({ numClasses: 4, width: 8 }, rng.fork('init'));
  const optimizer = tf.train.adam(1e-3);
  const cw = tf.ones([4]) as tf.Tensor1D;
  const data = makeToyBatch(rng.fork('data'), 2, 32);
  // the optimiser creates its moment variables on the first step: measure after it
  trainStep(net, optimizer, data.images, data.labels, cw);
  const before = tf.memory();
  const losses: number[] = [];
  for (let i = 0; i < 50; i++) losses.push(trainStep(net, optimizer, data.images, data.labels, cw));
  const after = tf.memory();
  t.is(after.numTensors, before.numTensors);
  t.is(after.numBytes, before.numBytes);
  t.true(losses.every(Number.isFinite));
  t.true(losses[49] < losses[0], `loss should fall on a fixed batch: ${losses[0]} → ${losses[49]}`);
  net.dispose();
  optimizer.dispose();
  tf.dispose([cw, data.images, data.labels]);
});
