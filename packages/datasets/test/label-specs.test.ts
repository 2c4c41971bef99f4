import test from 'ava';
import {
  CITYSCAPES_CLASSES, CITYSCAPES_IDS, CITYSCAPES_PALETTE, lookupTable, SYNTHIA_13_CLASSES, SYNTHIA_16, SYNTHIA_16_CLASSES,
} from '@ir2f/datasets';

test('Cityscapes: 19 training classes in trainId order with their colours; ids map to trainIds', (t) => {
  t.is(CITYSCAPES_CLASSES.length, 19);
  t.is(CITYSCAPES_CLASSES[0], 'road');
  t.is(CITYSCAPES_CLASSES[18], 'bicycle');
  t.deepEqual(CITYSCAPES_PALETTE[13], [0, 0, 142]);
  const lut = lookupTable(CITYSCAPES_IDS);
  t.is(lut[7], 0); // road
  t.is(lut[26], 13); // car
  t.is(lut[0], 255); // unlabeled → ignore
  t.is(lut[34], -1); // not a Cityscapes id
});

test('SYNTHIA: ids map like DAFormer, and the 16/13-class protocols drop the right classes', (t) => {
  const lut = lookupTable(SYNTHIA_16);
  t.is(lut[3], 0); // road
  t.is(lut[21], 3); // wall
  t.is(lut[8], 13); // car
  t.is(lut[0], 255);
  t.is(lut[23], -1);
  t.is(SYNTHIA_16_CLASSES.length, 16);
  t.is(SYNTHIA_13_CLASSES.length, 13);
  const names16 = SYNTHIA_16_CLASSES.map((c) => CITYSCAPES_CLASSES[c]);
  t.false(names16.includes('terrain') || names16.includes('truck') || names16.includes('train'));
  const names13 = SYNTHIA_13_CLASSES.map((c) => CITYSCAPES_CLASSES[c]);
  t.false(names13.includes('wall') || names13.includes('fence') || names13.includes('pole'));
});
