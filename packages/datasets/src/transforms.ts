/**
 * Training transforms on host arrays (HWC uint8 RGB + HW uint8 train ids), every random choice drawn from the
 * run's seeded RNG: resize keeping the aspect ratio, random crop with a maximum single-class share (mmseg's
 * `cat_max_ratio`), horizontal flip, photometric distortion, ImageNet normalisation.
 */
import sharp from 'sharp';
import type { Rng } from '@ir2f/core';
import type { LabelMap, RgbImage } from './image-io.js';

export interface Sample {
  image: RgbImage;
  /** Absent for unlabelled target images. */
  label?: LabelMap;
}

/** DAFormer's resize targets (width, height) per dataset, before cropping. */
export const RESIZE_DEFAULTS: Readonly<Record<string, [number, number]>> = {
  gta: [1280, 720],
  synthia: [1280, 760],
  cityscapes: [1024, 512],
  acdc: [960, 540],
  dark_zurich: [960, 540],
};

/** mmseg `Resize(keep_ratio=True)`: the largest scale that fits (long, short) edges of `scale`. */
export function keepRatioSize(width: number, height: number, scale: [number, number]): [number, number] {
  const [long, short] = [Math.max(...scale), Math.min(...scale)];
  const f = Math.min(long / Math.max(width, height), short / Math.min(width, height));
  return [Math.round(width * f), Math.round(height * f)];
}

export async function resize(sample: Sample, width: number, height: number): Promise<Sample> {
  if (sample.image.width === width && sample.image.height === height) return sample;
  const img = await sharp(sample.image.data, { raw: { width: sample.image.width, height: sample.image.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'linear' }).raw().toBuffer();
  const out: Sample = { image: { data: new Uint8Array(img), width, height } };
  if (sample.label) {
    // sharp turns a one-channel raw input into sRGB on output: take the one channel back
    const lab = await sharp(sample.label.data, { raw: { width: sample.label.width, height: sample.label.height, channels: 1 } })
      .resize(width, height, { fit: 'fill', kernel: 'nearest' }).extractChannel(0).raw().toBuffer();
    if (lab.length !== width * height) throw new Error(`label resize gave ${lab.length} values for ${width}×${height}`);
    out.label = { data: new Uint8Array(lab), width, height };
  }
  return out;
}

function cropArrays(sample: Sample, x: number, y: number, w: number, h: number): Sample {
  const { image } = sample;
  const data = new Uint8Array(w * h * 3);
  for (let r = 0; r < h; r++) {
    const src = ((y + r) * image.width + x) * 3;
    data.set(image.data.subarray(src, src + w * 3), r * w * 3);
  }
  const out: Sample = { image: { data, width: w, height: h } };
  if (sample.label) {
    const l = new Uint8Array(w * h);
    for (let r = 0; r < h; r++) {
      const src = (y + r) * sample.label.width + x;
      l.set(sample.label.data.subarray(src, src + w), r * w);
    }
    out.label = { data: l, width: w, height: h };
  }
  return out;
}

/**
 * Random crop of (w, h); with a label, retry up to 10 times until no single class covers more than
 * `catMaxRatio` of the labelled pixels (ignore excluded), as mmseg's RandomCrop.
 */
export function randomCrop(sample: Sample, w: number, h: number, rng: Rng, catMaxRatio = 0.75, ignoreIndex = 255): Sample {
  const W = sample.image.width;
  const H = sample.image.height;
  if (w > W || h > H) throw new Error(`crop ${w}×${h} is larger than the image ${W}×${H}: resize first`);
  const pick = () => [rng.int(W - w + 1), rng.int(H - h + 1)] as const;
  let [x, y] = pick();
  if (sample.label && catMaxRatio < 1) {
    for (let attempt = 0; attempt < 10; attempt++) {
      const counts = new Map<number, number>();
      let total = 0;
      for (let r = 0; r < h; r++) {
        const row = (y + r) * W + x;
        for (let c = 0; c < w; c++) {
          const v = sample.label.data[row + c];
          if (v === ignoreIndex) continue;
          counts.set(v, (counts.get(v) ?? 0) + 1);
          total++;
        }
      }
      if (counts.size > 1 && Math.max(...counts.values()) / total < catMaxRatio) break;
      [x, y] = pick();
    }
  }
  return cropArrays(sample, x, y, w, h);
}

export function horizontalFlip(sample: Sample, rng: Rng, p = 0.5): Sample {
  if (rng.next() >= p) return sample;
  const flipRows = (src: Uint8Array, width: number, height: number, ch: number) => {
    const out = new Uint8Array(src.length);
    for (let r = 0; r < height; r++) {
      for (let c = 0; c < width; c++) {
        const s = (r * width + c) * ch;
        const d = (r * width + (width - 1 - c)) * ch;
        for (let k = 0; k < ch; k++) out[d + k] = src[s + k];
      }
    }
    return out;
  };
  const { image, label } = sample;
  return {
    image: { ...image, data: flipRows(image.data, image.width, image.height, 3) },
    label: label && { ...label, data: flipRows(label.data, label.width, label.height, 1) },
  };
}

const clamp255 = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : v);

function rgbToHsv(r: number, g: number, b: number): [number, number, number] {
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const d = max - min;
  let h = 0;
  if (d > 0) {
    if (max === r) h = ((g - b) / d) % 6;
    else if (max === g) h = (b - r) / d + 2;
    else h = (r - g) / d + 4;
    h *= 60;
    if (h < 0) h += 360;
  }
  return [h, max === 0 ? 0 : d / max, max];
}

function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  const c = v * s;
  const x = c * (1 - Math.abs(((h / 60) % 2) - 1));
  const m = v - c;
  const [r, g, b] = h < 60 ? [c, x, 0] : h < 120 ? [x, c, 0] : h < 180 ? [0, c, x] : h < 240 ? [0, x, c] : h < 300 ? [x, 0, c] : [c, 0, x];
  return [r + m, g + m, b + m];
}

/**
 * mmseg's PhotoMetricDistortion: random brightness (±32), contrast ([0.5, 1.5]) before or after
 * saturation ([0.5, 1.5]) and hue (±18°), each applied with probability 1/2.
 */
export function photometricDistortion(image: RgbImage, rng: Rng): RgbImage {
  const px = new Float32Array(image.data);
  const brightness = rng.next() < 0.5 ? rng.uniform(-32, 32) : 0;
  const contrastFirst = rng.next() < 0.5;
  const contrast = rng.next() < 0.5 ? rng.uniform(0.5, 1.5) : 1;
  const saturation = rng.next() < 0.5 ? rng.uniform(0.5, 1.5) : 1;
  const hue = rng.next() < 0.5 ? rng.uniform(-18, 18) : 0;
  const applyContrast = () => {
    if (contrast !== 1) for (let i = 0; i < px.length; i++) px[i] = clamp255(px[i] * contrast);
  };
  if (brightness !== 0) for (let i = 0; i < px.length; i++) px[i] = clamp255(px[i] + brightness);
  if (contrastFirst) applyContrast();
  if (saturation !== 1 || hue !== 0) {
    for (let i = 0; i < px.length; i += 3) {
      const [h, s, v] = rgbToHsv(px[i], px[i + 1], px[i + 2]);
      const [r, g, b] = hsvToRgb((h + hue + 360) % 360, Math.min(1, s * saturation), v);
      px[i] = clamp255(r);
      px[i + 1] = clamp255(g);
      px[i + 2] = clamp255(b);
    }
  }
  if (!contrastFirst) applyContrast();
  return { ...image, data: Uint8Array.from(px, (v) => Math.round(v)) };
}

export const IMAGENET_MEAN = [123.675, 116.28, 103.53] as const;
export const IMAGENET_STD = [58.395, 57.12, 57.375] as const;

/** (x − mean) / std per channel, into `out` at `offset` (for batching without copies). */
export function normalize(image: RgbImage, out = new Float32Array(image.data.length), offset = 0): Float32Array {
  const d = image.data;
  for (let i = 0; i < d.length; i += 3) {
    out[offset + i] = (d[i] - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
    out[offset + i + 1] = (d[i + 1] - IMAGENET_MEAN[1]) / IMAGENET_STD[1];
    out[offset + i + 2] = (d[i + 2] - IMAGENET_MEAN[2]) / IMAGENET_STD[2];
  }
  return out;
}
