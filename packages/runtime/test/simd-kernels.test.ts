import test from 'ava';
import { promises as fs } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ir2f/runtime';
import { simdKernelsFor } from '../src/simd/simd-kernels.js';

test('the committed SIMD module is the assembly of kernels.wat (run `npm run build:simd` after editing it)', async (t) => {
  const { assembleSimdKernels } = (await import('../scripts/build-simd.mjs' as string)) as { assembleSimdKernels(wat: string): Promise<string> };
  const wat = await fs.readFile(new URL('../src/simd/kernels.wat', import.meta.url), 'utf8');
  const committed = await fs.readFile(new URL('../src/simd/kernels-wasm.ts', import.meta.url), 'utf8');
  t.is(await assembleSimdKernels(wat), committed);
});

test('the SIMD kernels instantiate on the wasm backend\'s memory (else the norms fall back to JS loops silently)', async (t) => {
  await initBackend('wasm', { denseKernels: 'backend' });
  const k = simdKernelsFor(tf.backend());
  t.truthy(k);
  t.is(simdKernelsFor(tf.backend()), k, 'one instance per backend memory');
  t.is(simdKernelsFor({}), undefined);
});
