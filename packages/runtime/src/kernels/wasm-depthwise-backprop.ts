/**
 * Depthwise-conv gradients for the wasm backend (absent from tfjs-backend-wasm 4.22), NHWC, any stride,
 * dilation, padding and channel multiplier M.
 *
 * - input gradient: the stride-1 "valid" XNNPACK depthwise convolution of the zero-inserted, padded dy
 *   [B, ·, ·, C·M] with the filter rotated by 180° as [KH, KW, C·M, 1], then a sum over M.
 * - filter gradient: one pass over the output pixels accumulating x·dy per (offset, channel); it is a
 *   per-channel reduction with no matmul structure, so a single loop over the heap (both reads contiguous in
 *   the channel) beats slicing and reducing with kernels: wasm SIMD (kernels.wat's dw_filter_row) with one
 *   filter per channel, a JS loop otherwise or without SIMD.
 */
import type * as tf from '@tensorflow/tfjs';
import { simdKernelsFor } from '../simd/simd-kernels.js';
import { rotateFilter } from './wasm-conv-backprop.js';
import {
  asWasm, convInfo, dispose, f32, requireFloat32, runWasmKernel, validOutputRange, zeroInsertAndPad,
  type ConvAttrs, type KernelArgs,
} from './wasm-heap.js';

export function depthwiseBackpropInputWasm(args: KernelArgs): tf.TensorInfo {
  const wb = asWasm(args.backend);
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const attrs = args.attrs as unknown as ConvAttrs & { inputShape: number[] };
  requireFloat32('DepthwiseConv2dNativeBackpropInput', dy, filter);
  const info = convInfo('DepthwiseConv2dNativeBackpropInput', attrs.inputShape, filter.shape, attrs, true);
  const [KH, KW, C, M] = filter.shape;
  const { batchSize: B, inHeight: H, inWidth: W, strideHeight: sh, strideWidth: sw } = info;
  const { dilationHeight: dh, dilationWidth: dw } = info;
  const padded = zeroInsertAndPad(
    wb, dy, [sh, sw], (KH - 1) * dh - info.padInfo.top, (KW - 1) * dw - info.padInfo.left,
    H + (KH - 1) * dh, W + (KW - 1) * dw);
  // [KH, KW, C, M] read as [KH, KW, C·M, 1]: one output channel per (c, m)
  const flat = { ...filter, shape: [KH, KW, C * M, 1] };
  const rotated = rotateFilter(wb, flat, false);
  const full = runWasmKernel('DepthwiseConv2dNative', wb, { x: padded, filter: rotated }, {
    strides: [1, 1], pad: 'valid', dilations: [dh, dw],
  });
  dispose(wb, padded, rotated);
  if (M === 1) {
    full.shape = [B, H, W, C];
    return full;
  }
  const out = wb.makeOutput([B, H, W, C], 'float32');
  const dst = f32(wb, out);
  const src = f32(wb, full);
  for (let i = 0; i < dst.length; i++) {
    let s = 0;
    for (let m = 0; m < M; m++) s += src[i * M + m];
    dst[i] = s;
  }
  dispose(wb, full);
  return out;
}

export function depthwiseBackpropFilterWasm(args: KernelArgs): tf.TensorInfo {
  const wb = asWasm(args.backend);
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as unknown as ConvAttrs & { filterShape: number[] };
  requireFloat32('DepthwiseConv2dNativeBackpropFilter', x, dy);
  const info = convInfo('DepthwiseConv2dNativeBackpropFilter', x.shape, attrs.filterShape, attrs, true);
  const [KH, KW, C, M] = attrs.filterShape;
  const { batchSize: B, inHeight: H, inWidth: W, outHeight: OH, outWidth: OW } = info;
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const { top, left } = info.padInfo;
  const CM = C * M;
  const out = wb.makeOutput([KH, KW, C, M], 'float32');
  const simd = M === 1 ? simdKernelsFor(wb) : undefined;
  if (simd) {
    // the loop below as wasm SIMD, row by row: 3.5× the JS loop's speed at [2, 64, 64, 256]
    const scratch = wb.makeOutput([2 * KH * KW * C + 2], 'float32');
    const [xp, dyp, sp] = [f32(wb, x).byteOffset, f32(wb, dy).byteOffset, f32(wb, scratch).byteOffset];
    const accPtr = Math.ceil(sp / 8) * 8;
    const heap = f32(wb, out);
    new Float64Array(heap.buffer, accPtr, KH * KW * C).fill(0);
    for (let kh = 0; kh < KH; kh++) {
      const [ohLo, ohHi] = validOutputRange(OH, H, sh, kh * dh - top);
      for (let kw = 0; kw < KW; kw++) {
        const [owLo, owHi] = validOutputRange(OW, W, sw, kw * dw - left);
        if (owHi <= owLo) continue;
        const tapAcc = accPtr + 8 * (kh * KW + kw) * C;
        const xCol = owLo * sw + kw * dw - left;
        for (let b = 0; b < B; b++) {
          for (let oh = ohLo; oh < ohHi; oh++) {
            const xRow = ((b * H + oh * sh + kh * dh - top) * W + xCol) * C;
            const dRow = ((b * OH + oh) * OW + owLo) * C;
            simd.dwFilterRow(xp + 4 * xRow, dyp + 4 * dRow, owHi - owLo, 4 * sw * C, C, tapAcc);
          }
        }
      }
    }
    heap.set(new Float64Array(heap.buffer, accPtr, KH * KW * C));
    dispose(wb, scratch);
    return out;
  }
  const xv = f32(wb, x);
  const dyv = f32(wb, dy);
  const acc = new Float64Array(KH * KW * CM);
  // offset-major: for one filter tap the valid output range is a rectangle, so the inner loops carry no
  // bounds checks; with one filter per channel (M = 1) a block of 4 channels is summed in locals along an
  // output row (1.7× a loop over all channels accumulating into an array row)
  for (let kh = 0; kh < KH; kh++) {
    const [ohLo, ohHi] = validOutputRange(OH, H, sh, kh * dh - top);
    for (let kw = 0; kw < KW; kw++) {
      const [owLo, owHi] = validOutputRange(OW, W, sw, kw * dw - left);
      const a0 = (kh * KW + kw) * CM;
      const xStep = sw * C;
      // where row (b, oh) of this tap starts in x and in dy (inline, not closures: a variable a closure
      // captures moves to a heap context, and the inner loops then reload it on every pixel)
      const xCol = owLo * sw + kw * dw - left;
      if (M === 1) {
        // one output row at a time (its x and dy rows stay in cache while every channel block passes over
        // them; a block over all pixels streamed whole tensors C/4 times: 54 ms at [2, 64, 64, 256])
        for (let b = 0; b < B; b++) {
          for (let oh = ohLo; oh < ohHi; oh++) {
            const xRow = ((b * H + oh * sh + kh * dh - top) * W + xCol) * C;
            const dRow = ((b * OH + oh) * OW + owLo) * CM;
            let c = 0;
            for (; c + 4 <= C; c += 4) {
              let s0 = 0;
              let s1 = 0;
              let s2 = 0;
              let s3 = 0;
              let xi = xRow + c;
              let di = dRow + c;
              for (let ow = owLo; ow < owHi; ow++, xi += xStep, di += C) {
                s0 += xv[xi] * dyv[di];
                s1 += xv[xi + 1] * dyv[di + 1];
                s2 += xv[xi + 2] * dyv[di + 2];
                s3 += xv[xi + 3] * dyv[di + 3];
              }
              acc[a0 + c] += s0;
              acc[a0 + c + 1] += s1;
              acc[a0 + c + 2] += s2;
              acc[a0 + c + 3] += s3;
            }
            for (; c < C; c++) {
              let sum = 0;
              let xi = xRow + c;
              let di = dRow + c;
              for (let ow = owLo; ow < owHi; ow++, xi += xStep, di += C) sum += xv[xi] * dyv[di];
              acc[a0 + c] += sum;
            }
          }
        }
        continue;
      }
      for (let b = 0; b < B; b++) {
        for (let oh = ohLo; oh < ohHi; oh++) {
          let xi = ((b * H + oh * sh + kh * dh - top) * W + xCol) * C;
          let di = ((b * OH + oh) * OW + owLo) * CM;
          for (let ow = owLo; ow < owHi; ow++, xi += xStep, di += CM) {
            for (let c = 0; c < C; c++) {
              const xc = xv[xi + c];
              for (let m = 0; m < M; m++) acc[a0 + c * M + m] += xc * dyv[di + c * M + m];
            }
          }
        }
      }
    }
  }
  f32(wb, out).set(acc);
  return out;
}
