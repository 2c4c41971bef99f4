import test from 'ava';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { benchFamily } from '../bench/family.js';
import { checkAgainstReference } from '../bench/train.js';

// the bench's refusals come before any run: each of these returns in milliseconds or the test would time out

test('bench family refuses a candidate without a tag, a tag that cannot name a file, and an unknown member', async (t) => {
  await t.throwsAsync(benchFamily(['--set', 'pseudoLabeler.threshold=0.9']), { message: /--set needs --tag NAME/ });
  await t.throwsAsync(benchFamily(['--tag', 'tau/0.9', '--set', 'pseudoLabeler.threshold=0.9']), { message: /--tag 'tau\/0\.9': letters, digits/ });
  await t.throwsAsync(benchFamily(['--members', 'synth2real,mars']), { message: /unknown member 'mars'; known: synth2real/ });
  await t.throwsAsync(benchFamily(['--variants', 'baseline,magic']), { message: /unknown variant 'magic'/ });
});

test('bench train --check refuses without a reference, and with one measured on another machine', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ir2f-bench-check-'));
  try {
    const missing = pathToFileURL(path.join(dir, 'train-reference.json'));
    await t.throwsAsync(checkAgainstReference(missing), { message: /no .*train-reference\.json: run `npm run bench -- train` once/ });
    const other = pathToFileURL(path.join(dir, 'other.json'));
    await fs.writeFile(other, JSON.stringify({ date: '2026-01-01', commit: 'abc', cpu: 'A quantum abacus', threads: 64, msPerStep: {} }));
    await t.throwsAsync(checkAgainstReference(other), { message: /measured on 'A quantum abacus' with 64 threads, this is .*: run `npm run bench -- train` here/ });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
