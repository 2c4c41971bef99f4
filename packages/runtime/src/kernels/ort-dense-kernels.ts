/**
 * The heavy kernels of a training step on onnxruntime's CPU provider for the host backends (wasm, cpu),
 * tensors NHWC as in tfjs:
 *
 * - `Conv2D`: ONNX Conv between NHWC↔NCHW transposes; a 1×1 stride-1 convolution is one MatMul on the pixels.
 * - `Conv2DBackpropInput`: stride 1, the convolution of dy with the filter rotated by 180° (MLAS's Conv runs
 *   ~2× its ConvTranspose); strided, ConvTranspose with the filter as its weight; 1×1: dy · Wᵀ.
 * - `Conv2DBackpropFilter` (stride 1): per filter tap, dW[kh, kw] = x_padᵀ · dy_pad over rows shifted by the
 *   tap's offset. With x padded and dy zero-padded to the same [Hp, Wp] grid and both flattened to rows, the
 *   pixel a tap reads for output (h, w) is the row (h, w) plus kh·dh·Wp + kw·dw, so each tap is one GEMM on
 *   contiguous rows, no im2col; rows that wrap past a line end meet dy's zero padding. Strided, or mostly
 *   padding: im2col from one strided Slice of x a live tap (each the output's size) and one GEMM; strided with
 *   fewer than 8 input channels: one Conv correlating x with dy.
 * - `DepthwiseConv2dNativeBackpropFilter` (cpu; wasm without SIMD): per tap, a product and a reduction over the
 *   valid rectangle.
 * - `BatchMatMul`, `_FusedMatMul` (bias, relu): Gemm with its transposition flags, or a batched MatMul (an
 *   inner dimension of at least `MIN_DEPTH`).
 * - `Exp`, `Erf`, `Softmax`, `Max`, and `Sum` / `Mean` over leading axes: MLAS's vectorised loops (not `Log`:
 *   its results depended on buffer placement, see `DENSE`).
 *
 * A kernel below its size threshold (dispatch costs more than it saves), or outside these cases, runs on
 * the backend's own kernel, which each wrapper keeps.
 */
import * as tf from '@tensorflow/tfjs';
import { attr, OnnxGraph, type OnnxAttr } from '../onnx/graph.js';
import { simdKernelsFor } from '../simd/simd-kernels.js';
import { HOST_BACKENDS, hostIO, type HostBackend, type HostIO } from './host-kernel.js';
import type { OrtArray, OrtKernelRuntime } from './ort-runtime.js';
import { validOutputRange, type ConvAttrs, type KernelArgs } from './wasm-heap.js';
import { leadingAxes } from './wasm-reduce.js';

/** The filter gradient's shifted-row GEMMs are used while padded rows are at most this many times the output pixels. */
const MAX_PADDED_ROWS = 1.5;

/**
 * The depthwise filter gradient's slices stay in cache up to about this size: measured on one thread, a
 * [2, 32, 32, 256] input takes 3.5 ms here against 5.0 in ir2f's JS loop, a [2, 64, 64, 256] one 67 against 26
 * (session 9; in session 12 the larger one took 237 ms without glibc's malloc tunables, 22 with them).
 */
const MAX_DEPTHWISE_ELEMENTS = 1 << 20;

/** A strided filter gradient's im2col columns (floats) above which it stays on the backend's chunked im2col. */
const MAX_STRIDED_COLUMNS = 1 << 24;

/**
 * Below this many input channels a strided filter gradient is one correlation (`correlationFilterGradient`), not
 * the im2col GEMM. Interleaved in one process, one thread: the stem's [2, 128, 128, 3] 7×7/2 → 16, 2.9 → 1.6 ms;
 * 8 channels 0.28 → 0.21; 16 channels 0.51 → 0.63 and 32 channels 2.4 → 4.5 (slower: there the GEMM is wide).
 */
const THIN_CHANNELS = 8;

/** Below this many multiply-adds a kernel stays on the backend (measured: a 2.4M-MAC conv gains ~30%). */
export const MIN_MACS = 1 << 16;

/**
 * A matrix product with a shorter inner dimension stays on the backend: its output costs more to write than to
 * compute, and onnxruntime-node allocates each output afresh. Measured on one wasm thread (malloc tunables
 * set): [131072, 1]·[1, 64] 5.8 ms here against 1.5 on XNNPACK, [131072, 2]·[2, 64] 5.8 against 1.7,
 * [131072, 64]·[64, 64] 8.7 against 16.
 */
export const MIN_DEPTH = 16;

let runtime: OrtKernelRuntime | undefined;
const calls: Record<string, number> = {};

/** How many calls of each kernel onnxruntime has run in this thread (the rest ran on the backend). */
export function denseKernelCalls(): Readonly<Record<string, number>> {
  return { ...calls };
}

/** Route the dense kernels to `rt` (undefined: back to the backends' own). */
export function setDenseRuntime(rt: OrtKernelRuntime | undefined): void {
  if (runtime !== rt) runtime?.dispose();
  runtime = rt;
}

export function denseRuntime(): OrtKernelRuntime | undefined {
  return runtime;
}

type Info = tf.TensorInfo;
type Run = (rt: OrtKernelRuntime, args: KernelArgs, io: HostIO) => Info | undefined;

const NCHW = [0, 3, 1, 2];
const NHWC = [0, 2, 3, 1];
/** A tfjs filter [kh, kw, Ci, Co] as ONNX's [Co, Ci, kh, kw]. */
const OIHW = [3, 2, 0, 1];

const isF32 = (...ts: Info[]) => ts.every((t) => t.dtype === 'float32');
const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const key = (...parts: unknown[]) => parts.map((p) => (Array.isArray(p) ? p.join('x') : String(p))).join(':');
const pair = (v: number | [number, number] | undefined): [number, number] => (Array.isArray(v) ? v : [v ?? 1, v ?? 1]);

/**
 * Run a graph on tensors (undefined if onnxruntime refused it); the output is allocated before the views are
 * taken (a wasm allocation may move the heap).
 */
function runGraph(rt: OrtKernelRuntime, io: HostIO, k: string, build: () => OnnxGraph,
  inputs: [Info, number[]][], outShape: number[], outDims = outShape): Info | undefined {
  if (!rt.ready(k, build)) return undefined;
  const out = io.alloc(outShape);
  // float32 data: tfjs-cpu may hold a float32 tensor's values in another array type (an int32 tensor cast to
  // float32 keeps its Int32Array), which onnxruntime refuses
  const arrays: OrtArray[] = inputs.map(([t, dims]) => {
    const data = io.view(t);
    return { data: data instanceof Float32Array ? data : Float32Array.from(data), dims };
  });
  rt.run(k, build, arrays, [{ data: io.view(out) as Float32Array, dims: outDims }]);
  return out;
}

/** A graph whose inputs are x0, x1, … with the given dims and whose single output is y0. */
function graph(dims: number[][], body: (g: OnnxGraph, xs: string[]) => string, outDims: number[]): () => OnnxGraph {
  return () => {
    const g = new OnnxGraph();
    const xs = dims.map((d, i) => g.input(`x${i}`, d));
    const last = body(g, xs);
    const node = g.nodes[g.nodes.length - 1];
    if (node.output?.[0] !== last) throw new Error('a dense kernel graph must end with the node of its output');
    node.output = ['y0'];
    g.output('y0', outDims);
    return g;
  };
}

const gemm = (transA: boolean, transB: boolean) => ({ transA: attr.int(transA ? 1 : 0), transB: attr.int(transB ? 1 : 0) });

interface ConvCase {
  info: tf.backend_util.Conv2DInfo;
  macs: number;
  /** 1×1, stride 1, no padding: a linear layer on the pixels. */
  pointwise: boolean;
  strides: [number, number];
  dilations: [number, number];
  /** ONNX order: top, left, bottom, right. */
  pads: number[];
  /** The filter rows [h0, h1) and columns [w0, w1) the graph keeps (`withoutDeadTaps`); the filter's info is theirs. */
  crop?: { h: [number, number]; w: [number, number] };
}

/** NHWC, and tfjs's output size is ONNX's (a rounding mode other than floor changes it). */
const onnxGeometry = (a: ConvAttrs) => (a.dataFormat == null || a.dataFormat === 'NHWC' || a.dataFormat === 'channelsLast')
  && (a.dimRoundingMode == null || a.dimRoundingMode === 'floor');

function convCase(inShape: number[], filterShape: number[], a: ConvAttrs): ConvCase | undefined {
  if (!onnxGeometry(a)) return undefined;
  const info = tf.backend_util.computeConv2DInfo(inShape as [number, number, number, number],
    filterShape as [number, number, number, number], a.strides, a.dilations ?? 1, a.pad, a.dimRoundingMode, false, 'channelsLast');
  const { top, left, bottom, right } = info.padInfo;
  const strides = pair(a.strides);
  const dilations = pair(a.dilations);
  return {
    info, strides, dilations, pads: [top, left, bottom, right],
    macs: info.batchSize * info.outHeight * info.outWidth * info.outChannels * info.inChannels * info.filterHeight * info.filterWidth,
    pointwise: info.filterHeight === 1 && info.filterWidth === 1 && strides[0] === 1 && strides[1] === 1
      && top + left + bottom + right === 0,
  };
}

/** The first and one past the last of K taps that read inside the input (taps are monotone in their offset). */
function liveRange(K: number, out: number, size: number, stride: number, dilation: number, pad: number): [number, number] | undefined {
  const live = Array.from({ length: K }, (_, k) => {
    const [lo, hi] = validOutputRange(out, size, stride, k * dilation - pad);
    return hi > lo;
  });
  return live.includes(true) ? [live.indexOf(true), live.lastIndexOf(true) + 1] : undefined;
}

/**
 * A convolution whose outer taps read only padding (DeepLab's dilations 18 and 24 on a 16×16 map: all but the
 * centre) as the convolution with those taps cut off and their padding with them: the same output from 1/9 of
 * the multiply-adds there. Unchanged where every tap reads something, or the cut would need a negative pad.
 */
function withoutDeadTaps(c: ConvCase): ConvCase {
  const { info } = c;
  const [KH, KW] = [info.filterHeight, info.filterWidth];
  const [dh, dw] = c.dilations;
  const h = liveRange(KH, info.outHeight, info.inHeight, c.strides[0], dh, c.pads[0]);
  const w = liveRange(KW, info.outWidth, info.inWidth, c.strides[1], dw, c.pads[1]);
  if (!h || !w || (h[1] - h[0] === KH && w[1] - w[0] === KW)) return c;
  const [top, left, bottom, right] = c.pads;
  const pads = [top - h[0] * dh, left - w[0] * dw, bottom - (KH - h[1]) * dh, right - (KW - w[1]) * dw];
  if (pads.some((p) => p < 0)) return c;
  const [kh, kw] = [h[1] - h[0], w[1] - w[0]];
  return { ...c, info: { ...info, filterHeight: kh, filterWidth: kw }, pads, crop: { h, w }, macs: (c.macs / (KH * KW)) * kh * kw, pointwise: false };
}

/** The filter [KH, KW, Ci, Co] as the case uses it: its live taps only, where it has a crop. */
const liveFilter = (g: OnnxGraph, w: string, c: ConvCase) => (c.crop
  ? g.node('Slice', [w, g.int64s('starts', [c.crop.h[0], c.crop.w[0]]), g.int64s('ends', [c.crop.h[1], c.crop.w[1]]), g.int64s('axes', [0, 1])])
  : w);

/** `op` (Conv, ConvTranspose) with weight `w` on an NHWC tensor, between NHWC↔NCHW transposes. */
const channelsFirst = (g: OnnxGraph, op: string, x: string, w: string, attrs: Record<string, OnnxAttr>) =>
  g.node('Transpose', [g.node(op, [g.node('Transpose', [x], { perm: attr.ints(NCHW) }), w], attrs)], { perm: attr.ints(NHWC) });

const oihw = (g: OnnxGraph, w: string) => g.node('Transpose', [w], { perm: attr.ints(OIHW) });

/** onnxruntime's blocked-channel operators (MLAS's NCHWc kernels). */
const NCHWC = 'com.microsoft.nchwc';
const nchwcBlocks = new WeakMap<OrtKernelRuntime, number>();

/**
 * The channel block of MLAS's NCHWc kernels on this CPU (16 with AVX-512, 8 with AVX2), read from the
 * channels onnxruntime's ReorderInput pads 4 to; 0 where it has none (the NCHW Conv then runs everywhere).
 */
export function nchwcBlock(rt: OrtKernelRuntime): number {
  let block = nchwcBlocks.get(rt);
  if (block === undefined) {
    block = 0;
    const build = graph([[1, 1, 1, 4]], (g, [x]) => g.node('Cast', [g.node('Shape', [g.nodeIn(NCHWC, 'ReorderInput', [x], { channels_last: attr.int(1) })])],
      { to: attr.int(1) }), [4]);
    if (rt.ready('nchwc-block', build)) {
      const shape = new Float32Array(4);
      rt.run('nchwc-block', build, [{ data: new Float32Array(4), dims: [1, 1, 1, 4] }], [{ data: shape, dims: [4] }]);
      // 4 channels stay 4 where MLAS has no blocked kernels (its block is then 1)
      if (shape[1] > 4 && (shape[1] & (shape[1] - 1)) === 0) block = shape[1];
    }
    nchwcBlocks.set(rt, block);
  }
  return block;
}

/** How many times the multiply-adds of a convolution its NCHWc form may do, with channels padded to whole blocks. */
const MAX_BLOCK_PADDING = 2;

/**
 * A Conv on an NHWC tensor with its weight `w` as [kh, kw, a, b], the output channels on axis 2 (`out: 2`: the
 * input gradient's rotated filter) or 3 (tfjs's HWIO). On MLAS's blocked-channel kernels: the input reordered
 * straight from NHWC (its channels zero-padded to whole blocks), the filter zero-padded to whole blocks and put
 * in OIHWBiBo order by one reshape and one transpose, the output back to NHWC with its own channels. MLAS's
 * NCHW Conv stays off those kernels when its weights are graph inputs (onnxruntime blocks only constant
 * filters), and runs at about half their speed on these maps ([2, 16, 16, 256] → 256, 3×3: 63 against 163
 * GFLOP/s). NCHW between transposes where the padding would cost more than it gains (the stem's 3 channels).
 */
function nhwcConv(g: OnnxGraph, block: number, x: string, w: string, shape: number[], out: 2 | 3, attrs: Record<string, OnnxAttr>): string {
  const [KH, KW] = shape;
  const [O, I] = out === 3 ? [shape[3], shape[2]] : [shape[2], shape[3]];
  const up = (n: number, m: number) => Math.ceil(n / m) * m;
  const [Op, Ip] = [up(O, block), up(I, block)];
  if (!block || Op * Ip > MAX_BLOCK_PADDING * O * I) {
    return channelsFirst(g, 'Conv', x, out === 3 ? oihw(g, w) : g.node('Transpose', [w], { perm: attr.ints([2, 3, 0, 1]) }), attrs);
  }
  // ReorderInput takes whole groups of 4 channels (and zero-fills the rest of the block itself)
  const x4 = I % 4 === 0 ? x : g.node('Pad', [x, g.int64s('pads', [0, 0, 0, 0, 0, 0, 0, up(I, 4) - I])]);
  const [pa, pb] = out === 3 ? [Ip - I, Op - O] : [Op - O, Ip - I];
  const wp = pa + pb === 0 ? w : g.node('Pad', [w, g.int64s('pads', [0, 0, 0, 0, 0, 0, pa, pb])]);
  // [kh, kw, a/B, B, b/B, B] → [O/B, I/B, kh, kw, Bi, Bo]
  const [a, b] = out === 3 ? [Ip, Op] : [Op, Ip];
  const blocks = g.node('Reshape', [wp, g.int64s('blocks', [KH, KW, a / block, block, b / block, block])]);
  const perm = out === 3 ? [4, 2, 0, 1, 3, 5] : [2, 4, 0, 1, 5, 3];
  const blocked = g.node('Reshape', [g.node('Transpose', [blocks], { perm: attr.ints(perm) }), g.int64s('oihw', [Op, Ip, KH, KW])]);
  const y = g.nodeIn(NCHWC, 'Conv', [g.nodeIn(NCHWC, 'ReorderInput', [x4], { channels_last: attr.int(1) }), blocked], { ...attrs, kernel_shape: attr.ints([KH, KW]) });
  return g.nodeIn(NCHWC, 'ReorderOutput', [y], { channels: attr.int(O), channels_last: attr.int(1) });
}

/**
 * A 1×1 stride-1 convolution (`transB` false: x · W) or its input gradient (true: dy · Wᵀ) as one product on
 * the pixels: `t` as [pixels, k], the filter as its [Ci, Co] matrix.
 */
function pixelProduct(rt: OrtKernelRuntime, io: HostIO, name: string, t: Info, filter: Info, k: number, transB: boolean, outShape: number[]) {
  const dims = [[count(t.shape) / k, k], filter.shape.slice(2)];
  const outDims = [dims[0][0], transB ? dims[1][0] : dims[1][1]];
  return runGraph(rt, io, key(name, dims), graph(dims, (g, [a, b]) => g.node('Gemm', [a, b], gemm(false, transB)), outDims),
    [[t, dims[0]], [filter, dims[1]]], outShape, outDims);
}

const convAttrs = (c: ConvCase) => ({
  strides: attr.ints(c.strides), dilations: attr.ints(c.dilations), pads: attr.ints(c.pads),
});

const conv2D: Run = (rt, { inputs, attrs }, io) => {
  const { x, filter } = inputs as { x: Info; filter: Info };
  const full = isF32(x, filter) ? convCase(x.shape, filter.shape, attrs as unknown as ConvAttrs) : undefined;
  if (!full || full.macs < MIN_MACS) return undefined;
  const c = withoutDeadTaps(full);
  const { info } = c;
  if (c.pointwise) return pixelProduct(rt, io, 'conv1x1', x, filter, info.inChannels, false, info.outShape);
  const k = key('conv', x.shape, filter.shape, c.strides, c.dilations, c.pads, c.crop?.h ?? [], c.crop?.w ?? []);
  const shape = [info.filterHeight, info.filterWidth, info.inChannels, info.outChannels];
  return runGraph(rt, io, k, graph([x.shape, filter.shape], (g, [xi, w]) => nhwcConv(g, nchwcBlock(rt), xi, liveFilter(g, w, c), shape, 3, convAttrs(c)), info.outShape),
    [[x, x.shape], [filter, filter.shape]], info.outShape);
};

const conv2DBackpropInput: Run = (rt, { inputs, attrs }, io) => {
  const { dy, filter } = inputs as { dy: Info; filter: Info };
  const a = attrs as unknown as ConvAttrs & { inputShape: number[] };
  const full = isF32(dy, filter) ? convCase(a.inputShape, filter.shape, a) : undefined;
  if (!full || full.macs < MIN_MACS) return undefined;
  const c = withoutDeadTaps(full);
  const { info } = c;
  if (c.pointwise) return pixelProduct(rt, io, 'dx1x1', dy, filter, info.outChannels, true, a.inputShape);
  const crop = [c.crop?.h ?? [], c.crop?.w ?? []];
  const [KH, KW] = [info.filterHeight, info.filterWidth];
  const [dh, dw] = c.dilations;
  const [top, left, bottom, right] = c.pads;
  const hwio = [KH, KW, info.inChannels, info.outChannels];
  const flip = (g: OnnxGraph, w: string) => {
    // [kh, kw, Ci, Co] rotated by 180° is its taps in reverse order: one Gather over the flattened taps (a Slice
    // with step −1 on both spatial axes took ~1.8 ms for a 3×3 128 → 128 filter, more than the convolution)
    const taps = g.node('Reshape', [liveFilter(g, w, c), g.int64s('taps', [KH * KW, info.inChannels, info.outChannels])]);
    const reversed = g.node('Gather', [taps, g.int64s('reverse', Array.from({ length: KH * KW }, (_, t) => KH * KW - 1 - t))], { axis: attr.int(0) });
    return g.node('Reshape', [reversed, g.int64s('hwio', hwio)]);
  };
  if (c.strides[0] === 1 && c.strides[1] === 1) {
    // dx is the stride-1 convolution of dy with the rotated filter (MLAS's Conv is ~2× its ConvTranspose here)
    const pads = [(KH - 1) * dh - top, (KW - 1) * dw - left, (KH - 1) * dh - bottom, (KW - 1) * dw - right];
    if (pads.every((p) => p >= 0)) {
      const k = key('dxconv', dy.shape, filter.shape, c.dilations, pads, ...crop);
      // the rotated filter as [kh, kw, O, I]: this convolution's outputs are the forward's input channels
      return runGraph(rt, io, k, graph([dy.shape, filter.shape],
        (g, [d, w]) => nhwcConv(g, nchwcBlock(rt), d, flip(g, w), hwio, 2, { dilations: attr.ints(c.dilations), pads: attr.ints(pads) }), a.inputShape),
      [[dy, dy.shape], [filter, filter.shape]], a.inputShape);
    }
  }
  // ConvTranspose's output size before output_padding; the rest (< stride) is what a strided forward dropped
  const base = [
    c.strides[0] * (info.outHeight - 1) + (KH - 1) * dh + 1 - top - bottom,
    c.strides[1] * (info.outWidth - 1) + (KW - 1) * dw + 1 - left - right,
  ];
  const outputPadding = [info.inHeight - base[0], info.inWidth - base[1]];
  if (outputPadding.some((p, i) => p < 0 || p >= c.strides[i])) return undefined;
  const k = key('dx', dy.shape, filter.shape, a.inputShape, c.strides, c.dilations, c.pads, ...crop);
  return runGraph(rt, io, k, graph([dy.shape, filter.shape],
    (g, [d, w]) => channelsFirst(g, 'ConvTranspose', d, oihw(g, liveFilter(g, w, c)), { ...convAttrs(c), output_padding: attr.ints(outputPadding) }), a.inputShape),
  [[dy, dy.shape], [filter, filter.shape]], a.inputShape);
};

const conv2DBackpropFilter: Run = (rt, { inputs, attrs }, io) => {
  const { x, dy } = inputs as { x: Info; dy: Info };
  const a = attrs as unknown as ConvAttrs & { filterShape: number[] };
  const c = isF32(x, dy) ? convCase(x.shape, a.filterShape, a) : undefined;
  if (!c || c.macs < MIN_MACS) return undefined;
  if (c.strides[0] !== 1 || c.strides[1] !== 1) {
    // a few input channels (the stem's 3): the im2col's rows are too thin for MLAS's GEMM
    return x.shape[3] < THIN_CHANNELS ? correlationFilterGradient(rt, io, x, dy, a.filterShape, c) : im2colFilterGradient(rt, io, x, dy, a.filterShape, c);
  }
  const { info } = c;
  const [B, H, W, Ci] = x.shape;
  const Co = info.outChannels;
  if (c.pointwise) {
    const dims = [[B * H * W, Ci], [B * H * W, Co]];
    return runGraph(rt, io, key('dw1x1', dims), graph(dims, (g, [xi, d]) => g.node('Gemm', [xi, d], gemm(true, false)), [Ci, Co]),
      [[x, dims[0]], [dy, dims[1]]], a.filterShape, [Ci, Co]);
  }
  const [top, left, bottom, right] = c.pads;
  const [Hp, Wp] = [H + top + bottom, W + left + right];
  const [KH, KW] = [info.filterHeight, info.filterWidth];
  const [dh, dw] = c.dilations;
  if (Hp - (KH - 1) * dh !== info.outHeight || Wp - (KW - 1) * dw !== info.outWidth) return undefined;
  const P = B * Hp * Wp;
  // the GEMMs run over padded rows: a wide padding on a small map (DeepLab's dilation 24 on 16×16) is mostly
  // zeros, where the im2col GEMM skips the taps that only see padding
  if (P > MAX_PADDED_ROWS * B * info.outHeight * info.outWidth) return im2colFilterGradient(rt, io, x, dy, a.filterShape, c);
  const rows = P - ((KH - 1) * dh * Wp + (KW - 1) * dw);
  const k = key('dw', x.shape, dy.shape, a.filterShape, c.dilations, c.pads);
  return runGraph(rt, io, k, graph([x.shape, dy.shape], (g, [xi, d]) => {
    const pad = (t: string, p: number[]) => (p.some((v) => v !== 0) ? g.node('Pad', [t, g.int64s('pads', p)]) : t);
    const xRows = g.node('Reshape', [pad(xi, [0, top, left, 0, 0, bottom, right, 0]), g.int64s('shape', [P, Ci])]);
    const dyRows = g.node('Reshape', [pad(d, [0, 0, 0, 0, 0, Hp - info.outHeight, Wp - info.outWidth, 0]), g.int64s('shape', [P, Co])]);
    const slice = (t: string, from: number) => g.node('Slice', [t, g.int64s('starts', [from]), g.int64s('ends', [from + rows]), g.int64s('axes', [0])]);
    const dyUsed = slice(dyRows, 0);
    const taps: string[] = [];
    for (let kh = 0; kh < KH; kh++) {
      for (let kw = 0; kw < KW; kw++) taps.push(g.node('Gemm', [slice(xRows, kh * dh * Wp + kw * dw), dyUsed], gemm(true, false)));
    }
    return g.node('Concat', taps, { axis: attr.int(0) });
  }, [KH * KW * Ci, Co]), [[x, x.shape], [dy, dy.shape]], a.filterShape, [KH * KW * Ci, Co]);
};

/**
 * A convolution's filter gradient as one convolution: dW[kh, kw, ci, co] = Σ x[b, oh·s + kh·d, ow·s + kw·d, ci] ·
 * dy[b, oh, ow, co] is x, channels first as a batch of Ci one-channel-per-image maps ([Ci, B, H, W]), correlated
 * with dy as a filter ([Co, B, OH, OW]) at the forward's stride as dilation and its dilation as stride. MLAS
 * runs it as one im2col and one GEMM a batch item, where the taps' GEMMs had one Slice a tap around them.
 */
function correlationFilterGradient(rt: OrtKernelRuntime, io: HostIO, x: Info, dy: Info, filterShape: number[], c: ConvCase): Info | undefined {
  const { info } = c;
  const [, H, W, Ci] = x.shape;
  const [OH, OW, Co] = [info.outHeight, info.outWidth, info.outChannels];
  const [KH, KW] = [info.filterHeight, info.filterWidth];
  const [sh, sw] = c.strides;
  const [dh, dw] = c.dilations;
  const [top, left] = c.pads;
  // the rows and columns the forward read, from −top and −left: padded where they pass x's edge, cut where x goes on
  const [R, C] = [(OH - 1) * sh + (KH - 1) * dh + 1, (OW - 1) * sw + (KW - 1) * dw + 1];
  const k = key('dwc', x.shape, dy.shape, filterShape, c.strides, c.dilations, [top, left]);
  return runGraph(rt, io, k, graph([x.shape, dy.shape], (g, [xi, d]) => {
    let cf = g.node('Transpose', [xi], { perm: attr.ints([3, 0, 1, 2]) });
    const [cutH, cutW] = [Math.min(H, R - top), Math.min(W, C - left)];
    if (cutH < H || cutW < W) cf = g.node('Slice', [cf, g.int64s('starts', [0, 0]), g.int64s('ends', [cutH, cutW]), g.int64s('axes', [2, 3])]);
    const pads = [0, 0, top, left, 0, 0, R - top - cutH, C - left - cutW];
    if (pads.some((v) => v !== 0)) cf = g.node('Pad', [cf, g.int64s('pads', pads)]);
    const filter = g.node('Transpose', [d], { perm: attr.ints([3, 0, 1, 2]) });
    const grads = g.node('Conv', [cf, filter], { strides: attr.ints([dh, dw]), dilations: attr.ints([sh, sw]), kernel_shape: attr.ints([OH, OW]) });
    return g.node('Reshape', [g.node('Transpose', [grads], { perm: attr.ints([2, 3, 0, 1]) }), g.int64s('shape', [KH * KW * Ci, Co])]);
  }, [KH * KW * Ci, Co]), [[x, x.shape], [dy, dy.shape]], filterShape, [KH * KW * Ci, Co]);
}

/**
 * A convolution's filter gradient as one GEMM over the taps' own pixels: x padded (NHWC), then per tap the input
 * pixels that tap read (a Slice with the stride as its step, the output's size); concatenated on the channel axis
 * in the filter's (kh, kw, ci) order they are the im2col [pixels, taps·Ci], and imᵀ·dy is the gradient. At a
 * stride s the columns are 1/s² of a stride-1 im2col's. One GEMM, not one a tap: with the stem's 3 input channels
 * a GEMM a tap was 3 × 8192 · 8192 × 16, too thin for MLAS. Taps that read only padding (DeepLab's dilations 18
 * and 24 on a 16×16 map, all but the centre) take no columns: their rows of the gradient are zeros, and x is
 * padded only as far as the others read. NHWC rather than channels first: its slices copy runs of Ci floats, not
 * of a row's pixels, and no transpose comes first (one thread, medians of 30 calls: [2, 32, 32, 32] 3×3/2 → 64
 * 0.23 against 0.39 ms, [2, 64, 64, 16] → 32 0.36 against 0.60, DeepLab's dilation 6 0.49 against 0.57).
 */
function im2colFilterGradient(rt: OrtKernelRuntime, io: HostIO, x: Info, dy: Info, filterShape: number[], c: ConvCase): Info | undefined {
  const { info } = c;
  const [B, H, W, Ci] = x.shape;
  const [OH, OW, Co] = [info.outHeight, info.outWidth, info.outChannels];
  const [KH, KW] = [info.filterHeight, info.filterWidth];
  const [sh, sw] = c.strides;
  const [dh, dw] = c.dilations;
  const [top, left] = c.pads;
  const P = B * OH * OW;
  // the live taps are a rectangle (a tap's reads move monotonically with its offset)
  const h = liveRange(KH, OH, H, sh, dh, top);
  const w = liveRange(KW, OW, W, sw, dw, left);
  if (!h || !w) return undefined;
  const isLive = (kh: number, kw: number) => kh >= h[0] && kh < h[1] && kw >= w[0] && kw < w[1];
  const live: [number, number][] = [];
  for (let kh = h[0]; kh < h[1]; kh++) for (let kw = w[0]; kw < w[1]; kw++) live.push([kh, kw]);
  if (P * live.length * Ci > MAX_STRIDED_COLUMNS) return undefined;
  // padding that the live taps' reads reach
  const reach = (first: number, last: number, size: number) => [Math.max(0, -first), Math.max(0, last - (size - 1))];
  const [padTop, padBottom] = reach(h[0] * dh - top, (OH - 1) * sh + (h[1] - 1) * dh - top, H);
  const [padLeft, padRight] = reach(w[0] * dw - left, (OW - 1) * sw + (w[1] - 1) * dw - left, W);
  const k = key('dws', x.shape, dy.shape, filterShape, c.strides, c.dilations, [top, left]);
  return runGraph(rt, io, k, graph([x.shape, dy.shape], (g, [xi, d]) => {
    // in NHWC each tap's slice copies whole pixels (runs of Ci floats) and the taps' concatenation on the channel
    // axis is the im2col [pixels, taps·Ci] in the filter's (kh, kw, ci) order
    const padded = padTop + padLeft + padBottom + padRight > 0
      ? g.node('Pad', [xi, g.int64s('pads', [0, padTop, padLeft, 0, 0, padBottom, padRight, 0])]) : xi;
    const cols = live.map(([kh, kw]) => {
      const [h0, w0] = [kh * dh - top + padTop, kw * dw - left + padLeft];
      return g.node('Slice', [padded, g.int64s('starts', [h0, w0]), g.int64s('ends', [h0 + (OH - 1) * sh + 1, w0 + (OW - 1) * sw + 1]),
        g.int64s('axes', [1, 2]), g.int64s('steps', [sh, sw])]);
    });
    const im = g.node('Reshape', [cols.length > 1 ? g.node('Concat', cols, { axis: attr.int(3) }) : cols[0], g.int64s('shape', [P, live.length * Ci])]);
    const grads = g.node('Gemm', [im, g.node('Reshape', [d, g.int64s('shape', [P, Co])])], gemm(true, false));
    if (live.length === KH * KW) return grads;
    // the live taps' rows in place, zeros for the rest
    const zeros = g.floats('zeros', new Float32Array(Ci * Co), [Ci, Co]);
    let at = 0;
    const rows = Array.from({ length: KH * KW }, (_, t) => {
      if (!isLive(Math.floor(t / KW), t % KW)) return zeros;
      const from = Ci * at++;
      return g.node('Slice', [grads, g.int64s('starts', [from]), g.int64s('ends', [from + Ci]), g.int64s('axes', [0])]);
    });
    return g.node('Concat', rows, { axis: attr.int(0) });
  }, [KH * KW * Ci, Co]), [[x, x.shape], [dy, dy.shape]], filterShape, [KH * KW * Ci, Co]);
}

/**
 * The depthwise filter gradient (channel multiplier 1): per tap, dW[kh, kw, c] = Σ x·dy over the output
 * rectangle whose input pixels for that tap lie inside the image (strided slices of x and dy, one product,
 * one reduction); taps that only see padding are zero. MLAS's vectorised passes run ~2× the JS loop; on wasm
 * with SIMD the backend's kernel (kernels.wat's rows) runs instead: [2, 32, 32, 256] 1.2 ms against 5.4 here.
 */
const depthwiseBackpropFilter: Run = (rt, { inputs, attrs, backend }, io) => {
  const { x, dy } = inputs as { x: Info; dy: Info };
  const a = attrs as unknown as ConvAttrs & { filterShape: number[] };
  if (!isF32(x, dy) || a.filterShape[3] !== 1 || !onnxGeometry(a) || simdKernelsFor(backend)) return undefined;
  const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number],
    a.filterShape as [number, number, number, number], a.strides, a.dilations ?? 1, a.pad, a.dimRoundingMode, true, 'channelsLast');
  const { batchSize: B, inHeight: H, inWidth: W, outHeight: OH, outWidth: OW, filterHeight: KH, filterWidth: KW } = info;
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const C = info.inChannels;
  if (B * OH * OW * C * KH * KW < MIN_MACS || count(x.shape) > MAX_DEPTHWISE_ELEMENTS) return undefined;
  const { top, left } = info.padInfo;
  const taps: ({ h: [number, number]; w: [number, number]; ih: number; iw: number } | undefined)[] = [];
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      const h = validOutputRange(OH, H, sh, kh * dh - top);
      const w = validOutputRange(OW, W, sw, kw * dw - left);
      taps.push(h[1] > h[0] && w[1] > w[0] ? { h, w, ih: h[0] * sh + kh * dh - top, iw: w[0] * sw + kw * dw - left } : undefined);
    }
  }
  const k = key('dwdepthwise', x.shape, dy.shape, a.filterShape, [sh, sw, dh, dw, top, left]);
  const outDims = [KH * KW * C];
  return runGraph(rt, io, k, graph([x.shape, dy.shape], (g, [xi, d]) => {
    const ints = (base: string, v: number[]) => g.int64s(base, v);
    const sums = taps.map((t) => {
      if (!t) return g.floats('zeros', new Float32Array(C), [C]);
      const [oh0, oh1] = t.h;
      const [ow0, ow1] = t.w;
      const xs = g.node('Slice', [xi, ints('starts', [t.ih, t.iw]), ints('ends', [t.ih + (oh1 - oh0 - 1) * sh + 1, t.iw + (ow1 - ow0 - 1) * sw + 1]),
        ints('axes', [1, 2]), ints('steps', [sh, sw])]);
      const ds = g.node('Slice', [d, ints('starts', [oh0, ow0]), ints('ends', [oh1, ow1]), ints('axes', [1, 2])]);
      return g.node('ReduceSum', [g.node('Mul', [xs, ds]), ints('axes', [0, 1, 2])], { keepdims: attr.int(0) });
    });
    return g.node('Concat', sums, { axis: attr.int(0) });
  }, outDims), [[x, x.shape], [dy, dy.shape]], a.filterShape, outDims);
};

/**
 * A (fused) batch matmul's operands as [batch, rows, cols] (tfjs hands the kernel any rank ≥ 2) and its
 * product's shape; undefined when the batch dimensions broadcast other than one of them being 1 or equal.
 */
function matmulCase(a: Info, b: Info, transA: boolean, transB: boolean) {
  if (a.shape.length < 2 || b.shape.length < 2) return undefined;
  const batchShapeA = a.shape.slice(0, -2);
  const batchShapeB = b.shape.slice(0, -2);
  const [ba, bb] = [count(batchShapeA), count(batchShapeB)];
  const [ra, ca] = a.shape.slice(-2);
  const [rb, cb] = b.shape.slice(-2);
  const [M, K] = transA ? [ca, ra] : [ra, ca];
  const N = transB ? rb : cb;
  // the product's batch dims as tfjs broadcasts them; the data layout below needs one side of size 1 or both equal
  if (ba !== 1 && bb !== 1 && (batchShapeA.length !== batchShapeB.length || batchShapeA.some((d, i) => d !== batchShapeB[i]))) return undefined;
  const batchShape = tf.backend_util.assertAndGetBroadcastShape(batchShapeA, batchShapeB);
  const batch = Math.max(ba, bb);
  return { ba, bb, M, K, N, batch, dimsA: [ba, ra, ca], dimsB: [bb, rb, cb], outShape: [...batchShape, M, N], macs: batch * M * N * K };
}

const batchMatMul: Run = (rt, { inputs, attrs }, io) => {
  const { a, b } = inputs as { a: Info; b: Info };
  const { transposeA: tA, transposeB: tB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
  const m = isF32(a, b) ? matmulCase(a, b, tA, tB) : undefined;
  if (!m || m.macs < MIN_MACS || m.K < MIN_DEPTH) return undefined;
  if (m.bb === 1 && (m.ba === 1 || !tA)) {
    // one GEMM: a's batches stacked as rows against the shared b
    const dims = [m.ba === 1 ? m.dimsA.slice(1) : [m.ba * m.M, m.K], m.dimsB.slice(1)];
    const outDims = [m.ba * m.M, m.N];
    return runGraph(rt, io, key('gemm', dims, tA, tB), graph(dims, (g, [x, y]) => g.node('Gemm', [x, y], gemm(tA, tB)), outDims),
      [[a, dims[0]], [b, dims[1]]], m.outShape, outDims);
  }
  const t = (g: OnnxGraph, x: string, yes: boolean) => (yes ? g.node('Transpose', [x], { perm: attr.ints([0, 2, 1]) }) : x);
  const outDims = [m.batch, m.M, m.N];
  return runGraph(rt, io, key('bmm', m.dimsA, m.dimsB, tA, tB), graph([m.dimsA, m.dimsB], (g, [x, y]) => g.node('MatMul', [t(g, x, tA), t(g, y, tB)]), outDims),
    [[a, m.dimsA], [b, m.dimsB]], m.outShape, outDims);
};

const fusedMatMul: Run = (rt, { inputs, attrs }, io) => {
  const { a, b, bias, preluActivationWeights } = inputs as { a: Info; b: Info; bias?: Info; preluActivationWeights?: Info };
  const { transposeA: tA, transposeB: tB, activation } = attrs as unknown as { transposeA: boolean; transposeB: boolean; activation: string };
  if (preluActivationWeights || (activation !== 'linear' && activation !== 'relu')) return undefined;
  const m = isF32(a, b, ...(bias ? [bias] : [])) ? matmulCase(a, b, tA, tB) : undefined;
  // one product with a bias along the columns (a row vector)
  if (!m || m.batch !== 1 || m.macs < MIN_MACS || m.K < MIN_DEPTH || (bias && count(bias.shape) !== m.N && count(bias.shape) !== 1)) return undefined;
  const dims = [m.dimsA.slice(1), m.dimsB.slice(1), ...(bias ? [[count(bias.shape)]] : [])];
  const outDims = [m.M, m.N];
  const k = key('fmm', dims, tA, tB, activation);
  return runGraph(rt, io, k, graph(dims, (g, xs) => {
    const y = g.node('Gemm', xs, gemm(tA, tB));
    return activation === 'relu' ? g.node('Relu', [y]) : y;
  }, outDims), [[a, dims[0]], [b, dims[1]], ...(bias ? [[bias, dims[2]] as [Info, number[]]] : [])], m.outShape, outDims);
};

/** Below this many elements a transcendental stays on the backend. */
export const MIN_ELEMENTS = 1 << 14;

/** Element-wise transcendentals: MLAS vectorises them (wasm's Exp costs ~7 ns an element, MLAS's ~1.5). */
function unary(op: string): Run {
  return (rt, { inputs }, io) => {
    const { x } = inputs as { x: Info };
    const n = count(x.shape);
    if (x.dtype !== 'float32' || n < MIN_ELEMENTS) return undefined;
    return runGraph(rt, io, key(op, n), graph([[n]], (g, [xi]) => g.node(op, [xi]), [n]), [[x, [n]]], x.shape, [n]);
  };
}

const softmax: Run = (rt, { inputs, attrs }, io) => {
  const { logits } = inputs as { logits: Info };
  const { dim } = attrs as unknown as { dim: number };
  const rank = logits.shape.length;
  const n = count(logits.shape);
  if (logits.dtype !== 'float32' || n < MIN_ELEMENTS || (dim !== -1 && dim !== rank - 1)) return undefined;
  const dims = [n / logits.shape[rank - 1], logits.shape[rank - 1]];
  return runGraph(rt, io, key('softmax', dims), graph([dims], (g, [xi]) => g.node('Softmax', [xi], { axis: attr.int(1) }), dims),
    [[logits, dims]], logits.shape, dims);
};

/**
 * Sum and Mean over leading axes, as [rows, cols] over the rows (onnxruntime's reductions are ~5× the JS
 * row loops on [2048, 256]): each output adds its rows in order whatever the data's address. With sums over
 * any axes here, a resumed run no longer reproduced a straight one bit for bit (the CLI test); the likely
 * cause is that onnxruntime's sums along contiguous data start at an aligned address, so their order
 * follows the heap offset.
 */
function leadingReduce(op: 'ReduceSum' | 'ReduceMean'): Run {
  return (rt, { inputs, attrs }, io) => {
    const { x } = inputs as { x: Info };
    const { axis, keepDims } = attrs as unknown as { axis: number | number[]; keepDims: boolean };
    const k = x.dtype === 'float32' && count(x.shape) >= MIN_REDUCE_ELEMENTS ? leadingAxes(axis, x.shape) : 0;
    if (k === 0) return undefined;
    const dims = [count(x.shape.slice(0, k)), count(x.shape.slice(k))];
    const outShape = keepDims ? x.shape.map((d, i) => (i < k ? 1 : d)) : x.shape.slice(k);
    // opset 17: ReduceSum takes its axes as an input, ReduceMean as an attribute
    return runGraph(rt, io, key(op, dims), graph([dims], (g, [xi]) => (op === 'ReduceSum'
      ? g.node(op, [xi, g.int64s('axes', [0])], { keepdims: attr.int(0) })
      : g.node(op, [xi], { axes: attr.ints([0]), keepdims: attr.int(0) })), [dims[1]]), [[x, dims]], outShape, [dims[1]]);
  };
}

/** Max over any axes (exact in any order). */
const reduceMax: Run = (rt, { inputs, attrs }, io) => {
  const { x } = inputs as { x: Info };
  const { reductionIndices, keepDims } = attrs as unknown as { reductionIndices: number | number[] | null; keepDims: boolean };
  if (x.dtype !== 'float32' || count(x.shape) < MIN_REDUCE_ELEMENTS || x.shape.length === 0) return undefined;
  // null: all axes
  const axes = [...new Set(tf.util.parseAxisParam(reductionIndices ?? x.shape.map((_, i) => i), x.shape))].sort((a, b) => a - b);
  if (axes.length === 0) return undefined;
  const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const outShape = keepDims ? kept : x.shape.filter((_, i) => !axes.includes(i));
  return runGraph(rt, io, key('ReduceMax', x.shape, axes),
    graph([x.shape], (g, [xi]) => g.node('ReduceMax', [xi], { axes: attr.ints(axes), keepdims: attr.int(1) }), kept), [[x, x.shape]], outShape, kept);
};

/** Below this many elements a reduction stays on the backend. */
const MIN_REDUCE_ELEMENTS = 4096;

const DENSE: Record<string, Run> = {
  DepthwiseConv2dNativeBackpropFilter: depthwiseBackpropFilter,
  Sum: leadingReduce('ReduceSum'),
  Mean: leadingReduce('ReduceMean'),
  Max: reduceMax,
  Exp: unary('Exp'),
  Erf: unary('Erf'),
  // not Log: onnxruntime's Log gave results that depended on where its buffers lay (a 30-step run evaluated
  // every 10 steps left one evaluated never from step 12 on, by ~1e-7; with Log on the backend, and every
  // other kernel here on onnxruntime, the two agree bit for bit), so a resumed run left the straight one
  Softmax: softmax,
  Conv2D: conv2D,
  Conv2DBackpropInput: conv2DBackpropInput,
  Conv2DBackpropFilter: conv2DBackpropFilter,
  BatchMatMul: batchMatMul,
  _FusedMatMul: fusedMatMul,
};

const MARK = Symbol.for('ir2f.dense-kernel');

/**
 * Wrap the host backends' dense kernels (idempotent): each call goes to the runtime set by
 * `setDenseRuntime` when it covers the case, else to the kernel registered before. Call after the
 * backend's own kernels (and ir2f's wasm kernels) are registered.
 */
export function registerDenseKernels(): void {
  for (const backendName of HOST_BACKENDS) {
    for (const [kernelName, run] of Object.entries(DENSE)) {
      const prev = tf.getKernel(kernelName, backendName) as (tf.KernelConfig & { [MARK]?: boolean }) | undefined;
      if (!prev || prev[MARK]) continue;
      tf.unregisterKernel(kernelName, backendName);
      tf.registerKernel(Object.assign({
        ...prev,
        kernelFunc: ((args: KernelArgs) => {
          const rt = runtime;
          const out = rt ? run(rt, args, hostIO(backendName as HostBackend, args.backend)) : undefined;
          if (!out) return prev.kernelFunc(args as unknown as Parameters<tf.KernelFunc>[0]);
          calls[kernelName] = (calls[kernelName] ?? 0) + 1;
          return out;
        }) as tf.KernelFunc,
      }, { [MARK]: true }));
    }
  }
}

/** `Ir2fEnsembleMlp`: the fused ensemble-MLP forward (`fused/ensemble-mlp.ts`) as one onnxruntime graph. */
export const ENSEMBLE_MLP = 'Ir2fEnsembleMlp';

/**
 * Queries a tile of the ensemble MLP's loop: on one thread 1024 (N·T rows of activations a layer, ~1 MB at 64
 * channels); on more, 4096, so that each op has enough rows to share. Measured on [4, 131072] queries, 64
 * channels, in one process: one thread 60 ms at 1024 (64 at 2048, 69 at 4096) against 100 for the unfused
 * kernels; two threads 63–67 at 4096 (72–77 at 1024) against 80–86.
 */
const mlpTile = (threads: number) => (threads > 1 ? 4096 : 1024);

const scalarInfo = (name: string, elemType: number) => ({ name, type: { tensorType: { elemType, shape: { dim: [] } } } });

/** A graph's input of Q queries (along `axis`) padded to Qp, whole tiles: padded queries read zeros (cell 0, weight 0, ds 0). */
const padQueries = (g: OnnxGraph, Q: number, Qp: number) => (t: string, rank: number, axis = 1): string => (Qp === Q ? t
  : g.node('Pad', [t, g.int64s('pads', Array.from({ length: 2 * rank }, (_, i) => (i === rank + axis ? Qp - Q : 0)))]));

/**
 * A Loop body over tiles of T queries (names prefixed: a subgraph sees the outer graph's): its node and int64
 * constant builders, and `rows`, the tile's slice of an outer input along its query axis (1, or 0 for a [Qp] one).
 */
function queryTileBody(T: number) {
  const b = new OnnxGraph();
  const n = (op: string, inputs: string[], attrs: Record<string, OnnxAttr> = {}) => b.node(op, inputs, attrs, `tile_${op}`);
  const c = (base: string, values: number[], dims?: number[]) => b.int64s(`tile_${base}`, values, dims);
  const axis0 = c('axis0', [0]);
  const start = n('Unsqueeze', [n('Mul', ['tile_iter', c('T', [T], [])]), axis0]);
  const end = n('Add', [start, c('T1', [T])]);
  const axis1 = c('axis1', [1]);
  const rows = (t: string, axis: 0 | 1 = 1) => n('Slice', [t, start, end, axis === 1 ? axis1 : axis0]);
  return { b, n, c, axis0, rows };
}

/**
 * The ensemble MLP's graph: inputs table [R, H₀], index [N, Q] (float, exact below 2²⁴), x [N, Q, K], wx [K, H₀],
 * per layer w and b, the output layer's w [H, 1] and b [1], weight [N, Q]; output s [Q]. A Loop over tiles of T
 * queries runs the whole MLP on each tile, so no layer's [N·Q, H] activations reach memory (the unfused ops
 * write and read each of them once: 128 MB a layer for a 4× query's chunk). Q is padded to whole tiles.
 */
function ensembleMlpGraph(shapes: number[][], layers: number, tile: number): OnnxGraph {
  const H0 = shapes[0][1];
  const [N, Q] = shapes[2];
  const T = Math.min(tile, Q);
  const iters = Math.ceil(Q / T);
  const Qp = iters * T;
  const g = new OnnxGraph();
  const xs = shapes.map((d, i) => g.input(`x${i}`, d));
  const [table, index0, x0, wx] = xs;
  const hidden = Array.from({ length: layers }, (_, i) => [xs[4 + 2 * i], xs[5 + 2 * i]]);
  const [wOut, bOut, weight0] = xs.slice(4 + 2 * layers);
  // padded queries read cell 0 with weight 0: their sums are cut off below
  const pad = padQueries(g, Q, Qp);
  const [index, x, weight] = [pad(index0, 2), pad(x0, 3), pad(weight0, 2)];
  // every layer a product without a bias: onnxruntime's Gemm with a bias runs at half speed on two threads (a
  // [8192, 64]·[64, 64] product 0.57 ms against 0.25 without). Each layer's bias is a row of its weights, read
  // through a column of ones that the activations carry: the table's (relu(1 + 0) = 1 through the first layer)
  // and each hidden layer's own [0 … 0 1] column, up to the last hidden layer, whose output does not need it
  // (the output layer's bias is added per row after its product).
  const carry = layers > 0;
  const tableX = carry ? g.node('Pad', [table, g.int64s('pad_col', [0, 0, 0, 1]), g.floats('one', Float32Array.of(1), [])]) : table;
  const wxX = carry ? g.node('Pad', [wx, g.int64s('pad_col0', [0, 0, 0, 1])]) : wx;
  const weights = hidden.map(([w, bias], i) => {
    const rows = shapes[4 + 2 * i][0] + 1;
    const wb = g.node('Concat', [w, g.node('Unsqueeze', [bias, g.int64s('axis0', [0])])], { axis: attr.int(0) });
    if (i === layers - 1) return wb;
    const unit = new Float32Array(rows);
    unit[rows - 1] = 1;
    return g.node('Concat', [wb, g.floats('ones_col', unit, [rows, 1])], { axis: attr.int(1) });
  });
  // the body: one tile of T queries
  const { b, n, c, axis0, rows } = queryTileBody(T);
  const cells = n('Cast', [rows(index)], { to: attr.int(7) });
  let a = n('Relu', [n('Add', [n('Gather', [tableX, cells], { axis: attr.int(0) }), n('MatMul', [rows(x), wxX])])]);
  a = n('Reshape', [a, c('rows', [N * T, H0 + (carry ? 1 : 0)])]);
  for (const w of weights) a = n('Relu', [n('MatMul', [a, w])]);
  const perRow = n('Add', [n('Reshape', [n('MatMul', [a, wOut]), c('nt', [N, T])]), bOut]);
  const s = n('ReduceSum', [n('Mul', [perRow, rows(weight)]), axis0], { keepdims: attr.int(0) });
  b.nodes.push({ opType: 'Identity', name: 'tile_cond_node', input: ['tile_cond'], output: ['tile_cond_out'] });
  b.nodes.push({ opType: 'Identity', name: 'tile_s_node', input: [s], output: ['tile_s'] });
  const body = {
    name: 'tile', node: b.nodes, initializer: b.initializers, input: [scalarInfo('tile_iter', 7), scalarInfo('tile_cond', 9)],
    output: [scalarInfo('tile_cond_out', 9), { name: 'tile_s', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: T }] } } } }],
  };
  const scan = g.name('scan');
  g.nodes.push({ opType: 'Loop', name: g.name('loop_node'), input: [g.int64s('iters', [iters], []), ''], output: [scan], attribute: [{ name: 'body', type: 5, g: body }] });
  const flat = g.node('Reshape', [scan, g.int64s('flat', [Qp])]);
  if (Qp !== Q) g.node('Slice', [flat, g.int64s('from', [0]), g.int64s('to', [Q]), g.int64s('axis', [0])]);
  // the last node's output is the graph's
  g.nodes[g.nodes.length - 1].output = ['y0'];
  g.output('y0', [Q]);
  return g;
}

/** `Ir2fEnsembleMlpGrad`: the ensemble MLP's gradient (`fused/ensemble-mlp.ts`) as one onnxruntime graph. */
export const ENSEMBLE_MLP_GRAD = 'Ir2fEnsembleMlpGrad';

const floatInfo = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });

/**
 * The gradient of `ensembleMlpGraph`'s s [Q] given ds [Q] (inputs as the forward's, then ds): outputs dtable
 * [R, H₀], dx [N, Q, K], dwx, per layer dw and db, dwOut, dbOut, dweight [N, Q]. A Loop over tiles of T queries
 * recomputes the tile's forward (its activations stay in cache, none is kept from the forward) and carries the
 * weight gradients and dtable as sums: dtable by ScatterND's add over the tile's cells (repeated cells add up),
 * no [N·Q, H₀] segment sum. Unlike the forward it keeps the biases apart: folded, every activation is 65 wide
 * at 64 channels, and onnxruntime's products and gathers at that width took twice as long.
 * The per-query gradients dx and dweight leave as the loop's scan outputs.
 *
 * `bce`: the value and gradient of L = Σ_q scale_q · BCE(σ(s_q), target_q) instead (inputs as the forward's, then
 * target [Q] and scale [Q]): each tile's ds = scale · (σ(s) − target) comes from its own forward, so s is computed
 * once, not by a forward graph and again here. Outputs dtable, dwx, per layer dw and db, dwOut, dbOut (x and
 * weight are data: no dx, no dweight), then s [Q], from which the caller takes L's value.
 */
function ensembleMlpGradGraph(shapes: number[][], layers: number, tile: number, bce = false): OnnxGraph {
  const [R, H0] = shapes[0];
  const [N, Q, K] = shapes[2];
  const T = Math.min(tile, Q);
  const iters = Math.ceil(Q / T);
  const Qp = iters * T;
  const NT = N * T;
  const g = new OnnxGraph();
  const xs = shapes.map((d, i) => g.input(`x${i}`, d));
  const [table, index0, x0, wx] = xs;
  const [wOut, bOut, weight0, ...perQuery] = xs.slice(4 + 2 * layers);
  // padded queries read cell 0 with weight 0 and ds (or scale) 0: they add nothing, and their outputs are cut off
  const pad = padQueries(g, Q, Qp);
  const [index, x, weight] = [pad(index0, 2), pad(x0, 3), pad(weight0, 2)];
  const [ds, target, scale] = bce ? ['', ...perQuery.map((t) => pad(t, 1, 0))] : [pad(perQuery[0], 1, 0)];
  const hidden = Array.from({ length: layers }, (_, i) => [xs[4 + 2 * i], xs[5 + 2 * i]]);
  const perm = { perm: attr.ints([1, 0]) };
  const wOutT = g.node('Transpose', [wOut], perm);
  const wT = hidden.map(([w]) => g.node('Transpose', [w], perm));
  // the sums the loop carries, zero to start: dtable, dwx, per layer dw and db, dwOut, dbOut
  const sumShapes = [[R, H0], [K, H0], ...hidden.flatMap((_, i) => [shapes[4 + 2 * i], shapes[5 + 2 * i]]), shapes[4 + 2 * layers], shapes[5 + 2 * layers]];
  const zeros = sumShapes.map((d) => g.node('ConstantOfShape', [g.int64s('shape', d)]));

  const { b, n, c, axis0, rows } = queryTileBody(T);
  const carried = sumShapes.map((_, i) => `tile_sum${i}`);
  const cells = n('Cast', [rows(index)], { to: attr.int(7) });
  const xt = rows(x);
  // the tile's forward, keeping each layer's input
  const acts = [n('Reshape', [n('Relu', [n('Add', [n('Gather', [table, cells], { axis: attr.int(0) }), n('MatMul', [xt, wx])])]), c('nt_h0', [NT, H0])])];
  for (const [w, bias] of hidden) acts.push(n('Relu', [n('Add', [n('MatMul', [acts[acts.length - 1], w]), bias])]));
  const last = acts[acts.length - 1];
  const perRow = n('Add', [n('Reshape', [n('MatMul', [last, wOut]), c('n_t', [N, T])]), bOut]);
  const weightT = rows(weight);
  // BCE from the logit: dL/ds = scale · (σ(s) − target)
  const sT = bce ? n('ReduceSum', [n('Mul', [perRow, weightT]), axis0], { keepdims: attr.int(0) }) : '';
  const dsRow = bce ? n('Mul', [n('Sub', [n('Sigmoid', [sT]), rows(target, 0)]), rows(scale, 0)]) : rows(ds, 0);
  const dsT = n('Unsqueeze', [dsRow, axis0]);
  const dPerRow = n('Mul', [weightT, dsT]);
  const dCol = n('Reshape', [dPerRow, c('nt_1', [NT, 1])]);
  // aᵀ·dz added to a sum: Gemm's C
  const addT = (sum: string, a: string, dz: string) => n('Gemm', [a, dz, sum], { transA: attr.int(1) });
  // a ReLU's output is ≥ 0: its gradient's mask is where it is not zero, as float through bool (onnxruntime's
  // Cast runs ~10× its Sign and Where here)
  const mask = (d: string, a: string) => n('Mul', [d, n('Cast', [n('Cast', [a], { to: attr.int(9) })], { to: attr.int(1) })]);
  const next: string[] = new Array<string>(carried.length);
  next[2 * layers + 2] = addT(carried[2 * layers + 2], last, dCol);
  next[2 * layers + 3] = n('Add', [carried[2 * layers + 3], n('Reshape', [n('ReduceSum', [dPerRow], { keepdims: attr.int(0) }), c('one', [1])])]);
  let da = n('Mul', [dCol, wOutT]);
  for (let i = layers - 1; i >= 0; i--) {
    const dz = mask(da, acts[i + 1]);
    next[2 + 2 * i] = addT(carried[2 + 2 * i], acts[i], dz);
    next[3 + 2 * i] = n('Add', [carried[3 + 2 * i], n('ReduceSum', [dz, axis0], { keepdims: attr.int(0) })]);
    da = n('MatMul', [dz, wT[i]]);
  }
  const dz0 = mask(da, acts[0]);
  next[1] = addT(carried[1], n('Reshape', [xt, c('nt_k', [NT, K])]), dz0);
  next[0] = n('ScatterND', [carried[0], n('Reshape', [cells, c('nt1', [NT, 1])]), dz0], { reduction: attr.str('add') });
  // per query: s (bce), or dx and dweight
  const scans: { from: string; name: string; dims: number[]; perNeighbour?: number[] }[] = bce ? [{ from: n('Identity', [sT]), name: 'tile_s', dims: [T] }] : [
    { from: n('Reshape', [n('MatMul', [dz0, g.node('Transpose', [wx], perm)]), c('n_t_k', [N, T, K])]), name: 'tile_dx', dims: [N, T, K], perNeighbour: [K] },
    { from: n('Mul', [perRow, dsT]), name: 'tile_dweight', dims: [N, T], perNeighbour: [] },
  ];
  // the body's outputs are its nodes' own (an Identity would copy each sum every tile; s, read in the tile, is one)
  const outs = [...carried.map((sum) => `${sum}_out`), ...scans.map((o) => o.name)];
  [...next, ...scans.map((o) => o.from)].forEach((from, i) => {
    b.nodes.find((node) => node.output?.[0] === from)!.output = [outs[i]];
  });
  b.nodes.push({ opType: 'Identity', name: 'tile_cond_node', input: ['tile_cond'], output: ['tile_cond_out'] });
  const body = {
    name: 'tile_grad', node: b.nodes, initializer: b.initializers,
    input: [scalarInfo('tile_iter', 7), scalarInfo('tile_cond', 9), ...carried.map((sum, i) => floatInfo(sum, sumShapes[i]))],
    output: [scalarInfo('tile_cond_out', 9), ...carried.map((sum, i) => floatInfo(`${sum}_out`, sumShapes[i])), ...scans.map((o) => floatInfo(o.name, o.dims))],
  };
  const sums = sumShapes.map(() => g.name('sum'));
  const scanNames = scans.map((o) => g.name(`scan_${o.name}`));
  g.nodes.push({
    opType: 'Loop', name: g.name('loop_node'), input: [g.int64s('iters', [iters], []), '', ...zeros], output: [...sums, ...scanNames],
    attribute: [{ name: 'body', type: 5, g: body }],
  });
  // scans are [iters, T] (s) or [iters, N, T(, K)] (per neighbour): back to [Q] or [N, Q(, K)]
  const unscan = (scan: string, k: number[] | undefined) => {
    const flat = k
      ? g.node('Reshape', [g.node('Transpose', [scan], { perm: attr.ints(k.length ? [1, 0, 2, 3] : [1, 0, 2]) }), g.int64s('nq', [N, Qp, ...k])])
      : g.node('Reshape', [scan, g.int64s('q', [Qp])]);
    return Qp === Q ? flat : g.node('Slice', [flat, g.int64s('from', [0]), g.int64s('to', [Q]), g.int64s('axis', [k ? 1 : 0])]);
  };
  const [perQueryOut, dims] = [scans.map((o, i) => unscan(scanNames[i], o.perNeighbour)), scans.map((o) => (o.perNeighbour ? [N, Q, ...o.perNeighbour] : [Q]))];
  // the gradient's outputs in its inputs' order (dx second), the BCE's sums then s
  const results = bce ? [...sums, ...perQueryOut] : [sums[0], perQueryOut[0], ...sums.slice(1), perQueryOut[1]];
  const outDims = bce ? [...sumShapes, ...dims] : [sumShapes[0], dims[0], ...sumShapes.slice(1), dims[1]];
  results.forEach((r, i) => {
    g.nodes.push({ opType: 'Identity', name: g.name('out_node'), input: [r], output: [`y${i}`] });
    g.output(`y${i}`, outDims[i]);
  });
  return g;
}

/** `Ir2fEnsembleMlpBce`: the value and gradient of a BCE on the ensemble MLP's logits as one onnxruntime graph. */
export const ENSEMBLE_MLP_BCE = 'Ir2fEnsembleMlpBce';

/**
 * Register an ensemble-MLP graph kernel on the host backends (idempotent): inputs table, index (float), x, wx,
 * w0, b0, …, wOut, bOut, weight, then `extra`; attribute `layers`. Its graph (`build`, given the inputs' shapes)
 * runs on the runtime set by `setDenseRuntime` into outputs of `outShapes`. Callers check `denseRuntime()` first
 * (the ops have no backend form of their own); a graph onnxruntime refuses is an error naming its reason.
 */
function registerMlpGraphKernel(
  kernelName: string, extra: string[], build: (shapes: number[][], layers: number, tile: number) => OnnxGraph,
  outShapes: (shapes: number[][], layers: number) => number[][],
): void {
  for (const backendName of HOST_BACKENDS) {
    if (tf.getKernel(kernelName, backendName)) continue;
    tf.registerKernel({
      kernelName, backendName,
      kernelFunc: ((args: KernelArgs) => {
        const rt = runtime;
        if (!rt) throw new Error(`${kernelName}: no onnxruntime (call it only where denseRuntime() is set)`);
        const layers = (args.attrs as { layers: number }).layers;
        const names = ['table', 'index', 'x', 'wx', ...Array.from({ length: layers }, (_, i) => [`w${i}`, `b${i}`]).flat(), 'wOut', 'bOut', 'weight', ...extra];
        const infos = names.map((name) => (args.inputs as Record<string, Info>)[name]);
        const shapes = infos.map((t) => t.shape);
        const k = key(kernelName, ...shapes.map((d) => d.join('x')));
        const graphOf = () => build(shapes, layers, mlpTile(rt.threads));
        if (!rt.ready(k, graphOf)) throw new Error(`${kernelName}: onnxruntime refused the graph: ${rt.refused.get(k) ?? 'unknown reason'}`);
        const io = hostIO(backendName, args.backend);
        // every output allocated before any view is taken (a wasm allocation may move the heap)
        const outs = outShapes(shapes, layers).map((d) => io.alloc(d));
        // float32 data: tfjs-cpu may hold a float32 tensor's values in another array type
        const view = (t: Info): OrtArray => {
          const data = io.view(t);
          return { data: data instanceof Float32Array ? data : Float32Array.from(data), dims: t.shape };
        };
        rt.run(k, graphOf, infos.map(view), outs.map(view));
        calls[kernelName] = (calls[kernelName] ?? 0) + 1;
        return outs.length === 1 ? outs[0] : outs;
      }) as tf.KernelFunc,
    });
  }
}

/** Register `Ir2fEnsembleMlp` (`ensembleMlpGraph`; output s [Q]) on the host backends. */
export const registerEnsembleMlpKernel = (): void => registerMlpGraphKernel(ENSEMBLE_MLP, [], ensembleMlpGraph, (shapes) => [[shapes[2][1]]]);

/**
 * Register `Ir2fEnsembleMlpGrad` (`ensembleMlpGradGraph`) on the host backends: inputs as `Ir2fEnsembleMlp`'s and
 * ds; outputs the gradients in the inputs' order (the index has none: dtable, dx, dwx, dw0, db0, …, dwOut, dbOut),
 * then dweight.
 */
export const registerEnsembleMlpGradKernel = (): void => registerMlpGraphKernel(ENSEMBLE_MLP_GRAD, ['ds'], ensembleMlpGradGraph,
  (shapes, layers) => [shapes[0], shapes[2], ...shapes.slice(3, 6 + 2 * layers), shapes[6 + 2 * layers]]);

/**
 * Register `Ir2fEnsembleMlpBce` (`ensembleMlpGradGraph`'s `bce` form) on the host backends: inputs as
 * `Ir2fEnsembleMlp`'s, then target and scale [Q]; outputs dtable, dwx, dw0, db0, …, dwOut, dbOut, then s [Q].
 */
export const registerEnsembleMlpBceKernel = (): void => registerMlpGraphKernel(ENSEMBLE_MLP_BCE, ['target', 'scale'],
  (shapes, layers, tile) => ensembleMlpGradGraph(shapes, layers, tile, true), (shapes, layers) => [shapes[0], ...shapes.slice(3, 6 + 2 * layers), [shapes[2][1]]]);
