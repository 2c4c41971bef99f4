/**
 * `npm run demo`: the README's first command. On the embedded synthetic→real benchmark (generated into the
 * cache on first use), train the small preset source-only and with DAFormer-style self-training, then print
 * both target mIoUs and where the PNGs went (training curves, a prediction comparison grid).
 *
 *   npm run demo -- [--benchmark synth2real|day2night] [--steps N] [--seed N] [--out work_dirs/demo]
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { inferLogits, initBackend } from '@ir2f/core';
import { loadTrained, loadRawConfig, replicaPlan, resolveConfig, runTraining, type TrainRunResult } from '@ir2f/cli';
import {
  CITYSCAPES_PALETTE, colorize, ensureBenchmark, EMBEDDED_BENCHMARKS, loadSample, normalize, scanDataset, writeImageGrid,
  type RgbImage,
} from '@ir2f/datasets';
import { relaunchWithMallocTunables } from '@ir2f/runtime';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      benchmark: { type: 'string', default: 'synth2real' },
      steps: { type: 'string' },
      seed: { type: 'string', default: '0' },
      out: { type: 'string', default: path.join('work_dirs', 'demo') },
    },
  });
  const name = values.benchmark!;
  if (!(EMBEDDED_BENCHMARKS as readonly string[]).includes(name)) {
    throw new Error(`--benchmark must be one of ${EMBEDDED_BENCHMARKS.join(', ')}, got '${name}'`);
  }
  const started = Date.now();
  const raw = await loadRawConfig(name);
  const sets = [`train.seed=${Number(values.seed)}`];
  const steps = values.steps ? Number(values.steps) : undefined;
  console.log(`ir2f demo: ${name}, source-only vs DAFormer-style self-training`);
  const bench = await ensureBenchmark(name as 'synth2real');
  const out = path.resolve(values.out!);
  await fs.rm(out, { recursive: true, force: true }); // the demo owns this folder

  // one backend for both runs (its wasm threads are fixed once started): sized for the UDA run, which trains
  // two replicas on 2+ cores, each on half the threads
  await initBackend(raw.backend as string | undefined, { wasmThreads: replicaPlan('uda', 'wasm').threads });
  const runs: { label: string; result: TrainRunResult }[] = [];
  for (const [label, mode] of [['source-only', 'source-only'], ['DAFormer-style UDA', 'uda']] as const) {
    const config = resolveConfig(raw, { steps, set: [...sets, `train.mode="${mode}"`] });
    console.log(`\n[${label}] ${config.train.steps} steps, ${config.model.preset}, crops ${config.data.crop.join('×')}, batch ${config.data.batchSize}+${config.data.batchSize}`);
    const result = await runTraining(config, { workDir: path.join(out, mode), log: (l) => console.log(`  ${l}`), logEvery: 100 });
    runs.push({ label, result });
  }

  // a comparison grid on target val images: image | truth | source-only | UDA
  const val = await scanDataset(bench.targetVal);
  const models = await Promise.all(runs.map((r) => loadTrained(r.result.checkpoint!)));
  const rows: RgbImage[][] = [];
  for (const item of val.items.slice(0, 4)) {
    const s = await loadSample(item);
    const x = tf.tensor4d(normalize(s.image), [1, s.image.height, s.image.width, 3]);
    const row: RgbImage[] = [s.image, colorize(s.label!, CITYSCAPES_PALETTE)];
    for (const m of models) {
      const pred = tf.tidy(() => tf.argMax(inferLogits(m.model, x), 3));
      row.push(colorize({ data: Uint8Array.from(await pred.data()), width: s.image.width, height: s.image.height }, CITYSCAPES_PALETTE));
      pred.dispose();
    }
    x.dispose();
    rows.push(row);
  }
  models.forEach((m) => m.model.dispose());
  const grid = path.join(out, 'predictions.png');
  await writeImageGrid(grid, rows, { scale: 2 });

  const pct = (v?: number) => (v == null ? '—' : (v * 100).toFixed(1));
  console.log(`\n${name}: target mIoU over ${bench.classes.length} classes (${val.items.length} target val images)`);
  console.log('| variant | student mIoU | EMA teacher mIoU | ms/iteration |');
  console.log('|---|---|---|---|');
  for (const { label, result } of runs) {
    console.log(`| ${label} | ${pct(result.eval?.student.miou)} | ${pct(result.eval?.teacher?.miou)} | ${result.msPerStep.toFixed(0)} |`);
  }
  const [so, uda] = runs.map((r) => r.result.eval?.student.miou ?? NaN);
  console.log(`\nadaptation ${uda > so ? 'helps' : 'does not help'}: ${uda > so ? '+' : ''}${((uda - so) * 100).toFixed(1)} mIoU points`);
  console.log(`PNGs: ${grid} (image | truth | source-only | UDA), ${runs.map((r) => r.result.files.curves).join(', ')}`);
  console.log(`done in ${((Date.now() - started) / 60000).toFixed(1)} min on ${runs[0].result.backend.name}`);
}

// glibc's malloc tunables for onnxruntime's kernels (see @ir2f/runtime's README): run again with them
const relaunched = await relaunchWithMallocTunables();
if (relaunched !== undefined) process.exit(relaunched);

// tfjs-backend-wasm rethrows unhandled errors from its own handler, burying the message under minified
// source: report the error ourselves.
main().catch((err: unknown) => {
  console.error(`ir2f demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
