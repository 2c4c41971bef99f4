/**
 * `UnsortedSegmentSum` for the wasm backend (absent from tfjs-backend-wasm 4.22; it is the gradient of
 * `gather`). One pass over the rows of x adding each into its segment's row: O(N·D), where a one-hot matmul
 * would cost O(S·N·D). Ids outside [0, numSegments) are dropped, as in TensorFlow.
 */
import type * as tf from '@tensorflow/tfjs';
import { asWasm, type KernelArgs } from './wasm-heap.js';

export function unsortedSegmentSumWasm(args: KernelArgs): tf.TensorInfo {
  const wb = asWasm(args.backend);
  const { x, segmentIds } = args.inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (args.attrs as { numSegments: number }).numSegments;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum on wasm supports float32 and int32 data, got ${x.dtype}`);
  }
  const idRank = segmentIds.shape.length;
  for (let i = 0; i < idRank; i++) {
    if (segmentIds.shape[i] !== x.shape[i]) {
      throw new Error(`UnsortedSegmentSum: segmentIds shape [${segmentIds.shape}] must prefix x shape [${x.shape}]`);
    }
  }
  const rowShape = x.shape.slice(idRank);
  const D = rowShape.reduce((a, b) => a * b, 1);
  const out = wb.makeOutput([numSegments, ...rowShape], x.dtype);
  const dst = wb.typedArrayFromHeap(out);
  const src = wb.typedArrayFromHeap(x);
  const ids = wb.typedArrayFromHeap(segmentIds);
  dst.fill(0);
  const N = ids.length;
  for (let i = 0; i < N; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue;
    const d = s * D;
    const r = i * D;
    for (let k = 0; k < D; k++) dst[d + k] += src[r + k];
  }
  return out;
}
