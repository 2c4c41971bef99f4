import test from 'ava';
import path from 'node:path';
import { stat } from 'node:fs/promises';
import { Rng } from '@ir2f/core';
import { classStats, gta5, rareClassSampler, scanDataset } from '@ir2f/datasets';
import { tempDir, writePair } from './fixtures.js';

test('class statistics are cached next to the data and recomputed when the file list changes', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const root = path.join(dir, 'gta');
    for (let i = 0; i < 3; i++) await writePair(path.join(root, `images/${i}.png`), path.join(root, `labels/${i}_labelTrainIds.png`));
    const ds = await scanDataset(gta5(root));
    const first = await classStats(ds, 19);
    t.false(first.fromCache);
    t.is(first.counts.length, 3);
    t.is(first.counts[0][0], 24); // 8×6 image, left half class 0
    t.is(first.counts[0][13], 24);
    t.truthy(first.cachePath?.startsWith(root));
    t.truthy(await stat(first.cachePath!));
    const again = await classStats(ds, 19);
    t.true(again.fromCache);
    t.deepEqual(again.counts, first.counts);
    await writePair(path.join(root, 'images/3.png'), path.join(root, 'labels/3_labelTrainIds.png'), 8, 6, () => 2);
    const changed = await classStats(await scanDataset(gta5(root)), 19);
    t.false(changed.fromCache);
    t.is(changed.counts.length, 4);
  } finally {
    await cleanup();
  }
});

test('rare-class sampling draws rare classes far more often than their pixel share', (t) => {
  // 20 images: all have class 0 in bulk; one image also has a few pixels of class 5
  const counts = Array.from({ length: 20 }, (_, i) => {
    const row = new Array(19).fill(0);
    row[0] = 1000;
    row[2] = 500;
    if (i === 7) row[5] = 10;
    return row;
  });
  const sampler = rareClassSampler({ numClasses: 19, counts }, { temperature: 0.01 });
  t.true(sampler.freq[5] < 0.001);
  t.true(sampler.classProbs[5] > sampler.classProbs[0]);
  t.is(sampler.classProbs[7], 0); // absent class never drawn
  const rng = new Rng(0);
  let hits = 0;
  for (let i = 0; i < 1000; i++) if (sampler.sample(rng).index === 7) hits++;
  t.true(hits > 300, `image with the rare class drawn ${hits}/1000 times`);
});
