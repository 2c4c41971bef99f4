/**
 * s[m] = Σ_n weight[n, m]·(a[n·M + m]·w + b): a linear head with one output (w [K, 1], b [1]) on N groups of M
 * rows, blended per m by weights [N, M], where the rows a are x itself or, given `pre`, relu(x + pre): the
 * previous layer's bias and ReLU, applied as the rows are read. It is the end of a LIIF query: each of the
 * four ensemble neighbours' features through the MLP's last layer, blended by area; with `pre` the previous
 * layer is a plain product (onnxruntime's Gemm without its bias pass: 70 against 94 ms for [524288, 64]·[64, 64]).
 * The composition is a product with one output column (~7 ms on onnxruntime for 131072 rows inside a training
 * step, against ~2 for one read of x), a multiply and a sum, and backward an outer product writing dx, a ReLU
 * mask, a product for dw and three reductions. Here it is one pass over x forward and one backward (dx with
 * the mask, dw, db and pre's gradient together), as wasm SIMD kernels (simd/kernels.wat) or JS loops on cpu;
 * elsewhere the composition runs.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel, registerOnce } from '../kernels/host-kernel.js';

const ED = 'Ir2fEnsembleDot';
const ED_GRAD = 'Ir2fEnsembleDotGrad';

/** The composition the kernels replace (and the reference their tests compare with). */
export function ensembleDotComposed(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, weight: tf.Tensor2D, pre?: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const rows = pre ? tf.relu(tf.add(x, pre)) as tf.Tensor2D : x;
    return tf.sum(tf.mul(tf.reshape(tf.add(tf.matMul(rows, w), b), weight.shape), weight), 0) as tf.Tensor1D;
  });
}

/**
 * Σ_n weight[n, m]·(a[n·M + m]·w + b) for x [N·M, K], w [K, 1], b [1], weight [N, M] → [M], with rows a = x, or
 * a = relu(x + pre) for pre [K].
 */
export function ensembleDot(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, weight: tf.Tensor2D, pre?: tf.Tensor1D): tf.Tensor1D {
  const [N, M] = weight.shape;
  const K = w.shape[0];
  if (x.rank !== 2 || w.rank !== 2 || b.rank !== 1 || weight.rank !== 2 || x.shape[0] !== N * M || x.shape[1] !== K || w.shape[1] !== 1 || b.shape[0] !== 1
    || (pre && (pre.rank !== 1 || pre.shape[0] !== K))) {
    throw new Error(`ensembleDot: needs x [N·M, K], w [K, 1], b [1], weight [N, M] (and pre [K]); got x ${JSON.stringify(x.shape)}, w ${JSON.stringify(w.shape)}, `
      + `b ${JSON.stringify(b.shape)}, weight ${JSON.stringify(weight.shape)}${pre ? `, pre ${JSON.stringify(pre.shape)}` : ''}`);
  }
  registerEnsembleDot();
  if (![x, w, b, weight, ...(pre ? [pre] : [])].every((t) => t.dtype === 'float32') || !hasHostKernel(ED)) return ensembleDotComposed(x, w, b, weight, pre);
  // without pre the kernel adds zeros and applies no ReLU: x + 0 is x
  return tf.tidy(() => tf.engine().runKernel(ED, { x, pre: pre ?? tf.zeros([K]), w, b, weight }, { relu: pre !== undefined }) as tf.Tensor1D);
}

/** The JS forms (cpu backend), the same maths as kernels.wat's. */
function forward(X: Float32Array, pre: Float32Array, relu: boolean, W: Float32Array, b: number, Wt: Float32Array, N: number, M: number, out: Float32Array): void {
  const K = W.length;
  for (let m = 0; m < M; m++) {
    let acc = 0;
    for (let n = 0; n < N; n++) {
      const r = n * M + m;
      let d = 0;
      for (let k = 0; k < K; k++) {
        const a = Math.fround(X[r * K + k] + pre[k]);
        d += (relu && a < 0 ? 0 : a) * W[k];
      }
      acc = Math.fround(acc + Math.fround(Wt[r] * Math.fround(d + b)));
    }
    out[m] = acc;
  }
}

function backward(ds: Float32Array, X: Float32Array, pre: Float32Array, relu: boolean, W: Float32Array, Wt: Float32Array, M: number,
  dx: Float32Array, dw: Float32Array, db: Float32Array, dpre: Float32Array): void {
  const K = W.length;
  const [accW, accPre] = [new Float64Array(K), new Float64Array(K)];
  let g0 = 0;
  for (let r = 0; r < Wt.length; r++) {
    const g = Math.fround(ds[r % M] * Wt[r]);
    g0 += g;
    for (let k = 0; k < K; k++) {
      const a = Math.fround(X[r * K + k] + pre[k]);
      const on = !relu || a > 0;
      const d = on ? g * W[k] : 0;
      dx[r * K + k] = d;
      accPre[k] += d;
      accW[k] += g * (relu && a < 0 ? 0 : a);
    }
  }
  dw.set(accW);
  db[0] = g0;
  dpre.set(accPre);
}

const registerEnsembleDot = registerOnce(() => {
  registerHostKernel({
    name: ED,
    outputShapes: (s) => [[s.weight[1]]],
    wasm: {
      scratchBytes: () => 0,
      compute: ({ x, pre, w, b, weight }, [out], _scratch, { f32, simd }, attrs) => {
        const [N, M] = weight.shape;
        simd.ensembleDot(x.ptr, pre.ptr, attrs.relu ? 1 : 0, w.ptr, f32[b.ptr / 4], weight.ptr, N, M, w.shape[0], out);
      },
    },
    compute: ({ x, pre, w, b, weight }, [out], attrs) => forward(x.values as Float32Array, pre.values as Float32Array, attrs.relu as boolean,
      w.values as Float32Array, b.values[0], weight.values as Float32Array, weight.shape[0], weight.shape[1], out),
  });
  // inputs ds [M], x, pre, w, weight; attr relu → dx [N·M, K], dw [K, 1], db [1], dpre [K]
  registerHostKernel({
    name: ED_GRAD,
    outputShapes: (s) => [s.x, s.w, [1], s.pre],
    // scratch: dw's, db's and dpre's float64 sums (2K + 1), then 2K float32 partial sums
    wasm: {
      scratchBytes: (s) => 8 * (2 * s.w[0] + 1) + 8 * s.w[0],
      compute: ({ ds, x, pre, w, weight }, [dx, dw, db, dpre], scratch, { narrow, simd }, attrs) => {
        const [N, M] = weight.shape;
        const K = w.shape[0];
        const [dw64, db64, dpre64] = [scratch, scratch + 8 * K, scratch + 8 * (K + 1)];
        simd.ensembleDotGrad(ds.ptr, x.ptr, pre.ptr, attrs.relu ? 1 : 0, w.ptr, weight.ptr, N, M, K, dx, scratch + 8 * (2 * K + 1), dw64, db64, dpre64);
        narrow(dw64, K, dw);
        narrow(db64, 1, db);
        narrow(dpre64, K, dpre);
      },
    },
    compute: ({ ds, x, pre, w, weight }, [dx, dw, db, dpre], attrs) => backward(ds.values as Float32Array, x.values as Float32Array,
      pre.values as Float32Array, attrs.relu as boolean, w.values as Float32Array, weight.values as Float32Array, weight.shape[1], dx, dw, db, dpre),
  });
  tf.registerGradient({
    kernelName: ED,
    inputsToSave: ['x', 'pre', 'w', 'b', 'weight'],
    gradFunc: (ds, saved, attrs) => {
      const [x, pre, w, b, weight] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor2D, tf.Tensor1D, tf.Tensor2D];
      const relu = (attrs as { relu: boolean }).relu;
      // one kernel gives dx, dw, db and dpre; the grads tfjs does not ask for are disposed by its backward tidy
      const [dx, dw, db, dpre] = tf.engine().runKernel(ED_GRAD, { ds: ds as tf.Tensor, x, pre, w, weight }, { relu }) as tf.Tensor[];
      // the weights' gradient (not needed by a query, whose weights are geometry) from the composition
      const dWeight = () => {
        const rows = relu ? tf.relu(tf.add(x, pre)) : tf.add(x, pre);
        return tf.mul(tf.reshape(tf.add(tf.matMul(rows, w), b), weight.shape), tf.expandDims(ds as tf.Tensor1D, 0));
      };
      return { x: () => dx, pre: () => dpre, w: () => dw, b: () => db, weight: dWeight };
    },
  });
});
