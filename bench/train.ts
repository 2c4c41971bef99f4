/**
 * `npm run bench -- train`: one DAFormer-style iteration (batch 2+2) of the small presets at 128² and 256²:
 * ms/iteration on tfjs-wasm (one thread) with its phases (teacher, student forward+backward,
 * optimiser+EMA), next to the PyTorch twin running the same step (bench/reference/models.py train) on 1 and
 * 2 threads, as throughput ratios; and the peak RSS of a training process at 256² (target ≤ 2 GiB).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { initBackend } from '@ir2f/core';
import { createModel } from '@ir2f/backbones';
import { benchStep } from '@ir2f/cli';
import { InrRectifier } from '@ir2f/plugin-inr-rectifier';
import { DEBIAN_PYTHON, debianBlas } from './python-reference.js';
import { fmt, table } from './timing.js';

const CASES: [string, number, 'inr'?][] = [
  ['mit-tiny-daformer', 128], ['mit-tiny-daformer', 256], ['resnet-tiny-deeplabv2', 128], ['mit-tiny-daformer', 128, 'inr'],
];

interface TorchStep {
  ms: number;
  phases: Record<string, number>;
}

function torchStep(preset: string, size: number, threads: number): TorchStep | undefined {
  try {
    const script = fileURLToPath(new URL('./reference/models.py', import.meta.url));
    const out = execFileSync(DEBIAN_PYTHON, [script, 'train', '--preset', preset, '--size', String(size), '--batch', '2',
      '--threads', String(threads), '--runs', '5'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return JSON.parse(out.trim().split('\n').pop()!) as TorchStep;
  } catch {
    return undefined;
  }
}

/** Peak RSS (MiB) of a fresh process that runs `steps` iterations of `preset` at `size`² on wasm. */
function peakRssMiB(preset: string, size: number, steps: number): number {
  const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--rss-child', preset, String(size), String(steps)],
    { encoding: 'utf8' });
  const line = child.stdout.trim().split('\n').pop() ?? '';
  if (child.status !== 0 || !line.startsWith('{')) throw new Error(`RSS child failed: ${child.stderr.slice(-500)}`);
  return (JSON.parse(line) as { maxRssKiB: number }).maxRssKiB / 1024;
}

/** An INR rectifier sized for a preset's decode head. */
function inrFor(preset: string): InrRectifier {
  const probe = createModel(preset);
  const embeddingChannels = probe.decodeHead.embeddingChannels;
  probe.dispose();
  return new InrRectifier({}, { embeddingChannels, numClasses: 19 });
}

export async function benchTrain(): Promise<void> {
  await initBackend('wasm');
  console.log(`# one DAFormer-style training iteration, batch 2+2 (tfjs: wasm, 1 thread; PyTorch CPU ${debianBlas()})\n`);
  const rows: (string | number)[][] = [['preset', 'crop', 'wasm ms', 'teacher', 'student f+b', 'rectifier', 'optim+EMA', 'torch 1 thr ms', 'torch 2 thr ms', 'wasm / torch-1 ×', 'wasm / torch-2 ×']];
  for (const [preset, size, extra] of CASES) {
    // the INR rectifier (DESIGN §5.1) in the step: its own forward time; its backward is in "student f+b"
    const rectifier = extra === 'inr' ? inrFor(preset) : undefined;
    const r = await benchStep({ preset, size, batch: 2, steps: 5, backend: 'wasm', rectifier });
    rectifier?.dispose();
    const t1 = extra ? undefined : torchStep(preset, size, 1);
    const t2 = extra ? undefined : torchStep(preset, size, 2);
    // throughput ratio: >1 means tfjs is faster
    const ratio = (t?: TorchStep) => (t ? fmt(t.ms / r.msPerStep, 2) : 'n/a');
    rows.push([extra ? `${preset} + INR` : preset, `${size}²`, fmt(r.msPerStep, 0), fmt(r.phases.teacher, 0), fmt(r.phases.student, 0),
      fmt(r.phases.rectifier, 0), fmt(r.phases.optimizer, 0),
      t1 ? fmt(t1.ms, 0) : 'n/a', t2 ? fmt(t2.ms, 0) : 'n/a', ratio(t1), ratio(t2)]);
  }
  console.log(table(rows));
  const rss = peakRssMiB('mit-tiny-daformer', 256, 5);
  console.log(`\npeak RSS, mit-tiny-daformer 2+2 at 256², 5 iterations on wasm: ${fmt(rss, 0)} MiB (target ≤ 2048)`);
}

if (process.argv[2] === '--rss-child') {
  const [preset, size, steps] = process.argv.slice(3);
  await benchStep({ preset, size: Number(size), batch: 2, steps: Number(steps), backend: 'wasm' });
  console.log(JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS }));
}
