import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel } from '@ir2f/runtime';
import { colorJitter, colorJitterComposed, drawColorJitter, initBackend, Rng, type ColorJitterParams } from '@ir2f/core';

test.before(async () => {
  await initBackend('wasm');
});

const MEAN = [123.675, 116.28, 103.53];
const STD = [58.395, 57.12, 57.375];

/** A normalised batch whose RGB covers [0, 1] and beyond (so that every clip is exercised). */
function batch(seed: number, B = 2, H = 9, W = 7): tf.Tensor4D {
  const rng = new Rng(seed);
  const rgb = Array.from({ length: B * H * W * 3 }, () => rng.uniform(-0.1, 1.1));
  return tf.tensor4d(rgb.map((v, i) => (v * 255 - MEAN[i % 3]) / STD[i % 3]), [B, H, W, 3]);
}

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

test.serial('colour jitter: the host kernel equals the tensor composition on wasm and cpu, memory flat', async (t) => {
  const params = drawColorJitter(2, 0.4, new Rng(3));
  const check = (label: string) => {
    const x = batch(1);
    const before = tf.memory().numTensors;
    const y = colorJitter(x, params);
    // registered by the first call
    t.true(hasHostKernel('Ir2fColorJitter'), `${label} runs the kernel`);
    const ref = colorJitterComposed(x, params);
    // normalised units (1/σ ≈ 0.017 per grey level): float32 composition against float64 loop
    t.true(maxDiff(y, ref) < 1e-4, `${label}: max |Δ| ${maxDiff(y, ref)}`);
    t.true(maxDiff(y, x) > 0.1, `${label}: the jitter changes the image`);
    tf.dispose([y, ref]);
    t.is(tf.memory().numTensors, before, `${label}: no tensor left`);
    x.dispose();
  };
  check('wasm');
  await tf.setBackend('cpu');
  try {
    check('cpu');
  } finally {
    await tf.setBackend('wasm');
  }
});

test('colour jitter at factors 1 and no hue turn is the identity; brightness 0 is black', (t) => {
  const x = batch(2);
  const ones: ColorJitterParams = { brightness: [1, 1], contrast: [1, 1], saturation: [1, 1], hue: [0, 0] };
  // the identity up to the clip of RGB to [0, 1]
  const clipped = tf.tidy(() => {
    const rgb = tf.clipByValue(tf.div(tf.add(tf.mul(x, STD), MEAN), 255), 0, 1);
    return tf.div(tf.sub(tf.mul(rgb, 255), MEAN), STD);
  });
  const same = colorJitter(x, ones);
  // YIQ's rounded coefficients make RGB → YIQ → RGB the identity to ~2e-3 of the range (0.01 normalised)
  t.true(maxDiff(same, clipped) < 0.01, `identity: max |Δ| ${maxDiff(same, clipped)}`);
  const black = colorJitter(x, { ...ones, brightness: [0, 0] });
  const expected = tf.tidy(() => tf.div(tf.neg(tf.tensor1d(MEAN)), STD).broadcastTo(x.shape));
  t.true(maxDiff(black, expected) < 1e-5);
  tf.dispose([x, clipped, same, black, expected]);
});

test('colour jitter refuses images without 3 channels and factors of another batch size', (t) => {
  const p = drawColorJitter(2, 0.2, new Rng(1));
  t.throws(() => colorJitter(tf.zeros([2, 4, 4, 1]) as tf.Tensor4D, p), { message: /3 channels/ });
  t.throws(() => colorJitter(tf.zeros([3, 4, 4, 3]) as tf.Tensor4D, p), { message: /per image/ });
});
