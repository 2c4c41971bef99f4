/** Each example in examples/ runs as documented (with small step counts). */
import test from 'ava';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { composePipeline } from '../examples/compose-pipeline.js';
import { earlyStopping } from '../examples/subscribe-events.js';
import { exportAndRun } from '../examples/export-onnx.js';
import { runCli } from '@ir2f/cli';
import { ownDomain } from '../examples/own-domain.js';
import { EntropyRectifier, swapRectifier } from '../examples/swap-rectifier.js';

test.serial('compose-pipeline: core + preset + both plugins train and evaluate on the embedded benchmark', async (t) => {
  const lines: string[] = [];
  const r = await composePipeline(4, (l) => lines.push(l));
  t.is(r.step, 4);
  t.true(r.eval!.student.miou >= 0 && r.eval!.student.miou <= 1);
  t.true(lines.some((l) => /step 4 student: mIoU/.test(l)));
});

test.serial('swap-rectifier: a user-written rectifier bound to the Rectifier token is the one trained with', async (t) => {
  const { result, rectifier } = await swapRectifier(3);
  t.is(result.step, 3);
  t.true(rectifier instanceof EntropyRectifier);
});

test.serial('subscribe-events: early stopping on mIoU ends the run interrupted, before its last step', async (t) => {
  const { result, evals } = await earlyStopping({ steps: 200, evalEvery: 2, patience: 1 });
  t.is(result.reason, 'interrupted');
  t.true(result.step < 200 && evals.length >= 2);
});

test.serial('export-onnx: onnxruntime on an image file agrees with tfjs and writes a class-map PNG', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-ex-'));
  try {
    const r = await exportAndRun(dir, 2);
    t.true(r.maxAbsDiff < 1e-4, `max |Δlogit| ${r.maxAbsDiff}`);
    t.true(r.agreement > 0.999);
    t.true((await stat(r.png)).size > 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.serial('own-domain: the guide on a generated farmland dataset (palette source labels, id target labels under other names): check, train, eval over the spec\'s classes, predict', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-own-'));
  try {
    const r = await ownDomain(dir, { steps: 4, counts: { source: 24, targetTrain: 16, targetVal: 6 } });
    const [checkSource, checkTarget, trainOut] = r.outputs;
    t.true(checkSource.includes('no problems found'), checkSource.join('\n'));
    t.true(checkSource.some((l) => /^ {2}roof\s+\d/.test(l)), 'the source\'s class-frequency table has roofs');
    t.true(checkTarget.includes('no problems found'), checkTarget.join('\n'));
    t.true(checkTarget.some((l) => /^ {2}field\s+\d/.test(l)), 'the target table is in its own names');
    t.true(trainOut.some((l) => /24 source \(folder\), 16 target \(folder train\), 6 val \(folder val\)/.test(l)), trainOut.join('\n'));
    // five source classes make the model; the target has no roofs, so its mIoU averages over four, in the source's names
    t.deepEqual(r.eval.classes, [0, 1, 2, 3]);
    t.deepEqual(Object.keys(r.eval.perClass), ['soil', 'crop', 'tree', 'water']);
    t.true(r.eval.miou >= 0 && r.eval.miou <= 1);
    const mean = Object.values(r.eval.perClass).reduce<number>((a, v) => a + (v ?? 0), 0) / 4;
    t.true(Math.abs(mean - r.eval.miou) < 1e-9, 'mIoU is the mean over those four');
    // eval on a folder named on the command line, through its own spec: the same images, the same score
    const lines: string[] = [];
    const ckpt = path.join(dir, 'run', 'step-000004.safetensors');
    t.is(await runCli(['node', 'ir2f', 'eval', '--checkpoint', ckpt, '--data', `folder:${path.join(dir, 'target')}`, '--classes', path.join(dir, 'target.yaml'), '--json'], { log: (l) => lines.push(l), error: (l) => lines.push(l) }), 0, lines.join('\n'));
    t.is(JSON.parse(lines.join('\n')).miou, r.eval.miou);
    for (const f of ['check-source.png', 'check-target.png', 'run/curves.png', 'run/pred/aerial_val_0000_pred.png']) t.true((await stat(path.join(dir, f))).size > 0, f);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
