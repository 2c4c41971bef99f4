import test from 'ava';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { acdc, cityscapes, darkZurich, gta5, loadSample, scanDataset, synthia, writeGrayPng } from '@ir2f/datasets';
import { labelMap, tempDir, writePair, writeSynthiaLabel } from './fixtures.js';
import { writeRgbPng } from '@ir2f/datasets';
import { gradientImage } from './fixtures.js';

test('each real layout is found and paired: gta, synthia, cityscapes (trainIds or labelIds), acdc, dark_zurich', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    await writePair(path.join(dir, 'gta/images/00001.png'), path.join(dir, 'gta/labels/00001_labelTrainIds.png'));
    await writePair(path.join(dir, 'gta/images/00002.png'), path.join(dir, 'gta/labels/00002_labelTrainIds.png'));
    const gta = await scanDataset(gta5(path.join(dir, 'gta')));
    t.deepEqual(gta.items.map((i) => i.id), ['00001', '00002']);
    t.is(gta.labelSource?.suffix, '_labelTrainIds.png');

    await writeRgbPng(path.join(dir, 'synthia/RGB/0000001.png'), gradientImage(4, 2));
    await writeSynthiaLabel(path.join(dir, 'synthia/GT/LABELS/0000001.png'), 4, 2, () => 3);
    const syn = await scanDataset(synthia(path.join(dir, 'synthia')));
    t.is(syn.items.length, 1);
    const sample = await loadSample(syn.items[0]);
    t.is(sample.label?.data[0], 0);

    const cs = path.join(dir, 'cityscapes');
    await writePair(path.join(cs, 'leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png'),
      path.join(cs, 'gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png'), 8, 6, (x) => (x < 4 ? 7 : 26));
    const val = await scanDataset(cityscapes(cs, 'val'));
    t.is(val.items[0].id, 'aachen/aachen_000000_000019');
    t.is(val.labelSource?.suffix, '_gtFine_labelIds.png'); // converted from ids on read
    const s2 = await loadSample(val.items[0]);
    t.deepEqual([s2.label!.data[0], s2.label!.data[7]], [0, 13]);

    const ac = path.join(dir, 'acdc');
    await writePair(path.join(ac, 'rgb_anon/night/val/GOPR0351/GOPR0351_frame_000159_rgb_anon.png'),
      path.join(ac, 'gt/night/val/GOPR0351/GOPR0351_frame_000159_gt_labelTrainIds.png'));
    t.is((await scanDataset(acdc(ac, { condition: 'night', split: 'val' }))).items.length, 1);

    const dz = path.join(dir, 'dark_zurich');
    await writeRgbPng(path.join(dz, 'rgb_anon/train/night/GOPR0348/GOPR0348_frame_000001_rgb_anon.png'), gradientImage(8, 6));
    const dzTrain = await scanDataset(darkZurich(dz, { split: 'train' }), { labelled: false });
    t.is(dzTrain.items.length, 1);
    t.is(dzTrain.items[0].label, undefined);
  } finally {
    await cleanup();
  }
});

test('a missing root or sub-folder names it and shows the expected tree', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    const e1 = await t.throwsAsync(scanDataset(cityscapes(path.join(dir, 'nope'), 'val')));
    t.regex(e1!.message, /not found under .*nope/);
    t.regex(e1!.message, /leftImg8bit\/val\/<city>\/<name>_leftImg8bit\.png/);
    await mkdir(path.join(dir, 'cs/leftImg8bit/val/x'), { recursive: true });
    await writeRgbPng(path.join(dir, 'cs/leftImg8bit/val/x/a_leftImg8bit.png'), gradientImage(4, 4));
    const e2 = await t.throwsAsync(scanDataset(cityscapes(path.join(dir, 'cs'), 'val')));
    t.regex(e2!.message, /folder 'gtFine\/val' not found/);
    t.is((e2 as { code?: string }).code, 'DATASET_LAYOUT');
  } finally {
    await cleanup();
  }
});

test('images without labels and labels without images are named (first few)', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    for (let i = 0; i < 8; i++) {
      await writeRgbPng(path.join(dir, `gta/images/${i}.png`), gradientImage(4, 4));
      if (i < 2) await writeGrayPng(path.join(dir, `gta/labels/${i}_labelTrainIds.png`), labelMap(4, 4, () => 0));
    }
    const e1 = await t.throwsAsync(scanDataset(gta5(path.join(dir, 'gta'))));
    t.regex(e1!.message, /6 image\(s\) have no label, e\.g\. 2\.png, 3\.png, 4\.png, 5\.png, 6\.png … \(6 in all\)/);
    const partial = await scanDataset(gta5(path.join(dir, 'gta')), { allowUnpaired: true });
    t.is(partial.items.length, 2);
    t.is(partial.unpaired.length, 6);
    await writeGrayPng(path.join(dir, 'gta/labels/99_labelTrainIds.png'), labelMap(4, 4, () => 0));
    const e2 = await t.throwsAsync(scanDataset(gta5(path.join(dir, 'gta')), { allowUnpaired: true }));
    t.regex(e2!.message, /label\(s\) have no image, e\.g\. 99_labelTrainIds\.png/);
  } finally {
    await cleanup();
  }
});

test('an image and label of different sizes is an error naming both files', async (t) => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeRgbPng(path.join(dir, 'gta/images/a.png'), gradientImage(8, 6));
    await writeGrayPng(path.join(dir, 'gta/labels/a_labelTrainIds.png'), labelMap(8, 5, () => 0));
    const ds = await scanDataset(gta5(path.join(dir, 'gta')));
    const err = await t.throwsAsync(loadSample(ds.items[0]));
    t.regex(err!.message, /a\.png is 8×6 but its label .*a_labelTrainIds\.png is 8×5/);
  } finally {
    await cleanup();
  }
});
