/**
 * IR2F composed from its two plugins on the core loop (DESIGN §5.3, last learned row): the INR rectifier
 * and the RMM loss in one pipeline; L_RMM trains ψ end to end next to L_cal.
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

test.serial('IR2F = INR rectifier + RMM in one pipeline: loss parts, γ reported, ψ on another path than with L_cal alone (uniform and teacher-rest noise)', async (t) => {
  const calOnly = await ψAfter([inrRectifier({ hidden: [16], projChannels: 4 })]);
  const ir2f = await ψAfter([inrRectifier({ hidden: [16], projChannels: 4 }), rmm()]);
  t.is(ir2f.r.step, 3);
  t.deepEqual(ir2f.parts.sort(), ['mixSource', 'rectifierAux', 'rmm', 'source', 'total']);
  t.is(ir2f.rmmEvents.length, 3);
  t.true(ir2f.rmmEvents.every((g) => g > 0 && g < 1));
  t.notDeepEqual(ir2f.psi, calOnly.psi);
  // the teacher-rest noise: the trainer hands the loss the mixed teacher probabilities, ψ takes yet another path
  const rest = await ψAfter([inrRectifier({ hidden: [16], projChannels: 4 }), rmm({ noise: 'teacher-rest' })]);
  t.is(rest.r.step, 3);
  t.true(rest.rmmEvents.length === 3 && rest.rmmEvents.every((g) => g > 0 && g < 1));
  t.notDeepEqual(rest.psi, ir2f.psi);
});

test.serial('L_RMM alone sends a gradient into every ψ tensor (calibration off, the CE weight detached)', (t) => {
  const student = createModel('mit-tiny-daformer', { numClasses: 4, seed: 1 });
  const teacher = createModel('mit-tiny-daformer', { numClasses: 4, seed: 2 });
  const pipeline = createPipeline({
    backbone: student.backbone, decodeHead: student.decodeHead,
    plugins: [inrRectifier({ hidden: [16], projChannels: 4, calibrationWeight: 0, detachWeight: true }), rmm()],
  });
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
