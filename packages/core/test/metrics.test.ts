import test from 'ava';
import { boundaryMask, ConfusionMatrix, expectedCalibrationError } from '@ir2f/core';

test('confusion matrix, IoU, accuracy and mIoU match a hand-computed 3-class example', (t) => {
  // truth: 0 0 0 1 1 2 255 ; pred: 0 0 1 1 2 2 0
  const m = new ConfusionMatrix(3).update([0, 0, 1, 1, 2, 2, 0], [0, 0, 0, 1, 1, 2, 255]);
  t.deepEqual([...m.counts], [2, 1, 0, 0, 1, 1, 0, 0, 1]);
  // IoU0 = 2/(3+2-2)=2/3; IoU1 = 1/(2+2-1)=1/3; IoU2 = 1/(1+2-1)=1/2
  const iou = m.iou() as number[];
  t.true(Math.abs(iou[0] - 2 / 3) < 1e-12 && Math.abs(iou[1] - 1 / 3) < 1e-12 && Math.abs(iou[2] - 0.5) < 1e-12);
  t.true(Math.abs(m.miou() - (2 / 3 + 1 / 3 + 0.5) / 3) < 1e-12);
  t.true(Math.abs(m.miou([0, 2]) - (2 / 3 + 0.5) / 2) < 1e-12);
  t.deepEqual(m.accuracy(), [2 / 3, 0.5, 1]);
  t.is(m.pixelAccuracy(), 4 / 6);
  t.is(new ConfusionMatrix(4).update([0], [0]).iou()[3], null);
  t.throws(() => m.update([0], [0, 1]));
  t.throws(() => m.update([7], [0]));
});

test('boundaryMask marks labelled pixels with another class within the radius; ignore is neither', (t) => {
  // 1×6 strip: 0 0 0 1 1 255
  const m = boundaryMask(Uint8Array.from([0, 0, 0, 1, 1, 255]), 6, 1, 2);
  t.deepEqual(Array.from(m), [0, 1, 1, 1, 1, 0]);
  const m1 = boundaryMask(Uint8Array.from([0, 0, 0, 1, 1, 255]), 6, 1, 1);
  t.deepEqual(Array.from(m1), [0, 0, 1, 1, 0, 0]);
});

test('expected calibration error: 0 when confidence matches accuracy per bin, |gap| otherwise', (t) => {
  // bin [0.7, 0.8): confidence 0.75, 3 of 4 correct → 0; bin [0.9, 1): confidence 0.95, 1 of 2 → gap 0.45
  const conf = [0.75, 0.75, 0.75, 0.75, 0.95, 0.95];
  const ok = [1, 1, 1, 0, 1, 0];
  t.true(Math.abs(expectedCalibrationError(conf, ok) - (2 / 6) * 0.45) < 1e-9);
  t.is(expectedCalibrationError([0.25, 0.25, 0.25, 0.25], [1, 0, 0, 0]), 0);
});
