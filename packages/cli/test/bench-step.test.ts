import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ir2f/core';
import { ensembleMlp } from '@ir2f/runtime';
import { benchInterleaved, kernelFlops, kernelTotals } from '@ir2f/cli';

test.before(async () => {
  await initBackend('wasm');
});

test.serial('kernelFlops counts 2 per multiply-add of convolutions and matrix products, forward and backward, nothing else', async (t) => {
  const x = tf.ones([2, 8, 8, 3]) as tf.Tensor4D;
  const w = tf.ones([3, 3, 3, 5]) as tf.Tensor4D;
  const a = tf.ones([4, 6, 7]) as tf.Tensor3D;
  const b = tf.ones([4, 7, 9]) as tf.Tensor3D;
  const conv = 2 * (2 * 8 * 8 * 5) * (3 * 3 * 3);
  const matmul = 2 * 4 * 6 * 9 * 7;
  const fwd = await tf.profile(() => tf.tidy(() => {
    tf.conv2d(x, w, 1, 'same');
    tf.matMul(a, b);
    tf.relu(x);
  }));
  t.is(kernelFlops(fwd.kernels as never), conv + matmul);
  // backward: input and filter gradients of the conv (one forward's MACs each), both operand gradients of the
  // product (as many MACs as its forward each; one operand transposed)
  const bwd = await tf.profile(() => tf.tidy(() => {
    tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, 1, 'same')))([x, w]);
    tf.grads((aa: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.matMul(aa as tf.Tensor3D, bb as tf.Tensor3D)))([a, b]);
  }));
  t.is(kernelFlops(bwd.kernels as never), 3 * conv + 3 * matmul);
  tf.dispose([x, w, a, b]);
});

test.serial('kernelFlops counts the fused ensemble MLP\'s products: the coordinate term, each hidden layer and the output layer, per query and neighbour', async (t) => {
  const [N, Q] = [4, 300];
  const p = await tf.profile(() => tf.tidy(() => {
    ensembleMlp(tf.ones([10, 16]), tf.zeros([N, Q], 'int32') as tf.Tensor2D, tf.ones([N, Q, 2]), tf.ones([2, 16]),
      [{ w: tf.ones([16, 8]), b: tf.ones([8]) }, { w: tf.ones([8, 8]), b: tf.ones([8]) }] as never, { w: tf.ones([8, 1]), b: tf.ones([1]) } as never, tf.ones([N, Q]));
  }));
  t.true(p.kernels.some((k) => k.name === 'Ir2fEnsembleMlp'), 'the fused graph ran');
  t.is(kernelFlops(p.kernels as never), 2 * N * Q * (2 * 16 + 16 * 8 + 8 * 8 + 8));
  // its gradient graph (inputs as the forward's, then ds) recomputes the forward, then runs two products a layer
  const grad = { name: 'Ir2fEnsembleMlpGrad', outputShapes: [], inputShapes: p.kernels.find((k) => k.name === 'Ir2fEnsembleMlp')!.inputShapes.concat([[Q]]) };
  t.is(kernelFlops([grad]), 3 * 2 * N * Q * (2 * 16 + 16 * 8 + 8 * 8 + 8));
  // the BCE's value-and-gradient graph (then target and scale): the same, less the query offsets' gradient
  const bce = { ...grad, name: 'Ir2fEnsembleMlpBce', inputShapes: grad.inputShapes.concat([[Q]]) };
  t.is(kernelFlops([bce]), 2 * N * Q * (3 * (2 * 16 + 16 * 8 + 8 * 8 + 8) - 2 * 16));
});

test('kernelTotals sums calls and time per kernel name, slowest first, counts kernels with no timing, and leaves out custom-gradient scopes', (t) => {
  const totals = kernelTotals([
    { name: 'Relu', kernelTimeMs: 1 }, { name: 'Conv2D', kernelTimeMs: 4 }, { name: 'Relu', kernelTimeMs: 2 },
    { name: 'Add', kernelTimeMs: { error: 'no timer' } }, { name: 'Conv2D', kernelTimeMs: 0.5 },
    // a custom-gradient op's forward, whose own kernels are records of their own
    { name: 'unnamed scope', kernelTimeMs: 7 },
  ]);
  t.deepEqual(totals, [
    { name: 'Conv2D', calls: 2, ms: 4.5 }, { name: 'Relu', calls: 2, ms: 3 }, { name: 'Add', calls: 1, ms: 0 },
  ]);
});

test.serial('benchInterleaved steps each setup in turn and returns each one\'s times, its tensors freed', async (t) => {
  const before = tf.memory().numTensors;
  const setup = (plugins: { package: string; options: Record<string, unknown> }[]) => ({ preset: 'resnet-tiny-deeplabv2', size: 32, batch: 1, steps: 2, backend: 'wasm', plugins });
  const times = await benchInterleaved([setup([]), setup([{ package: '@ir2f/plugin-inr-rectifier', options: {} }])], 3, 1);
  t.is(times.length, 2);
  for (const ms of times) {
    t.is(ms.length, 3);
    t.true(ms.every((v) => Number.isFinite(v) && v > 0));
  }
  t.is(tf.memory().numTensors, before);
});
