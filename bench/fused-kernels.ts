/**
 * The runtime's fused kernels (layer norm, batch norm with batch statistics, GELU: one kernel forward, one
 * backward; wasm SIMD on the wasm backend) against the compositions they replace, forward + backward on the
 * active backend, at the activation shapes of mit-tiny-daformer's 128²–256² steps.
 */
import * as tf from '@tensorflow/tfjs';
import { batchNormTrain, batchNormTrainComposed, gelu, geluComposed, layerNorm, layerNormComposed } from '@ir2f/runtime';
import { fmt, medianMs } from './timing.js';

type Op = (x: tf.Tensor, g: tf.Tensor1D, b: tf.Tensor1D) => tf.Tensor;

const OPS: [string, Op, Op][] = [
  ['layer norm', (x, g, b) => layerNorm(x, g, b), (x, g, b) => layerNormComposed(x, g, b, 1e-5)],
  ['batch norm (batch statistics)', (x, g, b) => batchNormTrain(x, g, b).y, (x, g, b) => batchNormTrainComposed(x, g, b, 1e-5).y],
  ['GELU', (x) => gelu(x), (x) => geluComposed(x)],
];

const SHAPES = [[2, 64, 64, 32], [2, 32, 32, 256], [2, 16, 16, 160], [2, 64, 64, 256]];

/** Rows of [op, shape, fused ms, composition ms, composition ÷ fused], forward + backward (median of 15). */
export function fusedKernelRows(): (string | number)[][] {
  const rows: (string | number)[][] = [['fused op, fwd + bwd', 'shape', 'fused ms', 'composition ms', 'composition ÷ fused']];
  for (const shape of SHAPES) {
    const C = shape[shape.length - 1];
    const [x, dy] = [tf.randomNormal(shape), tf.randomNormal(shape)];
    const [g, b] = [tf.randomNormal([C]) as tf.Tensor1D, tf.randomNormal([C]) as tf.Tensor1D];
    for (const [name, fused, composed] of OPS) {
      // gradients to every input the op reads (GELU has no scale or shift)
      const inputs = name === 'GELU' ? [x] : [x, g, b];
      const ms = (op: Op) => medianMs(() => tf.tidy(() => {
        const grads = tf.grads((...xs: tf.Tensor[]) => op(xs[0], (xs[1] ?? g) as tf.Tensor1D, (xs[2] ?? b) as tf.Tensor1D))(inputs, dy);
        grads[0].dataSync();
      }), { warmup: 5, runs: 15 });
      const [f, c] = [ms(fused), ms(composed)];
      rows.push([name, shape.join('×'), fmt(f, 2), fmt(c, 2), fmt(c / f, 1)]);
    }
    tf.dispose([x, dy, g, b]);
  }
  return rows;
}
