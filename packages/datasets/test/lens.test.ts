import test from 'ava';
import { Rng } from '@ir2f/core';
import { applyLens, type LensPriors } from '@ir2f/datasets';

const W = 40;
const H = 30;
/** Left half class 1, right half class 2; the image is the label's grey level, so each pixel's source is readable. */
function halves() {
  const label = new Uint8Array(W * H);
  const data = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      label[y * W + x] = x < W / 2 ? 1 : 2;
      data.fill(x < W / 2 ? 50 : 200, (y * W + x) * 3, (y * W + x) * 3 + 3);
    }
  }
  return { image: { data, width: W, height: H }, label };
}
const still = { red: [1, 1], blue: [1, 1], gamma: [1, 1], saturation: [1, 1] } as LensPriors['response'];

test('no roll, no distortion, a neutral response: the image and the label come back unchanged', (t) => {
  const { image, label } = halves();
  const out = applyLens(image, label, { roll: [0, 0], barrel: [0, 0], response: still }, new Rng(1));
  t.deepEqual(out.label, label);
  t.deepEqual(out.image.data, image.data);
});

test('a rolled mount through a barrel lens tilts the boundary, image and label together, and samples only the input classes', (t) => {
  const { image, label } = halves();
  const out = applyLens(image, label, { roll: [20, 20], barrel: [0.3, 0.3], response: still }, new Rng(3));
  const firstRight = (y: number) => { let x = 0; while (x < W && out.label[y * W + x] === 1) x++; return x; };
  // the vertical boundary now leans: its column differs between the top and the bottom row
  t.true(Math.abs(firstRight(0) - firstRight(H - 1)) >= 4, `${firstRight(0)} vs ${firstRight(H - 1)}`);
  // no fill value anywhere
  t.true(out.label.every((v) => v === 1 || v === 2));
  // the image agrees with the label away from the (bilinear) boundary
  let agree = 0;
  for (let i = 0; i < W * H; i++) agree += Number((out.image.data[i * 3] < 125) === (out.label[i] === 1));
  t.true(agree / (W * H) > 0.95, `${agree}`);
});

test('the colour response: a cool white balance lowers red and raises blue on a grey pixel', (t) => {
  const label = new Uint8Array(W * H);
  const image = { data: new Uint8Array(W * H * 3).fill(120), width: W, height: H };
  const out = applyLens(image, label, { roll: [0, 0], barrel: [0, 0], response: { ...still, red: [0.8, 0.8], blue: [1.2, 1.2] } }, new Rng(0));
  const [r, g, b] = out.image.data.slice(0, 3);
  t.true(r < g && g < b, `${r} ${g} ${b}`);
});
