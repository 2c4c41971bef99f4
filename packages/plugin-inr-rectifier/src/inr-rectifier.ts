/**
 * The INR rectifier (DESIGN §5.1) behind the core `Rectifier` contract: it owns ψ (projection + MLP),
 * rectifies pseudo-labels at label resolution during training, answers queries at any coordinates or
 * resolution, trains on the source by calibration (§5.1.6), and reports r's distribution as events.
 * The maths is in `inr-query.ts`.
 */
import * as tf from '@tensorflow/tfjs';
import {
  Ir2fError, RECTIFIER_WEIGHTINGS, redistributeWeight, Rng, stopGradient, withoutGradients, z, type EventBus, type Rectified, type Rectifier, type RectifierSourceSide, type RectifyInput, type SmallMap,
  type StepContext,
} from '@ir2f/core';
import { exportRectifierOnnx } from './inr-onnx.js';
import {
  batchGridCoords, firstLayerGrid, latentGrid, mlpBce, mlpLogits, queryBceChunked, queryChunked, queryGeometry, type HostCoords, type InrParams,
  type InrShape, type QueryGeometry,
} from './inr-query.js';

export const InrOptionsSchema = z.object({
  /** Channels of the embedding's 1×1 projection (C_r). */
  projChannels: z.number().int().positive().default(32),
  /** MLP hidden widths ([256, 256, 256, 256] is LIIF's). */
  hidden: z.array(z.number().int().positive()).min(1).default([64, 64]),
  /** 3×3 feature unfolding. */
  unfold: z.boolean().default(true),
  /** Four-neighbour local ensemble with area weights. */
  localEnsemble: z.boolean().default(true),
  /** Feed the query pixel size to the MLP. */
  cellDecode: z.boolean().default(true),
  /** λ_cal of the source calibration loss (0: off). */
  calibrationWeight: z.number().nonnegative().default(1),
  /** Queries per chunk. */
  chunkSize: z.number().int().positive().default(65536),
  /** The weight handed to the loss is r without gradient (DESIGN §5.3 "+ INR" row); `rectification` keeps it. */
  detachWeight: z.boolean().default(true),
  /**
   * How r weights the target loss (DESIGN §5.1.7): `redistribute` (v2) w = min(1, q · r / r̄), the baseline's
   * total target weight spread by r; `replace` (v1) w = r.
   */
  weighting: z.enum(RECTIFIER_WEIGHTINGS).default('redistribute'),
  /**
   * The source view the teacher labels for L_cal (DESIGN §5.1.8): `clean`, or `shifted` (the mixer's colour
   * jitter and blur at full strength), so that r learns from target-like errors.
   */
  calibrationView: z.enum(['clean', 'shifted']).default('clean'),
  /** For the first N steps hand the loss the pseudo-labeler's own weight (DAFormer's q) as weight and as r, while ψ trains on L_cal. */
  qWarmupSteps: z.number().int().nonnegative().default(0),
  /**
   * Emit a `rectifier` event at every N-th step (0: never), with a small map of r every `mapEvery` steps (by the
   * step index, so a resumed run reports at the same steps as a straight one).
   */
  statsEvery: z.number().int().nonnegative().default(1),
  mapEvery: z.number().int().nonnegative().default(100),
  mapSize: z.number().int().positive().default(32),
  /** Seed of ψ's initialisation. */
  seed: z.number().int().nonnegative().default(0),
}).strict();

export type InrOptions = z.output<typeof InrOptionsSchema>;
export type InrOptionsInput = z.input<typeof InrOptionsSchema>;

function uniformInit(rng: Rng, fanIn: number, shape: number[]): tf.Tensor {
  // PyTorch's nn.Linear / Conv2d default: U(−1/√fan_in, 1/√fan_in)
  const bound = 1 / Math.sqrt(fanIn);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => rng.uniform(-bound, bound)), shape);
}

let uid = 0;

/**
 * Puts the k-th smallest of a[lo, hi) at a[k], smaller ones before it and larger after (Hoare's selection,
 * median-of-three pivots): O(n) against a sort's O(n log n), ~0.3 ms for a 2×128² map where sorting took ~3.
 */
function selectKth(a: Float32Array, k: number, lo = 0, hi = a.length): number {
  let [l, r] = [lo, hi - 1];
  while (r > l) {
    const m = (l + r) >> 1;
    // median of three to a[m], then partition around it
    if (a[m] < a[l]) [a[m], a[l]] = [a[l], a[m]];
    if (a[r] < a[l]) [a[r], a[l]] = [a[l], a[r]];
    if (a[r] < a[m]) [a[r], a[m]] = [a[m], a[r]];
    const pivot = a[m];
    let [i, j] = [l, r];
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        [a[i], a[j]] = [a[j], a[i]];
        i++;
        j--;
      }
    }
    if (k <= j) r = j;
    else if (k >= i) l = i;
    else break;
  }
  return a[k];
}

/** The values at quantiles qs (ascending; index ⌊q·n⌋, as a sorted array's) without sorting: nested selections. */
export function quantiles(values: Float32Array, qs: readonly number[]): number[] {
  const a = Float32Array.from(values);
  const n = a.length;
  let lo = 0;
  return qs.map((q) => {
    const k = Math.min(n - 1, Math.floor(q * n));
    const v = selectKth(a, k, lo, n);
    lo = k;
    return v;
  });
}

export class InrRectifier implements Rectifier {
  readonly options: InrOptions;
  readonly shape: InrShape;
  private readonly params: InrParams;
  private readonly vars: tf.Variable[];
  /** Source calibration (§5.1.6); absent when its weight is 0. */
  readonly auxLoss?: (source: RectifierSourceSide, ctx: StepContext) => tf.Scalar;
  readonly calibrationView: 'clean' | 'shifted';

  constructor(options: InrOptionsInput, readonly dims: { embeddingChannels: number; numClasses: number }, private readonly bus?: EventBus) {
    this.options = InrOptionsSchema.parse(options);
    const o = this.options;
    const C = o.projChannels + dims.numClasses;
    this.shape = { latentChannels: C, hidden: o.hidden, unfold: o.unfold, localEnsemble: o.localEnsemble, cellDecode: o.cellDecode };
    const rng = new Rng(`inr-rectifier-${o.seed}`);
    const E = dims.embeddingChannels;
    const k = o.unfold ? 3 : 1;
    const H1 = o.hidden[0];
    const fanIn1 = C * k * k + 2 + (o.cellDecode ? 2 : 0);
    // tfjs variable names are global: one prefix per instance
    const prefix = `inr${uid++}`;
    const v = (name: string, t: tf.Tensor) => {
      const variable = tf.variable(t, true, `${prefix}/${name}`);
      t.dispose(); // the variable holds its own reference to the data
      return variable;
    };
    const widths = [...o.hidden, 1];
    this.params = {
      projW: v('proj.weight', uniformInit(rng, E, [1, 1, E, o.projChannels])) as unknown as tf.Tensor4D,
      projB: v('proj.bias', uniformInit(rng, E, [o.projChannels])) as unknown as tf.Tensor1D,
      w1Feat: v('mlp.0.weight_feat', uniformInit(rng, fanIn1, [k, k, C, H1])) as unknown as tf.Tensor4D,
      w1Coord: v('mlp.0.weight_coord', uniformInit(rng, fanIn1, [2, H1])) as unknown as tf.Tensor2D,
      w1Cell: v('mlp.0.weight_cell', uniformInit(rng, fanIn1, [2, H1])) as unknown as tf.Tensor2D,
      b1: v('mlp.0.bias', uniformInit(rng, fanIn1, [H1])) as unknown as tf.Tensor1D,
      layers: widths.slice(1).map((out, i) => ({
        w: v(`mlp.${i + 1}.weight`, uniformInit(rng, widths[i], [widths[i], out])) as unknown as tf.Tensor2D,
        b: v(`mlp.${i + 1}.bias`, uniformInit(rng, widths[i], [out])) as unknown as tf.Tensor1D,
      })),
    };
    const p = this.params;
    this.vars = [p.projW, p.projB, p.w1Feat, p.w1Coord, ...(o.cellDecode ? [p.w1Cell] : []), p.b1, ...p.layers.flatMap((l) => [l.w, l.b])] as unknown as tf.Variable[];
    if (!o.cellDecode) (p.w1Cell as unknown as tf.Variable).trainable = false;
    if (o.calibrationWeight > 0) this.auxLoss = (source) => this.calibrationLoss(source);
    this.calibrationView = o.calibrationView;
  }

  get variables(): readonly tf.Variable[] {
    return this.vars;
  }

  /** ψ by name (PyTorch-style), e.g. for saving or inspection. */
  namedParams(): [string, tf.Tensor][] {
    const p = this.params;
    return [
      ['proj.weight', p.projW], ['proj.bias', p.projB], ['mlp.0.weight_feat', p.w1Feat], ['mlp.0.weight_coord', p.w1Coord],
      ['mlp.0.weight_cell', p.w1Cell], ['mlp.0.bias', p.b1],
      ...p.layers.flatMap((l, i): [string, tf.Tensor][] => [[`mlp.${i + 1}.weight`, l.w], [`mlp.${i + 1}.bias`, l.b]]),
    ];
  }

  private firstLayer(features: tf.Tensor4D, logProbs: tf.Tensor4D | undefined): tf.Tensor4D {
    if (!logProbs) {
      throw new Ir2fError('INVALID_ARGUMENT', 'the INR rectifier needs the teacher\'s log-probabilities at feature resolution (RectifyInput.logProbs)');
    }
    if (features.shape[3] !== this.dims.embeddingChannels) {
      throw new Ir2fError('INVALID_ARGUMENT',
        `the INR rectifier was built for ${this.dims.embeddingChannels} embedding channels, got ${features.shape[3]}: build it from the decode head it serves`);
    }
    return tf.tidy(() => firstLayerGrid(this.params, latentGrid(this.params, features, logProbs)));
  }

  /** r [B, Q] at coordinates [B, Q, 2] (row, column in [−1, 1]); `cell` is the query pixel size (default: the latent cell). */
  rectifyAt(features: tf.Tensor4D, logProbs: tf.Tensor4D, coords: tf.Tensor3D, cell?: tf.Tensor3D | [number, number]): tf.Tensor2D {
    return tf.tidy(() => {
      const G = this.firstLayer(features, logProbs);
      const [, h, w] = G.shape;
      return tf.sigmoid(queryChunked(this.params, this.shape, G, coords, cell ?? [2 / h, 2 / w], this.options.chunkSize)) as tf.Tensor2D;
    });
  }

  /** r [B, H, W] at the pixel centres of an H×W grid, any resolution (above the image's too). */
  rectifyGrid(features: tf.Tensor4D, logProbs: tf.Tensor4D, H: number, W: number): tf.Tensor3D {
    return tf.tidy(() => tf.sigmoid(this.gridLogits(features, logProbs, H, W)) as tf.Tensor3D);
  }

  /** The logits s of r = σ(s) on an H×W grid. */
  private gridLogits(features: tf.Tensor4D, logProbs: tf.Tensor4D, H: number, W: number): tf.Tensor3D {
    const B = features.shape[0];
    return this.onGrid(features, logProbs, B, H, W, {
      chunked: (G, coords, cell) => tf.reshape(queryChunked(this.params, this.shape, G, coords, cell, this.options.chunkSize), [B, H, W]) as tf.Tensor3D,
      whole: (G, geo, cell) => tf.reshape(mlpLogits(this.params, this.shape, G, geo, cell), [B, H, W]) as tf.Tensor3D,
    });
  }

  /**
   * A query of the pixel centres of B H×W grids, as `chunked` (over `chunkSize` queries in all, on host
   * coordinates) or `whole` (on the cached geometry): given the first-layer grid G and the query cell.
   */
  private onGrid<T extends tf.Tensor>(features: tf.Tensor4D, logProbs: tf.Tensor4D, B: number, H: number, W: number, query: {
    chunked: (G: tf.Tensor4D, coords: HostCoords, cell: [number, number]) => T;
    whole: (G: tf.Tensor4D, geo: QueryGeometry, cell: [number, number]) => T;
  }): T {
    return tf.tidy(() => {
      const G = this.firstLayer(features, logProbs);
      const cell: [number, number] = [2 / H, 2 / W];
      if (B * H * W > this.options.chunkSize) return query.chunked(G, batchGridCoords(B, H, W), cell);
      // a grid's geometry depends on its size only: computed once, reused every step
      return query.whole(G, this.gridGeometry(B, H, W, G.shape[1], G.shape[2]), cell);
    });
  }

  private readonly geometries = new Map<string, QueryGeometry>();

  private gridGeometry(B: number, H: number, W: number, h: number, w: number): QueryGeometry {
    const key = `${B}x${H}x${W}@${h}x${w}`;
    let entry = this.geometries.get(key);
    if (!entry) {
      if (this.geometries.size >= 8) this.clearGeometries();
      // kept: the cache outlives the tidy of the step that first asks for it
      const geo = queryGeometry(this.shape, batchGridCoords(B, H, W), h, w);
      entry = { index: tf.keep(geo.index), rel: tf.keep(geo.rel), weight: tf.keep(geo.weight) };
      this.geometries.set(key, entry);
    }
    return entry;
  }

  private clearGeometries(): void {
    for (const geo of this.geometries.values()) tf.dispose([geo.index, geo.rel, geo.weight]);
    this.geometries.clear();
  }

  rectify(input: RectifyInput, ctx: StepContext): Rectified {
    const [, H, W] = input.pseudo.labels.shape;
    // no loss takes r's gradient (a detached weight, a loss that reads r as a constant): r is computed off the
    // tape, which saves its backward's inputs and lets the tiled query graph run
    const constant = this.options.detachWeight && input.rectificationGradient === false;
    const grid = () => {
      const s = this.gridLogits(input.features, input.logProbs!, H, W);
      return [s, tf.sigmoid(s) as tf.Tensor3D] as [tf.Tensor3D, tf.Tensor3D];
    };
    const [logit, r] = constant ? withoutGradients(grid) : grid();
    this.observe(r, input.pseudo.weight, ctx);
    if (ctx.step < this.options.qWarmupSteps) {
      // warm-up: the loss sees the pseudo-labeler's weight as r too (an RMM loss then trains no ψ on the
      // target side); r is still computed for the events, and ψ trains on L_cal
      tf.dispose([logit, r]);
      return { labels: input.pseudo.labels, weight: tf.clone(input.pseudo.weight), rectification: tf.clone(input.pseudo.weight) };
    }
    const rw = this.options.detachWeight && !constant ? stopGradient(r) : r;
    let weight = rw;
    if (this.options.weighting === 'redistribute') {
      weight = redistributeWeight(input.pseudo.weight, rw);
      if (rw !== r) rw.dispose();
    }
    return { labels: input.pseudo.labels, weight, rectification: r, logit };
  }

  /**
   * Σ scale · BCE(r, target) over the pixel centres of target's H×W grid (target and scale [B, H, W]): the MLP
   * and the BCE as one op, whose value and gradient are one pass over the queries under a tape (`mlpBce`).
   */
  private gridBce(features: tf.Tensor4D, logProbs: tf.Tensor4D, target: tf.Tensor3D, scale: tf.Tensor3D): tf.Scalar {
    const [B, H, W] = target.shape;
    const perImage = (t: tf.Tensor3D) => tf.reshape(t, [B, H * W]) as tf.Tensor2D;
    const flat = (t: tf.Tensor3D) => tf.reshape(t, [B * H * W]) as tf.Tensor1D;
    return this.onGrid(features, logProbs, B, H, W, {
      chunked: (G, coords, cell) => queryBceChunked(this.params, this.shape, G, coords, cell, perImage(target), perImage(scale), this.options.chunkSize),
      whole: (G, geo, cell) => mlpBce(this.params, this.shape, G, geo, cell, flat(target), flat(scale)),
    });
  }

  /** §5.1.6: BCE(r(x), 1[argmax teacher = source label]) over labelled source pixels, times λ_cal. */
  private calibrationLoss(source: RectifierSourceSide): tf.Scalar {
    return tf.tidy(() => {
      const valid = tf.cast(tf.notEqual(source.labels, 255), 'float32');
      const correct = tf.cast(tf.equal(tf.argMax(source.teacherProbs, 3), source.labels), 'float32') as tf.Tensor3D;
      // the mean over labelled pixels: each one's share of the sum
      const scale = tf.div(valid, tf.maximum(tf.sum(valid), 1)) as tf.Tensor3D;
      return tf.mul(this.gridBce(source.features, source.logProbs!, correct, scale), this.options.calibrationWeight) as tf.Scalar;
    });
  }

  /** Distribution of r for the `rectifier` event (a host read, every `statsEvery` steps). */
  private observe(r: tf.Tensor3D, q: tf.Tensor3D, ctx: StepContext): void {
    const o = this.options;
    if (!this.bus || o.statsEvery === 0 || ctx.step % o.statsEvery !== 0) return;
    const values = r.dataSync() as Float32Array;
    const qs = q.dataSync() as Float32Array;
    const [p10, p50, p90] = quantiles(values, [0.1, 0.5, 0.9]);
    let low = 0;
    let sum = 0;
    // r̄ as §5.1.7 divides by: the mean of r over the pixels that carry weight
    let weighted = 0;
    let nWeighted = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      sum += v;
      if (v < 0.5) low++;
      if (qs[i] > 0) {
        weighted += v;
        nWeighted++;
      }
    }
    let map: SmallMap | undefined;
    if (o.mapEvery > 0 && ctx.step % o.mapEvery === 0) {
      const [, H, W] = r.shape;
      const s = o.mapSize / Math.max(H, W);
      const [mh, mw] = [Math.max(1, Math.round(H * s)), Math.max(1, Math.round(W * s))];
      const small = tf.tidy(() => tf.image.resizeBilinear(tf.slice(tf.expandDims(r, 3), [0, 0, 0, 0], [1, -1, -1, 1]) as tf.Tensor4D, [mh, mw], false, true));
      map = { height: mh, width: mw, values: Array.from(small.dataSync()) };
      small.dispose();
    }
    this.bus.emit({
      type: 'rectifier', step: ctx.step + 1,
      mean: sum / values.length, rBar: nWeighted ? weighted / nWeighted : sum / values.length, p10, p50, p90,
      lowShare: low / values.length, ...(map ? { map } : {}),
    });
  }

  /** ONNX: inputs embedding, log_probs (NCHW), coords, cell [N, Q, 2]; output r [N, Q]. */
  exportOnnx(opts: { opset?: number } = {}): Uint8Array {
    return exportRectifierOnnx(this, opts);
  }

  dispose(): void {
    this.clearGeometries();
    tf.dispose(this.namedParams().map(([, t]) => t));
  }
}
