import test from 'ava';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  decodeSafetensors, encodeSafetensors, initBackend, loadState, saveState, stateTensors, type SafeTensor,
} from '@ir2f/core';
import { createModel, importEncoderWeights } from '@ir2f/backbones';

test.before(async () => {
  await initBackend('wasm');
});

const sameState = (a: Map<string, SafeTensor>, b: Map<string, SafeTensor>) =>
  [...a].every(([k, v]) => b.has(k) && Buffer.compare(Buffer.from(v.data), Buffer.from(b.get(k)!.data)) === 0);

test('save and load round-trip every variable, batch-norm statistics included, atomically', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-w-'));
  try {
    const a = createModel('resnet-tiny-deeplabv2', { numClasses: 4, seed: 1 });
    a.train();
    tf.tidy(() => {
      a.forward(tf.randomNormal([2, 32, 32, 3]));
    });
    const file = path.join(dir, 'model.safetensors');
    await saveState(a, file, { preset: 'resnet-tiny-deeplabv2' });
    t.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), []);
    const b = createModel('resnet-tiny-deeplabv2', { numClasses: 4, seed: 2 });
    t.false(sameState(stateTensors(a), stateTensors(b)));
    const report = await loadState(b, file);
    t.is(report.loaded.length, a.namedState().length);
    t.true(sameState(stateTensors(a), stateTensors(b)));
    t.true(stateTensors(a).has('backbone.layer1.0.bn1.running_var'));
    a.dispose();
    b.dispose();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** A checkpoint as torchvision names it (conv OIHW, with fc.* and num_batches_tracked), from a model's own state. */
function torchvisionFixture(encoderState: Map<string, SafeTensor>): Map<string, SafeTensor> {
  const out = new Map(encoderState);
  for (const [k] of encoderState) {
    if (k.endsWith('running_var')) {
      out.set(k.replace('running_var', 'num_batches_tracked'), { dtype: 'I64', shape: [], data: new Uint8Array(8) });
    }
  }
  out.set('fc.weight', { dtype: 'F32', shape: [1000, 128], data: new Uint8Array(1000 * 128 * 4) });
  out.set('fc.bias', { dtype: 'F32', shape: [1000], data: new Uint8Array(4000) });
  return out;
}

test('torchvision-named ResNet weights import into the encoder; missing, extra and mis-shaped tensors are named', async (t) => {
  const src = createModel('resnet-tiny-deeplabv2', { seed: 5 });
  const bytes = encodeSafetensors(torchvisionFixture(stateTensors(src.backbone)));
  const dst = createModel('resnet-tiny-deeplabv2', { seed: 6 });
  const report = await importEncoderWeights(dst.backbone, bytes, { format: 'torchvision-resnet' });
  t.true(report.skipped.includes('fc.weight'));
  t.true(report.skipped.some((n) => n.endsWith('num_batches_tracked')));
  t.true(sameState(stateTensors(src.backbone), stateTensors(dst.backbone)));
  // the fixture really is in PyTorch layout: conv1 is OIHW [16, 3, 7, 7]
  t.deepEqual(decodeSafetensors(bytes).tensors.get('conv1.weight')!.shape, [16, 3, 7, 7]);

  const fixture = torchvisionFixture(stateTensors(src.backbone));
  fixture.delete('layer2.0.conv1.weight');
  fixture.set('layer9.0.conv1.weight', fixture.get('conv1.weight')!);
  const e1 = await t.throwsAsync(importEncoderWeights(dst.backbone, encodeSafetensors(fixture), { format: 'torchvision-resnet' }));
  t.regex(e1!.message, /missing 1: layer2\.0\.conv1\.weight/);
  t.regex(e1!.message, /unexpected 1: layer9\.0\.conv1\.weight/);
  const partial = await importEncoderWeights(dst.backbone, encodeSafetensors(fixture), { format: 'torchvision-resnet', allowPartial: true });
  t.deepEqual(partial.missing, ['layer2.0.conv1.weight']);
  t.deepEqual(partial.unexpected, ['layer9.0.conv1.weight']);

  const wrong = torchvisionFixture(stateTensors(src.backbone));
  wrong.set('conv1.weight', { dtype: 'F32', shape: [16, 3, 3, 3], data: new Uint8Array(16 * 27 * 4) });
  const e2 = await t.throwsAsync(importEncoderWeights(dst.backbone, encodeSafetensors(wrong), { format: 'torchvision-resnet' }));
  t.regex(e2!.message, /'conv1\.weight'.*\[16,3,3,3\].*needs \[16,3,7,7\]/);
  src.dispose();
  dst.dispose();
});

test('a truncated or malformed safetensors file is a clear error', (t) => {
  const good = encodeSafetensors(new Map([['a', { dtype: 'F32', shape: [2], data: new Uint8Array(8) }]]));
  t.throws(() => decodeSafetensors(good.subarray(0, good.length - 4)), { message: /truncated/ });
  t.throws(() => decodeSafetensors(good.subarray(0, 4)), { message: /shorter than its 8-byte header/ });
});
