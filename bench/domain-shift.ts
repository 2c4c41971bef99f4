/**
 * `npm run bench -- shift`: is each embedded benchmark's domain shift real? The toy net trained on the
 * source split (source-only) vs on the target train labels (oracle), both evaluated on the target val split
 * (mIoU over the benchmark's 8 classes), plus source-only on its own source split for reference.
 */
import { initBackend } from '@ir2f/core';
import { EMBEDDED_BENCHMARKS, ensureBenchmark, scanDataset } from '@ir2f/datasets';
import { evaluateToy, trainToyOn } from '../examples/toy/train-on-dataset.js';
import { fmt, table } from './timing.js';

export async function benchDomainShift(): Promise<void> {
  const backend = await initBackend();
  const steps = 150;
  const counts = { source: 80, targetTrain: 80, targetVal: 40 };
  console.log(`# domain shift of the embedded benchmarks (toy net, ${steps} steps, batch 4, 128×96, ` +
    `${counts.source}/${counts.targetTrain}/${counts.targetVal} images, seed 1, ${backend.name})\n`);
  const rows: (string | number)[][] = [['benchmark', 'source-only → target', 'oracle → target', 'source-only → source']];
  for (const name of EMBEDDED_BENCHMARKS) {
    const b = await ensureBenchmark(name, { counts });
    const [src, tgt, val] = await Promise.all([scanDataset(b.source), scanDataset(b.targetTrain), scanDataset(b.targetVal)]);
    const sourceOnly = await trainToyOn(src, { steps, seed: 1 });
    const oracle = await trainToyOn(tgt, { steps, seed: 1 });
    const pct = (v: number) => fmt(v * 100, 1);
    rows.push([name, pct((await evaluateToy(sourceOnly, val, b.classes)).miou), pct((await evaluateToy(oracle, val, b.classes)).miou),
      pct((await evaluateToy(sourceOnly, src, b.classes)).miou)]);
    sourceOnly.dispose();
    oracle.dispose();
  }
  console.log(table(rows));
}
