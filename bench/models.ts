/**
 * `npm run bench -- models`: forward (inference) cost per preset, batch 1: tfjs on wasm (one thread),
 * onnxruntime-node on the exported model, and the PyTorch twin (bench/reference/models.py) on the same
 * number of threads as onnxruntime, as ms and throughput ratios against PyTorch.
 */
import * as tf from '@tensorflow/tfjs';
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { exportOnnx, initBackend, Rng } from '@ir2f/core';
import { createModel } from '@ir2f/backbones';
import { DEBIAN_PYTHON, debianBlas } from './python-reference.js';
import { fmt, medianKernelMs, readback, table } from './timing.js';

const CASES: [string, number][] = [
  ['resnet-tiny-deeplabv2', 128],
  ['mit-tiny-daformer', 128],
  ['mit-b0-segformer', 256],
  // the paper models at their training crop size
  ['resnet101-deeplabv2', 512],
  ['mit-b5-daformer', 512],
];

function pytorchMs(preset: string, size: number, threads: number): number {
  try {
    const script = new URL('./reference/models.py', import.meta.url).pathname;
    const out = execFileSync(DEBIAN_PYTHON, [script, 'time', '--preset', preset, '--size', String(size),
      '--threads', String(threads), '--runs', '5'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return JSON.parse(out.trim().split('\n').pop()!).ms;
  } catch {
    return NaN;
  }
}

export async function benchModels(): Promise<void> {
  await initBackend('wasm');
  const threads = availableParallelism();
  console.log(`# model forward, batch 1 (tfjs wasm: 1 thread; onnxruntime and PyTorch: ${threads} threads; ` +
    `PyTorch BLAS: ${debianBlas()})\n`);
  const rows: (string | number)[][] = [['preset', 'input', 'wasm ms', 'ort ms', 'torch ms', 'ort/torch ×', 'wasm/torch ×']];
  for (const [preset, size] of CASES) {
    const model = createModel(preset).eval();
    const x = tf.tensor4d(new Rng(0).normalArray(size * size * 3), [1, size, size, 3]);
    const heavy = size >= 512;
    const wasmMs = medianKernelMs(() => model.predict(x), { warmup: 1, runs: heavy ? 2 : 5 });
    const session = await ort.InferenceSession.create(exportOnnx(model), { intraOpNumThreads: threads, interOpNumThreads: 1 });
    const input = new ort.Tensor('float32', readback(tf.transpose(x, [0, 3, 1, 2])) as Float32Array, [1, 3, size, size]);
    await session.run({ input });
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await session.run({ input });
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const ortMs = times[2];
    await session.release();
    model.dispose();
    x.dispose();
    const torchMs = pytorchMs(preset, size, threads);
    rows.push([preset, `${size}²`, fmt(wasmMs), fmt(ortMs), fmt(torchMs), fmt(torchMs / ortMs, 2), fmt(torchMs / wasmMs, 2)]);
  }
  console.log(table(rows));
  console.log('\n× = throughput relative to PyTorch CPU (higher is faster); target ort/torch ≥ 1.2');
}
