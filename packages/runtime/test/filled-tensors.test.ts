import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { filledTensors, initBackend } from '@ir2f/runtime';
import { onBackend } from './backend-helpers.js';

test.before(async () => {
  await initBackend('wasm');
});

for (const backend of ['wasm', 'cpu']) {
  test(`filledTensors on ${backend}: the tensors hold what fill wrote, in their shapes and dtypes, and stay valid after later allocations`, async (t) => {
    await onBackend(backend, () => {
      const before = tf.memory().numTensors;
      const [ints, floats] = filledTensors([{ shape: [3, 5], dtype: 'int32' }, { shape: [2, 4, 2], dtype: 'float32' }], ([a, b]) => {
        t.true(a instanceof Int32Array && a.length === 15);
        t.true(b instanceof Float32Array && b.length === 16);
        for (let i = 0; i < a.length; i++) a[i] = i * 7 - 3;
        for (let i = 0; i < b.length; i++) b[i] = i / 8 - 1;
      });
      t.is(tf.memory().numTensors, before + 2);
      t.deepEqual([ints.shape, ints.dtype, floats.shape, floats.dtype], [[3, 5], 'int32', [2, 4, 2], 'float32']);
      // allocations after fill (which may grow the wasm heap) leave the values as written
      const big = tf.zeros([1 << 22]);
      t.deepEqual(Array.from(ints.dataSync()), Array.from({ length: 15 }, (_, i) => i * 7 - 3));
      t.deepEqual(Array.from(floats.dataSync()), Array.from({ length: 16 }, (_, i) => i / 8 - 1));
      // usable as any tensor: in kernels, tidy and dispose
      t.is(tf.tidy(() => tf.sum(tf.add(ints, 1)).dataSync()[0]), Array.from({ length: 15 }, (_, i) => i * 7 - 2).reduce((x, y) => x + y, 0));
      tf.dispose([ints, floats, big]);
      t.is(tf.memory().numTensors, before);
    });
  });

  test(`filledTensors on ${backend}: a fill that throws leaves no tensor and no data behind`, async (t) => {
    await onBackend(backend, () => {
      const { numTensors, numBytes } = tf.memory();
      // the backend's own count: data allocated outside the engine shows only there
      const dataIds = tf.backend().numDataIds();
      const err = t.throws(() => filledTensors([{ shape: [1000], dtype: 'float32' }], () => {
        throw new Error('bad coordinates');
      }));
      t.is(err?.message, 'bad coordinates');
      t.deepEqual([tf.memory().numTensors, tf.memory().numBytes, tf.backend().numDataIds()], [numTensors, numBytes, dataIds]);
    });
  });
}
