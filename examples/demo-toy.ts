/**
 * `npm run demo`: trains the toy segmentation net on the generated toy task on the embedded backend (wasm
 * unless tfjs-node is installed or IR2F_BACKEND says otherwise) and prints loss falling and held-out pixel
 * accuracy rising. Progress flows as `step`/`eval` events on the ir2f event bus; the printer is a subscriber.
 *
 *   npm run demo -- [--steps 300] [--size 64] [--batch 4] [--seed 0]
 */
import * as tf from '@tensorflow/tfjs';
import { parseArgs } from 'node:util';
import { initBackend, ofType, Rng, RxEventBus } from '@ir2f/core';
import { ToySegNet, trainStep } from './toy/toy-seg-net.js';
import { makeToyBatch, meanIoU, pixelAccuracy, TOY_CLASSES } from './toy/toy-task.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '300' },
      size: { type: 'string', default: '96' },
      batch: { type: 'string', default: '4' },
      seed: { type: 'string', default: '0' },
      'eval-every': { type: 'string', default: '50' },
    },
  });
  const int = (name: keyof typeof values) => {
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer, got '${values[name]}'`);
    return v;
  };
  const steps = int('steps');
  const size = int('size');
  const batch = int('batch');
  const evalEvery = int('eval-every');
  const seed = Number(values.seed);

  const backend = await initBackend();
  const rng = new Rng(seed);
  const bus = new RxEventBus();
  const started = Date.now();

  bus.events$.pipe(ofType('run-start')).subscribe((e) =>
    console.log(`ir2f demo: toy segmentation (${TOY_CLASSES.length} classes, ${size}×${size}, batch ${batch}, ` +
      `${e.steps} steps) on ${e.backend.name} ${e.backend.version}`));
  bus.events$.pipe(ofType('eval')).subscribe((e) => console.log(
    `step ${String(e.step).padStart(4)}  held-out mIoU ${(e.miou * 100).toFixed(1)}%  ` +
    `(IoU per class ${e.perClassIoU.map((v) => (v == null ? '—' : (v * 100).toFixed(0))).join(' / ')})`));
  bus.events$.pipe(ofType('step')).subscribe((e) => {
    if (e.step % 25 === 0 || e.step === 1) {
      console.log(`step ${String(e.step).padStart(4)}  loss ${e.losses.ce.toFixed(4)}  ${e.ms.toFixed(0)} ms/step`);
    }
  });
  bus.events$.pipe(ofType('run-end')).subscribe((e) => console.log(`done in ${(e.ms / 1000).toFixed(1)} s`));

  const net = new ToySegNet({ numClasses: TOY_CLASSES.length, width: 16 }, rng.fork('init'));
  const optimizer = tf.train.adam(3e-3);
  const classWeights = tf.tensor1d([1, 1, 1, 1]);
  const heldOut = makeToyBatch(rng.fork('held-out'), 8, size);
  const dataRng = rng.fork('data');

  const evaluate = (step: number) => {
    const logits = net.forward(heldOut.images, false);
    const acc = pixelAccuracy(logits, heldOut.labels);
    const { miou, perClass } = meanIoU(logits, heldOut.labels, TOY_CLASSES.length);
    logits.dispose();
    bus.emit({ type: 'eval', step, model: 'student', miou, perClassIoU: perClass, classNames: [...TOY_CLASSES] });
    return { acc, miou };
  };

  bus.emit({ type: 'run-start', config: { steps, size, batch, seed }, backend, seed, steps });
  const first = evaluate(0);
  let firstLoss = NaN;
  let lastLoss = NaN;
  for (let step = 1; step <= steps; step++) {
    const t0 = performance.now();
    const { images, labels } = makeToyBatch(dataRng, batch, size);
    const loss = trainStep(net, optimizer, images, labels, classWeights);
    images.dispose();
    labels.dispose();
    if (!Number.isFinite(loss)) throw new Error(`loss became ${loss} at step ${step}: lower the learning rate`);
    if (step === 1) firstLoss = loss;
    lastLoss = loss;
    bus.emit({ type: 'step', step, losses: { ce: loss }, lr: 3e-3, ms: performance.now() - t0 });
    if (step % evalEvery === 0 && step !== steps) evaluate(step);
  }
  const last = evaluate(steps);
  bus.emit({ type: 'run-end', step: steps, reason: 'completed', ms: Date.now() - started });
  bus.complete();
  console.log(`loss ${firstLoss.toFixed(3)} → ${lastLoss.toFixed(3)}; held-out pixel accuracy ` +
    `${(first.acc * 100).toFixed(1)}% → ${(last.acc * 100).toFixed(1)}%, mIoU ` +
    `${(first.miou * 100).toFixed(1)}% → ${(last.miou * 100).toFixed(1)}%`);
}

// tfjs-backend-wasm rethrows unhandled errors from its own handler, burying the message under minified
// source: report the error ourselves.
main().catch((err: unknown) => {
  console.error(`ir2f demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
