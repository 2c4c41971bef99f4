/**
 * IR2F composed from its two plugins on the core loop (DESIGN §5.3, last learned row): the INR rectifier
 * and the RMM loss in one pipeline; L_ψ (v2) or L_RMM (v1) trains ψ end to end next to L_cal.
 */
import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import {
  createPipeline, initBackend, ofType, Rng, Tokens, train, udaStep, type AdamW,
} from '@ir2f/core';
import { createModel } from '@ir2f/backbones';
import { inrRectifier } from '@ir2f/plugin-inr-rectifier';
import { rmm } from '@ir2f/plugin-rmm';
import { syntheticBatch, syntheticData } from '../examples/toy/synthetic-data.js';

const S = 32;

test.before(async () => {
  await initBackend('wasm');
});

const data = syntheticData(S, 4);
const batchAt = (domain: string, i: number) => syntheticBatch(domain, i, S, 4);

async function ψAfter(plugins: ReturnType<typeof inrRectifier | typeof rmm>[]) {
  const student = createModel('mit-tiny-daformer', { numClasses: 4, seed: 1 });
  const teacher = createModel('mit-tiny-daformer', { numClasses: 4, seed: 1 });
  const pipeline = createPipeline({ backbone: student.backbone, decodeHead: student.decodeHead, plugins });
  const parts: string[] = [];
  pipeline.events$.pipe(ofType('step')).subscribe((e) => parts.push(...Object.keys(e.losses)));
  const rmmEvents: number[] = [];
  pipeline.events$.pipe(ofType('rmm')).subscribe((e) => rmmEvents.push(e.meanGamma));
  const rect = pipeline.resolve(Tokens.Rectifier);
  const r = await train({ config: { steps: 3, optimizer: { lr: 1e-3, warmupSteps: 0 } }, student, teacher, numClasses: 4, pipeline, data });
  const psi = rect.variables.map((v) => Array.from(v.dataSync()));
  student.dispose();
  teacher.dispose();
  await pipeline.dispose();
  return { r, psi, parts: [...new Set(parts)], rmmEvents };
}

test.serial('IR2F = INR rectifier + RMM in one pipeline: loss parts, γ reported (v2, and v1 with both noises), ψ on another path than with L_cal alone under v1', async (t) => {
  const calOnly = await ψAfter([inrRectifier({ hidden: [16], projChannels: 4 })]);
  const v2 = await ψAfter([inrRectifier({ hidden: [16], projChannels: 4 }), rmm()]);
  t.is(v2.r.step, 3);
  t.deepEqual(v2.parts.sort(), ['mix', 'psi', 'rectifierAux', 'source', 'total']);
  t.is(v2.rmmEvents.length, 3);
  t.true(v2.rmmEvents.every((g) => g >= 0 && g <= 1));
  const v1 = await ψAfter([inrRectifier({ hidden: [16], projChannels: 4 }), rmm({ formulation: 'label-mixture' })]);
  t.deepEqual(v1.parts.sort(), ['mixSource', 'rectifierAux', 'rmm', 'source', 'total']);
  t.true(v1.rmmEvents.length === 3 && v1.rmmEvents.every((g) => g > 0 && g < 1));
  t.notDeepEqual(v1.psi, calOnly.psi);
  // the teacher-rest noise: the trainer hands the loss the mixed teacher probabilities, ψ takes yet another path
  const rest = await ψAfter([inrRectifier({ hidden: [16], projChannels: 4 }), rmm({ formulation: 'label-mixture', noise: 'teacher-rest' })]);
  t.is(rest.r.step, 3);
  t.true(rest.rmmEvents.length === 3 && rest.rmmEvents.every((g) => g > 0 && g < 1));
  t.notDeepEqual(rest.psi, v1.psi);
});

for (const formulation of ['loss-mixture', 'label-mixture'] as const) {
test.serial(`${formulation === 'loss-mixture' ? 'L_ψ (v2, past its warm-up)' : 'L_RMM (v1)'} alone sends a gradient into every ψ tensor (calibration off, the CE weight detached)`, (t) => {
  const student = createModel('mit-tiny-daformer', { numClasses: 4, seed: 1 });
  const teacher = createModel('mit-tiny-daformer', { numClasses: 4, seed: 2 });
  const pipeline = createPipeline({
    backbone: student.backbone, decodeHead: student.decodeHead,
    plugins: [inrRectifier({ hidden: [16], projChannels: 4, calibrationWeight: 0, detachWeight: true }), rmm({ formulation })],
  });
  // v2: a running fit that has separated (its first steps train ψ on L_cal only)
  pipeline.resolve(Tokens.Loss).state?.set([1, 1, -2, 0.5, 0, 0.5]);
  const rectifier = pipeline.resolve(Tokens.Rectifier);
  const seen: Record<string, number> = {};
  const optimizer = { apply: (g: Record<string, tf.Tensor>) => Object.entries(g).forEach(([k, v]) => (seen[k] = tf.tidy(() => tf.sum(tf.abs(v)).dataSync()[0]))) } as unknown as AdamW;
  const [s, tb] = [batchAt('s', 0), batchAt('t', 0)];
  const batch = {
    source: { image: tf.tensor4d(s.images, [2, S, S, 3]), labels: tf.tensor3d(Int32Array.from(s.labels!), [2, S, S], 'int32') },
    target: { image: tf.tensor4d(tb.images, [2, S, S, 3]) },
  };
  udaStep({
    student, teacher, optimizer, rectifier, pseudoLabeler: pipeline.resolve(Tokens.PseudoLabeler), mixer: pipeline.resolve(Tokens.Mixer),
    loss: pipeline.resolve(Tokens.Loss),
  }, batch, { mode: 'uda', lr: 0, ctx: { step: 2, training: true, rng: new Rng(3) } });
  t.true(rectifier.variables.every((v) => (seen[v.name] ?? 0) > 0), 'every ψ tensor has a non-zero gradient');
  tf.dispose([batch.source.image, batch.source.labels, batch.target.image]);
  student.dispose();
  teacher.dispose();
  void pipeline.dispose();
});
}
