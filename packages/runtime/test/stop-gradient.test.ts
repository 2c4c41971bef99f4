import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend, stopGradient } from '@ir2f/runtime';
import { onBackend } from './backend-helpers.js';

test.before(async () => {
  await initBackend('wasm');
});

for (const backend of ['wasm', 'cpu']) {
  test.serial(`stopGradient on ${backend}: same values, no gradient, either tensor disposable first, nothing leaked`, async (t) => {
    await onBackend(backend, () => {
      const before = tf.memory();
      const init = tf.tensor1d([1, 2, 3]);
      const w = tf.variable(init);
      init.dispose();
      const { value, grads } = tf.variableGrads(() => {
        const y = tf.mul(w, 2);
        // the loss reads y twice: once through the stop (no gradient), once directly
        return tf.add(tf.sum(tf.mul(stopGradient(y), 10)), tf.sum(y)) as tf.Scalar;
      }, [w]);
      t.deepEqual(Array.from(grads[w.name].dataSync()), [2, 2, 2]);
      tf.dispose([value, ...Object.values(grads)]);
      for (const order of ['copy first', 'original first']) {
        const x = tf.tensor1d([4, 5, 6]);
        const s = stopGradient(x);
        const [first, second] = order === 'copy first' ? [s, x] : [x, s];
        first.dispose();
        t.deepEqual(Array.from(second.dataSync()), [4, 5, 6], `${order}: the other still reads its data`);
        // a new tensor must not land on the data still in use
        const other = tf.tensor1d([7, 8, 9]);
        t.deepEqual(Array.from(second.dataSync()), [4, 5, 6], order);
        tf.dispose([second, other]);
      }
      w.dispose();
      const after = tf.memory();
      t.is(after.numTensors, before.numTensors);
      t.is(after.numBytes, before.numBytes);
      t.is(after.numDataBuffers, before.numDataBuffers);
    });
  });
}
