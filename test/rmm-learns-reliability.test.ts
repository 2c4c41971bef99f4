/**
 * A short IR2F run (INR rectifier + RMM) on a small generated synthetic→real benchmark: r ends up lower on
 * pixels whose pseudo-label is wrong than on those where it is right, measured against target labels the
 * trainer never reads (it trains on the unlabelled target split).
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { inferLogits, initBackend } from '@ir2f/core';
import { loadRawConfig, loadTrained, loadTrainedRectifier, resolveConfig, runTraining } from '@ir2f/cli';
import { loadSample, makeBenchmark, normalize, scanDataset } from '@ir2f/datasets';

test('after 160 IR2F steps, mean r on wrong pseudo-labels < mean r on right ones (target train labels, unseen)', async (t) => {
  await initBackend('wasm');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-rmm-'));
  try {
    const bench = await makeBenchmark('synth2real', path.join(dir, 'b'), { size: [64, 48], counts: { source: 40, targetTrain: 20, targetVal: 4 } });
    const config = resolveConfig(await loadRawConfig('synth2real'), {
      steps: 160, source: `gta:${bench.source.root}`, target: `cityscapes:${bench.targetTrain.root}`,
      set: ['data.crop=[32,32]', 'data.valLimit=1', 'train.evalEvery=0', 'train.checkpointEvery=0', 'train.optimizer.warmupSteps=8',
        'data.rareClass.minPixels=5', 'plugins=[{"package":"@ir2f/plugin-inr-rectifier","options":{"hidden":[32],"projChannels":8}},{"package":"@ir2f/plugin-rmm"}]'],
    });
    const run = await runTraining(config, { workDir: path.join(dir, 'run'), quiet: true });
    const { model: teacher, checkpoint } = await loadTrained(run.checkpoint!, 'teacher');
    const rect = await loadTrainedRectifier(checkpoint, config, teacher);
    const target = await scanDataset(bench.targetTrain); // labelled on disk; the run read it unlabelled
    let [rightSum, rightN, wrongSum, wrongN] = [0, 0, 0, 0];
    for (const item of target.items) {
      const s = await loadSample(item);
      const { width, height } = s.image;
      const [pred, r] = tf.tidy(() => {
        const x = tf.tensor4d(normalize(s.image), [1, height, width, 3]);
        const out = teacher.batchStatsEval().forward(x);
        const rMap = rect.rectifier.rectifyGrid!(out.embedding, tf.logSoftmax(out.logits) as tf.Tensor4D, height, width);
        return [tf.argMax(inferLogits(teacher, x), 3).dataSync(), rMap.dataSync()];
      });
      s.label!.data.forEach((y, i) => {
        if (y === 255) return;
        if (pred[i] === y) [rightSum, rightN] = [rightSum + r[i], rightN + 1];
        else [wrongSum, wrongN] = [wrongSum + r[i], wrongN + 1];
      });
    }
    teacher.dispose();
    await rect.dispose();
    t.true(rightN > 0 && wrongN > 0, `right ${rightN}, wrong ${wrongN}`);
    const [right, wrong] = [rightSum / rightN, wrongSum / wrongN];
    t.log(`mean r: right ${right.toFixed(3)} (${rightN} px), wrong ${wrong.toFixed(3)} (${wrongN} px)`);
    t.true(wrong < right, `mean r on wrong pseudo-labels ${wrong} should be below right ones ${right}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
