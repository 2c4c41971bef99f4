/** predict's per-pixel maps from host logits: class, max probability and normalised entropy by hand. */
import test from 'ava';
import { pixelMaps } from '@ir2f/cli';

test('class, max probability and entropy / log K of each pixel', (t) => {
  const logits = Float32Array.from([2, 0, -1, 0, 0, 0]);
  const { labels, confidence, entropy } = pixelMaps(logits, 3);
  t.deepEqual([...labels], [0, 0]);
  const z = Math.exp(2) + 1 + Math.exp(-1);
  const p = [Math.exp(2) / z, 1 / z, Math.exp(-1) / z];
  t.true(Math.abs(confidence[0] - p[0]) < 1e-6);
  t.true(Math.abs(entropy[0] - -p.reduce((a, v) => a + v * Math.log(v), 0) / Math.log(3)) < 1e-6);
  // a uniform pixel: probability 1/K, entropy 1
  t.true(Math.abs(confidence[1] - 1 / 3) < 1e-6 && Math.abs(entropy[1] - 1) < 1e-6);
});
