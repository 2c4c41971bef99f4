/**
 * Kernels written as JS loops over tensor data in host memory, for the backends that keep it there (wasm:
 * its heap; cpu: typed arrays). One loop can replace a chain of element-wise kernels, each of which would
 * make a full pass over memory. A plugin registers one with `registerHostKernel`, calls it where
 * `hasHostKernel` says the active backend has it, and composes tensor ops elsewhere (webgl, tfjs-node).
 */
import * as tf from '@tensorflow/tfjs';
import { asWasm, f32, type KernelArgs } from './wasm-heap.js';

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
}

/** The backends whose tensor data a JS loop can read and write in place. */
export const HOST_BACKENDS = ['wasm', 'cpu'] as const;

interface CpuBackendLike {
  readSync(dataId: object): tf.backend_util.BackendValues;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues): tf.TensorInfo;
}

type Infos = Record<string, tf.TensorInfo>;

function shapesOf(inputs: Infos): Record<string, number[]> {
  return Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.shape]));
}

function wasmKernel(k: HostKernel): tf.KernelFunc {
  return (({ inputs, backend, attrs }: KernelArgs) => {
    const wb = asWasm(backend);
    const ins = inputs as Infos;
    const outs = k.outputShapes(shapesOf(ins), attrs).map((shape) => wb.makeOutput(shape, 'float32'));
    // views after the allocations: they may have grown (and so detached) the heap
    const views = Object.fromEntries(Object.entries(ins).map(([name, t]) => [name, { values: wb.typedArrayFromHeap(t), shape: t.shape }]));
    k.compute(views, outs.map((o) => f32(wb, o)), attrs);
    return outs.length === 1 ? outs[0] : outs;
  }) as tf.KernelFunc;
}

function cpuKernel(k: HostKernel): tf.KernelFunc {
  return (({ inputs, backend, attrs }: KernelArgs) => {
    const cpu = backend as unknown as CpuBackendLike;
    const ins = inputs as Infos;
    const shapes = k.outputShapes(shapesOf(ins), attrs);
    const outs = shapes.map((shape) => new Float32Array(shape.reduce((a, b) => a * b, 1)));
    const views = Object.fromEntries(Object.entries(ins).map(([name, t]) => [name, { values: cpu.readSync(t.dataId) as HostArray, shape: t.shape }]));
    k.compute(views, outs, attrs);
    const infos = shapes.map((shape, i) => cpu.makeTensorInfo(shape, 'float32', outs[i]));
    return infos.length === 1 ? infos[0] : infos;
  }) as tf.KernelFunc;
}

/** Register `k` for wasm and cpu (idempotent: a name already registered for a backend is left alone). */
export function registerHostKernel(k: HostKernel): void {
  for (const backendName of HOST_BACKENDS) {
    if (tf.getKernel(k.name, backendName)) continue;
    tf.registerKernel({ kernelName: k.name, backendName, kernelFunc: backendName === 'wasm' ? wasmKernel(k) : cpuKernel(k) });
  }
}

/** Whether the active backend runs kernel `name`. */
export function hasHostKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) != null;
}
