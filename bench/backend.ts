/**
 * `npm run bench -- backend`: the cost of training on the embedded backend.
 *
 * 1. Kernels, at a 64-channel 3×3 conv on [4, 128, 128, 64]: forward conv vs ir2f's Conv2DBackpropFilter and
 *    Conv2DBackpropInput on wasm (target: backprop-filter ≤ 2× forward), the package's own scalar
 *    Conv2DBackpropInput that ir2f replaces, and the depthwise kernels; GFLOP/s for each.
 *    Then the same kernels with onnxruntime's dense kernels on (core's default when it is installed).
 * 2. The runtime's fused layer norm, batch norm and GELU (wasm SIMD) against their compositions (fwd + bwd).
 * 3. One training step of the toy segmentation net (batch 4, 128×128, width 32): wasm (XNNPACK), wasm with
 *    onnxruntime, cpu, and PyTorch CPU (bench/reference/toy_seg_net.py, Debian's python3-torch) on one
 *    thread, plus PyTorch on all cores for context.
 */
import * as tf from '@tensorflow/tfjs';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Rng } from '@ir2f/core';
import { initBackend, replacedWasmKernels } from '@ir2f/runtime';
import { ToySegNet, trainStep } from '../examples/toy/toy-seg-net.js';
import { fusedKernelRows } from './fused-kernels.js';
import { DEBIAN_PYTHON, debianBlas } from './python-reference.js';
import { fmt, medianKernelMs, medianMs, table } from './timing.js';

/** Run `fn` with tfjs-backend-wasm's own kernel `name` in place of ir2f's, then restore what was registered. */
function withPackageKernel(name: string, fn: () => number): number {
  const native = replacedWasmKernels.get(name);
  const current = tf.getKernel(name, 'wasm');
  if (!native || !current) return NaN;
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel(native);
  native.setupFunc?.(tf.backend());
  try {
    return fn();
  } finally {
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(current);
  }
}

/** The kernels on the active dense provider (`ir2f`: XNNPACK and ir2f's wasm kernels; or onnxruntime). */
function kernelBench(provider: 'ir2f' | 'onnxruntime'): { rows: (string | number)[][]; filterRatio: number } {
  const [B, H, W, C] = [4, 128, 128, 64];
  const x = tf.randomNormal([B, H, W, C]) as tf.Tensor4D;
  const w = tf.randomNormal([3, 3, C, C]) as tf.Tensor4D;
  const dy = tf.randomNormal([B, H, W, C]) as tf.Tensor4D;
  const dwFilter = tf.randomNormal([3, 3, C, 1]) as tf.Tensor4D;
  const convFlops = 2 * B * H * W * 9 * C * C;
  const dwFlops = 2 * B * H * W * 9 * C;
  const attrs = { strides: [1, 1], pad: 'same', dataFormat: 'NHWC', dilations: [1, 1] };
  const run = (name: string, inputs: tf.NamedTensorMap, extra: Record<string, unknown>) => () =>
    tf.engine().runKernel(name, inputs, { ...attrs, ...extra } as unknown as tf.NamedAttrMap) as tf.Tensor;

  const fwd = medianKernelMs(() => tf.conv2d(x, w, 1, 'same'));
  const bpf = medianKernelMs(run('Conv2DBackpropFilter', { x, dy }, { filterShape: [3, 3, C, C] }));
  const bpi = medianKernelMs(run('Conv2DBackpropInput', { dy, filter: w }, { inputShape: [B, H, W, C] }));
  const nativeMs = provider === 'ir2f' ? withPackageKernel('Conv2DBackpropInput', () =>
    medianKernelMs(run('Conv2DBackpropInput', { dy, filter: w }, { inputShape: [B, H, W, C] }), { warmup: 1, runs: 3 })) : NaN;
  const dwFwd = medianKernelMs(() => tf.depthwiseConv2d(x, dwFilter, 1, 'same'));
  const dwBpf = medianKernelMs(run('DepthwiseConv2dNativeBackpropFilter', { x, dy }, { filterShape: [3, 3, C, 1] }));
  const dwBpi = medianKernelMs(run('DepthwiseConv2dNativeBackpropInput', { dy, filter: dwFilter }, { inputShape: [B, H, W, C] }));
  tf.dispose([x, w, dy, dwFilter]);
  const g = (flops: number, ms: number) => fmt(flops / ms / 1e6, 1);
  return {
    filterRatio: bpf / fwd,
    rows: [
      [`kernel (wasm, [4,128,128,64], 3×3; ${provider === 'ir2f' ? 'XNNPACK and ir2f' : 'onnxruntime where it takes them'})`, 'ms', 'GFLOP/s', '× forward'],
      ['Conv2D forward', fmt(fwd), g(convFlops, fwd), '1.00'],
      ['Conv2DBackpropFilter', fmt(bpf), g(convFlops, bpf), fmt(bpf / fwd, 2)],
      ['Conv2DBackpropInput', fmt(bpi), g(convFlops, bpi), fmt(bpi / fwd, 2)],
      ...(provider === 'ir2f' ? [['Conv2DBackpropInput (tfjs-backend-wasm\'s own)', fmt(nativeMs), g(convFlops, nativeMs), fmt(nativeMs / fwd, 2)]] : []),
      ['DepthwiseConv2d forward (XNNPACK)', fmt(dwFwd), g(dwFlops, dwFwd), '1.00'],
      ['DepthwiseBackpropFilter', fmt(dwBpf), g(dwFlops, dwBpf), fmt(dwBpf / dwFwd, 2)],
      ['DepthwiseBackpropInput (ir2f)', fmt(dwBpi), g(dwFlops, dwBpi), fmt(dwBpi / dwFwd, 2)],
    ],
  };
}

function stepMs(backend: string, opts: { batch: number; size: number; width: number; runs: number }): number {
  const rng = new Rng(0);
  const net = new ToySegNet({ numClasses: 4, width: opts.width }, rng.fork('init'));
  const optimizer = tf.train.adam(1e-3);
  const x = tf.randomNormal([opts.batch, opts.size, opts.size, 3]) as tf.Tensor4D;
  const y = tf.randomUniform([opts.batch, opts.size, opts.size], 0, 4, 'int32') as tf.Tensor3D;
  const cw = tf.ones([4]) as tf.Tensor1D;
  const ms = medianMs(() => trainStep(net, optimizer, x, y, cw), { warmup: backend === 'cpu' ? 1 : 3, runs: opts.runs });
  net.dispose();
  optimizer.dispose();
  tf.dispose([x, y, cw]);
  return ms;
}

function pytorchMs(opts: { batch: number; size: number; width: number }, threads: number): { ms: number; note: string } {
  if (!existsSync(DEBIAN_PYTHON)) return { ms: NaN, note: `${DEBIAN_PYTHON} not found` };
  const script = new URL('./reference/toy_seg_net.py', import.meta.url).pathname;
  try {
    const out = execFileSync(DEBIAN_PYTHON, [script, '--batch', String(opts.batch), '--size', String(opts.size),
      '--width', String(opts.width), '--threads', String(threads), '--steps', '10'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { ms_per_step: number; torch: string };
    return { ms: r.ms_per_step, note: `torch ${r.torch}` };
  } catch (err) {
    const msg = String((err as { stderr?: string }).stderr ?? err);
    if (msg.includes('No module named')) {
      return { ms: NaN, note: 'python3-torch is not installed: apt-get install python3-torch (Debian\'s, for /usr/bin/python3)' };
    }
    return { ms: NaN, note: `PyTorch reference failed: ${msg.split('\n').slice(-2).join(' ')}` };
  }
}

export async function benchBackend(): Promise<void> {
  // one thread throughout: XNNPACK's single-thread build, onnxruntime on one thread
  const plain = { wasmThreads: 1, denseKernels: 'backend' } as const;
  const ort = { wasmThreads: 1, denseKernels: 'onnxruntime' } as const;
  const info = await initBackend('wasm', plain);
  console.log(`# backend benchmark: tfjs ${tf.version_core}, wasm ${info.version}, 1 thread, ${availableParallelism()} cores, ` +
    `PyTorch BLAS: ${debianBlas()}\n`);
  const k = kernelBench('ir2f');
  console.log(table(k.rows));
  console.log(`\nbackprop-filter / forward conv: ${fmt(k.filterRatio, 2)} (target ≤ 2)\n`);
  await initBackend('wasm', ort);
  console.log(table(kernelBench('onnxruntime').rows));
  console.log();
  console.log(table(fusedKernelRows()));
  console.log();

  const opts = { batch: 4, size: 128, width: 32 };
  await initBackend('wasm', plain);
  const wasmMs = stepMs('wasm', { ...opts, runs: 7 });
  await initBackend('wasm', ort);
  const ortMs = stepMs('wasm', { ...opts, runs: 7 });
  await initBackend('cpu', plain);
  const cpuMs = stepMs('cpu', { ...opts, runs: 2 });
  await initBackend('wasm');
  const pt1 = pytorchMs(opts, 1);
  const ptAll = pytorchMs(opts, availableParallelism());
  console.log(table([
    ['train step, toy net (batch 4, 128², width 32)', 'ms/step', 'ms ÷ wasm (XNNPACK)'],
    ['tfjs wasm (1 thread, XNNPACK)', fmt(wasmMs), '1.00'],
    ['tfjs wasm + onnxruntime (1 thread)', fmt(ortMs), fmt(ortMs / wasmMs, 2)],
    ['tfjs cpu', fmt(cpuMs), fmt(cpuMs / wasmMs, 2)],
    [`PyTorch CPU, 1 thread (${pt1.note})`, fmt(pt1.ms), fmt(pt1.ms / wasmMs, 2)],
    [`PyTorch CPU, ${availableParallelism()} threads`, fmt(ptAll.ms), fmt(ptAll.ms / wasmMs, 2)],
  ]));
  console.log(`\nwasm/cpu speed-up ${fmt(cpuMs / wasmMs, 2)}×; throughput vs PyTorch (1 thread): wasm ${fmt(pt1.ms / wasmMs, 2)}×, ` +
    `wasm + onnxruntime ${fmt(pt1.ms / ortMs, 2)}×; vs PyTorch (all cores) ${fmt(ptAll.ms / ortMs, 2)}×`);
}
