import test, { type ExecutionContext } from 'ava';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { exportOnnx, initBackend, Rng } from '@ir2f/core';
import { createModel, PRESET_NAMES, type SegmentationModel } from '@ir2f/backbones';

test.before(async () => {
  await initBackend('wasm');
});

/** Run the exported model in onnxruntime on NHWC input x, return NHWC logits. */
async function runOrt(bytes: Uint8Array, x: tf.Tensor4D): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes);
  const nchw = tf.tidy(() => tf.transpose(x, [0, 3, 1, 2]));
  const feeds = { input: new ort.Tensor('float32', nchw.dataSync() as Float32Array, nchw.shape) };
  nchw.dispose();
  const out = (await session.run(feeds)).logits;
  const nhwc = tf.tidy(() => tf.transpose(tf.tensor(out.data as Float32Array, out.dims as number[]), [0, 2, 3, 1]));
  const data = nhwc.dataSync() as Float32Array;
  nhwc.dispose();
  await session.release();
  return data;
}

async function parity(t: ExecutionContext, model: SegmentationModel, sizes: [number, number][]) {
  model.eval();
  const bytes = exportOnnx(model);
  const rng = new Rng(3);
  for (const [h, w] of sizes) {
    const x = tf.tensor4d(rng.normalArray(2 * h * w * 3), [2, h, w, 3]);
    const ref = tf.tidy(() => model.predict(x).dataSync() as Float32Array);
    const got = await runOrt(bytes, x);
    x.dispose();
    t.is(got.length, ref.length);
    let maxErr = 0;
    let scale = 0;
    for (let i = 0; i < ref.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(got[i] - ref[i]));
      scale = Math.max(scale, Math.abs(ref[i]));
    }
    t.log(`${h}×${w}: max abs error ${maxErr.toExponential(2)}, max |logit| ${scale.toFixed(2)}`);
    t.true(maxErr < 1e-4, `${model.preset} ${h}×${w}: max abs error ${maxErr} (max |logit| ${scale})`);
  }
}

const small = (p: string) => p.includes('tiny') || p.includes('b0');
for (const preset of PRESET_NAMES) {
  // full-size presets at reduced input sizes (same graph, less compute)
  const sizes: [number, number][] = small(preset) ? [[64, 64], [72, 96]] : [[32, 32], [40, 56]];
  test.serial(`${preset}: onnxruntime output matches tfjs (max abs error < 1e-4) at two input sizes`, async (t) => {
    const model = createModel(preset, { numClasses: 5 });
    // batch-norm statistics from data, as after training: keeps activations at a realistic scale through
    // 100 layers (with the initial identity statistics they grow geometrically with depth)
    model.train();
    tf.tidy(() => {
      for (let i = 0; i < 3; i++) model.forward(tf.randomNormal([2, ...sizes[0], 3], 0, 1, 'float32', i) as tf.Tensor4D);
    });
    await parity(t, model, sizes);
    model.dispose();
  });
}

test('the exported model passes onnx.checker.check_model (Debian python3-onnx), when available', async (t) => {
  const { execFileSync } = await import('node:child_process');
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const python = '/usr/bin/python3';
  try {
    execFileSync(python, ['-c', 'import onnx'], { stdio: 'ignore' });
  } catch {
    t.log('skipped: Debian python3-onnx is not installed (apt-get install python3-onnx) for /usr/bin/python3');
    t.pass();
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'ir2f-onnx-'));
  try {
    for (const preset of ['resnet-tiny-deeplabv2', 'mit-tiny-daformer', 'mit-tiny-segformer']) {
      const model = createModel(preset, { numClasses: 3 });
      const file = join(dir, `${preset}.onnx`);
      writeFileSync(file, exportOnnx(model));
      model.dispose();
      const out = execFileSync(python, ['-c',
        'import onnx,sys; m=onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print("ok", m.opset_import[0].version)', file],
      { encoding: 'utf8' });
      t.regex(out, /ok 17/, preset);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
