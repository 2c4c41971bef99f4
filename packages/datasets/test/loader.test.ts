import test from 'ava';
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { RxEventBus, type Ir2fEvent, type Rng } from '@ir2f/core';
import { createLoader, gta5, horizontalFlip, randomCrop, scanDataset, sequentialSampler, type Sample } from '@ir2f/datasets';
import { tempDir, writePair } from './fixtures.js';

const crop = (s: Sample, rng: Rng) => horizontalFlip(randomCrop(s, 6, 4, rng), rng);

test('batches have the right shapes and are identical for a seed, whatever the decode concurrency', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    for (let i = 0; i < 10; i++) await writePair(path.join(dir, `gta/images/${i}.png`), path.join(dir, `gta/labels/${i}_labelTrainIds.png`));
    const ds = await scanDataset(gta5(path.join(dir, 'gta')));
    const run = async (concurrency: number) => {
      const out: string[] = [];
      for await (const b of createLoader(ds, { batchSize: 3, transform: crop, seed: 9, concurrency, maxBatches: 4 })) {
        t.is(b.images.length, 3 * 4 * 6 * 3);
        t.is(b.labels!.length, 3 * 4 * 6);
        out.push(b.ids.join(',') + ':' + Buffer.from(b.labels!).toString('hex') + ':' + b.images.slice(0, 8).join(','));
      }
      return out;
    };
    const a = await run(1);
    t.deepEqual(await run(6), a);
    t.is(a.length, 4);
  } finally {
    await cleanup();
  }
});

test('a corrupt image is reported by a warning and skipped, or fails the run, by option', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    for (let i = 0; i < 4; i++) await writePair(path.join(dir, `gta/images/${i}.png`), path.join(dir, `gta/labels/${i}_labelTrainIds.png`));
    await writeFile(path.join(dir, 'gta/images/2.png'), 'garbage');
    const ds = await scanDataset(gta5(path.join(dir, 'gta')));
    const warnings: string[] = [];
    const bus = new RxEventBus();
    const events: Ir2fEvent[] = [];
    bus.events$.subscribe((e) => events.push(e));
    const loader = createLoader(ds, {
      batchSize: 2, sampler: sequentialSampler(4), onCorrupt: 'skip', maxBatches: 3, onWarning: (w) => warnings.push(w.message), bus,
    });
    const ids: string[] = [];
    for await (const b of loader) ids.push(...b.ids);
    t.false(ids.includes('2'));
    t.true(warnings.length >= 1);
    t.regex(warnings[0], /2\.png.*skipped/);
    t.true(loader.stats.skipped >= 1);
    t.true(events.some((e) => e.type === 'warning' && e.code === 'CORRUPT_IMAGE' && /2\.png/.test(e.message)));
    const failing = createLoader(ds, { batchSize: 2, sampler: sequentialSampler(4), maxBatches: 3 });
    const err = await t.throwsAsync(async () => {
      for await (const b of failing) void b;
    });
    t.regex(err!.message, /2\.png/);
    // all corrupt: skipping cannot go on forever
    for (let i = 0; i < 4; i++) await writeFile(path.join(dir, `gta/images/${i}.png`), 'garbage');
    const hopeless = createLoader(ds, { batchSize: 2, onCorrupt: 'skip', maxBatches: 1 });
    await t.throwsAsync(async () => {
      for await (const b of hopeless) void b;
    }, { message: /every file of dataset 'gta' drawn in a row was corrupt/ });
  } finally {
    await cleanup();
  }
});

test('memory stays bounded over 2,000 files: samples in flight never exceed the prefetch bound, RSS does not grow', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const root = path.join(dir, 'gta');
    for (let i = 0; i < 2000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, k) =>
        writePair(path.join(root, `images/${i + k}.png`), path.join(root, `labels/${i + k}_labelTrainIds.png`), 16, 12)));
    }
    const ds = await scanDataset(gta5(root));
    t.is(ds.items.length, 2000);
    const loader = createLoader(ds, { batchSize: 8, prefetch: 2, concurrency: 4, sampler: sequentialSampler(2000), maxBatches: 250 });
    const rss: number[] = [];
    let n = 0;
    for await (const b of loader) {
      n += b.batchSize;
      if (n % 200 === 0) {
        global.gc?.();
        rss.push(process.memoryUsage().rss);
      }
    }
    t.is(n, 2000);
    t.true(loader.stats.maxInFlight <= 16);
    const early = Math.max(...rss.slice(0, 3));
    const late = Math.max(...rss.slice(-3));
    t.true(late - early < 40 * 2 ** 20, `RSS grew ${((late - early) / 2 ** 20).toFixed(1)} MiB from 600 to 2000 files`);
  } finally {
    await cleanup();
  }
});
