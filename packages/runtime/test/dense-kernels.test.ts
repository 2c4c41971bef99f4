import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { denseKernelCalls, initBackend, MIN_DEPTH, MIN_MACS, OnnxGraph } from '@ir2f/runtime';
import { OrtKernelRuntime } from '../src/kernels/ort-runtime.js';
import { onBackend, randomArray, relativeError, type ConvCase, type Pad } from './backend-helpers.js';


const conv = (x: ConvCase['x'], filter: ConvCase['filter'], strides: [number, number], pad: Pad, dilations: [number, number] = [1, 1]): ConvCase =>
  ({ x, filter, strides, pad, dilations });

// each above MIN_MACS: 3×3 same, strided on odd sizes, the 7×7/4 patch embedding, dilated, 1×1 (a product),
// 5×5 valid, asymmetric explicit padding, a padding wider than the filter reach (ConvTranspose path)
const CONVS: ConvCase[] = [
  conv([2, 16, 16, 32], [3, 3, 32, 16], [1, 1], 'same'),
  conv([1, 17, 15, 24], [3, 3, 24, 32], [2, 2], 'same'),
  conv([1, 64, 64, 3], [7, 7, 3, 16], [4, 4], [[0, 0], [3, 3], [3, 3], [0, 0]]),
  conv([2, 20, 20, 16], [3, 3, 16, 24], [1, 1], 'same', [2, 2]),
  conv([2, 16, 16, 64], [1, 1, 64, 32], [1, 1], 'same'),
  conv([1, 40, 38, 8], [5, 5, 8, 16], [1, 1], 'valid'),
  conv([2, 12, 14, 16], [3, 3, 16, 16], [1, 1], [[0, 0], [2, 0], [1, 2], [0, 0]]),
  conv([1, 12, 12, 32], [2, 2, 32, 32], [1, 1], [[0, 0], [3, 3], [3, 3], [0, 0]]),
  // strided filter gradients: unequal strides with 'valid', a strided 1×1; 3 channels (one correlation) where
  // the last rows and columns are read by no tap
  conv([2, 15, 20, 8], [3, 2, 8, 16], [2, 3], 'valid'),
  conv([2, 66, 67, 3], [5, 5, 3, 16], [3, 2], 'valid'),
  conv([2, 17, 17, 32], [1, 1, 32, 64], [2, 2], 'same'),
  // DeepLab's ASPP on a 16×16 map: padding-dominated filter gradients (the im2col GEMM), taps reading partly
  // into padding (12) and only padding (18: all but the centre)
  conv([2, 16, 16, 32], [3, 3, 32, 19], [1, 1], 'same', [12, 12]),
  conv([2, 16, 16, 32], [3, 3, 32, 19], [1, 1], 'same', [18, 18]),
  // channels in whole NCHWc blocks (8 and 16): MLAS's blocked kernels, forward and (stride 1) input gradient;
  // dilated, strided, and 48 channels (three blocks of 16, six of 8). The cases above with 19 or 24 channels
  // run there too, padded to whole blocks (19 also to a multiple of 4 first, as their input gradient's input)
  conv([2, 16, 16, 32], [3, 3, 32, 32], [1, 1], 'same', [2, 2]),
  conv([2, 17, 17, 32], [3, 3, 32, 48], [2, 2], 'same'),
  conv([2, 12, 12, 48], [3, 3, 48, 16], [1, 1], 'same'),
];
/** CONVS that run on blocks of `block` channels: at most 2× the multiply-adds with channels padded to whole blocks. */
const blocked = (block: number) => CONVS.filter((c) => {
  const up = (n: number) => Math.ceil(n / block) * block;
  return up(c.filter[2]) * up(c.filter[3]) <= 2 * c.filter[2] * c.filter[3];
});

const count = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const outShape = (c: ConvCase) => tf.backend_util.computeConv2DInfo(c.x, c.filter, c.strides, c.dilations, c.pad).outShape;
const macs = (c: ConvCase) => count(outShape(c)) * c.filter[0] * c.filter[1] * c.filter[2];

/** The three kernels of a case, each with its reference (the cpu backend's kernel, or for a dilated case its gradient). */
function convKernels(c: ConvCase): Record<string, [() => tf.Tensor, () => tf.Tensor]> {
  const out = outShape(c);
  const x = () => tf.tensor4d(randomArray(count(c.x), 1), c.x);
  const f = () => tf.tensor4d(randomArray(count(c.filter), 2), c.filter);
  const dy = () => tf.tensor(randomArray(count(out), 3), out);
  const attrs = { strides: c.strides, pad: c.pad, dilations: c.dilations, dataFormat: 'NHWC' };
  const dxKernel = () => tf.engine().runKernel('Conv2DBackpropInput', { dy: dy(), filter: f() }, { ...attrs, inputShape: c.x }) as tf.Tensor;
  const dwKernel = () => tf.engine().runKernel('Conv2DBackpropFilter', { x: x(), dy: dy() }, { ...attrs, filterShape: c.filter }) as tf.Tensor;
  // tfjs's cpu backprop kernels ignore dilations (its dilated gradients go through space-to-batch)
  const dilated = c.dilations.some((d) => d > 1);
  const loss = (xx: tf.Tensor4D, ff: tf.Tensor4D) => tf.sum(tf.mul(tf.conv2d(xx, ff, c.strides, c.pad as 'same', 'NHWC', c.dilations), dy()));
  const forward = () => tf.engine().runKernel('Conv2D', { x: x(), filter: f() }, attrs) as tf.Tensor;
  return {
    Conv2D: [forward, forward],
    Conv2DBackpropInput: [dxKernel, dilated ? () => tf.grad((xx) => loss(xx as tf.Tensor4D, f()))(x()) : dxKernel],
    Conv2DBackpropFilter: [dwKernel, dilated ? () => tf.grad((ff) => loss(x(), ff as tf.Tensor4D))(f()) : dwKernel],
  };
}

/** The depthwise filter gradient (multiplier 1) of a case, and its reference (the gradient on cpu). */
function depthwiseFilterGrad(c: ConvCase): [() => tf.Tensor, () => tf.Tensor] {
  const out = tf.backend_util.computeConv2DInfo(c.x, c.filter, c.strides, c.dilations, c.pad, undefined, true).outShape;
  const x = () => tf.tensor4d(randomArray(count(c.x), 14), c.x);
  const dy = () => tf.tensor(randomArray(count(out), 15), out);
  const kernel = () => tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x: x(), dy: dy() },
    { strides: c.strides, pad: c.pad, dilations: c.dilations, dataFormat: 'NHWC', filterShape: c.filter }) as tf.Tensor;
  const grad = () => tf.grad((f) => tf.sum(tf.mul(tf.depthwiseConv2d(x(), f as tf.Tensor4D, c.strides, c.pad as 'same', 'NHWC', c.dilations), dy())))(
    tf.tensor4d(randomArray(count(c.filter), 16), c.filter));
  return [kernel, grad];
}

const DEPTHWISE: ConvCase[] = [
  conv([2, 16, 16, 32], [3, 3, 32, 1], [1, 1], 'same'),
  conv([2, 33, 31, 32], [3, 3, 32, 1], [2, 2], 'same'),
  conv([2, 32, 32, 16], [3, 3, 16, 1], [1, 1], 'same', [6, 6]),
];

interface MatCase {
  a: number[];
  b: number[];
  ta: boolean;
  tb: boolean;
  bias?: number[];
  activation?: 'linear' | 'relu';
}

const MATS: MatCase[] = [
  { a: [300, 64], b: [64, 48], ta: false, tb: false },
  { a: [64, 300], b: [64, 48], ta: true, tb: false },
  { a: [300, 64], b: [48, 64], ta: false, tb: true },
  { a: [64, 300], b: [48, 64], ta: true, tb: true },
  { a: [4, 100, 40], b: [4, 40, 50], ta: false, tb: false },
  { a: [4, 40, 100], b: [4, 50, 40], ta: true, tb: true },
  { a: [1, 100, 40], b: [6, 40, 50], ta: false, tb: false },
  { a: [6, 100, 40], b: [40, 50], ta: false, tb: false }, // shared b: one product on stacked rows
  { a: [6, 40, 100], b: [40, 50], ta: true, tb: false },
  { a: [2, 3, 60, 40], b: [40, 50], ta: false, tb: false },
  { a: [2, 3, 60, 40], b: [2, 3, 50, 40], ta: false, tb: true },
  { a: [300, 64], b: [64, 48], ta: false, tb: false, bias: [48], activation: 'relu' },
  { a: [64, 300], b: [48, 64], ta: true, tb: true, bias: [1, 48], activation: 'linear' },
];

function matKernel(c: MatCase): () => tf.Tensor {
  return () => {
    const a = tf.tensor(randomArray(count(c.a), 4), c.a);
    const b = tf.tensor(randomArray(count(c.b), 5), c.b);
    if (!c.bias) return tf.matMul(a, b, c.ta, c.tb);
    return tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, transposeA: c.ta, transposeB: c.tb,
      bias: tf.tensor(randomArray(count(c.bias), 6), c.bias), activation: c.activation });
  };
}

const UNARY: Record<string, () => tf.Tensor> = {
  Exp: () => tf.exp(tf.tensor(randomArray(40000, 7), [2, 100, 200])),
  Erf: () => tf.erf(tf.mul(tf.tensor(randomArray(40000, 8), [40000]), 6)),
  Softmax: () => tf.softmax(tf.mul(tf.tensor(randomArray(2 * 64 * 64 * 19, 10), [2, 64, 64, 19]), 8)),
  Sum: () => tf.sum(tf.tensor(randomArray(2 * 32 * 32 * 24, 11), [2, 32, 32, 24]), [0, 1, 2]),
  'Sum (keepDims)': () => tf.sum(tf.tensor(randomArray(2 * 32 * 32 * 24, 11), [2, 32, 32, 24]), [1, 0], true),
  Mean: () => tf.mean(tf.tensor(randomArray(6 * 40 * 50, 12), [6, 40, 50]), 0),
  Max: () => tf.max(tf.tensor(randomArray(2 * 64 * 64 * 19, 13), [2, 64 * 64, 19]), 1),
};

const read = (backend: string, run: () => tf.Tensor) => onBackend(backend, () => tf.tidy(() => {
  const y = run();
  return { values: y.dataSync() as Float32Array, shape: y.shape };
}));

test.serial('convolutions, both their gradients, the depthwise filter gradient, matrix products, transcendentals and reductions on onnxruntime match the backends\' own kernels (wasm threaded and cpu)', async (t) => {
  const cases: [string, () => tf.Tensor, number, () => tf.Tensor][] = [];
  for (const c of CONVS) {
    t.true(macs(c) >= MIN_MACS, `${JSON.stringify(c)} is above the dispatch threshold`);
    for (const [k, [run, ref]] of Object.entries(convKernels(c))) cases.push([`${k} ${JSON.stringify(c)}`, run, 1e-4, ref]);
  }
  for (const c of DEPTHWISE) {
    const [run, ref] = depthwiseFilterGrad(c);
    cases.push([`depthwise filter gradient ${JSON.stringify(c)}`, run, 1e-4, ref]);
  }
  for (const c of MATS) cases.push([`matmul ${JSON.stringify(c)}`, matKernel(c), 1e-5, matKernel(c)]);
  for (const [k, run] of Object.entries(UNARY)) cases.push([k, run, 1e-5, run]);
  // a reduction's own kernel must also be what ran: int32 sums stay on the backend

  // references: the cpu backend's own kernels
  await initBackend('cpu', { denseKernels: 'backend' });
  const refs = [];
  for (const [, , , ref] of cases) refs.push(await read('cpu', ref));
  // the threaded wasm build (started without onnxruntime): its heap is a SharedArrayBuffer, which the
  // native binding refuses, so this also runs the copies through the bounce buffer
  await initBackend('wasm', { denseKernels: 'backend', wasmThreads: 2 });
  const info = await initBackend('wasm', { denseKernels: 'onnxruntime', wasmThreads: 2 });
  t.is(info.threads, 2);
  t.like(info.dense, { provider: 'onnxruntime', threads: 2 });
  // the NCHWc block of this CPU (0 where MLAS has none), and cases that run on it
  const block = info.dense?.provider === 'onnxruntime' ? info.dense.nchwcBlock : NaN;
  t.true(block === 0 || block === 8 || block === 16, `NCHWc block ${block}`);
  if (block) t.true(blocked(block).length >= 8, `${blocked(block).length} cases in blocks of ${block}`);
  const total = () => Object.values(denseKernelCalls()).reduce((a, b) => a + b, 0);
  for (const backend of ['wasm', 'cpu']) {
    for (const [i, [label, run, tol]] of cases.entries()) {
      const before = total();
      const got = await read(backend, run);
      t.deepEqual(got.shape, refs[i].shape, `${backend} ${label} shape`);
      const err = relativeError(got.values, refs[i].values);
      t.true(err <= tol, `${backend} ${label}: relative error ${err}`);
      // the depthwise filter gradient stays on the backend on wasm, whose SIMD kernel is faster
      const stays = backend === 'wasm' && label.startsWith('depthwise filter');
      if (stays) t.is(total(), before, `${backend} ${label} stayed on the backend`);
      else t.true(total() > before, `${backend} ${label} ran on onnxruntime`);
    }
  }
});

test.serial('kernels below the threshold, shallow products, inner-axis sums and Log stay on the backend; memory is flat; denseKernels: backend switches onnxruntime off', async (t) => {
  await initBackend('wasm');
  const small = conv([1, 6, 6, 4], [3, 3, 4, 4], [1, 1], 'same');
  t.true(macs(small) < MIN_MACS);
  const before = denseKernelCalls().Conv2D ?? 0;
  const [forward] = convKernels(small).Conv2D;
  const cpu = await read('cpu', forward);
  t.true(relativeError((await read('wasm', forward)).values, cpu.values) <= 1e-5);
  t.is(denseKernelCalls().Conv2D ?? 0, before);
  // so does a product too shallow to pay for its output (an outer product, here ~1.3M multiply-adds)
  const products = denseKernelCalls().BatchMatMul ?? 0;
  const outer = () => tf.matMul(tf.tensor2d(randomArray(20000, 5), [20000, 1]), tf.tensor2d(randomArray(64, 6), [64, 1]), false, true);
  t.true(20000 * 64 >= MIN_MACS && 1 < MIN_DEPTH);
  t.true(relativeError((await read('wasm', outer)).values, (await read('cpu', outer)).values) <= 1e-6);
  t.is(denseKernelCalls().BatchMatMul ?? 0, products);

  // sums along contiguous data stay on the backend (onnxruntime's order there follows the address)
  const sums = denseKernelCalls().Sum ?? 0;
  const inner = () => tf.sum(tf.tensor(randomArray(64 * 512, 17), [64, 512]), -1);
  t.true(relativeError((await read('wasm', inner)).values, (await read('cpu', inner)).values) <= 1e-5);
  t.is(denseKernelCalls().Sum ?? 0, sums);
  // Log stays on the backend at any size (onnxruntime's depended on buffer placement)
  const log = () => tf.log(tf.add(tf.tensor(randomArray(40000, 9), [200, 200]), 0.6));
  t.true(relativeError((await read('wasm', log)).values, (await read('cpu', log)).values) <= 1e-6);
  t.false('Log' in denseKernelCalls());

  const big = convKernels(CONVS[0]);
  const step = () => tf.tidy(() => {
    for (const [run] of Object.values(big)) run().dataSync();
  });
  step();
  const tensors = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) step();
  t.is(tf.memory().numTensors, tensors);

  const off = await initBackend('wasm', { denseKernels: 'backend' });
  t.like(off.dense, { provider: 'backend' });
  const calls = denseKernelCalls().Conv2D;
  step();
  t.is(denseKernelCalls().Conv2D, calls);
  await initBackend('wasm');
});

test.serial('a bad IR2F_DENSE_KERNELS is refused, naming the variable and the choices', async (t) => {
  process.env.IR2F_DENSE_KERNELS = 'mlas';
  try {
    const err = await t.throwsAsync(initBackend('wasm'));
    t.regex(err!.message, /IR2F_DENSE_KERNELS must be one of onnxruntime, backend, got 'mlas'/);
  } finally {
    delete process.env.IR2F_DENSE_KERNELS;
  }
});

test('a graph onnxruntime refuses is remembered with its reason, and its kernel stays on the backend', (t) => {
  const rt = OrtKernelRuntime.load(1);
  if (typeof rt === 'string') return t.fail(rt);
  let builds = 0;
  const bad = () => {
    builds++;
    const g = new OnnxGraph();
    const x = g.input('x0', [4]);
    g.nodes.push({ opType: 'NoSuchOp', name: 'n', input: [x], output: ['y0'] });
    g.output('y0', [4]);
    return g;
  };
  t.false(rt.ready('bad', bad));
  t.false(rt.ready('bad', bad));
  t.is(builds, 1);
  t.regex(rt.refused.get('bad') ?? '', /NoSuchOp/);
  rt.dispose();
});

test.serial('a filter gradient mostly over padding (dilation 24 on 16×16) runs on onnxruntime, its taps that read only padding exactly zero', async (t) => {
  await initBackend('wasm');
  const c = conv([2, 16, 16, 32], [3, 3, 32, 16], [1, 1], 'same', [24, 24]);
  const [run, ref] = convKernels(c).Conv2DBackpropFilter;
  const want = await read('cpu', ref);
  const before = denseKernelCalls().Conv2DBackpropFilter ?? 0;
  const got = await read('wasm', run);
  t.is(denseKernelCalls().Conv2DBackpropFilter, before + 1);
  t.true(relativeError(got.values, want.values) <= 1e-4);
  // [3, 3, 32, 16]: only the centre tap (index 4) sees the map
  const tap = 32 * 16;
  got.values.forEach((v, i) => {
    if (Math.floor(i / tap) !== 4 && v !== 0) t.fail(`tap ${Math.floor(i / tap)} has ${v}`);
  });
  t.true(got.values.subarray(4 * tap, 5 * tap).some((v) => v !== 0));
});
