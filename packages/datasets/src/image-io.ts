/**
 * Image and label-map IO. Images decode with sharp to 8-bit RGB. Label maps decode with fast-png, which
 * keeps palette indices (GTA5's labels are palettised PNGs whose index is the Cityscapes id) and 16-bit
 * values (SYNTHIA's GT/LABELS hold the class id in the first channel of a 16-bit PNG); sharp would
 * expand both to colours.
 */
import { promises as fs } from 'node:fs';
import { decode as decodePng, encode as encodePng } from 'fast-png';
import sharp from 'sharp';
import { Ir2fError, writeAtomic } from '@ir2f/core';
import { lookupTable, type LabelSpec } from './label-specs.js';

export interface RgbImage {
  /** HWC, RGB, 8 bit. */
  data: Uint8Array;
  width: number;
  height: number;
}

export interface LabelMap {
  /** HW training ids (255 = ignore). */
  data: Uint8Array;
  width: number;
  height: number;
}

export type OutOfSpecPolicy = 'error' | 'ignore';

export interface LabelReadResult extends LabelMap {
  /** Raw values outside the spec and their pixel counts (mapped to ignore under the 'ignore' policy). */
  outOfSpec: Map<number, number>;
}

function corrupt(file: string, err: unknown): Ir2fError {
  return new Ir2fError('CORRUPT_IMAGE',
    `cannot decode image ${file}: ${(err as Error).message}. The file is corrupt or truncated: ` +
    're-extract or re-download it (or leave such files out: --set data.onCorrupt="skip")', { cause: err });
}

export async function readRgb(file: string): Promise<RgbImage> {
  try {
    const { data, info } = await sharp(file, { failOn: 'truncated' })
      .removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels, got ${info.channels}`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw err;
    throw corrupt(file, err);
  }
}

/**
 * Decode a label PNG to raw values: the first channel (the palette index for palettised files), or with
 * `color` each pixel's colour packed as 0xRRGGBB (palettised files through their palette).
 */
export async function readRawLabel(file: string, opts: { color?: boolean } = {}): Promise<{ values: Uint16Array | Uint8Array | Uint32Array; width: number; height: number }> {
  const bytes = await fs.readFile(file);
  let png;
  try {
    png = decodePng(bytes);
  } catch (err) {
    throw corrupt(file, err);
  }
  const { width, height, channels } = png;
  const src = png.data as Uint8Array | Uint16Array;
  if (src.length < width * height * channels) throw corrupt(file, new Error('pixel data is shorter than the image'));
  if (opts.color) {
    const values = new Uint32Array(width * height);
    const shift = src instanceof Uint16Array ? 8 : 0;
    if (png.palette) {
      const pal = png.palette.map((c) => (c[0] << 16) | (c[1] << 8) | c[2]);
      for (let i = 0; i < values.length; i++) values[i] = pal[src[i]] ?? 0xff000000;
    } else if (channels >= 3) {
      for (let i = 0; i < values.length; i++) {
        const o = i * channels;
        values[i] = ((src[o] >> shift) << 16) | ((src[o + 1] >> shift) << 8) | (src[o + 2] >> shift);
      }
    } else {
      throw new Ir2fError('LABEL_OUT_OF_SPEC', `label ${file} has ${channels} channel(s) but its spec reads colours: save it as RGB, or use encoding 'index' in the spec`);
    }
    return { values, width, height };
  }
  if (channels === 1) return { values: src, width, height };
  const values = src instanceof Uint16Array ? new Uint16Array(width * height) : new Uint8Array(width * height);
  for (let i = 0; i < values.length; i++) values[i] = src[i * channels];
  return { values, width, height };
}

const showRgb = (v: number) => (v > 0xffffff ? 'a colour outside the palette' : `[${v >> 16}, ${(v >> 8) & 255}, ${v & 255}]`);

/** Read a label map and convert it to training ids through `spec` (its colour table for RGB-coded labels). */
export async function readLabel(file: string, spec: LabelSpec, policy: OutOfSpecPolicy = 'error'): Promise<LabelReadResult> {
  const colors = spec.colorToTrainId;
  const { values, width, height } = await readRawLabel(file, { color: !!colors });
  const lut = colors ? undefined : lookupTable(spec);
  const data = new Uint8Array(values.length);
  const outOfSpec = new Map<number, number>();
  for (let i = 0; i < values.length; i++) {
    const t = colors ? colors.get(values[i]) ?? -1 : lut![values[i]];
    if (t < 0) {
      outOfSpec.set(values[i], (outOfSpec.get(values[i]) ?? 0) + 1);
      data[i] = spec.ignoreIndex;
    } else {
      data[i] = t;
    }
  }
  if (outOfSpec.size > 0 && policy === 'error') {
    const list = [...outOfSpec].slice(0, 8).map(([v, n]) => `${colors ? showRgb(v) : v} (${n} px)`).join(', ');
    throw new Ir2fError('LABEL_OUT_OF_SPEC',
      `label ${file} has ${colors ? 'colours' : 'values'} outside the '${spec.name}' spec: ${list}. ` +
      (colors ? 'Add them to the spec\'s classes or ignoreColors' : 'Check that the dataset matches the reader (e.g. *_labelTrainIds vs *_labelIds), or add them to the spec') +
      `, or pass outOfSpec: 'ignore' to map them to ${spec.ignoreIndex}`);
  }
  return { data, width, height, outOfSpec };
}

export async function writeRgbPng(file: string, img: RgbImage): Promise<void> {
  const png = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png().toBuffer();
  await writeAtomic(file, png);
}

/** 8-bit single-channel PNG (e.g. `_labelTrainIds.png`). */
export async function writeGrayPng(file: string, map: { data: Uint8Array; width: number; height: number }): Promise<void> {
  await writeAtomic(file, encodePng({ width: map.width, height: map.height, data: map.data, channels: 1, depth: 8 }));
}

/** Palettised PNG whose indices are `map.data` (how GTA5 stores its Cityscapes-id labels). */
export async function writeIndexedPng(
  file: string, map: { data: Uint8Array; width: number; height: number }, palette: readonly [number, number, number][],
): Promise<void> {
  const full: [number, number, number][] = Array.from({ length: 256 }, (_, i) => palette[i] ?? [0, 0, 0]);
  await writeAtomic(file, encodePng({
    width: map.width, height: map.height, data: map.data, channels: 1, depth: 8, palette: full,
  }));
}

/** Colourise training ids with a palette (ignore → black). */
export function colorize(map: LabelMap, palette: readonly [number, number, number][]): RgbImage {
  const out = new Uint8Array(map.width * map.height * 3);
  for (let i = 0; i < map.data.length; i++) {
    const c = palette[map.data[i]];
    if (!c) continue;
    out[i * 3] = c[0];
    out[i * 3 + 1] = c[1];
    out[i * 3 + 2] = c[2];
  }
  return { data: out, width: map.width, height: map.height };
}
