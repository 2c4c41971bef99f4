/**
 * Sum and Mean gradients without a full-size array of ones built in JS. tfjs 4.22's own multiply the reshaped
 * dy by `ones(x.shape)`, which fills a JS typed array the size of x and uploads it on every backward pass
 * (2.6% of a wasm training step's CPU time). Here the ones come from the backend (`onesLike`, a fill in
 * place) and a broadcasting multiply spreads dy back over the reduced axes (Mean: divided by their size
 * first, on the small dy). Not `tf.broadcastTo`: that is a Tile, a scalar loop on wasm that doubled the step.
 */
import * as tf from '@tensorflow/tfjs';

let installed = false;

/** dy (reduced over `axes`, with or without kept dims) times `scale`, broadcast back to x's shape. */
function broadcastBack(dy: tf.Tensor, x: tf.Tensor, axes: number[], scale: number): tf.Tensor {
  const expanded = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const small = tf.reshape(scale === 1 ? dy : tf.mul(dy, scale), expanded);
  // a broadcasting multiply: tf.broadcastTo is a Tile, which tfjs-backend-wasm runs as a slow scalar loop
  return tf.mul(small, tf.onesLike(x));
}

export function registerReduceGradients(): void {
  if (installed) return;
  for (const kernelName of ['Sum', 'Mean'] as const) {
    tf.registerGradient({
      kernelName,
      inputsToSave: ['x'],
      gradFunc: (dy, saved, attrs) => {
        const [x] = saved;
        // null (a full reduction), negative and single axes, as tfjs parses them
        const axes = tf.util.parseAxisParam((attrs as unknown as { axis: number | number[] }).axis, x.shape);
        const count = kernelName === 'Mean' ? axes.reduce((n, a) => n * x.shape[a], 1) : 1;
        return { x: () => broadcastBack(dy as tf.Tensor, x, axes, 1 / count) };
      },
    });
  }
  installed = true;
}
