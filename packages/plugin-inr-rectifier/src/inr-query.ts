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
import { bceWithLogitsSum, ensembleMlp, ensembleMlpBce, ensembleMlpTail, filledTensors } from '@ir2f/runtime';

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

/**
 * Query coordinates held on the host: [B, Q, 2] (row, column) values. `grid` marks the pixel centres of an
 * H×W grid (`gridCoords`, the same for every image), whose geometry is computed per row and per column.
 */
export interface HostCoords {
  values: Float32Array;
  B: number;
  Q: number;
  grid?: { H: number; W: number };
}

/** The pixel centres of an H×W grid for each of B images, [B, H·W, 2] on the host, marked as a grid. */
export function batchGridCoords(B: number, H: number, W: number): HostCoords {
  const one = gridCoords(H, W);
  const values = new Float32Array(B * one.length);
  for (let b = 0; b < B; b++) values.set(one, b * one.length);
  return { values, B, Q: H * W, grid: { H, W } };
}

// float32 arithmetic, step by step as tensor kernels do it, so that every backend and the ONNX graph pick
// the same neighbour cell for a coordinate on a cell border
const f = Math.fround;
const EPS_LOW = f(-1 + 1e-6);
const EPS_HIGH = f(1 - 1e-6);
const TINY = f(1e-9);

/**
 * The ensemble weight of the first of two neighbours along one axis: the distance to the other one,
 * normalised. Products over the two axes are LIIF's "area of the opposite rectangle" weights; unlike LIIF's
 * 1e-9 fallback, a border query whose two neighbours are the same clamped cell splits that axis evenly, so
 * cell centres on the border reproduce the grid too.
 */
function firstWeight(rel0: number, rel1: number): number {
  const total = f(Math.abs(rel0) + Math.abs(rel1));
  return total <= TINY ? 0.5 : f(Math.abs(rel1) / Math.max(total, TINY));
}

/** One axis's neighbours for a list of coordinates: per coordinate and shift, [coordinate · S + shift]. */
interface AxisTable {
  index: Int32Array;
  rel: Float32Array;
  weight: Float32Array;
}

/**
 * Along one axis of n cells, for coordinates `count` values of `values` apart by `stride` from `offset`: each
 * shift's neighbour cell (LIIF's nearest cell after a shift of ±1/n + ε, clamped inside [−1, 1]), the
 * coordinate's offset from its centre in cell units, and the axis's share of the ensemble weight.
 */
function axisTable(values: Float32Array, offset: number, stride: number, count: number, n: number, ensemble: boolean): AxisTable {
  const S = ensemble ? 2 : 1;
  const eps = ensemble ? 1e-6 : 0;
  const index = new Int32Array(count * S);
  const rel = new Float32Array(count * S);
  const weight = new Float32Array(count * S);
  const halfN = f(n / 2);
  for (let p = 0; p < count; p++) {
    const c = values[offset + p * stride];
    for (let s = 0; s < S; s++) {
      const shift = ensemble ? (s === 0 ? -1 : 1) : 0;
      const moved = Math.min(EPS_HIGH, Math.max(EPS_LOW, f(c + f(shift / n + eps))));
      const i = Math.min(n - 1, Math.max(0, Math.floor(f(f(moved + 1) * halfN))));
      const centre = f(f(f(i * 2 + 1) / n) - 1);
      index[p * S + s] = i;
      rel[p * S + s] = f(f(c - centre) * n);
    }
    if (ensemble) {
      const w0 = firstWeight(rel[p * 2], rel[p * 2 + 1]);
      weight[p * 2] = w0;
      weight[p * 2 + 1] = f(1 - w0);
    } else {
      weight[p] = 1;
    }
  }
  return { index, rel, weight };
}

/**
 * §5.1.2 for queries [start, start + n) of every image (default all) on a latent grid of h×w cells, computed
 * on the host: it is integer and per-coordinate scalar work, which as tensor kernels was some sixty small
 * operations per chunk. Each axis is tabulated once per coordinate (once per row and column of a grid), and
 * a query's neighbours are the products of its row's and its column's.
 */
export function queryGeometry(
  shape: InrShape, coords: tf.Tensor3D | HostCoords, h: number, w: number, start = 0, count?: number,
): QueryGeometry {
  const { values, B, Q, grid } = toHostCoords(coords);
  const n = count ?? Q - start;
  const ensemble = shape.localEnsemble;
  const S = ensemble ? 2 : 1;
  const N = S * S;
  const BQ = B * n;
  // written in place into the new tensors (on wasm its heap: no JS buffers of a chunk's size to fault in)
  const [index, rel, weight] = filledTensors([
    { shape: [N, BQ], dtype: 'int32' }, { shape: [N, BQ, 2], dtype: 'float32' }, { shape: [N, BQ], dtype: 'float32' },
  ], ([indexArr, relArr, weightArr]) => fillGeometry(
    values, B, Q, grid, h, w, start, n, S, ensemble, indexArr as Int32Array, relArr as Float32Array, weightArr as Float32Array,
  ));
  return { index: index as tf.Tensor2D, rel: rel as tf.Tensor3D, weight: weight as tf.Tensor2D };
}

/** `queryGeometry`'s values, written into index [N, B·n], rel [N, B·n, 2] and weight [N, B·n]. */
function fillGeometry(
  values: Float32Array, B: number, Q: number, grid: HostCoords['grid'], h: number, w: number, start: number, n: number, S: number,
  ensemble: boolean, index: Int32Array, rel: Float32Array, weight: Float32Array,
): void {
  const BQ = B * n;
  if (grid) {
    // one table over the grid's rows' coordinates and one over its columns'
    const tables: [AxisTable, AxisTable] = [axisTable(values, 0, 2 * grid.W, grid.H, h, ensemble), axisTable(values, 1, 2, grid.W, w, ensemble)];
    gridGeometry(tables, grid.W, S, B, h, w, start, n, index, rel, weight);
  } else {
    // one table per image and axis over this range's queries
    for (let b = 0; b < B; b++) {
      const ys = axisTable(values, (b * Q + start) * 2, 2, n, h, ensemble);
      const xs = axisTable(values, (b * Q + start) * 2 + 1, 2, n, w, ensemble);
      for (let q = 0; q < n; q++) {
        const i = b * n + q;
        for (let a = 0; a < S; a++) {
          for (let c = 0; c < S; c++) {
            const o = (a * S + c) * BQ + i;
            index[o] = b * h * w + ys.index[q * S + a] * w + xs.index[q * S + c];
            rel[o * 2] = ys.rel[q * S + a];
            rel[o * 2 + 1] = xs.rel[q * S + c];
            weight[o] = f(ys.weight[q * S + a] * xs.weight[q * S + c]);
          }
        }
      }
    }
  }
}

/**
 * `queryGeometry`'s loop for the queries [start, start + n) of a W-column grid, the same values: the first image's
 * neighbours walk the grid row by row (no division per query), and every other image's are copies of them, the
 * cell index moved by the image's offset (h·w cells per image).
 */
function gridGeometry(
  [ys, xs]: [AxisTable, AxisTable], W: number, S: number, B: number, h: number, w: number, start: number, n: number,
  index: Int32Array, rel: Float32Array, weight: Float32Array,
): void {
  const BQ = B * n;
  // per neighbour (a, c), the queries row segment by row segment: a row's neighbour row is fixed, so the inner
  // loop reads the column table only
  for (let a = 0; a < S; a++) {
    for (let c = 0; c < S; c++) {
      const base = (a * S + c) * BQ;
      for (let q = 0; q < n;) {
        const row = Math.floor((start + q) / W);
        const col0 = (start + q) % W;
        const len = Math.min(W - col0, n - q);
        const yi = ys.index[row * S + a] * w;
        const yr = ys.rel[row * S + a];
        const yw = ys.weight[row * S + a];
        for (let k = 0; k < len; k++) {
          const o = base + q + k;
          const x = (col0 + k) * S + c;
          index[o] = yi + xs.index[x];
          rel[o * 2] = yr;
          rel[o * 2 + 1] = xs.rel[x];
          // a float32 store of the double product rounds it once, as Math.fround
          weight[o] = yw * xs.weight[x];
        }
        q += len;
      }
    }
  }
  for (let nb = 0; nb < S * S; nb++) {
    const first = nb * BQ;
    for (let b = 1; b < B; b++) {
      const at = first + b * n;
      rel.copyWithin(at * 2, first * 2, (first + n) * 2);
      weight.copyWithin(at, first, first + n);
      const offset = b * h * w;
      for (let q = 0; q < n; q++) index[at + q] = index[first + q] + offset;
    }
  }
}

/** Coordinates as host values (a tensor is read once). */
export function toHostCoords(coords: tf.Tensor3D | HostCoords): HostCoords {
  if (!(coords instanceof tf.Tensor)) return coords;
  const [B, Q] = coords.shape;
  return { values: coords.dataSync() as Float32Array, B, Q };
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
    const out = p.layers[p.layers.length - 1];
    const hidden = p.layers.slice(0, -1);
    if (!(shape.cellDecode && cell instanceof tf.Tensor)) {
      // gather + coordinate term + ReLU, the hidden layers, the output layer and the ensemble's blend: one
      // onnxruntime graph over tiles of queries where no gradient is recorded, the fused kernels under a tape
      return ensembleMlp(uniformCellTable(p, shape, G, cell), geo.index, geo.rel, p.w1Coord, hidden, out, geo.weight);
    }
    // a cell per query: the same cell term for every neighbour of a query
    const [B, h, w, H1] = G.shape;
    const [N, BQ] = geo.index.shape;
    const index = tf.reshape(geo.index, [N * BQ]) as tf.Tensor1D;
    const rel = tf.reshape(geo.rel, [N * BQ, 2]) as tf.Tensor2D;
    const gridTerm = tf.add(tf.reshape(G, [B * h * w, H1]), p.b1);
    const z = tf.add(tf.gather(gridTerm, index), tf.matMul(rel, p.w1Coord));
    const act = tf.relu(tf.reshape(tf.add(tf.reshape(z, [N, BQ, H1]), cellTerm(p, G, cell)), [N * BQ, H1])) as tf.Tensor2D;
    return ensembleMlpTail(act, hidden, out, geo.weight);
  });
}

/** The first layer's cell term, cell·(h, w)·W_cell, for cells [M, 2]. */
const cellTerm = (p: InrParams, G: tf.Tensor4D, cell: tf.Tensor2D) => tf.matMul(tf.mul(cell, tf.tensor1d([G.shape[1], G.shape[2]])), p.w1Cell);

/**
 * The first layer's per-cell part where the MLP reads no per-query cell, [B·h·w, H₁]: G + b₁, plus with cell
 * decoding the term of the one cell size, added once per latent cell instead of once per query and neighbour.
 */
function uniformCellTable(p: InrParams, shape: InrShape, G: tf.Tensor4D, cell: tf.Tensor2D | readonly [number, number]): tf.Tensor2D {
  return tf.tidy(() => {
    const [B, h, w, H1] = G.shape;
    const gridTerm = tf.add(tf.reshape(G, [B * h * w, H1]), p.b1) as tf.Tensor2D;
    if (!shape.cellDecode || cell instanceof tf.Tensor) return gridTerm;
    return tf.add(gridTerm, cellTerm(p, G, tf.tensor2d([cell[0], cell[1]], [1, 2]))) as tf.Tensor2D;
  });
}

/**
 * §5.1.6's loss on a geometry's queries, Σ_q scale_q · BCE(σ(s_q), target_q) with target and scale [B·Q] in
 * `mlpLogits`' order: on a grid (one cell size) the MLP and the BCE are one op, which under a tape computes the
 * value and gradient in one pass over the queries (`ensembleMlpBce`).
 */
export function mlpBce(
  p: InrParams, shape: InrShape, G: tf.Tensor4D, geo: QueryGeometry, cell: tf.Tensor2D | readonly [number, number], target: tf.Tensor1D, scale: tf.Tensor1D,
): tf.Scalar {
  return tf.tidy(() => {
    if (shape.cellDecode && cell instanceof tf.Tensor) return bceWithLogitsSum(mlpLogits(p, shape, G, geo, cell), target, scale);
    const table = uniformCellTable(p, shape, G, cell);
    return ensembleMlpBce(table, geo.index, geo.rel, p.w1Coord, p.layers.slice(0, -1), p.layers[p.layers.length - 1], geo.weight, target, scale);
  });
}

/** A query cell size: per query [B, Q, 2], or one (2/H_q, 2/W_q) pair for all queries. */
export type QueryCell = tf.Tensor3D | readonly [number, number];

/**
 * §5.1.2–3: rectification logits s [B, Q] at coordinates [B, Q, 2] with query cell size `cell` (the
 * pixel size of the query grid, 2/H_q and 2/W_q), from the first-layer grid G [B, h, w, H₁].
 */
export function queryLogits(p: InrParams, shape: InrShape, G: tf.Tensor4D, coords: tf.Tensor3D | HostCoords, cell: QueryCell): tf.Tensor2D {
  const host = toHostCoords(coords);
  return queryRange(p, shape, G, host, cell, 0, host.Q);
}

/** Queries [start, start + n) of every image. */
function queryRange(p: InrParams, shape: InrShape, G: tf.Tensor4D, coords: HostCoords, cell: QueryCell, start: number, n: number): tf.Tensor2D {
  return tf.tidy(() => {
    const { geo, c } = rangeQueries(shape, G, coords, cell, start, n);
    return tf.reshape(mlpLogits(p, shape, G, geo, c), [coords.B, n]) as tf.Tensor2D;
  });
}

/** Queries [start, start + n) of every image: their geometry and cell sizes ([B·n, 2] if per query), in `mlpLogits`' order. */
function rangeQueries(shape: InrShape, G: tf.Tensor4D, coords: HostCoords, cell: QueryCell, start: number, n: number) {
  const { B, Q } = coords;
  const geo = queryGeometry(shape, coords, G.shape[1], G.shape[2], start, n);
  const c = cell instanceof tf.Tensor ? tf.reshape(n === Q ? cell : tf.slice(cell, [0, start, 0], [-1, n, -1]), [B * n, 2]) as tf.Tensor2D : cell;
  return { geo, c };
}

/**
 * s at any coordinates, chunked along the queries so that at most `chunk` of them are in flight
 * (the result is the same for any chunk size). Outside a gradient tape each chunk's intermediates are freed.
 */
export function queryChunked(
  p: InrParams, shape: InrShape, G: tf.Tensor4D, coords: tf.Tensor3D | HostCoords, cell: QueryCell, chunk: number,
): tf.Tensor2D {
  const host = toHostCoords(coords);
  if (host.Q <= chunk) return queryRange(p, shape, G, host, cell, 0, host.Q);
  const parts: tf.Tensor2D[] = [];
  for (let start = 0; start < host.Q; start += chunk) parts.push(queryRange(p, shape, G, host, cell, start, Math.min(chunk, host.Q - start)));
  const out = tf.concat(parts, 1) as tf.Tensor2D;
  tf.dispose(parts);
  return out;
}

/**
 * `mlpBce` at any coordinates with target and scale [B, Q], chunked along the queries as `queryChunked`: the
 * chunks' sums add up to the whole's.
 */
export function queryBceChunked(
  p: InrParams, shape: InrShape, G: tf.Tensor4D, coords: tf.Tensor3D | HostCoords, cell: QueryCell, target: tf.Tensor2D, scale: tf.Tensor2D, chunk: number,
): tf.Scalar {
  const host = toHostCoords(coords);
  const { B, Q } = host;
  const parts: tf.Scalar[] = [];
  for (let start = 0; start < Q; start += chunk) {
    const n = Math.min(chunk, Q - start);
    parts.push(tf.tidy(() => {
      const rows = (t: tf.Tensor2D) => tf.reshape(n === Q ? t : tf.slice(t, [0, start], [-1, n]), [B * n]) as tf.Tensor1D;
      const { geo, c } = rangeQueries(shape, G, host, cell, start, n);
      return mlpBce(p, shape, G, geo, c, rows(target), rows(scale));
    }));
  }
  const total = tf.addN(parts) as tf.Scalar;
  tf.dispose(parts);
  return total;
}
