import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { denseKernelCalls, ensembleMlp, ensembleMlpComposed, initBackend, type MlpLayer } from '@ir2f/runtime';
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

test('ensembleMlp refuses shapes that do not chain, naming them', (t) => {
  tf.tidy(() => {
    const p = inputs(CASES[1], 3);
    const err = t.throws(() => ensembleMlp(p.table, p.index, p.x, tf.ones([3, 8]) as tf.Tensor2D, p.layers, p.out, p.weight));
    t.regex(err!.message, /^ensembleMlp: needs .*wx \[3,8\]/);
  });
});
