/**
 * Compose a pipeline in code: @ir2f/core + a backbone preset + both IR2F plugins, train a few steps on the
 * embedded synthetic→real benchmark, evaluate on its target val split.
 *
 *   npx tsx --tsconfig tsconfig.tsx.json --conditions=ir2f-source examples/compose-pipeline.ts [steps]
 */
import { createPipeline, initBackend, ofType, train, type TrainResult } from '@ir2f/core';
import { createModel } from '@ir2f/backbones';
import { ensureBenchmark, scanDataset, udaData } from '@ir2f/datasets';
import { inrRectifier } from '@ir2f/plugin-inr-rectifier';
import { rmm } from '@ir2f/plugin-rmm';

export async function composePipeline(steps = 20, log: (l: string) => void = console.log): Promise<TrainResult> {
  await initBackend();
  const bench = await ensureBenchmark('synth2real');
  const [source, target, val] = await Promise.all([
    scanDataset(bench.source), scanDataset(bench.targetTrain, { labelled: false }), scanDataset(bench.targetVal),
  ]);
  const student = createModel('mit-tiny-daformer', { numClasses: 19, seed: 0 });
  const teacher = createModel('mit-tiny-daformer', { numClasses: 19, seed: 0 });
  const pipeline = createPipeline({
    backbone: student.backbone, decodeHead: student.decodeHead,
    plugins: [inrRectifier({ hidden: [32] }), rmm({ lambda: 1 })],
  });
  pipeline.events$.pipe(ofType('eval')).subscribe((e) => log(`step ${e.step} ${e.model}: mIoU ${(e.miou * 100).toFixed(1)}`));
  const data = await udaData({ source, target, val: { ...val, items: val.items.slice(0, 20) }, numClasses: 19, crop: [64, 64], seed: 0 });
  data.evaluation!.classes = bench.classes;
  try {
    return await train({
      config: { steps, optimizer: { lr: 6e-4, warmupSteps: 5 }, emaMax: 0.99 }, student, teacher, numClasses: 19, pipeline, data,
    });
  } finally {
    student.dispose();
    teacher.dispose();
    await pipeline.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  composePipeline(Number(process.argv[2] ?? 20)).catch((err: unknown) => {
    console.error(`example failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
