import test from 'ava';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  initBackend, Ir2fError, readCheckpoint, Rng, Tokens, train, type HostBatch, type Ir2fEvent,
  type TrainConfigInput, type TrainData,
} from '@ir2f/core';
import { tinyPipeline as corePipeline } from './fixtures/tiny-replica.js';
import { TinyNet } from './tiny-net.js';

const K = 4;
const S = 16;
const tinyPipeline = (opts: { statefulLoss?: boolean } = {}) => corePipeline(K, opts);

test.before(async () => {
  await initBackend('wasm');
});

/** Deterministic batches by index: batch i is the same whatever index a source starts from. */
function batchAt(domain: string, i: number, opts: { nanAt?: number } = {}): HostBatch {
  const rng = new Rng(`${domain}-${i}`);
  const images = Float32Array.from(rng.normalArray(2 * S * S * 3));
  if (opts.nanAt === i) images.fill(NaN);
  // labels follow the image's first channel, so the task is learnable
  const labels = Uint8Array.from({ length: 2 * S * S }, (_, p) => (p % 7 === 0 ? 255 : Math.min(K - 1, Math.max(0, Math.floor(images[p * 3] + 2)))));
  return { images, labels, batchSize: 2, height: S, width: S };
}

function data(opts: { nanAt?: number } = {}): TrainData {
  const gen = (domain: string) => async function* (from: number) {
    for (let i = from; ; i++) yield batchAt(domain, i, opts);
  };
  return {
    source: gen('source'),
    target: gen('target'),
    evaluation: {
      samples: function* () {
        for (let i = 0; i < 2; i++) {
          const b = batchAt('val', i);
          yield { image: b.images.subarray(0, S * S * 3), label: b.labels!.subarray(0, S * S), height: S, width: S };
        }
      },
    },
  };
}


async function run(config: TrainConfigInput, extra: { workDir?: string; resume?: string; stopAt?: number; nanAt?: number; statefulLoss?: boolean } = {}) {
  const student = new TinyNet(K, 1);
  const teacher = new TinyNet(K, 2);
  const pipeline = tinyPipeline({ statefulLoss: extra.statefulLoss });
  const lossState = pipeline.resolve(Tokens.Loss).state;
  const events: Ir2fEvent[] = [];
  const abort = new AbortController();
  pipeline.events$.subscribe((e) => {
    events.push(e);
    if (e.type === 'step' && e.step === extra.stopAt) abort.abort();
  });
  try {
    const result = await train({
      config: { optimizer: { lr: 1e-3, warmupSteps: 2 }, ...config }, student, teacher, numClasses: K, pipeline,
      data: data({ nanAt: extra.nanAt }), workDir: extra.workDir, resume: extra.resume, signal: abort.signal,
    });
    const state = (m: TinyNet) => m.namedState().map(([n, e]) => [n, Array.from(e.variable.dataSync())] as const);
    return { result, events, student: state(student), teacher: state(teacher), lossState: lossState && Array.from(lossState) };
  } finally {
    student.dispose();
    teacher.dispose();
    await pipeline.dispose();
  }
}

const tmp = () => mkdtemp(path.join(os.tmpdir(), 'ir2f-trainer-'));

test.serial('6 steps straight equal 3 steps, an interruption, a resume and 3 more: weights bit-identical', async (t) => {
  const [a, b] = [await tmp(), await tmp()];
  try {
    const straight = await run({ steps: 6, seed: 3 }, { workDir: a });
    const first = await run({ steps: 6, seed: 3 }, { workDir: b, stopAt: 3 });
    t.is(first.result.reason, 'interrupted');
    t.is(first.result.step, 3);
    t.deepEqual(await readdir(b).then((f) => f.filter((n) => n.endsWith('.safetensors'))), ['step-000003.safetensors']);
    const resumed = await run({ steps: 6, seed: 3 }, { workDir: b, resume: 'latest' });
    t.is(resumed.result.step, 6);
    const start = resumed.events.find((e) => e.type === 'run-start');
    t.is(start?.type === 'run-start' ? start.startStep : undefined, 3);
    t.deepEqual(resumed.student, straight.student);
    t.deepEqual(resumed.teacher, straight.teacher);
    const ckpt = await readCheckpoint(resumed.result.checkpoint!);
    t.is(ckpt.meta.step, 6);
    t.is(ckpt.meta.optimizerStep, 6);
  } finally {
    await Promise.all([rm(a, { recursive: true, force: true }), rm(b, { recursive: true, force: true })]);
  }
});

test.serial('a loss with host state (Loss.state): checkpointed as loss.state, restored on resume, the run bit-identical to a straight one', async (t) => {
  const [a, b] = [await tmp(), await tmp()];
  try {
    const straight = await run({ steps: 6, seed: 3 }, { workDir: a, statefulLoss: true });
    await run({ steps: 6, seed: 3 }, { workDir: b, stopAt: 3, statefulLoss: true });
    const ckpt = await readCheckpoint(path.join(b, 'step-000003.safetensors'));
    t.deepEqual(ckpt.tensors.get('loss.state')?.shape, [2]);
    const resumed = await run({ steps: 6, seed: 3 }, { workDir: b, resume: 'latest', statefulLoss: true });
    t.is(straight.lossState![0], 6);
    t.deepEqual(resumed.lossState, straight.lossState);
    t.deepEqual(resumed.student, straight.student);
    // a checkpoint of a loss without state cannot resume one that keeps state
    const plain = await tmp();
    try {
      await run({ steps: 4, seed: 3 }, { workDir: plain, stopAt: 2 });
      const err = await t.throwsAsync(run({ steps: 4, seed: 3 }, { workDir: plain, resume: 'latest', statefulLoss: true }));
      t.regex(err!.message, /no loss state.*another loss/);
    } finally {
      await rm(plain, { recursive: true, force: true });
    }
  } finally {
    await Promise.all([rm(a, { recursive: true, force: true }), rm(b, { recursive: true, force: true })]);
  }
});

test.serial('resuming with another config names the fields that differ', async (t) => {
  const dir = await tmp();
  try {
    await run({ steps: 2, seed: 1 }, { workDir: dir });
    const err = await t.throwsAsync(run({ steps: 2, seed: 1, optimizer: { lr: 5e-3, warmupSteps: 2 } }, { workDir: dir, resume: 'latest' }));
    t.true(err instanceof Ir2fError && err.code === 'CONFIG_MISMATCH');
    t.regex(err!.message, /these fields differ: optimizer\.lr/);
    // fields that only change bookkeeping may differ
    const ok = await run({ steps: 2, seed: 1, evalEvery: 1 }, { workDir: dir, resume: 'latest' });
    t.is(ok.result.step, 2);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.serial('a NaN loss stops the run naming the step, the loss part and the last good checkpoint', async (t) => {
  const dir = await tmp();
  try {
    const err = await t.throwsAsync(run({ steps: 6, seed: 1, checkpointEvery: 2 }, { workDir: dir, nanAt: 3 }));
    t.true(err instanceof Ir2fError && err.code === 'NON_FINITE_LOSS');
    t.regex(err!.message, /loss '(total|source)' is NaN at step 4/);
    t.regex(err!.message, /Last good checkpoint: .*step-000002\.safetensors/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.serial('events arrive in order; tf.memory().numTensors is flat over 100 training steps', async (t) => {
  const counts: number[] = [];
  const student = new TinyNet(K, 1);
  const teacher = new TinyNet(K, 2);
  const pipeline = tinyPipeline();
  const types: string[] = [];
  pipeline.events$.subscribe((e) => {
    if (e.type === 'step') counts.push(tf.memory().numTensors);
    if (!types.includes(e.type)) types.push(e.type);
  });
  const r = await train({ config: { steps: 100, evalEvery: 50 }, student, teacher, numClasses: K, pipeline, data: data() });
  t.is(r.step, 100);
  t.is(counts.length, 100);
  t.deepEqual(new Set(counts.slice(1)).size, 1, `numTensors over steps: ${[...new Set(counts)].join(', ')}`);
  t.deepEqual(types, ['run-start', 'step', 'pseudo-labels', 'eval', 'run-end']);
  t.truthy(r.eval?.teacher);
  student.dispose();
  teacher.dispose();
  await pipeline.dispose();
});

test.serial('invalid trainer configs name the field', async (t) => {
  const err = await t.throwsAsync(run({ steps: -1, optimizer: { lr: 0 } } as TrainConfigInput));
  t.true(err instanceof Ir2fError && err.code === 'INVALID_CONFIG');
  t.regex(err!.message, /steps: /);
  t.regex(err!.message, /optimizer\.lr: /);
});

test.serial('batchStatsEval: dropout off, batch norm on the batch\'s own statistics, running statistics untouched', (t) => {
  const net = new TinyNet(K, 4);
  const x = tf.tensor4d(new Rng(2).normalArray(2 * S * S * 3).map((v) => v * 3 + 1), [2, S, S, 3]);
  const running = () => [net.bn1.runningMean, net.bn1.runningVar].map((v) => Array.from(v.dataSync()));
  const before = running();
  const a = tf.tidy(() => Array.from(net.batchStatsEval().forward(x).logits.dataSync()));
  t.deepEqual(running(), before);
  // equal to the training-mode forward (batch statistics) and unlike the running-statistics one
  const b = tf.tidy(() => Array.from(net.train(true).forward(x).logits.dataSync()));
  const c = tf.tidy(() => Array.from(net.eval().forward(x).logits.dataSync()));
  t.true(a.every((v, i) => Math.abs(v - b[i]) < 1e-5));
  t.false(a.every((v, i) => Math.abs(v - c[i]) < 1e-3));
  x.dispose();
  net.dispose();
});

test.serial('a training forward moves batch norm\'s running statistics as PyTorch: 0.9·old + 0.1·batch (the variance unbiased)', (t) => {
  const net = new TinyNet(K, 4);
  const x = tf.tensor4d(new Rng(3).normalArray(2 * S * S * 3).map((v) => v * 3 + 1), [2, S, S, 3]);
  const bn = net.bn1;
  tf.tidy(() => {
    bn.runningMean.assign(tf.fill(bn.runningMean.shape, 0.5));
    bn.runningVar.assign(tf.fill(bn.runningVar.shape, 2));
  });
  // the batch statistics of bn1's input: the conv before it, run alone
  const input = tf.tidy(() => net.conv1.forward(x));
  const n = input.size / bn.channels;
  const { mean, variance } = tf.tidy(() => tf.moments(input, [0, 1, 2]));
  const [mu, v] = [Array.from(mean.dataSync()), Array.from(variance.dataSync())];
  tf.tidy(() => net.train(true).forward(x).logits);
  const [rm, rv] = [Array.from(bn.runningMean.dataSync()), Array.from(bn.runningVar.dataSync())];
  mu.forEach((m, c) => {
    t.true(Math.abs(rm[c] - (0.9 * 0.5 + 0.1 * m)) < 1e-5, `mean ${c}: ${rm[c]}`);
    t.true(Math.abs(rv[c] - (0.9 * 2 + (0.1 * v[c] * n) / (n - 1))) < 1e-4 * rv[c], `var ${c}: ${rv[c]}`);
  });
  tf.dispose([x, input, mean, variance]);
  net.dispose();
});
