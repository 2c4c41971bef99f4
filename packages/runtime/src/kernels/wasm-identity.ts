/**
 * Identity on wasm without a copy. tfjs-backend-wasm 4.22 copies the tensor into a new buffer (2.5% of a
 * training step's CPU time: every `clone` and gradient pass-through); tfjs-backend-cpu instead shares the data
 * and takes a reference. The wasm backend keeps its reference count in its data map and has no `incRef`, so
 * the count is taken there. No kernel writes into its inputs, so sharing is safe.
 */
import type * as tf from '@tensorflow/tfjs';
import type { KernelArgs } from './wasm-heap.js';

interface WasmDataMap {
  dataIdMap: { get(dataId: object): { refCount: number } | undefined };
}

export function identityWasm({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const { x } = inputs as { x: tf.TensorInfo };
  const entry = (backend as WasmDataMap).dataIdMap.get(x.dataId);
  if (!entry) throw new Error('ir2f Identity: the input is not in the wasm backend\'s data map');
  entry.refCount++;
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}
