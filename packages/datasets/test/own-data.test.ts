/** Your own data: label-spec files, the folder layout, joining a target's classes to the source's, and the collecting data check. */
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import {
  checkDataset, folder, folderSplits, IGNORE_INDEX, joinLabelSpecs, labelSpecFromObject, loadSample, readLabel, readLabelSpecFile, scanDataset,
  writeGrayPng, writeIndexedPng, writeRgbPng,
} from '@ir2f/datasets';
import { gradientImage, labelMap, tempDir } from './fixtures.js';

const PALETTE_SPEC = {
  name: 'forest', encoding: 'palette',
  classes: [{ name: 'ground', color: [120, 80, 40] }, { name: 'tree', color: [30, 120, 30] }, { name: 'water', color: [40, 90, 200] }],
  ignoreColors: [[0, 0, 0]],
};

test('spec validation: each mistake is named (unknown key, duplicate id, colour used twice, eval class not listed, duplicate name, missing colour)', (t) => {
  const cases: [unknown, RegExp][] = [
    [{ classes: [{ name: 'a' }], colour: 1 }, /Unrecognized key.*colour/],
    [{ classes: [{ name: 'a', idx: 1 }] }, /Unrecognized key.*idx/],
    [{ classes: [{ name: 'a', id: 3 }, { name: 'b', id: 3 }] }, /raw id\(s\) used by two classes: 3/],
    [{ classes: [{ name: 'a', id: 255 }] }, /ignore value\(s\) 255 are also class ids/],
    [{ encoding: 'palette', classes: [{ name: 'a', color: [1, 2, 3] }, { name: 'b', color: [1, 2, 3] }] }, /colour used twice: \[1, 2, 3\] \(class 'a' and class 'b'\)/],
    [{ ...PALETTE_SPEC, ignoreColors: [[30, 120, 30]] }, /colour used twice: \[30, 120, 30\] \(class 'tree' and ignoreColors\)/],
    [{ classes: [{ name: 'a' }, { name: 'b' }], evalClasses: ['a', 'c'] }, /evalClasses name\(s\) not among the classes: c/],
    [{ classes: [{ name: 'a' }, { name: 'a' }] }, /class name\(s\) listed twice: a/],
    [{ encoding: 'palette', classes: [{ name: 'a', color: [1, 2, 3] }, { name: 'b' }] }, /needs a color for every class; missing for b/],
    [{ classes: [] }, /classes/],
    [{ classes: [{ name: 'a', color: [1, 2, 300] }] }, /color/],
  ];
  for (const [raw, message] of cases) {
    const err = t.throws(() => labelSpecFromObject(raw, 'spec.yaml'));
    t.is((err as { code?: string }).code, 'INVALID_LABEL_SPEC');
    t.regex(err!.message, /^label spec spec\.yaml:/);
    t.regex(err!.message, message);
  }
  const ok = labelSpecFromObject({ classes: [{ name: 'a', id: 7 }, { name: 'b' }], evalClasses: ['b'] });
  t.deepEqual([...ok.rawToTrainId], [[7, 0], [1, 1], [255, IGNORE_INDEX]]);
  t.deepEqual(ok.evalClasses, [1]);
  t.is(ok.palette.length, 2, 'display colours for classes without one');
  t.notDeepEqual(ok.palette[0], ok.palette[1]);
});

test('spec files: YAML and JSON read alike; a missing or unparsable file is named', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeFile(path.join(dir, 's.yaml'), 'encoding: palette\nclasses:\n  - { name: ground, color: [120, 80, 40] }\n  - { name: tree, color: [30, 120, 30] }\n');
    await writeFile(path.join(dir, 's.json'), JSON.stringify({ encoding: 'palette', classes: PALETTE_SPEC.classes.slice(0, 2) }));
    await writeFile(path.join(dir, 'bad.yaml'), 'classes: [ { name: a\n');
    const [y, j] = [readLabelSpecFile(path.join(dir, 's.yaml')), readLabelSpecFile(path.join(dir, 's.json'))];
    t.deepEqual(y.classes, j.classes);
    t.deepEqual([...y.colorToTrainId!], [...j.colorToTrainId!]);
    t.regex(t.throws(() => readLabelSpecFile(path.join(dir, 'none.yaml')))!.message, /label spec .*none\.yaml does not exist/);
    t.regex(t.throws(() => readLabelSpecFile(path.join(dir, 'bad.yaml')))!.message, /label spec .*bad\.yaml: cannot parse/);
  } finally {
    await cleanup();
  }
});

test('both label encodings read into train ids: RGB colours (and a palettised PNG) through the palette, raw ids through the id table', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const spec = labelSpecFromObject(PALETTE_SPEC);
    const colours = [[120, 80, 40], [30, 120, 30], [40, 90, 200], [0, 0, 0]];
    const rgb = new Uint8Array(4 * 3);
    colours.forEach((c, i) => rgb.set(c, i * 3));
    await writeRgbPng(path.join(dir, 'rgb.png'), { data: rgb, width: 4, height: 1 });
    t.deepEqual([...(await readLabel(path.join(dir, 'rgb.png'), spec)).data], [0, 1, 2, IGNORE_INDEX]);
    await writeIndexedPng(path.join(dir, 'pal.png'), { data: Uint8Array.from([2, 1, 0, 3]), width: 4, height: 1 }, colours as [number, number, number][]);
    t.deepEqual([...(await readLabel(path.join(dir, 'pal.png'), spec)).data], [2, 1, 0, IGNORE_INDEX]);
    // an RGBA label reads its colours too
    await sharp(Buffer.from([120, 80, 40, 255, 40, 90, 200, 255]), { raw: { width: 2, height: 1, channels: 4 } }).png().toFile(path.join(dir, 'rgba.png'));
    t.deepEqual([...(await readLabel(path.join(dir, 'rgba.png'), spec)).data], [0, 2]);
    rgb.set([9, 9, 9], 0);
    await writeRgbPng(path.join(dir, 'off.png'), { data: rgb, width: 4, height: 1 });
    t.regex((await t.throwsAsync(readLabel(path.join(dir, 'off.png'), spec)))!.message, /colours outside the 'forest' spec: \[9, 9, 9\] \(1 px\)/);
    await writeGrayPng(path.join(dir, 'ids.png'), { data: Uint8Array.from([10, 20, 0]), width: 3, height: 1 });
    const ids = labelSpecFromObject({ classes: [{ name: 'a', id: 10 }, { name: 'b', id: 20 }], ignore: [0] });
    t.deepEqual([...(await readLabel(path.join(dir, 'ids.png'), ids)).data], [0, 1, IGNORE_INDEX]);
    // a grey label under a colour spec is named with the fix
    t.regex((await t.throwsAsync(readLabel(path.join(dir, 'ids.png'), spec)))!.message, /1 channel\(s\) but its spec reads colours/);
  } finally {
    await cleanup();
  }
});

test('joining a target spec to the source: renamed classes by mapping, equal names by name, a class the target lacks leaves its mIoU, null is unscored', (t) => {
  const source = labelSpecFromObject(PALETTE_SPEC);
  const target = labelSpecFromObject({
    classes: [{ name: 'ground', id: 1 }, { name: 'forest', id: 2 }, { name: 'snow', id: 3 }], ignore: [0],
    mapping: { forest: 'tree', snow: null },
  }, 'target.yaml');
  const joined = joinLabelSpecs(source, target);
  t.deepEqual(joined.classes, source.classes);
  t.deepEqual([...joined.rawToTrainId].sort((a, b) => a[0] - b[0]), [[0, IGNORE_INDEX], [1, 0], [2, 1], [3, IGNORE_INDEX]]);
  t.deepEqual(joined.evalClasses, [0, 1], 'water is not in the target: not scored');
  const unmapped = t.throws(() => joinLabelSpecs(source, labelSpecFromObject({ classes: [{ name: 'ground' }, { name: 'shrub' }, { name: 'lake' }], mapping: { lake: 'sea' } }, 't.yaml')));
  t.regex(unmapped!.message, /label spec t\.yaml: class\(es\) 'shrub', 'lake' \(mapped to 'sea'\) match no source class \(source classes: ground, tree, water\)/);
  t.regex(t.throws(() => joinLabelSpecs(source, labelSpecFromObject({ classes: [{ name: 'ground' }], mapping: { grund: 'ground' } }, 't.yaml')))!.message,
    /mapping names class\(es\) the spec does not list: grund/);
});

test('the folder layout: any image extension, split subfolders, a target folder\'s labelled subset, orphans reported', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const spec = labelSpecFromObject({ classes: [{ name: 'a' }, { name: 'b' }] });
    const root = path.join(dir, 'own');
    await writeRgbPng(path.join(root, 'images/train/x1.png'), gradientImage(8, 6));
    await sharp(Buffer.from(gradientImage(8, 6).data), { raw: { width: 8, height: 6, channels: 3 } }).jpeg().toFile(path.join(root, 'images/train/x2.JPG'));
    await writeGrayPng(path.join(root, 'labels/train/x1.png'), labelMap(8, 6, (x) => (x < 4 ? 0 : 1)));
    await writeGrayPng(path.join(root, 'labels/train/x2.png'), labelMap(8, 6, () => 1));
    await writeRgbPng(path.join(root, 'images/val/v1.png'), gradientImage(8, 6));
    t.deepEqual(await folderSplits(root), ['train', 'val']);
    const train = await scanDataset(folder(root, { spec, split: 'train' }));
    t.deepEqual(train.items.map((i) => path.basename(i.image)), ['x1.png', 'x2.JPG']);
    t.deepEqual([...(await loadSample(train.items[1])).label!.data.slice(0, 2)], [1, 1]);
    // a val folder without labels: the labelled subset is empty, not an error
    const val = await scanDataset(folder(root, { spec, split: 'val', partialLabels: true }));
    t.is(val.items.length, 0);
    t.deepEqual(val.unpaired, ['v1']);
    await writeGrayPng(path.join(root, 'labels/train/x3.png'), labelMap(8, 6, () => 1));
    const e = await t.throwsAsync(scanDataset(folder(root, { spec, split: 'train' })));
    t.regex(e!.message, /1 label\(s\) have no image, e\.g\. x3\.png/);
    const reported = await scanDataset(folder(root, { spec, split: 'train' }), { orphans: 'report' });
    t.deepEqual(reported.orphanLabels, ['x3.png']);
    await writeRgbPng(path.join(root, 'images/train/x1.jpg'), gradientImage(8, 6));
    t.regex((await t.throwsAsync(scanDataset(folder(root, { spec, split: 'train' }))))!.message, /stored twice under different extensions, e\.g\. x1/);
  } finally {
    await cleanup();
  }
});

test('checkDataset collect: every problem listed with its file, plus sizes, class frequencies and values outside the spec', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const spec = labelSpecFromObject(PALETTE_SPEC);
    const root = path.join(dir, 'own');
    const label = (w: number, h: number, c: number[]) => {
      const data = new Uint8Array(w * h * 3);
      for (let i = 0; i < w * h; i++) data.set(i % 2 ? c : [120, 80, 40], i * 3);
      return { data, width: w, height: h };
    };
    await writeRgbPng(path.join(root, 'images/a.png'), gradientImage(8, 6));
    await writeRgbPng(path.join(root, 'labels/a.png'), label(8, 6, [30, 120, 30]));
    await writeRgbPng(path.join(root, 'images/b.png'), gradientImage(8, 6));
    await writeRgbPng(path.join(root, 'labels/b.png'), label(8, 6, [9, 9, 9]));
    await writeRgbPng(path.join(root, 'images/c.png'), gradientImage(8, 6));
    await writeRgbPng(path.join(root, 'labels/c.png'), label(4, 6, [30, 120, 30]));
    await writeFile(path.join(root, 'images/d.png'), 'not a png');
    await writeRgbPng(path.join(root, 'labels/d.png'), label(8, 6, [30, 120, 30]));
    const ds = await scanDataset(folder(root, { spec }));
    const report = await checkDataset(ds, { numClasses: 3, collect: true });
    t.deepEqual(report.problems.map((p) => [path.basename(path.dirname(p.file)) + '/' + path.basename(p.file), p.code]), [
      ['labels/b.png', 'LABEL_OUT_OF_SPEC'], ['labels/c.png', 'SIZE_MISMATCH'], ['images/d.png', 'CORRUPT_IMAGE'],
    ]);
    t.deepEqual([...report.outOfSpec], [[0x090909, 24]]);
    t.deepEqual([...report.sizes], [['8×6', 3]]);
    t.deepEqual(report.classPixels, [24, 24, 0], 'a only: b stopped at its colours, c at its size');
    t.deepEqual(report.classImages, [1, 1, 0]);
    // without collect the first problem throws
    t.regex((await t.throwsAsync(checkDataset(ds, { numClasses: 3 })))!.message, /labels\/b\.png has colours outside/);
  } finally {
    await cleanup();
  }
});
