/**
 * Resume is exact: an IR2F run (INR rectifier + RMM v2, two replicas, onnxruntime's kernels where installed,
 * an evaluation every 5 steps) killed with SIGKILL at a random step and resumed from its last checkpoint logs
 * the same numbers as a straight run at every step after the resume point (≥ 40 steps past it), each step once.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBenchmark } from '@ir2f/datasets';

const bin = fileURLToPath(new URL('../packages/cli/src/bin.ts', import.meta.url));
const STEPS = 52;

interface Event { type: string; step?: number; losses?: Record<string, number>; miou?: number; model?: string; meanGamma?: number; mean?: number }

async function events(work: string): Promise<Event[]> {
  const text = await readFile(path.join(work, 'events.jsonl'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).flatMap((l) => {
    try {
      return [JSON.parse(l) as Event];
    } catch {
      return []; // a line cut by the kill
    }
  });
}

test('a run killed (SIGKILL) at a random step and resumed equals the straight run at every logged number after the resume point', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-resume-'));
  try {
    const data = path.join(dir, 'bench');
    await makeBenchmark('synth2real', data, { size: [64, 48], counts: { source: 8, targetTrain: 6, targetVal: 2 } });
    const args = (work: string, ...extra: string[]) => [
      '--import=tsx', '--conditions=ir2f-source', bin, 'train', '--config', 'synth2real', '--source', `gta:${data}/gta`,
      '--target', `cityscapes:${data}/cityscapes`, '--steps', String(STEPS), '--work-dir', work,
      '--set', 'data.crop=[48,48]', '--set', 'train.evalEvery=5', '--set', 'train.checkpointEvery=5', '--set', 'train.optimizer.warmupSteps=4',
      '--set', 'data.rareClass.minPixels=5', '--set', 'data.valLimit=1',
      '--set', 'plugins=[{"package":"@ir2f/plugin-inr-rectifier","options":{"hidden":[16],"projChannels":4}},{"package":"@ir2f/plugin-rmm"}]',
      ...extra,
    ];
    const start = (work: string, ...extra: string[]) => {
      const child = spawn(process.execPath, args(work, ...extra), { env: { ...process.env, TSX_TSCONFIG_PATH: 'tsconfig.tsx.json' } });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      return { child, exited, stderr: () => stderr };
    };
    const straight = path.join(dir, 'straight');
    const s = start(straight);
    t.is(await s.exited, 0, s.stderr());

    // killed somewhere after the checkpoint at step 5 and before the one at 10
    const killAt = 6 + Math.floor(Math.random() * 4);
    t.log(`killed after step ${killAt}`);
    const killed = path.join(dir, 'killed');
    const k = start(killed);
    for (let i = 0; i < 1200; i++) {
      if ((await events(killed)).some((e) => e.type === 'step' && e.step! >= killAt)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    k.child.kill('SIGKILL');
    await k.exited;
    const r = start(killed, '--resume');
    t.is(await r.exited, 0, r.stderr());

    const [a, b] = [await events(straight), await events(killed)];
    const steps = (ev: Event[]) => ev.filter((e) => e.type === 'step');
    t.deepEqual(steps(b).map((e) => e.step), Array.from({ length: STEPS }, (_, i) => i + 1), 'each step logged once');
    const from = (b as { type: string; startStep?: number }[]).find((e) => e.type === 'run-start' && e.startStep)!.startStep!;
    t.true(from >= 5 && STEPS - from >= 40, `resumed from step ${from}`);
    // every number logged after the resume point: losses, pseudo-label and rectifier statistics, γ, evaluations
    const after = (ev: Event[]) => ev.filter((e) => e.step != null && e.step > from && ['step', 'pseudo-labels', 'rectifier', 'rmm', 'eval'].includes(e.type))
      .map(({ type, step, ...rest }) => {
        const { ms: _ms, time: _time, v: _v, phases: _p, ...values } = rest as Record<string, unknown>;
        return { type, step, values };
      });
    const [x, y] = [after(a), after(b)];
    t.true(x.length > 100, `${x.length} events compared`);
    t.is(y.length, x.length);
    const firstDiff = x.findIndex((e, i) => JSON.stringify(e) !== JSON.stringify(y[i]));
    t.is(firstDiff, -1, firstDiff < 0 ? '' : `first difference: ${JSON.stringify(x[firstDiff])} vs ${JSON.stringify(y[firstDiff])}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
