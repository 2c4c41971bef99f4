/** The curves PNG's reliability panel: q, mean r and mean γ from the events, so that a collapse shows at a glance. */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { RxEventBus } from '@ir2f/core';
import { curvesSvg, recordHistory, writeCurvesPng } from '@ir2f/cli';

test('the reliability panel is drawn from pseudo-labels, rectifier and rmm events (and left out without them)', async (t) => {
  const bus = new RxEventBus();
  const { history, subscription } = recordHistory(bus.events$);
  for (let step = 1; step <= 20; step++) {
    bus.emit({ type: 'step', step, losses: { source: 1 / step, mix: 0.5 }, lr: 1e-3, ms: 10 });
    bus.emit({ type: 'pseudo-labels', step, keptFraction: step / 40, meanConfidence: 0.8 });
    bus.emit({ type: 'rectifier', step, mean: 0.7, p10: 0.5, p50: 0.7, p90: 0.9, lowShare: 0.1 });
    bus.emit({ type: 'rmm', step, meanGamma: 0.4 + step / 100, meanR: 0.72, loss: 1 });
  }
  subscription.unsubscribe();
  t.is(history.reliability.length, 20);
  t.deepEqual(history.reliability[9], { step: 10, q: 0.25, r: 0.72, gamma: 0.5 });
  const svg = curvesSvg(history);
  for (const s of ['pseudo-label reliability', 'q (pseudo-label weight)', 'mean r', 'mean γ']) t.true(svg.includes(s), s);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-curves-'));
  try {
    await writeCurvesPng(history, path.join(dir, 'c.png'));
    const meta = await sharp(path.join(dir, 'c.png')).metadata();
    t.is(meta.height, 910);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const plain = curvesSvg({ ...history, reliability: [] });
  t.false(plain.includes('pseudo-label reliability'));
});
