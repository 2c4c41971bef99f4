import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import {
  denseKernelCalls, ensembleMlp, ensembleMlpBce, ensembleMlpBceComposed, ensembleMlpComposed, initBackend, type MlpLayer,
} from '@ir2f/runtime';
import { denseRuntime, setDenseRuntime } from '../src/kernels/ort-dense-kernels.js';
import { OrtKernelRuntime } from '../src/kernels/ort-runtime.js';
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

/** `f` with the dense kernels on an onnxruntime of `threads` threads (the backend's own put back after). */
async function withOrtThreads(threads: number, f: () => Promise<void>): Promise<void> {
  const own = denseRuntime();
  const rt = OrtKernelRuntime.load(threads);
  if (typeof rt === 'string') throw new Error(rt);
  setDenseRuntime(rt);
  try {
    await f();
  } finally {
    setDenseRuntime(own);
  }
}

/** The gradients of Σ sin(q)·s_q w.r.t. every float input of `f`, in customGrad's order. */
function inputGrads(f: typeof ensembleMlp, p: ReturnType<typeof inputs>, Q: number): Float32Array[] {
  return tf.tidy(() => tf.grads((...a: tf.Tensor[]) => {
    const [table, x, wx, wOut, bOut, weight, ...ws] = a;
    const layers = p.layers.map((_, k) => ({ w: ws[2 * k] as tf.Tensor2D, b: ws[2 * k + 1] as tf.Tensor1D }));
    // a loss whose ds varies by query and sign
    const s = f(table as tf.Tensor2D, p.index, x as tf.Tensor3D, wx as tf.Tensor2D, layers, { w: wOut as tf.Tensor2D, b: bOut as tf.Tensor1D }, weight as tf.Tensor2D);
    return tf.sum(tf.mul(s, tf.sin(tf.range(0, Q))));
  })([p.table, p.x, p.wx, p.out.w, p.out.b, p.weight, ...p.layers.flatMap((l) => [l.w, l.b])]).map((g) => g.dataSync() as Float32Array));
}

const disposeInputs = (p: ReturnType<typeof inputs>) => tf.dispose([p.table, p.index, p.x, p.wx, p.weight, p.out.w, p.out.b, ...p.layers.flatMap((l) => [l.w, l.b])]);

for (const backend of ['wasm', 'cpu']) {
  test.serial(`ensembleMlp under a gradient tape on ${backend}, one thread: the tiled gradient graph matches the composition's gradients for every input`, async (t) => {
    await withOrtThreads(1, () => onBackend(backend, () => {
      for (const [i, c] of CASES.entries()) {
        const p = inputs(c, 60 + i);
        const before = tf.memory().numTensors;
        const calls = denseKernelCalls().Ir2fEnsembleMlpGrad ?? 0;
        const [fused, composed] = [inputGrads(ensembleMlp, p, c[4]), inputGrads(ensembleMlpComposed, p, c[4])];
        t.is(denseKernelCalls().Ir2fEnsembleMlpGrad, calls + 1, `${JSON.stringify(c)}: the gradient ran on onnxruntime`);
        t.is(tf.memory().numTensors, before);
        fused.forEach((g, k) => {
          t.is(g.length, composed[k].length);
          t.true(relativeError(g, composed[k]) < 1e-4, `${JSON.stringify(c)} input ${k}: rel ${relativeError(g, composed[k])}`);
        });
        t.true(fused[0].some((v) => v !== 0));
        disposeInputs(p);
      }
    }));
  });
}

test.serial('ensembleMlp under a gradient tape on two onnxruntime threads runs the composition (the graph\'s small ops would wake the pool)', async (t) => {
  await withOrtThreads(2, () => onBackend('wasm', () => {
    const p = inputs(CASES[0], 7);
    const calls = denseKernelCalls().Ir2fEnsembleMlpGrad ?? 0;
    const [a, b] = [inputGrads(ensembleMlp, p, CASES[0][4]), inputGrads(ensembleMlpComposed, p, CASES[0][4])];
    a.forEach((g, i) => t.deepEqual(g, b[i]));
    t.is(denseKernelCalls().Ir2fEnsembleMlpGrad ?? 0, calls);
    disposeInputs(p);
  }));
});

/** A BCE's data for Q queries: targets 0, 1 and soft; a scale of 0 on every fifth query (an ignored pixel), else 1/Q. */
function bceData(Q: number, seed: number): [tf.Tensor1D, tf.Tensor1D] {
  const u = randomArray(Q, seed);
  const target = tf.tensor1d(Float32Array.from(u, (v, i) => (i % 3 === 2 ? (v + 1) / 2 : v > 0 ? 1 : 0)));
  const scale = tf.tensor1d(Float32Array.from({ length: Q }, (_, i) => (i % 5 === 4 ? 0 : 1 / Q)));
  return [target, scale];
}

/** 2.5 × `f`'s loss (an incoming gradient other than 1) and its gradients w.r.t. table, wx, wOut, bOut, w0, b0, …. */
function bceValueAndGrads(f: typeof ensembleMlpBce, p: ReturnType<typeof inputs>, target: tf.Tensor1D, scale: tf.Tensor1D): Float32Array[] {
  return tf.tidy(() => {
    const { value, grads } = tf.valueAndGrads((...a: tf.Tensor[]) => {
      const [table, wx, wOut, bOut, ...ws] = a;
      const layers = p.layers.map((_, k) => ({ w: ws[2 * k] as tf.Tensor2D, b: ws[2 * k + 1] as tf.Tensor1D }));
      return tf.mul(f(table as tf.Tensor2D, p.index, p.x, wx as tf.Tensor2D, layers, { w: wOut as tf.Tensor2D, b: bOut as tf.Tensor1D }, p.weight, target, scale), 2.5) as tf.Scalar;
    })([p.table, p.wx, p.out.w, p.out.b, ...p.layers.flatMap((l) => [l.w, l.b])]);
    return [value, ...grads].map((g) => g.dataSync() as Float32Array);
  });
}

for (const backend of ['wasm', 'cpu']) {
  test.serial(`ensembleMlpBce under a gradient tape on ${backend}, one thread: one graph gives the value and gradients of the composition`, async (t) => {
    await withOrtThreads(1, () => onBackend(backend, () => {
      for (const [i, c] of CASES.entries()) {
        const p = inputs(c, 80 + i);
        const [target, scale] = bceData(c[4], 90 + i);
        const before = tf.memory().numTensors;
        const calls = denseKernelCalls();
        const fused = bceValueAndGrads(ensembleMlpBce, p, target, scale);
        const after = denseKernelCalls();
        t.is(after.Ir2fEnsembleMlpBce, (calls.Ir2fEnsembleMlpBce ?? 0) + 1, `${JSON.stringify(c)}: value and gradient ran on onnxruntime`);
        // the MLP's forward ran once, inside that graph
        t.is(after.Ir2fEnsembleMlp ?? 0, calls.Ir2fEnsembleMlp ?? 0);
        t.is(tf.memory().numTensors, before);
        const composed = bceValueAndGrads(ensembleMlpBceComposed, p, target, scale);
        fused.forEach((g, k) => {
          t.is(g.length, composed[k].length);
          t.true(relativeError(g, composed[k]) < 1e-4, `${JSON.stringify(c)} output ${k}: rel ${relativeError(g, composed[k])}`);
        });
        t.true(fused[1].some((v) => v !== 0));
        disposeInputs(p);
        tf.dispose([target, scale]);
      }
    }));
  });
}

test.serial('ensembleMlpBce without a tape, or on two onnxruntime threads, is the composition\'s value', async (t) => {
  const check = () => onBackend('wasm', () => {
    const p = inputs(CASES[0], 8);
    const [target, scale] = bceData(CASES[0][4], 9);
    const calls = denseKernelCalls().Ir2fEnsembleMlpBce ?? 0;
    const plain = tf.tidy(() => ensembleMlpBce(p.table, p.index, p.x, p.wx, p.layers, p.out, p.weight, target, scale).dataSync()[0]);
    const reference = tf.tidy(() => ensembleMlpBceComposed(p.table, p.index, p.x, p.wx, p.layers, p.out, p.weight, target, scale).dataSync()[0]);
    t.true(Math.abs(plain - reference) < 1e-5 * Math.abs(reference), `${plain} vs ${reference}`);
    const [a, b] = [bceValueAndGrads(ensembleMlpBce, p, target, scale), bceValueAndGrads(ensembleMlpBceComposed, p, target, scale)];
    a.forEach((g, k) => t.true(relativeError(g, b[k]) < 1e-4));
    disposeInputs(p);
    tf.dispose([target, scale]);
    return calls;
  });
  await withOrtThreads(2, async () => {
    const calls = await check();
    t.is(denseKernelCalls().Ir2fEnsembleMlpBce ?? 0, calls);
  });
  await withOrtThreads(1, async () => {
    await check();
  });
});

test('ensembleMlp refuses shapes that do not chain, naming them', (t) => {
  tf.tidy(() => {
    const p = inputs(CASES[1], 3);
    const err = t.throws(() => ensembleMlp(p.table, p.index, p.x, tf.ones([3, 8]) as tf.Tensor2D, p.layers, p.out, p.weight));
    t.regex(err!.message, /^ensembleMlp: needs .*wx \[3,8\]/);
  });
});

test('ensembleMlpBce refuses a target that is not one per query, naming it', (t) => {
  tf.tidy(() => {
    const p = inputs(CASES[1], 3);
    const err = t.throws(() => ensembleMlpBce(p.table, p.index, p.x, p.wx, p.layers, p.out, p.weight, tf.zeros([5]) as tf.Tensor1D, tf.zeros([1024]) as tf.Tensor1D));
    t.regex(err!.message, /^ensembleMlpBce: needs float32 target and scale \[1024\].*target \[5\]/);
  });
});
