import test from 'ava';
import path from 'node:path';
import { readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import sharp from 'sharp';
import { initBackend } from '@ir2f/core';
import {
  CITYSCAPES_CLASSES, EMBEDDED_BENCHMARKS, EMBEDDED_DESCRIPTIONS, ensureBenchmark, loadSample, makeBenchmark, scanDataset, writePreviewGrid,
  type EmbeddedBenchmarkName,
} from '@ir2f/datasets';
import { evaluateToy, trainToyOn } from '../../../examples/toy/train-on-dataset.js';
import { tempDir } from './fixtures.js';

const small = { size: [64, 48] as [number, number], counts: { source: 40, targetTrain: 40, targetVal: 20 } };

/** The layouts each member is written in: [source, target val]. */
const LAYOUTS: Record<EmbeddedBenchmarkName, [string, string]> = {
  synth2real: ['gta', 'cityscapes'], day2night: ['cityscapes', 'dark_zurich'], camera: ['gta', 'cityscapes'], fog: ['cityscapes', 'acdc'],
  sensor: ['gta', 'cityscapes'], city19: ['gta', 'cityscapes'],
};

test('the family: every member is listed with a description and written in its layouts', (t) => {
  t.deepEqual([...EMBEDDED_BENCHMARKS].sort(), Object.keys(LAYOUTS).sort());
  for (const name of EMBEDDED_BENCHMARKS) t.true(EMBEDDED_DESCRIPTIONS[name].length > 20, name);
});

for (const name of EMBEDDED_BENCHMARKS) {
  test(`${name}: written in the real layouts, deterministic in the seed, read back by the same readers`, async (t) => {
    const { dir, cleanup } = await tempDir();
    try {
      const a = await makeBenchmark(name, path.join(dir, 'a'), { ...small, counts: { source: 6, targetTrain: 5, targetVal: 4 } });
      const b = await makeBenchmark(name, path.join(dir, 'b'), { ...small, counts: { source: 6, targetTrain: 5, targetVal: 4 } });
      const c = await makeBenchmark(name, path.join(dir, 'c'), { ...small, seed: 1, counts: { source: 6, targetTrain: 5, targetVal: 4 } });
      const src = await scanDataset(a.source);
      const train = await scanDataset(a.targetTrain, { labelled: false });
      const val = await scanDataset(a.targetVal);
      t.deepEqual([src.items.length, train.items.length, val.items.length], [6, 5, 4]);
      t.is(a.source.name.split(' ')[0], LAYOUTS[name][0]);
      t.is(a.targetVal.name.split(' ')[0], LAYOUTS[name][1]);
      const rel = (ds: typeof src, i: number) => path.relative(a.root, ds.items[i].image);
      const bytes = (root: string, p: string) => readFile(path.join(root, p));
      t.deepEqual(await bytes(a.root, rel(src, 3)), await bytes(b.root, rel(src, 3)));
      t.deepEqual(await bytes(a.root, rel(val, 1)), await bytes(b.root, rel(val, 1)));
      t.notDeepEqual(await bytes(a.root, rel(val, 1)), await bytes(c.root, rel(val, 1)));
      // labels hold only the benchmark's classes, and several of them
      const seen = new Set<number>();
      for (const item of [...src.items, ...val.items]) for (const v of (await loadSample(item)).label!.data) seen.add(v);
      t.true([...seen].every((v) => a.classes.includes(v)), `classes ${[...seen]}`);
      t.true(seen.size >= 6, `only ${[...seen].map((v) => CITYSCAPES_CLASSES[v])}`);
      if (name === 'city19') {
        t.is(a.classes.length, 19);
        // the thin classes are there: poles, traffic lights and signs
        for (const thin of [5, 6, 7]) t.true(seen.has(thin), `no ${CITYSCAPES_CLASSES[thin]} in ${[...seen].map((v) => CITYSCAPES_CLASSES[v])}`);
      }
      const img = (await loadSample(val.items[0])).image;
      t.deepEqual([img.width, img.height], [64, 48]);
    } finally {
      await cleanup();
    }
  });
}

test('generation refuses a non-empty folder, and ensureBenchmark caches', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    await mkdir(path.join(dir, 'full'));
    await writeFile(path.join(dir, 'full', 'x.txt'), 'mine');
    const err = await t.throwsAsync(makeBenchmark('synth2real', path.join(dir, 'full'), small));
    t.regex(err!.message, /not empty/);
    t.is(await readFile(path.join(dir, 'full', 'x.txt'), 'utf8'), 'mine');
    await t.throwsAsync(makeBenchmark('nope' as never, path.join(dir, 'n')), { message: /available: synth2real, day2night, camera, fog, sensor, city19/ });
    const opts = { ...small, counts: { source: 3, targetTrain: 3, targetVal: 2 }, cacheDir: dir };
    const first = await ensureBenchmark('day2night', opts);
    const m1 = (await stat(path.join(first.root, 'manifest.json'))).mtimeMs;
    const second = await ensureBenchmark('day2night', opts);
    t.is(second.root, first.root);
    t.is((await stat(path.join(second.root, 'manifest.json'))).mtimeMs, m1);
  } finally {
    await cleanup();
  }
});

test('the preview grid is a PNG of 4 columns (source, label, target, label)', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const b = await makeBenchmark('synth2real', path.join(dir, 'b'), { ...small, counts: { source: 4, targetTrain: 2, targetVal: 4 } });
    await writePreviewGrid(b, path.join(dir, 'preview.png'), 3, 2);
    const meta = await sharp(path.join(dir, 'preview.png')).metadata();
    t.is(meta.format, 'png');
    t.is(meta.width, 4 * 128 + 5 * 4);
    t.is(meta.height, 3 * 96 + 2 * 4);
  } finally {
    await cleanup();
  }
});

test('the domain shift is real: a tiny model trained on source loses clearly on target val against one trained on target labels', async (t) => {
  await initBackend('wasm');
  const { dir, cleanup } = await tempDir();
  try {
    for (const name of EMBEDDED_BENCHMARKS) {
      const b = await makeBenchmark(name, path.join(dir, name), small);
      const [src, tgt, val] = await Promise.all([scanDataset(b.source), scanDataset(b.targetTrain), scanDataset(b.targetVal)]);
      const sourceOnly = await trainToyOn(src, { steps: 80, seed: 1 });
      const oracle = await trainToyOn(tgt, { steps: 80, seed: 1 });
      const so = await evaluateToy(sourceOnly, val, b.classes);
      const or = await evaluateToy(oracle, val, b.classes);
      t.log(`${name}: source-only ${(so.miou * 100).toFixed(1)} vs target oracle ${(or.miou * 100).toFixed(1)} mIoU on target val`);
      t.true(or.miou - so.miou > 0.1, `${name}: gap ${((or.miou - so.miou) * 100).toFixed(1)} points`);
      sourceOnly.dispose();
      oracle.dispose();
    }
  } finally {
    await cleanup();
  }
});
