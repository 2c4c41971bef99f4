import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import {
  batchNormTrain, batchNormTrainComposed, dense, denseComposed, ensembleDot, ensembleDotComposed, gatherAffineRelu, gatherAffineReluComposed, gelu, geluComposed, initBackend, layerNorm, layerNormComposed,
  softmaxCrossEntropy, softmaxCrossEntropyComposed,
} from '@ir2f/runtime';
import { onBackend, randomArray, relativeError } from './backend-helpers.js';

test.before(async () => {
  await initBackend('wasm', { denseKernels: 'backend' });
});

/** Values and the gradients of Σ y·w (w fixed, random) with respect to every input, as plain arrays. */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], seed: number): Float32Array[] {
  return tf.tidy(() => {
    const y = f(...inputs);
    const w = tf.tensor(randomArray(y.size, seed), y.shape);
    const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), w)))(inputs);
    return [y, ...grads].map((t) => t.dataSync() as Float32Array);
  });
}

const LN_SHAPES: number[][] = [[2, 5, 7, 16], [3, 64], [1, 1, 1], [4, 9, 33]];

for (const backend of ['wasm', 'cpu']) {
  test(`layerNorm's fused kernel and gradient on ${backend} match the composition (values, dx, dγ, dβ)`, async (t) => {
    for (const [i, shape] of LN_SHAPES.entries()) {
      const C = shape[shape.length - 1];
      const n = shape.reduce((a, b) => a * b, 1);
      // an offset and a scale per row, as activations have: the statistics must not be taken as 0 and 1
      const xs = randomArray(n, 10 + i).map((v, k) => 3 * v * (1 + (k % 3)) + 2);
      const run = (fused: boolean) => onBackend(backend, () => valueAndGrads(
        (x, g, b) => (fused ? layerNorm : layerNormComposed)(x, g as tf.Tensor1D, b as tf.Tensor1D, 1e-6),
        [tf.tensor(xs, shape), tf.tensor1d(randomArray(C, 20 + i).map((v) => 1 + v)), tf.tensor1d(randomArray(C, 30 + i))], 40 + i,
      ));
      const [fused, composed] = [await run(true), await run(false)];
      ['y', 'dx', 'dγ', 'dβ'].forEach((name, k) => {
        const err = relativeError(fused[k], composed[k]);
        t.true(err < 1e-4, `${JSON.stringify(shape)} ${name}: rel ${err}`);
      });
    }
  });

  test(`gelu's fused kernel and gradient on ${backend} match the composition, across erf's range`, async (t) => {
    const xs = Float32Array.from({ length: 2001 }, (_, k) => (k - 1000) / 125); // −8 … 8
    const run = (fused: boolean) => onBackend(backend, () => valueAndGrads((x) => (fused ? gelu : geluComposed)(x), [tf.tensor(xs)], 3));
    const [fused, composed] = [await run(true), await run(false)];
    for (const [k, name] of ['y', 'dx'].entries()) {
      const err = relativeError(fused[k], composed[k]);
      t.true(err < 1e-5, `${name}: rel ${err}`);
    }
    // and against the closed form at a few points: Φ(1) = 0.8413447, φ(1) = 0.2419707
    const at = await onBackend(backend, () => valueAndGrads((x) => gelu(x), [tf.tensor([0, 1, -1])], 0).map((a) => Array.from(a)));
    t.true(Math.abs(at[0][1] - 0.8413447) < 1e-6 && Math.abs(at[0][2] + 0.1586553) < 1e-6 && at[0][0] === 0);
  });
  test(`softmaxCrossEntropy's fused kernel and gradient on ${backend} match the composition, ignored labels included`, async (t) => {
    // rows not a multiple of 4 (the SIMD kernel's group), K = 19 and 3; labels 255, K and −1 are ignored; logits
    // spread ×10 so that the max shift matters; and a custom ignore index (2) for K = 3
    const cases: { shape: number[]; ignore: number }[] = [{ shape: [2, 7, 5, 19], ignore: 255 }, { shape: [3, 3], ignore: 255 }, { shape: [9, 3], ignore: 2 }];
    for (const [i, { shape, ignore }] of cases.entries()) {
      const K = shape[shape.length - 1];
      const n = shape.reduce((a, b) => a * b, 1) / K;
      const xs = randomArray(n * K, 50 + i).map((v) => 10 * v);
      const labels = Int32Array.from({ length: n }, (_, r) => [255, K, -1][r % 11] ?? (r * 7) % K);
      const run = (fused: boolean) => onBackend(backend, () => valueAndGrads(
        (x) => (fused ? softmaxCrossEntropy : softmaxCrossEntropyComposed)(x, tf.tensor(labels, shape.slice(0, -1), 'int32'), ignore), [tf.tensor(xs, shape)], 60 + i));
      const [fused, composed] = [await run(true), await run(false)];
      for (const [k, name] of ['ce', 'dlogits'].entries()) {
        const err = relativeError(fused[k], composed[k]);
        t.true(err < 1e-5, `${JSON.stringify(shape)} ${name}: rel ${err}`);
      }
      // ignored rows: no loss, no gradient
      t.is(fused[0][0], 0);
      t.true(fused[1].subarray(0, K).every((v) => v === 0));
    }
    // against the closed form: logits [0, ln 3] → p = [¼, ¾]; ce at label 1 = ln(4/3), dlogits = [¼, −¼]
    const at = await onBackend(backend, () => valueAndGrads((x) => softmaxCrossEntropy(x, tf.tensor([1], [1], 'int32')), [tf.tensor([[0, Math.log(3)]])], 0));
    t.true(Math.abs(at[0][0] - Math.log(4 / 3)) < 1e-6);
  });
}

test('layerNorm and batchNormTrain refuse a scale or shift that does not match the last axis, naming both sizes', (t) => {
  tf.tidy(() => {
    const err = t.throws(() => layerNorm(tf.zeros([2, 8]), tf.ones([4]) as tf.Tensor1D, tf.zeros([8]) as tf.Tensor1D));
    t.regex(err!.message, /^layerNorm: .*8 values.*got 4 and 8/);
    const bn = t.throws(() => batchNormTrain(tf.zeros([2, 3, 3, 8]), tf.ones([8]) as tf.Tensor1D, tf.zeros([5]) as tf.Tensor1D));
    t.regex(bn!.message, /^batchNormTrain: .*8 values.*got 8 and 5/);
  });
});

test('softmaxCrossEntropy refuses labels whose shape is not the logits\' without the class axis, naming both', (t) => {
  tf.tidy(() => {
    for (const f of [softmaxCrossEntropy, softmaxCrossEntropyComposed]) {
      const err = t.throws(() => f(tf.zeros([2, 4, 4, 19]), tf.zeros([2, 4, 5], 'int32')));
      t.regex(err!.message, /^softmaxCrossEntropy: labels \[2,4,5\] must have the shape of logits \[2,4,4,19\] without its last axis/);
    }
  });
});

test('the fused kernels leave no tensors behind across forward and backward passes', async (t) => {
  await onBackend('wasm', () => {
    const x = tf.variable(tf.tensor(randomArray(2 * 3 * 16, 1), [2, 3, 16]));
    const g = tf.variable(tf.ones([16]));
    const b = tf.variable(tf.zeros([16]));
    const [w, wb, weight] = [tf.variable(tf.ones([16, 1])), tf.variable(tf.zeros([1])), tf.fill([2, 3], 0.5)];
    const step = () => tf.tidy(() => {
      const { grads, value } = tf.variableGrads(() => {
        const h = tf.reshape(gelu(layerNorm(x, g as tf.Tensor1D, b as tf.Tensor1D)), [6, 16]) as tf.Tensor2D;
        const ce = tf.sum(softmaxCrossEntropy(h, tf.tensor1d([0, 3, 255, 15, 1, 2], 'int32')));
        return tf.add(tf.sum(ensembleDot(h, w as tf.Tensor2D, wb as tf.Tensor1D, weight as tf.Tensor2D)), ce) as tf.Scalar;
      });
      value.dataSync();
      tf.dispose(grads);
    });
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) step();
    t.is(tf.memory().numTensors, before);
    tf.dispose([x, g, b, w, wb, weight]);
  });
});

const BN_SHAPES: number[][] = [[2, 6, 5, 8], [1, 3, 3, 1], [7, 33]];

for (const backend of ['wasm', 'cpu']) {
  test(`batchNormTrain's fused kernel and gradient on ${backend} match the composition (y, μ, σ², dx, dγ, dβ)`, async (t) => {
    for (const [i, shape] of BN_SHAPES.entries()) {
      const C = shape[shape.length - 1];
      const n = shape.reduce((a, b) => a * b, 1);
      const xs = randomArray(n, 50 + i).map((v, k) => 2 * v * (1 + (k % C)) - 1 + (k % C));
      // the loss reads y, μ and σ² (running averages differentiate through them only in odd pipelines: covered too)
      const loss = (fused: boolean) => (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
        const r = (fused ? batchNormTrain : batchNormTrainComposed)(x, g as tf.Tensor1D, b as tf.Tensor1D, 1e-5);
        return tf.concat([tf.reshape(r.y, [-1]), r.mean, r.variance]);
      };
      const run = (fused: boolean) => onBackend(backend, () => valueAndGrads(loss(fused),
        [tf.tensor(xs, shape), tf.tensor1d(randomArray(C, 60 + i).map((v) => 1 + v)), tf.tensor1d(randomArray(C, 70 + i))], 80 + i));
      const [fused, composed] = [await run(true), await run(false)];
      ['y ‖ μ ‖ σ²', 'dx', 'dγ', 'dβ'].forEach((name, k) => {
        const err = relativeError(fused[k], composed[k]);
        t.true(err < 1e-4, `${JSON.stringify(shape)} ${name}: rel ${err}`);
      });
    }
  });
}

test('a NaN or ∞ input stays NaN through the fused norms, a relu after them (as through the composition) and a cross-entropy', async (t) => {
  await onBackend('wasm', () => tf.tidy(() => {
    for (const bad of [NaN, Infinity]) {
      const x = tf.tensor4d(Float32Array.from({ length: 2 * 3 * 3 * 4 }, (_, i) => (i === 5 ? bad : i % 7)), [2, 3, 3, 4]);
      const [g, b] = [tf.ones([4]) as tf.Tensor1D, tf.zeros([4]) as tf.Tensor1D];
      for (const [name, y] of [['batchNormTrain', batchNormTrain(x, g, b).y], ['layerNorm', layerNorm(x, g, b)]] as const) {
        const out = tf.relu(y).dataSync();
        t.true(Number.isNaN(out[5]), `${name} with ${bad}: relu(y) at the bad element is ${out[5]}`);
      }
      // a NaN or ∞ logit makes its row's cross-entropy NaN (so a NaN-loss check sees it), not 0 or ∞ − ∞ hidden
      const ce = softmaxCrossEntropy(tf.reshape(x, [18, 4]), tf.zeros([18], 'int32')).dataSync();
      t.true(Number.isNaN(ce[1]) && Number.isFinite(ce[0]), `softmaxCrossEntropy with ${bad}: row 1 gives ${ce[1]}`);
    }
  }));
});

/** [R, H, M, K]: a LIIF-like case, a row tail (H mod 4), rows narrower than a SIMD lane, one row gathered by all. */
const GAR_SHAPES: number[][] = [[12, 16, 70, 2], [5, 6, 33, 3], [3, 3, 4, 1], [1, 8, 9, 2]];

for (const backend of ['wasm', 'cpu']) {
  test(`gatherAffineRelu's fused kernel and gradient on ${backend} match the composition (y, dT, dX, dW), repeated rows included`, async (t) => {
    for (const [i, [R, H, M, K]] of GAR_SHAPES.entries()) {
      const rows = Int32Array.from({ length: M }, (_, m) => (m * 7 + i) % R);
      const run = (fused: boolean) => onBackend(backend, () => {
        const index = tf.tensor1d(rows, 'int32');
        const f = (T: tf.Tensor, X: tf.Tensor, W: tf.Tensor) => (fused ? gatherAffineRelu : gatherAffineReluComposed)(T as tf.Tensor2D, index, X as tf.Tensor2D, W as tf.Tensor2D);
        const out = valueAndGrads(f, [tf.tensor2d(randomArray(R * H, 90 + i), [R, H]), tf.tensor2d(randomArray(M * K, 100 + i), [M, K]),
          tf.tensor2d(randomArray(K * H, 110 + i), [K, H])], 120 + i);
        index.dispose();
        return out;
      });
      const [fused, composed] = [await run(true), await run(false)];
      // about half the pre-activations are negative: the mask must be the composition's
      t.true(composed[0].some((v) => v === 0) && composed[0].some((v) => v > 0));
      ['y', 'dT', 'dX', 'dW'].forEach((name, k) => {
        const err = relativeError(fused[k], composed[k]);
        t.true(err < 1e-5, `${JSON.stringify([R, H, M, K])} ${name}: rel ${err}`);
      });
    }
  });

  test(`gatherAffineRelu on ${backend} refuses an index outside the table, naming it, and a shape that does not fit`, async (t) => {
    await onBackend(backend, () => tf.tidy(() => {
      const [T, X, W] = [tf.ones([4, 8]) as tf.Tensor2D, tf.ones([3, 2]) as tf.Tensor2D, tf.ones([2, 8]) as tf.Tensor2D];
      for (const bad of [4, -1]) {
        const err = t.throws(() => gatherAffineRelu(T, tf.tensor1d([0, bad, 1], 'int32'), X, W));
        t.is(err!.message, `gatherAffineRelu: index[1] = ${bad} is outside the table's 4 rows`);
      }
      const shape = t.throws(() => gatherAffineRelu(T, tf.tensor1d([0, 1], 'int32'), X, W));
      t.regex(shape!.message, /^gatherAffineRelu: needs .*x \[3,2\]/);
    }));
  });
}

/** [M, K, N]: onnxruntime-sized (when routed there), a column tail (N mod 4), one output column (a logit). */
const DENSE_SHAPES: number[][] = [[1500, 64, 64], [37, 5, 7], [300, 16, 1]];

for (const backend of ['wasm', 'cpu']) {
  test(`dense on ${backend} matches the composition's values and gradients (linear and ReLU, with and without bias)`, async (t) => {
    for (const [i, [M, K, N]] of DENSE_SHAPES.entries()) {
      for (const activation of ['relu', 'linear'] as const) {
        for (const withBias of [true, false]) {
          const run = (fused: boolean) => onBackend(backend, () => valueAndGrads(
            (x, w, b) => (fused ? dense : denseComposed)(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D | undefined, activation),
            [tf.tensor2d(randomArray(M * K, 130 + i), [M, K]), tf.tensor2d(randomArray(K * N, 140 + i), [K, N]),
              ...(withBias ? [tf.tensor1d(randomArray(N, 150 + i))] : [])], 160 + i));
          const [fused, composed] = [await run(true), await run(false)];
          ['y', 'dx', 'dw', ...(withBias ? ['db'] : [])].forEach((name, k) => {
            const err = relativeError(fused[k], composed[k]);
            t.true(err < 1e-5, `${JSON.stringify([M, K, N])} ${activation} bias ${withBias} ${name}: rel ${err}`);
          });
        }
      }
    }
  });
}

/** [N, M, K]: a LIIF query's four neighbours and 64 features, a row tail (K mod 4), one group. */
const ED_SHAPES: number[][] = [[4, 300, 64], [4, 37, 7], [1, 5, 3]];

for (const backend of ['wasm', 'cpu']) {
  test(`ensembleDot on ${backend} matches the composition's values and gradients (x, w, b, weight, and pre with its ReLU)`, async (t) => {
    for (const [i, [N, M, K]] of ED_SHAPES.entries()) {
      for (const withPre of [false, true]) {
        const run = (fused: boolean) => onBackend(backend, () => valueAndGrads(
          (x, w, b, weight, pre) => (fused ? ensembleDot : ensembleDotComposed)(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D, weight as tf.Tensor2D, pre as tf.Tensor1D | undefined),
          [tf.tensor2d(randomArray(N * M * K, 170 + i), [N * M, K]), tf.tensor2d(randomArray(K, 180 + i), [K, 1]), tf.tensor1d(randomArray(1, 190 + i)),
            tf.tensor2d(randomArray(N * M, 200 + i), [N, M]), ...(withPre ? [tf.tensor1d(randomArray(K, 220 + i))] : [])], 210 + i));
        const [fused, composed] = [await run(true), await run(false)];
        ['s', 'dx', 'dw', 'db', 'dweight', ...(withPre ? ['dpre'] : [])].forEach((name, k) => {
          const err = relativeError(fused[k], composed[k]);
          t.true(err < 1e-5, `${JSON.stringify([N, M, K])} pre ${withPre} ${name}: rel ${err}`);
        });
      }
    }
  });
}

test('ensembleDot refuses shapes that do not fit, naming them', (t) => {
  tf.tidy(() => {
    const err = t.throws(() => ensembleDot(tf.ones([4, 8]) as tf.Tensor2D, tf.ones([8, 1]) as tf.Tensor2D, tf.ones([1]) as tf.Tensor1D, tf.ones([2, 3]) as tf.Tensor2D));
    t.regex(err!.message, /^ensembleDot: needs x \[N·M, K\].*x \[4,8\].*weight \[2,3\]/);
    const pre = t.throws(() => ensembleDot(tf.ones([6, 8]) as tf.Tensor2D, tf.ones([8, 1]) as tf.Tensor2D, tf.ones([1]) as tf.Tensor1D, tf.ones([2, 3]) as tf.Tensor2D, tf.ones([7]) as tf.Tensor1D));
    t.regex(pre!.message, /pre \[7\]$/);
  });
});

test('dense refuses shapes that do not chain and an unknown activation, naming them', (t) => {
  tf.tidy(() => {
    t.regex(t.throws(() => dense(tf.zeros([4, 3]), tf.zeros([2, 5])))!.message, /^dense: needs .*x \[4,3\], w \[2,5\]/);
    t.regex(t.throws(() => dense(tf.zeros([4, 3]), tf.zeros([3, 5]), tf.zeros([4])))!.message, /bias \[4\]/);
    t.regex(t.throws(() => dense(tf.zeros([4, 3]), tf.zeros([3, 5]), undefined, 'gelu' as never))!.message, /activation 'gelu'/);
  });
});
