/**
 * s[m] = Σ_n weight[n, m]·(x[n·M + m]·w + b): a linear head with one output (w [K, 1], b [1]) on N groups of M
 * rows, blended per m by weights [N, M]. It is the end of a LIIF query: each of the four ensemble neighbours'
 * MLP features through the last layer, blended by area. The composition is a [N·M, K]·[K, 1] product (its own
 * pass over x, and on onnxruntime ~7 ms for 131072 rows inside a training step against ~2 for the same read),
 * a multiply and a sum, and backward an outer product writing dx, a product for dw and the two reductions.
 * Here it is one pass over x forward and one backward (dx = g·wᵀ and dw = Σ g·x with g = ds·weight, db = Σ g),
 * as wasm SIMD kernels (simd/kernels.wat) or JS loops on cpu; elsewhere the composition runs.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel } from '../kernels/host-kernel.js';

const ED = 'Ir2fEnsembleDot';
const ED_GRAD = 'Ir2fEnsembleDotGrad';

/** The composition the kernels replace (and the reference their tests compare with). */
export function ensembleDotComposed(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, weight: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.sum(tf.mul(tf.reshape(tf.add(tf.matMul(x, w), b), weight.shape), weight), 0) as tf.Tensor1D);
}

/** Σ_n weight[n, m]·(x[n·M + m]·w + b) for x [N·M, K], w [K, 1], b [1], weight [N, M] → [M]. */
export function ensembleDot(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, weight: tf.Tensor2D): tf.Tensor1D {
  const [N, M] = weight.shape;
  const K = w.shape[0];
  if (x.rank !== 2 || w.rank !== 2 || b.rank !== 1 || weight.rank !== 2 || x.shape[0] !== N * M || x.shape[1] !== K || w.shape[1] !== 1 || b.shape[0] !== 1) {
    throw new Error(`ensembleDot: needs x [N·M, K], w [K, 1], b [1] and weight [N, M]; got x ${JSON.stringify(x.shape)}, w ${JSON.stringify(w.shape)}, `
      + `b ${JSON.stringify(b.shape)}, weight ${JSON.stringify(weight.shape)}`);
  }
  registerEnsembleDot();
  if ([x, w, b, weight].every((t) => t.dtype === 'float32') && hasHostKernel(ED)) return tf.engine().runKernel(ED, { x, w, b, weight }, {}) as tf.Tensor1D;
  return ensembleDotComposed(x, w, b, weight);
}

/** The JS forms (cpu backend), the same maths as kernels.wat's. */
function forward(X: Float32Array, W: Float32Array, b: number, Wt: Float32Array, N: number, M: number, out: Float32Array): void {
  const K = W.length;
  for (let m = 0; m < M; m++) {
    let acc = 0;
    for (let n = 0; n < N; n++) {
      const r = n * M + m;
      let d = 0;
      for (let k = 0; k < K; k++) d += X[r * K + k] * W[k];
      acc = Math.fround(acc + Math.fround(Wt[r] * Math.fround(d + b)));
    }
    out[m] = acc;
  }
}

function backward(ds: Float32Array, X: Float32Array, W: Float32Array, Wt: Float32Array, M: number, dx: Float32Array, dw: Float32Array, db: Float32Array): void {
  const K = W.length;
  const acc = new Float64Array(K);
  let g0 = 0;
  for (let r = 0; r < Wt.length; r++) {
    const g = Math.fround(ds[r % M] * Wt[r]);
    g0 += g;
    for (let k = 0; k < K; k++) {
      dx[r * K + k] = g * W[k];
      acc[k] += g * X[r * K + k];
    }
  }
  dw.set(acc);
  db[0] = g0;
}

let registered = false;

function registerEnsembleDot(): void {
  if (registered) return;
  registered = true;
  registerHostKernel({
    name: ED,
    outputShapes: (s) => [[s.weight[1]]],
    wasm: {
      scratchBytes: () => 0,
      compute: ({ x, w, b, weight }, [out], _scratch, { f32, simd }) => {
        const [N, M] = weight.shape;
        simd.ensembleDot(x.ptr, w.ptr, f32[b.ptr / 4], weight.ptr, N, M, w.shape[0], out);
      },
    },
    compute: ({ x, w, b, weight }, [out]) => forward(x.values as Float32Array, w.values as Float32Array, b.values[0],
      weight.values as Float32Array, weight.shape[0], weight.shape[1], out),
  });
  // inputs ds [M], x, w, weight → dx [N·M, K], dw [K, 1], db [1]
  registerHostKernel({
    name: ED_GRAD,
    outputShapes: (s) => [s.x, s.w, [1]],
    // scratch: dw's and db's float64 sums (K + 1), then K float32 partial sums
    wasm: {
      scratchBytes: (s) => 8 * (s.w[0] + 1) + 4 * s.w[0],
      compute: ({ ds, x, w, weight }, [dx, dw, db], scratch, { f32, f64, simd }) => {
        const [N, M] = weight.shape;
        const K = w.shape[0];
        simd.ensembleDotGrad(ds.ptr, x.ptr, w.ptr, weight.ptr, N, M, K, dx, scratch + 8 * (K + 1), scratch, scratch + 8 * K);
        f32.set(f64.subarray(scratch / 8, scratch / 8 + K), dw / 4);
        f32[db / 4] = f64[scratch / 8 + K];
      },
    },
    compute: ({ ds, x, w, weight }, [dx, dw, db]) => backward(ds.values as Float32Array, x.values as Float32Array, w.values as Float32Array,
      weight.values as Float32Array, weight.shape[1], dx, dw, db),
  });
  tf.registerGradient({
    kernelName: ED,
    inputsToSave: ['x', 'w', 'b', 'weight'],
    gradFunc: (ds, saved) => {
      const [x, w, b, weight] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, tf.Tensor2D];
      // one kernel gives dx, dw and db; the grads tfjs does not ask for are disposed by its backward tidy
      const [dx, dw, db] = tf.engine().runKernel(ED_GRAD, { ds: ds as tf.Tensor, x, w, weight }, {}) as tf.Tensor[];
      // the weights' gradient (not needed by a query, whose weights are geometry) from the composition
      const dWeight = () => tf.mul(tf.reshape(tf.add(tf.matMul(x, w), b), weight.shape), tf.expandDims(ds as tf.Tensor1D, 0));
      return { x: () => dx, w: () => dw, b: () => db, weight: dWeight };
    },
  });
}
