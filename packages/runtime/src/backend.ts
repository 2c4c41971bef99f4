/**
 * Backend resolution, in the tfjs model of "the best backend that initialises": `tensorflow` (native
 * libtensorflow through @tensorflow/tfjs-node-gpu, then @tensorflow/tfjs-node; optional peers, loaded only
 * if installed) → `wasm` (the embedded default) → `cpu`. `IR2F_BACKEND` picks one when no name is passed.
 * Convolutions, matrix products and a few more kernels of wasm and cpu run on onnxruntime's CPU provider when
 * onnxruntime-node is installed (`ort-dense-kernels.ts`), on min(4, cores) threads (`IR2F_WASM_THREADS` or
 * `wasmThreads` forces a count), wasm then on its single-thread build; without it wasm runs XNNPACK on those
 * threads (1 is the single-thread build).
 */
import os from 'node:os';
import v8 from 'node:v8';
import * as tf from '@tensorflow/tfjs';
import { RuntimeError } from './errors.js';
import { registerBatchNormGradient } from './gradients/batch-norm-grad.js';
import { registerDilatedConvGradients } from './gradients/dilated-conv-grads.js';
import { registerReduceGradients } from './gradients/reduce-grads.js';
import { registerResizeBilinearGradient } from './gradients/resize-bilinear-grad.js';
import { registerOnce } from './kernels/host-kernel.js';
import { registerWasmGradientKernels } from './kernels/register-wasm-kernels.js';
import { denseRuntime, nchwcBlock, registerDenseKernels, setDenseRuntime } from './kernels/ort-dense-kernels.js';
import { OrtKernelRuntime } from './kernels/ort-runtime.js';
import { startThreadedWasm } from './kernels/wasm-threads.js';

export const BACKEND_NAMES = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendInfo {
  /** tfjs backend name in use. */
  name: BackendName;
  /** Version of the package that provides it. */
  version: string;
  /** The npm package that provides it. */
  package: string;
  /** Set when automatic selection skipped a backend that is installed but failed to start. */
  fallback?: { from: BackendName; reason: string };
  /** wasm: XNNPACK's thread count. */
  threads?: number;
  /**
   * wasm, cpu: where convolutions and matrix products run: onnxruntime's CPU provider (MLAS, AVX2/AVX-512) on
   * `threads` threads, or the backend's own kernels, and why.
   */
  /** `nchwcBlock`: the channel block of MLAS's blocked convolutions on this CPU (0: none; see `nhwcConv`). */
  dense?: { provider: 'onnxruntime'; version: string; threads: number; nchwcBlock: number } | { provider: 'backend'; reason: string };
}

export interface BackendOptions {
  /**
   * The run's threads: onnxruntime's when it runs the dense kernels (wasm then takes its single-thread
   * build), else XNNPACK's (1 is the single-thread build). Default `IR2F_WASM_THREADS`, else min(4, cores).
   */
  wasmThreads?: number;
  /**
   * wasm, cpu: 'onnxruntime' runs convolutions and matrix products on onnxruntime-node (an optional peer);
   * 'backend' keeps the backend's own. Default `IR2F_DENSE_KERNELS`, else onnxruntime when it loads.
   */
  denseKernels?: DenseKernels;
}

/** One line for logs: the backend, its threads, and where convolutions and matrix products run. */
export function describeBackend(info: BackendInfo): string {
  const parts = [
    ...(info.threads ? [`${info.threads} thread${info.threads > 1 ? 's' : ''}`] : []),
    ...(info.dense?.provider === 'onnxruntime'
      ? [`convolutions and matrix products on onnxruntime ${info.dense.version}, ${info.dense.threads} thread${info.dense.threads > 1 ? 's' : ''}`]
      : info.dense ? [`convolutions and matrix products on the backend: ${info.dense.reason}`] : []),
  ];
  return `${info.name} backend${parts.length ? ` (${parts.join('; ')})` : ''}`;
}

export const DENSE_KERNELS = ['onnxruntime', 'backend'] as const;
export type DenseKernels = (typeof DENSE_KERNELS)[number];

/** XNNPACK's pool is capped at 4 threads by tfjs-backend-wasm. */
const MAX_WASM_THREADS = 4;

/** The wasm thread count `initBackend` uses: `wasmThreads`, else `IR2F_WASM_THREADS`, else min(4, cores). */
export function wasmThreads(opts: BackendOptions = {}): number {
  const env = process.env.IR2F_WASM_THREADS;
  const raw = opts.wasmThreads ?? (env != null && env.trim() !== '' ? Number(env) : Math.min(MAX_WASM_THREADS, os.availableParallelism()));
  if (!Number.isInteger(raw) || raw < 1 || raw > MAX_WASM_THREADS) {
    const from = opts.wasmThreads != null ? 'wasmThreads' : 'IR2F_WASM_THREADS (ir2f --threads)';
    throw new RuntimeError('INVALID_CONFIG', `${from} must be an integer from 1 to ${MAX_WASM_THREADS}, got '${opts.wasmThreads ?? env}'`);
  }
  return raw;
}

const TENSORFLOW_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

function isModuleNotFound(err: unknown, pkg: string): boolean {
  const e = err as { code?: string; message?: string };
  return (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') && String(e.message).includes(pkg);
}

/** Importing a specifier held in a variable keeps bundlers and tsc from requiring optional peers. */
async function importOptional(pkg: string): Promise<Record<string, unknown> | undefined> {
  try {
    return (await import(pkg)) as Record<string, unknown>;
  } catch (err) {
    if (isModuleNotFound(err, pkg)) return undefined;
    throw new RuntimeError('BACKEND_INIT_FAILED', `${pkg} is installed but failed to load: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

const CPU: BackendInfo = { name: 'cpu', version: tf.version_core, package: '@tensorflow/tfjs-backend-cpu' };

async function loadTensorflow(): Promise<BackendInfo | undefined> {
  for (const pkg of TENSORFLOW_PACKAGES) {
    const mod = await importOptional(pkg);
    if (!mod) continue;
    const version = (mod.version as Record<string, string> | undefined)?.['tfjs-node'] ?? tf.version_core;
    return { name: 'tensorflow', version, package: pkg };
  }
  return undefined;
}

/**
 * V8 compiles wasm with its baseline compiler and moves a function to its optimising one only after the function
 * has done a budget of work (dynamic tiering). A training step calls most kernels a few times, so they ran at
 * baseline speed for the first ~15 steps (resnet-tiny-deeplabv2 at 128² on one thread: ~150 ms a step, ~100
 * from step 16 on; with this budget ~105 from step 6). Set before the first module compiles (modules compiled
 * later follow it); process-wide, so only when ir2f starts the wasm backend.
 */
const eagerWasmTierUp = registerOnce(() => v8.setFlagsFromString('--wasm-tiering-budget=100'));

async function loadWasm(threads: number): Promise<BackendInfo> {
  eagerWasmTierUp();
  const pkg = '@tensorflow/tfjs-backend-wasm';
  const mod = await importOptional(pkg);
  if (!mod) {
    throw new RuntimeError('BACKEND_NOT_INSTALLED', `backend 'wasm' needs ${pkg}: npm install ${pkg}@${tf.version_core}`);
  }
  registerWasmGradientKernels();
  const info = { name: 'wasm' as const, version: String(mod.version_wasm ?? tf.version_core), package: pkg };
  // the module starts once per process: a later call reports the threads it started with
  const started = (tf.engine() as unknown as { registry: Record<string, unknown> }).registry.wasm != null;
  if (started) return { ...info, threads: (mod.getThreadsCount as () => number)() };
  if (threads === 1) return { ...info, threads: 1 };
  try {
    return { ...info, threads: await startThreadedWasm(mod, threads) };
  } catch (err) {
    throw new RuntimeError('BACKEND_INIT_FAILED',
      `the threaded wasm backend (${threads} threads) failed to start: ${(err as Error).message}; set IR2F_WASM_THREADS=1 for the single-thread build`,
      { cause: err });
  }
}

/**
 * tfjs-backend-cpu prints a "install tfjs-node" banner on first use; ir2f documents backends itself and
 * reports the choice in `run-start`, so the banner is switched off.
 */
function quietCpuBanner(): void {
  const cpu = tf.findBackend('cpu') as { firstUse?: boolean } | null;
  if (cpu && 'firstUse' in cpu) cpu.firstUse = false;
}

async function activateBackend(info: BackendInfo): Promise<BackendInfo> {
  quietCpuBanner();
  const ok = await tf.setBackend(info.name);
  if (!ok || tf.getBackend() !== info.name) {
    throw new RuntimeError('BACKEND_INIT_FAILED', `backend '${info.name}' (${info.package}) failed to initialise`);
  }
  await tf.ready();
  return info;
}

function denseChoice(opts: BackendOptions): DenseKernels | undefined {
  const env = process.env.IR2F_DENSE_KERNELS;
  const raw = opts.denseKernels ?? (env != null && env.trim() !== '' ? env.trim() : undefined);
  if (raw == null || (DENSE_KERNELS as readonly string[]).includes(raw)) return raw as DenseKernels | undefined;
  const from = opts.denseKernels != null ? 'denseKernels' : 'IR2F_DENSE_KERNELS';
  throw new RuntimeError('INVALID_CONFIG', `${from} must be one of ${DENSE_KERNELS.join(', ')}, got '${raw}'`);
}

/**
 * Route the host backends' convolutions and matrix products to onnxruntime on the run's `threads`, unless
 * asked not to or it is not installed (then an explicit request is an error).
 */
function attachDense(info: BackendInfo, choice: DenseKernels | undefined, threads: number, rt: OrtKernelRuntime | string): BackendInfo {
  if (info.name === 'tensorflow' || choice === 'backend') {
    setDenseRuntime(undefined);
    return info.name === 'tensorflow' ? info : { ...info, dense: { provider: 'backend', reason: 'denseKernels: backend' } };
  }
  if (typeof rt === 'string') {
    setDenseRuntime(undefined);
    return { ...info, dense: { provider: 'backend', reason: rt } };
  }
  registerDenseKernels();
  setDenseRuntime(rt);
  return { ...info, dense: { provider: 'onnxruntime', version: rt.version, threads, nchwcBlock: nchwcBlock(rt) } };
}

/** onnxruntime on `threads` (the current runtime if it has them), or why not; an explicit request must load. */
function denseRuntimeFor(choice: DenseKernels | undefined, threads: number): OrtKernelRuntime | string {
  if (choice === 'backend') return 'denseKernels: backend';
  const current = denseRuntime();
  const rt = current?.threads === threads ? current : OrtKernelRuntime.load(threads);
  if (typeof rt === 'string' && choice === 'onnxruntime') {
    throw new RuntimeError('BACKEND_NOT_INSTALLED', `denseKernels 'onnxruntime': ${rt}; or set IR2F_DENSE_KERNELS=backend`);
  }
  return rt;
}

function parseName(name: string, source: string): BackendName {
  const n = name.trim().toLowerCase();
  if ((BACKEND_NAMES as readonly string[]).includes(n)) return n as BackendName;
  throw new RuntimeError('UNKNOWN_BACKEND',
    `unknown backend '${name}' (from ${source}); valid backends: ${BACKEND_NAMES.join(', ')}`);
}

/**
 * Select and initialise the tensor backend. `name` (or else the `IR2F_BACKEND` environment variable) forces
 * one; otherwise the first that initialises of tensorflow → wasm → cpu. Also installs ir2f's gradient
 * kernels (wasm), and dilated-convolution, batch-norm, resize and sum/mean gradients (all backends).
 */
let current: BackendInfo | undefined;

/** What `initBackend` last selected (undefined before the first call). */
export function currentBackend(): BackendInfo | undefined {
  return current;
}

export async function initBackend(name?: string, opts: BackendOptions = {}): Promise<BackendInfo> {
  current = await selectBackend(name, opts);
  return current;
}

async function selectBackend(name: string | undefined, opts: BackendOptions): Promise<BackendInfo> {
  registerDilatedConvGradients();
  registerBatchNormGradient();
  registerResizeBilinearGradient();
  registerReduceGradients();
  // a bad thread count is an error, not a reason to fall back to another backend
  const threads = wasmThreads(opts);
  const dense = denseChoice(opts);
  const rt = denseRuntimeFor(dense, threads);
  const activate = async (info: BackendInfo) => attachDense(await activateBackend(info), dense, threads, rt);
  // with onnxruntime running the heavy kernels on the run's threads, wasm takes the single-thread build: its
  // threaded build's heap is a SharedArrayBuffer, which would cost a copy in and out of every such kernel
  const wasmBuildThreads = typeof rt === 'string' ? threads : 1;
  const requested = name ?? process.env.IR2F_BACKEND;
  const source = name != null ? 'initBackend()' : 'IR2F_BACKEND';
  if (requested != null && requested.trim() !== '') {
    const want = parseName(requested, source);
    if (want === 'tensorflow') {
      const info = await loadTensorflow();
      if (!info) {
        throw new RuntimeError('BACKEND_NOT_INSTALLED',
          `backend 'tensorflow' needs @tensorflow/tfjs-node (CPU) or @tensorflow/tfjs-node-gpu (libtensorflow 2.9.1: CUDA 11.2, cuDNN 8.1): ` +
          `npm install @tensorflow/tfjs-node@${tf.version_core}`);
      }
      return activate(info);
    }
    if (want === 'wasm') return activate(await loadWasm(wasmBuildThreads));
    return activate(CPU);
  }
  // automatic: a backend that is installed but fails to start is skipped, and the reason kept
  let fallback: BackendInfo['fallback'];
  try {
    const native = await loadTensorflow();
    if (native) return await activate(native);
  } catch (err) {
    fallback = { from: 'tensorflow', reason: (err as Error).message };
  }
  try {
    return { ...(await activate(await loadWasm(wasmBuildThreads))), ...(fallback && { fallback }) };
  } catch (err) {
    return { ...(await activate(CPU)), fallback: fallback ?? { from: 'wasm', reason: (err as Error).message } };
  }
}
