import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend, Rng } from '@ir2f/core';
import { ToySegNet, weightedCrossEntropy } from '../../../examples/toy/toy-seg-net.js';
import { makeToyBatch } from '../../../examples/toy/toy-task.js';
import { onBackend, randomArray, relativeError } from '../../runtime/test/backend-helpers.js';

test.before(async () => {
  await initBackend('wasm');
});

/** Filter with (d−1) zeros inserted between taps: the undilated twin of a dilated filter. */
function zeroInserted(w: Float32Array, shape: number[], [dh, dw]: [number, number]): { values: Float32Array; shape: number[] } {
  const [KH, KW, A, B] = shape;
  const EH = (KH - 1) * dh + 1;
  const EW = (KW - 1) * dw + 1;
  const out = new Float32Array(EH * EW * A * B);
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      out.set(w.subarray((kh * KW + kw) * A * B, (kh * KW + kw + 1) * A * B), (kh * dh * EW + kw * dw) * A * B);
    }
  }
  return { values: out, shape: [EH, EW, A, B] };
}

const DILATED_CASES = [
  { x: [2, 9, 11, 3], f: [3, 3, 3, 4], d: [2, 2], pad: 'same' },
  { x: [1, 12, 10, 2], f: [3, 2, 2, 3], d: [3, 2], pad: 'valid' },
  { x: [1, 13, 13, 4], f: [3, 3, 4, 1], d: [6, 6], pad: 'same' },
  { x: [2, 8, 9, 2], f: [2, 3, 2, 2], d: [2, 3], pad: [[0, 0], [1, 2], [2, 0], [0, 0]] },
] as const;

type Conv = (x: tf.Tensor4D, w: tf.Tensor4D, d: [number, number], pad: never) => tf.Tensor4D;
const ops: Record<string, Conv> = {
  conv2d: (x, w, d, pad) => tf.conv2d(x, w, 1, pad, 'NHWC', d),
  depthwiseConv2d: (x, w, d, pad) => tf.depthwiseConv2d(x, w, 1, pad, 'NHWC', d),
};

for (const backend of ['wasm', 'cpu']) {
  for (const [opName, op] of Object.entries(ops)) {
    test(`dilated ${opName} gradients on ${backend}: equal to the zero-inserted undilated filter's, and to finite differences`, async (t) => {
      for (const c of DILATED_CASES) {
        const xs = randomArray((c.x as readonly number[]).reduce((a, b) => a * b, 1), 5);
        const ws = randomArray((c.f as readonly number[]).reduce((a, b) => a * b, 1), 6);
        const d = [...c.d] as [number, number];
        const zi = zeroInserted(ws, [...c.f], d);
        const pad = c.pad as never;
        const res = await onBackend(backend, () => tf.tidy(() => {
          const x = tf.tensor4d(xs, [...c.x] as [number, number, number, number]);
          const w = tf.tensor4d(ws, [...c.f] as [number, number, number, number]);
          const wz = tf.tensor4d(zi.values, zi.shape as [number, number, number, number]);
          const y = op(x, w, d, pad);
          const r = tf.tensor4d(randomArray(y.size, 7), y.shape);
          const f = (a: tf.Tensor4D, b: tf.Tensor4D) => tf.sum(tf.mul(op(a, b, d, pad), r));
          const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => f(a as tf.Tensor4D, b as tf.Tensor4D))([x, w]);
          const fz = (a: tf.Tensor4D, b: tf.Tensor4D) => tf.sum(tf.mul(op(a, b, [1, 1], pad), r));
          const [gxz, gwz] = tf.grads((a: tf.Tensor, b: tf.Tensor) => fz(a as tf.Tensor4D, b as tf.Tensor4D))([x, wz]);
          // finite differences on a few entries of x and w: f is linear in each, so central differences are exact up to rounding
          const eps = 0.25;
          const fd = (which: 'x' | 'w', i: number) => {
            const base = which === 'x' ? xs : ws;
            const plus = Float32Array.from(base);
            const minus = Float32Array.from(base);
            plus[i] += eps;
            minus[i] -= eps;
            const mk = (v: Float32Array) => tf.tensor4d(v, (which === 'x' ? c.x : c.f) as unknown as [number, number, number, number]);
            const fp = which === 'x' ? f(mk(plus), w) : f(x, mk(plus));
            const fm = which === 'x' ? f(mk(minus), w) : f(x, mk(minus));
            return (fp.dataSync()[0] - fm.dataSync()[0]) / (2 * eps);
          };
          const xi = [0, 7, xs.length - 1];
          const wi = [0, 3, ws.length - 1];
          return {
            gx: gx.dataSync() as Float32Array, gw: gw.dataSync() as Float32Array,
            gxz: gxz.dataSync() as Float32Array, gwz: gwz.dataSync() as Float32Array,
            fdx: xi.map((i) => fd('x', i)), fdw: wi.map((i) => fd('w', i)), xi, wi,
            undilatedSame: tf.max(tf.abs(tf.sub(y, op(x, wz, [1, 1], pad)))).dataSync()[0],
          };
        }));
        const label = `${opName} ${JSON.stringify(c)}`;
        t.true(res.undilatedSame < 1e-4, `forward twin ${label}`);
        t.true(relativeError(res.gx, res.gxz) < 1e-4, `dx vs zero-inserted ${label}`);
        // gradient of the dilated filter = gradient of its twin at the non-zero taps
        const taps = tapsOf(res.gwz, [...c.f], d);
        t.true(relativeError(res.gw, taps) < 1e-4, `dw vs zero-inserted ${label}`);
        res.xi.forEach((i, k) => t.true(Math.abs(res.gx[i] - res.fdx[k]) < 2e-3, `dx fd ${label} @${i}`));
        res.wi.forEach((i, k) => t.true(Math.abs(res.gw[i] - res.fdw[k]) < 2e-3 * Math.max(1, Math.abs(res.fdw[k])), `dw fd ${label} @${i}`));
      }
    });
  }
}

/** Read the taps of a zero-inserted filter's gradient back into the dilated filter's shape. */
function tapsOf(gz: Float32Array, shape: number[], [dh, dw]: [number, number]): Float32Array {
  const [KH, KW, A, B] = shape;
  const EW = (KW - 1) * dw + 1;
  const out = new Float32Array(KH * KW * A * B);
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      const src = (kh * dh * EW + kw * dw) * A * B;
      out.set(gz.subarray(src, src + A * B), (kh * KW + kw) * A * B);
    }
  }
  return out;
}

test('tf.grads of a small conv net (conv, dilated conv, depthwise, batch norm, resize, gather) agree between wasm and cpu', async (t) => {
  const grads = async (backend: string) => onBackend(backend, () => {
    const rng = new Rng(11);
    const net = new ToySegNet({ numClasses: 4, width: 8 }, rng.fork('init'));
    const batch = makeToyBatch(rng.fork('data'), 2, 32);
    const result = tf.tidy(() => {
      const cw = tf.tensor1d([0.5, 1, 2, 1.5]);
      const { value, grads: g } = tf.variableGrads(
        () => weightedCrossEntropy(net.forward(batch.images, true), batch.labels, cw), net.trainable);
      return { loss: value.dataSync()[0], grads: net.trainable.map((v) => g[v.name].dataSync() as Float32Array) };
    });
    net.dispose();
    tf.dispose([batch.images, batch.labels]);
    return result;
  });
  const w = await grads('wasm');
  const c = await grads('cpu');
  t.true(Math.abs(w.loss - c.loss) < 1e-5 * Math.max(1, Math.abs(c.loss)));
  t.is(w.grads.length, c.grads.length);
  // each variable against its own scale, floored at 1% of the largest gradient in the net: with the stem's β at
  // its initial 0, relu(γ·x̂) = γ·relu(x̂), and the depthwise conv and batch norm after it act per channel, so the
  // loss does not depend on the stem's γ; its gradient (~1e-6 where the others are ~0.1) is the rounding noise
  // of two backends' summation orders (0.5% of itself between wasm and cpu)
  const netScale = Math.max(...c.grads.map((g) => Math.max(...Array.from(g, Math.abs))));
  w.grads.forEach((g, i) => {
    const err = relativeError(g, c.grads[i], 0.01 * netScale);
    t.true(err < 1e-4, `variable ${i}: relative error ${err}`);
  });
});

test('batch-norm gradients (ir2f override) equal those of the same formula in elementary ops, on wasm and cpu', async (t) => {
  for (const backend of ['wasm', 'cpu']) {
    const res = await onBackend(backend, () => tf.tidy(() => {
      const x = tf.tensor4d(randomArray(2 * 5 * 6 * 3, 31), [2, 5, 6, 3]);
      const mean = tf.tensor1d([0.1, -0.2, 0.05]);
      const variance = tf.tensor1d([0.5, 1.5, 0.8]);
      const offset = tf.tensor1d([0.3, 0, -0.1]);
      const scale = tf.tensor1d([1.2, 0.7, -0.4]);
      const r = tf.tensor4d(randomArray(2 * 5 * 6 * 3, 32), [2, 5, 6, 3]);
      const fused = (a: tf.Tensor, m: tf.Tensor, v: tf.Tensor, o: tf.Tensor, s: tf.Tensor) =>
        tf.sum(tf.mul(tf.batchNorm(a as tf.Tensor4D, m as tf.Tensor1D, v as tf.Tensor1D, o as tf.Tensor1D, s as tf.Tensor1D, 1e-3), r));
      const plain = (a: tf.Tensor, m: tf.Tensor, v: tf.Tensor, o: tf.Tensor, s: tf.Tensor) =>
        tf.sum(tf.mul(tf.add(tf.mul(tf.mul(tf.sub(a, m), tf.rsqrt(tf.add(v, 1e-3))), s), o), r));
      const args = [x, mean, variance, offset, scale];
      return {
        fused: tf.grads(fused)(args).map((g) => g.dataSync() as Float32Array),
        plain: tf.grads(plain)(args).map((g) => g.dataSync() as Float32Array),
      };
    }));
    res.fused.forEach((g, i) => t.true(relativeError(g, res.plain[i]) < 1e-5, `${backend} input ${i}`));
  }
});

test('sum and mean gradients (ir2f: dy broadcast back, no ones array) equal the weights of the reduced output, on wasm and cpu', async (t) => {
  const cases: { shape: number[]; axis: number | number[]; keepDims: boolean }[] = [
    { shape: [2, 5, 6, 3], axis: [0, 1, 2], keepDims: false },
    { shape: [2, 5, 6, 3], axis: [1, 2], keepDims: true },
    { shape: [4, 7], axis: -1, keepDims: false },
    { shape: [3, 4, 5], axis: [0, 2], keepDims: false },
  ];
  for (const backend of ['wasm', 'cpu']) {
    for (const c of cases) {
      for (const op of ['sum', 'mean'] as const) {
        const n = c.shape.reduce((a, b) => a * b, 1);
        const axes = (Array.isArray(c.axis) ? c.axis : [c.axis]).map((a) => (a < 0 ? a + c.shape.length : a));
        const outShape = c.shape.map((d, i) => (axes.includes(i) ? 1 : d)).filter((d, i) => c.keepDims || !axes.includes(i));
        const m = outShape.reduce((a, b) => a * b, 1);
        const w = randomArray(m, 5);
        const grad = await onBackend(backend, () => tf.tidy(() => {
          const f = (x: tf.Tensor) => tf.sum(tf.mul(tf[op](x, c.axis, c.keepDims), tf.tensor(w, outShape)));
          return tf.grad(f)(tf.tensor(randomArray(n, 6), c.shape)).dataSync() as Float32Array;
        }));
        // element i of x feeds output element (its coordinates with the reduced axes dropped); mean divides by their size
        const count = op === 'mean' ? axes.reduce((k, a) => k * c.shape[a], 1) : 1;
        const expected = Float32Array.from({ length: n }, (_, i) => {
          let rest = i;
          let o = 0;
          let stride = 1;
          for (let d = c.shape.length - 1; d >= 0; d--) {
            const coord = rest % c.shape[d];
            rest = Math.floor(rest / c.shape[d]);
            if (!axes.includes(d)) {
              o += coord * stride;
              stride *= c.shape[d];
            }
          }
          return w[o] / count;
        });
        t.true(relativeError(grad, expected) < 1e-6, `${backend} ${op} ${JSON.stringify(c)}`);
      }
    }
  }
});

// tfjs 4.22's own gradient ignores halfPixelCenters and, on cpu, swaps H and W of non-square inputs
const RESIZE_CASES: { x: [number, number, number, number]; size: [number, number]; align: boolean; half: boolean }[] = [
  { x: [2, 3, 5, 2], size: [12, 20], align: false, half: true },
  { x: [1, 4, 4, 3], size: [16, 16], align: false, half: true },
  { x: [1, 6, 5, 1], size: [3, 4], align: false, half: true },
  { x: [1, 3, 4, 2], size: [7, 9], align: true, half: false },
  { x: [2, 2, 3, 1], size: [5, 7], align: false, half: false },
];

for (const backend of ['wasm', 'cpu']) {
  test.serial(`bilinear resize gradient equals the exact adjoint of the forward pass (${backend})`, async (t) => {
    await onBackend(backend, () => {
      for (const c of RESIZE_CASES) {
        const n = c.x.reduce((a, b) => a * b, 1);
        const w = tf.tensor(randomArray(c.x[0] * c.size[0] * c.size[1] * c.x[3], 7), [c.x[0], ...c.size, c.x[3]]);
        const f = (x: tf.Tensor) => tf.sum(tf.mul(w, tf.image.resizeBilinear(x as tf.Tensor4D, c.size, c.align, c.half)));
        const grad = tf.tidy(() => tf.grad(f)(tf.tensor(randomArray(n, 3), c.x)).dataSync());
        // the op is linear, so the gradient's i-th entry is the function at the i-th unit input
        const exact = Float32Array.from({ length: n }, (_, i) => tf.tidy(() => {
          const e = new Float32Array(n);
          e[i] = 1;
          return f(tf.tensor(e, c.x)).dataSync()[0];
        }));
        t.true(relativeError(grad, exact) < 1e-5, `${JSON.stringify(c)}: ${relativeError(grad, exact)}`);
        w.dispose();
      }
    });
  });
}
