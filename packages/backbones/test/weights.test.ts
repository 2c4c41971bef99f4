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

/** Our MiT state under Hugging Face's names (key/value split), plus a classifier, as transformers saves it. */
function hfFixture(state: Map<string, SafeTensor>): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  const parts: [RegExp, string][] = [
    [/^norm1\./, 'layer_norm_1.'], [/^norm2\./, 'layer_norm_2.'], [/^attn\.q\./, 'attention.self.query.'],
    [/^attn\.sr\./, 'attention.self.sr.'], [/^attn\.norm\./, 'attention.self.layer_norm.'],
    [/^attn\.proj\./, 'attention.output.dense.'], [/^mlp\.fc1\./, 'mlp.dense1.'], [/^mlp\.dwconv\.dwconv\./, 'mlp.dwconv.dwconv.'],
    [/^mlp\.fc2\./, 'mlp.dense2.'],
  ];
  for (const [name, t] of state) {
    let m = name.match(/^patch_embed(\d)\.(proj|norm)\.(weight|bias)$/);
    if (m) {
      out.set(`segformer.encoder.patch_embeddings.${Number(m[1]) - 1}.${m[2] === 'proj' ? 'proj' : 'layer_norm'}.${m[3]}`, t);
      continue;
    }
    m = name.match(/^norm(\d)\.(weight|bias)$/);
    if (m) {
      out.set(`segformer.encoder.layer_norm.${Number(m[1]) - 1}.${m[2]}`, t);
      continue;
    }
    m = name.match(/^block(\d)\.(\d+)\.(.+)$/)!;
    const base = `segformer.encoder.block.${Number(m[1]) - 1}.${m[2]}.`;
    const kv = m[3].match(/^attn\.kv\.(weight|bias)$/);
    if (kv) {
      const half = t.data.byteLength / 2;
      const shape = [t.shape[0] / 2, ...t.shape.slice(1)];
      out.set(`${base}attention.self.key.${kv[1]}`, { dtype: t.dtype, shape, data: t.data.slice(0, half) });
      out.set(`${base}attention.self.value.${kv[1]}`, { dtype: t.dtype, shape, data: t.data.slice(half) });
      continue;
    }
    const p = parts.find(([re]) => re.test(m[3]))!;
    out.set(base + m[3].replace(p[0], p[1]), t);
  }
  out.set('classifier.weight', { dtype: 'F32', shape: [1000, 128], data: new Uint8Array(1000 * 128 * 4) });
  return out;
}

test('MiT weights import from NVlabs/mmseg (`backbone.*`) and Hugging Face (`segformer.encoder.*`) names', async (t) => {
  for (const preset of ['mit-tiny-daformer', 'mit-b0-segformer']) {
    const src = createModel(preset, { seed: 7 });
    const state = stateTensors(src.backbone);
    t.true(state.has('block1.0.attn.kv.weight') && state.has('block1.0.mlp.dwconv.dwconv.weight') && state.has('patch_embed1.proj.weight'));

    const mmseg = new Map([...state].map(([k, v]) => [`backbone.${k}`, v] as [string, SafeTensor]));
    mmseg.set('decode_head.conv_seg.weight', { dtype: 'F32', shape: [2], data: new Uint8Array(8) });
    const a = createModel(preset, { seed: 8 });
    const ra = await importEncoderWeights(a.backbone, encodeSafetensors(mmseg), { format: 'mmseg-mit' });
    t.deepEqual(ra.skipped, ['decode_head.conv_seg.weight']);
    t.true(sameState(state, stateTensors(a.backbone)), `${preset} mmseg`);

    const b = createModel(preset, { seed: 9 });
    const rb = await importEncoderWeights(b.backbone, encodeSafetensors(hfFixture(state)), { format: 'hf-segformer' });
    t.deepEqual(rb.skipped, ['classifier.weight']);
    t.true(sameState(state, stateTensors(b.backbone)), `${preset} hf`);
    // and the imported encoders compute the same features
    const x = tf.randomNormal([1, 32, 32, 3]) as tf.Tensor4D;
    src.eval();
    b.eval();
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(src.backbone.forward(x)[3], b.backbone.forward(x)[3]))).dataSync()[0]);
    t.is(d, 0);
    x.dispose();
    [src, a, b].forEach((m) => m.dispose());
  }
});
