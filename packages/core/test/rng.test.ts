import test from 'ava';
import { Rng } from '@ir2f/core';

const draw = (r: Rng, n = 8) => Array.from({ length: n }, () => r.uint32());

test('same seed, same numbers; different seed, different numbers', (t) => {
  t.deepEqual(draw(new Rng(42)), draw(new Rng(42)));
  t.notDeepEqual(draw(new Rng(42)), draw(new Rng(43)));
  t.deepEqual(draw(new Rng('run-a')), draw(new Rng('run-a')));
});

test('state round-trips mid-stream, including the cached normal', (t) => {
  const r = new Rng(7);
  draw(r, 5);
  r.normal();
  const s = r.state();
  const expected = [r.normal(), r.next(), r.int(10)];
  const back = Rng.fromState(JSON.parse(JSON.stringify(s)));
  t.deepEqual([back.normal(), back.next(), back.int(10)], expected);
});

test('forks are reproducible, independent of later draws on the parent, and distinct by name', (t) => {
  const a = new Rng(1);
  const fa = draw(a.fork('crop'));
  const b = new Rng(1);
  t.deepEqual(draw(b.fork('crop')), fa);
  t.notDeepEqual(draw(b.fork('mix')), fa);
});

test('distributions: uniform mean, normal moments, choice frequencies', (t) => {
  const r = new Rng(3);
  const n = 20000;
  let sum = 0;
  let sq = 0;
  let u = 0;
  for (let i = 0; i < n; i++) {
    const z = r.normal();
    sum += z;
    sq += z * z;
    u += r.next();
  }
  t.true(Math.abs(sum / n) < 0.03);
  t.true(Math.abs(sq / n - 1) < 0.05);
  t.true(Math.abs(u / n - 0.5) < 0.01);
  const counts = [0, 0, 0];
  for (let i = 0; i < 9000; i++) counts[r.choice([1, 2, 6])]++;
  t.true(Math.abs(counts[2] / 9000 - 2 / 3) < 0.03);
  const arr = r.shuffle([1, 2, 3, 4, 5, 6]);
  t.deepEqual([...arr].sort(), [1, 2, 3, 4, 5, 6]);
  t.throws(() => r.int(0));
  t.throws(() => new Rng(Number.NaN));
});
