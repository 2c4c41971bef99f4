/**
 * GELU, exact (erf) form as PyTorch's nn.GELU: y = x·Φ(x) = ½x(1 + erf(x/√2)), as one kernel and one gradient
 * kernel (dy·(Φ(x) + x·φ(x))) on the host backends (wasm, cpu), instead of five kernels forward and ~10
 * backward over the Mix-FFN's widest activations. erf is Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), the
 * approximation tfjs's own Erf kernels use. On wasm the kernels are SIMD (simd/kernels.wat, the exponential a
 * polynomial), on cpu JS loops; elsewhere (webgl, tfjs-node) the composition runs.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel, registerOnce } from '../kernels/host-kernel.js';

const GELU = 'Ir2fGelu';
const GELU_GRAD = 'Ir2fGeluGrad';
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** The composition the kernels replace (and the reference their tests compare with). */
export function geluComposed(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

/** GELU (erf form) of `x`. */
export function gelu(x: tf.Tensor): tf.Tensor {
  registerGelu();
  if (x.dtype === 'float32' && hasHostKernel(GELU)) return tf.engine().runKernel(GELU, { x }, {}) as tf.Tensor;
  return geluComposed(x);
}

/** Φ(x) = ½(1 + erf(x/√2)) and e^(−x²/2), sharing the one exponential A&S 7.1.26 needs. */
function phi(x: number, out: Float64Array): void {
  const z = Math.abs(x) * Math.SQRT1_2;
  const t = 1 / (1 + 0.3275911 * z);
  const g = Math.exp(-z * z);
  const erf = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * g;
  out[0] = 0.5 * (1 + (x < 0 ? -erf : erf));
  out[1] = g;
}

const registerGelu = registerOnce(() => {
  const p = new Float64Array(2);
  const forward = (X: Float32Array, y: Float32Array) => {
    for (let i = 0; i < X.length; i++) {
      phi(X[i], p);
      y[i] = X[i] * p[0];
    }
  };
  const backward = (D: Float32Array, X: Float32Array, dx: Float32Array) => {
    for (let i = 0; i < X.length; i++) {
      phi(X[i], p);
      dx[i] = D[i] * (p[0] + X[i] * INV_SQRT_2PI * p[1]);
    }
  };
  const view = (f32: Float32Array, ptr: number, n: number) => f32.subarray(ptr / 4, ptr / 4 + n);
  const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  registerHostKernel({
    name: GELU,
    outputShapes: (s) => [s.x],
    // on wasm the same maths four lanes at a time (kernels.wat), the exponential a polynomial; below 4 elements the loop
    wasm: {
      scratchBytes: () => 0,
      compute: ({ x }, [y], _s, { f32, simd }) => {
        const n = count(x.shape);
        if (n >= 4) simd.gelu(x.ptr, n, y);
        else forward(view(f32, x.ptr, n), view(f32, y, n));
      },
    },
    compute: ({ x }, [y]) => forward(x.values as Float32Array, y),
  });
  registerHostKernel({
    name: GELU_GRAD,
    outputShapes: (s) => [s.x],
    wasm: {
      scratchBytes: () => 0,
      compute: ({ dy, x }, [dx], _s, { f32, simd }) => {
        const n = count(x.shape);
        if (n >= 4) simd.geluGrad(dy.ptr, x.ptr, n, dx);
        else backward(view(f32, dy.ptr, n), view(f32, x.ptr, n), view(f32, dx, n));
      },
    },
    compute: ({ dy, x }, [dx]) => backward(dy.values as Float32Array, x.values as Float32Array, dx),
  });
  tf.registerGradient({
    kernelName: GELU,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      return { x: () => tf.engine().runKernel(GELU_GRAD, { dy: dy as tf.Tensor, x }, {}) as tf.Tensor };
    },
  });
});
