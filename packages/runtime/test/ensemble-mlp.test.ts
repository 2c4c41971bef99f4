import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { denseKernelCalls, ensembleMlp, ensembleMlpComposed, initBackend, type MlpLayer } from '@ir2f/runtime';
import { onBackend, randomArray, relativeError } from './backend-helpers.js';

test.before(async () => {
  await initBackend('wasm');
});

/**
 * [R, H₀, hidden widths, N, Q, K]: the INR query's shape (a partial last tile of 1024 queries), no hidden layer
 * with exactly one tile, two hidden layers of other widths on one neighbour, fewer queries than a tile.
 */
const CASES: [number, number, number[], number, number, number][] = [
  [50, 16, [16], 4, 3000, 2], [7, 8, [], 4, 1024, 2], [30, 12, [10, 6], 1, 2500, 3], [20, 64, [64], 4, 700, 2],
];

function inputs(c: (typeof CASES)[number], seed: number) {
  const [R, H0, widths, N, Q, K] = c;
  const t = (shape: number[], k: number, scale = 1) => tf.tensor(randomArray(shape.reduce((a, b) => a * b, 1), seed + k).map((v) => v * scale), shape);
  const sizes = [H0, ...widths];
  const layers: MlpLayer[] = widths.map((w, i) => ({ w: t([sizes[i], w], 10 + i, 0.5) as tf.Tensor2D, b: t([w], 20 + i, 0.2) as tf.Tensor1D }));
  return {
    table: t([R, H0], 1) as tf.Tensor2D,
    // repeated rows, every row used
    index: tf.tensor2d(Int32Array.from({ length: N * Q }, (_, i) => (i * 7 + seed) % R), [N, Q], 'int32'),
    x: t([N, Q, K], 2) as tf.Tensor3D, wx: t([K, H0], 3) as tf.Tensor2D, layers,
    out: { w: t([sizes[sizes.length - 1], 1], 4, 0.5) as tf.Tensor2D, b: t([1], 5) as tf.Tensor1D },
    weight: t([N, Q], 6) as tf.Tensor2D,
  };
}

for (const backend of ['wasm', 'cpu']) {
  test(`ensembleMlp on ${backend}: the onnxruntime loop over query tiles matches the composition, its tensors freed`, async (t) => {
    await onBackend(backend, () => {
      for (const [i, c] of CASES.entries()) {
        const p = inputs(c, 40 + i);
        const before = tf.memory().numTensors;
        const calls = denseKernelCalls().Ir2fEnsembleMlp ?? 0;
        const fused = tf.tidy(() => ensembleMlp(p.table, p.index, p.x, p.wx, p.layers, p.out, p.weight).dataSync() as Float32Array);
        t.is(denseKernelCalls().Ir2fEnsembleMlp, calls + 1, `${JSON.stringify(c)} ran on onnxruntime`);
        t.is(tf.memory().numTensors, before);
        const composed = tf.tidy(() => ensembleMlpComposed(p.table, p.index, p.x, p.wx, p.layers, p.out, p.weight).dataSync() as Float32Array);
        t.is(fused.length, c[4]);
        t.true(relativeError(fused, composed) < 1e-5, `${JSON.stringify(c)}: rel ${relativeError(fused, composed)}`);
        tf.dispose([p.table, p.index, p.x, p.wx, p.weight, p.out.w, p.out.b, ...p.layers.flatMap((l) => [l.w, l.b])]);
      }
    });
  });
}

test('ensembleMlp under a gradient tape runs the composition: its gradients are the composition\'s, and the loop does not run', async (t) => {
  await onBackend('wasm', () => {
    const p = inputs(CASES[0], 7);
    const calls = denseKernelCalls().Ir2fEnsembleMlp ?? 0;
    const grads = (f: typeof ensembleMlp) => tf.tidy(() => tf.grads((table: tf.Tensor, wx: tf.Tensor, w0: tf.Tensor) => tf.sum(tf.square(
      f(table as tf.Tensor2D, p.index, p.x, wx as tf.Tensor2D, [{ w: w0 as tf.Tensor2D, b: p.layers[0].b }], p.out, p.weight))))([p.table, p.wx, p.layers[0].w])
      .map((g) => g.dataSync() as Float32Array));
    const [a, b] = [grads(ensembleMlp), grads(ensembleMlpComposed)];
    a.forEach((g, i) => t.deepEqual(g, b[i]));
    t.true(a[0].some((v) => v !== 0));
    t.is(denseKernelCalls().Ir2fEnsembleMlp ?? 0, calls);
  });
});

test('ensembleMlp refuses shapes that do not chain, naming them', (t) => {
  tf.tidy(() => {
    const p = inputs(CASES[1], 3);
    const err = t.throws(() => ensembleMlp(p.table, p.index, p.x, tf.ones([3, 8]) as tf.Tensor2D, p.layers, p.out, p.weight));
    t.regex(err!.message, /^ensembleMlp: needs .*wx \[3,8\]/);
  });
});
