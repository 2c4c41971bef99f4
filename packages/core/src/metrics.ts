/**
 * Segmentation metrics from a confusion matrix over K classes (ignore pixels excluded): per-class IoU and
 * accuracy, mIoU over a chosen class subset (e.g. SYNTHIA's 16 or 13, or the classes of a benchmark).
 */
export class ConfusionMatrix {
  /** counts[truth * K + pred] */
  readonly counts: Float64Array;

  constructor(readonly numClasses: number, readonly ignoreIndex = 255) {
    this.counts = new Float64Array(numClasses * numClasses);
  }

  /** Add a prediction/label pair of equal length (train ids). */
  update(pred: ArrayLike<number>, truth: ArrayLike<number>): this {
    if (pred.length !== truth.length) throw new Error(`prediction has ${pred.length} pixels, label ${truth.length}`);
    const K = this.numClasses;
    for (let i = 0; i < truth.length; i++) {
      const t = truth[i];
      if (t === this.ignoreIndex || t >= K) continue;
      const p = pred[i];
      if (p < 0 || p >= K) throw new Error(`prediction ${p} outside [0, ${K})`);
      this.counts[t * K + p]++;
    }
    return this;
  }

  /** IoU per class; null where the class is absent from both truth and prediction. */
  iou(): (number | null)[] {
    const K = this.numClasses;
    return Array.from({ length: K }, (_, k) => {
      let tp = 0;
      let row = 0;
      let col = 0;
      for (let j = 0; j < K; j++) {
        row += this.counts[k * K + j];
        col += this.counts[j * K + k];
      }
      tp = this.counts[k * K + k];
      const union = row + col - tp;
      return union > 0 ? tp / union : null;
    });
  }

  /** Recall per class (null where the class never occurs in the truth). */
  accuracy(): (number | null)[] {
    const K = this.numClasses;
    return Array.from({ length: K }, (_, k) => {
      let row = 0;
      for (let j = 0; j < K; j++) row += this.counts[k * K + j];
      return row > 0 ? this.counts[k * K + k] / row : null;
    });
  }

  /** Mean IoU over `classes` (default all), skipping classes with no IoU. */
  miou(classes?: readonly number[]): number {
    const iou = this.iou();
    const pick = (classes ?? iou.map((_, k) => k)).map((k) => iou[k]).filter((v): v is number => v != null);
    return pick.length ? pick.reduce((a, b) => a + b, 0) / pick.length : 0;
  }

  pixelAccuracy(): number {
    const K = this.numClasses;
    let tp = 0;
    let all = 0;
    for (let k = 0; k < K; k++) tp += this.counts[k * K + k];
    for (const v of this.counts) all += v;
    return all > 0 ? tp / all : 0;
  }
}

/** 1 where a labelled pixel has a differently labelled pixel within `radius` (Chebyshev). */
export function boundaryMask(label: Uint8Array, width: number, height: number, radius = 2, ignore = 255): Uint8Array {
  const out = new Uint8Array(label.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = label[y * width + x];
      if (v === ignore) continue;
      search: for (let dy = -radius; dy <= radius; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -radius; dx <= radius; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width) continue;
          const u = label[yy * width + xx];
          if (u !== ignore && u !== v) {
            out[y * width + x] = 1;
            break search;
          }
        }
      }
    }
  }
  return out;
}

/** Expected calibration error of confidences against 0/1 outcomes, equal-width bins. */
export function expectedCalibrationError(conf: ArrayLike<number>, correct: ArrayLike<number>, bins = 10): number {
  const n = new Float64Array(bins);
  const c = new Float64Array(bins);
  const a = new Float64Array(bins);
  for (let i = 0; i < conf.length; i++) {
    const b = Math.min(bins - 1, Math.floor(conf[i] * bins));
    n[b]++;
    c[b] += conf[i];
    a[b] += correct[i];
  }
  let ece = 0;
  for (let b = 0; b < bins; b++) if (n[b] > 0) ece += (n[b] / conf.length) * Math.abs(c[b] / n[b] - a[b] / n[b]);
  return ece;
}
