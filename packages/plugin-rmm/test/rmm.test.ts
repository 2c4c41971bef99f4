import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { createPipeline, initBackend, ofType, Rng, RxEventBus, Tokens, type EventOf } from '@ir2f/core';
import { rmm, RmmLoss, rmmTerms } from '@ir2f/plugin-rmm';

test.before(async () => {
  await initBackend('wasm');
});

const K = 3;
const softmax = (z: number[]) => {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

test('the loss equals a hand computation on a 2×2 fixture (source pixel CE, target pixels −log(r·p + (1−r)/K), ignore)', (t) => {
  const logits = [[2, 0, -1], [0.5, 0.2, 0.1], [-1, 3, 0], [0, 0, 4]];
  const labels = [0, 2, 1, 255];
  const r = [0.9, 0.3, 0.6, 0.5];
  const source = [1, 0, 0, 0];
  const loss = new RmmLoss({ lambda: 0.7 });
  const out = loss.compute({
    studentLogits: tf.tensor4d(logits.flat(), [1, 2, 2, K]),
    target: { labels: tf.tensor3d(labels, [1, 2, 2], 'int32'), weight: tf.ones([1, 2, 2]) as tf.Tensor3D },
    rectified: { labels: tf.tensor3d(labels, [1, 2, 2], 'int32'), weight: tf.ones([1, 2, 2]) as tf.Tensor3D, rectification: tf.tensor3d(r, [1, 2, 2]) },
    sourceMask: tf.tensor3d(source, [1, 2, 2]),
  }, { step: 0, training: true, rng: new Rng(0) });
  const p = logits.map(softmax);
  const ce = -Math.log(p[0][0]) / 4; // the one source pixel, mean over all 4 pixels
  // target pixels 1 and 2 (pixel 3 is ignored), mean over the 2 kept
  const nll = [1, 2].map((i) => -Math.log(r[i] * p[i][labels[i]] + (1 - r[i]) / K));
  const rmmValue = (nll[0] + nll[1]) / 2;
  t.true(Math.abs(out.parts.mixSource.dataSync()[0] - ce) < 1e-6);
  t.true(Math.abs(out.parts.rmm.dataSync()[0] - rmmValue) < 1e-6);
  t.true(Math.abs(out.total.dataSync()[0] - (ce + 0.7 * rmmValue)) < 1e-6);
});

test('its gradient w.r.t. the student logits is γ-weighted cross-entropy\'s (1e-5); w.r.t. r it has the sign of p(ŷ) − 1/K', (t) => {
  const rng = new Rng(4);
  const n = 40;
  const logits = tf.tensor4d(rng.normalArray(n * K).map((v) => 2 * v), [1, 1, n, K]);
  const labels = tf.tensor3d(Array.from({ length: n }, (_, i) => i % K), [1, 1, n], 'int32');
  const r = tf.tensor3d(Array.from({ length: n }, () => rng.uniform(0.05, 0.95)), [1, 1, n]);
  const dLogits = tf.grad((z: tf.Tensor) => tf.sum(rmmTerms(z as tf.Tensor4D, labels, r).nll))(logits);
  const { gamma } = rmmTerms(logits, labels, r);
  const weightedCe = tf.tidy(() => tf.mul(tf.expandDims(gamma, 3), tf.sub(tf.softmax(logits), tf.oneHot(labels, K))));
  const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(dLogits, weightedCe))).dataSync()[0]);
  t.true(diff < 1e-5, `max difference ${diff}`);
  const dR = tf.grad((rr: tf.Tensor) => tf.sum(tf.neg(rmmTerms(logits, labels, rr as tf.Tensor3D).nll)))(r).dataSync();
  const p = tf.tidy(() => tf.sum(tf.mul(tf.softmax(logits), tf.oneHot(labels, K)), 3).dataSync());
  for (let i = 0; i < n; i++) t.is(Math.sign(dR[i]), Math.sign(p[i] - 1 / K), `pixel ${i}: d log P / dr = ${dR[i]}, p = ${p[i]}`);
});

test('no NaN for p or r at 0 or 1', (t) => {
  const logits = tf.tensor4d([50, -50, 0, -50, 50, 0, 50, -50, 0, 0, 0, 0], [1, 1, 4, K]);
  const labels = tf.tensor3d([0, 0, 1, 2], [1, 1, 4], 'int32');
  for (const rv of [0, 1, 0.5]) {
    const r = tf.fill([1, 1, 4], rv) as tf.Tensor3D;
    const f = (z: tf.Tensor, rr: tf.Tensor) => tf.sum(rmmTerms(z as tf.Tensor4D, labels, rr as tf.Tensor3D).nll);
    const [gz, gr] = tf.grads(f)([logits, r]);
    const value = f(logits, r).dataSync()[0];
    t.true(Number.isFinite(value), `loss at r = ${rv}`);
    t.true([...gz.dataSync(), ...gr.dataSync()].every(Number.isFinite), `gradients at r = ${rv}`);
  }
});

test('as a plugin: binds Loss (one per pipeline) and reports γ, r and L_RMM', (t) => {
  const bus = new RxEventBus();
  const p = createPipeline({ require: ['Loss'], eventBus: bus, plugins: [rmm({ lambda: 0.5 })] });
  const loss = p.resolve(Tokens.Loss);
  t.true(loss instanceof RmmLoss);
  t.is(p.resolve(Tokens.Loss), loss);
  const events: EventOf<'rmm'>[] = [];
  bus.events$.pipe(ofType('rmm')).subscribe((e) => events.push(e));
  loss.compute({
    studentLogits: tf.zeros([1, 2, 2, K]) as tf.Tensor4D,
    target: { labels: tf.zeros([1, 2, 2], 'int32') as tf.Tensor3D, weight: tf.ones([1, 2, 2]) as tf.Tensor3D },
    rectified: { labels: tf.zeros([1, 2, 2], 'int32') as tf.Tensor3D, weight: tf.ones([1, 2, 2]) as tf.Tensor3D, rectification: tf.fill([1, 2, 2], 0.5) },
  }, { step: 6, training: true, rng: new Rng(0) });
  t.is(events.length, 1);
  t.is(events[0].step, 7);
  // uniform student: p = 1/K, so γ = r = 0.5 and P = 1/K
  t.true(Math.abs(events[0].meanGamma - 0.5) < 1e-6 && Math.abs(events[0].meanR - 0.5) < 1e-6);
  t.true(Math.abs(events[0].loss - Math.log(K)) < 1e-5);
  t.throws(() => rmm({ lambda: -1 }), { message: /lambda/ });
});
