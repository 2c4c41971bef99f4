/**
 * A dense layer y = act(x·w + b) (act: linear or relu) that stays one product kernel under a gradient tape.
 * tfjs's `tf.fused.matMul` fuses a bias and a ReLU only when no gradient is recorded; under the tape it runs
 * the product, a bias add and a ReLU (three passes over the output), and backward a step, a multiply and a
 * column sum. Here the forward is the `_FusedMatMul` kernel (onnxruntime's Gemm + Relu, or the backend's fused
 * product) under a custom gradient: dz = dy·[y > 0] and db = Σ_rows dz in one pass (a host kernel on wasm and
 * cpu, SIMD on wasm), then dx = dz·wᵀ and dw = xᵀ·dz. On a [131072, 64]·[64, 64] ReLU layer (a LIIF query
 * MLP's) the composition's bias add took ~13 ms a call and its backward step, multiply and sum ~20 ms
 * (tf.profile, one wasm thread); the one-pass mask and sum takes ~4.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel, registerOnce } from '../kernels/host-kernel.js';

export type DenseActivation = 'linear' | 'relu';

const RELU_GRAD = 'Ir2fReluGradBias';

/** The composition (tfjs's own ops, and its gradient): the reference the tests compare with. */
export function denseComposed(x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor1D, activation: DenseActivation = 'linear'): tf.Tensor2D {
  return tf.tidy(() => {
    let y: tf.Tensor2D = tf.matMul(x, w);
    if (bias) y = tf.add(y, bias);
    return activation === 'relu' ? tf.relu(y) : y;
  });
}

/** act(x·w + bias) for x [M, K], w [K, N], bias [N] (optional). */
export function dense(x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor1D, activation: DenseActivation = 'linear'): tf.Tensor2D {
  if (x.rank !== 2 || w.rank !== 2 || x.shape[1] !== w.shape[0] || (bias && (bias.rank !== 1 || bias.shape[0] !== w.shape[1]))) {
    throw new Error(`dense: needs x [M, K], w [K, N] and bias [N]; got x ${JSON.stringify(x.shape)}, w ${JSON.stringify(w.shape)}`
      + (bias ? `, bias ${JSON.stringify(bias.shape)}` : ''));
  }
  if (activation !== 'linear' && activation !== 'relu') throw new Error(`dense: activation '${String(activation)}' is not one of linear, relu`);
  registerReluGrad();
  // the kernel takes rank-3 operands (tfjs's op reshapes too; the wasm kernel reads three dims)
  const product = (a: tf.Tensor2D, b: tf.Tensor2D, c?: tf.Tensor1D) => tf.tidy(() => tf.reshape(tf.engine().runKernel('_FusedMatMul',
    { a: tf.reshape(a, [1, ...a.shape]), b: tf.reshape(b, [1, ...b.shape]), ...(c ? { bias: c } : {}) },
    { transposeA: false, transposeB: false, activation } as unknown as tf.NamedAttrMap) as tf.Tensor, [a.shape[0], b.shape[1]]) as tf.Tensor2D);
  // dz and the bias gradient from dy and the output
  const backward = (dy: tf.Tensor2D, y: tf.Tensor2D, withBias: boolean): [tf.Tensor2D, tf.Tensor1D | undefined] => {
    if (activation === 'linear') return [dy, withBias ? tf.sum(dy, 0) : undefined];
    // the host kernel's column sums cost little next to its mask pass: taken even without a bias
    if (hasHostKernel(RELU_GRAD)) {
      const [dz, db] = tf.engine().runKernel(RELU_GRAD, { dy, y }, {}) as [tf.Tensor2D, tf.Tensor1D];
      if (!withBias) db.dispose();
      return [dz, withBias ? db : undefined];
    }
    const dz = tf.mul(dy, tf.step(y)) as tf.Tensor2D;
    return [dz, withBias ? tf.sum(dz, 0) : undefined];
  };
  const inputs = bias ? [x, w, bias] : [x, w];
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [a, b, c] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D | undefined];
    const y = product(a, b, c);
    save([a, b, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [sa, sb, sy]: tf.Tensor[]) => {
        const [dz, db] = backward(dy as tf.Tensor2D, sy as tf.Tensor2D, c !== undefined);
        return [tf.matMul(dz, sb, false, true), tf.matMul(sa, dz, true, false), ...(db ? [db] : [])];
      },
    };
  })(...inputs) as tf.Tensor2D;
}

const registerReluGrad = registerOnce(() => {
  // inputs dy, y [M, N] → dz [M, N], db [N]
  registerHostKernel({
    name: RELU_GRAD,
    outputShapes: (s) => [s.y, [s.y[1]]],
    // scratch: N float64 sums, then N float32 partial sums
    wasm: {
      scratchBytes: (s) => 12 * s.y[1],
      compute: ({ dy, y }, [dz, db], scratch, { narrow, simd }) => {
        const [M, N] = y.shape;
        simd.reluGradColSums(dy.ptr, y.ptr, M, N, dz, scratch + 8 * N, scratch);
        narrow(scratch, N, db);
      },
    },
    compute: ({ dy, y }, [dz, db]) => {
      const [D, Y] = [dy.values as Float32Array, y.values as Float32Array];
      const N = y.shape[1];
      const acc = new Float64Array(N);
      for (let i = 0; i < Y.length; i++) {
        const v = Y[i] > 0 ? D[i] : 0;
        dz[i] = v;
        acc[i % N] += v;
      }
      db.set(acc);
    },
  });
});
