import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend, Rng, type RectifierSourceSide, type StepContext } from '@ir2f/core';
import { denseKernelCalls } from '@ir2f/runtime';
import { InrRectifier } from '@ir2f/plugin-inr-rectifier';

// one onnxruntime thread, as each of the two training replicas runs: the calibration's value and gradient are one graph there
test.before(async () => {
  await initBackend('wasm', { wasmThreads: 1 });
});

const [B, h, w, E, K, H, W] = [2, 8, 10, 6, 4, 32, 40];
const ctx = { step: 0, training: true, rng: new Rng('ctx') } as unknown as StepContext;

/** A source side whose teacher is right on about a quarter of the pixels, with every seventh pixel unlabelled (255). */
function sourceSide(seed: number): RectifierSourceSide {
  const rng = new Rng(seed);
  const labelsArr = Int32Array.from({ length: B * H * W }, (_, i) => (i % 7 === 3 ? 255 : Math.floor(rng.uniform(0, K))));
  return tf.tidy(() => ({
    features: tf.tensor4d(rng.normalArray(B * h * w * E), [B, h, w, E]),
    logProbs: tf.logSoftmax(tf.tensor4d(rng.normalArray(B * h * w * K), [B, h, w, K])) as tf.Tensor4D,
    teacherProbs: tf.softmax(tf.tensor4d(rng.normalArray(B * H * W * K), [B, H, W, K])) as tf.Tensor4D,
    labels: tf.tensor3d(labelsArr, [B, H, W], 'int32'),
  }));
}

/** §5.1.6 by its definition, from r on the label grid: the mean BCE over labelled pixels, times λ. */
function referenceLoss(rect: InrRectifier, src: RectifierSourceSide, lambda: number): tf.Scalar {
  return tf.tidy(() => {
    const r = rect.rectifyGrid(src.features, src.logProbs!, H, W);
    const valid = tf.cast(tf.notEqual(src.labels, 255), 'float32');
    const correct = tf.cast(tf.equal(tf.argMax(src.teacherProbs, 3), src.labels), 'float32');
    const nll = tf.neg(tf.add(tf.mul(correct, tf.log(r)), tf.mul(tf.sub(1, correct), tf.log(tf.sub(1, r)))));
    return tf.mul(tf.div(tf.sum(tf.mul(nll, valid)), tf.sum(valid)), lambda) as tf.Scalar;
  });
}

/** A loss's value and its gradients w.r.t. ψ, as arrays. */
function valueAndGrads(rect: InrRectifier, loss: () => tf.Scalar): Float32Array[] {
  return tf.tidy(() => {
    const { value, grads } = tf.variableGrads(loss, rect.variables as tf.Variable[]);
    return [value, ...rect.variables.map((v) => grads[v.name])].map((t) => t.dataSync() as Float32Array);
  });
}

const relErr = (a: Float32Array, b: Float32Array) => {
  let [num, den] = [0, 0];
  a.forEach((v, i) => {
    num += (v - b[i]) ** 2;
    den += b[i] ** 2;
  });
  return Math.sqrt(num / Math.max(den, 1e-30));
};

test.serial('the calibration loss is §5.1.6\'s mean BCE over labelled pixels, its value and ψ\'s gradient from one onnxruntime graph', (t) => {
  const src = sourceSide(1);
  // whole; chunked with one chunk per image (B·H·W above the chunk size, H·W not); in chunks of 500 queries per image
  for (const chunkSize of [65536, 2000, 500]) {
    const rect = new InrRectifier({ calibrationWeight: 0.7, chunkSize, seed: 2 }, { embeddingChannels: E, numClasses: K });
    // a first step caches the label grid's query geometry
    valueAndGrads(rect, () => rect.auxLoss!(src, ctx));
    const before = tf.memory().numTensors;
    const calls = denseKernelCalls().Ir2fEnsembleMlpBce ?? 0;
    const fused = valueAndGrads(rect, () => rect.auxLoss!(src, ctx));
    // one graph a chunk
    t.is((denseKernelCalls().Ir2fEnsembleMlpBce ?? 0) - calls, chunkSize > B * H * W ? 1 : Math.ceil((H * W) / chunkSize));
    t.is(tf.memory().numTensors, before, 'no tensor left behind');
    const reference = valueAndGrads(rect, () => referenceLoss(rect, src, 0.7));
    t.true(fused[0][0] > 0.3 && fused[0][0] < 1.5, `a BCE near log 2 at initialisation: ${fused[0][0]}`);
    fused.forEach((g, k) => t.true(relErr(g, reference[k]) < 1e-4, `chunk ${chunkSize}, ${k ? rect.variables[k - 1].name : 'value'}: rel ${relErr(g, reference[k])}`));
    // every part of ψ learns from it (the cell weights included: the label grid is not the latent one)
    fused.slice(1).forEach((g, k) => t.true(g.some((v) => v !== 0), `${rect.variables[k].name} has a gradient`));
    rect.dispose();
  }
  tf.dispose(Object.values(src));
});

test.serial('the calibration loss ignores unlabelled pixels: relabelling them changes it, masking them again restores it, none labelled gives 0', (t) => {
  const src = sourceSide(3);
  const rect = new InrRectifier({ seed: 4 }, { embeddingChannels: E, numClasses: K });
  const loss = (s: RectifierSourceSide) => tf.tidy(() => rect.auxLoss!(s, ctx).dataSync()[0]);
  const base = loss(src);
  const ignored = tf.equal(src.labels, 255);
  const relabelled = { ...src, labels: tf.where(ignored, tf.zerosLike(src.labels), src.labels) as tf.Tensor3D };
  const unlabelled = { ...src, labels: tf.fill([B, H, W], 255, 'int32') as tf.Tensor3D };
  t.not(loss(relabelled), base);
  const masked = { ...relabelled, labels: tf.where(ignored, tf.fill([B, H, W], 255, 'int32'), relabelled.labels) as tf.Tensor3D };
  t.is(loss(masked), base);
  t.is(loss(unlabelled), 0);
  tf.dispose([ignored, relabelled.labels, unlabelled.labels, masked.labels, ...Object.values(src)]);
  rect.dispose();
});
