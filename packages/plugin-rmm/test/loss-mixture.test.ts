/** v2, the mixture over pseudo-label losses (DESIGN §5.2 v2, `loss-mixture.ts`). */
import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { createPipeline, initBackend, ofType, Rng, RxEventBus, Tokens, type EventOf, type LossInput } from '@ir2f/core';
import {
  emFit, gaussianLogPdf, initialFit, logLoss, mixtureLogLikelihood, posterior, rmm, RmmLoss, RunningLossMixture, separated, type MixtureFit,
} from '@ir2f/plugin-rmm';

test.before(async () => {
  await initBackend('wasm');
});

const K = 3;
const ctx = (step = 0) => ({ step, training: true, rng: new Rng(0) });

test('EM on losses drawn from two known components recovers their means and stds (r as the true prior)', (t) => {
  const rng = new Rng(1);
  const truth: MixtureFit = { clean: { mean: -3, std: 0.8 }, noisy: { mean: 0.5, std: 0.6 } };
  const n = 6000;
  const prior = Float64Array.from({ length: n }, () => rng.uniform(0.1, 0.9));
  const y = Float64Array.from(prior, (r) => {
    const g = rng.next() < r ? truth.clean : truth.noisy;
    return g.mean + g.std * rng.normal();
  });
  // from the batch's own start, and from a start with the components the wrong way round
  for (const start of [initialFit(y), { clean: { mean: 1, std: 1 }, noisy: { mean: -2, std: 1 } }]) {
    const fit = emFit(y, prior, start, { iterations: 50 });
    for (const c of ['clean', 'noisy'] as const) {
      t.true(Math.abs(fit[c].mean - truth[c].mean) < 0.08, `${c} mean ${fit[c].mean} vs ${truth[c].mean}`);
      t.true(Math.abs(fit[c].std - truth[c].std) < 0.08, `${c} std ${fit[c].std} vs ${truth[c].std}`);
    }
    t.true(separated(fit));
  }
});

test('γ, the component density and the mixture likelihood are exact on a hand-made case', (t) => {
  const fit: MixtureFit = { clean: { mean: -2, std: 0.5 }, noisy: { mean: 0, std: 1 } };
  const [y, r] = [-1, 0.3];
  // N(−1; −2, 0.5) = exp(−2)/(0.5√(2π)), N(−1; 0, 1) = exp(−0.5)/√(2π)
  const nc = Math.exp(-2) / (0.5 * Math.sqrt(2 * Math.PI));
  const nn = Math.exp(-0.5) / Math.sqrt(2 * Math.PI);
  const gamma = (r * nc) / (r * nc + (1 - r) * nn);
  t.true(Math.abs(posterior(y, r, fit) - gamma) < 1e-12);
  t.true(Math.abs(gaussianLogPdf(y, fit.clean) - Math.log(nc)) < 1e-12);
  t.true(Math.abs(mixtureLogLikelihood(y, r, fit) - Math.log(r * nc + (1 - r) * nn)) < 1e-12);
});

test('no NaN at r ∈ {0, 1}, nor where both densities underflow; γ = r there', (t) => {
  const fit: MixtureFit = { clean: { mean: -2, std: 0.05 }, noisy: { mean: 0, std: 0.05 } };
  t.is(posterior(-1, 0, fit), 0);
  t.is(posterior(-1, 1, fit), 1);
  t.is(posterior(500, 0.4, fit), 0); // far above both: the noisy one's tail is heavier there in log space
  t.false(Number.isNaN(posterior(-1e6, 0.4, fit)));
  for (const r of [0, 1]) t.true(Number.isFinite(mixtureLogLikelihood(-1, r, fit)));
  // the loss itself, with r exactly 0 and 1 (no logit: clamped) and with logits at ±30
  for (const rv of [0, 1]) {
    const loss = new RmmLoss();
    loss.state!.set([1, 1, -2, 0.5, 0, 1]);
    const out = loss.compute(input([[3, 0, 0], [0, 3, 0], [0, 0, 3], [1, 1, 1]], [0, 0, 2, 1], Array(4).fill(rv), [0, 0, 0, 0]), ctx());
    for (const v of [out.total, ...Object.values(out.parts)]) t.true(Number.isFinite(v.dataSync()[0]), `r = ${rv}`);
  }
});

test('the fit is stable when all losses are equal and when the batch has a single valid pixel', (t) => {
  const m = new RunningLossMixture();
  const fit = m.update(new Float64Array(500).fill(-1.2), new Float64Array(500).fill(0.7));
  for (const c of [fit.clean, fit.noisy]) {
    t.true(Math.abs(c.mean - -1.2) < 1e-6 && c.std === Math.fround(0.05), JSON.stringify(c));
  }
  t.true(m.warmup, 'equal losses do not separate');
  const one = new RunningLossMixture();
  const f1 = one.update([-0.4], [0.5]);
  t.true([f1.clean.mean, f1.clean.std, f1.noisy.mean, f1.noisy.std].every(Number.isFinite), JSON.stringify(f1));
  // no pixel at all: the fit stays
  const before = Float32Array.from(one.state);
  one.update([], []);
  t.deepEqual(Array.from(one.state), Array.from(before));
  // and through the loss: a batch whose only target pixel is valid
  const loss = new RmmLoss();
  const out = loss.compute(input([[2, 0, 0], [0, 2, 0]], [0, 255], [0.8, 0.8], [0, 0]), ctx());
  t.true(Number.isFinite(out.total.dataSync()[0]));
});

test('the running fit: smoothed by the momentum, kept in float32, warm-up latched once separated', (t) => {
  const m = new RunningLossMixture({ momentum: 0.9 });
  const rng = new Rng(2);
  const draw = (n: number, a: number, b: number) => Float64Array.from({ length: n }, (_, i) => (i % 2 ? a : b) + 0.3 * rng.normal());
  const first = m.update(draw(400, -3, 0), new Float64Array(400).fill(0.5));
  t.false(m.warmup);
  t.true(separated(first));
  const before = m.fit;
  const after = m.update(draw(400, -1, -0.9), new Float64Array(400).fill(0.5));
  // one step moves the running means by at most 10% of the distance to the new fit
  t.true(Math.abs(after.clean.mean - before.clean.mean) < 0.1 * 3, `${before.clean.mean} → ${after.clean.mean}`);
  t.false(m.warmup, 'stays out of the warm-up');
  t.is(m.state[2], Math.fround(m.state[2]));
});

/** A 1×1×n LossInput: logits per pixel, labels, r, source mask (q = 1 on target pixels). */
function input(logits: number[][], labels: number[], r: number[], source: number[], teacherProbs?: number[][]): LossInput {
  const n = labels.length;
  const l = tf.tensor3d(labels, [1, 1, n], 'int32');
  return {
    studentLogits: tf.tensor4d(logits.flat(), [1, 1, n, K]),
    target: { labels: l, weight: tf.ones([1, 1, n]) as tf.Tensor3D },
    rectified: { labels: l, weight: tf.ones([1, 1, n]) as tf.Tensor3D, rectification: tf.tensor3d(r, [1, 1, n]) },
    sourceMask: tf.tensor3d(source, [1, 1, n]),
    quality: tf.tensor3d(source.map((s) => (s ? 1 : 0.5)), [1, 1, n]),
    teacherProbs: teacherProbs && tf.tensor4d(teacherProbs.flat(), [1, 1, n, K]),
  };
}

test('the gradient reaches r (ψ) through L_ψ and never the student through ℓ: the student\'s is weighted CE with w = min(1, q·γ/γ̄)', (t) => {
  const rng = new Rng(3);
  const n = 30;
  const logits = Array.from({ length: n }, () => [rng.normal() * 2, rng.normal() * 2, rng.normal() * 2]);
  const labels = Array.from({ length: n }, (_, i) => i % K);
  const rs = Array.from({ length: n }, () => rng.uniform(0.1, 0.9));
  const source = Array.from({ length: n }, (_, i) => (i < 5 ? 1 : 0));
  const loss = new RmmLoss({ lambda: 1, studentWeight: 'posterior' });
  loss.state!.set([1, 1, -1.5, 0.7, 0.3, 0.6]); // past the warm-up
  const base = input(logits, labels, rs, source);
  const z0 = base.studentLogits;
  const r0 = base.rectified!.rectification as tf.Tensor3D;
  const state = Float32Array.from(loss.state!);
  const at = (z: tf.Tensor, r: tf.Tensor) => {
    loss.state!.set(state);
    return loss.compute({ ...base, studentLogits: z as tf.Tensor4D, rectified: { ...base.rectified!, rectification: r } }, ctx());
  };
  const [dZ, dR] = tf.grads((z: tf.Tensor, r: tf.Tensor) => at(z, r).total)([z0, r0]);
  // L_ψ alone: a gradient for r, none for the student's logits (ℓ is read detached)
  const [zv, rv] = [tf.variable(z0, true, 'lm-z'), tf.variable(r0, true, 'lm-r')];
  const psiGrads = tf.variableGrads(() => at(zv, rv).parts.psi, [zv, rv]).grads;
  t.deepEqual(Object.keys(psiGrads), ['lm-r'], 'L_ψ sends nothing to the student');
  tf.dispose([zv, rv]);
  // the student's gradient by hand: source pixels weight 1, target pixels w = min(1, q·γ/γ̄), mean over n
  loss.state!.set(state);
  const fit = emFit(labels.map((_, i) => i).filter((i) => !source[i]).map((i) => logLoss(-Math.log(softmax(logits[i])[labels[i]]))),
    labels.map((_, i) => i).filter((i) => !source[i]).map((i) => rs[i]), loss.mixture!.fit);
  const smoothed = blend(loss.mixture!.fit, fit, 0.9);
  const gam = labels.map((y, i) => (source[i] ? 0 : posterior(logLoss(-Math.log(softmax(logits[i])[y])), Math.fround(rs[i]), smoothed)));
  const gBar = gam.reduce((a, g, i) => a + (source[i] ? 0 : g), 0) / source.filter((s) => !s).length;
  const dz = dZ.arraySync() as number[][][][];
  let worst = 0;
  labels.forEach((y, i) => {
    const w = source[i] ? 1 : Math.min(1, (0.5 * gam[i]) / gBar);
    const p = softmax(logits[i]);
    for (let k = 0; k < K; k++) worst = Math.max(worst, Math.abs(dz[0][0][i][k] - (w * (p[k] - (k === y ? 1 : 0))) / n));
  });
  t.true(worst < 1e-4, `student gradient off by ${worst}`);
  // r: the sign of N_c(y) − N_n(y) on target pixels, nothing on source pixels
  const drs = dR.dataSync();
  labels.forEach((y, i) => {
    if (source[i]) return t.is(drs[i], 0);
    const yy = logLoss(-Math.log(softmax(logits[i])[y]));
    const sign = Math.sign(gaussianLogPdf(yy, smoothed.noisy) - gaussianLogPdf(yy, smoothed.clean)); // −d log f / dr
    t.is(Math.sign(drs[i]), sign, `pixel ${i}`);
  });
});

test('during the warm-up the student\'s weight is q and L_ψ is reported but not trained', (t) => {
  const loss = new RmmLoss({ studentWeight: 'posterior' });
  const base = input([[2, 0, 0], [0, 2, 0], [0, 0, 2]], [0, 1, 2], [0.3, 0.6, 0.9], [0, 0, 0]);
  const [zv, rv] = [tf.variable(base.studentLogits, true, 'wu-z'), tf.variable(base.rectified!.rectification, true, 'wu-r')];
  const { grads } = tf.variableGrads(() => loss.compute({ ...base, studentLogits: zv, rectified: { ...base.rectified!, rectification: rv } }, ctx()).total, [zv, rv]);
  t.true(loss.mixture!.warmup, 'three equal losses do not separate');
  t.deepEqual(Object.keys(grads), ['wu-z'], 'no gradient reaches r');
  tf.dispose([zv, rv]);
  const out = new RmmLoss({ studentWeight: 'posterior' }).compute(base, ctx());
  const ce = -Math.log(softmax([2, 0, 0])[0]);
  t.true(Math.abs(out.parts.ce.dataSync()[0] - 0.5 * ce) < 1e-6, 'mean of q·CE with q = 0.5');
});

test('redistribution class: γ̄ per pseudo-class, so each class keeps its share of q', (t) => {
  const logits = [[3, 0, 0], [0.5, 0, 0], [0, 2, 0], [0, 0.2, 0]];
  const labels = [0, 0, 1, 1];
  const rs = [0.6, 0.6, 0.6, 0.6];
  const state = [1, 1, -2, 0.5, 0, 0.5];
  const parts = (redistribution: 'batch' | 'class') => {
    const loss = new RmmLoss({ redistribution, studentWeight: 'posterior' });
    loss.state!.set(state);
    return loss.compute(input(logits, labels, rs, [0, 0, 0, 0]), ctx()).parts.ce.dataSync()[0];
  };
  // by hand: the fit after this step's update, γ per pixel, w = min(1, q·γ/γ̄_c) with q = 0.5
  const m = new RunningLossMixture();
  m.state.set(state);
  const ys = logits.map((z, i) => logLoss(-Math.log(softmax(z)[labels[i]])));
  const fit = m.update(ys, rs.map(Math.fround));
  const g = ys.map((y, i) => posterior(y, Math.fround(rs[i]), fit));
  const ce = ys.map((y) => Math.max(Math.exp(y), 0));
  const byClass = [0, 1].map((c) => (g[2 * c] + g[2 * c + 1]) / 2);
  const expected = ce.reduce((a, l, i) => a + l * Math.min(1, (0.5 * g[i]) / byClass[labels[i]]), 0) / 4;
  t.true(Math.abs(parts('class') - expected) < 1e-5, `${parts('class')} vs ${expected}`);
  t.not(parts('class'), parts('batch'));
});

test('studentWeight rectifier: the student takes the rectifier\'s weight as without the RMM, ψ still trains on L_ψ', (t) => {
  const logits = [[3, 0, 0], [0.5, 0, 0], [0, 2, 0], [0, 0.2, 0]];
  const labels = [0, 1, 1, 0];
  const rs = [0.9, 0.2, 0.7, 0.4];
  const weights = [0.8, 0.1, 0.6, 1];
  const source = [0, 0, 0, 1];
  const loss = new RmmLoss();
  t.is(loss.options.studentWeight, 'rectifier', 'the default');
  t.false(new RmmLoss({ studentWeight: 'rectifier', target: 'bootstrap' }).usesTeacherProbs, 'no soft target, so no teacher probabilities');
  loss.state!.set([1, 1, -2, 0.5, 0, 0.5]);
  const base = input(logits, labels, rs, source);
  const weight = tf.tensor3d(weights, [1, 1, 4]);
  const [zv, rv] = [tf.variable(base.studentLogits, true, 'sw-z'), tf.variable(base.rectified!.rectification, true, 'sw-r')];
  let ce = 0;
  const { grads } = tf.variableGrads(() => {
    const out = loss.compute({ ...base, target: { ...base.target, weight }, studentLogits: zv, rectified: { ...base.rectified!, rectification: rv } }, ctx());
    ce = out.parts.ce.dataSync()[0];
    return out.total;
  }, [zv, rv]);
  // source pixel at 1, target pixels at the rectifier's weight, mean over all four pixels
  const expected = logits.reduce((a, z, i) => a + (source[i] ? 1 : weights[i]) * -Math.log(softmax(z)[labels[i]]), 0) / 4;
  t.true(Math.abs(ce - expected) < 1e-5, `${ce} vs ${expected}`);
  t.deepEqual(Object.keys(grads).sort(), ['sw-r', 'sw-z'], 'L_ψ still reaches r');
  t.true(Array.from(grads['sw-r'].dataSync()).slice(0, 3).every((g) => g !== 0));
  tf.dispose([zv, rv, weight, ...Object.values(grads)]);
});

test('bootstrap: the soft target γ·onehot(ŷ) + (1 − γ)·p_φ at weight q, and it asks for the teacher\'s probabilities', (t) => {
  const loss = new RmmLoss({ target: 'bootstrap', studentWeight: 'posterior' });
  t.true(loss.usesTeacherProbs);
  loss.state!.set([1, 1, -2, 0.5, 0, 0.5]);
  const logits = [[1, 0, 0], [0, 1, 0]];
  const probs = [[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]];
  const state = Float32Array.from(loss.state!);
  const out = loss.compute(input(logits, [0, 1], [0.4, 0.7], [0, 0], probs), ctx());
  const s2 = new RunningLossMixture();
  s2.state.set(state);
  const ys = logits.map((z, i) => logLoss(-Math.log(softmax(z)[i])));
  const fit = s2.update(ys, [Math.fround(0.4), Math.fround(0.7)]);
  const expected = logits.map((z, i) => {
    const g = posterior(ys[i], [Math.fround(0.4), Math.fround(0.7)][i], fit);
    const p = softmax(z);
    return 0.5 * -p.reduce((a, pk, k) => a + (g * (k === i ? 1 : 0) + (1 - g) * probs[i][k]) * Math.log(pk), 0);
  }).reduce((a, b) => a + b, 0) / 2;
  t.true(Math.abs(out.parts.ce.dataSync()[0] - expected) < 1e-5, `${out.parts.ce.dataSync()[0]} vs ${expected}`);
  const err = t.throws(() => loss.compute(input(logits, [0, 1], [0.4, 0.7], [0, 0]), ctx()));
  t.regex(err!.message, /bootstrap.*teacherProbs/);
});

test('as a plugin (v2 default): one Loss per pipeline with state, rmm events with the fit, γ statistics and the warm-up flag', (t) => {
  const bus = new RxEventBus();
  const p = createPipeline({ require: ['Loss'], eventBus: bus, plugins: [rmm()] });
  const loss = p.resolve(Tokens.Loss);
  t.true(loss instanceof RmmLoss && loss.state instanceof Float32Array);
  const events: EventOf<'rmm'>[] = [];
  bus.events$.pipe(ofType('rmm')).subscribe((e) => events.push(e));
  loss.compute(input([[4, 0, 0], [0, 0, 0], [0, 4, 0], [0, 0, 1]], [0, 0, 1, 2], [0.9, 0.2, 0.8, 0.5], [0, 0, 0, 1]), ctx(4));
  t.is(events.length, 1);
  const e = events[0];
  t.is(e.step, 5);
  t.is(typeof e.warmup, 'boolean');
  t.true(e.components!.clean.mean <= e.components!.noisy.mean);
  t.true(e.meanGamma > 0 && e.meanGamma < 1 && e.lowGammaShare! >= 0 && e.lowGammaShare! <= 1);
  t.true(Math.abs(e.meanR - (0.9 + 0.2 + 0.8) / 3) < 1e-6);
  t.true(Math.abs(e.meanQ! - 0.5) < 1e-6);
  t.throws(() => rmm({ formulation: 'mixture' as never }), { message: /formulation/ });
});

function softmax(z: number[]): number[] {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function blend(old: MixtureFit, fit: MixtureFit, m: number): MixtureFit {
  const b = (a: number, c: number) => Math.fround(m * a + (1 - m) * c);
  return {
    clean: { mean: b(old.clean.mean, fit.clean.mean), std: b(old.clean.std, fit.clean.std) },
    noisy: { mean: b(old.noisy.mean, fit.noisy.mean), std: b(old.noisy.std, fit.noisy.std) },
  };
}
