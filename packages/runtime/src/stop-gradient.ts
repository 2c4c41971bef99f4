/**
 * x's value as a tensor that no gradient passes through (tfjs has no stop-gradient op). It is the output of
 * the backend's own Identity kernel called directly, not through the engine, so it is not recorded on the
 * tape and backprop does not reach the ops that made x at all (a customGrad that returns zeros would still
 * run their whole backward pass on zeros). Identity shares x's data with a reference where the backend can
 * (cpu's, and ir2f's wasm kernel), so disposing either tensor leaves the other's data alone.
 */
import * as tf from '@tensorflow/tfjs';

export function stopGradient<T extends tf.Tensor>(x: T): T {
  const backend = tf.backend();
  const identity = tf.getKernel('Identity', tf.getBackend());
  if (!identity) throw new Error(`stopGradient: backend '${tf.getBackend()}' has no Identity kernel`);
  const out = identity.kernelFunc({ inputs: { x }, backend, attrs: {} }) as tf.TensorInfo;
  return tf.engine().makeTensorFromTensorInfo(out, backend) as T;
}
