import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  CITYSCAPES_IDS, CITYSCAPES_LABELS, CITYSCAPES_TRAIN_IDS, readLabel, readRgb, SYNTHIA_16, writeIndexedPng, writeRgbPng,
} from '@ir2f/datasets';
import { gradientImage, labelMap, tempDir, writeSynthiaLabel } from './fixtures.js';

test('RGB and palettised, gray and 16-bit label PNGs round-trip to train ids', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const img = gradientImage(10, 7);
    await writeRgbPng(path.join(dir, 'a.png'), img);
    const back = await readRgb(path.join(dir, 'a.png'));
    t.deepEqual([back.width, back.height], [10, 7]);
    t.deepEqual(Buffer.from(back.data), Buffer.from(img.data));

    const palette: [number, number, number][] = [];
    for (const l of CITYSCAPES_LABELS) palette[l.id] = l.color;
    await writeIndexedPng(path.join(dir, 'gta.png'), labelMap(10, 7, (x) => (x < 5 ? 7 : 26)), palette);
    const gta = await readLabel(path.join(dir, 'gta.png'), CITYSCAPES_IDS);
    t.is(gta.data[0], 0);
    t.is(gta.data[9], 13);

    await writeSynthiaLabel(path.join(dir, 'syn.png'), 4, 2, (x) => [3, 8, 0, 21][x]);
    const syn = await readLabel(path.join(dir, 'syn.png'), SYNTHIA_16);
    t.deepEqual([...syn.data.slice(0, 4)], [0, 13, 255, 3]);
  } finally {
    await cleanup();
  }
});

test('label values outside the spec: an error naming values and counts, or ignore with counts reported', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const { writeGrayPng } = await import('@ir2f/datasets');
    await writeGrayPng(path.join(dir, 'l.png'), labelMap(4, 4, (x, y) => (x === 0 && y < 3 ? 40 : 1)));
    const err = await t.throwsAsync(readLabel(path.join(dir, 'l.png'), CITYSCAPES_TRAIN_IDS));
    t.regex(err!.message, /l\.png/);
    t.regex(err!.message, /40 \(3 px\)/);
    t.regex(err!.message, /outOfSpec: 'ignore'/);
    const ok = await readLabel(path.join(dir, 'l.png'), CITYSCAPES_TRAIN_IDS, 'ignore');
    t.is(ok.outOfSpec.get(40), 3);
    t.is(ok.data[0], 255);
    t.is(ok.data[1], 1);
  } finally {
    await cleanup();
  }
});

test('a corrupt or truncated image is an error naming the file', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeFile(path.join(dir, 'junk.png'), 'not an image at all');
    const e1 = await t.throwsAsync(readRgb(path.join(dir, 'junk.png')));
    t.regex(e1!.message, /junk\.png/);
    t.is((e1 as { code?: string }).code, 'CORRUPT_IMAGE');
    await writeRgbPng(path.join(dir, 'ok.png'), gradientImage(64, 64));
    const { readFile } = await import('node:fs/promises');
    const bytes = await readFile(path.join(dir, 'ok.png'));
    await writeFile(path.join(dir, 'cut.png'), bytes.subarray(0, Math.floor(bytes.length / 2)));
    const e2 = await t.throwsAsync(readRgb(path.join(dir, 'cut.png')));
    t.regex(e2!.message, /cut\.png/);
    const e3 = await t.throwsAsync(readLabel(path.join(dir, 'cut.png'), CITYSCAPES_TRAIN_IDS));
    t.regex(e3!.message, /cut\.png/);
  } finally {
    await cleanup();
  }
});
