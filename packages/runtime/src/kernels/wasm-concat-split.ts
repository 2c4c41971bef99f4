/**
 * Concat and SplitV on wasm by block copies. Along an inner axis the package's kernels go element by element
 * (1.2 ms to concatenate four [2, 32, 32, 64] tensors on the channel axis, 2-4 ms for the SplitV of its
 * gradient); each outer row of each tensor is one contiguous run of the heap, so one `copyWithin` per run.
 * Other dtypes than float32 and int32 go to the package's kernels.
 */
import * as tf from '@tensorflow/tfjs';
import { asWasm, heapOffsets, runPackageKernel, type KernelArgs } from './wasm-heap.js';

const fourBytes = (t: tf.TensorInfo) => t.dtype === 'float32' || t.dtype === 'int32';
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

export function concatWasm(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const all = Object.values(args.inputs) as tf.TensorInfo[];
  const { axis: rawAxis } = args.attrs as unknown as { axis: number | number[] };
  const dtype = all[0]?.dtype;
  if (!all.length || !all.every((t) => fourBytes(t) && t.dtype === dtype)) return runPackageKernel('Concat', args);
  const axis = tf.util.parseAxisParam(rawAxis, all[0].shape)[0];
  const outShape = tf.backend_util.computeOutShape(all.map((t) => t.shape), axis);
  const wb = asWasm(args.backend);
  const out = wb.makeOutput(outShape, dtype);
  const parts = all.filter((t) => size(t.shape) > 0);
  if (!parts.length || size(outShape) === 0) return out;
  const outer = size(outShape.slice(0, axis));
  const { heap, offsets } = heapOffsets(wb, out, ...parts);
  const rowOut = size(outShape.slice(axis));
  let col = 0;
  parts.forEach((t, i) => {
    const run = size(t.shape.slice(axis));
    const src = offsets[i + 1];
    for (let o = 0; o < outer; o++) heap.copyWithin(offsets[0] + o * rowOut + col, src + o * run, src + (o + 1) * run);
    col += run;
  });
  return out;
}

export function splitVWasm(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { numOrSizeSplits, axis: rawAxis } = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
  if (!fourBytes(x)) return runPackageKernel('SplitV', args);
  const axis = tf.util.parseAxisParam(rawAxis, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, numOrSizeSplits, axis);
  const wb = asWasm(args.backend);
  const outs = sizes.map((s) => wb.makeOutput(x.shape.map((d, i) => (i === axis ? s : d)), x.dtype));
  if (size(x.shape) === 0) return outs;
  const outer = size(x.shape.slice(0, axis));
  const inner = size(x.shape.slice(axis + 1));
  const rowIn = x.shape[axis] * inner;
  const { heap, offsets } = heapOffsets(wb, x, ...outs);
  let col = 0;
  sizes.forEach((s, i) => {
    const run = s * inner;
    const dst = offsets[i + 1];
    if (run > 0) for (let o = 0; o < outer; o++) heap.copyWithin(dst + o * run, offsets[0] + o * rowIn + col, offsets[0] + o * rowIn + col + run);
    col += run;
  });
  return outs;
}
