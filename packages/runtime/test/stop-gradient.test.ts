import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend, stopGradient, withoutGradients } from '@ir2f/runtime';
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

test.serial('withoutGradients: its ops are constants to the enclosing gradient, it may take gradients of its own, and the tape survives a throw', (t) => {
  const before = tf.memory().numTensors;
  const init = tf.tensor1d([1, 2, 3]);
  const w = tf.variable(init);
  init.dispose();
  const tapeLength = () => ((tf.engine() as unknown as { state: { activeTape: unknown[] | null } }).state.activeTape ?? []).length;
  let recorded = -1;
  const { value, grads } = tf.variableGrads(() => {
    const y = tf.mul(w, 2);
    const taped = tapeLength();
    // y², off the tape: 10·y² adds nothing to w's gradient; the inner gradient of its own is still right
    const [sq, inner] = withoutGradients(() => {
      const g = tf.grad((x: tf.Tensor) => tf.sum(tf.square(x)))(y);
      return [tf.mul(tf.square(y), 10), g];
    });
    recorded = tapeLength() - taped;
    t.deepEqual(Array.from(inner.dataSync()), [4, 8, 12]);
    t.throws(() => withoutGradients(() => { throw new Error('inside'); }), { message: 'inside' });
    return tf.add(tf.sum(sq), tf.sum(y)) as tf.Scalar;
  }, [w]);
  t.is(recorded, 0, 'nothing recorded on the outer tape');
  t.is(value.dataSync()[0], 10 * (4 + 16 + 36) + 12);
  t.deepEqual(Array.from(grads[w.name].dataSync()), [2, 2, 2]);
  tf.dispose([value, ...Object.values(grads), w]);
  // outside any tape it is a tidy
  const z = withoutGradients(() => tf.add(tf.scalar(1), tf.scalar(2)));
  t.is(z.dataSync()[0], 3);
  z.dispose();
  t.is(tf.memory().numTensors, before);
});
