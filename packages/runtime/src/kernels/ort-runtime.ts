/**
 * onnxruntime's CPU provider as a kernel library: a one-node (or few-node) ONNX graph per kernel signature,
 * built once and cached, run synchronously on float32 arrays that stay where they are (tfjs-wasm's heap or
 * tfjs-cpu's arrays). The provider's MLAS GEMM uses AVX2/AVX-512 and reaches ~85 GFLOP/s per core here,
 * where XNNPACK compiled to wasm (128-bit SIMD, no FMA) reaches ~20-30.
 *
 * onnxruntime-node is an optional peer: `OrtKernelRuntime.load` says why it is unavailable instead of throwing.
 * tfjs kernels are synchronous, so the package's promise-based `InferenceSession` cannot serve; its native
 * binding (the synchronous session object the package itself wraps in `setImmediate`) can.
 */
import { createRequire } from 'node:module';
import type { OnnxGraph } from '../onnx/graph.js';

const require = createRequire(import.meta.url);

interface NativeTensor {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

interface NativeSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: Record<string, unknown>): void;
  run(feeds: Record<string, NativeTensor>, fetches: Record<string, NativeTensor>, options: Record<string, unknown>): unknown;
  dispose(): void;
}

interface OrtModules {
  binding: { InferenceSession: new () => NativeSession };
  initOrt(): void;
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => NativeTensor;
  version: string;
}

let loaded: OrtModules | string | undefined;

/** The package's native binding, or the reason it cannot be used (not installed, failed to load). */
function loadModules(): OrtModules | string {
  if (loaded !== undefined) return loaded;
  try {
    const { binding, initOrt } = require('onnxruntime-node/dist/binding.js') as Pick<OrtModules, 'binding' | 'initOrt'>;
    // the package re-exports onnxruntime-common's Tensor, which the binding builds its results with
    const { Tensor } = require('onnxruntime-node') as Pick<OrtModules, 'Tensor'>;
    const { version } = require('onnxruntime-node/package.json') as { version: string };
    if (typeof binding?.InferenceSession !== 'function') throw new Error('its native binding has no InferenceSession');
    initOrt();
    loaded = { binding, initOrt, Tensor, version };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    loaded = e.code === 'MODULE_NOT_FOUND'
      ? 'onnxruntime-node is not installed (npm install onnxruntime-node@1.30.0)'
      : `onnxruntime-node failed to load: ${e.message}`;
  }
  return loaded;
}

/** A float32 array and the dims it has in the graph. */
export interface OrtArray {
  data: Float32Array;
  dims: number[];
}

/** Sessions kept (least recently used first out): a model sees a bounded set of kernel signatures. */
const MAX_SESSIONS = 512;

export class OrtKernelRuntime {
  private readonly sessions = new Map<string, NativeSession>();
  private readonly refusals = new Map<string, string>();
  /** A bounce buffer for arrays on a SharedArrayBuffer (the threaded wasm heap), which the binding refuses. */
  private bounce = new Float32Array(0);

  private constructor(private readonly ort: OrtModules, readonly threads: number) {}

  /** The runtime on `threads` intra-op threads, or why there is none. */
  static load(threads: number): OrtKernelRuntime | string {
    const ort = loadModules();
    return typeof ort === 'string' ? ort : new OrtKernelRuntime(ort, threads);
  }

  get version(): string {
    return this.ort.version;
  }

  /**
   * Whether the graph for `key` has a session (built by `build` on first use). A graph onnxruntime refuses
   * is remembered with its reason (`refused`), and its kernel stays on the backend.
   */
  ready(key: string, build: () => OnnxGraph): boolean {
    if (this.sessions.has(key)) return true;
    if (this.refusals.has(key)) return false;
    try {
      this.session(key, build);
      return true;
    } catch (err) {
      this.refusals.set(key, (err as Error).message);
      return false;
    }
  }

  /** Kernel signatures onnxruntime refused, with its reasons. */
  get refused(): ReadonlyMap<string, string> {
    return this.refusals;
  }

  /** Run the graph of a `ready` key with `inputs` fed in graph input order, writing `outputs`' arrays. */
  run(key: string, build: () => OnnxGraph, inputs: OrtArray[], outputs: OrtArray[]): void {
    const session = this.session(key, build);
    if ([...inputs, ...outputs].some((a) => a.data.buffer instanceof SharedArrayBuffer)) {
      this.runShared(session, inputs, outputs);
      return;
    }
    session.run(this.named('x', inputs), this.named('y', outputs), {});
  }

  dispose(): void {
    for (const s of this.sessions.values()) s.dispose();
    this.sessions.clear();
  }

  private named(prefix: string, arrays: OrtArray[]): Record<string, NativeTensor> {
    return Object.fromEntries(arrays.map((a, i) => [`${prefix}${i}`, new this.ort.Tensor('float32', a.data, a.dims)]));
  }

  /** Copy through one non-shared buffer (inputs in, outputs back): a memory pass each, against ~3× kernel speed. */
  private runShared(session: NativeSession, inputs: OrtArray[], outputs: OrtArray[]): void {
    const all = [...inputs, ...outputs];
    const total = all.reduce((n, a) => n + a.data.length, 0);
    if (this.bounce.length < total) this.bounce = new Float32Array(total);
    let at = 0;
    const copies = all.map((a) => {
      const view = this.bounce.subarray(at, at + a.data.length);
      at += a.data.length;
      return { ...a, data: view };
    });
    inputs.forEach((a, i) => copies[i].data.set(a.data));
    session.run(this.named('x', copies.slice(0, inputs.length)), this.named('y', copies.slice(inputs.length)), {});
    outputs.forEach((a, i) => a.data.set(copies[inputs.length + i].data));
  }

  private session(key: string, build: () => OnnxGraph): NativeSession {
    const hit = this.sessions.get(key);
    if (hit) {
      // most recently used last
      this.sessions.delete(key);
      this.sessions.set(key, hit);
      return hit;
    }
    const model = build().toModel({ opset: 17, graphName: key });
    const session = new this.ort.binding.InferenceSession();
    session.loadModel(model.buffer as ArrayBuffer, model.byteOffset, model.byteLength, {
      intraOpNumThreads: this.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // one arena per session would hold each kernel's peak scratch for the process's life
      enableCpuMemArena: false,
      // idle pool threads must not spin: tfjs's own kernels run between these calls
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    });
    if (this.sessions.size >= MAX_SESSIONS) {
      const [oldKey, oldest] = this.sessions.entries().next().value as [string, NativeSession];
      oldest.dispose();
      this.sessions.delete(oldKey);
    }
    this.sessions.set(key, session);
    return session;
  }
}
