import test from 'ava';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import {
  DataParallelStepper, initBackend, ReplicaProbe, replicaState, Rng, stepPartsFor, Tokens, train, TrainConfigSchema, udaStep, type EventBus, type HostBatch, type Ir2fEvent, type TrainData,
} from '@ir2f/core';
import { buildReplica } from './fixtures/tiny-replica.js';

const K = 4;
const S = 16;
const REPLICA = { module: fileURLToPath(new URL('./fixtures/tiny-replica.ts', import.meta.url)), args: { K, seeds: [1, 2] } };

test.before(async () => {
  await initBackend('wasm');
});

function batchAt(domain: string, i: number): HostBatch {
  const rng = new Rng(`${domain}-${i}`);
  const images = Float32Array.from(rng.normalArray(2 * S * S * 3));
  const labels = Uint8Array.from({ length: 2 * S * S }, (_, p) => (p % 7 === 0 ? 255 : Math.min(K - 1, Math.max(0, Math.floor(images[p * 3] + 2)))));
  return { images, labels, batchSize: 2, height: S, width: S };
}

const tensors = (b: HostBatch) => ({
  image: tf.tensor4d(b.images, [2, S, S, 3]),
  labels: tf.tensor3d(Int32Array.from(b.labels!), [2, S, S], 'int32'),
});

const maxRel = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let scale = 1e-6;
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  return diff / scale;
};

/** Stop the worker and free both replicas' parts. */
async function closeAll(stepper: DataParallelStepper, parts: ReturnType<typeof stepPartsFor>[]): Promise<void> {
  await stepper.close();
  for (const p of parts) {
    p.optimizer.dispose();
    p.student.dispose();
    p.teacher.dispose();
    p.rectifier.dispose();
  }
}

const equalSteps = test.macro(async (t, calibrated?: 'clean' | 'shifted') => {
  const config = TrainConfigSchema.parse({ steps: 6, seed: 5, optimizer: { lr: 1e-2, warmupSteps: 0 } });
  const spec = { ...REPLICA, args: { ...REPLICA.args, calibrated } };
  const single = stepPartsFor(buildReplica(spec.args as never), config);
  const parallel = stepPartsFor(buildReplica(spec.args as never), config);
  const rectifierInit = parallel.rectifier.variables.map((v) => v.dataSync()[0]);
  const stepper = await DataParallelStepper.start(spec, { trainConfig: config, backend: 'wasm', threads: 1 }, parallel);
  try {
    const root = new Rng(config.seed);
    const counts: number[] = [];
    const workerCounts: number[] = [];
    for (let step = 0; step < 6; step++) {
      const [sb, tb] = [batchAt('source', step), batchAt('target', step)];
      const opts = { mode: 'uda' as const, lr: 1e-2, ctx: { step, training: true, rng: root.fork(`step-${step}`) } };
      const [s1, t1] = [tensors(sb), tensors(tb)];
      const a = udaStep(single, { source: s1, target: t1 }, opts);
      const [s2, t2] = [tensors(sb), tensors(tb)];
      const b = await stepper.step({ host: { source: sb, target: tb }, tensors: { source: s2, target: t2 } }, opts);
      tf.dispose([s1.image, s1.labels, t1.image, t1.labels, s2.image, s2.labels, t2.image, t2.labels]);
      t.deepEqual(Object.keys(b.losses).sort(), Object.keys(a.losses).sort());
      t.is('rectifierAux' in a.losses, !!calibrated);
      for (const k of Object.keys(a.losses)) t.true(Math.abs(a.losses[k] - b.losses[k]) <= 1e-5 * Math.abs(a.losses[k]) + 1e-7, `step ${step} ${k}: ${a.losses[k]} vs ${b.losses[k]}`);
      t.true(Math.abs(a.pseudo!.keptFraction - b.pseudo!.keptFraction) < 1e-6);
      counts.push(tf.memory().numTensors);
      workerCounts.push(await stepper.workerTensors());
    }
    // the replicas stayed equal: the main thread's, the worker's and the one-replica run's state
    const state = (p: typeof single) => [
      ...[...p.student.namedState(), ...p.teacher.namedState()].map(([, e]) => e.variable), ...p.rectifier.variables,
    ].map((v) => v.dataSync());
    const [ref, mine, theirs] = [state(single), state(parallel), await stepper.workerState()];
    // the rectifier trained (on its source-side loss, computed here from the worker's labels)
    if (calibrated) t.true(parallel.rectifier.variables.every((v, i) => Math.abs(v.dataSync()[0] - rectifierInit[i]) > 1e-4));
    const err = Math.max(...ref.map((r, i) => maxRel(mine[i], r)), ...ref.map((r, i) => maxRel(theirs[i], r)));
    t.true(err < 1e-5, `state differs by ${err}`);
    // batch norm's running statistics moved, and moved alike
    const bn = parallel.student.namedState().find(([n]) => n.endsWith('running_mean'))![1].variable;
    t.true(maxRel(bn.dataSync(), new Float32Array(bn.size)) > 0);
    t.is(new Set(counts.slice(1)).size, 1, `main numTensors: ${counts.join(', ')}`);
    t.is(new Set(workerCounts.slice(1)).size, 1, `worker numTensors: ${workerCounts.join(', ')}`);
  } finally {
    await closeAll(stepper, [single, parallel]);
  }
});

test.serial('the target pass on a worker replica: the losses and the state of one-replica steps within 1e-5, memory flat on both sides', equalSteps);
test.serial('a rectifier\'s source-side loss on two replicas (the worker\'s teacher labels the source crop): one replica\'s losses and state', equalSteps, 'clean');
test.serial('… and on the shifted source view (the worker draws the same augmentation)', equalSteps, 'shifted');

const trainData = (): TrainData => {
  const gen = (domain: string) => async function* (from: number) {
    for (let i = from; ; i++) yield batchAt(domain, i);
  };
  return { source: gen('source'), target: gen('target') };
};

/** A train() run of the tiny replica: its events and result. */
async function trainRun(steps: number, parallel?: Parameters<typeof train>[0]['parallel']) {
  const replica = buildReplica(REPLICA.args as never);
  const events: Ir2fEvent[] = [];
  replica.pipeline.resolve<EventBus>(Tokens.EventBus).events$.subscribe((e) => events.push(e));
  try {
    const result = await train({
      config: { steps, seed: 2, optimizer: { lr: 1e-2, warmupSteps: 1 } }, student: replica.student, teacher: replica.teacher, numClasses: K,
      pipeline: replica.pipeline, data: trainData(), parallel,
    });
    return { events, result };
  } finally {
    replica.student.dispose();
    replica.teacher.dispose();
    await replica.pipeline.dispose();
  }
}

const stepLosses = (ev: Ir2fEvent[]) => ev.filter((e) => e.type === 'step').map((e) => (e as Extract<Ir2fEvent, { type: 'step' }>).losses);

test.serial('train({ parallel }) gives the losses of the one-replica run and reports the worker\'s events', async (t) => {
  const [{ events: one }, { events: two, result }] = [await trainRun(5), await trainRun(5, { replica: REPLICA })];
  t.is(stepLosses(two).length, 5);
  t.is(result.workers, 2);
  stepLosses(one).forEach((l, i) => {
    for (const k of Object.keys(l)) t.true(Math.abs(l[k] - stepLosses(two)[i][k]) <= 1e-5 * Math.abs(l[k]) + 1e-7, `step ${i + 1} ${k}`);
  });
  t.deepEqual(two.map((e) => e.type).filter((x, i, a) => a.indexOf(x) === i), one.map((e) => e.type).filter((x, i, a) => a.indexOf(x) === i));
});

test.serial('train({ parallel: { auto } }) times one replica against two, keeps the faster, and trains as one replica does throughout', async (t) => {
  // warm-up 1, then 3 steps alone (1 untimed), the worker brought up to date, 2 on two replicas: decided after step 6
  const [{ events: one }, { events: auto, result }] = [
    await trainRun(9), await trainRun(9, { replica: REPLICA, auto: { warmup: 1, steps: 2, minSteps: 0 } }),
  ];
  const choices = auto.filter((e): e is Extract<Ir2fEvent, { type: 'replicas' }> => e.type === 'replicas');
  t.is(choices.length, 1);
  const [choice] = choices;
  t.is(choice.step, 6);
  t.true(choice.msPerStep.one > 0 && choice.msPerStep.two > 0);
  t.is(choice.workers, choice.msPerStep.one < choice.msPerStep.two ? 1 : 2);
  t.is(result.workers, choice.workers);
  // the worker sat out steps 2–4: had it not taken the main thread's state after them, its target passes would differ
  t.is(stepLosses(auto).length, 9);
  stepLosses(one).forEach((l, i) => {
    for (const k of Object.keys(l)) t.true(Math.abs(l[k] - stepLosses(auto)[i][k]) <= 1e-5 * Math.abs(l[k]) + 1e-7, `step ${i + 1} ${k}: ${l[k]} vs ${stepLosses(auto)[i][k]}`);
  });
  // a run shorter than minSteps keeps two replicas unprobed
  const { events: short } = await trainRun(3, { replica: REPLICA, auto: { minSteps: 10 } });
  t.false(short.some((e) => e.type === 'replicas'));
});

test('ReplicaProbe: two replicas for the warm-up, one for steps + 1 (the first untimed), a sync, then two; the faster median wins', (t) => {
  const plan = (times: (step: number) => number) => {
    const probe = ReplicaProbe.start(10, 100, { warmup: 2, steps: 3 })!;
    const trace: string[] = [];
    for (let step = 10; step < 30; step++) {
      trace.push(`${probe.needsSync(step) ? 's' : ''}${probe.parallel(step) ? 2 : 1}`);
      const choice = probe.record(step, times(step));
      if (choice) return { trace: trace.join(' '), choice };
    }
    return { trace: trace.join(' ') };
  };
  // steps 12–15 alone (12 untimed), 16–18 on two
  const alone = new Set([12, 13, 14, 15]);
  const fastOne = plan((s) => (s === 12 ? 500 : alone.has(s) ? 100 : 150));
  t.is(fastOne.trace, '2 2 1 1 1 1 s2 2 2');
  t.deepEqual(fastOne.choice, { workers: 1, one: 100, two: 150 });
  const fastTwo = plan((s) => (alone.has(s) ? 130 : 120));
  t.deepEqual(fastTwo.choice, { workers: 2, one: 130, two: 120 });
  t.is(ReplicaProbe.start(10, 59), undefined);
  t.throws(() => ReplicaProbe.start(0, 100, { steps: 0 }), { message: /steps ≥ 1/ });
});

test.serial('a loss with host state: the worker runs it from the main thread\'s state and the main thread keeps its update, as on one replica', async (t) => {
  const args = { ...REPLICA.args, statefulLoss: true };
  const config = TrainConfigSchema.parse({ steps: 4, seed: 5, optimizer: { lr: 1e-2, warmupSteps: 0 } });
  const single = stepPartsFor(buildReplica(args as never), config);
  const parallel = stepPartsFor(buildReplica(args as never), config);
  const stepper = await DataParallelStepper.start({ ...REPLICA, args }, { trainConfig: config, backend: 'wasm', threads: 1 }, parallel);
  try {
    const root = new Rng(config.seed);
    for (let step = 0; step < 4; step++) {
      const [sb, tb] = [batchAt('source', step), batchAt('target', step)];
      const opts = { mode: 'uda' as const, lr: 1e-2, ctx: { step, training: true, rng: root.fork(`step-${step}`) } };
      const [s1, t1, s2, t2] = [tensors(sb), tensors(tb), tensors(sb), tensors(tb)];
      udaStep(single, { source: s1, target: t1 }, opts);
      await stepper.step({ host: { source: sb, target: tb }, tensors: { source: s2, target: t2 } }, opts);
      tf.dispose([s1.image, s1.labels, t1.image, t1.labels, s2.image, s2.labels, t2.image, t2.labels]);
    }
    const [a, b] = [single.loss.state!, parallel.loss.state!];
    t.is(b[0], 4);
    t.true(Math.abs(a[1] - b[1]) <= 1e-5 * Math.abs(a[1]), `running mean ${a[1]} vs ${b[1]}`);
  } finally {
    await closeAll(stepper, [single, parallel]);
  }
});

const failedSteps = test.macro(async (t, calibrated?: 'clean') => {
  const config = TrainConfigSchema.parse({ steps: 4, seed: 1, optimizer: { lr: 1e-2, warmupSteps: 0 } });
  const spec = { ...REPLICA, args: { ...REPLICA.args, calibrated } };
  const parts = stepPartsFor(buildReplica(spec.args as never), config);
  const stepper = await DataParallelStepper.start(spec, { trainConfig: config, backend: 'wasm', threads: 1 }, parts);
  try {
    const root = new Rng(config.seed);
    const opts = (step: number) => ({ mode: 'uda' as const, lr: 1e-2, ctx: { step, training: true, rng: root.fork(`step-${step}`) } });
    const go = async (step: number, sb: HostBatch, tb: HostBatch) => {
      const [s, tg] = [tensors(sb), tensors(tb)];
      try {
        return await stepper.step({ host: { source: sb, target: tb }, tensors: { source: s, target: tg } }, opts(step));
      } finally {
        tf.dispose([s.image, s.labels, tg.image, tg.labels]);
      }
    };
    await go(0, batchAt('source', 0), batchAt('target', 0));
    const before = await stepper.workerState();
    for (const side of ['source', 'target'] as const) {
      const bad = batchAt(side, 1);
      bad.images.fill(NaN);
      const err = await t.throwsAsync(go(1, side === 'source' ? bad : batchAt('source', 1), side === 'target' ? bad : batchAt('target', 1)));
      t.regex(err!.message, /is NaN at step 2; the weights were not updated/);
    }
    // a source pass that throws (labels that do not fit the image): the worker drops its pass's update too (and
    // with a calibrated rectifier its source labels, already sent, are not taken for the next step's)
    const [sb, tb] = [batchAt('source', 1), batchAt('target', 1)];
    const [s, tg] = [tensors(sb), tensors(tb)];
    const wrong = tf.zeros([2, S, S - 1], 'int32') as tf.Tensor3D;
    await t.throwsAsync(stepper.step({ host: { source: sb, target: tb }, tensors: { source: { image: s.image, labels: wrong }, target: tg } }, opts(1)));
    tf.dispose([s.image, s.labels, tg.image, tg.labels, wrong]);
    t.true((await stepper.workerState()).every((a, i) => maxRel(a, before[i]) === 0), 'the worker did not move');
    // this replica is as it was, running statistics included (the worker's are reset at its next step)
    const mine = () => replicaState(parts, parts.optimizer).map((x) => x.dataSync());
    t.true(mine().every((a, i) => maxRel(a, before[i]) === 0), 'the main replica did not move');
    const r = await go(1, batchAt('source', 1), batchAt('target', 1));
    t.true(Number.isFinite(r.losses.total));
    const [a, b] = [mine(), await stepper.workerState()];
    t.true(a.every((x, i) => maxRel(b[i], x) < 1e-6), 'the replicas agree after the next step');
  } finally {
    await stepper.close();
    parts.optimizer.dispose();
    parts.student.dispose();
    parts.teacher.dispose();
    parts.rectifier.dispose();
  }
});

test.serial('a non-finite loss in either pass, or a source pass that throws, stops the step on both replicas before any update; the next step goes on', failedSteps);
test.serial('… with a rectifier\'s source-side loss (labels from the worker)', failedSteps, 'clean');

test.serial('a replica module that cannot be loaded or built is an error naming it, and nothing is left running', async (t) => {
  const config = TrainConfigSchema.parse({ steps: 1 });
  const parts = stepPartsFor(buildReplica(REPLICA.args as never), config);
  try {
    const missing = await t.throwsAsync(DataParallelStepper.start({ ...REPLICA, module: '/nonexistent/replica.js' }, { trainConfig: config, backend: 'wasm', threads: 1 }, parts));
    t.regex(missing!.message, /data-parallel worker: .*\/nonexistent\/replica\.js/);
    const noExport = await t.throwsAsync(DataParallelStepper.start({ ...REPLICA, export: 'nothingHere' }, { trainConfig: config, backend: 'wasm', threads: 1 }, parts));
    t.regex(noExport!.message, /has no export 'nothingHere'/);
  } finally {
    parts.optimizer.dispose();
    parts.student.dispose();
    parts.teacher.dispose();
  }
});
