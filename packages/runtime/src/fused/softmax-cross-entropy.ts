/**
 * Softmax cross-entropy per row: ce = log Σ_k e^(x_k) − x_label over the last axis of `logits` [..., K], 0 where
 * the label is ignored (outside [0, K), or `ignoreIndex`), as one kernel and one gradient kernel
 * (dx = dce·(softmax(x) − onehot(label))) on the host backends (wasm, cpu). The composition (logSoftmax, oneHot,
 * a product and a sum, the masks) is ~12 kernels forward and ~10 backward over the label-resolution logits, the
 * largest class-wise tensors of a segmentation step. The tape keeps the logits and each row's log-sum-exp.
 * On wasm the rows are SIMD four to a vector (simd/kernels.wat, so any K; a tail of rows mod 4 and the
 * gradient's per-row label terms a JS loop); on cpu JS loops; elsewhere (webgl, tfjs-node) the composition runs.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel, registerOnce } from '../kernels/host-kernel.js';

const SCE = 'Ir2fSoftmaxCrossEntropy';
const SCE_GRAD = 'Ir2fSoftmaxCrossEntropyGrad';

function checkShapes(logits: tf.Tensor, labels: tf.Tensor): void {
  const rows = logits.shape.slice(0, -1);
  if (logits.rank < 1 || labels.shape.length !== rows.length || labels.shape.some((d, i) => d !== rows[i])) {
    throw new Error(`softmaxCrossEntropy: labels [${labels.shape}] must have the shape of logits [${logits.shape}] without its last axis`);
  }
}

/** The composition the kernels replace (and the reference their tests compare with). */
export function softmaxCrossEntropyComposed(logits: tf.Tensor, labels: tf.Tensor, ignoreIndex = 255): tf.Tensor {
  checkShapes(logits, labels);
  return tf.tidy(() => {
    const K = logits.shape[logits.rank - 1];
    const lab = tf.cast(labels, 'int32');
    const valid = tf.logicalAnd(tf.logicalAnd(tf.greaterEqual(lab, 0), tf.less(lab, K)), tf.notEqual(lab, ignoreIndex));
    const safe = tf.where(valid, lab, tf.zerosLike(lab));
    const picked = tf.sum(tf.mul(tf.logSoftmax(logits, -1), tf.oneHot(safe, K)), -1);
    return tf.mul(tf.neg(picked), tf.cast(valid, 'float32'));
  });
}

/**
 * The cross-entropy of each row of `logits` (float32, shape [..., K]) against int `labels` (shape [...]), that is
 * −log softmax(logits) at the label; 0 where the label is outside [0, K) or equals `ignoreIndex`. Differentiable
 * in `logits`.
 */
export function softmaxCrossEntropy(logits: tf.Tensor, labels: tf.Tensor, ignoreIndex = 255): tf.Tensor {
  checkShapes(logits, labels);
  registerSoftmaxCrossEntropy();
  if (logits.dtype !== 'float32' || !hasHostKernel(SCE)) return softmaxCrossEntropyComposed(logits, labels, ignoreIndex);
  return tf.tidy(() => {
    const lab = labels.dtype === 'int32' ? labels : tf.cast(labels, 'int32');
    // the second output, each row's log-sum-exp, is the gradient's (saved on the tape)
    const [ce, lse] = tf.engine().runKernel(SCE, { logits, labels: lab }, { ignoreIndex }) as tf.Tensor[];
    lse.dispose();
    return ce;
  });
}

const counted = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

interface Rows {
  x: Float32Array;
  labels: Int32Array;
  K: number;
  ignore: number;
}

const isValid = (label: number, K: number, ignore: number) => label >= 0 && label < K && label !== ignore;

/** For rows [from, to), as the SIMD kernel does four at a time: lse = the row's log-sum-exp, ce = lse − x[label] (0 where ignored). */
function crossEntropyRows({ x, labels, K, ignore }: Rows, from: number, to: number, ce: Float32Array, lse: Float32Array): void {
  for (let r = from; r < to; r++) {
    const o = r * K;
    let mx = x[o];
    for (let k = 1; k < K; k++) mx = x[o + k] > mx || Number.isNaN(x[o + k]) ? x[o + k] : mx;
    let sum = 0;
    for (let k = 0; k < K; k++) sum += Math.exp(x[o + k] - mx);
    const l = mx + Math.log(sum);
    lse[r] = l;
    const label = labels[r];
    ce[r] = isValid(label, K, ignore) ? l - x[o + label] : 0;
  }
}

/** g[r] = dce[r] on valid rows, 0 elsewhere. */
function rowScale({ labels, K, ignore }: Rows, dce: Float32Array, g: Float32Array): void {
  for (let r = 0; r < g.length; r++) g[r] = isValid(labels[r], K, ignore) ? dce[r] : 0;
}

/** dx = g·e^(x − lse) on rows [from, to). */
function scaledSoftmax({ x, K }: Rows, lse: Float32Array, g: Float32Array, from: number, to: number, dx: Float32Array): void {
  for (let r = from; r < to; r++) {
    const o = r * K;
    for (let k = 0; k < K; k++) dx[o + k] = g[r] * Math.exp(x[o + k] - lse[r]);
  }
}

/** dx[r, label] −= g[r]: the one-hot part of the gradient. */
function subtractLabels({ labels, K, ignore }: Rows, g: Float32Array, dx: Float32Array): void {
  for (let r = 0; r < g.length; r++) {
    const label = labels[r];
    if (isValid(label, K, ignore)) dx[r * K + label] -= g[r];
  }
}

const registerSoftmaxCrossEntropy = registerOnce(() => {
  const ignoreOf = (attrs: tf.NamedAttrMap) => attrs.ignoreIndex as number;
  registerHostKernel({
    name: SCE,
    outputShapes: (s) => [s.labels, s.labels],
    wasm: {
      // a group of four rows as K vectors
      scratchBytes: (s) => 16 * s.logits[s.logits.length - 1],
      compute: ({ logits, labels }, [ce, lse], scratch, { f32, simd }, attrs) => {
        const K = logits.shape[logits.shape.length - 1];
        const n = counted(labels.shape);
        const rows: Rows = { x: f32.subarray(logits.ptr / 4, logits.ptr / 4 + n * K), labels: new Int32Array(f32.buffer, labels.ptr, n), K, ignore: ignoreOf(attrs) };
        const [ceV, lseV] = [f32.subarray(ce / 4, ce / 4 + n), f32.subarray(lse / 4, lse / 4 + n)];
        // four rows at a time in SIMD, the rest here
        const n4 = n & ~3;
        simd.softmaxCe(logits.ptr, labels.ptr, n4, K, rows.ignore, ce, lse, scratch);
        crossEntropyRows(rows, n4, n, ceV, lseV);
      },
    },
    compute: ({ logits, labels }, [ce, lse], attrs) => {
      const K = logits.shape[logits.shape.length - 1];
      const rows: Rows = { x: logits.values as Float32Array, labels: labels.values as Int32Array, K, ignore: ignoreOf(attrs) };
      crossEntropyRows(rows, 0, lse.length, ce, lse);
    },
  });
  registerHostKernel({
    name: SCE_GRAD,
    outputShapes: (s) => [s.logits],
    wasm: {
      // g, the rows' scale (aligned to 16 bytes), then a group of four rows as K vectors
      scratchBytes: (s) => 4 * counted(s.labels) + 16 + 16 * s.logits[s.logits.length - 1],
      compute: ({ dce, logits, labels, lse }, [dx], scratch, { f32, simd }, attrs) => {
        const K = logits.shape[logits.shape.length - 1];
        const n = counted(labels.shape);
        const rows: Rows = { x: f32.subarray(logits.ptr / 4, logits.ptr / 4 + n * K), labels: new Int32Array(f32.buffer, labels.ptr, n), K, ignore: ignoreOf(attrs) };
        const view = (ptr: number, len: number) => f32.subarray(ptr / 4, ptr / 4 + len);
        const [g, l, dxV] = [view(scratch, n), view(lse.ptr, n), view(dx, n * K)];
        rowScale(rows, view(dce.ptr, n), g);
        const n4 = n & ~3;
        simd.softmaxScaled(logits.ptr, lse.ptr, scratch, n4, K, dx, Math.ceil((scratch + 4 * n) / 16) * 16);
        scaledSoftmax(rows, l, g, n4, n, dxV);
        subtractLabels(rows, g, dxV);
      },
    },
    compute: ({ dce, logits, labels, lse }, [dx], attrs) => {
      const K = logits.shape[logits.shape.length - 1];
      const rows: Rows = { x: logits.values as Float32Array, labels: labels.values as Int32Array, K, ignore: ignoreOf(attrs) };
      const n = lse.values.length;
      const g = new Float32Array(n);
      rowScale(rows, dce.values as Float32Array, g);
      scaledSoftmax(rows, lse.values as Float32Array, g, 0, n, dx);
      subtractLabels(rows, g, dx);
    },
  });
  tf.registerGradient({
    kernelName: SCE,
    inputsToSave: ['logits', 'labels'],
    outputsToSave: [false, true],
    // the log-sum-exp output is internal (`softmaxCrossEntropy` disposes it): only the cross-entropy's gradient flows
    gradFunc: (dys, saved, attrs) => {
      const [logits, labels, lse] = saved as tf.Tensor[];
      const [dce] = dys as tf.Tensor[];
      return {
        logits: () => tf.engine().runKernel(SCE_GRAD, { dce, logits, labels, lse }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor,
        labels: () => tf.zerosLike(labels),
      };
    },
  });
});
