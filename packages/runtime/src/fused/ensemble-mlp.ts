/**
 * A whole LIIF-style query MLP with its local ensemble: for N neighbours n and Q queries q,
 *
 *   a₀ = relu(table[index[n, q]] + x[n, q]·wx),  aᵢ₊₁ = relu(aᵢ·wᵢ + bᵢ),  s[q] = Σₙ weight[n, q]·(a_L·wOut + bOut)
 *
 * (`gatherAffineRelu`, `dense` layers, `ensembleDot`). Composed, each layer's [N·Q, H] activations are written
 * to memory and read back: for a 4× query chunk of the INR rectifier that is 128 MB a layer, and the passes
 * took more time than the products (a [524288, 64]·[64, 64] product 50 ms, the gather 20, the blend 15). On
 * wasm and cpu with onnxruntime the forward is one graph that loops over tiles of 1024 queries, running the
 * whole MLP on each tile while its activations stay in cache. Under a gradient tape (tf.grads,
 * tf.variableGrads) on one onnxruntime thread its gradient is a second such graph, which recomputes each tile's
 * forward; on more threads, and on other backends, the composition runs. `ensembleMlpBce`, a loss on the logits,
 * runs one graph for its value and gradient together there, so the forward runs once.
 */
import * as tf from '@tensorflow/tfjs';
import { HOST_BACKENDS } from '../kernels/host-kernel.js';
import {
  denseRuntime, ENSEMBLE_MLP, ENSEMBLE_MLP_BCE, ENSEMBLE_MLP_GRAD, registerEnsembleMlpBceKernel, registerEnsembleMlpGradKernel, registerEnsembleMlpKernel,
} from '../kernels/ort-dense-kernels.js';
import { dense } from './dense.js';
import { ensembleDot } from './ensemble-dot.js';
import { gatherAffineRelu } from './gather-affine-relu.js';
import { recordingGradients } from '../stop-gradient.js';

/** A layer's weights: w [in, out], b [out]. */
export interface MlpLayer {
  w: tf.Tensor2D;
  b: tf.Tensor1D;
}

/**
 * The MLP after its first layer on activations a [N·Q, H₀]: the hidden `layers` (ReLU), the output layer and the
 * ensemble's blend by weight [N, Q] → [Q], as the fused kernels (`dense`, `ensembleDot`).
 */
export function ensembleMlpTail(a: tf.Tensor2D, layers: readonly MlpLayer[], out: MlpLayer, weight: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => {
    if (!layers.length) return ensembleDot(a, out.w, out.b, weight);
    let act = a;
    for (const l of layers.slice(0, -1)) act = dense(act, l.w, l.b, 'relu');
    // the last hidden layer a plain product: its bias and ReLU are applied as the output layer reads it
    const last = layers[layers.length - 1];
    return ensembleDot(dense(act, last.w), out.w, out.b, weight, last.b);
  });
}

/** The composition (the unfused kernels, and their gradients): the reference the tests compare with. */
export function ensembleMlpComposed(
  table: tf.Tensor2D, index: tf.Tensor2D, x: tf.Tensor3D, wx: tf.Tensor2D, layers: readonly MlpLayer[], out: MlpLayer, weight: tf.Tensor2D,
): tf.Tensor1D {
  return tf.tidy(() => {
    const [N, Q, K] = x.shape;
    const a = gatherAffineRelu(table, tf.reshape(index, [N * Q]) as tf.Tensor1D, tf.reshape(x, [N * Q, K]) as tf.Tensor2D, wx);
    return ensembleMlpTail(a, layers, out, weight);
  });
}

function check(table: tf.Tensor2D, index: tf.Tensor2D, x: tf.Tensor3D, wx: tf.Tensor2D, layers: readonly MlpLayer[], out: MlpLayer, weight: tf.Tensor2D): void {
  const [N, Q, K] = x.shape;
  const widths = [table.shape[1], ...layers.map((l) => l.w.shape[1])];
  const ok = table.rank === 2 && index.rank === 2 && index.dtype === 'int32' && index.shape[0] === N && index.shape[1] === Q && x.rank === 3
    && wx.rank === 2 && wx.shape[0] === K && wx.shape[1] === widths[0] && weight.rank === 2 && weight.shape[0] === N && weight.shape[1] === Q
    && layers.every((l, i) => l.w.rank === 2 && l.w.shape[0] === widths[i] && l.b.rank === 1 && l.b.shape[0] === l.w.shape[1])
    && out.w.rank === 2 && out.w.shape[0] === widths[widths.length - 1] && out.w.shape[1] === 1 && out.b.rank === 1 && out.b.shape[0] === 1;
  if (!ok) {
    throw new Error(`ensembleMlp: needs table [R, H₀], int32 index [N, Q], x [N, Q, K], wx [K, H₀], layers w [Hᵢ, Hᵢ₊₁] b [Hᵢ₊₁], out w [H, 1] b [1], `
      + `weight [N, Q]; got table ${JSON.stringify(table.shape)}, ${index.dtype} index ${JSON.stringify(index.shape)}, x ${JSON.stringify(x.shape)}, `
      + `wx ${JSON.stringify(wx.shape)}, layers ${JSON.stringify(layers.map((l) => [l.w.shape, l.b.shape]))}, out ${JSON.stringify([out.w.shape, out.b.shape])}, `
      + `weight ${JSON.stringify(weight.shape)}`);
  }
}

/** Whether the onnxruntime graphs can run these inputs: a dense runtime, a host backend, float32 (the graphs read the index as float, exact below 2²⁴ rows). */
function graphsRun(table: tf.Tensor2D, x: tf.Tensor3D, wx: tf.Tensor2D, layers: readonly MlpLayer[], out: MlpLayer, weight: tf.Tensor2D): boolean {
  const floats = [table, x, wx, weight, out.w, out.b, ...layers.flatMap((l) => [l.w, l.b])];
  return !!denseRuntime() && (HOST_BACKENDS as readonly string[]).includes(tf.getBackend()) && floats.every((t) => t.dtype === 'float32') && table.shape[0] < 2 ** 24;
}

/**
 * Whether gradients run as tiled graphs: on one onnxruntime thread. On more, the graph's ~30 small ops a tile each
 * wake the pool (its threads do not spin): the gradient of a [4, 32768] query took 60–63 ms on two threads against
 * 40 on one, where the composition's big products run 47–58 ms on two.
 */
const tiledGradients = (): boolean => denseRuntime()!.threads === 1;

/** The graph kernels' inputs by name; `params` the hidden layers' w0, b0, w1, …. */
function graphInputs(
  table: tf.Tensor, indexF: tf.Tensor, x: tf.Tensor, wx: tf.Tensor, params: tf.Tensor[], wOut: tf.Tensor, bOut: tf.Tensor, weight: tf.Tensor,
): tf.NamedTensorMap {
  const inputs: tf.NamedTensorMap = { table, index: indexF, x, wx, wOut, bOut, weight };
  for (let i = 0; i < params.length / 2; i++) Object.assign(inputs, { [`w${i}`]: params[2 * i], [`b${i}`]: params[2 * i + 1] });
  return inputs;
}

/** s [Q] for table [R, H₀], int32 index [N, Q], x [N, Q, K], wx [K, H₀], hidden `layers`, the output layer `out`, weight [N, Q]. */
export function ensembleMlp(
  table: tf.Tensor2D, index: tf.Tensor2D, x: tf.Tensor3D, wx: tf.Tensor2D, layers: readonly MlpLayer[], out: MlpLayer, weight: tf.Tensor2D,
): tf.Tensor1D {
  check(table, index, x, wx, layers, out, weight);
  if (!graphsRun(table, x, wx, layers, out, weight)) return ensembleMlpComposed(table, index, x, wx, layers, out, weight);
  registerEnsembleMlpKernel();
  const params = layers.flatMap((l) => [l.w, l.b]);
  const named = (t: tf.Tensor[], indexF: tf.Tensor): tf.NamedTensorMap => {
    const [tb, xx, wxx, wOut, bOut, wt, ...ps] = t;
    return graphInputs(tb, indexF, xx, wxx, ps, wOut, bOut, wt);
  };
  const run = (t: tf.Tensor[]) => tf.tidy(() => tf.engine().runKernel(ENSEMBLE_MLP, named(t, tf.cast(index, 'float32')), { layers: layers.length }) as tf.Tensor1D);
  const inputs = [table, x, wx, out.w, out.b, weight, ...params];
  if (!recordingGradients()) return run(inputs);
  // under a tape on one thread: the same forward, and a gradient that is one graph too (it recomputes each tile's
  // activations, so the tape keeps none of them); on more threads the composition
  if (!tiledGradients()) return ensembleMlpComposed(table, index, x, wx, layers, out, weight);
  registerEnsembleMlpGradKernel();
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const t = args as tf.Tensor[];
    save([...t, index]);
    return {
      value: run(t),
      gradFunc: (ds: tf.Tensor, saved: tf.Tensor[]) => {
        const indexF = tf.cast(saved[saved.length - 1], 'float32');
        const grads = tf.engine().runKernel(ENSEMBLE_MLP_GRAD, { ...named(saved.slice(0, -1), indexF), ds }, { layers: layers.length }) as tf.Tensor[];
        indexF.dispose();
        // the kernel's order: dtable, dx, dwx, dw0, db0, …, dwOut, dbOut, dweight
        const [dTable, dX, dWx, ...rest] = grads;
        const dWeight = rest.pop()!;
        const [dWOut, dBOut] = rest.splice(-2, 2);
        return [dTable, dX, dWx, dWOut, dBOut, dWeight, ...rest];
      },
    };
  })(...inputs) as tf.Tensor1D;
}

/**
 * Σ_q scale_q · BCE(σ(s_q), target_q) from logits s [Q]: target·softplus(−s) + (1 − target)·softplus(s), weighted
 * per query (a mask over a count, say), summed.
 */
export function bceWithLogitsSum(s: tf.Tensor1D, target: tf.Tensor1D, scale: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const nll = tf.add(tf.mul(target, tf.softplus(tf.neg(s))), tf.mul(tf.sub(1, target), tf.softplus(s)));
    return tf.sum(tf.mul(nll, scale)) as tf.Scalar;
  });
}

/** `ensembleMlpBce` composed: `bceWithLogitsSum` of `ensembleMlpComposed` (the reference the tests compare with). */
export function ensembleMlpBceComposed(
  table: tf.Tensor2D, index: tf.Tensor2D, x: tf.Tensor3D, wx: tf.Tensor2D, layers: readonly MlpLayer[], out: MlpLayer, weight: tf.Tensor2D,
  target: tf.Tensor1D, scale: tf.Tensor1D,
): tf.Scalar {
  return tf.tidy(() => bceWithLogitsSum(ensembleMlpComposed(table, index, x, wx, layers, out, weight), target, scale));
}

/**
 * Σ_q scale_q · BCE(σ(s_q), target_q) for the ensemble MLP's logits s [Q] (`ensembleMlp`'s inputs, then target and
 * scale [Q]): a calibration loss in one op. Differentiable in table, wx, the layers and out; index, x, weight,
 * target and scale are data (no gradient reaches them). Under a gradient tape on one onnxruntime thread it is one
 * graph that computes the loss's value and all its gradients in one pass over the query tiles (the gradient is
 * the saved result times the incoming scalar), so the MLP's forward runs once, not once for the value and again in
 * the gradient; elsewhere it is the composition.
 */
export function ensembleMlpBce(
  table: tf.Tensor2D, index: tf.Tensor2D, x: tf.Tensor3D, wx: tf.Tensor2D, layers: readonly MlpLayer[], out: MlpLayer, weight: tf.Tensor2D,
  target: tf.Tensor1D, scale: tf.Tensor1D,
): tf.Scalar {
  check(table, index, x, wx, layers, out, weight);
  const Q = x.shape[1];
  if (target.rank !== 1 || target.shape[0] !== Q || scale.rank !== 1 || scale.shape[0] !== Q || target.dtype !== 'float32' || scale.dtype !== 'float32') {
    throw new Error(`ensembleMlpBce: needs float32 target and scale [${Q}] (one per query), got ${target.dtype} target ${JSON.stringify(target.shape)}, `
      + `${scale.dtype} scale ${JSON.stringify(scale.shape)}`);
  }
  const fused = recordingGradients() && graphsRun(table, x, wx, layers, out, weight) && tiledGradients();
  // elsewhere the logits by `ensembleMlp` (its forward graph where no gradient is recorded)
  if (!fused) return tf.tidy(() => bceWithLogitsSum(ensembleMlp(table, index, x, wx, layers, out, weight), target, scale));
  registerEnsembleMlpBceKernel();
  const differentiable = [table, wx, out.w, out.b, ...layers.flatMap((l) => [l.w, l.b])];
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [tb, wxx, wOut, bOut, ...params] = args as tf.Tensor[];
    const outputs = tf.tidy(() => tf.engine().runKernel(ENSEMBLE_MLP_BCE, {
      ...graphInputs(tb, tf.cast(index, 'float32'), x, wxx, params, wOut, bOut, weight), target, scale,
    }, { layers: layers.length }) as tf.Tensor[]);
    // the kernel's order: dtable, dwx, dw0, db0, …, dwOut, dbOut, then s
    const s = outputs.pop() as tf.Tensor1D;
    const value = bceWithLogitsSum(s, target, scale);
    s.dispose();
    save(outputs);
    tf.dispose(outputs);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [dTable, dWx, ...rest] = saved.map((g) => tf.mul(g, dy));
        const [dWOut, dBOut] = rest.splice(-2, 2);
        return [dTable, dWx, dWOut, dBOut, ...rest];
      },
    };
  })(...differentiable) as tf.Scalar;
}
