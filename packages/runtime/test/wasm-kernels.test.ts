import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { initBackend, replacedWasmKernels } from '@ir2f/runtime';
import { onBackend, randomArray, relativeError, type ConvCase, type Pad } from './backend-helpers.js';


test.before(async () => {
  // ir2f's own wasm kernels: onnxruntime's (tested in dense-kernels.test.ts) would take the large cases
  await initBackend('wasm', { denseKernels: 'backend' });
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

test('Conv2DBackpropFilter on wasm matches cpu over several im2col chunks (equal or not) and on its 1×1 path (a product xᵀ·dy)', async (t) => {
  const cases: ConvCase[] = [
    { x: [2, 64, 64, 64], filter: [3, 3, 64, 8], strides: [1, 1], pad: 'same', dilations: [1, 1] },
    { x: [1, 130, 130, 128], filter: [3, 3, 128, 16], strides: [2, 2], pad: 'valid', dilations: [1, 1] },
    // 2 chunks of 1024 columns where one of 1820 (the cap for 2304 rows) would leave a short one
    { x: [2, 32, 32, 256], filter: [3, 3, 256, 16], strides: [1, 1], pad: 'same', dilations: [1, 1] },
    // 2·33·33 = 2178 pixels: the last chunk is a column short
    { x: [2, 33, 33, 256], filter: [3, 3, 256, 4], strides: [1, 1], pad: 'same', dilations: [1, 1] },
    { x: [2, 9, 7, 40], filter: [1, 1, 40, 24], strides: [1, 1], pad: 'same', dilations: [1, 1] },
    { x: [1, 5, 6, 3], filter: [1, 1, 3, 5], strides: [1, 1], pad: 'valid', dilations: [1, 1] },
    // 1×1 that is not the product: strided, and padded
    { x: [2, 9, 7, 6], filter: [1, 1, 6, 4], strides: [2, 2], pad: 'same', dilations: [1, 1] },
    { x: [1, 5, 6, 3], filter: [1, 1, 3, 5], strides: [1, 1], pad: [[0, 0], [1, 0], [0, 2], [0, 0]], dilations: [1, 1] },
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

test('DepthwiseConv2dNativeBackpropFilter on wasm (ir2f: SIMD rows, one filter per channel) matches cpu on wide channels and every channel tail', async (t) => {
  // 256: blocks of eight; 13 = 8 + 4 + 1; strided, padded and dilated-by-stride rows included
  const cases: ConvCase[] = [
    { x: [2, 16, 16, 256], filter: [3, 3, 256, 1], strides: [1, 1], pad: 'same', dilations: [1, 1] },
    { x: [1, 11, 9, 13], filter: [3, 2, 13, 1], strides: [2, 1], pad: 'valid', dilations: [1, 1] },
    { x: [2, 7, 10, 20], filter: [2, 3, 20, 1], strides: [1, 2], pad: [[0, 0], [1, 0], [0, 2], [0, 0]], dilations: [1, 1] },
  ];
  for (const c of cases) {
    const out = outShape(c, true);
    const xs = randomArray(c.x.reduce((a, b) => a * b, 1), 31).map((v) => v + 0.5);
    const dys = randomArray(out.reduce((a, b) => a * b, 1), 32);
    const { wasm, cpu } = await compare('filter', () => tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter',
      { x: tf.tensor4d(xs, c.x), dy: tf.tensor(dys, out) },
      { strides: c.strides, pad: c.pad, dilations: c.dilations, filterShape: c.filter }) as tf.Tensor);
    const err = relativeError(wasm, cpu);
    t.true(err <= 1e-5, `${JSON.stringify(c)}: relative error ${err}`);
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

test('BatchMatMul with transposed operands or batches on wasm (ir2f: explicit transpose; one XNNPACK product for a shared operand, else one per batch) matches cpu', async (t) => {
  const cases: { a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
    { a: [5, 6, 4], b: [5, 4, 3], ta: false, tb: false },
    { a: [2, 3, 6, 4], b: [4, 3], ta: false, tb: false },
    { a: [1, 6, 4], b: [7, 4, 3], ta: false, tb: false },
    { a: [2, 3, 6, 4], b: [1, 3, 4, 5], ta: false, tb: false },
    { a: [2, 3, 6, 4], b: [2, 3, 5, 4], ta: false, tb: true },
    { a: [200, 64], b: [200, 48], ta: true, tb: false },
    { a: [37, 5], b: [37, 7], ta: true, tb: false },
    { a: [6, 9], b: [4, 9], ta: false, tb: true },
    { a: [9, 6], b: [4, 9], ta: true, tb: true },
    { a: [3, 8, 5], b: [3, 8, 6], ta: true, tb: false },
    { a: [2, 4, 7], b: [2, 5, 7], ta: false, tb: true },
    { a: [1, 10, 3], b: [4, 5, 10], ta: true, tb: true },
    { a: [1, 16, 32], b: [64, 32, 1], ta: false, tb: false },
    { a: [3, 5, 70, 8], b: [8, 9], ta: false, tb: false },
  ];
  for (const c of cases) {
    const run = () => tf.matMul(tf.tensor(randomArray(c.a.reduce((x, y) => x * y, 1), 41), c.a as [number, number, number]) as tf.Tensor3D,
      tf.tensor(randomArray(c.b.reduce((x, y) => x * y, 1), 42), c.b as [number, number, number]) as tf.Tensor3D, c.ta, c.tb);
    const { wasm, cpu } = await compare('BatchMatMul', run);
    t.true(relativeError(wasm, cpu) <= 1e-5, JSON.stringify(c));
  }
});

test('Sum and Mean on wasm (ir2f: leading axes in one pass over the rows) match cpu, with keepDims, negative axes and other axes', async (t) => {
  const cases: { x: number[]; axis: number | number[]; keepDims: boolean }[] = [
    { x: [300, 40], axis: 0, keepDims: false },
    { x: [2, 24, 24, 16], axis: [0, 1, 2], keepDims: true },
    { x: [2, 24, 24, 16], axis: [2, 0, 1], keepDims: false },
    { x: [4, 100, 33], axis: [-3, -2], keepDims: false },
    { x: [70, 80], axis: [1], keepDims: false },
    { x: [6, 70, 80], axis: [0, 2], keepDims: true },
    { x: [3, 5], axis: 0, keepDims: false },
  ];
  for (const c of cases) {
    for (const op of ['sum', 'mean'] as const) {
      const run = () => tf[op](tf.tensor(randomArray(c.x.reduce((a, b) => a * b, 1), 61), c.x), c.axis, c.keepDims);
      const { wasm, cpu } = await compare(op === 'sum' ? 'Sum' : 'Mean', run);
      t.true(relativeError(wasm, cpu) <= 1e-5, `${op} ${JSON.stringify(c)}`);
      const shape = await onBackend('wasm', () => tf.tidy(() => run().shape));
      t.deepEqual(shape, await onBackend('cpu', () => tf.tidy(() => run().shape)), `${op} ${JSON.stringify(c)} shape`);
    }
  }
  t.true(replacedWasmKernels.has('Sum') && replacedWasmKernels.has('Mean'), 'ir2f\'s Sum and Mean are the registered wasm kernels');
  // int32 sums stay exact (the package's kernel)
  const ints = () => tf.sum(tf.tensor2d(Array.from({ length: 400 }, (_, i) => i % 17), [100, 4], 'int32'), 0);
  const { wasm, cpu } = await compare('Sum', ints);
  t.deepEqual(Array.from(wasm), Array.from(cpu));
});

test('GatherV2 on wasm (ir2f: row copies) matches cpu for any axis, float32 and int32, and rejects bad indices', async (t) => {
  const cases: { x: number[]; idx: number[]; idxShape: number[]; axis: number }[] = [
    { x: [10, 4], idx: [3, 3, 0, 9, 1], idxShape: [5], axis: 0 },
    { x: [3, 6, 2], idx: [5, 0, 2, 2], idxShape: [2, 2], axis: 1 },
    { x: [4, 5], idx: [4, 1], idxShape: [2], axis: 1 },
    { x: [7], idx: [6, 0, 3], idxShape: [3], axis: 0 },
  ];
  for (const c of cases) {
    for (const dtype of ['float32', 'int32'] as const) {
      const run = () => tf.gather(tf.cast(tf.mul(tf.tensor(randomArray(c.x.reduce((a, b) => a * b, 1), 51), c.x), 100), dtype),
        tf.tensor(c.idx, c.idxShape, 'int32'), c.axis).toFloat();
      const { wasm, cpu } = await compare('GatherV2', run);
      t.deepEqual(Array.from(wasm), Array.from(cpu), `${JSON.stringify(c)} ${dtype}`);
    }
  }
  await onBackend('wasm', () => {
    // int32 whose bits are a float NaN with a payload (0x7fa00001) are moved unchanged
    t.deepEqual(Array.from(tf.tidy(() => tf.gather(tf.tensor1d([0x7fa00001, -5], 'int32'), tf.tensor1d([0, 1, 0], 'int32')).dataSync())), [0x7fa00001, -5, 0x7fa00001]);
    const err = t.throws(() => tf.tidy(() => tf.gather(tf.zeros([4, 2]), tf.tensor1d([1, 4], 'int32')).dataSync()));
    t.regex(err!.message, /index 4 .* outside \[0, 3\]/);
  });
});

test('Concat and SplitV on wasm (ir2f: a copy per outer row) match cpu on any axis, float32 and int32', async (t) => {
  const shapes: number[][][] = [[[2, 3, 4, 5], [2, 3, 4, 2]], [[4, 6], [1, 6], [3, 6]], [[2, 5], [2, 0], [2, 3]], [[3, 2, 2], [3, 2, 7]]];
  for (const parts of shapes) {
    const axis = parts[0].findIndex((d, i) => parts.some((p) => p[i] !== d));
    for (const dtype of ['float32', 'int32'] as const) {
      const run = () => {
        const ts = parts.map((s, k) => tf.cast(tf.mul(tf.tensor(randomArray(s.reduce((a, b) => a * b, 1), 70 + k), s), 100), dtype));
        const joined = tf.concat(ts, axis);
        const back = tf.split(joined, parts.map((p) => p[axis]), axis - joined.rank);
        return tf.concat([joined.flatten(), ...back.map((b) => b.flatten())]).toFloat();
      };
      const { wasm, cpu } = await compare('Concat', run);
      t.deepEqual(Array.from(wasm), Array.from(cpu), `${JSON.stringify(parts)} ${dtype}`);
    }
  }
  t.true(replacedWasmKernels.has('Concat') && replacedWasmKernels.has('SplitV'));
});

test('FusedBatchNorm on wasm (ir2f: x·a + b per channel) matches cpu, with and without offset and scale, scalar parameters', async (t) => {
  const C = 24;
  const x = () => tf.tensor4d(randomArray(2 * 5 * 7 * C, 81), [2, 5, 7, C]);
  const p = (seed: number, n = C) => tf.tensor1d(randomArray(n, seed));
  const cases: [string, () => tf.Tensor][] = [
    ['all', () => tf.batchNorm(x(), p(82), tf.abs(p(83)), p(84), p(85), 1e-3)],
    ['no offset/scale', () => tf.batchNorm(x(), p(82), tf.abs(p(83)), undefined, undefined, 1e-5)],
    ['scalar mean and scale', () => tf.batchNorm(x(), p(86, 1), tf.abs(p(83)), p(84), p(87, 1), 1e-3)],
  ];
  for (const [label, run] of cases) {
    const { wasm, cpu } = await compare('FusedBatchNorm', run);
    t.true(relativeError(wasm, cpu) <= 1e-5, label);
  }
  t.true(replacedWasmKernels.has('FusedBatchNorm'));
});

test('MaxPoolGrad on wasm (ir2f: the first strict maximum of each window; SIMD, channel tails in JS) matches cpu, ties and overlapping windows included', async (t) => {
  const cases: { x: [number, number, number, number]; f: number; s: number; pad: 'valid' | 'same' }[] = [
    { x: [2, 17, 17, 5], f: 3, s: 2, pad: 'valid' },
    { x: [1, 9, 11, 3], f: 2, s: 2, pad: 'same' },
    { x: [2, 8, 8, 4], f: 3, s: 1, pad: 'same' },
    // a ResNet stem's pool: channels all SIMD
    { x: [2, 14, 14, 16], f: 3, s: 2, pad: 'same' },
  ];
  for (const c of cases) {
    // few distinct values: many ties inside a window
    const xs = randomArray(c.x.reduce((a, b) => a * b, 1), 91).map((v) => Math.round(v * 4));
    const run = () => tf.grad((x) => {
      const y = tf.maxPool(x as tf.Tensor4D, c.f, c.s, c.pad);
      return tf.sum(tf.mul(y, tf.tensor(randomArray(y.size, 92), y.shape)));
    })(tf.tensor4d(xs, c.x));
    const { wasm, cpu } = await compare('MaxPoolGrad', run);
    // where windows overlap, sums in float32 (wasm) against float64 (cpu)
    t.true(relativeError(wasm, cpu) <= 1e-6, JSON.stringify(c));
  }
  t.true(replacedWasmKernels.has('MaxPoolGrad'));
});
