/**
 * DESIGN §5.1, the INR rectifier's maths in one place: a LIIF-style local implicit function over the
 * teacher's latent grid, queried at continuous coordinates, giving a rectification logit s(x) and r = σ(s).
 *
 *   F  = [proj₁ₓ₁(teacher embedding) ‖ teacher log-probabilities]          (§5.1.1, at the head's stride)
 *   for each of the four latent cells v nearest to x (shifts ±1/h, ±1/w, clamped; §5.1.2):
 *     s_v = MLP([unfold₃ₓ₃(F)(v), (x − v)·(h, w), cell·(h, w)])           (§5.1.3)
 *   s(x) = Σ_v w_v s_v, w_v = area of the rectangle opposite v, normalised (local ensemble)
 *   r(x) = σ(s(x))
 *
 * §5.1.4: the first MLP layer is linear in unfold(F), so that part is one 3×3 convolution of F (zero
 * padding, as LIIF's `F.unfold(padding=1)`) computed once per grid; a query gathers it at its cell and adds
 * the coordinate and cell terms. Queries run in chunks, so memory is bounded at any query resolution.
 *
 * Coordinates are (row, column) in [−1, 1], pixel centres at −1 + (2i + 1)/n, as LIIF's `make_coord`.
 */
import * as tf from '@tensorflow/tfjs';

export interface InrShape {
  /** Latent channels: projection channels + classes. */
  latentChannels: number;
  /** MLP hidden widths (≥ 1 layer). */
  hidden: number[];
  unfold: boolean;
  localEnsemble: boolean;
  cellDecode: boolean;
}

/** The trainable tensors ψ (projection + MLP), first layer split into its feature, coordinate and cell parts. */
export interface InrParams {
  /** 1×1 projection of the embedding: [1, 1, E, Cr] and [Cr]. */
  projW: tf.Tensor4D;
  projB: tf.Tensor1D;
  /** First layer, feature part as a convolution filter: [3, 3, C, H₁] (or [1, 1, C, H₁] without unfolding). */
  w1Feat: tf.Tensor4D;
  /** First layer, coordinate part [2, H₁], cell part [2, H₁] (used with cell decoding), bias [H₁]. */
  w1Coord: tf.Tensor2D;
  w1Cell: tf.Tensor2D;
  b1: tf.Tensor1D;
  /** The remaining layers, the last with one output: weights [Hᵢ, Hᵢ₊₁] and biases. */
  layers: { w: tf.Tensor2D; b: tf.Tensor1D }[];
}

/** §5.1.1: the latent grid F [B, h, w, Cr + K] from the teacher's embedding and log-probabilities. */
export function latentGrid(p: InrParams, embedding: tf.Tensor4D, logProbs: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const proj = tf.add(tf.conv2d(embedding, p.projW, 1, 'valid'), p.projB) as tf.Tensor4D;
    return tf.concat([proj, logProbs], 3) as tf.Tensor4D;
  });
}

/** §5.1.4: the feature part of the first MLP layer at every latent cell, [B, h, w, H₁]. */
export function firstLayerGrid(p: InrParams, latent: tf.Tensor4D): tf.Tensor4D {
  return tf.conv2d(latent, p.w1Feat, 1, 'same');
}

/** Pixel-centre coordinates of an H×W grid, [H·W, 2] (row, column). */
export function gridCoords(H: number, W: number): Float32Array {
  const out = new Float32Array(H * W * 2);
  for (let i = 0; i < H; i++) {
    for (let j = 0; j < W; j++) {
      out[(i * W + j) * 2] = -1 + (2 * i + 1) / H;
      out[(i * W + j) * 2 + 1] = -1 + (2 * j + 1) / W;
    }
  }
  return out;
}

/** Index of the latent cell containing each coordinate along one axis of n cells (LIIF's nearest sampling). */
function cellIndex(c: tf.Tensor, n: number): tf.Tensor {
  return tf.clipByValue(tf.floor(tf.mul(tf.add(c, 1), n / 2)), 0, n - 1);
}

/**
 * Along one axis of n cells: for each shift (−1, +1, or 0 without the ensemble) the neighbour cell's index
 * and the query's offset from its centre in cell units (LIIF's shift of ±1/n + ε, clamped inside [−1, 1]).
 */
function axisNeighbours(c: tf.Tensor, n: number, shifts: number[]): { index: tf.Tensor; rel: tf.Tensor }[] {
  const eps = shifts.length > 1 ? 1e-6 : 0;
  return shifts.map((v) => {
    const index = cellIndex(tf.clipByValue(tf.add(c, v / n + eps), -1 + 1e-6, 1 - 1e-6), n);
    const centre = tf.sub(tf.div(tf.add(tf.mul(index, 2), 1), n), 1);
    return { index, rel: tf.mul(tf.sub(c, centre), n) };
  });
}

/**
 * The ensemble weight of each neighbour along one axis: the distance to the other neighbour, normalised.
 * Their products over the two axes are LIIF's "area of the opposite rectangle" weights; unlike LIIF's
 * 1e-9 fallback, a border query whose two neighbours are the same clamped cell splits that axis evenly, so
 * cell centres on the border reproduce the grid too.
 */
function axisWeights(rel: tf.Tensor[]): tf.Tensor[] {
  if (rel.length === 1) return [tf.onesLike(rel[0])];
  const [a, b] = rel.map((r) => tf.abs(r));
  const total = tf.add(a, b);
  const degenerate = tf.lessEqual(total, 1e-9);
  const wa = tf.where(degenerate, tf.fill(a.shape, 0.5), tf.div(b, tf.maximum(total, 1e-9)));
  return [wa, tf.sub(1, wa)];
}

/**
 * Where a set of queries reads the latent grid (§5.1.2): for each ensemble neighbour n, the flat cell index
 * into [B·h·w] (batch offset included), the query's offset from that cell's centre in cell units, and its
 * ensemble weight. It depends only on the coordinates and the grid size, so grid queries compute it once.
 */
export interface QueryGeometry {
  /** int32 [N, B·Q] cell indices into the flattened grid. */
  index: tf.Tensor2D;
  /** [N, B·Q, 2] offsets (row, column) in cell units. */
  rel: tf.Tensor3D;
  /** [N, B·Q] ensemble weights (sum to 1 over N). */
  weight: tf.Tensor2D;
}

export function queryGeometry(shape: InrShape, coords: tf.Tensor3D, h: number, w: number): QueryGeometry {
  return tf.tidy(() => {
    const [B, Q] = coords.shape;
    const batchBase = tf.reshape(tf.range(0, B * h * w, h * w, 'int32'), [B, 1]);
    const shifts = shape.localEnsemble ? [-1, 1] : [0];
    const [cy, cx] = tf.split(coords, 2, 2).map((t) => tf.reshape(t, [B, Q]));
    const ys = axisNeighbours(cy, h, shifts);
    const xs = axisNeighbours(cx, w, shifts);
    const wy = axisWeights(ys.map((n) => n.rel));
    const wx = axisWeights(xs.map((n) => n.rel));
    const index: tf.Tensor[] = [];
    const rel: tf.Tensor[] = [];
    const weight: tf.Tensor[] = [];
    ys.forEach((ny, a) => xs.forEach((nx, b) => {
      index.push(tf.reshape(tf.add(tf.add(tf.mul(ny.index, w), nx.index).toInt(), batchBase), [B * Q]));
      rel.push(tf.reshape(tf.stack([ny.rel, nx.rel], 2), [B * Q, 2]));
      weight.push(tf.reshape(tf.mul(wy[a], wx[b]), [B * Q]));
    }));
    return { index: tf.stack(index) as tf.Tensor2D, rel: tf.stack(rel) as tf.Tensor3D, weight: tf.stack(weight) as tf.Tensor2D };
  });
}

/**
 * §5.1.3 on a geometry: all neighbours' MLP inputs as one batch, [N·B·Q, H₁] = gathered grid term +
 * coordinate term + cell term + bias, through the MLP, blended by the ensemble weights → s [B·Q].
 * `cell` is per query [B·Q, 2], or one pair for all (a grid): then it and the bias are added to the grid
 * before the gather, once per latent cell instead of once per query and neighbour.
 */
export function mlpLogits(
  p: InrParams, shape: InrShape, G: tf.Tensor4D, geo: QueryGeometry, cell: tf.Tensor2D | readonly [number, number],
): tf.Tensor1D {
  return tf.tidy(() => {
    const [B, h, w, H1] = G.shape;
    const [N, BQ] = geo.index.shape;
    const cellTerm = (c: tf.Tensor2D) => tf.matMul(tf.mul(c, tf.tensor1d([h, w])), p.w1Cell);
    const perQueryCell = cell instanceof tf.Tensor;
    let gridTerm = tf.add(tf.reshape(G, [B * h * w, H1]), p.b1) as tf.Tensor2D;
    if (shape.cellDecode && !perQueryCell) gridTerm = tf.add(gridTerm, cellTerm(tf.tensor2d([cell[0], cell[1]], [1, 2])));
    let z = tf.add(tf.gather(gridTerm, tf.reshape(geo.index, [N * BQ])), tf.matMul(tf.reshape(geo.rel, [N * BQ, 2]), p.w1Coord));
    if (shape.cellDecode && perQueryCell) {
      // the same cell term for every neighbour of a query
      z = tf.reshape(tf.add(tf.reshape(z, [N, BQ, H1]), cellTerm(cell)), [N * BQ, H1]);
    }
    let act = tf.relu(z) as tf.Tensor2D;
    // fused product + bias (+ ReLU): one pass over the activations instead of three
    p.layers.forEach((l, i) => {
      act = tf.fused.matMul({ a: act, b: l.w, bias: l.b, activation: i < p.layers.length - 1 ? 'relu' : 'linear' }) as tf.Tensor2D;
    });
    return tf.sum(tf.mul(tf.reshape(act, [N, BQ]), geo.weight), 0) as tf.Tensor1D;
  });
}

/** A query cell size: per query [B, Q, 2], or one (2/H_q, 2/W_q) pair for all queries. */
export type QueryCell = tf.Tensor3D | readonly [number, number];

/**
 * §5.1.2–3: rectification logits s [B, Q] at coordinates [B, Q, 2] with query cell size `cell` (the
 * pixel size of the query grid, 2/H_q and 2/W_q), from the first-layer grid G [B, h, w, H₁].
 */
export function queryLogits(p: InrParams, shape: InrShape, G: tf.Tensor4D, coords: tf.Tensor3D, cell: QueryCell): tf.Tensor2D {
  return tf.tidy(() => {
    const [B, Q] = coords.shape;
    const geo = queryGeometry(shape, coords, G.shape[1], G.shape[2]);
    const c = cell instanceof tf.Tensor ? tf.reshape(cell, [B * Q, 2]) as tf.Tensor2D : cell;
    return tf.reshape(mlpLogits(p, shape, G, geo, c), [B, Q]) as tf.Tensor2D;
  });
}

/**
 * s at any coordinates, chunked along the queries so that at most `chunk` of them are in flight
 * (the result is the same for any chunk size). Outside a gradient tape each chunk's intermediates are freed.
 */
export function queryChunked(
  p: InrParams, shape: InrShape, G: tf.Tensor4D, coords: tf.Tensor3D, cell: QueryCell, chunk: number,
): tf.Tensor2D {
  const Q = coords.shape[1];
  if (Q <= chunk) return queryLogits(p, shape, G, coords, cell);
  const parts: tf.Tensor2D[] = [];
  for (let start = 0; start < Q; start += chunk) {
    const n = Math.min(chunk, Q - start);
    parts.push(tf.tidy(() => queryLogits(p, shape, G, tf.slice(coords, [0, start, 0], [-1, n, -1]),
      cell instanceof tf.Tensor ? tf.slice(cell, [0, start, 0], [-1, n, -1]) : cell)));
  }
  const out = tf.concat(parts, 1) as tf.Tensor2D;
  tf.dispose(parts);
  return out;
}
