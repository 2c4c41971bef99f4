/**
 * Helpers for kernels that run on the wasm backend's heap: allocate outputs through the backend, call the
 * backend's own (XNNPACK) kernels, and touch float32 data with JS loops where a plain copy is all we need.
 *
 * Heap views are invalidated whenever the wasm memory grows (any allocation may grow it), so callers take
 * a fresh view after every allocation or kernel call instead of holding one.
 */
import * as tf from '@tensorflow/tfjs';

type Info = tf.TensorInfo;

/** The slice of `BackendWasm` our kernels use (typed structurally: the package does not export its class). */
export interface WasmBackendLike {
  makeOutput(shape: number[], dtype: tf.DataType): Info;
  typedArrayFromHeap(info: Info): Float32Array | Int32Array | Uint8Array;
  disposeData(dataId: object, force?: boolean): boolean;
}

export function asWasm(backend: unknown): WasmBackendLike {
  const b = backend as Partial<WasmBackendLike>;
  if (typeof b.makeOutput !== 'function' || typeof b.typedArrayFromHeap !== 'function') {
    throw new Error('ir2f wasm kernels were called with a backend that is not tfjs-backend-wasm');
  }
  return b as WasmBackendLike;
}

export function f32(backend: WasmBackendLike, info: Info): Float32Array {
  const a = backend.typedArrayFromHeap(info);
  if (!(a instanceof Float32Array)) throw new Error(`expected a float32 tensor, got ${info.dtype}`);
  return a;
}

/** tfjs-backend-wasm's own kernels that ir2f replaced, by name (filled by `registerWasmGradientKernels`). */
export const replacedWasmKernels = new Map<string, tf.KernelConfig>();

/** Run the package's own kernel `name`, which an ir2f kernel hands the cases it does not speed up. */
export function runPackageKernel(name: string, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const kernel = replacedWasmKernels.get(name);
  if (!kernel) throw new Error(`ir2f ${name}: the wasm backend's own kernel was not found`);
  return kernel.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo | tf.TensorInfo[];
}

/** Run another kernel registered for wasm (e.g. the XNNPACK Conv2D) on tensor infos. */
export function runWasmKernel(
  name: string,
  backend: WasmBackendLike,
  inputs: Record<string, Info>,
  attrs: Record<string, unknown> = {},
): Info {
  const kernel = tf.getKernel(name, 'wasm');
  if (kernel == null) throw new Error(`wasm backend has no '${name}' kernel`);
  const out = kernel.kernelFunc({ inputs, backend: backend as unknown as tf.KernelBackend, attrs: attrs as tf.NamedAttrMap });
  return Array.isArray(out) ? out[0] : out;
}

export function dispose(backend: WasmBackendLike, ...infos: Info[]): void {
  for (const i of infos) backend.disposeData(i.dataId);
}

export function requireFloat32(kernel: string, ...infos: Info[]): void {
  for (const i of infos) {
    if (i.dtype !== 'float32') throw new Error(`${kernel} on wasm supports float32 only, got ${i.dtype}`);
  }
}

/** What every kernel function receives. */
export interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs: tf.NamedAttrMap;
}

/** Attributes shared by the conv and depthwise backprop kernels (dilations: ir2f's own callers pass them). */
export interface ConvAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat?: string;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  dilations?: [number, number] | number;
}

/** Conv geometry for an NHWC kernel, rejecting other layouts. */
export function convInfo(
  kernel: string, inShape: number[], filterShape: number[], attrs: ConvAttrs, depthwise: boolean,
): tf.backend_util.Conv2DInfo {
  requireChannelsLast(kernel, attrs.dataFormat);
  return tf.backend_util.computeConv2DInfo(
    inShape as [number, number, number, number], filterShape as [number, number, number, number], attrs.strides,
    attrs.dilations ?? 1, attrs.pad, attrs.dimRoundingMode, depthwise, 'channelsLast');
}

/**
 * Output positions [lo, hi) whose input position o·stride + offset lies inside [0, inSize): the taps of one
 * filter offset that touch the image rather than the padding.
 */
export function validOutputRange(outSize: number, inSize: number, stride: number, offset: number): [number, number] {
  return [Math.max(0, Math.ceil(-offset / stride)), Math.min(outSize, Math.floor((inSize - 1 - offset) / stride) + 1)];
}

export function requireChannelsLast(kernel: string, dataFormat: unknown): void {
  if (dataFormat != null && dataFormat !== 'NHWC' && dataFormat !== 'channelsLast') {
    throw new Error(`${kernel} on wasm supports NHWC only (got dataFormat ${String(dataFormat)}); transpose to NHWC first`);
  }
}

/**
 * Zero-insert `dy` [B, OH, OW, C] by the strides and place it at (offH, offW) in a zero tensor
 * [B, outH, outW, C]; rows or columns falling outside are cropped. This turns the input-gradient of a
 * strided convolution into a stride-1 "valid" convolution with the rotated filter.
 */
export function zeroInsertAndPad(
  backend: WasmBackendLike,
  dy: Info,
  strides: [number, number],
  offH: number,
  offW: number,
  outH: number,
  outW: number,
): Info {
  const [B, OH, OW, C] = dy.shape;
  const out = backend.makeOutput([B, outH, outW, C], 'float32');
  const dst = f32(backend, out);
  const src = f32(backend, dy);
  dst.fill(0);
  const [sh, sw] = strides;
  for (let b = 0; b < B; b++) {
    for (let oh = 0; oh < OH; oh++) {
      const h = offH + oh * sh;
      if (h < 0 || h >= outH) continue;
      const srcRow = (b * OH + oh) * OW;
      const dstRow = (b * outH + h) * outW;
      if (sw === 1) {
        // contiguous run of whole pixels: one copy
        const lo = Math.max(0, -offW);
        const hi = Math.min(OW, outW - offW);
        if (hi > lo) dst.set(src.subarray((srcRow + lo) * C, (srcRow + hi) * C), (dstRow + offW + lo) * C);
        continue;
      }
      for (let ow = 0; ow < OW; ow++) {
        const w = offW + ow * sw;
        if (w < 0 || w >= outW) continue;
        dst.set(src.subarray((srcRow + ow) * C, (srcRow + ow + 1) * C), (dstRow + w) * C);
      }
    }
  }
  return out;
}

/**
 * One float32 view over the whole wasm heap plus each tensor's element offset into it, so that row copies
 * between tensors are `copyWithin` calls (no per-run subarray objects). Take it after the last allocation.
 */
export function heapOffsets(backend: WasmBackendLike, ...infos: Info[]): { heap: Float32Array; offsets: number[] } {
  // any 4-byte elements (float32, int32): copyWithin moves bits unchanged
  const views = infos.map((i) => backend.typedArrayFromHeap(i));
  if (views.some((v) => v.BYTES_PER_ELEMENT !== 4)) throw new Error('heapOffsets: 4-byte tensors only');
  const heap = new Float32Array(views[0].buffer);
  // unsigned: heap offsets pass 2^31 on big crops (a signed `>> 2` went negative)
  return { heap, offsets: views.map((v) => v.byteOffset / 4) };
}
