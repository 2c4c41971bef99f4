/**
 * BatchMatMul with a transposed operand. tfjs-backend-wasm 4.22 sends `transposeA`/`transposeB` to a scalar
 * loop (~12× slower than its XNNPACK path on [73728, 64] × [64, 64]); every matmul gradient and attention's
 * q·kᵀ take that path. Here the flagged operand is transposed explicitly (XNNPACK's transpose) and the
 * untransposed XNNPACK matmul does the product.
 */
import type * as tf from '@tensorflow/tfjs';
import { asWasm, dispose, runWasmKernel, type KernelArgs } from './wasm-heap.js';

type Attrs = { transposeA: boolean; transposeB: boolean };

/** The package's own kernel, set when ir2f's replaces it (it still does the untransposed product). */
let original: tf.KernelFunc | undefined;

export function setOriginalBatchMatMul(kernel: tf.KernelFunc): void {
  original = kernel;
}

function swapLast(backend: ReturnType<typeof asWasm>, x: tf.TensorInfo): tf.TensorInfo {
  const r = x.shape.length;
  const perm = [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2];
  return runWasmKernel('Transpose', backend, { x }, { perm });
}

export function batchMatMulWasm({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  if (!original) throw new Error('ir2f BatchMatMul: the wasm backend\'s own kernel was not found');
  const wb = asWasm(backend);
  const { transposeA, transposeB } = attrs as unknown as Attrs;
  const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  if (!transposeA && !transposeB) return original({ inputs, backend: backend as tf.KernelBackend, attrs }) as tf.TensorInfo;
  const at = transposeA ? swapLast(wb, a) : a;
  const bt = transposeB ? swapLast(wb, b) : b;
  try {
    return original({ inputs: { a: at, b: bt }, backend: backend as tf.KernelBackend, attrs: { ...attrs, transposeA: false, transposeB: false } }) as tf.TensorInfo;
  } finally {
    if (transposeA) dispose(wb, at);
    if (transposeB) dispose(wb, bt);
  }
}
