import test from 'ava';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { emaUpdateModule, exportOnnx, initBackend, Layer, Module, Rng, unsupportedOp, writeOnnx, type OnnxGraph } from '@ir2f/core';
import { createModel, DeepLabV2Head, PRESET_NAMES, ResNet, SegmentationModel } from '@ir2f/backbones';

test.before(async () => {
  await initBackend('wasm');
});

const count = (vars: readonly tf.Variable[]) => vars.reduce((a, v) => a + v.size, 0);

test('ResNet encoders have exactly torchvision\'s parameter counts (without the fc classifier)', (t) => {
  for (const [depth, expected] of [[18, 11_176_512], [50, 23_508_032], [101, 42_500_160]] as const) {
    const r = new ResNet({ depth }, new Rng(0));
    t.is(count(r.variables), expected, `resnet${depth}`);
    r.dispose();
  }
});

test('output strides: plain 4/8/16/32, DeepLab 4/8/8/8 with dilation; feature shapes follow', (t) => {
  const plain = new ResNet({ depth: 18, layers: [1, 1, 1, 1], width: 8 }, new Rng(0));
  const dl = new ResNet({ depth: 18, layers: [1, 1, 1, 1], width: 8, outputStride: 8 }, new Rng(0));
  t.deepEqual(plain.strides, [4, 8, 16, 32]);
  t.deepEqual(dl.strides, [4, 8, 8, 8]);
  const x = tf.zeros([1, 64, 64, 3]) as tf.Tensor4D;
  t.deepEqual(tf.tidy(() => dl.forward(x).map((f) => f.shape)), [[1, 16, 16, 8], [1, 8, 8, 16], [1, 8, 8, 32], [1, 8, 8, 64]]);
  [plain, dl].forEach((m) => m.dispose());
  x.dispose();
});

test('every preset builds; the small ones predict logits at the input size', (t) => {
  t.true(PRESET_NAMES.includes('resnet101-deeplabv2') && PRESET_NAMES.includes('mit-b5-daformer') && PRESET_NAMES.includes('mit-b0-segformer'));
  for (const name of PRESET_NAMES.filter((n) => n.includes('tiny') || n.startsWith('mit-b0'))) {
    const m = createModel(name, { numClasses: 7 });
    const y = tf.tidy(() => m.eval().predict(tf.zeros([2, 64, 48, 3]) as tf.Tensor4D));
    t.deepEqual(y.shape, [2, 64, 48, 7], name);
    y.dispose();
    m.dispose();
  }
  t.throws(() => createModel('vit-huge'), { message: /unknown model preset 'vit-huge'; available: .*resnet101-deeplabv2/ });
});

test('train/eval: batch-norm statistics update only in training; dropout and stochastic depth only in training', (t) => {
  const m = createModel('mit-tiny-daformer', { numClasses: 3 });
  const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const stat = () => m.namedState().find(([n]) => n.endsWith('fuse_layer.bottleneck.bn.running_mean'))![1].variable.dataSync().slice();
  const run = () => tf.tidy(() => m.forward(x).logits.dataSync().slice());
  m.eval();
  const s0 = stat();
  t.deepEqual(run(), run());
  t.deepEqual(stat(), s0);
  m.train();
  const a = run();
  t.notDeepEqual(stat(), s0);
  t.notDeepEqual(run(), a); // dropout / drop path draw new masks
  x.dispose();
  m.dispose();
});

class Mystery extends Layer {
  forward(x: tf.Tensor): tf.Tensor {
    return tf.sin(x);
  }

  toOnnx(_g: OnnxGraph, _input: string, prefix: string): string {
    throw unsupportedOp(`${prefix}mystery`, 'Sin');
  }
}

class MysteryBackbone extends ResNet {
  private readonly odd = new Mystery();

  override toOnnxFeatures(g: OnnxGraph, input: string, prefix: string): string[] {
    this.odd.toOnnx(g, input, prefix);
    return super.toOnnxFeatures(g, input, prefix);
  }
}

/** A head written by a user who did not implement `toOnnxHead`. */
class NoOnnxHead extends Module {
  readonly numClasses = 2;
  forward(features: tf.Tensor4D[]) {
    return { logits: features[3], embedding: features[3] };
  }
}

test('an op with no ONNX mapping is an error naming the layer and the op, and nothing is written', async (t) => {
  const rng = new Rng(0);
  const backbone = new MysteryBackbone({ depth: 18, layers: [1, 1, 1, 1], width: 8, outputStride: 8 }, rng);
  const model = new SegmentationModel(backbone, new DeepLabV2Head({ inChannels: 64, numClasses: 2 }, rng));
  const err = t.throws(() => exportOnnx(model));
  t.regex(err!.message, /layer 'backbone\.mystery' uses 'Sin', which has no ONNX mapping; nothing was written/);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ir2f-x-'));
  try {
    await t.throwsAsync(writeOnnx(model, path.join(dir, 'm.onnx')));
    t.false(existsSync(path.join(dir, 'm.onnx')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const noEmitter = new SegmentationModel(backbone, new NoOnnxHead() as never);
  t.throws(() => exportOnnx(noEmitter), { message: /uses 'toOnnxHead'/ });
  model.dispose();
});

test('training steps of a preset on wasm keep tf.memory() flat and lower the loss on a fixed batch', async (t) => {
  const m = createModel('mit-tiny-daformer', { numClasses: 4, seed: 3 });
  const opt = tf.train.adam(1e-3);
  const x = tf.randomNormal([2, 64, 64, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
  const y = tf.tidy(() => tf.oneHot(tf.cast(tf.greater(tf.mean(x, 3), 0), 'int32'), 4)) as tf.Tensor4D;
  const step = () => {
    const loss = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, m.predict(x)) as tf.Scalar, m.variables as tf.Variable[]);
      opt.applyGradients(grads as Record<string, tf.Variable>);
      return value;
    });
    const v = loss.dataSync()[0];
    loss.dispose();
    return v;
  };
  const first = step();
  const before = tf.memory().numTensors;
  let last = first;
  for (let i = 0; i < 8; i++) last = step();
  t.is(tf.memory().numTensors, before);
  t.true(last < first, `loss ${first} → ${last}`);
  [x, y].forEach((v) => v.dispose());
  opt.dispose();
  m.dispose();
});

test('the EMA teacher averages parameters and batch-norm statistics of a model', (t) => {
  const student = createModel('resnet-tiny-deeplabv2', { numClasses: 3, seed: 1 });
  const teacher = createModel('resnet-tiny-deeplabv2', { numClasses: 3, seed: 2 });
  student.train();
  tf.tidy(() => {
    student.forward(tf.randomNormal([2, 32, 32, 3]) as tf.Tensor4D);
  });
  const get = (m: typeof student, n: string) => m.namedState().find(([k]) => k === n)![1].variable.dataSync()[0];
  const names = ['backbone.conv1.weight', 'backbone.bn1.running_mean'];
  const before = names.map((n) => [get(teacher, n), get(student, n)]);
  emaUpdateModule(teacher, student, 0.9);
  names.forEach((n, i) => t.true(Math.abs(get(teacher, n) - (0.9 * before[i][0] + 0.1 * before[i][1])) < 1e-6, n));
  const other = createModel('mit-tiny-daformer', { numClasses: 3 });
  t.throws(() => emaUpdateModule(teacher, other, 0.5), { message: /teacher and student differ/ });
  [student, teacher, other].forEach((m) => m.dispose());
});
