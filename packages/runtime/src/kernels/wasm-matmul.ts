/**
 * BatchMatMul with a transposed operand or with batches. tfjs-backend-wasm 4.22 sends `transposeA`/
 * `transposeB` to a scalar loop (~12× slower than its XNNPACK path on [73728, 64] × [64, 64]), and so it does
 * any product with more than one batch; every matmul gradient and attention's q·kᵀ and attn·v take those
 * paths. Here the flagged operand is transposed explicitly (a blocked copy) and the untransposed XNNPACK
 * product runs once per batch.
 */
import type * as tf from '@tensorflow/tfjs';
import { asWasm, dispose, heapOffsets, runPackageKernel, runWasmKernel, type KernelArgs } from './wasm-heap.js';

type Attrs = { transposeA: boolean; transposeB: boolean };

/** The package's own kernel: it still does the untransposed product. */
const packageProduct = (backend: unknown, inputs: Record<string, tf.TensorInfo>, attrs: tf.NamedAttrMap) =>
  runPackageKernel('BatchMatMul', { inputs, backend, attrs }) as tf.TensorInfo;

/**
 * x with its last two axes swapped, by a JS loop over the heap in blocks of 8 rows: the package's Transpose
 * is an element-wise scalar loop (29 ms for [73,728, 64], against 11 ms here).
 */
function swapLast(backend: ReturnType<typeof asWasm>, x: tf.TensorInfo): tf.TensorInfo {
  const r = x.shape.length;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    const perm = [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2];
    return runWasmKernel('Transpose', backend, { x }, { perm });
  }
  const [rows, cols] = x.shape.slice(-2);
  const batch = x.shape.slice(0, -2).reduce((a, b) => a * b, 1);
  const out = backend.makeOutput([...x.shape.slice(0, -2), cols, rows], x.dtype);
  const { heap, offsets: [src, dst] } = heapOffsets(backend, x, out);
  const BLOCK = 8;
  for (let b = 0; b < batch; b++) {
    const s0 = src + b * rows * cols;
    const d0 = dst + b * rows * cols;
    for (let i0 = 0; i0 < rows; i0 += BLOCK) {
      const i1 = Math.min(rows, i0 + BLOCK);
      for (let j = 0; j < cols; j++) {
        const d = d0 + j * rows;
        for (let i = i0; i < i1; i++) heap[d + i] = heap[s0 + i * cols + j];
      }
    }
  }
  return out;
}

/** A float32/int32 [1, rows, cols] copy of batch `i` of x (the same tensor when x has one batch). */
function batchSlice(backend: ReturnType<typeof asWasm>, x: tf.TensorInfo, i: number): tf.TensorInfo {
  const [rows, cols] = x.shape.slice(-2);
  const out = backend.makeOutput([1, rows, cols], x.dtype);
  const { heap, offsets: [src, dst] } = heapOffsets(backend, x, out);
  heap.copyWithin(dst, src + i * rows * cols, src + (i + 1) * rows * cols);
  return out;
}

/** x's data read as [1, rows, cols] (no copy). */
const asMatrix = (x: tf.TensorInfo, rows: number, cols: number): tf.TensorInfo => ({ dataId: x.dataId, shape: [1, rows, cols], dtype: x.dtype });

/**
 * A batched product with XNNPACK. The package's kernel takes a scalar loop whenever there is more than one
 * batch (8 × [4096, 64] · [64, 64]: 129 ms, against 19 ms per batch here); attention's q·kᵀ and attn·v are
 * this case, and every call also pays XNNPACK's operator set-up, so a shared operand makes it one product:
 * - b shared (a linear layer on [B, N, C]): [batch·m, k] · b, the rows of every batch at once;
 * - a shared (a resampling matrix applied to many images): a · [b₀ | b₁ | …], the batches side by side
 *   as columns, then the columns dealt back to their batches;
 * - otherwise one product per batch on copied slices, so that each product's packed right operand belongs
 *   to a tensor of its own (the package caches packed weights by tensor).
 */
function batchedProduct(backend: ReturnType<typeof asWasm>, a: tf.TensorInfo, b: tf.TensorInfo, attrs: tf.NamedAttrMap): tf.TensorInfo {
  const [m, k] = a.shape.slice(-2);
  const n = b.shape[b.shape.length - 1];
  const batchOf = (x: tf.TensorInfo) => x.shape.slice(0, -2).reduce((p, d) => p * d, 1);
  const [ba, bb] = [batchOf(a), batchOf(b)];
  const batch = Math.max(ba, bb);
  const outShape = [...(ba >= bb ? a : b).shape.slice(0, -2), m, n];
  const product = (x: tf.TensorInfo, y: tf.TensorInfo) => packageProduct(backend, { a: x, b: y }, attrs);
  if (bb === 1) {
    const y = product(asMatrix(a, ba * m, k), asMatrix(b, k, n));
    y.shape = outShape;
    return y;
  }
  const out = backend.makeOutput(outShape, a.dtype);
  if (ba === 1) {
    const side = backend.makeOutput([1, k, batch * n], b.dtype);
    let { heap, offsets: [src, dst] } = heapOffsets(backend, b, side);
    for (let i = 0; i < batch; i++) {
      for (let r = 0; r < k; r++) heap.copyWithin(dst + (r * batch + i) * n, src + (i * k + r) * n, src + (i * k + r + 1) * n);
    }
    const y = product(asMatrix(a, m, k), side);
    ({ heap, offsets: [src, dst] } = heapOffsets(backend, y, out));
    for (let i = 0; i < batch; i++) {
      for (let r = 0; r < m; r++) heap.copyWithin(dst + (i * m + r) * n, src + (r * batch + i) * n, src + (r * batch + i + 1) * n);
    }
    dispose(backend, side, y);
    return out;
  }
  for (let i = 0; i < batch; i++) {
    const ai = batchSlice(backend, a, i);
    const bi = batchSlice(backend, b, i);
    const yi = product(ai, bi);
    const { heap, offsets: [src, dst] } = heapOffsets(backend, yi, out);
    heap.copyWithin(dst + i * m * n, src, src + m * n);
    dispose(backend, yi, ai, bi);
  }
  return out;
}

/**
 * aᵀ·b for a [K, M], b [K, N] with M < N (a weight gradient such as relᵀ·dz, K = pixels): XNNPACK packs the
 * right operand, a fresh tensor here, at a cost per element well above the product's own (a [73728, 64]
 * operand: ~70 ms to pack, 30 ms to multiply), so the narrower operand takes that place: (bᵀ·a)ᵀ.
 */
function narrowGradient(wb: ReturnType<typeof asWasm>, a: tf.TensorInfo, b: tf.TensorInfo, attrs: tf.NamedAttrMap): tf.TensorInfo {
  const [K, M] = a.shape.slice(-2);
  const N = b.shape[b.shape.length - 1];
  const bt = swapLast(wb, b);
  const yt = packageProduct(wb, { a: bt, b: asMatrix(a, K, M) }, { ...attrs, transposeA: false, transposeB: false });
  const y = swapLast(wb, yt);
  dispose(wb, bt, yt);
  y.shape = [...a.shape.slice(0, -2), M, N];
  return y;
}

export function batchMatMulWasm({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const wb = asWasm(backend);
  const { transposeA, transposeB } = attrs as unknown as Attrs;
  const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const [ba, bb] = [a, b].map((x) => x.shape.slice(0, -2).filter((d) => d > 1));
  const batched = ba.length > 0 || bb.length > 0;
  // per-batch products for equal batch shapes or one operand shared by every batch; other broadcasts go to the package
  const sameBatches = !ba.length || !bb.length || (ba.length === bb.length && ba.every((d, i) => d === bb[i]));
  const fast = a.dtype === 'float32' && b.dtype === 'float32' && sameBatches;
  if (!fast || (!transposeA && !transposeB && !batched)) return packageProduct(backend, inputs as Record<string, tf.TensorInfo>, attrs);
  if (transposeA && !transposeB && !batched && a.shape[a.shape.length - 1] < b.shape[b.shape.length - 1]) return narrowGradient(wb, a, b, attrs);
  const at = transposeA ? swapLast(wb, a) : a;
  const bt = transposeB ? swapLast(wb, b) : b;
  const plain = { ...attrs, transposeA: false, transposeB: false };
  try {
    return batched ? batchedProduct(wb, at, bt, plain)
      : packageProduct(backend, { a: at, b: bt }, plain);
  } finally {
    if (transposeA) dispose(wb, at);
    if (transposeB) dispose(wb, bt);
  }
}
