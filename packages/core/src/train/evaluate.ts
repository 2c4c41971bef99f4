/**
 * Evaluation: logits over whole images or sliding windows (mmseg's `slide` mode: crops of `crop` every
 * `stride`, logits averaged where windows overlap), argmax, and a confusion matrix over the label spec's
 * classes (ignore 255) giving mIoU, per-class IoU and accuracy.
 */
import * as tf from '@tensorflow/tfjs';
import type { DecodeOutput } from '../contracts.js';
import { ConfusionMatrix } from '../metrics.js';
import { resizeTo } from '../nn/layers.js';

export interface Predictor {
  forward(x: tf.Tensor4D): DecodeOutput;
}

export interface SlideOptions {
  /** [height, width] of a window. */
  crop: [number, number];
  /** [height, width] step between windows. */
  stride: [number, number];
}

function fullLogits(net: Predictor, x: tf.Tensor4D): tf.Tensor4D {
  return resizeTo(net.forward(x).logits, x.shape.slice(1, 3));
}

/** Logits [B, H, W, K] at the input size, over the whole image or by sliding windows. */
export function inferLogits(net: Predictor, x: tf.Tensor4D, slide?: SlideOptions): tf.Tensor4D {
  const [, H, W] = x.shape;
  if (!slide || (slide.crop[0] >= H && slide.crop[1] >= W)) return tf.tidy(() => fullLogits(net, x));
  const [ch, cw] = [Math.min(slide.crop[0], H), Math.min(slide.crop[1], W)];
  const [sh, sw] = slide.stride;
  if (!(sh > 0 && sw > 0)) throw new Error(`sliding-window stride must be positive, got [${slide.stride}]`);
  const rows = Math.max(Math.ceil((H - ch) / sh), 0) + 1;
  const cols = Math.max(Math.ceil((W - cw) / sw), 0) + 1;
  let sum: tf.Tensor4D | undefined;
  let count: tf.Tensor4D | undefined;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      // as mmseg: the last window is shifted back to end at the border
      const y0 = Math.max(Math.min(r * sh, H - ch), 0);
      const x0 = Math.max(Math.min(c * sw, W - cw), 0);
      const pad: [number, number][] = [[0, 0], [y0, H - y0 - ch], [x0, W - x0 - cw], [0, 0]];
      const nextSum = tf.tidy(() => {
        const placed = tf.pad(fullLogits(net, tf.slice(x, [0, y0, x0, 0], [-1, ch, cw, -1]) as tf.Tensor4D), pad) as tf.Tensor4D;
        return sum ? tf.add(sum, placed) as tf.Tensor4D : placed;
      });
      const nextCount = tf.tidy(() => {
        const ones = tf.pad(tf.ones([1, ch, cw, 1]), pad) as tf.Tensor4D;
        return count ? tf.add(count, ones) as tf.Tensor4D : ones;
      });
      sum?.dispose();
      count?.dispose();
      sum = nextSum;
      count = nextCount;
    }
  }
  const out = tf.div(sum!, count!) as tf.Tensor4D;
  tf.dispose([sum!, count!]);
  return out;
}

export interface EvalSample {
  /** [H, W, 3] normalised image. */
  image: Float32Array;
  /** [H, W] train ids. */
  label: Uint8Array;
  height: number;
  width: number;
}

export interface EvalResult {
  miou: number;
  perClassIoU: (number | null)[];
  perClassAccuracy: (number | null)[];
  pixelAccuracy: number;
  images: number;
  matrix: ConfusionMatrix;
}

/** Evaluate `net` (in eval mode) on labelled samples; mIoU averages over `classes` (default: all K). */
export async function evaluate(
  net: Predictor & { train?(on?: boolean): unknown; training?: boolean },
  samples: AsyncIterable<EvalSample> | Iterable<EvalSample>,
  opts: { numClasses: number; classes?: readonly number[]; slide?: SlideOptions; ignoreIndex?: number },
): Promise<EvalResult> {
  const wasTraining = net.training;
  net.train?.(false);
  const cm = new ConfusionMatrix(opts.numClasses, opts.ignoreIndex ?? 255);
  let images = 0;
  try {
    for await (const s of samples) {
      const x = tf.tensor4d(s.image, [1, s.height, s.width, 3]);
      const pred = tf.tidy(() => tf.argMax(inferLogits(net, x, opts.slide), 3));
      cm.update(await pred.data(), s.label);
      tf.dispose([x, pred]);
      images++;
    }
  } finally {
    if (wasTraining) net.train?.(true);
  }
  const iou = cm.iou();
  return {
    miou: cm.miou(opts.classes), perClassIoU: iou, perClassAccuracy: cm.accuracy(), pixelAccuracy: cm.pixelAccuracy(),
    images, matrix: cm,
  };
}
