/**
 * A preview grid PNG of a benchmark: per row, a source image, its label, a target (val) image and its label,
 * labels in the Cityscapes palette, scaled ×2 with nearest-neighbour so pixels stay visible.
 */
import sharp from 'sharp';
import { writeAtomic } from '@ir2f/core';
import { colorize, readLabel, readRgb, type RgbImage } from '../image-io.js';
import { CITYSCAPES_PALETTE } from '../label-specs.js';
import { scanDataset } from '../layouts.js';
import type { EmbeddedBenchmark } from './benchmarks.js';

export async function writePreviewGrid(bench: EmbeddedBenchmark, file: string, rows = 4, scale = 2): Promise<void> {
  const source = await scanDataset(bench.source);
  const target = await scanDataset(bench.targetVal);
  const tiles: RgbImage[][] = [];
  for (let r = 0; r < rows; r++) {
    const row: RgbImage[] = [];
    for (const ds of [source, target]) {
      const item = ds.items[r % ds.items.length];
      row.push(await readRgb(item.image));
      const label = await readLabel(item.label!, item.labelSpec!, 'ignore');
      row.push(colorize(label, CITYSCAPES_PALETTE));
    }
    tiles.push(row);
  }
  await writeImageGrid(file, tiles, { scale, groupEvery: 2 });
}

/**
 * Tiles (rows of equally sized images) into one PNG, each scaled by `scale` (nearest, so label maps stay
 * crisp), with a wider gap after every `groupEvery` columns.
 */
export async function writeImageGrid(file: string, tiles: RgbImage[][], opts: { scale?: number; gap?: number; groupEvery?: number } = {}): Promise<void> {
  await writeAtomic(file, await imageGridPng(tiles, opts));
}

/** `writeImageGrid`'s PNG, in memory. */
export async function imageGridPng(tiles: RgbImage[][], opts: { scale?: number; gap?: number; groupEvery?: number } = {}): Promise<Buffer> {
  const scale = opts.scale ?? 2;
  const gap = opts.gap ?? 4;
  const group = opts.groupEvery ?? 0;
  const w = tiles[0][0].width * scale;
  const h = tiles[0][0].height * scale;
  const cols = Math.max(...tiles.map((r) => r.length));
  const left = (c: number) => c * (w + gap) + (group > 0 ? Math.floor(c / group) * gap * 2 : 0);
  const composites = await Promise.all(tiles.flatMap((row, r) => row.map(async (img, c) => ({
    input: await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
      .resize(w, h, { kernel: 'nearest' }).png().toBuffer(),
    left: left(c),
    top: r * (h + gap),
  }))));
  return sharp({
    create: { width: left(cols - 1) + w, height: tiles.length * (h + gap) - gap, channels: 3, background: { r: 255, g: 255, b: 255 } },
  }).composite(composites).png().toBuffer();
}
