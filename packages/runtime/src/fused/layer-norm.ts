/**
 * Layer normalisation over the last axis, y = (x − μ)·rstd·γ + β with rstd = 1/√(σ² + ε), as one kernel and
 * one gradient kernel on the host backends (wasm, cpu). The composition (moments, subtract, rsqrt, two
 * multiplies, add) is ~10 kernels forward and ~30 backward, each a pass over memory with its broadcast
 * reductions; a transformer step runs dozens of these, and their dispatches dominate small-crop steps.
 * On wasm the kernels are SIMD (simd/kernels.wat), on cpu JS loops: a JS loop over the wasm heap ran 2–4×
 * slower than the composition's SIMD kernels. Fwd+bwd on [2, 32, 32, 256], one wasm thread: 0.9 ms, the
 * composition 5.3 ms (session 12, `npm run bench -- backend`; session 10's JS loops took 7.8). Elsewhere (webgl,
 * tfjs-node) the composition runs, with tfjs's own gradient.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel, registerOnce } from '../kernels/host-kernel.js';
import { checkScaleShift } from './scale-shift.js';

const LAYER_NORM = 'Ir2fLayerNorm';
const LAYER_NORM_GRAD = 'Ir2fLayerNormGrad';

/** The composition the kernels replace (and the reference their tests compare with). */
export function layerNormComposed(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), gamma), beta);
  });
}

/** Layer normalisation of `x` over its last axis with scale `gamma` and shift `beta` (both [C]). */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): tf.Tensor {
  checkScaleShift('layerNorm', x, gamma, beta);
  registerLayerNorm();
  if (x.dtype === 'float32' && hasHostKernel(LAYER_NORM)) return tf.engine().runKernel(LAYER_NORM, { x, gamma, beta }, { eps }) as tf.Tensor;
  return layerNormComposed(x, gamma, beta, eps);
}

/** Row statistics in float64 (as the composition's two-pass mean and variance, without its rounding). */
function rowStats(X: Float32Array, o: number, C: number, eps: number): [number, number] {
  let s = 0;
  for (let c = 0; c < C; c++) s += X[o + c];
  const mu = s / C;
  let v = 0;
  for (let c = 0; c < C; c++) {
    const d = X[o + c] - mu;
    v += d * d;
  }
  return [mu, 1 / Math.sqrt(v / C + eps)];
}

const registerLayerNorm = registerOnce(() => {
  registerHostKernel({
    name: LAYER_NORM,
    outputShapes: (s) => [s.x],
    // on wasm one SIMD pass for each row's statistics, one for y
    wasm: {
      scratchBytes: () => 0,
      compute: ({ x, gamma, beta }, [y], _scratch, { simd }, attrs) => {
        const C = gamma.shape[0];
        simd.layerNorm(x.ptr, x.shape.reduce((a, b) => a * b, 1) / C, C, attrs.eps as number, gamma.ptr, beta.ptr, y);
      },
    },
    compute: ({ x, gamma, beta }, [y], attrs) => {
      const eps = attrs.eps as number;
      const X = x.values as Float32Array;
      const G = gamma.values as Float32Array;
      const B = beta.values as Float32Array;
      const C = G.length;
      for (let o = 0; o < X.length; o += C) {
        const [mu, rstd] = rowStats(X, o, C, eps);
        // a row with a NaN or ±∞ in it is NaN throughout, as JS's own (positive) NaN: the wasm backend's relu
        // zeroes a NaN whose sign bit is set, and a bad input must reach the loss as NaN
        if (!Number.isFinite(mu * rstd)) y.fill(Number.NaN, o, o + C);
        else for (let c = 0; c < C; c++) y[o + c] = (X[o + c] - mu) * rstd * G[c] + B[c];
      }
    },
  });
  // dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·γ; dγ = Σ dy·x̂, dβ = Σ dy over the rows: one pass each
  // row (the statistics are recomputed from x: cheaper than keeping two more tensors alive on the tape)
  registerHostKernel({
    name: LAYER_NORM_GRAD,
    outputShapes: (s) => [s.x, [s.gamma[0]], [s.gamma[0]]],
    // on wasm the same two passes a row in SIMD; scratch: 2C float32 partial column sums, 2C float64 sums
    wasm: {
      scratchBytes: (s) => 24 * s.gamma[0],
      compute: ({ dy, x, gamma }, [dx, dgamma, dbeta], scratch, { narrow, simd }, attrs) => {
        const C = gamma.shape[0];
        const [dg, db] = [scratch + 8 * C, scratch + 16 * C];
        simd.layerNormGrad(dy.ptr, x.ptr, x.shape.reduce((a, b) => a * b, 1) / C, C, attrs.eps as number, gamma.ptr, dx, scratch, dg, db);
        narrow(dg, C, dgamma);
        narrow(db, C, dbeta);
      },
    },
    compute: ({ dy, x, gamma }, [dx, dgamma, dbeta], attrs) => {
      const eps = attrs.eps as number;
      const X = x.values as Float32Array;
      const D = dy.values as Float32Array;
      const G = gamma.values as Float32Array;
      const C = G.length;
      const dg = new Float64Array(C);
      const db = new Float64Array(C);
      for (let o = 0; o < X.length; o += C) {
        const [mu, rstd] = rowStats(X, o, C, eps);
        let sg = 0;
        let sgx = 0;
        for (let c = 0; c < C; c++) {
          const xh = (X[o + c] - mu) * rstd;
          const d = D[o + c];
          const g = d * G[c];
          sg += g;
          sgx += g * xh;
          dg[c] += d * xh;
          db[c] += d;
        }
        const mg = sg / C;
        const mgx = sgx / C;
        for (let c = 0; c < C; c++) dx[o + c] = rstd * (D[o + c] * G[c] - mg - (X[o + c] - mu) * rstd * mgx);
      }
      dgamma.set(dg);
      dbeta.set(db);
    },
  });
  tf.registerGradient({
    kernelName: LAYER_NORM,
    inputsToSave: ['x', 'gamma'],
    gradFunc: (dy, saved, attrs) => {
      const [x, gamma] = saved as [tf.Tensor, tf.Tensor1D];
      // one kernel gives all three; the grads tfjs does not ask for are disposed by its backward tidy
      const [dx, dgamma, dbeta] = tf.engine().runKernel(LAYER_NORM_GRAD, { dy: dy as tf.Tensor, x, gamma }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      return { x: () => dx, gamma: () => dgamma, beta: () => dbeta };
    },
  });
});
