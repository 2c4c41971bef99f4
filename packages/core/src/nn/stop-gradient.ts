/**
 * x's value as a tensor that no gradient passes through (tfjs has no stop-gradient op). It shares x's data
 * and is not recorded on the tape, so backprop does not reach the ops that made x at all: a customGrad
 * that returns zeros would still run their whole backward pass on zeros.
 */
import * as tf from '@tensorflow/tfjs';

export function stopGradient<T extends tf.Tensor>(x: T): T {
  return tf.engine().makeTensorFromTensorInfo({ dataId: x.dataId, shape: x.shape, dtype: x.dtype }) as T;
}
