import test from 'ava';
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs';
import { initBackend, Rng } from '@ir2f/core';
import { exportRectifierOnnx, InrRectifier, type InrOptionsInput } from '@ir2f/plugin-inr-rectifier';

test.before(async () => {
  await initBackend('wasm');
});

const nchw = (t: tf.Tensor4D) => tf.tidy(() => tf.transpose(t, [0, 3, 1, 2]).dataSync() as Float32Array);

const VARIANTS: InrOptionsInput[] = [
  {},
  { localEnsemble: false, cellDecode: false, unfold: false, hidden: [8] },
  { hidden: [16, 8, 4], projChannels: 5 },
];

for (const options of VARIANTS) {
  test(`the exported rectifier runs in onnxruntime and matches tfjs within 1e-4 (${JSON.stringify(options)})`, async (t) => {
    const [E, K, h, w, N, Q] = [7, 4, 5, 6, 2, 300];
    const rect = new InrRectifier({ ...options, seed: 3 }, { embeddingChannels: E, numClasses: K });
    const rng = new Rng(5);
    const embedding = tf.tensor4d(rng.normalArray(N * h * w * E), [N, h, w, E]);
    const logProbs = tf.tidy(() => tf.logSoftmax(tf.tensor4d(rng.normalArray(N * h * w * K), [N, h, w, K])) as tf.Tensor4D);
    // random points, the corners and cell centres on the border
    const pts = Array.from({ length: N * Q * 2 }, () => rng.uniform(-1, 1));
    pts.splice(0, 8, -1, -1, 1, 1, -1 + 1 / h, 1 - 1 / w, 0.999999, -0.999999);
    const coords = tf.tensor3d(pts, [N, Q, 2]);
    const cell = tf.tensor3d(Array.from({ length: N * Q * 2 }, () => rng.uniform(0.01, 0.5)), [N, Q, 2]);
    const ref = rect.rectifyAt(embedding, logProbs, coords, cell);
    const session = await ort.InferenceSession.create(exportRectifierOnnx(rect));
    const out = await session.run({
      embedding: new ort.Tensor('float32', nchw(embedding), [N, E, h, w]),
      log_probs: new ort.Tensor('float32', nchw(logProbs), [N, K, h, w]),
      coords: new ort.Tensor('float32', coords.dataSync() as Float32Array, [N, Q, 2]),
      cell: new ort.Tensor('float32', cell.dataSync() as Float32Array, [N, Q, 2]),
    });
    const got = out.r.data as Float32Array;
    const want = ref.dataSync();
    t.deepEqual(out.r.dims, [N, Q]);
    let max = 0;
    want.forEach((v, i) => (max = Math.max(max, Math.abs(v - got[i]))));
    t.true(max < 1e-4, `max abs difference ${max}`);
    await session.release();
    tf.dispose([embedding, logProbs, coords, cell, ref]);
    rect.dispose();
  });
}
