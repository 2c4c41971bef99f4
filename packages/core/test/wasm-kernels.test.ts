import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ir2f/core';
import { onBackend, randomArray, relativeError } from './backend-helpers.js';

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
interface ConvCase {
  x: [number, number, number, number];
  filter: [number, number, number, number];
  strides: [number, number];
  pad: Pad;
  dilations: [number, number];
}

test.before(async () => {
  await initBackend('wasm');
});

/** Randomised shapes: seeded so a failure reproduces. */
function convCases(depthwise: boolean, count: number, seed: number): ConvCase[] {
  let s = seed;
  const r = (n: number) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % n;
  };
  const cases: ConvCase[] = [];
  for (let i = 0; i < count; i++) {
    const kh = 1 + r(4);
    const kw = 1 + r(4);
    // backprop kernels are undilated in tfjs (dilated gradients go through space-to-batch, tested apart)
    const strides: [number, number] = [1 + r(3), 1 + r(3)];
    const dilations: [number, number] = [1, 1];
    const H = kh * dilations[0] + r(9);
    const W = kw * dilations[1] + r(9);
    const C = 1 + r(6);
    const pads: Pad[] = ['same', 'valid', [[0, 0], [r(3), r(3)], [r(3), r(3)], [0, 0]]];
    cases.push({
      x: [1 + r(3), H, W, C],
      filter: [kh, kw, C, depthwise ? 1 + r(3) : 1 + r(7)],
      strides, dilations, pad: pads[r(3)],
    });
  }
  return cases;
}

function outShape(c: ConvCase, depthwise: boolean): number[] {
  const info = tf.backend_util.computeConv2DInfo(c.x, c.filter, c.strides, c.dilations, c.pad, undefined, depthwise);
  return info.outShape;
}

async function compare(kernel: string, run: () => tf.Tensor): Promise<{ wasm: Float32Array; cpu: Float32Array }> {
  const wasm = await onBackend('wasm', () => tf.tidy(() => run().dataSync() as Float32Array));
  const cpu = await onBackend('cpu', () => tf.tidy(() => run().dataSync() as Float32Array));
  if (wasm.length !== cpu.length) throw new Error(`${kernel}: sizes differ`);
  return { wasm, cpu };
}

for (const depthwise of [false, true]) {
  const prefix = depthwise ? 'DepthwiseConv2dNative' : 'Conv2D';
  const cases = convCases(depthwise, 40, depthwise ? 7 : 3);
  test(`${prefix}BackpropFilter and BackpropInput on wasm match cpu on randomised shapes (rel ≤ 1e-4)`, async (t) => {
    let compared = 0;
    for (const c of cases) {
      const out = outShape(c, depthwise);
      if (out.some((d) => d <= 0)) continue;
      const xs = randomArray(c.x.reduce((a, b) => a * b, 1), 11);
      const ws = randomArray(c.filter.reduce((a, b) => a * b, 1), 12);
      const dys = randomArray(out.reduce((a, b) => a * b, 1), 13);
      const attrs = { strides: c.strides, pad: c.pad, dilations: c.dilations, dataFormat: 'NHWC' };
      const filterGrad = await compare('filter', () => tf.engine().runKernel(`${prefix}BackpropFilter`,
        { x: tf.tensor4d(xs, c.x), dy: tf.tensor(dys, out) }, { ...attrs, filterShape: c.filter }) as tf.Tensor);
      const inputGrad = await compare('input', () => tf.engine().runKernel(`${prefix}BackpropInput`,
        { dy: tf.tensor(dys, out), filter: tf.tensor4d(ws, c.filter) }, { ...attrs, inputShape: c.x }) as tf.Tensor);
      const label = JSON.stringify(c);
      t.true(relativeError(filterGrad.wasm, filterGrad.cpu) <= 1e-4, `filter grad ${label}`);
      t.true(relativeError(inputGrad.wasm, inputGrad.cpu) <= 1e-4, `input grad ${label}`);
      compared++;
    }
    t.true(compared >= 30, `only ${compared} of ${cases.length} random cases had a non-empty output`);
  });
}

test('Conv2DBackpropFilter on wasm matches cpu when the output pixels span several im2col chunks', async (t) => {
  const cases: ConvCase[] = [
    { x: [2, 64, 64, 64], filter: [3, 3, 64, 8], strides: [1, 1], pad: 'same', dilations: [1, 1] },
    { x: [1, 130, 130, 128], filter: [3, 3, 128, 16], strides: [2, 2], pad: 'valid', dilations: [1, 1] },
  ];
  for (const c of cases) {
    const out = outShape(c, false);
    const xs = randomArray(c.x.reduce((a, b) => a * b, 1), 21);
    const dys = randomArray(out.reduce((a, b) => a * b, 1), 22);
    const { wasm, cpu } = await compare('filter', () => tf.engine().runKernel('Conv2DBackpropFilter',
      { x: tf.tensor4d(xs, c.x), dy: tf.tensor(dys, out) },
      { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.filter }) as tf.Tensor);
    const err = relativeError(wasm, cpu);
    t.true(err <= 1e-4, `${JSON.stringify(c)}: relative error ${err}`);
  }
});

test('UnsortedSegmentSum on wasm matches cpu, dropping out-of-range ids', async (t) => {
  for (const [n, d, segs] of [[7, 3, 4], [50, 1, 10], [33, 16, 5]]) {
    const x = randomArray(n * d, n);
    const ids = Int32Array.from({ length: n }, (_, i) => ((i * 7919) % (segs + 2)) - 1); // includes -1 and segs
    const run = () => tf.unsortedSegmentSum(tf.tensor2d(x, [n, d]), tf.tensor1d(ids, 'int32'), segs);
    const { wasm, cpu } = await compare('UnsortedSegmentSum', run);
    t.true(relativeError(wasm, cpu) <= 1e-6);
  }
});

test.serial('Conv2DBackpropFilter stays correct when its tensors sit above 2 GiB of wasm heap', async (t) => {
  // a signed `>> 2` once turned heap offsets past 2^31 negative and corrupted the heap (256² training crops)
  const c: ConvCase = { x: [2, 20, 20, 8], filter: [3, 3, 8, 4], strides: [1, 1], pad: 'same', dilations: [1, 1] };
  const out = outShape(c, false);
  const xs = randomArray(c.x.reduce((a, b) => a * b, 1), 31);
  const dys = randomArray(out.reduce((a, b) => a * b, 1), 32);
  const run = () => tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor4d(xs, c.x), dy: tf.tensor(dys, out) },
    { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.filter }) as tf.Tensor;
  const cpu = await onBackend('cpu', () => tf.tidy(() => run().dataSync() as Float32Array));
  const wasm = await onBackend('wasm', () => {
    const filler = tf.zeros([576 * 1024 * 1024]); // 2.25 GiB below the kernel's tensors
    try {
      return tf.tidy(() => run().dataSync() as Float32Array);
    } finally {
      filler.dispose();
    }
  });
  t.true(relativeError(wasm, cpu) <= 1e-4);
});
