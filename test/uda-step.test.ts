import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import {
  AdamW, ClassMix, ConfidencePseudoLabeler, IdentityRectifier, initBackend, paramGroups, Rng, udaStep, WeightedCrossEntropy,
  type TrainMode,
} from '@ir2f/core';
import { createModel } from '@ir2f/backbones';

test.before(async () => {
  await initBackend('wasm');
});

function setup(seed: number) {
  const student = createModel('mit-tiny-daformer', { numClasses: 5, seed });
  const teacher = createModel('mit-tiny-daformer', { numClasses: 5, seed: seed + 100 });
  const parts = {
    student, teacher,
    pseudoLabeler: new ConfidencePseudoLabeler({ threshold: 0.3 }),
    rectifier: new IdentityRectifier(),
    mixer: new ClassMix({ numClasses: 5 }),
    loss: new WeightedCrossEntropy(),
    optimizer: new AdamW(paramGroups(student.namedState())),
  };
  const rng = new Rng(seed);
  const batch = {
    source: {
      image: tf.tensor4d(rng.normalArray(2 * 32 * 32 * 3), [2, 32, 32, 3]),
      labels: tf.tensor3d(Int32Array.from({ length: 2 * 32 * 32 }, (_, i) => (i % 32 < 10 ? 0 : i % 32 < 20 ? 3 : 255)), [2, 32, 32], 'int32'),
    },
    target: {
      image: tf.tensor4d(rng.normalArray(2 * 32 * 32 * 3), [2, 32, 32, 3]),
      labels: tf.tensor3d(Int32Array.from({ length: 2 * 32 * 32 }, (_, i) => (i % 7) % 5), [2, 32, 32], 'int32'),
    },
  };
  const dispose = () => {
    student.dispose();
    teacher.dispose();
    parts.optimizer.dispose();
    tf.dispose([batch.source.image, batch.source.labels, batch.target.image, batch.target.labels]);
  };
  return { parts, batch, dispose };
}

for (const mode of ['uda', 'source-only', 'target-oracle'] as TrainMode[]) {
  test.serial(`udaStep (${mode}): finite losses, weights move, the teacher follows by EMA, tf.memory() flat`, (t) => {
    const { parts, batch, dispose } = setup(1);
    const w0 = parts.student.variables[0].dataSync().slice();
    const tw0 = parts.teacher.variables[0].dataSync().slice();
    const run = (step: number) => udaStep(parts, batch, { mode, lr: 1e-3, ctx: { step, training: true, rng: new Rng(step) } });
    const first = run(0);
    const before = tf.memory().numTensors;
    const results = [1, 2, 3].map(run);
    t.is(tf.memory().numTensors, before);
    t.true(Object.values(first.losses).every(Number.isFinite));
    t.notDeepEqual(parts.student.variables[0].dataSync().slice(), w0);
    t.notDeepEqual(parts.teacher.variables[0].dataSync().slice(), tw0);
    if (mode === 'uda') {
      t.truthy(results[0].losses.mix);
      t.true(results[0].pseudo!.keptFraction >= 0 && results[0].pseudo!.keptFraction <= 1);
    } else {
      t.is(results[0].pseudo, undefined);
    }
    if (mode === 'target-oracle') t.truthy(results[0].losses.target);
    dispose();
  });
}

test.serial('a non-finite loss stops the step before the weights change, naming the loss and the step', (t) => {
  const { parts, batch, dispose } = setup(2);
  // every parameter and buffer, batch norms' running statistics included (the forward pass moves them)
  const state = () => parts.student.namedState().map(([n, e]) => [n, Array.from(e.variable.dataSync())]);
  const s0 = state();
  const nanBatch = { ...batch, source: { ...batch.source, image: tf.fill([2, 32, 32, 3], NaN) as tf.Tensor4D } };
  const err = t.throws(() => udaStep(parts, nanBatch, { mode: 'source-only', lr: 1e-3, ctx: { step: 7, training: true, rng: new Rng(0) } }));
  t.regex(err!.message, /loss '(total|source)' is NaN at step 8; the weights were not updated/);
  t.deepEqual(state(), s0);
  t.true(parts.student.namedState().some(([n]) => n.endsWith('running_mean')), 'the model has batch norms');
  nanBatch.source.image.dispose();
  dispose();
});
