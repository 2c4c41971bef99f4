/** Each example in examples/ runs as documented (with small step counts). */
import test from 'ava';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { composePipeline } from '../examples/compose-pipeline.js';
import { earlyStopping } from '../examples/subscribe-events.js';
import { exportAndRun } from '../examples/export-onnx.js';
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
