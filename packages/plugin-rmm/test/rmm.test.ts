import test from 'ava';
/** v1, the label mixture (DESIGN §5.2 v1: `formulation: 'label-mixture'`); v2 is tested in loss-mixture.test.ts. */
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
  const loss = new RmmLoss({ formulation: 'label-mixture', lambda: 0.7 });
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

test('r from its logit: the same loss as from r in the open range, finite and exact where r rounds to 0 or 1, r_min honoured', (t) => {
  const rng = new Rng(9);
  const n = 12;
  const logits = tf.tensor4d(rng.normalArray(n * K), [1, 1, n, K]);
  const labels = tf.tensor3d(Array.from({ length: n }, (_, i) => i % K), [1, 1, n], 'int32');
  const s = tf.tensor3d(Array.from({ length: n }, () => rng.uniform(-4, 4)), [1, 1, n]);
  const r = tf.sigmoid(s) as tf.Tensor3D;
  const fromR = rmmTerms(logits, labels, r).nll.dataSync();
  const fromLogit = rmmTerms(logits, labels, r, { logit: s }).nll.dataSync();
  fromR.forEach((v, i) => t.true(Math.abs(v - fromLogit[i]) < 1e-5, `pixel ${i}`));
  // s = ±60: σ(s) is exactly 0 or 1 in float32; the logit path still gives −log(p + e^{−60}(1/K − p)) etc.
  const sx = tf.tensor3d([60, -60, 60, -60], [1, 1, 4]);
  const lx = tf.tensor4d([3, 0, 0, 3, 0, 0, -3, 0, 0, -3, 0, 0], [1, 1, 4, K]);
  const yx = tf.tensor3d([0, 0, 0, 0], [1, 1, 4], 'int32');
  const nll = rmmTerms(lx, yx, tf.sigmoid(sx) as tf.Tensor3D, { logit: sx }).nll.dataSync();
  const p0 = softmax([3, 0, 0])[0];
  const p1 = softmax([-3, 0, 0])[0];
  t.true(Math.abs(nll[0] + Math.log(p0)) < 1e-5 && Math.abs(nll[1] - Math.log(K)) < 1e-5, `${nll[0]}, ${nll[1]}`);
  t.true(Math.abs(nll[2] + Math.log(p1)) < 1e-5 && Math.abs(nll[3] - Math.log(K)) < 1e-5, `${nll[2]}, ${nll[3]}`);
  const [gz, gs] = tf.grads((z: tf.Tensor, ss: tf.Tensor) => tf.sum(rmmTerms(z as tf.Tensor4D, yx, tf.sigmoid(ss) as tf.Tensor3D, { logit: ss as tf.Tensor3D }).nll))([lx, sx]);
  t.true([...gz.dataSync(), ...gs.dataSync()].every(Number.isFinite));
  // the floor: r' = max(r, r_min)
  const floored = rmmTerms(lx, yx, tf.sigmoid(sx) as tf.Tensor3D, { logit: sx, rMin: 0.2 }).nll.dataSync();
  t.true(Math.abs(floored[1] + Math.log(0.2 * p0 + 0.8 / K)) < 1e-5, `${floored[1]}`);
});

test('teacher-rest noise: N = Σ_{k≠ŷ} p_φ(k) p_θ(k) / (1 − p_φ(ŷ)) by hand, and the uniform noise as its special case', (t) => {
  const studentLogits = [[1, 0, -1], [0.2, 0.4, 2]];
  const teacher = [[0.6, 0.3, 0.1], [0.2, 0.1, 0.7]];
  const yhat = [0, 2];
  const r = [0.7, 0.4];
  const terms = rmmTerms(tf.tensor4d(studentLogits.flat(), [1, 1, 2, K]), tf.tensor3d(yhat, [1, 1, 2], 'int32'), tf.tensor3d(r, [1, 1, 2]),
    { noise: { kind: 'teacher-rest', teacherProbs: tf.tensor4d(teacher.flat(), [1, 1, 2, K]) } });
  const nll = terms.nll.dataSync();
  const gamma = terms.gamma.dataSync();
  studentLogits.forEach((z, i) => {
    const p = softmax(z);
    const N = p.reduce((acc, pk, k) => acc + (k === yhat[i] ? 0 : teacher[i][k] * pk), 0) / (1 - teacher[i][yhat[i]]);
    const P = r[i] * p[yhat[i]] + (1 - r[i]) * N;
    t.true(Math.abs(nll[i] + Math.log(P)) < 1e-5, `pixel ${i}: ${nll[i]} vs ${-Math.log(P)}`);
    t.true(Math.abs(gamma[i] - r[i] * p[yhat[i]] / P) < 1e-5);
  });
  // a teacher certain of ŷ (the rest all 0): the rest is uniform over the other classes, no NaN
  const certain = rmmTerms(tf.tensor4d([0, 0, 0], [1, 1, 1, K]), tf.tensor3d([1], [1, 1, 1], 'int32'), tf.tensor3d([0.5], [1, 1, 1]),
    { noise: { kind: 'teacher-rest', teacherProbs: tf.tensor4d([0, 1, 0], [1, 1, 1, K]) } }).nll.dataSync()[0];
  t.true(Number.isFinite(certain) && Math.abs(certain - Math.log(K)) < 1e-5, `${certain}`);
  // uniform noise = teacher-rest over the rest classes when the student is uniform on them (N = p = 1/K)
  const uni = rmmTerms(tf.zeros([1, 1, 1, K]) as tf.Tensor4D, tf.tensor3d([0], [1, 1, 1], 'int32'), tf.tensor3d([0.3], [1, 1, 1])).nll.dataSync()[0];
  const rest = rmmTerms(tf.zeros([1, 1, 1, K]) as tf.Tensor4D, tf.tensor3d([0], [1, 1, 1], 'int32'), tf.tensor3d([0.3], [1, 1, 1]),
    { noise: { kind: 'teacher-rest', teacherProbs: tf.tensor4d([0.5, 0.4, 0.1], [1, 1, 1, K]) } }).nll.dataSync()[0];
  t.true(Math.abs(uni - rest) < 1e-6 && Math.abs(uni - Math.log(K)) < 1e-6);
  // as an option, the loss asks the trainer for the teacher's probabilities and refuses to run without them
  const loss = new RmmLoss({ formulation: 'label-mixture', noise: 'teacher-rest' });
  t.true(loss.usesTeacherProbs);
  t.false(new RmmLoss().usesTeacherProbs ?? false);
  const err = t.throws(() => loss.compute({
    studentLogits: tf.zeros([1, 2, 2, K]) as tf.Tensor4D,
    target: { labels: tf.zeros([1, 2, 2], 'int32') as tf.Tensor3D, weight: tf.ones([1, 2, 2]) as tf.Tensor3D },
    rectified: { labels: tf.zeros([1, 2, 2], 'int32') as tf.Tensor3D, weight: tf.ones([1, 2, 2]) as tf.Tensor3D, rectification: tf.fill([1, 2, 2], 0.5) },
  }, { step: 0, training: true, rng: new Rng(0) }));
  t.regex(err!.message, /teacher-rest.*teacherProbs/);
});

test('as a plugin (v1): binds Loss (one per pipeline) and reports γ, r and L_RMM', (t) => {
  const bus = new RxEventBus();
  const p = createPipeline({ require: ['Loss'], eventBus: bus, plugins: [rmm({ formulation: 'label-mixture', lambda: 0.5 })] });
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
