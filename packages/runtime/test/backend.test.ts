import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend, RuntimeError } from '@ir2f/runtime';

test.serial('auto selection picks wasm here (no tfjs-node installed) and reports its version', async (t) => {
  delete process.env.IR2F_BACKEND;
  const info = await initBackend();
  t.is(info.name, 'wasm');
  t.is(tf.getBackend(), 'wasm');
  t.regex(info.version, /^\d+\.\d+\.\d+/);
  t.truthy(tf.getKernel('Conv2DBackpropFilter', 'wasm'));
});

test.serial('IR2F_BACKEND overrides the automatic order; an explicit name wins over it', async (t) => {
  process.env.IR2F_BACKEND = 'cpu';
  try {
    t.is((await initBackend()).name, 'cpu');
    t.is((await initBackend('wasm')).name, 'wasm');
  } finally {
    delete process.env.IR2F_BACKEND;
  }
});

test.serial('an unknown backend lists the valid names', async (t) => {
  const err = await t.throwsAsync(initBackend('webgpu'), { instanceOf: RuntimeError });
  t.is(err?.code, 'UNKNOWN_BACKEND');
  t.regex(err!.message, /tensorflow, wasm, cpu/);
  process.env.IR2F_BACKEND = 'gpu';
  try {
    const e2 = await t.throwsAsync(initBackend());
    t.regex(e2!.message, /IR2F_BACKEND/);
  } finally {
    delete process.env.IR2F_BACKEND;
  }
});

test.serial('a named backend that is not installed says which package to install', async (t) => {
  const err = await t.throwsAsync(initBackend('tensorflow'), { instanceOf: RuntimeError });
  t.is(err?.code, 'BACKEND_NOT_INSTALLED');
  t.regex(err!.message, /npm install @tensorflow\/tfjs-node/);
});
