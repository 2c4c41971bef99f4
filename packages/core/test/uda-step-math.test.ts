/**
 * The maths of one UDA iteration: its losses against a hand computation on a 2-image fixture, and its
 * gradient (student and a trainable rectifier) against central finite differences.
 */
import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import {
  ClassMix, ConfidencePseudoLabeler, downscaleLabels, IdentityRectifier, initBackend, Module, Rng, udaStep, WeightedCrossEntropy,
  type AdamW, type DecodeOutput, type MixBatch, type Mixer, type MixResult, type Rectified, type Rectifier, type RectifyInput,
  type SegmentationNetwork,
} from '@ir2f/core';
import { TinyNet } from './tiny-net.js';

test.before(async () => {
  await initBackend(process.env.TEST_BACKEND ?? 'wasm');
});

/** logits = x·W + b per pixel, at full resolution (so no upsampling enters the hand computation). */
class LinearNet extends Module implements SegmentationNetwork {
  readonly w: tf.Variable;
  readonly b: tf.Variable;
  constructor(W: number[], b: number[]) {
    super();
    this.w = this.param('weight', tf.tensor2d(W, [3, b.length]));
    this.b = this.param('bias', tf.tensor1d(b));
  }

  forward(x: tf.Tensor4D): DecodeOutput {
    const [B, H, Wd] = x.shape;
    const logits = tf.reshape(tf.add(tf.matMul(tf.reshape(x, [-1, 3]), this.w), this.b), [B, H, Wd, this.b.shape[0]]) as tf.Tensor4D;
    return { logits, embedding: tf.clone(x) };
  }
}

/** Column 0 from the source, the rest from the target: a mix one can follow by hand. */
class LeftColumnMix implements Mixer {
  mix(source: MixBatch, target: MixBatch): MixResult {
    return tf.tidy(() => {
      const [B, H, W] = source.labels.shape;
      const mask = tf.tile(tf.reshape(tf.tensor1d(Array.from({ length: W }, (_, i) => (i === 0 ? 1 : 0))), [1, 1, W]), [B, H, 1]) as tf.Tensor3D;
      const fromSource = tf.cast(mask, 'bool');
      const m4 = tf.expandDims(mask, 3);
      return {
        image: tf.add(tf.mul(m4, source.image), tf.mul(tf.sub(1, m4), target.image)) as tf.Tensor4D,
        labels: tf.where(fromSource, source.labels, target.labels) as tf.Tensor3D,
        weight: tf.where(fromSource, tf.onesLike(mask), target.weight!) as tf.Tensor3D,
        sourceMask: mask,
      };
    });
  }
}

const spyOptimizer = () => {
  const seen: Record<string, Float32Array> = {};
  return { seen, opt: { apply: (g: Record<string, tf.Tensor>) => Object.entries(g).forEach(([k, v]) => (seen[k] = v.dataSync() as Float32Array)) } as unknown as AdamW };
};

const softmax = (z: number[]) => {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

test.serial('losses of one iteration equal a hand computation on a 2-image fixture', (t) => {
  const W = [0.5, -0.3, 0.1, -0.2, 0.8, 0.3, 0.4, 0.1, -0.6];
  const bias = [0.1, 0, -0.1];
  const xs = [0.5, -1, 0.2, 1.5, 0.3, -0.4, -0.7, 0.9, 1.1, 0.2, 0.2, 0.2]; // source [1, 2, 2, 3]
  const ys = [0, 2, 255, 1];
  const xt = [2, -1, 0, -0.5, 1.5, 0.2, 0.1, 0.1, 0.1, -2, 0, 2];
  const tau = 0.6;
  const student = new LinearNet(W, bias);
  const teacher = new LinearNet(W, bias);
  const { opt } = spyOptimizer();
  const batch = {
    source: { image: tf.tensor4d(xs, [1, 2, 2, 3]), labels: tf.tensor3d(ys, [1, 2, 2], 'int32') },
    target: { image: tf.tensor4d(xt, [1, 2, 2, 3]) },
  };
  const r = udaStep({
    student, teacher, optimizer: opt, pseudoLabeler: new ConfidencePseudoLabeler({ threshold: tau }),
    rectifier: new IdentityRectifier(), mixer: new LeftColumnMix(), loss: new WeightedCrossEntropy(),
  }, batch, { mode: 'uda', lr: 0, ctx: { step: 0, training: true, rng: new Rng(0) } });

  // by hand
  const probs = (x: number[], p: number) => softmax([0, 1, 2].map((k) => bias[k] + [0, 1, 2].reduce((s, c) => s + x[p * 3 + c] * W[c * 3 + k], 0)));
  const ce = (x: number[], p: number, y: number) => (y === 255 ? 0 : -Math.log(probs(x, p)[y]));
  const source = [0, 1, 2, 3].reduce((s, p) => s + ce(xs, p, ys[p]), 0) / 4;
  const pt = [0, 1, 2, 3].map((p) => probs(xt, p));
  const yhat = pt.map((p) => p.indexOf(Math.max(...p)));
  const q = pt.filter((p) => Math.max(...p) > tau).length / 4;
  t.true(q > 0 && q < 1, `fixture keeps some pseudo-labels (q = ${q})`);
  // pixels (row, col): column 0 = pixels 0 and 2 from the source
  const mixed = [0, 1, 2, 3].map((p) => (p % 2 === 0 ? { x: xs, y: ys[p], w: 1 } : { x: xt, y: yhat[p], w: q }));
  const mix = mixed.reduce((s, m, p) => s + m.w * ce(m.x, p, m.y), 0) / 4;

  t.true(Math.abs(r.losses.source - source) < 1e-5, `source ${r.losses.source} vs ${source}`);
  t.true(Math.abs(r.losses.mix - mix) < 1e-5, `mix ${r.losses.mix} vs ${mix}`);
  t.true(Math.abs(r.losses.total - (source + mix)) < 1e-5);
  t.true(Math.abs(r.pseudo!.keptFraction - q) < 1e-6);
  tf.dispose([batch.source.image, batch.source.labels, batch.target.image]);
  student.dispose();
  teacher.dispose();
});

/** A rectifier with one trainable scalar: weight · σ(a) (so gradients must reach it through the mix and the loss). */
class ScaledRectifier implements Rectifier {
  readonly a = tf.variable(tf.scalar(0.3), true);
  /** `RectifyInput.rectificationGradient` of each call. */
  readonly flags: (boolean | undefined)[] = [];
  get variables() {
    return [this.a];
  }
  rectify(input: RectifyInput): Rectified {
    this.flags.push(input.rectificationGradient);
    const weight = tf.mul(input.pseudo.weight, tf.sigmoid(this.a)) as tf.Tensor3D;
    return { labels: input.pseudo.labels, weight, rectification: weight };
  }
  dispose() {
    this.a.dispose();
  }
}

test.serial('the gradient of a whole UDA iteration (student and rectifier) matches central finite differences', (t) => {
  const K = 3;
  const student = new TinyNet(K, 5, 4);
  const teacher = new TinyNet(K, 6, 4);
  const rectifier = new ScaledRectifier();
  const rng = new Rng(9);
  const batch = {
    source: {
      image: tf.tensor4d(rng.normalArray(2 * 8 * 8 * 3), [2, 8, 8, 3]),
      labels: tf.tensor3d(Int32Array.from({ length: 128 }, (_, i) => (i % 5 === 0 ? 255 : i % 3)), [2, 8, 8], 'int32'),
    },
    target: { image: tf.tensor4d(rng.normalArray(2 * 8 * 8 * 3), [2, 8, 8, 3]) },
  };
  const teacherState = teacher.namedState().map(([, e]) => tf.clone(e.variable));
  const { seen, opt } = spyOptimizer();
  const parts = {
    student, teacher, rectifier, optimizer: opt, pseudoLabeler: new ConfidencePseudoLabeler({ threshold: 0.34 }),
    mixer: new ClassMix({ numClasses: K }), loss: new WeightedCrossEntropy(),
  };
  // the loss as a function of the weights: same RNG draws each call, teacher restored after its EMA update
  const loss = () => {
    const r = udaStep(parts, batch, { mode: 'uda', lr: 0, ctx: { step: 3, training: true, rng: new Rng(42) } });
    teacher.namedState().forEach(([, e], i) => e.variable.assign(teacherState[i]));
    return r.losses;
  };
  const base = loss();
  t.true(base.mix > 0);
  const grads = { ...seen };
  const probes: [tf.Variable, number][] = [
    [student.conv1.weight, 5], [student.conv2.weight, 17], [student.bn1.weight, 2], [student.head.weight, 3],
    [student.bn1.bias, 1], [rectifier.a, 0],
  ];
  const eps = 3e-3;
  for (const [v, i] of probes) {
    const orig = v.dataSync().slice();
    const at = (delta: number) => {
      const d = orig.slice();
      d[i] += delta;
      v.assign(tf.tensor(d, v.shape));
      return loss().total;
    };
    const fd = (at(eps) - at(-eps)) / (2 * eps);
    v.assign(tf.tensor(orig, v.shape));
    const g = grads[v.name][i];
    t.true(Math.abs(fd - g) <= 2e-3 + 2e-2 * Math.abs(g), `${v.name}[${i}]: autodiff ${g} vs finite differences ${fd}`);
  }
  t.not(grads[rectifier.a.name][0], 0, 'the rectifier receives a gradient');
  // the weighted cross-entropy reads r only through the weight: rectify is told no loss differentiates r, and
  // a loss that does not say gets r with its gradient
  t.true(rectifier.flags.every((f) => f === false));
  rectifier.flags.length = 0;
  const ce = new WeightedCrossEntropy();
  udaStep({ ...parts, loss: { compute: (input) => ce.compute(input) } }, batch, { mode: 'uda', lr: 0, ctx: { step: 3, training: true, rng: new Rng(42) } });
  teacher.namedState().forEach(([, e], i) => e.variable.assign(teacherState[i]));
  t.deepEqual(rectifier.flags, [true]);
  tf.dispose([...teacherState, batch.source.image, batch.source.labels, batch.target.image]);
  student.dispose();
  teacher.dispose();
  rectifier.dispose();
});

test.serial('labels at feature resolution keep a cell\'s majority class only above the minimum share (DAFormer)', (t) => {
  // 4×4 → 2×2 cells: [0,0,0,1] → 0 (0.75); [1,1,2,2] → ignore (0.5); [3,3,3,255] → 3 (0.75, ignore counts); [2,2,2,2] → 2
  const labels = tf.tensor3d([
    0, 0, 1, 1,
    0, 1, 2, 2,
    3, 3, 2, 2,
    3, 255, 2, 2,
  ], [1, 4, 4], 'int32');
  const down = downscaleLabels(labels, 2, 0.75, 4);
  t.deepEqual(Array.from(down.dataSync()), [0, 255, 3, 2]);
  tf.dispose([labels, down]);
});

test.serial('the ImageNet feature distance: λ · mean ‖f_student − f_imnet‖ over thing-class cells, gradients to the student only', (t) => {
  const K = 4;
  const student = new TinyNet(K, 1);
  const teacher = new TinyNet(K, 1);
  const imnet = new TinyNet(K, 2).eval();
  const imnetBefore = imnet.variables.map((v) => v.dataSync().slice());
  // left half class 2 ("thing"), right half class 0
  const labels = tf.tensor3d(Int32Array.from({ length: 2 * 16 * 16 }, (_, i) => (i % 16 < 8 ? 2 : 0)), [2, 16, 16], 'int32');
  const image = tf.tensor4d(new Rng(1).normalArray(2 * 16 * 16 * 3), [2, 16, 16, 3]);
  const { seen, opt } = spyOptimizer();
  const lambda = 0.5;
  const r = udaStep({
    student, teacher, optimizer: opt, pseudoLabeler: new ConfidencePseudoLabeler(), rectifier: new IdentityRectifier(),
    mixer: new LeftColumnMix(), loss: new WeightedCrossEntropy(),
    featureDistance: { imnet, lambda, classes: [2], minRatio: 0.75, numClasses: K },
  }, { source: { image, labels }, target: { image } }, { mode: 'source-only', lr: 0, ctx: { step: 0, training: true, rng: new Rng(0) } });
  // by hand from the two networks' stride-4 features: cells of columns 0–1 (of 4) are class 2
  const expected = tf.tidy(() => {
    student.train(true);
    const fs = student.forwardWithFeatures(image).features[1];
    const fi = imnet.forwardWithFeatures(image).features[1];
    const norm = tf.sqrt(tf.sum(tf.square(tf.sub(fs, fi)), 3)).arraySync() as number[][][];
    const cells = norm.flatMap((img) => img.flatMap((row) => row.slice(0, 2)));
    return lambda * cells.reduce((a, b) => a + b, 0) / cells.length;
  });
  t.true(Math.abs(r.losses.featDist - expected) < 1e-4 * Math.max(1, expected), `${r.losses.featDist} vs ${expected}`);
  t.true(student.variables.every((v) => seen[v.name] != null));
  t.deepEqual(imnet.variables.map((v) => v.dataSync().slice()), imnetBefore);
  tf.dispose([labels, image]);
  for (const m of [student, teacher, imnet]) m.dispose();
});
