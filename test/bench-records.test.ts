import test from 'ava';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { PRESET_VERSION, readRun } from '../bench/ablation.js';

// stored runs are reused across sessions: a self-training run of another preset version measured other
// defaults (τ, the EMA bound) and must read as absent; source-only and the oracle read neither and carry over
test('readRun treats a self-training record of another preset version as absent, and keeps the bounds', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ir2f-bench-runs-'));
  try {
    const url = pathToFileURL(`${dir}${path.sep}`);
    const write = (variant: string, preset?: number) => fs.writeFile(path.join(dir, `synth2real-${variant}-0.json`),
      JSON.stringify({ method: 2, ...(preset ? { preset } : {}), benchmark: 'synth2real', variant, seed: 0, steps: 400, msPerStep: 1, commit: 'x', date: 'd', miou: 0.5, boundaryMiou: 0.4 }));
    await write('baseline'); // no preset field: preset v1
    await write('ir2f-prior', PRESET_VERSION);
    await write('source-only');
    await write('oracle', PRESET_VERSION - 1);
    t.is(await readRun('synth2real', 'baseline', 0, url), undefined, 'a v1 baseline is stale');
    t.is((await readRun('synth2real', 'ir2f-prior', 0, url))?.miou, 0.5);
    t.is((await readRun('synth2real', 'source-only', 0, url))?.miou, 0.5, 'source-only carries over');
    t.is((await readRun('synth2real', 'oracle', 0, url))?.miou, 0.5, 'the oracle carries over');
    t.is(await readRun('synth2real', 'baseline', 1, url), undefined, 'no record');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
