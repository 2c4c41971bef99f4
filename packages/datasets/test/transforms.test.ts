import test from 'ava';
import { Rng } from '@ir2f/core';
import { horizontalFlip, keepRatioSize, normalize, photometricDistortion, randomCrop, resize, type Sample } from '@ir2f/datasets';
import { gradientImage, labelMap } from './fixtures.js';

test('keep-ratio resize sizes follow mmseg (largest scale fitting the long and short edges)', (t) => {
  t.deepEqual(keepRatioSize(1914, 1052, [1280, 720]), [1280, 704]);
  t.deepEqual(keepRatioSize(2048, 1024, [1024, 512]), [1024, 512]);
});

test('resize: bilinear image, nearest label (no new label values)', async (t) => {
  const s = await resize({ image: gradientImage(16, 8), label: labelMap(16, 8, (x) => (x < 8 ? 2 : 13)) }, 8, 4);
  t.deepEqual([s.image.width, s.image.height, s.label!.width], [8, 4, 8]);
  t.is(s.image.data.length, 8 * 4 * 3);
  // one value per pixel, the left half 2 and the right half 13 (sharp once returned three channels here)
  t.deepEqual(Array.from(s.label!.data), Array.from({ length: 8 * 4 }, (_, i) => (i % 8 < 4 ? 2 : 13)));
});

test('random crop respects the max single-class ratio when a better crop exists', (t) => {
  // left 90% sky (10), right strip car (13): most crops are single-class
  const label = labelMap(100, 20, (x) => (x < 90 ? 10 : 13));
  const sample = { image: gradientImage(100, 20), label };
  /** Crops (of 50, same seed) where the car takes over a quarter of the pixels. */
  const mixedCrops = (catMaxRatio: number) => {
    const rng = new Rng(1);
    let mixed = 0;
    for (let i = 0; i < 50; i++) {
      const cars = randomCrop(sample, 20, 20, rng, catMaxRatio).label!.data.filter((v) => v === 13).length;
      if (cars > 0 && cars / 400 > 0.25) mixed++;
    }
    return mixed;
  };
  const mixed = mixedCrops(0.75);
  const mixedFree = mixedCrops(1);
  t.true(mixed > mixedFree * 2, `constrained ${mixed} vs free ${mixedFree}`);
  t.throws(() => randomCrop(sample, 200, 20, new Rng(1)));
});

test('crop and flip move image and label together', (t) => {
  const image = gradientImage(10, 4);
  const label = labelMap(10, 4, (x, y) => x + 10 * y);
  let s: Sample = { image, label };
  const rng = { next: () => 0 } as unknown as Rng; // always flip
  s = horizontalFlip(s, rng);
  t.is(s.label!.data[0], 9);
  t.deepEqual([...s.image.data.slice(0, 3)], [...image.data.slice(27, 30)]);
});

test('photometric distortion and normalisation are deterministic in the seed', (t) => {
  const img = gradientImage(12, 9);
  const a = photometricDistortion(img, new Rng(5));
  const b = photometricDistortion(img, new Rng(5));
  t.deepEqual(Buffer.from(a.data), Buffer.from(b.data));
  let differs = false;
  for (let s = 0; s < 5 && !differs; s++) differs = Buffer.compare(Buffer.from(photometricDistortion(img, new Rng(s)).data), Buffer.from(img.data)) !== 0;
  t.true(differs);
  const n = normalize({ data: new Uint8Array([124, 116, 104]), width: 1, height: 1 });
  t.true(Math.abs(n[0] - (124 - 123.675) / 58.395) < 1e-6);
});
