/**
 * GELU, exact (erf) form as PyTorch's nn.GELU: y = x·Φ(x) = ½x(1 + erf(x/√2)), as one kernel and one gradient
 * kernel (dy·(Φ(x) + x·φ(x))) on the host backends (wasm, cpu), instead of five kernels forward and ~10
 * backward over the Mix-FFN's widest activations. erf is Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), the
 * approximation tfjs's own Erf kernels use. Elsewhere (webgl, tfjs-node) the composition runs.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel } from '../kernels/host-kernel.js';

const GELU = 'Ir2fGelu';
const GELU_GRAD = 'Ir2fGeluGrad';
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * Above this many elements the composition runs: the JS loop pays a Math.exp per element, which the wasm
 * backend's SIMD kernels beat once their dispatches stop dominating. Measured fwd+bwd on one wasm thread on
 * 2 cores loaded by other runs (session 10), so only indicative: wall time [4, 8, 64] 3.5 ms fused / 6.3
 * composed, [4, 32, 64] 1.3 / 1.0, [4, 512, 64] 24 / 16; CPU time [4, 8, 64] 2.7 / 1.1, [4, 32, 64] 1.1 / 0.8.
 * Below the bound the fused kernel still spares the tape the composition's four intermediates; whether it
 * is faster there is to be re-measured on an idle machine.
 */
export const GELU_MAX_HOST_ELEMENTS = 1 << 14;

/** The composition the kernels replace (and the reference their tests compare with). */
export function geluComposed(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

/** GELU (erf form) of `x`. */
export function gelu(x: tf.Tensor): tf.Tensor {
  registerGelu();
  if (x.dtype === 'float32' && x.size <= GELU_MAX_HOST_ELEMENTS && hasHostKernel(GELU)) return tf.engine().runKernel(GELU, { x }, {}) as tf.Tensor;
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

let registered = false;

function registerGelu(): void {
  if (registered) return;
  registered = true;
  const p = new Float64Array(2);
  registerHostKernel({
    name: GELU,
    outputShapes: (s) => [s.x],
    compute: ({ x }, [y]) => {
      const X = x.values as Float32Array;
      for (let i = 0; i < X.length; i++) {
        phi(X[i], p);
        y[i] = X[i] * p[0];
      }
    },
  });
  registerHostKernel({
    name: GELU_GRAD,
    outputShapes: (s) => [s.x],
    compute: ({ dy, x }, [dx]) => {
      const X = x.values as Float32Array;
      const D = dy.values as Float32Array;
      for (let i = 0; i < X.length; i++) {
        phi(X[i], p);
        dx[i] = D[i] * (p[0] + X[i] * INV_SQRT_2PI * p[1]);
      }
    },
  });
  tf.registerGradient({
    kernelName: GELU,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved as [tf.Tensor];
      return { x: () => tf.engine().runKernel(GELU_GRAD, { dy: dy as tf.Tensor, x }, {}) as tf.Tensor };
    },
  });
}
