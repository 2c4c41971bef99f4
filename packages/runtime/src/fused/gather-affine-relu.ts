/**
 * y = relu(T[index] + X·W): rows of a table T [R, H] gathered by int32 `index` [M], plus a low-rank term
 * X [M, K]·W [K, H] (K small: a LIIF query's coordinate or cell offsets), through a ReLU, as one kernel and
 * one gradient kernel on the host backends (wasm, cpu). The composition is four passes over M·H values forward
 * (gather, product, add, relu) and, backward, a mask, a product, a segment sum scattering into T's rows and two
 * products; the gradient kernel is one pass over dy: dz = dy·[y > 0], dT[index[m]] += dz[m], dX = dz·Wᵀ,
 * dW = Xᵀ·dz. On wasm the kernels are SIMD (simd/kernels.wat), on cpu JS loops; elsewhere (webgl, tfjs-node)
 * the composition runs, with tfjs's own gradient. An index outside [0, R) is an error (the composition's
 * gather would read zeros or garbage, depending on the backend).
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel, registerOnce } from '../kernels/host-kernel.js';

const GAR = 'Ir2fGatherAffineRelu';
const GAR_GRAD = 'Ir2fGatherAffineReluGrad';

/** The composition the kernels replace (and the reference their tests compare with). */
export function gatherAffineReluComposed(table: tf.Tensor2D, index: tf.Tensor1D, x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.relu(tf.add(tf.gather(table, index), tf.matMul(x, w))) as tf.Tensor2D);
}

/** relu(table[index] + x·w) for table [R, H], int32 index [M], x [M, K], w [K, H] → [M, H]. */
export function gatherAffineRelu(table: tf.Tensor2D, index: tf.Tensor1D, x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const [M, K, H] = [index.shape[0], w.shape[0], table.shape[1]];
  if (index.dtype !== 'int32' || table.rank !== 2 || x.rank !== 2 || w.rank !== 2 || x.shape[0] !== M || x.shape[1] !== K || w.shape[1] !== H) {
    throw new Error(`gatherAffineRelu: needs table [R, H], int32 index [M], x [M, K], w [K, H]; got table ${JSON.stringify(table.shape)}, `
      + `${index.dtype} index ${JSON.stringify(index.shape)}, x ${JSON.stringify(x.shape)}, w ${JSON.stringify(w.shape)}`);
  }
  registerGatherAffineRelu();
  if ([table, x, w].every((t) => t.dtype === 'float32') && hasHostKernel(GAR)) return tf.engine().runKernel(GAR, { table, index, x, w }, {}) as tf.Tensor2D;
  return gatherAffineReluComposed(table, index, x, w);
}

const outside = (m: number, row: number, R: number) => new Error(`gatherAffineRelu: index[${m}] = ${row} is outside the table's ${R} rows`);

const indexAt = (heap: Float32Array, ptr: number, m: number) => new Int32Array(heap.buffer, ptr + 4 * m, 1)[0];

/** The JS forms (cpu backend), the same maths as kernels.wat's. */
function forward(T: Float32Array, idx: Int32Array, X: Float32Array, W: Float32Array, K: number, H: number, out: Float32Array): void {
  const R = T.length / H;
  for (let m = 0; m < idx.length; m++) {
    const row = idx[m];
    if (!(row >= 0 && row < R)) throw outside(m, row, R);
    for (let j = 0; j < H; j++) {
      let z = 0;
      for (let k = 0; k < K; k++) z += X[m * K + k] * W[k * H + j];
      z = T[row * H + j] + z;
      out[m * H + j] = z < 0 ? 0 : z;
    }
  }
}

function backward(D: Float32Array, Y: Float32Array, idx: Int32Array, X: Float32Array, W: Float32Array, K: number, H: number,
  dT: Float32Array, dX: Float32Array, dW: Float32Array): void {
  const R = dT.length / H;
  const acc = new Float64Array(K * H);
  const dz = new Float32Array(H);
  dT.fill(0); // a wasm heap allocation is not zeroed
  for (let m = 0; m < idx.length; m++) {
    const row = idx[m];
    if (!(row >= 0 && row < R)) throw outside(m, row, R);
    for (let j = 0; j < H; j++) {
      dz[j] = Y[m * H + j] > 0 ? D[m * H + j] : 0;
      dT[row * H + j] += dz[j];
    }
    for (let k = 0; k < K; k++) {
      const xk = X[m * K + k];
      let s = 0;
      for (let j = 0; j < H; j++) {
        s += dz[j] * W[k * H + j];
        acc[k * H + j] += xk * dz[j];
      }
      dX[m * K + k] = s;
    }
  }
  dW.set(acc);
}

const registerGatherAffineRelu = registerOnce(() => {
  registerHostKernel({
    name: GAR,
    outputShapes: (s) => [[s.index[0], s.table[1]]],
    wasm: {
      scratchBytes: () => 0,
      compute: ({ table, index, x, w }, [y], _scratch, { f32, simd }) => {
        const [R, H] = table.shape;
        const bad = simd.gatherAffineRelu(table.ptr, index.ptr, x.ptr, w.ptr, index.shape[0], w.shape[0], H, R, y);
        if (bad >= 0) throw outside(bad, indexAt(f32, index.ptr, bad), R);
      },
    },
    compute: ({ table, index, x, w }, [y]) => forward(table.values as Float32Array, index.values as Int32Array,
      x.values as Float32Array, w.values as Float32Array, w.shape[0], table.shape[1], y),
  });
  // inputs dy, y (the forward's output), index, x, w; attr `rows` (R) → dT [R, H], dX [M, K], dW [K, H]
  registerHostKernel({
    name: GAR_GRAD,
    outputShapes: (s, attrs) => [[attrs.rows as number, s.y[1]], s.x, s.w],
    // scratch: a row of dz and dW's float32 partial sums ((K + 1)·H float32), dW's float64 sums (K·H)
    wasm: {
      scratchBytes: (s) => 4 * (s.w[0] + 1) * s.w[1] + 8 * s.w[0] * s.w[1],
      compute: ({ dy, y, index, x, w }, [dT, dX, dW], scratch, { f32, narrow, simd }, attrs) => {
        const [K, H] = w.shape;
        const R = attrs.rows as number;
        // float64 part first: the scratch base is 8-aligned, the float32 part's length need not be
        const dW64 = scratch;
        const bad = simd.gatherAffineReluGrad(dy.ptr, y.ptr, index.ptr, x.ptr, w.ptr, index.shape[0], K, H, R, dT, dX, scratch + 8 * K * H, dW64);
        if (bad >= 0) throw outside(bad, indexAt(f32, index.ptr, bad), R);
        narrow(dW64, K * H, dW);
      },
    },
    compute: ({ dy, y, index, x, w }, [dT, dX, dW]) => backward(dy.values as Float32Array, y.values as Float32Array, index.values as Int32Array,
      x.values as Float32Array, w.values as Float32Array, w.shape[0], w.shape[1], dT, dX, dW),
  });
  tf.registerGradient({
    kernelName: GAR,
    inputsToSave: ['table', 'index', 'x', 'w'],
    outputsToSave: [true],
    gradFunc: (dy, saved) => {
      const [table, index, x, w, y] = saved as tf.Tensor[];
      // one kernel gives all three; the grads tfjs does not ask for are disposed by its backward tidy
      const [dT, dX, dW] = tf.engine().runKernel(GAR_GRAD, { dy: dy as tf.Tensor, y, index, x, w }, { rows: table.shape[0] }) as tf.Tensor[];
      return { table: () => dT, index: () => tf.zerosLike(index), x: () => dX, w: () => dW };
    },
  });
});
