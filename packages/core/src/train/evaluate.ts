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

/** A side shorter than this is padded (with zeros: the mean colour after normalisation), so that the deepest stride has a cell. */
export const MIN_SIDE = 32;
/** Above this many pixels, without slide options, logits come from `AUTO_SLIDE` windows (whole-image attention would not fit). */
export const AUTO_SLIDE_PIXELS = 1 << 21;
/** mmseg's default window ratio: 512² every 341 px. */
export const AUTO_SLIDE: SlideOptions = { crop: [512, 512], stride: [341, 341] };

/**
 * Logits [B, H, W, K] at the input size: over the whole image, or by sliding windows (given, or automatic
 * above `AUTO_SLIDE_PIXELS`); an image smaller than `MIN_SIDE` is padded and its logits cropped back.
 */
export function inferLogits(net: Predictor, x: tf.Tensor4D, slide?: SlideOptions): tf.Tensor4D {
  const [, H, W] = x.shape;
  if (H < MIN_SIDE || W < MIN_SIDE) {
    return tf.tidy(() => {
      const padded = tf.pad(x, [[0, 0], [0, Math.max(0, MIN_SIDE - H)], [0, Math.max(0, MIN_SIDE - W)], [0, 0]]) as tf.Tensor4D;
      return tf.slice(inferLogits(net, padded, slide), [0, 0, 0, 0], [-1, H, W, -1]) as tf.Tensor4D;
    });
  }
  const windows = slidingWindows(x, slide);
  if (!windows) return tf.tidy(() => fullLogits(net, x));
  const { values, shape } = windowedLogits(net, x, windows);
  return tf.tensor4d(values, shape);
}

/** The windows `inferLogits` slides for this input: the given ones, else `AUTO_SLIDE` above `AUTO_SLIDE_PIXELS`; none when one window covers it. */
export function slidingWindows(x: tf.Tensor4D, slide?: SlideOptions): SlideOptions | undefined {
  const [, H, W] = x.shape;
  const windows = slide ?? (H * W > AUTO_SLIDE_PIXELS ? AUTO_SLIDE : undefined);
  return !windows || (windows.crop[0] >= H && windows.crop[1] >= W) ? undefined : windows;
}

/**
 * Logits by sliding windows, averaged where they overlap, on the host ([B, H, W, K] row-major): sums and counts
 * in host arrays, so a large image costs one full-size array, not a tensor per window (`pixelMaps`-style
 * consumers can read them without making a tensor at all).
 */
export function windowedLogits(net: Predictor, x: tf.Tensor4D, windows: SlideOptions): { values: Float32Array; shape: [number, number, number, number] } {
  const [B, H, W] = x.shape;
  const [ch, cw] = [Math.min(windows.crop[0], H), Math.min(windows.crop[1], W)];
  const [sh, sw] = windows.stride;
  if (!(sh > 0 && sw > 0)) throw new Error(`sliding-window stride must be positive, got [${windows.stride}]`);
  const rows = Math.max(Math.ceil((H - ch) / sh), 0) + 1;
  const cols = Math.max(Math.ceil((W - cw) / sw), 0) + 1;
  let sum: Float32Array | undefined;
  let K = 0;
  const count = new Uint16Array(H * W);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      // as mmseg: the last window is shifted back to end at the border
      const y0 = Math.max(Math.min(r * sh, H - ch), 0);
      const x0 = Math.max(Math.min(c * sw, W - cw), 0);
      const win = tf.tidy(() => fullLogits(net, tf.slice(x, [0, y0, x0, 0], [-1, ch, cw, -1]) as tf.Tensor4D));
      const values = win.dataSync() as Float32Array;
      K = win.shape[3];
      win.dispose();
      sum ??= new Float32Array(B * H * W * K);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < ch; i++) {
          const src = ((b * ch + i) * cw) * K;
          const dst = ((b * H + y0 + i) * W + x0) * K;
          for (let j = 0; j < cw * K; j++) sum[dst + j] += values[src + j];
        }
      }
      for (let i = 0; i < ch; i++) for (let j = 0; j < cw; j++) count[(y0 + i) * W + x0 + j]++;
    }
  }
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < H * W; p++) {
      const n = count[p];
      for (let k = 0; k < K; k++) sum![(b * H * W + p) * K + k] /= n;
    }
  }
  return { values: sum!, shape: [B, H, W, K] };
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
