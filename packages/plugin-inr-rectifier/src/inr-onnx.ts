/**
 * The trained rectifier as a standalone ONNX model, so that UDA pipelines outside Node can call it.
 * Inputs: `embedding` [N, E, h, w] and `log_probs` [N, K, h, w] (the teacher head's embedding and
 * log-softmax of its logits, from which the latent grid is built in the graph), `coords` [N, Q, 2] (row,
 * column in [−1, 1]) and `cell` [N, Q, 2] (the query pixel size); output `r` [N, Q]. The same computation
 * as `inr-query.ts` (DESIGN §5.1), node by node.
 */
import { attr, OnnxGraph, writeAtomic } from '@ir2f/core';
import * as tf from '@tensorflow/tfjs';
import type { InrRectifier } from './inr-rectifier.js';

export function exportRectifierOnnx(rect: InrRectifier, opts: { opset?: number } = {}): Uint8Array {
  const g = new OnnxGraph();
  const p = Object.fromEntries(rect.namedParams());
  const s = rect.shape;
  const o = rect.options;
  const { embeddingChannels: E, numClasses: K } = rect.dims;
  const embedding = g.input('embedding', ['N', E, 'h', 'w']);
  const logProbs = g.input('log_probs', ['N', K, 'h', 'w']);
  const coords = g.input('coords', ['N', 'Q', 2]);
  const cell = g.input('cell', ['N', 'Q', 2]);
  const f = (name: string, v: number) => g.floats(name, Float32Array.of(v), []);
  const fromTfFilter = (t: tf.Tensor) => tf.tidy(() => tf.transpose(t, [3, 2, 0, 1]));

  // latent grid and the first layer's feature part as one convolution (§5.1.1, §5.1.4)
  const projW = fromTfFilter(p['proj.weight']);
  const proj = g.node('Conv', [embedding, g.tensor('proj.weight', projW), g.tensor('proj.bias', p['proj.bias'])], {}, 'proj');
  const latent = g.node('Concat', [proj, logProbs], { axis: attr.int(1) }, 'latent');
  const k = o.unfold ? 3 : 1;
  const w1 = fromTfFilter(p['mlp.0.weight_feat']);
  const G = g.node('Conv', [latent, g.tensor('mlp.0.weight_feat', w1)], { pads: attr.ints([k >> 1, k >> 1, k >> 1, k >> 1]) }, 'first_layer_grid');
  tf.dispose([projW, w1]);
  const H1 = s.hidden[0];
  const flatG = g.node('Reshape', [g.node('Transpose', [G], { perm: attr.ints([0, 2, 3, 1]) }, 'g_nhwc'), g.int64s('g_flat_shape', [-1, H1])], {}, 'g_flat');
  const shapeG = g.node('Shape', [G], {}, 'g_shape');
  const dim = (i: number, name: string) => g.node('Cast', [g.node('Slice', [shapeG, g.int64s(`${name}_s`, [i]), g.int64s(`${name}_e`, [i + 1])], {}, `${name}_i`)], { to: attr.int(1) }, name);
  const [nF, hF, wF] = [dim(0, 'n_f'), dim(2, 'h_f'), dim(3, 'w_f')];

  const axis = (i: number, n: string, name: string) => {
    const c = g.node('Slice', [coords, g.int64s(`${name}_s`, [i]), g.int64s(`${name}_e`, [i + 1]), g.int64s(`${name}_ax`, [2])], {}, `${name}_c`);
    const shifts = o.localEnsemble ? [-1, 1] : [0];
    const eps = o.localEnsemble ? 1e-6 : 0;
    const nb = shifts.map((v, j) => {
      const shifted = g.node('Clip', [g.node('Add', [g.node('Add', [c, g.node('Div', [f(`${name}_v${j}`, v), n], {}, `${name}_shift${j}`)], {}, `${name}_sh${j}`), f(`${name}_eps${j}`, eps)], {}, `${name}_she${j}`),
        f(`${name}_lo${j}`, -1 + 1e-6), f(`${name}_hi${j}`, 1 - 1e-6)], {}, `${name}_clip${j}`);
      const raw = g.node('Floor', [g.node('Div', [g.node('Mul', [g.node('Add', [shifted, f(`${name}_one${j}`, 1)], {}, `${name}_p1${j}`), n], {}, `${name}_pn${j}`), f(`${name}_two${j}`, 2)], {}, `${name}_half${j}`)], {}, `${name}_floor${j}`);
      const index = g.node('Min', [g.node('Max', [raw, f(`${name}_zero${j}`, 0)], {}, `${name}_max${j}`), g.node('Sub', [n, f(`${name}_one_b${j}`, 1)], {}, `${name}_nm1${j}`)], {}, `${name}_index${j}`);
      const centre = g.node('Sub', [g.node('Div', [g.node('Add', [g.node('Mul', [index, f(`${name}_two_b${j}`, 2)], {}, `${name}_i2${j}`), f(`${name}_one_c${j}`, 1)], {}, `${name}_i21${j}`), n], {}, `${name}_cdiv${j}`), f(`${name}_one_d${j}`, 1)], {}, `${name}_centre${j}`);
      const rel = g.node('Mul', [g.node('Sub', [c, centre], {}, `${name}_d${j}`), n], {}, `${name}_rel${j}`);
      return { index, rel };
    });
    if (nb.length === 1) return nb.map((x) => ({ ...x, weight: f(`${name}_w_one`, 1) }));
    const [a, b] = nb.map((x, j) => g.node('Abs', [x.rel], {}, `${name}_abs${j}`));
    const total = g.node('Add', [a, b], {}, `${name}_total`);
    const wa = g.node('Where', [g.node('LessOrEqual', [total, f(`${name}_tiny`, 1e-9)], {}, `${name}_degenerate`), f(`${name}_even`, 0.5),
      g.node('Div', [b, g.node('Max', [total, f(`${name}_tiny_b`, 1e-9)], {}, `${name}_tot_safe`)], {}, `${name}_wa_raw`)], {}, `${name}_wa`);
    const wb = g.node('Sub', [f(`${name}_one_w`, 1), wa], {}, `${name}_wb`);
    return [{ ...nb[0], weight: wa }, { ...nb[1], weight: wb }];
  };
  const ys = axis(0, hF, 'y');
  const xs = axis(1, wF, 'x');

  // batch offsets [N, 1, 1]: b·h
  const bIdx = g.node('Reshape', [g.node('Range', [f('r0', 0), nF, f('r1', 1)], {}, 'b_range'), g.int64s('b_shape', [-1, 1, 1])], {}, 'b_idx');
  const bh = g.node('Mul', [bIdx, hF], {}, 'b_h');
  const hwScale = g.node('Concat', [hF, wF], { axis: attr.int(0) }, 'hw');
  const cellTerm = o.cellDecode
    ? g.node('MatMul', [g.node('Reshape', [g.node('Mul', [cell, hwScale], {}, 'cell_hw'), g.int64s('cell_shape', [-1, 2])], {}, 'cell_flat'), g.tensor('mlp.0.weight_cell', p['mlp.0.weight_cell'])], {}, 'cell_term')
    : undefined;
  const w1Coord = g.tensor('mlp.0.weight_coord', p['mlp.0.weight_coord']);
  const b1 = g.tensor('mlp.0.bias', p['mlp.0.bias']);
  const layerInits = s.hidden.map((_, i) => ({ w: g.tensor(`mlp.${i + 1}.weight`, p[`mlp.${i + 1}.weight`]), b: g.tensor(`mlp.${i + 1}.bias`, p[`mlp.${i + 1}.bias`]) }));
  const qShape = g.node('Shape', [coords], {}, 'q_shape');
  const nq1 = g.node('Concat', [g.node('Slice', [qShape, g.int64s('nq_s', [0]), g.int64s('nq_e', [2])], {}, 'nq'), g.int64s('one_dim', [1])], { axis: attr.int(0) }, 'nq1');

  const terms: string[] = [];
  ys.forEach((ny, a) => xs.forEach((nx, b) => {
    const tag = `${a}${b}`;
    const flatIdx = g.node('Add', [g.node('Mul', [g.node('Add', [bh, ny.index], {}, `row${tag}`), wF], {}, `roww${tag}`), nx.index], {}, `idx_f${tag}`);
    const idx = g.node('Reshape', [g.node('Cast', [flatIdx], { to: attr.int(7) }, `idx_i${tag}`), g.int64s(`idx_shape${tag}`, [-1])], {}, `idx${tag}`);
    const rel = g.node('Reshape', [g.node('Concat', [ny.rel, nx.rel], { axis: attr.int(2) }, `rel${tag}`), g.int64s(`rel_shape${tag}`, [-1, 2])], {}, `rel_flat${tag}`);
    let z = g.node('Add', [g.node('Gather', [flatG, idx], { axis: attr.int(0) }, `gathered${tag}`), g.node('MatMul', [rel, w1Coord], {}, `coord_term${tag}`)], {}, `z${tag}`);
    if (cellTerm) z = g.node('Add', [z, cellTerm], {}, `zc${tag}`);
    let act = g.node('Relu', [g.node('Add', [z, b1], {}, `z1${tag}`)], {}, `a1${tag}`);
    layerInits.forEach((l, i) => {
      const y = g.node('Add', [g.node('MatMul', [act, l.w], {}, `mm${i}_${tag}`), l.b], {}, `y${i}_${tag}`);
      act = i < layerInits.length - 1 ? g.node('Relu', [y], {}, `a${i + 2}_${tag}`) : y;
    });
    const s3 = g.node('Reshape', [act, nq1], {}, `s${tag}`);
    terms.push(g.node('Mul', [s3, g.node('Mul', [ny.weight, nx.weight], {}, `w${tag}`)], {}, `ws${tag}`));
  }));
  const sum = terms.length === 1 ? terms[0] : g.node('Sum', terms, {}, 's_sum');
  const r = g.node('Sigmoid', [g.node('Squeeze', [sum, g.int64s('sq_axes', [2])], {}, 's_logit')], {}, 'r_out');
  g.nodeN('Identity', [r], {}, 'r_identity', 1);
  g.nodes[g.nodes.length - 1].output = ['r'];
  g.output('r', ['N', 'Q']);
  return g.toModel({ opset: opts.opset ?? 17, graphName: 'ir2f-inr-rectifier' });
}

export async function writeRectifierOnnx(rect: InrRectifier, file: string, opts: { opset?: number } = {}): Promise<void> {
  await writeAtomic(file, exportRectifierOnnx(rect, opts));
}
