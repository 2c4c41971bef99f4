import test from 'ava';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runCli } from '@ir2f/cli';

const run = async (...args: string[]) => {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(['node', 'ir2f', ...args], { log: (l) => out.push(l), error: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
};

test('ir2f data make writes a benchmark and its preview', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-cli-'));
  try {
    const r = await run('data', 'make', 'day2night', '--out', path.join(dir, 'b'), '--size', '64x48', '--counts', '4,3,2', '--preview');
    t.is(r.code, 0, r.err);
    t.regex(r.out, /4 source \(cityscapes train\), 3 target train \(dark_zurich train night\), 2 target val/);
    t.truthy(await stat(path.join(dir, 'b', 'preview.png')));
    const again = await run('data', 'make', 'day2night', '--out', path.join(dir, 'b'), '--size', '64x48', '--counts', '4,3,2');
    t.is(again.code, 1);
    t.regex(again.err, /already holds a benchmark: pass overwrite \(--overwrite\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('ir2f reports bad arguments clearly', async (t) => {
  const r1 = await run('data', 'make', 'mars2venus', '--out', '/tmp/x');
  t.is(r1.code, 1);
  t.regex(r1.err, /unknown benchmark 'mars2venus'; available: synth2real, day2night/);
  const r2 = await run('data', 'make', 'synth2real', '--out', '/tmp/x', '--size', 'big');
  t.regex(r2.err, /--size/);
  const r3 = await run('data', 'make', 'synth2real');
  t.not(r3.code, 0);
  t.regex(r3.err, /--out/);
});
