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

interface EngineTapeState {
  state: { gradientDepth: number; activeTape: unknown };
}

/** tfjs's engine state (it keeps no public flag for recording): gradients are recorded while its depth is above 0. */
const tapeState = () => (tf.engine() as unknown as EngineTapeState).state;

/** Whether a gradient tape (tf.grads, tf.variableGrads) is recording. */
export const recordingGradients = (): boolean => (tapeState().gradientDepth ?? 0) > 0;

/**
 * `fn` with gradient recording off, as PyTorch's `no_grad`: inside a `tf.grads` or `tf.variableGrads`
 * closure, its ops are not put on the tape (nor their inputs saved for a backward pass), so backprop never
 * reaches them and kernels without a gradient, such as `ensembleMlp`'s tiled graph, may run. Its results are
 * constants to the enclosing gradient, as `stopGradient`'s. The tape is restored afterwards even if `fn`
 * throws or takes gradients of its own.
 */
export function withoutGradients<T extends tf.TensorContainer>(fn: () => T): T {
  const state = tapeState();
  const { gradientDepth, activeTape } = state;
  if (gradientDepth === 0) return tf.tidy(fn);
  state.gradientDepth = 0;
  try {
    return tf.tidy(fn);
  } finally {
    state.gradientDepth = gradientDepth;
    state.activeTape = activeTape;
  }
}
