/** The data check before step 1: each kind of broken file is named with its fix; a clean set passes with counts. */
import test from 'ava';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { checkDataset, makeBenchmark, scanDataset, writeIndexedPng, type EmbeddedBenchmark } from '@ir2f/datasets';

let dir = '';
let bench: EmbeddedBenchmark;

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-check-'));
  bench = await makeBenchmark('synth2real', path.join(dir, 'clean'), { size: [32, 32], counts: { source: 3, targetTrain: 2, targetVal: 2 } });
});

test.after.always(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a clean benchmark passes with its counts and progress', async (t) => {
  const seen: number[] = [];
  const src = await checkDataset(await scanDataset(bench.source), { numClasses: 19, onProgress: (d, n) => seen.push(d / n) });
  t.like(src, { images: 3, labels: 3, skipped: [], problems: [] });
  t.true(src.labelledPixels > 0);
  t.is(src.classPixels.reduce((a, b) => a + b, 0), src.labelledPixels);
  t.true(src.classImages.every((n) => n <= 3));
  t.deepEqual(seen, [1 / 3, 2 / 3, 1]);
  const tgt = await checkDataset(await scanDataset(bench.targetTrain, { labelled: false }), { numClasses: 19 });
  t.like(tgt, { images: 2, labels: 0, labelledPixels: 0, skipped: [] });
});

test('onCorrupt skip: an unreadable pair is listed and left out, the rest checked', async (t) => {
  const { ds } = await broken('skip', (_l, i) => writeFile(i, 'garbage'));
  const r = await checkDataset(ds, { numClasses: 19, onCorrupt: 'skip' });
  t.is(r.images, 2);
  t.deepEqual(r.skipped.map((s) => s.id), [ds.items[0].id]);
  t.regex(r.skipped[0].reason, /cannot read the header/);
  // a label that decodes but breaks the spec is not "corrupt": it still stops the check
  const { ds: bad } = await broken('skip-spec', (l) => writeIndexedPng(l, { data: new Uint8Array(32 * 32).fill(200), width: 32, height: 32 }, [[0, 0, 0]]));
  await t.throwsAsync(checkDataset(bad, { numClasses: 19, onCorrupt: 'skip' }), { message: /outside the 'gta5' spec/ });
});

/** A copy of the source split with its first label (or image) replaced by `write`. */
async function broken(name: string, write: (label: string, image: string) => Promise<void>) {
  const root = path.join(dir, name);
  await makeBenchmark('synth2real', root, { size: [32, 32], counts: { source: 3, targetTrain: 2, targetVal: 2 } });
  const ds = await scanDataset({ ...bench.source, root: path.join(root, 'gta') });
  await write(ds.items[0].label!, ds.items[0].image);
  return { ds, label: ds.items[0].label!, image: ds.items[0].image };
}

test('each broken file stops the check naming the file and the fix', async (t) => {
  const cases: [string, (label: string, image: string) => Promise<void>, RegExp][] = [
    ['empty-label', (l) => writeFile(l, ''), /label .*00000\.png is empty \(0 bytes\): re-extract/],
    ['empty-image', (_l, i) => writeFile(i, ''), /00000\.png is empty \(0 bytes\)/],
    ['garbage-image', (_l, i) => writeFile(i, 'not a png at all'), /cannot read the header of .*00000\.png .*corrupt or not an image/],
    ['size', (l) => writeIndexedPng(l, { data: new Uint8Array(16 * 12), width: 16, height: 12 }, [[0, 0, 0]]), /is 16×12 but its image .* is 32×32: image and label must be the same size/],
    ['out-of-spec', (l) => writeIndexedPng(l, { data: new Uint8Array(32 * 32).fill(200), width: 32, height: 32 }, [[0, 0, 0]]), /values outside the 'gta5' spec: 200/],
    ['rgba', (l) => sharp(Buffer.alloc(32 * 32 * 4, 7), { raw: { width: 32, height: 32, channels: 4 } }).png().toFile(l).then(() => undefined),
      /has 4 channels \(RGBA\); 'gta5' labels are single-channel id images .*convert it/],
  ];
  for (const [name, write, message] of cases) {
    const { ds } = await broken(name, write);
    const err = await t.throwsAsync(checkDataset(ds, { numClasses: 19 }));
    t.regex(err!.message, message, name);
  }
});

test('train ids beyond the model\'s classes, and a scored split with nothing to score', async (t) => {
  const err = await t.throwsAsync(checkDataset(await scanDataset(bench.source), { numClasses: 3 }));
  t.regex(err!.message, /holds train id \d+ \('\w+'\) and the model has 3 classes: set model\.numClasses to 19/);
  const root = path.join(dir, 'ignored');
  await mkdir(root, { recursive: true });
  const val = await scanDataset(bench.targetVal);
  const spec = val.items[0].labelSpec!;
  // a raw value the spec maps to ignore
  const raw = [...spec.rawToTrainId].find(([, id]) => id === spec.ignoreIndex)![0];
  const items = [];
  for (const [i, item] of val.items.entries()) {
    const [image, label] = [path.join(root, `${i}.png`), path.join(root, `${i}_label.png`)];
    await copyFile(item.image, image);
    await writeIndexedPng(label, { data: new Uint8Array(32 * 32).fill(raw), width: 32, height: 32 }, [[0, 0, 0]]);
    items.push({ ...item, image, label });
  }
  const none = await t.throwsAsync(checkDataset({ ...val, items }, { numClasses: 19, scored: true }));
  t.regex(none!.message, /every pixel of its 2 labels is ignore \(255\): there is nothing to score/);
  // the same split unscored (a source) passes
  t.is((await checkDataset({ ...val, items }, { numClasses: 19 })).labelledPixels, 0);
});
