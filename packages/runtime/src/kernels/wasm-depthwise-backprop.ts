/**
 * Depthwise-conv gradients for the wasm backend (absent from tfjs-backend-wasm 4.22), NHWC, any stride,
 * dilation, padding and channel multiplier M.
 *
 * - input gradient: the stride-1 XNNPACK depthwise convolution of the zero-inserted, padded dy [B, ·, ·, C·M]
 *   with the filter rotated by 180° as [KH, KW, C·M, 1], then a sum over M; at stride 1 dy as it is, the
 *   padding the convolution's own (a copy of dy cost ~30% of the kernel at [2, 32, 32, 256]).
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
  const [OH, OW] = [info.outHeight, info.outWidth];
  const [offH, offW] = [(KH - 1) * dh - info.padInfo.top, (KW - 1) * dw - info.padInfo.left];
  const [outH, outW] = [H + (KH - 1) * dh, W + (KW - 1) * dw];
  // stride 1 needs no zeros inserted: dy's padding is the convolution's own (explicit), not a copy of dy
  const pads = [offH, outH - offH - OH, offW, outW - offW - OW];
  const inPlace = sh === 1 && sw === 1 && pads.every((p) => p >= 0);
  const padded = inPlace ? dy : zeroInsertAndPad(wb, dy, [sh, sw], offH, offW, outH, outW);
  // [KH, KW, C, M] read as [KH, KW, C·M, 1]: one output channel per (c, m)
  const flat = { ...filter, shape: [KH, KW, C * M, 1] };
  const rotated = rotateFilter(wb, flat, false);
  const full = runWasmKernel('DepthwiseConv2dNative', wb, { x: padded, filter: rotated }, {
    strides: [1, 1], pad: inPlace ? [[0, 0], [pads[0], pads[1]], [pads[2], pads[3]], [0, 0]] : 'valid', dilations: [dh, dw],
  });
  dispose(wb, rotated);
  if (!inPlace) dispose(wb, padded);
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
  // with one filter per channel a row's sums are wasm SIMD (kernels.wat's dw_filter_row: 4× the JS loop at
  // [2, 64, 64, 256]) into float64 sums on the heap, in scratch allocated before any view is taken
  const simd = M === 1 ? simdKernelsFor(wb) : undefined;
  const scratch = simd ? wb.makeOutput([2 * KH * KW * C + 2], 'float32') : undefined;
  const xv = f32(wb, x);
  const dyv = f32(wb, dy);
  const accPtr = scratch ? Math.ceil(f32(wb, scratch).byteOffset / 8) * 8 : 0;
  const acc = scratch ? new Float64Array(xv.buffer, accPtr, KH * KW * CM).fill(0) : new Float64Array(KH * KW * CM);
  if (simd) {
    // output rows outermost, taps inside: a row of dy and the KH rows of x it reads stay in cache across the
    // taps (tap-major streamed both tensors KH·KW times: 1.0–1.3 ms at [2, 32, 32, 256] against ~0.4)
    const taps: { kh: number; kw: number; oh: [number, number]; ow: [number, number]; a0: number }[] = [];
    for (let kh = 0; kh < KH; kh++) {
      for (let kw = 0; kw < KW; kw++) {
        const ow = validOutputRange(OW, W, sw, kw * dw - left);
        // a tap that reads only padding adds nothing (and the SIMD row takes its count unsigned)
        if (ow[1] > ow[0]) taps.push({ kh, kw, oh: validOutputRange(OH, H, sh, kh * dh - top), ow, a0: (kh * KW + kw) * C });
      }
    }
    for (let b = 0; b < B; b++) {
      for (let oh = 0; oh < OH; oh++) {
        for (const { kh, kw, oh: [ohLo, ohHi], ow: [owLo, owHi], a0 } of taps) {
          if (oh < ohLo || oh >= ohHi) continue;
          const xRow = ((b * H + oh * sh + kh * dh - top) * W + owLo * sw + kw * dw - left) * C;
          const dRow = ((b * OH + oh) * OW + owLo) * C;
          simd.dwFilterRow(xv.byteOffset + 4 * xRow, dyv.byteOffset + 4 * dRow, owHi - owLo, 4 * sw * C, C, accPtr + 8 * a0);
        }
      }
    }
    f32(wb, out).set(acc);
    dispose(wb, scratch!);
    return out;
  }
  // offset-major: for one filter tap the valid output range is a rectangle, so the inner loops carry no
  // bounds checks; with one filter per channel (M = 1) a block of 4 channels is summed in locals along an
  // output row (1.7× a loop over all channels accumulating into an array row)
  for (let kh = 0; kh < KH; kh++) {
    const [ohLo, ohHi] = validOutputRange(OH, H, sh, kh * dh - top);
    for (let kw = 0; kw < KW; kw++) {
      const [owLo, owHi] = validOutputRange(OW, W, sw, kw * dw - left);
      // a tap that reads only padding adds nothing (and the SIMD row takes its count unsigned)
      if (owHi <= owLo) continue;
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
