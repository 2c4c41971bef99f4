/**
 * tfjs-backend-wasm's threaded SIMD build in Node (XNNPACK on a thread pool). The package turns threads off
 * in Node (`WASM_HAS_MULTITHREAD_SUPPORT` is false when `IS_NODE`) because Emscripten's pthread workers are
 * started from Blob URLs. Here:
 *   - a global `Worker` over worker_threads runs Emscripten's own worker script (it has a Node branch), with
 *     the main script loaded from the glue file on disk instead of a Blob URL;
 *   - XNNPACK's pool size is fixed when the module starts, from the logical core count halved and clamped
 *     to [1, 4] (tfjs assumes two hyper-threads per core), so during start-up `os.cpus()` reports 2 × threads;
 *   - the pool's workers are unref'd, so that they do not keep the process alive.
 * All of it is undone once the module has started; nothing else changes for the rest of the process.
 */
import { createRequire } from 'node:module';
import os from 'node:os';
import { Worker as NodeWorker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';

const require = createRequire(import.meta.url);
const MAIN_SCRIPT = 'ir2f:wasm-threaded-main-script';

interface EmscriptenPThread {
  runningWorkers: NodeWorker[];
  unusedWorkers: NodeWorker[];
}

/** The worker script: Emscripten's, then a shim that loads the main script by `require`. */
function workerSource(): string {
  const glue = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js');
  const { wasmWorkerContents } = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js') as {
    wasmWorkerContents: string;
  };
  // the package stores the script in a template literal whose "\n" escapes became newlines (it re-escapes
  // them for its Blob the same way)
  const shim = `;(() => {
    const load = global.importScripts;
    URL.createObjectURL = () => ${JSON.stringify(MAIN_SCRIPT)};
    global.importScripts = (f) => {
      if (f === ${JSON.stringify(MAIN_SCRIPT)}) global.WasmBackendModuleThreadedSimd = require(${JSON.stringify(glue)});
      else load(f);
    };
  })();`;
  return wasmWorkerContents.replace(/\n/g, '\\n') + shim;
}

/**
 * Start the wasm backend with `threads` XNNPACK threads (2–4). Call after `@tensorflow/tfjs-backend-wasm`
 * is imported and before the backend is first used. Returns the pool size XNNPACK reports.
 */
export async function startThreadedWasm(wasm: Record<string, unknown>, threads: number): Promise<number> {
  const source = workerSource();
  class PthreadWorker extends NodeWorker {
    constructor() {
      super(source, { eval: true });
    }
  }
  const previous = Object.getOwnPropertyDescriptor(globalThis, 'Worker');
  const cpus = os.cpus;
  // Emscripten's glue assigns `global.Worker` itself in Node: the setter keeps ours
  Object.defineProperty(globalThis, 'Worker', { get: () => PthreadWorker, set: () => undefined, configurable: true });
  os.cpus = () => Array.from({ length: 2 * threads }, () => cpus()[0]);
  try {
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
    (wasm.setThreadsCount as (n: number) => void)(threads);
    if (!(await tf.setBackend('wasm'))) throw new Error('the threaded wasm module did not start');
  } finally {
    os.cpus = cpus;
    if (previous) Object.defineProperty(globalThis, 'Worker', previous);
    else delete (globalThis as { Worker?: unknown }).Worker;
  }
  const backend = tf.backend() as unknown as { wasm: { PThread?: EmscriptenPThread } };
  const pool = backend.wasm.PThread;
  if (!pool) throw new Error('the wasm module started without threads');
  for (const w of [...pool.runningWorkers, ...pool.unusedWorkers]) w.unref();
  return (wasm.getThreadsCount as () => number)();
}
