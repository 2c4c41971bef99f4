import test from 'ava';
import { ConfusionMatrix } from '@ir2f/core';

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
