/**
 * α·t + β·s as one kernel: the mean teacher's update (β = 1 − α) and batch norm's running statistics (β = the
 * momentum, times n/(n − 1) for the variance), one SIMD pass on wasm and a JS loop on cpu instead of three
 * element-wise kernels per tensor; elsewhere (webgl, tfjs-node) the composition.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel, registerOnce } from '@ir2f/runtime';

const BLEND = 'Ir2fBlend';

const registerBlend = registerOnce(() => registerHostKernel({
  name: BLEND,
  outputShapes: (shapes) => [shapes.t],
  wasm: {
    scratchBytes: () => 0,
    compute: ({ t: tv, s: sv }, [out], _scratch, { simd }, attrs) => {
      simd.ema(tv.ptr, sv.ptr, tf.util.sizeFromShape(tv.shape), attrs.alpha as number, attrs.beta as number, out);
    },
  },
  compute: ({ t: tv, s: sv }, [out], attrs) => {
    const [a, b] = [attrs.alpha as number, attrs.beta as number];
    const [x, y] = [tv.values as Float32Array, sv.values as Float32Array];
    for (let i = 0; i < x.length; i++) out[i] = x[i] * a + y[i] * b;
  },
}));

/** α·t + β·s for t and s of one shape (β defaults to 1 − α, taken in float64). */
export function blend(t: tf.Tensor, s: tf.Tensor, alpha: number, beta = 1 - alpha): tf.Tensor {
  registerBlend();
  if (hasHostKernel(BLEND) && t.dtype === 'float32' && s.dtype === 'float32') return tf.engine().runKernel(BLEND, { t, s }, { alpha, beta }) as tf.Tensor;
  return tf.add(tf.mul(t, alpha), tf.mul(s, beta));
}
