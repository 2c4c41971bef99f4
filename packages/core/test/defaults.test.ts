import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import {
  ClassMix, classMixMask, ConfidencePseudoLabeler, ConfidenceRectifier, confidenceRectifier, createPipeline, emaAlpha, emaUpdate, gaussianBlur,
  initBackend, redistributeWeight, Rng, Tokens, WeightedCrossEntropy,
} from '@ir2f/core';

test.before(async () => {
  await initBackend('wasm');
});

const ctx = (seed: number) => ({ step: 1, training: true, rng: new Rng(seed) });

test('confidence pseudo-labels: argmax labels, one quality weight per batch, ignored border rows', (t) => {
  // 1×2×4 pixels, 2 classes; max probabilities 0.99, 0.6, 0.97, 0.5 | 0.98, 0.7, 0.2, 0.99
  const p0 = [0.99, 0.6, 0.97, 0.5, 0.98, 0.7, 0.2, 0.99];
  const probs = tf.tensor4d(p0.flatMap((p, i) => (i % 3 === 0 ? [p, 1 - p] : [1 - p, p])), [1, 2, 4, 2]);
  const out = new ConfidencePseudoLabeler().label(probs);
  t.deepEqual([...out.labels.dataSync()], [0, 1, 1, 0, 1, 1, 1, 1]);
  // above 0.968: 0.99, 0.97, 0.98, 0.99 (0.2 → class 1 at 0.8 is not) → 4 of 8
  t.deepEqual([...out.weight.dataSync()], new Array(8).fill(0.5));
  const bottom = new ConfidencePseudoLabeler({ ignoreBottom: 1 }).label(probs);
  t.deepEqual([...bottom.weight.dataSync()], [0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0]);
  t.throws(() => new ConfidencePseudoLabeler({ threshold: 1.5 }));
});

test('weighted cross-entropy equals a hand-computed value on a 2×2 fixture (ignore contributes 0)', (t) => {
  const logits = tf.tensor4d([2, 0, 0, 1, 1, 1, 0, 3], [1, 2, 2, 2]);
  const labels = tf.tensor3d([0, 1, 255, 0], [1, 2, 2], 'int32');
  const weight = tf.tensor3d([1, 0.5, 1, 2], [1, 2, 2]);
  const { total, parts } = new WeightedCrossEntropy().compute({ studentLogits: logits, target: { labels, weight } });
  const ce = (z: number[], y: number) => Math.log(z.reduce((a, v) => a + Math.exp(v), 0)) - z[y];
  const expected = (1 * ce([2, 0], 0) + 0.5 * ce([0, 1], 1) + 0 + 2 * ce([0, 3], 0)) / 4;
  t.true(Math.abs(total.dataSync()[0] - expected) < 1e-6);
  t.is(parts.ce, total);
});

test('ClassMix mask: ⌈n/2⌉ of the present classes by score, never absent or ignored ones', (t) => {
  // classes present: 0, 2, 5 (and 255); scores: class 5 lowest, then 0, then 2
  const labels = tf.tensor3d([0, 0, 2, 5, 255, 2], [1, 2, 3], 'int32');
  const scores = tf.tensor2d([[0.5, 0.1, 0.9, 0.05, 0.2, 0.3]], [1, 6]);
  t.deepEqual([...classMixMask(labels, scores, 6).dataSync()], [1, 1, 0, 1, 0, 0]);
  const one = tf.tensor3d([3, 3, 255, 3], [1, 2, 2], 'int32');
  t.deepEqual([...classMixMask(one, tf.tensor2d([[0, 0, 0, 0.4, 0, 0]]), 6).dataSync()], [1, 1, 0, 1]);
});

test('ClassMix pastes source pixels with weight 1 (r = 1, teacher probabilities one-hot) and keeps target pixels, weights, r and probabilities elsewhere', (t) => {
  const B = 2;
  const H = 8;
  const W = 8;
  const rng = new Rng(1);
  const srcLabels = tf.tensor3d(Array.from({ length: B * H * W }, (_, i) => (i % 7 < 3 ? 1 : i % 7 < 5 ? 4 : 9)), [B, H, W], 'int32');
  const source = { image: tf.tensor4d(rng.normalArray(B * H * W * 3), [B, H, W, 3]), labels: srcLabels };
  const target = {
    image: tf.tensor4d(rng.normalArray(B * H * W * 3), [B, H, W, 3]),
    labels: tf.fill([B, H, W], 7, 'int32') as tf.Tensor3D,
    weight: tf.fill([B, H, W], 0.3) as tf.Tensor3D,
    rectification: tf.fill([B, H, W], 0.6) as tf.Tensor3D,
    rectificationLogit: tf.fill([B, H, W], Math.log(0.6 / 0.4)) as tf.Tensor3D,
    probs: tf.tensor4d(Array.from({ length: B * H * W * 19 }, (_, i) => (i % 19) / 171), [B, H, W, 19]),
    quality: tf.fill([B, H, W], 0.25) as tf.Tensor3D,
  };
  const mixer = new ClassMix({ numClasses: 19, blur: false, colorJitterThreshold: 1 });
  const a = mixer.mix(source, target, ctx(3));
  const b = mixer.mix(source, target, ctx(3));
  t.deepEqual([...a.sourceMask.dataSync()], [...b.sourceMask.dataSync()]);
  const m = a.sourceMask.dataSync();
  const lab = a.labels.dataSync();
  const w = a.weight.dataSync();
  const img = a.image.dataSync();
  const s = source.image.dataSync();
  const g = target.image.dataSync();
  const sl = srcLabels.dataSync();
  const [r, logit, probs, q] = [a.rectification!.dataSync(), a.rectificationLogit!.dataSync(), a.probs!.dataSync(), a.quality!.dataSync()];
  let pasted = 0;
  for (let i = 0; i < m.length; i++) {
    const p = Array.from(probs.slice(i * 19, (i + 1) * 19));
    if (m[i] === 1) {
      pasted++;
      t.is(lab[i], sl[i]);
      t.is(w[i], 1);
      t.is(q[i], 1);
      t.is(img[i * 3], s[i * 3]);
      // pasted pixels are certain: r = 1, a logit that is 1 in float32, the teacher's class = the label
      t.is(r[i], 1);
      t.is(Math.fround(1 / (1 + Math.exp(-logit[i]))), 1);
      t.deepEqual(p, Array.from({ length: 19 }, (_, k) => (k === sl[i] ? 1 : 0)));
    } else {
      t.is(lab[i], 7);
      t.true(Math.abs(w[i] - 0.3) < 1e-7 && q[i] === 0.25);
      t.is(img[i * 3 + 2], g[i * 3 + 2]);
      t.true(Math.abs(r[i] - 0.6) < 1e-7 && Math.abs(logit[i] - Math.log(1.5)) < 1e-6);
      t.true(p.every((v, k) => Math.abs(v - k / 171) < 1e-7), `pixel ${i}: ${p.join(",")}`);
    }
  }
  // 3 classes present per image → 2 pasted
  t.true(pasted > 0 && pasted < m.length);
  const withAug = new ClassMix({ numClasses: 19, colorJitterThreshold: 0 }).mix(source, target, ctx(4));
  t.deepEqual(withAug.image.shape, [B, H, W, 3]);
  t.false(withAug.image.dataSync().some(Number.isNaN));
});

test('Gaussian blur keeps a constant image and smooths an impulse symmetrically', (t) => {
  const flat = gaussianBlur(tf.fill([1, 9, 9, 3], 0.4) as tf.Tensor4D, 1, 5);
  t.true(flat.dataSync().every((v) => Math.abs(v - 0.4) < 1e-6));
  const imp = tf.buffer([1, 9, 9, 1]);
  imp.set(1, 0, 4, 4, 0);
  const out = gaussianBlur(imp.toTensor() as tf.Tensor4D, 1, 5).dataSync();
  t.true(Math.abs(out[4 * 9 + 3] - out[4 * 9 + 5]) < 1e-7 && out[4 * 9 + 4] < 1 && out[4 * 9 + 4] > out[4 * 9 + 3]);
});

test('EMA: α = min(1 − 1/(t+1), 0.999) and φ ← αφ + (1−α)θ', (t) => {
  t.is(emaAlpha(0), 0);
  t.is(emaAlpha(1), 0.5);
  t.is(emaAlpha(9), 0.9);
  t.is(emaAlpha(100000), 0.999);
  const teacher = [tf.variable(tf.tensor1d([1, 2]))];
  const student = [tf.variable(tf.tensor1d([3, 6]))];
  emaUpdate(teacher, student, 0.75);
  t.deepEqual([...teacher[0].dataSync()], [1.5, 3]);
  emaUpdate(teacher, student, emaAlpha(0));
  t.deepEqual([...teacher[0].dataSync()], [3, 6]);
  t.throws(() => emaUpdate(teacher, [], 0.5));
});

test('§5.1.7 redistribution: w = min(1, q·r/r̄) with r̄ over the pixels that carry weight; Σw ≤ Σq; no gradient through r̄', (t) => {
  const q = tf.tensor3d([0.5, 0.5, 0.5, 0], [1, 2, 2]);
  const r = tf.tensor3d([0.9, 0.6, 0.3, 0.99], [1, 2, 2]);
  const w = redistributeWeight(q, r).dataSync();
  const rBar = (0.9 + 0.6 + 0.3) / 3; // the q = 0 pixel is left out
  [0.9, 0.6, 0.3].forEach((rv, i) => t.true(Math.abs(w[i] - Math.min(1, (0.5 * rv) / rBar)) < 1e-6, `pixel ${i}`));
  t.is(w[3], 0);
  t.true(Array.from(w).reduce((a, b) => a + b, 0) <= 1.5 + 1e-6);
  // capped at 1 where q·r/r̄ exceeds it
  t.is(redistributeWeight(tf.tensor3d([1, 1], [1, 1, 2]), tf.tensor3d([0.9, 0.1], [1, 1, 2])).dataSync()[0], 1);
  // the mask restricts r̄ as well
  const masked = redistributeWeight(q, r, tf.tensor3d([1, 1, 0, 1], [1, 2, 2])).dataSync();
  t.true(Math.abs(masked[1] - (0.5 * 0.6) / 0.75) < 1e-6);
  // per pseudo-class: r̄_c over the pixels labelled c, so each class keeps its total weight
  const labels = tf.tensor3d([0, 0, 1, 1], [1, 2, 2], 'int32');
  const q2 = tf.fill([1, 2, 2], 0.5) as tf.Tensor3D;
  const pc = redistributeWeight(q2, r, undefined, { labels, numClasses: 2 }).dataSync();
  const expected = [0.9 / 0.75, 0.6 / 0.75, 0.3 / 0.645, 0.99 / 0.645].map((v) => Math.min(1, 0.5 * v));
  pc.forEach((v, i) => t.true(Math.abs(v - expected[i]) < 1e-6, `per-class pixel ${i}: ${v} vs ${expected[i]}`));
  t.true(Math.abs(pc[0] + pc[1] - 1) < 1e-6 && Math.abs(pc[2] + pc[3] - 1) < 1e-6, 'each class keeps Σq');
  // d w_i / d r_i = q / r̄ (r̄ is a constant to the gradient)
  const g = tf.grad((x: tf.Tensor) => tf.sum(redistributeWeight(q, x as tf.Tensor3D)))(r).dataSync();
  t.true(Math.abs(g[1] - 0.5 / rBar) < 1e-5 && g[3] === 0, Array.from(g).join(', '));
});

test('confidence rectifier: r = the teacher\'s max-probability per pixel, its logit, §5.1.7 weights (or r itself with replace); a plugin value', (t) => {
  const probs = tf.tensor4d([0.7, 0.2, 0.1, 0.4, 0.35, 0.25, 1, 0, 0, 0.5, 0.5, 0], [1, 2, 2, 3]);
  const pseudo = { labels: tf.argMax(probs, 3).toInt() as tf.Tensor3D, weight: tf.fill([1, 2, 2], 0.4) as tf.Tensor3D, probs };
  const input = { pseudo, features: tf.zeros([1, 1, 1, 2]) as tf.Tensor4D, image: tf.zeros([1, 2, 2, 3]) as tf.Tensor4D };
  const out = new ConfidenceRectifier().rectify(input);
  const rs = [0.7, 0.4, 1, 0.5];
  t.true(Array.from(out.rectification.dataSync()).every((v, i) => Math.abs(v - rs[i]) < 1e-6));
  const logit = out.logit!.dataSync();
  t.true(Math.abs(logit[0] - Math.log(0.7 / 0.3)) < 1e-5 && logit[2] === 16, 'clipped where r = 1');
  const rBar = rs.reduce((a, b) => a + b) / 4;
  t.true(Array.from(out.weight.dataSync()).every((v, i) => Math.abs(v - Math.min(1, (0.4 * rs[i]) / rBar)) < 1e-6));
  t.is(out.labels, pseudo.labels);
  const replace = new ConfidenceRectifier('replace').rectify(input);
  t.deepEqual(Array.from(replace.weight.dataSync()), Array.from(replace.rectification.dataSync()));
  const p = createPipeline({ require: ['Rectifier'], plugins: [confidenceRectifier({ weighting: 'replace' })] });
  const rect = p.resolve(Tokens.Rectifier);
  t.true(rect instanceof ConfidenceRectifier && rect.weighting === 'replace' && rect.variables.length === 0);
  t.throws(() => confidenceRectifier({ weighting: 'swap' as never }), { message: /weighting/ });
});

test('ClassMix.augment: colour jitter and blur at full strength, from the context\'s RNG only', (t) => {
  const rng = new Rng(2);
  const image = tf.tensor4d(rng.normalArray(2 * 16 * 16 * 3), [2, 16, 16, 3]);
  const mixer = new ClassMix({ numClasses: 4 });
  const [a, b, c] = [mixer.augment(image, ctx(5)), mixer.augment(image, ctx(5)), mixer.augment(image, ctx(6))];
  t.deepEqual(Array.from(a.dataSync()), Array.from(b.dataSync()));
  t.notDeepEqual(Array.from(a.dataSync()), Array.from(c.dataSync()));
  const diff = tf.tidy(() => tf.mean(tf.abs(tf.sub(a, image))).dataSync()[0]);
  t.true(diff > 0.05, `the view differs from the image (mean |Δ| ${diff})`);
});
