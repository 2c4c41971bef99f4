/**
 * x's value as a tensor that no gradient passes through (tfjs has no stop-gradient op). It shares x's data
 * and is not recorded on the tape, so backprop does not reach the ops that made x at all: a customGrad
 * that returns zeros would still run their whole backward pass on zeros.
 *
 * A second tensor on the same data needs one more reference at the backend, as a kernel's shared output
 * gets (tfjs-backend-cpu's Identity calls `incRef`): without it, disposing either tensor frees the data
 * under the other. tfjs-backend-wasm keeps the count in its data map and has no `incRef`.
 */
import * as tf from '@tensorflow/tfjs';

interface RefCounted {
  incRef?(dataId: object): void;
  dataIdMap?: { get(dataId: object): { refCount: number } | undefined };
}

export function stopGradient<T extends tf.Tensor>(x: T): T {
  const backend = tf.engine().findBackend(tf.engine().backendName) as unknown as RefCounted;
  // wasm inherits KernelBackend's `incRef`, which throws: its own count comes first
  const wasmEntry = backend.dataIdMap?.get(x.dataId);
  if (wasmEntry) wasmEntry.refCount++;
  else if (typeof backend.incRef === 'function') backend.incRef(x.dataId);
  else throw new Error(`stopGradient: backend '${tf.getBackend()}' cannot share tensor data`);
  return tf.engine().makeTensorFromTensorInfo({ dataId: x.dataId, shape: x.shape, dtype: x.dtype }) as T;
}
