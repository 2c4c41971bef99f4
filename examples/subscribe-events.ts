/**
 * A custom subscriber: early stopping on mIoU. It watches `eval` events and aborts the run when the student's
 * mIoU has not improved for `patience` evaluations; the trainer finishes the step, writes a checkpoint (with a
 * work dir) and ends the run as `interrupted`. Any metrics sink (a file, a socket, a dashboard) is the same
 * few lines.
 */
import { createPipeline, initBackend, ofType, train, type TrainResult } from '@ir2f/core';
import { createModel } from '@ir2f/backbones';
import { syntheticBatch, syntheticData } from './toy/synthetic-data.js';

export async function earlyStopping(opts: { steps?: number; evalEvery?: number; patience?: number } = {}): Promise<{ result: TrainResult; evals: number[] }> {
  await initBackend();
  const student = createModel('resnet-tiny-deeplabv2', { numClasses: 4, seed: 0 });
  const teacher = createModel('resnet-tiny-deeplabv2', { numClasses: 4, seed: 0 });
  const pipeline = createPipeline({ backbone: student.backbone, decodeHead: student.decodeHead });
  const data = syntheticData(32, 4);
  // a fixed labelled validation batch, from a stream index training never reaches
  const evalBatch = syntheticBatch('val', 0, 32, 4);
  data.evaluation = {
    samples: () => [0, 1].map((i) => ({
      image: evalBatch.images.subarray(i * 32 * 32 * 3, (i + 1) * 32 * 32 * 3), label: evalBatch.labels!.subarray(i * 32 * 32, (i + 1) * 32 * 32),
      height: 32, width: 32,
    })),
  };
  const abort = new AbortController();
  const evals: number[] = [];
  let best = -1;
  let since = 0;
  pipeline.events$.pipe(ofType('eval')).subscribe((e) => {
    if (e.model !== 'student') return;
    evals.push(e.miou);
    if (e.miou > best) [best, since] = [e.miou, 0];
    else if (++since >= (opts.patience ?? 2)) abort.abort();
  });
  try {
    const result = await train({
      config: { steps: opts.steps ?? 200, evalEvery: opts.evalEvery ?? 5, optimizer: { lr: 1e-3, warmupSteps: 0 } },
      student, teacher, numClasses: 4, pipeline, data, signal: abort.signal,
    });
    return { result, evals };
  } finally {
    student.dispose();
    teacher.dispose();
    await pipeline.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  earlyStopping().then(({ result, evals }) => console.log(`${result.reason} at step ${result.step}; mIoU by evaluation: ${evals.map((v) => (v * 100).toFixed(1)).join(' ')}`)).catch((err: unknown) => {
    console.error(`example failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
