/**
 * Batch normalisation with batch statistics (training form) over every axis but the last: the per-channel
 * mean μ and biased variance σ² of x, and y = (x − μ)·rstd·γ + β with rstd = 1/√(σ² + ε), as one kernel and
 * one gradient kernel on the host backends (wasm, cpu). The composition (moments, then FusedBatchNorm) is ~8
 * kernels forward and ~20 backward, most of them broadcasts and reductions over the full activation; a
 * ResNet step runs one per convolution. μ and σ² are outputs (for running averages) and are differentiated
 * too. On wasm the two passes each way are SIMD (simd/kernels.wat), on cpu JS loops (a JS loop over the wasm
 * heap ran 2–4× slower than the composition's SIMD kernels). The tape keeps x alone instead of x − μ, its
 * square and the rest: a mit-tiny-daformer replica's wasm heap at 256² went from 911 to 711 MiB (one
 * replica, layer norm fused already; session 10). Fwd+bwd on [2, 32, 32, 256], one wasm thread: 1.6 ms, the
 * composition 4.1 ms (session 12, `npm run bench -- backend`; session 10's JS loops took 7.4).
 * Elsewhere (webgl, tfjs-node) the composition runs.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel, registerOnce, type WasmHostKernel } from '../kernels/host-kernel.js';
import { checkScaleShift } from './scale-shift.js';

const BN_TRAIN = 'Ir2fBatchNormTrain';
const BN_TRAIN_GRAD = 'Ir2fBatchNormTrainGrad';

export interface BatchNormTrainResult {
  y: tf.Tensor;
  /** Per-channel batch mean [C]. */
  mean: tf.Tensor1D;
  /** Per-channel biased batch variance [C] (as tf.moments). */
  variance: tf.Tensor1D;
}

/** The composition the kernels replace (and the reference their tests compare with). */
export function batchNormTrainComposed(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): BatchNormTrainResult {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, x.shape.map((_, i) => i).slice(0, -1));
    return { y: tf.batchNorm(x, mean, variance, beta, gamma, eps), mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D };
  });
}

/** Batch norm of `x` with its own batch statistics, scale `gamma` and shift `beta` (both [C]). */
export function batchNormTrain(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps = 1e-5): BatchNormTrainResult {
  checkScaleShift('batchNormTrain', x, gamma, beta);
  registerBatchNormTrain();
  if (x.dtype === 'float32' && hasHostKernel(BN_TRAIN)) {
    const [y, mean, variance] = tf.engine().runKernel(BN_TRAIN, { x, gamma, beta }, { eps }) as tf.Tensor[];
    return { y, mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D };
  }
  return batchNormTrainComposed(x, gamma, beta, eps);
}

/**
 * Per-channel mean and biased variance of x as rows of C, in one pass: float64 sums of x and x² (σ² = E[x²] −
 * μ² loses ~log10((μ/σ)²) of float64's 16 digits, harmless for activations).
 */
function channelStats(X: Float32Array, C: number): { mu: Float64Array; v: Float64Array } {
  const n = X.length / C;
  const mu = new Float64Array(C);
  const v = new Float64Array(C);
  for (let o = 0; o < X.length; o += C) {
    for (let c = 0; c < C; c++) {
      const x = X[o + c];
      mu[c] += x;
      v[c] += x * x;
    }
  }
  for (let c = 0; c < C; c++) {
    mu[c] /= n;
    v[c] = Math.max(0, v[c] / n - mu[c] * mu[c]);
  }
  return { mu, v };
}

/** The channel's y = x·a + b factors, NaN (JS's positive NaN) where the statistics are not finite. */
function affineFactors(g: number, b: number, mu: number, v: number, eps: number): [number, number] {
  const a = g / Math.sqrt(v + eps);
  const shift = b - mu * a;
  // a channel with a NaN or ±∞ in it is NaN throughout, as JS's own (positive) NaN: the wasm backend's relu
  // zeroes a NaN whose sign bit is set, and a bad input must reach the loss as NaN
  return Number.isFinite(a + shift) ? [a, shift] : [Number.NaN, Number.NaN];
}

/**
 * On wasm: one SIMD pass for the statistics (shifted by row 0), one for y. Scratch: 2C float32 partial sums,
 * 2C float64 sums, 2C float32 factors.
 */
const bnTrainSimd: WasmHostKernel = {
  scratchBytes: (s) => 32 * s.gamma[0],
  compute: ({ x, gamma, beta }, [y, mean, variance], scratch, { f32, f64, simd }, attrs) => {
    const eps = attrs.eps as number;
    const C = gamma.shape[0];
    const n = x.shape.reduce((a, b) => a * b, 1) / C;
    const [acc, s1, s2, pa, pb] = [scratch, scratch + 8 * C, scratch + 16 * C, scratch + 24 * C, scratch + 28 * C];
    simd.colSums(x.ptr, x.ptr, n, C, x.ptr, x.ptr, acc, s1, s2);
    for (let c = 0; c < C; c++) {
      const m = f64[s1 / 8 + c] / n;
      const mu = f32[x.ptr / 4 + c] + m;
      const v = Math.max(0, f64[s2 / 8 + c] / n - m * m);
      [f32[pa / 4 + c], f32[pb / 4 + c]] = affineFactors(f32[gamma.ptr / 4 + c], f32[beta.ptr / 4 + c], mu, v, eps);
      f32[mean / 4 + c] = mu;
      f32[variance / 4 + c] = v;
    }
    simd.colAffine(x.ptr, 0, n, C, pa, 0, pb, y);
  },
};

/**
 * On wasm: one SIMD pass for Σ dy and Σ dy·(x − μ), one for dx = k·dy + p·x + s (the factors as the JS
 * kernel's). Scratch: 2C float32 partial sums, 2C float64 sums, 4C float32 (zeros, k, p, s).
 */
const bnTrainGradSimd: WasmHostKernel = {
  scratchBytes: (s) => 40 * s.gamma[0],
  compute: ({ dy, dmean, dvar, x, gamma, mean, variance }, [dx, dgamma, dbeta], scratch, { f32, f64, simd }, attrs) => {
    const eps = attrs.eps as number;
    const C = gamma.shape[0];
    const n = x.shape.reduce((a, b) => a * b, 1) / C;
    const [acc, s1, s2, zero, pk, pp, ps] = [scratch, scratch + 8 * C, scratch + 16 * C, scratch + 24 * C, scratch + 28 * C, scratch + 32 * C, scratch + 36 * C];
    f32.fill(0, zero / 4, zero / 4 + C);
    simd.colSums(dy.ptr, x.ptr, n, C, zero, mean.ptr, acc, s1, s2);
    for (let c = 0; c < C; c++) {
      const mu = f32[mean.ptr / 4 + c];
      const rstd = 1 / Math.sqrt(f32[variance.ptr / 4 + c] + eps);
      const sd = f64[s1 / 8 + c];
      const sdx = rstd * f64[s2 / 8 + c];
      const k = f32[gamma.ptr / 4 + c] * rstd;
      const p = -k * rstd * sdx / n + 2 * f32[dvar.ptr / 4 + c] / n;
      f32[pk / 4 + c] = k;
      f32[pp / 4 + c] = p;
      f32[ps / 4 + c] = -k * sd / n - p * mu + f32[dmean.ptr / 4 + c] / n;
      f32[dgamma / 4 + c] = sdx;
      f32[dbeta / 4 + c] = sd;
    }
    simd.colAffine(dy.ptr, x.ptr, n, C, pk, pp, ps, dx);
  },
};

const registerBatchNormTrain = registerOnce(() => {
  registerHostKernel({
    name: BN_TRAIN,
    outputShapes: (s) => [s.x, [s.gamma[0]], [s.gamma[0]]],
    wasm: bnTrainSimd,
    compute: ({ x, gamma, beta }, [y, mean, variance], attrs) => {
      const eps = attrs.eps as number;
      const X = x.values as Float32Array;
      const G = gamma.values as Float32Array;
      const B = beta.values as Float32Array;
      const C = G.length;
      const { mu, v } = channelStats(X, C);
      // y = x·a + b per channel
      const a = new Float64Array(C);
      const b = new Float64Array(C);
      for (let c = 0; c < C; c++) [a[c], b[c]] = affineFactors(G[c], B[c], mu[c], v[c], eps);
      for (let o = 0; o < X.length; o += C) for (let c = 0; c < C; c++) y[o + c] = X[o + c] * a[c] + b[c];
      mean.set(mu);
      variance.set(v);
    },
  });
  // with n rows (μ, σ² the forward's), x̂ = (x − μ)·rstd: dβ = Σ dy, dγ = Σ dy·x̂, and
  // dx = γ·rstd·(dy − dβ/n − x̂·dγ/n) + dμ/n + dσ²·2(x − μ)/n (σ²'s own μ-dependence sums to zero)
  registerHostKernel({
    name: BN_TRAIN_GRAD,
    outputShapes: (s) => [s.x, [s.gamma[0]], [s.gamma[0]]],
    wasm: bnTrainGradSimd,
    compute: ({ dy, dmean, dvar, x, gamma, mean, variance }, [dx, dgamma, dbeta], attrs) => {
      const eps = attrs.eps as number;
      const X = x.values as Float32Array;
      const D = dy.values as Float32Array;
      const DM = dmean.values as Float32Array;
      const DV = dvar.values as Float32Array;
      const G = gamma.values as Float32Array;
      const C = G.length;
      const n = X.length / C;
      const mu = mean.values as Float32Array;
      const rstd = Float64Array.from(variance.values as Float32Array, (vc) => 1 / Math.sqrt(vc + eps));
      const sd = new Float64Array(C);
      const sdx = new Float64Array(C);
      for (let o = 0; o < X.length; o += C) {
        for (let c = 0; c < C; c++) {
          const d = D[o + c];
          sd[c] += d;
          sdx[c] += d * X[o + c];
        }
      }
      // Σ dy·x̂ = rstd·(Σ dy·x − μ·Σ dy)
      for (let c = 0; c < C; c++) sdx[c] = rstd[c] * (sdx[c] - mu[c] * sd[c]);
      // dx = x·p + q·dy + s per channel, with the x̂ terms expanded
      const k = new Float64Array(C); // γ·rstd
      const p = new Float64Array(C);
      const s = new Float64Array(C);
      for (let c = 0; c < C; c++) {
        k[c] = G[c] * rstd[c];
        p[c] = -k[c] * rstd[c] * sdx[c] / n + 2 * DV[c] / n;
        s[c] = -k[c] * sd[c] / n - p[c] * mu[c] + DM[c] / n;
      }
      for (let o = 0; o < X.length; o += C) for (let c = 0; c < C; c++) dx[o + c] = k[c] * D[o + c] + p[c] * X[o + c] + s[c];
      dgamma.set(sdx);
      dbeta.set(sd);
    },
  });
  tf.registerGradient({
    kernelName: BN_TRAIN,
    inputsToSave: ['x', 'gamma'],
    // the batch statistics, so the gradient need not pass over x for them again
    outputsToSave: [false, true, true],
    gradFunc: (dys, saved, attrs) => {
      const [x, gamma, mean, variance] = saved as [tf.Tensor, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D];
      const [dy, dmean, dvar] = dys as tf.Tensor[];
      const [dx, dgamma, dbeta] = tf.engine().runKernel(BN_TRAIN_GRAD, {
        dy, dmean, dvar, x, gamma, mean, variance,
      }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      return { x: () => dx, gamma: () => dgamma, beta: () => dbeta };
    },
  });
});
