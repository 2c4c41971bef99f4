/**
 * DACS's colour jitter on a normalised image batch [B, H, W, 3] (ImageNet mean and std): per image, brightness,
 * contrast, saturation and hue (a rotation of YIQ's chroma plane) on [0, 1] RGB, each clipped to [0, 1], then
 * normalised again. On the host backends (wasm, cpu) one JS kernel does it in two passes over the image (the
 * second needs the first's mean grey); the tensor composition is ~35 kernels, most of them broadcasts over the
 * channels, which tfjs-wasm runs at ~4 ns an element (a 128² pair: ~5 ms of kernels, against ~1 here).
 * Elsewhere (webgl, tfjs-node) the composition runs. Both take the same draws from the step's RNG.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel, registerOnce } from '@ir2f/runtime';
import type { Rng } from '../rng.js';

/** The normalisation of the images (ImageNet mean and std, as datasets' `IMAGENET_MEAN`). */
const IMAGE_MEAN = [123.675, 116.28, 103.53];
const IMAGE_STD = [58.395, 57.12, 57.375];

const COLOR_JITTER = 'Ir2fColorJitter';

/** Per-image jitter factors, drawn in this order: brightness, contrast and saturation for all images, then hue. */
export interface ColorJitterParams {
  brightness: number[];
  contrast: number[];
  saturation: number[];
  /** The hue rotation of each image, in radians. */
  hue: number[];
}

/** Factors in [1 − s, 1 + s] and a hue turn of [−s, s] of a full circle per image, from `rng`. */
export function drawColorJitter(batch: number, strength: number, rng: Rng): ColorJitterParams {
  const factors = () => Array.from({ length: batch }, () => rng.uniform(1 - strength, 1 + strength));
  const [brightness, contrast, saturation] = [factors(), factors(), factors()];
  const hue = Array.from({ length: batch }, () => rng.uniform(-strength, strength) * 2 * Math.PI);
  return { brightness, contrast, saturation, hue };
}

const GREY = [0.299, 0.587, 0.114];
const RGB_TO_YIQ = [[0.299, 0.596, 0.211], [0.587, -0.274, -0.523], [0.114, -0.322, 0.312]];
const YIQ_TO_RGB = [[1, 1, 1], [0.956, -0.272, -1.106], [0.621, -0.647, 1.703]];

const rotation = (th: number) => [[1, 0, 0], [0, Math.cos(th), Math.sin(th)], [0, -Math.sin(th), Math.cos(th)]];

function matmul3(a: number[][], b: number[][]): number[][] {
  return a.map((row) => [0, 1, 2].map((j) => row[0] * b[0][j] + row[1] * b[1][j] + row[2] * b[2][j]));
}

/** The composition the kernel replaces (and the reference its test compares with). */
export function colorJitterComposed(x: tf.Tensor4D, p: ColorJitterParams): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, H, W] = x.shape;
    const per = (v: number[]) => tf.tensor(v, [B, 1, 1, 1]);
    const grey = (t: tf.Tensor4D) => tf.sum(tf.mul(t, GREY), 3, true);
    let y = tf.div(tf.add(tf.mul(x, IMAGE_STD), IMAGE_MEAN), 255) as tf.Tensor4D;
    y = tf.clipByValue(tf.mul(y, per(p.brightness)), 0, 1);
    const m = tf.mean(grey(y), [1, 2, 3], true);
    y = tf.clipByValue(tf.add(tf.mul(tf.sub(y, m), per(p.contrast)), m), 0, 1);
    const g = grey(y);
    y = tf.clipByValue(tf.add(tf.mul(tf.sub(y, g), per(p.saturation)), g), 0, 1);
    const rot = tf.stack(p.hue.map((th) => tf.tensor2d(rotation(th)))) as tf.Tensor3D;
    const tile = (m3: number[][]) => tf.tile(tf.expandDims(tf.tensor2d(m3), 0), [B, 1, 1]) as tf.Tensor3D;
    const yiq = tf.matMul(tf.matMul(tf.reshape(y, [B, H * W, 3]) as tf.Tensor3D, tile(RGB_TO_YIQ)), rot);
    const rgb = tf.clipByValue(tf.reshape(tf.matMul(yiq, tile(YIQ_TO_RGB)), [B, H, W, 3]), 0, 1);
    return tf.div(tf.sub(tf.mul(rgb, 255), IMAGE_MEAN), IMAGE_STD) as tf.Tensor4D;
  });
}

const clip01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

/** One image's jitter from `x` into `out` (offset `o`, `n` pixels), in float64 until the stores. */
function jitterImage(x: Float32Array, out: Float32Array, o: number, n: number, b: number, c: number, s: number, hue: number[][]): void {
  // x·σ/255 + μ/255 per channel, brightness folded in
  const [sr, sg, sb] = IMAGE_STD.map((v) => (v / 255) * b);
  const [mr, mg, mb] = IMAGE_MEAN.map((v) => (v / 255) * b);
  const [wr, wg, wb] = GREY;
  // pass 1: brightness, and the mean grey the contrast pulls towards
  let sum = 0;
  for (let i = o; i < o + 3 * n; i += 3) {
    const r = clip01(x[i] * sr + mr);
    const g = clip01(x[i + 1] * sg + mg);
    const bl = clip01(x[i + 2] * sb + mb);
    out[i] = r;
    out[i + 1] = g;
    out[i + 2] = bl;
    sum += r * wr + g * wg + bl * wb;
  }
  const m = sum / n;
  const mc = m * (1 - c);
  // the hue matrix with the normalisation (255·v − μ)/σ folded into its columns
  const [ur, ug, ub] = IMAGE_STD.map((v) => 255 / v);
  const [nr, ng, nb] = IMAGE_MEAN.map((v, j) => v / IMAGE_STD[j]);
  const [h0, h1, h2] = hue;
  // pass 2: contrast, saturation, hue, normalisation
  for (let i = o; i < o + 3 * n; i += 3) {
    const r1 = clip01(out[i] * c + mc);
    const g1 = clip01(out[i + 1] * c + mc);
    const b1 = clip01(out[i + 2] * c + mc);
    const grey = (r1 * wr + g1 * wg + b1 * wb) * (1 - s);
    const r2 = clip01(r1 * s + grey);
    const g2 = clip01(g1 * s + grey);
    const b2 = clip01(b1 * s + grey);
    out[i] = clip01(r2 * h0[0] + g2 * h1[0] + b2 * h2[0]) * ur - nr;
    out[i + 1] = clip01(r2 * h0[1] + g2 * h1[1] + b2 * h2[1]) * ug - ng;
    out[i + 2] = clip01(r2 * h0[2] + g2 * h1[2] + b2 * h2[2]) * ub - nb;
  }
}

const registerColorJitter = registerOnce(() => registerHostKernel({
  name: COLOR_JITTER,
  outputShapes: (shapes) => [shapes.x],
  compute: ({ x }, [out], attrs) => {
    const [B, H, W] = x.shape;
    const n = H * W;
    const [b, c, s] = ['brightness', 'contrast', 'saturation'].map((k) => attrs[k] as number[]);
    const hue = attrs.hue as number[];
    for (let i = 0; i < B; i++) {
      // RGB → YIQ, the chroma rotation and back as one matrix (row vectors: rgb · M)
      const m = matmul3(matmul3(RGB_TO_YIQ, rotation(hue[i])), YIQ_TO_RGB);
      jitterImage(x.values as Float32Array, out, 3 * n * i, n, b[i], c[i], s[i], m);
    }
  },
}));

/** Colour jitter with the factors `p` on a normalised float32 batch [B, H, W, 3]; the result is normalised too. */
export function colorJitter(x: tf.Tensor4D, p: ColorJitterParams): tf.Tensor4D {
  if (x.shape[3] !== 3) throw new Error(`colorJitter: images must have 3 channels, got [${x.shape}]`);
  if ([p.brightness, p.contrast, p.saturation, p.hue].some((v) => v.length !== x.shape[0])) {
    throw new Error(`colorJitter: one factor of each kind per image (${x.shape[0]})`);
  }
  registerColorJitter();
  if (x.dtype !== 'float32' || !hasHostKernel(COLOR_JITTER)) return colorJitterComposed(x, p);
  return tf.engine().runKernel(COLOR_JITTER, { x }, { ...p } as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}
