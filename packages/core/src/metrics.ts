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
