/**
 * Conv2D gradients for the wasm backend (NHWC, any stride, dilation and padding tfjs accepts).
 *
 * - `Conv2DBackpropFilter` (absent from tfjs-backend-wasm 4.22): dW = colT · dy, where colT [KH·KW·Ci, N] is
 *   the transposed im2col of x over N = B·OH·OW output pixels. N is processed in chunks so that colT stays
 *   ~16 MiB whatever the input size; each chunk is one XNNPACK matmul, and chunking also keeps the matmul in
 *   its fast shape (a reduction dimension of ~8k measured faster here than one long one).
 * - `Conv2DBackpropInput` (tfjs-backend-wasm ships a scalar loop, ~12x slower than its forward conv): dx is
 *   the stride-1 "valid" XNNPACK convolution of the zero-inserted, padded dy with the filter rotated by 180°
 *   and its channel axes swapped.
 */
import type * as tf from '@tensorflow/tfjs';
import {
  asWasm, convInfo, dispose, f32, heapOffsets, requireFloat32, runWasmKernel, validOutputRange, zeroInsertAndPad,
  type ConvAttrs, type KernelArgs, type WasmBackendLike,
} from './wasm-heap.js';

/** Elements of one colT chunk (16 MiB of float32). */
const CHUNK_ELEMENTS = 1 << 22;

interface ConvGeometry {
  B: number; H: number; W: number; Ci: number;
  OH: number; OW: number; Co: number;
  KH: number; KW: number; sh: number; sw: number; dh: number; dw: number;
  top: number; left: number;
}

function geometry(info: tf.backend_util.Conv2DInfo): ConvGeometry {
  return {
    B: info.batchSize, H: info.inHeight, W: info.inWidth, Ci: info.inChannels,
    OH: info.outHeight, OW: info.outWidth, Co: info.outChannels,
    KH: info.filterHeight, KW: info.filterWidth, sh: info.strideHeight, sw: info.strideWidth,
    dh: info.dilationHeight, dw: info.dilationWidth, top: info.padInfo.top, left: info.padInfo.left,
  };
}

/**
 * Write columns [j0, j0 + n) of the transposed im2col into `col` ([KH·KW·Ci, kc], zero-filled first), reading
 * x in channel-major layout xT [Ci, B, H, W] so that each output row segment is one contiguous copy at stride 1.
 */
function fillTransposedIm2col(
  heap: Float32Array, colOff: number, xOff: number, g: ConvGeometry, j0: number, n: number, kc: number,
): void {
  const { B, H, W, Ci, OH, OW, KH, KW, sh, sw, dh, dw, top, left } = g;
  heap.fill(0, colOff, colOff + KH * KW * Ci * kc);
  const plane = OH * OW;
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      const rowBase = (kh * KW + kw) * Ci;
      const iwOff = kw * dw - left;
      const [owMin, owMax] = validOutputRange(OW, W, sw, iwOff);
      let j = j0;
      while (j < j0 + n) {
        const b = Math.floor(j / plane);
        const rem = j - b * plane;
        const oh = Math.floor(rem / OW);
        const ow0 = rem - oh * OW;
        const segEnd = Math.min(OW, ow0 + (j0 + n - j));
        const ih = oh * sh + kh * dh - top;
        const lo = Math.max(ow0, owMin);
        const hi = Math.min(segEnd, owMax);
        if (ih >= 0 && ih < H && hi > lo) {
          const colCol = colOff + (j - j0) - ow0; // column of ow = 0 in this segment
          for (let ci = 0; ci < Ci; ci++) {
            const src = xOff + ((ci * B + b) * H + ih) * W + iwOff;
            const dst = colCol + (rowBase + ci) * kc;
            if (sw === 1) {
              heap.copyWithin(dst + lo, src + lo, src + hi);
            } else {
              for (let ow = lo; ow < hi; ow++) heap[dst + ow] = heap[src + ow * sw];
            }
          }
        }
        j += segEnd - ow0;
      }
    }
  }
}

export function conv2DBackpropFilterWasm(args: KernelArgs): tf.TensorInfo {
  const wb = asWasm(args.backend);
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as unknown as ConvAttrs & { filterShape: number[] };
  requireFloat32('Conv2DBackpropFilter', x, dy);
  const g = geometry(convInfo('Conv2DBackpropFilter', x.shape, attrs.filterShape, attrs, false));
  const R = g.KH * g.KW * g.Ci;
  const N = g.B * g.OH * g.OW;
  if (g.KH === 1 && g.KW === 1 && g.sh === 1 && g.sw === 1 && g.top === 0 && g.left === 0 && g.OH === g.H && g.OW === g.W) {
    // a 1×1 convolution is a linear layer on the pixels: dW = xᵀ · dy, no im2col
    const prod = runWasmKernel('BatchMatMul', wb,
      { a: { ...x, shape: [1, N, g.Ci] }, b: { ...dy, shape: [1, N, g.Co] } }, { transposeA: true, transposeB: false });
    prod.shape = [1, 1, g.Ci, g.Co];
    return prod;
  }
  // equal chunks: a short last chunk would still cost a full-width product (its columns are zero-padded)
  const chunks = Math.ceil(N / Math.max(256, Math.floor(CHUNK_ELEMENTS / R)));
  const kc = Math.ceil(N / chunks);

  const xT = runWasmKernel('Transpose', wb, { x }, { perm: [3, 0, 1, 2] });
  const col = wb.makeOutput([R, kc], 'float32');
  const acc = new Float32Array(R * g.Co);
  for (let j0 = 0; j0 < N; j0 += kc) {
    const n = Math.min(kc, N - j0);
    // a fresh tensor per chunk: the wasm BatchMatMul caches XNNPACK's packed copy of `b` by tensor id
    const dyChunk = wb.makeOutput([kc, g.Co], 'float32');
    const { heap, offsets: [colOff, xOff, dyOff, dcOff] } = heapOffsets(wb, col, xT, dy, dyChunk);
    fillTransposedIm2col(heap, colOff, xOff, g, j0, n, kc);
    heap.copyWithin(dcOff, dyOff + j0 * g.Co, dyOff + (j0 + n) * g.Co);
    if (n < kc) heap.fill(0, dcOff + n * g.Co, dcOff + kc * g.Co);
    const prod = runWasmKernel('BatchMatMul', wb, { a: col, b: dyChunk }, { transposeA: false, transposeB: false });
    const p = f32(wb, prod);
    for (let i = 0; i < acc.length; i++) acc[i] += p[i];
    dispose(wb, prod, dyChunk);
  }
  dispose(wb, xT, col);
  const out = wb.makeOutput([g.KH, g.KW, g.Ci, g.Co], 'float32');
  f32(wb, out).set(acc);
  return out;
}

/** W [KH, KW, A, Bc] → W' [KH, KW, Bc, A] with W'[kh, kw] = W[KH-1-kh, KW-1-kw]ᵀ (on the JS side: filters are small). */
export function rotateFilter(wb: WasmBackendLike, filter: tf.TensorInfo, swapChannels: boolean): tf.TensorInfo {
  const [KH, KW, A, Bc] = filter.shape;
  const out = wb.makeOutput(swapChannels ? [KH, KW, Bc, A] : [KH, KW, A, Bc], 'float32');
  const dst = f32(wb, out);
  const src = f32(wb, filter);
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      const s = ((KH - 1 - kh) * KW + (KW - 1 - kw)) * A * Bc;
      const d = (kh * KW + kw) * A * Bc;
      if (!swapChannels) {
        dst.set(src.subarray(s, s + A * Bc), d);
        continue;
      }
      for (let a = 0; a < A; a++) {
        for (let c = 0; c < Bc; c++) dst[d + c * A + a] = src[s + a * Bc + c];
      }
    }
  }
  return out;
}

export function conv2DBackpropInputWasm(args: KernelArgs): tf.TensorInfo {
  const wb = asWasm(args.backend);
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const attrs = args.attrs as unknown as ConvAttrs & { inputShape: number[] };
  requireFloat32('Conv2DBackpropInput', dy, filter);
  const g = geometry(convInfo('Conv2DBackpropInput', attrs.inputShape, filter.shape, attrs, false));
  const padded = zeroInsertAndPad(
    wb, dy, [g.sh, g.sw], (g.KH - 1) * g.dh - g.top, (g.KW - 1) * g.dw - g.left,
    g.H + (g.KH - 1) * g.dh, g.W + (g.KW - 1) * g.dw);
  const rotated = rotateFilter(wb, filter, true);
  const dx = runWasmKernel('Conv2D', wb, { x: padded, filter: rotated }, {
    strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [g.dh, g.dw],
  });
  dispose(wb, padded, rotated);
  return dx;
}
