import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend, ofType, Rng, RxEventBus, type EventOf } from '@ir2f/core';
import { batchGridCoords, InrOptionsSchema, InrRectifier, queryGeometry, type InrOptionsInput } from '@ir2f/plugin-inr-rectifier';
import { quantiles } from '../src/inr-rectifier.js';

test.before(async () => {
  await initBackend('wasm');
});

const E = 6;
const K = 3;
const h = 4;
const w = 5;

/** A rectifier whose MLP outputs latent channel `Cr + 0` (the first log-probability channel) unchanged. */
function readsOneChannel(opts: InrOptionsInput): InrRectifier {
  const r = new InrRectifier({ hidden: [1], ...opts }, { embeddingChannels: E, numClasses: K });
  const o = r.options;
  const C = o.projChannels + K;
  const k = o.unfold ? 3 : 1;
  for (const [name, t] of r.namedParams()) {
    let value = tf.zerosLike(t);
    if (name === 'mlp.0.weight_feat') {
      const f = new Float32Array(k * k * C);
      f[((k >> 1) * k + (k >> 1)) * C + o.projChannels] = 1; // centre tap, first log-probability channel
      value = tf.tensor(f, t.shape);
    }
    if (name === 'mlp.1.weight') value = tf.onesLike(t);
    (t as tf.Variable).assign(value);
  }
  return r;
}

/** Embedding (ignored by the zeroed projection) and a log-probability grid whose channel 0 is `grid`. */
function inputs(grid: number[]) {
  const embedding = tf.tensor4d(new Rng(1).normalArray(h * w * E), [1, h, w, E]);
  const lp = new Float32Array(h * w * K);
  grid.forEach((v, i) => (lp[i * K] = v));
  return { embedding, logProbs: tf.tensor4d(lp, [1, h, w, K]) };
}

const logit = (p: number) => Math.log(p / (1 - p));
const GRID = Array.from({ length: h * w }, (_, i) => 0.5 + ((i * 7) % 11) / 5); // positive: the ReLU passes it

test('queries at latent cell centres reproduce the grid (ensemble on and off)', (t) => {
  for (const localEnsemble of [true, false]) {
    const r = readsOneChannel({ localEnsemble, cellDecode: false });
    const { embedding, logProbs } = inputs(GRID);
    const out = r.rectifyGrid(embedding, logProbs, h, w);
    const got = Array.from(out.dataSync()).map(logit);
    got.forEach((v, i) => t.true(Math.abs(v - GRID[i]) < 1e-3, `ensemble ${localEnsemble}, cell ${i}: ${v} vs ${GRID[i]}`));
    tf.dispose([out, embedding, logProbs]);
    r.dispose();
  }
});

test('between cell centres: bilinear interpolation with the local ensemble, the nearest cell without', (t) => {
  const { embedding, logProbs } = inputs(GRID);
  const centre = (i: number, n: number) => -1 + (2 * i + 1) / n;
  // a point 30% of the way from cell (1, 2) to (2, 3)
  const y = centre(1, h) + 0.3 * (2 / h);
  const x = centre(2, w) + 0.3 * (2 / w);
  const coords = tf.tensor3d([y, x], [1, 1, 2]);
  const g = (i: number, j: number) => GRID[i * w + j];
  const bilinear = 0.7 * 0.7 * g(1, 2) + 0.7 * 0.3 * g(1, 3) + 0.3 * 0.7 * g(2, 2) + 0.3 * 0.3 * g(2, 3);
  const smooth = readsOneChannel({ localEnsemble: true, cellDecode: false });
  const piecewise = readsOneChannel({ localEnsemble: false, cellDecode: false });
  const a = logit(smooth.rectifyAt(embedding, logProbs, coords).dataSync()[0]);
  const b = logit(piecewise.rectifyAt(embedding, logProbs, coords).dataSync()[0]);
  t.true(Math.abs(a - bilinear) < 1e-3, `${a} vs bilinear ${bilinear}`);
  t.true(Math.abs(b - g(1, 2)) < 1e-3, `${b} vs nearest ${g(1, 2)}`);
  tf.dispose([embedding, logProbs, coords]);
  smooth.dispose();
  piecewise.dispose();
});

test('a coordinate gives the same r whatever query set and chunking it comes in', (t) => {
  const r = new InrRectifier({ chunkSize: 7 }, { embeddingChannels: E, numClasses: K });
  const r2 = new InrRectifier({ chunkSize: 1000 }, { embeddingChannels: E, numClasses: K });
  const { embedding, logProbs } = inputs(GRID);
  const rng = new Rng(3);
  const probe = [0.123, -0.456];
  const withOthers = (n: number, at: number) => {
    const c = Array.from({ length: n * 2 }, () => rng.uniform(-1, 1));
    c.splice(at * 2, 2, ...probe);
    return tf.tensor3d(c, [1, n, 2]);
  };
  const cell: [number, number] = [0.1, 0.1];
  const values = [[r, withOthers(5, 2)], [r, withOthers(40, 33)], [r2, withOthers(13, 0)]].map(([rect, coords], k) => {
    const out = (rect as InrRectifier).rectifyAt(embedding, logProbs, coords as tf.Tensor3D, cell);
    const at = [2, 33, 0][k];
    const v = out.dataSync()[at];
    tf.dispose([out, coords as tf.Tensor3D]);
    return v;
  });
  t.true(values.every((v) => Math.abs(v - values[0]) < 1e-6), values.join(', '));
  // and a whole grid is identical for any chunk size
  const a = r.rectifyGrid(embedding, logProbs, 4 * h, 4 * w);
  const b = r2.rectifyGrid(embedding, logProbs, 4 * h, 4 * w);
  t.true(a.dataSync().every((v, i) => Math.abs(v - b.dataSync()[i]) < 1e-6));
  tf.dispose([a, b, embedding, logProbs]);
  r.dispose();
  r2.dispose();
});

test('a grid\'s geometry, tabulated per row and column, is the geometry of its coordinates taken one by one, in any range', (t) => {
  const same = (a: tf.Tensor, b: tf.Tensor) => {
    const [x, y] = [a.dataSync(), b.dataSync()];
    return x.length === y.length && x.every((v, i) => Object.is(v, y[i]));
  };
  for (const localEnsemble of [true, false]) {
    const shape = { latentChannels: 3, hidden: [4], unfold: true, localEnsemble, cellDecode: true };
    // above, below and at the latent resolution; a grid of one row; ranges that split rows
    for (const [H, W, h, w] of [[17, 23, 5, 6], [12, 12, 24, 24], [1, 40, 7, 3], [8, 8, 8, 8]]) {
      const grid = batchGridCoords(3, H, W);
      const loose = { values: grid.values, B: 3, Q: H * W };
      for (const [start, count] of [[0, undefined], [3, 11], [H * W - 5, 5]] as const) {
        const [a, b] = [queryGeometry(shape, grid, h, w, start, count), queryGeometry(shape, loose, h, w, start, count)];
        t.true(same(a.index, b.index) && same(a.rel, b.rel) && same(a.weight, b.weight), `${H}×${W} on ${h}×${w}, ensemble ${localEnsemble}, from ${start}`);
        tf.dispose([a.index, a.rel, a.weight, b.index, b.rel, b.weight]);
      }
    }
  }
});

test.serial('a 4× query: memory bounded by the chunk size, nothing left behind', async (t) => {
  const before = tf.memory().numTensors;
  const r = new InrRectifier({ chunkSize: 256 }, { embeddingChannels: E, numClasses: K });
  const all = new InrRectifier({ chunkSize: 1 << 20 }, { embeddingChannels: E, numClasses: K });
  const { embedding, logProbs } = inputs(GRID);
  /** Bytes in flight during the query beyond what existed before and the result itself. */
  const peak = async (rect: InrRectifier, scale: number) => {
    let out: tf.Tensor | undefined;
    const start = tf.memory().numBytes;
    const info = await tf.profile(() => {
      out = rect.rectifyGrid(embedding, logProbs, scale * h, scale * w);
    });
    const transient = info.peakBytes - start - out!.size * 4;
    out!.dispose();
    return transient;
  };
  const chunked4 = await peak(r, 4);
  const chunked16 = await peak(r, 16);
  const whole16 = await peak(all, 16);
  // the working set of a chunked query does not grow with the query resolution; an unchunked one does
  t.true(chunked16 < 2 * chunked4 + 64 * 1024, `chunked peaks: 4× ${chunked4} B, 16× ${chunked16} B`);
  t.true(whole16 > 4 * chunked16, `unchunked 16× ${whole16} B vs chunked ${chunked16} B`);
  tf.dispose([embedding, logProbs]);
  r.dispose();
  all.dispose();
  t.is(tf.memory().numTensors, before, 'nothing left behind once the rectifiers are disposed (grid geometry is cached until then)');
});

test('the event\'s quantiles by selection are a sorted copy\'s values at ⌊q·n⌋, with ties, any length, the input untouched', (t) => {
  const rng = new Rng('quantiles');
  for (const n of [1, 2, 3, 10, 101, 4096]) {
    for (const levels of [0, 4]) {
      // levels 4: heavy ties, as a saturated r has
      const values = Float32Array.from({ length: n }, () => (levels ? Math.floor(rng.uniform(0, levels)) / levels : rng.uniform(0, 1)));
      const copy = values.slice();
      const sorted = values.slice().sort();
      const qs = [0, 0.1, 0.5, 0.9, 0.999];
      t.deepEqual(quantiles(values, qs), qs.map((q) => sorted[Math.min(n - 1, Math.floor(q * n))]), `n ${n}, levels ${levels}`);
      t.deepEqual(values, copy);
    }
  }
});

test('options are validated with their paths; defaults follow DESIGN §5.1', (t) => {
  const d = InrOptionsSchema.parse({});
  t.deepEqual([d.projChannels, d.hidden, d.unfold, d.localEnsemble, d.cellDecode, d.calibrationWeight], [32, [64, 64], true, true, true, 1]);
  // v2 (§5.1.7, §5.1.8): r redistributes q, calibration on the clean source view unless asked
  t.deepEqual([d.weighting, d.calibrationView], ['redistribute', 'clean']);
  t.regex(t.throws(() => InrOptionsSchema.parse({ weighting: 'mix' }))!.message, /weighting/);
  const err = t.throws(() => InrOptionsSchema.parse({ hidden: [64, -1] }));
  t.regex(err!.message, /hidden/);
});

test('qWarmupSteps: the loss gets the pseudo-labeler\'s weight as weight and r for the first steps, r afterwards', (t) => {
  const r = new InrRectifier({ qWarmupSteps: 2 }, { embeddingChannels: E, numClasses: K });
  const { embedding, logProbs } = inputs(GRID);
  const pseudo = { labels: tf.zeros([1, 8, 8], 'int32') as tf.Tensor3D, weight: tf.fill([1, 8, 8], 0.25) as tf.Tensor3D, probs: tf.zeros([1, 8, 8, K]) as tf.Tensor4D };
  const at = (step: number) => {
    const image = tf.zeros([1, 8, 8, 3]) as tf.Tensor4D;
    const out = r.rectify({ pseudo, features: embedding, logProbs, image }, { step, training: true, rng: new Rng(0) });
    image.dispose();
    const [w, rect] = [Array.from(out.weight.dataSync()), Array.from(out.rectification.dataSync())];
    const hasLogit = out.logit != null;
    tf.dispose([out.weight, out.rectification, ...(out.logit ? [out.logit] : [])]);
    return { w, rect, hasLogit };
  };
  at(0); // caches the grid's query geometry
  const before = tf.memory().numTensors;
  const warm = at(1);
  // warm-up: q as the weight and as r (an RMM loss sees q), no logit; nothing left behind
  t.true(warm.w.every((v) => v === 0.25) && warm.rect.every((v) => v === 0.25) && !warm.hasLogit);
  t.is(tf.memory().numTensors, before);
  const late = at(2);
  // after it: §5.1.7's redistribution of q = 0.25 by r
  const rBar = late.rect.reduce((a, b) => a + b, 0) / late.rect.length;
  t.true(late.w.every((w, i) => Math.abs(w - Math.min(1, (0.25 * late.rect[i]) / rBar)) < 1e-6));
  t.true(late.hasLogit && late.rect.some((v) => v !== 0.25));
  tf.dispose([embedding, logProbs, pseudo.labels, pseudo.weight, pseudo.probs]);
  r.dispose();
});

test('weighting: redistribute (v2) spreads q by r with the same total, replace (v1) hands the loss r; the rectifier event reports r̄', (t) => {
  const { embedding, logProbs } = inputs(GRID);
  const q = tf.tensor3d(Array.from({ length: 64 }, (_, i) => (i < 8 ? 0 : 0.25)), [1, 8, 8]);
  const pseudo = { labels: tf.zeros([1, 8, 8], 'int32') as tf.Tensor3D, weight: q, probs: tf.zeros([1, 8, 8, K]) as tf.Tensor4D };
  const run = (weighting: 'redistribute' | 'replace') => {
    const bus = new RxEventBus();
    const events: EventOf<'rectifier'>[] = [];
    bus.events$.pipe(ofType('rectifier')).subscribe((e) => events.push(e));
    const rect = new InrRectifier({ weighting, calibrationWeight: 0 }, { embeddingChannels: E, numClasses: K }, bus);
    const image = tf.zeros([1, 8, 8, 3]) as tf.Tensor4D;
    const out = rect.rectify({ pseudo, features: embedding, logProbs, image }, { step: 0, training: true, rng: new Rng(0) });
    const res = { w: Array.from(out.weight.dataSync()), r: Array.from(out.rectification.dataSync()), event: events[0] };
    tf.dispose([image, out.weight, out.rectification, out.logit!]);
    rect.dispose();
    return res;
  };
  const red = run('redistribute');
  const rep = run('replace');
  t.deepEqual(rep.w, rep.r);
  const kept = red.r.slice(8);
  const rBar = kept.reduce((a, b) => a + b, 0) / kept.length;
  t.true(Math.abs(red.event.rBar! - rBar) < 1e-6, `r̄ ${red.event.rBar} vs ${rBar}`);
  t.true(red.w.slice(0, 8).every((w) => w === 0), 'no weight where q = 0');
  red.w.slice(8).forEach((w, i) => t.true(Math.abs(w - Math.min(1, (0.25 * kept[i]) / rBar)) < 1e-6));
  const total = red.w.reduce((a, b) => a + b, 0);
  t.true(total <= 56 * 0.25 + 1e-4 && total > 0.9 * 56 * 0.25, `Σw ${total} vs Σq ${56 * 0.25}`);
  tf.dispose([embedding, logProbs, q, pseudo.labels, pseudo.probs]);
});


test.serial('rectificationGradient false: the same r, weight and logit, computed off the tape; with a weight that keeps its gradient r stays on it', (t) => {
  const { embedding, logProbs } = inputs(GRID);
  const q = tf.fill([1, 8, 8], 0.5) as tf.Tensor3D;
  const pseudo = { labels: tf.zeros([1, 8, 8], 'int32') as tf.Tensor3D, weight: q, probs: tf.zeros([1, 8, 8, K]) as tf.Tensor4D };
  const image = tf.zeros([1, 8, 8, 3]) as tf.Tensor4D;
  const tape = () => ((tf.engine() as unknown as { state: { activeTape: { kernelName: string }[] | null } }).state.activeTape ?? []).map((n) => n.kernelName);
  // the query's kernels (its first layer's convolution, the MLP's products); the weighting's element-wise ops
  // after it are recorded either way
  const query = (names: string[]) => names.filter((n) => /Conv2D|MatMul|Ir2f/.test(n)).length;
  const run = (detachWeight: boolean, rectificationGradient: boolean) => {
    const rect = new InrRectifier({ detachWeight, calibrationWeight: 0, seed: 3 }, { embeddingChannels: E, numClasses: K });
    let recorded = 0;
    let values: number[][] = [];
    // the loss is Σ weight (+ 0 · a ψ tensor, so that some path reaches ψ), so ψ's gradient is nonzero exactly
    // when the weight carries one
    const { value, grads } = tf.variableGrads(() => {
      const t0 = tape().length;
      const out = rect.rectify({ pseudo, features: embedding, logProbs, image, rectificationGradient }, { step: 0, training: true, rng: new Rng(0) });
      recorded = query(tape().slice(t0));
      values = [out.weight, out.rectification, out.logit!].map((x) => Array.from(x.dataSync()));
      return tf.add(tf.sum(out.weight), tf.mul(tf.sum(rect.variables[0]), 0)) as tf.Scalar;
    }, rect.variables as tf.Variable[]);
    const gradNorm = Object.values(grads).reduce((a, g) => a + tf.tidy(() => tf.sum(tf.abs(g)).dataSync()[0]), 0);
    tf.dispose([value, ...Object.values(grads)]);
    rect.dispose();
    return { recorded, values, gradNorm };
  };
  const onTape = run(true, true);
  const off = run(true, false);
  // the tiled graph off the tape, the fused kernels on it: equal up to float rounding
  off.values.forEach((v, i) => v.forEach((x, j) => t.true(Math.abs(x - onTape.values[i][j]) < 1e-5, `${i}[${j}]: ${x} vs ${onTape.values[i][j]}`)));
  t.is(off.recorded, 0, 'the query recorded nothing on the tape');
  t.true(onTape.recorded > 0);
  // a weight that keeps its gradient: r must stay on the tape whatever the loss says
  const kept = run(false, false);
  t.true(kept.recorded > 0 && kept.gradNorm > 0, `recorded ${kept.recorded}, |∇ψ| ${kept.gradNorm}`);
  tf.dispose([embedding, logProbs, q, pseudo.labels, pseudo.probs, image]);
});
