/**
 * The plugin as a user composes it: @ir2f/core + this package, a user-written backbone and head, the core
 * trainer. Gradients reach ψ (projection and MLP) and never the teacher; ψ is checkpointed and resumed.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  BatchNorm2d, ClassMix, Conv2d, ConfidencePseudoLabeler, createPipeline, initBackend, Module, ofType, readCheckpoint, Rng, Tokens,
  train, udaStep, WeightedCrossEntropy, type AdamW, type DecodeHead, type DecodeOutput, type EventOf, type SegmentationNetwork,
} from '@ir2f/core';
import { inrRectifier, InrRectifier } from '@ir2f/plugin-inr-rectifier';
import { syntheticBatch, syntheticData } from '../../../examples/toy/synthetic-data.js';

const K = 4;
const S = 16;

test.before(async () => {
  await initBackend('wasm');
});

/** A user's own head: 1×1 classifier over an 8-channel embedding. */
class MyHead extends Module implements DecodeHead {
  readonly numClasses = K;
  readonly embeddingChannels = 8;
  readonly cls: Conv2d;
  constructor(rng: Rng) {
    super();
    this.cls = this.child('cls', new Conv2d(8, K, { kernel: 1, bias: true }, rng));
  }
  forward(features: tf.Tensor4D[]): DecodeOutput {
    const embedding = features.at(-1)!;
    return { logits: this.cls.forward(embedding) as tf.Tensor4D, embedding };
  }
}

/** A user's own network: two strided convolutions (stride 4 features) and the head above. */
class MyNet extends Module implements SegmentationNetwork {
  readonly c1: Conv2d;
  readonly bn: BatchNorm2d;
  readonly c2: Conv2d;
  readonly head: MyHead;
  constructor(seed: number) {
    super();
    const rng = new Rng(seed);
    this.c1 = this.child('c1', new Conv2d(3, 8, { kernel: 3, stride: 2, padding: 1 }, rng.fork('c1')));
    this.bn = this.child('bn', new BatchNorm2d(8));
    this.c2 = this.child('c2', new Conv2d(8, 8, { kernel: 3, stride: 2, padding: 1 }, rng.fork('c2')));
    this.head = this.child('decode_head', new MyHead(rng.fork('head')));
  }
  forward(x: tf.Tensor4D): DecodeOutput {
    return tf.tidy(() => {
      const { logits, embedding } = this.head.forward([tf.relu(this.c2.forward(tf.relu(this.bn.forward(this.c1.forward(x))))) as tf.Tensor4D]);
      return { logits, embedding };
    });
  }
}

const data = syntheticData(S, K);
const batchAt = (domain: string, i: number) => syntheticBatch(domain, i, S, K);

function compose(student: MyNet, options = {}) {
  return createPipeline({
    decodeHead: student.head, pseudoLabeler: new ConfidencePseudoLabeler({ threshold: 0.3 }),
    plugins: [inrRectifier({ projChannels: 4, hidden: [16, 16], mapEvery: 2, mapSize: 8, ...options })],
    require: ['Rectifier', 'PseudoLabeler', 'Loss', 'Mixer', 'EventBus', 'DecodeHead'],
  });
}

test.serial('in a pipeline with a user-written network: ψ trains with the student, reports events, checkpoints and resumes', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-inr-'));
  try {
    const run = async (steps: number, resume?: string) => {
      const [student, teacher] = [new MyNet(1), new MyNet(2)];
      const pipeline = compose(student);
      const rectifier = pipeline.resolve(Tokens.Rectifier) as InrRectifier;
      t.true(rectifier instanceof InrRectifier);
      t.is(pipeline.resolve(Tokens.Rectifier), rectifier, 'one rectifier per pipeline');
      const events: EventOf<'rectifier'>[] = [];
      pipeline.events$.pipe(ofType('rectifier')).subscribe((e) => events.push(e));
      const aux: number[] = [];
      pipeline.events$.pipe(ofType('step')).subscribe((e) => aux.push(e.losses.rectifierAux));
      const before = rectifier.variables.map((v) => v.dataSync().slice());
      const r = await train({ config: { steps, checkpointEvery: 2, optimizer: { lr: 1e-3, warmupSteps: 0 } }, student, teacher, numClasses: K, pipeline, data, workDir: dir, resume });
      const after = rectifier.variables.map((v) => Array.from(v.dataSync()));
      student.dispose();
      teacher.dispose();
      await pipeline.dispose();
      return { r, events, aux, before, after };
    };
    const first = await run(4);
    t.is(first.r.step, 4);
    t.true(first.after.every((v, i) => v.some((x, j) => x !== first.before[i][j])), 'every ψ tensor moved');
    t.is(first.events.length, 4);
    for (const e of first.events) {
      t.true(e.p10 <= e.p50 && e.p50 <= e.p90 && e.mean > 0 && e.mean < 1 && e.lowShare >= 0 && e.lowShare <= 1);
    }
    // the calibration loss (λ_cal · BCE) of every step, reported with the step's losses
    t.is(first.aux.length, 4);
    t.true(first.aux.every((v) => Number.isFinite(v) && v > 0));
    t.deepEqual(first.events.filter((e) => e.map).map((e) => [e.step, e.map!.width, e.map!.height]), [[1, 8, 8], [3, 8, 8]]);
    const ckpt = await readCheckpoint(first.r.checkpoint!);
    t.is([...ckpt.tensors.keys()].filter((k) => k.startsWith('rectifier.')).length, first.after.length);
    // a resumed run restores ψ from the checkpoint: with no steps left, ψ equals the trained one
    const again = await run(4, 'latest');
    t.deepEqual(again.after, first.after);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.serial('disposing the pipeline frees the rectifier it made (a factory-made part, which tsyringe does not dispose)', async (t) => {
  const student = new MyNet(1);
  const before = tf.memory().numTensors;
  const pipeline = compose(student);
  const rectifier = pipeline.resolve(Tokens.Rectifier) as InrRectifier;
  t.true(tf.memory().numTensors > before);
  await pipeline.dispose();
  t.is(tf.memory().numTensors, before);
  t.true(rectifier.variables.every((v) => v.isDisposed));
  student.dispose();
});

test.serial('gradients reach the projection and the MLP, through the loss only when r is not detached, never the teacher', (t) => {
  const grads = (detachWeight: boolean) => {
    const [student, teacher] = [new MyNet(1), new MyNet(2)];
    const pipeline = compose(student, { detachWeight, calibrationWeight: 0 });
    const rectifier = pipeline.resolve(Tokens.Rectifier) as InrRectifier;
    const seen: Record<string, number> = {};
    const optimizer = { apply: (g: Record<string, tf.Tensor>) => Object.entries(g).forEach(([k, v]) => (seen[k] = tf.tidy(() => tf.sum(tf.abs(v)).dataSync()[0]))) } as unknown as AdamW;
    const b = [batchAt('s', 0), batchAt('t', 0)].map((x) => ({
      image: tf.tensor4d(x.images, [2, S, S, 3]), labels: tf.tensor3d(Int32Array.from(x.labels!), [2, S, S], 'int32'),
    }));
    udaStep({
      student, teacher, optimizer, rectifier, pseudoLabeler: new ConfidencePseudoLabeler({ threshold: 0.3 }),
      mixer: new ClassMix({ numClasses: K }), loss: new WeightedCrossEntropy(),
    }, { source: b[0], target: { image: b[1].image } }, { mode: 'uda', lr: 0, ctx: { step: 3, training: true, rng: new Rng(1) } });
    const names = { rect: rectifier.variables.map((v) => v.name), teacher: teacher.variables.map((v) => v.name) };
    tf.dispose(b.flatMap((x) => [x.image, x.labels]));
    student.dispose();
    teacher.dispose();
    void pipeline.dispose();
    return { seen, names };
  };
  const live = grads(false);
  t.true(live.names.rect.every((n) => live.seen[n] > 0), 'every ψ tensor gets a gradient from the mixed loss');
  t.true(live.names.teacher.every((n) => live.seen[n] === undefined), 'no teacher gradient');
  const detached = grads(true);
  t.true(detached.names.rect.every((n) => !detached.seen[n]), 'detached weight: no gradient from the loss (calibration off)');
});

test.serial('calibrationView shifted: the teacher labels the mixer\'s full augmentation of the source crop for L_cal; the other losses are unchanged', (t) => {
  const losses = (calibrationView: 'clean' | 'shifted') => {
    const [student, teacher] = [new MyNet(1), new MyNet(2)];
    const pipeline = compose(student, { calibrationView });
    const rectifier = pipeline.resolve(Tokens.Rectifier) as InrRectifier;
    t.is(rectifier.calibrationView, calibrationView);
    const optimizer = { apply: (g: Record<string, tf.Tensor>) => tf.dispose(Object.values(g)) } as unknown as AdamW;
    const b = [batchAt('s', 0), batchAt('t', 0)].map((x) => ({
      image: tf.tensor4d(x.images, [2, S, S, 3]), labels: tf.tensor3d(Int32Array.from(x.labels!), [2, S, S], 'int32'),
    }));
    const r = udaStep({
      student, teacher, optimizer, rectifier, pseudoLabeler: new ConfidencePseudoLabeler({ threshold: 0.3 }),
      mixer: new ClassMix({ numClasses: K }), loss: new WeightedCrossEntropy(),
    }, { source: b[0], target: { image: b[1].image } }, { mode: 'uda', lr: 0, ctx: { step: 3, training: true, rng: new Rng(1) } });
    tf.dispose(b.flatMap((x) => [x.image, x.labels]));
    student.dispose();
    teacher.dispose();
    void pipeline.dispose();
    return r.losses;
  };
  const [clean, shifted] = [losses('clean'), losses('shifted')];
  t.is(shifted.source, clean.source);
  t.is(shifted.mix, clean.mix);
  t.not(shifted.rectifierAux, clean.rectifierAux);
  t.true(Number.isFinite(shifted.rectifierAux));
});
