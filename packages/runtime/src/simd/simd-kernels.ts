/**
 * The wasm SIMD kernels of kernels.wat, instantiated once per wasm backend on the backend's own memory, so they
 * read and write tensors in place. All pointers are byte offsets into that memory.
 */
import { SIMD_KERNELS_WASM } from './kernels-wasm.js';

export interface SimdKernels {
  /** Column sums of [rows, C]: s1 = Σ (a − sa), s2 = Σ (a − sa)·(b − sb), float64 [C] each; acc: 2C float32 of scratch. */
  colSums(a: number, b: number, rows: number, C: number, sa: number, sb: number, acc: number, s1: number, s2: number): void;
  /** out = a·p + b·q + s per column (b = 0: out = a·p + s). */
  colAffine(a: number, b: number, rows: number, C: number, p: number, q: number, s: number, out: number): void;
  /** Layer norm of [rows, C] over C. */
  layerNorm(x: number, rows: number, C: number, eps: number, gamma: number, beta: number, y: number): void;
  /** Layer norm's gradient; dγ, dβ into float64 [C] (dg, db); acc: 2C float32 of scratch. */
  layerNormGrad(dy: number, x: number, rows: number, C: number, eps: number, gamma: number, dx: number, acc: number, dg: number, db: number): void;
  /** y = GELU(x) (erf form) over n ≥ 4 floats. */
  gelu(x: number, n: number, y: number): void;
  /** dx = dy·GELU'(x) over n ≥ 4 floats. */
  geluGrad(dy: number, x: number, n: number, dx: number): void;
  /** out = relu(T[idx] + X·W) for T [R, H], idx int32 [M], X [M, K], W [K, H]; −1, or the first row whose index is outside [0, R). */
  gatherAffineRelu(T: number, idx: number, X: number, W: number, M: number, K: number, H: number, R: number, out: number): number;
  /**
   * Its gradient from dy and y: dT [R, H], dX [M, K], dW into float64 [K, H] (dW64); scratch: (K + 1)·H float32.
   * −1, or the first row whose index is outside [0, R).
   */
  gatherAffineReluGrad(dy: number, y: number, idx: number, X: number, W: number, M: number, K: number, H: number, R: number,
    dT: number, dX: number, scratch: number, dW64: number): number;
  /** A depthwise filter gradient's row: acc[c] += Σ_p x[p, c]·dy[p, c] over n pixels (x's at a stride of xStep bytes), acc float64 [C]. */
  dwFilterRow(x: number, dy: number, n: number, xStep: number, C: number, acc: number): void;
  /** dz = dy where y > 0 over [rows, C], db = Σ_rows dz into float64 [C]; acc: C float32 of scratch. */
  reluGradColSums(dy: number, y: number, rows: number, C: number, dz: number, acc: number, db: number): void;
  /** out[m] = Σ_n weight[n·M + m]·(φ(x[n·M + m] + pre)·w + b) for x [N·M, K], pre [K], w [K], weight [N, M]; φ: ReLU if relu ≠ 0, else identity. */
  ensembleDot(x: number, pre: number, relu: number, w: number, b: number, weight: number, N: number, M: number, K: number, out: number): void;
  /**
   * Its gradient from ds [M]: dx [N·M, K] (also the rows of pre's gradient), and float64 dw [K] (dw64), db [1] (db64), dpre [K]
   * (dpre64); acc: 2K float32 of scratch.
   */
  ensembleDotGrad(ds: number, x: number, pre: number, relu: number, w: number, weight: number, N: number, M: number, K: number,
    dx: number, acc: number, dw64: number, db64: number, dpre64: number): void;
  /** AdamW over n floats into p1, m1, v1 (float32 arithmetic; ob = 1 − β, decay = 1 − lr·λ, c1 and c2 the bias corrections). */
  adamw(p: number, g: number, m: number, v: number, n: number, beta1: number, ob1: number, beta2: number, ob2: number, c1: number, c2: number, eps: number,
    lr: number, decay: number, p1: number, m1: number, v1: number): void;
  /** out = a·x + b·y over n floats. */
  ema(x: number, y: number, n: number, a: number, b: number, out: number): void;
  /**
   * Per row of x [rows, K] against int32 labels (rows a multiple of 4): lse = the row's log-sum-exp, ce = lse − x[label]
   * (0 where the label is outside [0, K) or `ignore`); v: 16·K bytes of scratch.
   */
  softmaxCe(x: number, labels: number, rows: number, K: number, ignore: number, ce: number, lse: number, v: number): void;
  /** dx = g·e^(x − l) per row of x [rows, K] (rows a multiple of 4), l and g per row; v: 16·K bytes of scratch. */
  softmaxScaled(x: number, l: number, g: number, rows: number, K: number, dx: number, v: number): void;
  /** MaxPoolGrad (NHWC) on channels [0, C4), C4 a multiple of 4, into a zeroed dx: each window's first strict maximum takes its dy. */
  maxPoolGrad(x: number, dy: number, dx: number, B: number, H: number, W: number, C: number, C4: number, OH: number, OW: number,
    fh: number, fw: number, sh: number, sw: number, top: number, left: number): void;
}

/** The slice of the WebAssembly JS API used here (lib ES2023 and @types/node 20 do not declare it). */
interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
interface WasmApi {
  Memory: abstract new (...a: never[]) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** What of tfjs-backend-wasm's emscripten module holds its memory: `asm.memory` (plain build), `wasmMemory` (threads). */
interface EmscriptenModuleLike {
  asm?: { memory?: WasmMemory };
  wasmMemory?: WasmMemory;
}

const instances = new WeakMap<WasmMemory, SimdKernels>();
let unsupported = false;
const modules: Partial<Record<keyof typeof SIMD_KERNELS_WASM, object>> = {};

/** The kernels on `backend`'s memory, or undefined where this runtime cannot run them (no SIMD, no memory found). */
export function simdKernelsFor(backend: unknown): SimdKernels | undefined {
  const wasm = (backend as { wasm?: EmscriptenModuleLike }).wasm;
  const memory = wasm?.asm?.memory ?? wasm?.wasmMemory;
  if (unsupported || !(memory instanceof WA.Memory)) return undefined;
  let k = instances.get(memory);
  if (k) return k;
  const kind = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer ? 'shared' : 'plain';
  try {
    modules[kind] ??= new WA.Module(Buffer.from(SIMD_KERNELS_WASM[kind], 'base64'));
    const e = new WA.Instance(modules[kind], { env: { memory } }).exports as Record<string, (...a: number[]) => number>;
    k = {
      colSums: e.col_sums, colAffine: e.col_affine, layerNorm: e.layer_norm, layerNormGrad: e.layer_norm_grad, gelu: e.gelu, geluGrad: e.gelu_grad,
      gatherAffineRelu: e.gather_affine_relu, gatherAffineReluGrad: e.gather_affine_relu_grad, dwFilterRow: e.dw_filter_row,
      reluGradColSums: e.relu_grad_col_sums, ensembleDot: e.ensemble_dot, ensembleDotGrad: e.ensemble_dot_grad,
      adamw: e.adamw, ema: e.ema, softmaxCe: e.softmax_ce, softmaxScaled: e.softmax_scaled,
      maxPoolGrad: e.max_pool_grad,
    };
  } catch {
    // a runtime without wasm SIMD: the callers' JS loops run instead
    unsupported = true;
    return undefined;
  }
  instances.set(memory, k);
  return k;
}
