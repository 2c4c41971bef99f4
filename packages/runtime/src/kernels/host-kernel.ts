/**
 * Kernels written as JS loops over tensor data in host memory, for the backends that keep it there (wasm:
 * its heap; cpu: typed arrays). One loop can replace a chain of element-wise kernels, each of which would
 * make a full pass over memory. A plugin registers one with `registerHostKernel`, calls it where
 * `hasHostKernel` says the active backend has it, and composes tensor ops elsewhere (webgl, tfjs-node).
 */
import * as tf from '@tensorflow/tfjs';
import { simdKernelsFor, type SimdKernels } from '../simd/simd-kernels.js';
import { asWasm, type KernelArgs } from './wasm-heap.js';

export type HostArray = Float32Array | Int32Array | Uint8Array;

export interface HostInput {
  values: HostArray;
  shape: number[];
}

export interface HostKernel {
  /** The tfjs kernel name (pick one no other library uses, e.g. with a package prefix). */
  name: string;
  /** The shapes of the float32 outputs from the inputs' shapes and the attributes. */
  outputShapes(shapes: Record<string, number[]>, attrs: tf.NamedAttrMap): number[][];
  /** Fill the outputs from the inputs. Runs on the live heap: it must not create or dispose tensors. */
  compute(inputs: Record<string, HostInput>, outs: Float32Array[], attrs: tf.NamedAttrMap): void;
  /** Optionally, the wasm backend's form: SIMD kernels working on the heap by byte offsets. */
  wasm?: WasmHostKernel;
}

/** The heap of the wasm backend during a kernel (views taken after every allocation, valid until it returns). */
export interface WasmHeap {
  f32: Float32Array;
  f64: Float64Array;
  simd: SimdKernels;
  /** Copy n float64 values at byte offset `from` (a kernel's float64 sums) to float32 at byte offset `to`. */
  narrow(from: number, n: number, to: number): void;
}

export interface WasmHostKernel {
  /** Bytes of scratch the kernel needs (8-byte aligned, freed when it returns). */
  scratchBytes(shapes: Record<string, number[]>, attrs: tf.NamedAttrMap): number;
  /** Fill the outputs: inputs, outputs and scratch given as byte offsets into `heap`. */
  compute(inputs: Record<string, { ptr: number; shape: number[] }>, outs: number[], scratch: number, heap: WasmHeap, attrs: tf.NamedAttrMap): void;
}

/** The backends whose tensor data a JS loop can read and write in place. */
export const HOST_BACKENDS = ['wasm', 'cpu'] as const;
export type HostBackend = (typeof HOST_BACKENDS)[number];

interface CpuBackendLike {
  readSync(dataId: object): tf.backend_util.BackendValues;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues): tf.TensorInfo;
}

/** Tensor data of a host backend as arrays, in place. */
export interface HostIO {
  /** A new float32 output. On wasm it may grow (and so detach) the heap: take views after all allocations. */
  alloc(shape: number[]): tf.TensorInfo;
  view(t: tf.TensorInfo): HostArray;
}

export function hostIO(backendName: HostBackend, backend: unknown): HostIO {
  if (backendName === 'wasm') {
    const wb = asWasm(backend);
    return { alloc: (shape) => wb.makeOutput(shape, 'float32'), view: (t) => wb.typedArrayFromHeap(t) };
  }
  const cpu = backend as CpuBackendLike;
  return {
    alloc: (shape) => cpu.makeTensorInfo(shape, 'float32', new Float32Array(shape.reduce((a, b) => a * b, 1))),
    view: (t) => cpu.readSync(t.dataId) as HostArray,
  };
}

type Infos = Record<string, tf.TensorInfo>;

function shapesOf(inputs: Infos): Record<string, number[]> {
  return Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.shape]));
}

/** The SIMD form of `k` on the wasm backend; false where that backend cannot run it. */
function runOnWasmHeap(k: WasmHostKernel, ins: Infos, backend: unknown, attrs: tf.NamedAttrMap, outShapes: number[][]): tf.TensorInfo[] | false {
  const simd = simdKernelsFor(backend);
  if (!simd) return false;
  const wb = asWasm(backend);
  const outs = outShapes.map((shape) => wb.makeOutput(shape, 'float32'));
  const bytes = k.scratchBytes(shapesOf(ins), attrs);
  // two floats more, to align the scratch to 8 bytes for its float64 parts
  const scratch = bytes > 0 ? wb.makeOutput([Math.ceil(bytes / 4) + 2], 'float32') : undefined;
  try {
    // byte offsets after all allocations (one may grow the heap; offsets stay, views would not)
    const ptr = (t: tf.TensorInfo) => wb.typedArrayFromHeap(t).byteOffset;
    const buffer = wb.typedArrayFromHeap(outs[0]).buffer;
    const [f32, f64] = [new Float32Array(buffer), new Float64Array(buffer, 0, buffer.byteLength >> 3)];
    const heap: WasmHeap = { f32, f64, simd, narrow: (from, n, to) => f32.set(f64.subarray(from / 8, from / 8 + n), to / 4) };
    const base = scratch ? ptr(scratch) : 0;
    const inputs = Object.fromEntries(Object.entries(ins).map(([name, t]) => [name, { ptr: ptr(t), shape: t.shape }]));
    k.compute(inputs, outs.map(ptr), Math.ceil(base / 8) * 8, heap, attrs);
  } finally {
    if (scratch) wb.disposeData(scratch.dataId);
  }
  return outs;
}

function hostKernelFunc(k: HostKernel, backendName: HostBackend): tf.KernelFunc {
  return (({ inputs, backend, attrs }: KernelArgs) => {
    const ins = inputs as Infos;
    if (backendName === 'wasm' && k.wasm && Object.values(ins).every((t) => t.dtype === 'float32' || t.dtype === 'int32')) {
      const outs = runOnWasmHeap(k.wasm, ins, backend, attrs, k.outputShapes(shapesOf(ins), attrs));
      if (outs) return outs.length === 1 ? outs[0] : outs;
    }
    const io = hostIO(backendName, backend);
    const outs = k.outputShapes(shapesOf(ins), attrs).map((shape) => io.alloc(shape));
    // views after the allocations: they may have grown (and so detached) the heap
    const views = Object.fromEntries(Object.entries(ins).map(([name, t]) => [name, { values: io.view(t), shape: t.shape }]));
    k.compute(views, outs.map((o) => io.view(o) as Float32Array), attrs);
    return outs.length === 1 ? outs[0] : outs;
  }) as tf.KernelFunc;
}

/** Register `k` for wasm and cpu (idempotent: a name already registered for a backend is left alone). */
export function registerHostKernel(k: HostKernel): void {
  for (const backendName of HOST_BACKENDS) {
    if (tf.getKernel(k.name, backendName)) continue;
    tf.registerKernel({ kernelName: k.name, backendName, kernelFunc: hostKernelFunc(k, backendName) });
  }
}

/**
 * `register` as a function that runs it on its first call only: a module registers its kernels and gradients
 * when an op first runs (not at import), once per process.
 */
export function registerOnce(register: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    register();
  };
}

/** Whether the active backend runs kernel `name`. */
export function hasHostKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) != null;
}

/** A new tensor's shape and dtype for `filledTensors`. */
export interface TensorSpec {
  shape: number[];
  dtype: 'float32' | 'int32';
}

/**
 * New tensors whose values `fill` writes in place, given one array per spec. On wasm the arrays are views of
 * the tensors in the backend's heap: no JS buffer is allocated, so none has to be faulted in page by page and
 * left for the garbage collector (on this VM a fresh page costs ~11 µs: a 2.5 MB buffer ~7 ms, more than the
 * pass that fills it). Elsewhere they are fresh typed arrays the tensors are then made from. `fill` must write
 * every element (on wasm the arrays start with whatever the heap held) and must not create or dispose tensors
 * (that may move the heap under its views).
 */
export function filledTensors(specs: readonly TensorSpec[], fill: (arrays: (Float32Array | Int32Array)[]) => void): tf.Tensor[] {
  const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
  if (tf.getBackend() !== 'wasm') {
    const arrays = specs.map((s) => (s.dtype === 'int32' ? new Int32Array(count(s.shape)) : new Float32Array(count(s.shape))));
    fill(arrays);
    return specs.map((s, i) => tf.tensor(arrays[i], s.shape, s.dtype));
  }
  const wb = asWasm(tf.backend());
  const infos = specs.map((s) => wb.makeOutput(s.shape, s.dtype));
  try {
    // views after every allocation: one may grow the heap
    fill(infos.map((t) => wb.typedArrayFromHeap(t) as Float32Array | Int32Array));
  } catch (err) {
    for (const t of infos) wb.disposeData(t.dataId);
    throw err;
  }
  return infos.map((t) => tf.engine().makeTensorFromTensorInfo(t));
}
