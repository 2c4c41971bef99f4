/**
 * Batch normalisation with batch statistics (training form) over every axis but the last: the per-channel
 * mean μ and biased variance σ² of x, and y = (x − μ)·rstd·γ + β with rstd = 1/√(σ² + ε), as one kernel and
 * one gradient kernel on the host backends (wasm, cpu). The composition (moments, then FusedBatchNorm) is ~8
 * kernels forward and ~20 backward, most of them broadcasts and reductions over the full activation; a
 * ResNet step runs one per convolution. μ and σ² are outputs (for running averages) and are differentiated
 * too. The gain is memory more than time: the tape keeps x alone instead of x − μ, its square and the
 * rest, which took a mit-tiny-daformer replica's wasm heap at 256² from 911 to 711 MiB (one replica, layer
 * norm fused already; session 10). Forward+backward time is on a par with the composition's at
 * [2, 64, 64, 256] (81 vs 79 ms CPU) and ahead below ~64k elements (0.6 vs 1.3 ms at [4, 32, 1, 64]).
 * Elsewhere (webgl, tfjs-node) the composition runs.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel } from '../kernels/host-kernel.js';
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

let registered = false;

function registerBatchNormTrain(): void {
  if (registered) return;
  registered = true;
  registerHostKernel({
    name: BN_TRAIN,
    outputShapes: (s) => [s.x, [s.gamma[0]], [s.gamma[0]]],
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
      for (let c = 0; c < C; c++) {
        a[c] = G[c] / Math.sqrt(v[c] + eps);
        b[c] = B[c] - mu[c] * a[c];
        // a channel with a NaN or ±∞ in it is NaN throughout, as JS's own (positive) NaN: the wasm backend's
        // relu zeroes a NaN whose sign bit is set, and a bad input must reach the loss as NaN
        if (!Number.isFinite(a[c] + b[c])) a[c] = b[c] = Number.NaN;
      }
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
}
