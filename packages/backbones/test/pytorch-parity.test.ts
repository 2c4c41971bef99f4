import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, Rng, saveState } from '@ir2f/core';
import { createModel } from '@ir2f/backbones';

const PYTHON = '/usr/bin/python3';
const SCRIPT = new URL('../../../bench/reference/models.py', import.meta.url).pathname;

function torchAvailable(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test.before(async () => {
  await initBackend('wasm');
});

for (const preset of ['resnet-tiny-deeplabv2', 'mit-tiny-daformer', 'mit-tiny-segformer', 'mit-b0-segformer']) {
  test.serial(`${preset}: the same weights in the PyTorch reference (bench/reference/models.py) give the same logits`, async (t) => {
    if (!torchAvailable()) {
      t.log('skipped: Debian python3-torch is not installed (apt-get install python3-torch) for /usr/bin/python3');
      t.pass();
      return;
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ir2f-pt-'));
    const model = createModel(preset, { numClasses: 6, seed: 4 });
    try {
      model.train();
      tf.tidy(() => {
        for (let i = 0; i < 2; i++) model.forward(tf.randomNormal([2, 64, 64, 3], 0, 1, 'float32', i) as tf.Tensor4D);
      });
      model.eval();
      await saveState(model, path.join(dir, 'w.safetensors'));
      const x = tf.tensor4d(new Rng(1).normalArray(2 * 64 * 80 * 3), [2, 64, 80, 3]);
      const nchw = tf.tidy(() => tf.transpose(x, [0, 3, 1, 2]).dataSync() as Float32Array);
      writeFileSync(path.join(dir, 'x.f32'), nchw);
      const info = JSON.parse(execFileSync(PYTHON, [SCRIPT, 'run', '--preset', preset, '--classes', '6',
        '--weights', path.join(dir, 'w.safetensors'), '--input', path.join(dir, 'x.f32'), '--shape', '2,3,64,80',
        '--out', path.join(dir, 'y.f32')], { encoding: 'utf8' }).trim().split('\n').pop()!);
      t.is(info.params, model.variables.reduce((a, v) => a + v.size, 0), 'parameter count');
      const buf = readFileSync(path.join(dir, 'y.f32'));
      const torchOut = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      const ours = tf.tidy(() => tf.transpose(model.predict(x), [0, 3, 1, 2]).dataSync() as Float32Array);
      x.dispose();
      t.is(ours.length, torchOut.length);
      let err = 0;
      for (let i = 0; i < ours.length; i++) err = Math.max(err, Math.abs(ours[i] - torchOut[i]));
      t.true(err < 1e-4, `max abs error vs PyTorch ${err}`);
    } finally {
      model.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
