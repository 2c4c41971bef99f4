/**
 * The worker side of `DataParallelStepper`: builds a replica with the given factory, takes the main
 * thread's state, then for each step sends the teacher's source labels when the rectifier has a source-side
 * loss, runs the target pass, replies with its gradients, and, once the main
 * thread's source pass arrives, applies the same update as the main thread. Messages are handled one at a
 * time in arrival order.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ir2f/runtime';
import type { Ir2fEvent } from '../events.js';
import { Rng } from '../rng.js';
import { runningStats, setRunningStats, snapshotRunningStats } from '../nn/layers.js';
import {
  buffersOf, gradsFromHost, gradsToHost, mergeRunningStats, replicaState, sourceLabelsToHost, toHost, type BatchMessage, type Replica, type ReplicaSpec,
  type SourcePassMessage, type TargetPassMessage,
} from './data-parallel.js';
import { stepPartsFor, toTensors, TrainConfigSchema } from './trainer.js';
import {
  applyUpdate, hasSourceLoss, sourceLabels, stepLosses, stepVariables, sumGradients, targetPass, type PassResult, type StepOptions,
} from './uda-step.js';

interface Init {
  spec: ReplicaSpec;
  trainConfig: unknown;
  backend: string;
  threads: number;
}

const port = parentPort!;
const init = workerData as Init;
const config = TrainConfigSchema.parse(init.trainConfig);
const root = new Rng(config.seed);

async function build() {
  await initBackend(init.backend as never, { wasmThreads: init.threads });
  const spec = init.spec;
  const url = path.isAbsolute(spec.module) ? pathToFileURL(spec.module).href : spec.module;
  const mod = (await import(url)) as Record<string, (args: unknown) => Replica | Promise<Replica>>;
  const factory = mod[spec.export ?? 'buildReplica'];
  if (typeof factory !== 'function') throw new Error(`${spec.module} has no export '${spec.export ?? 'buildReplica'}'`);
  const replica = await factory(spec.args);
  const parts = stepPartsFor({ ...replica, pipeline: replica.pipeline as never }, config);
  const events: Ir2fEvent[] = [];
  parts.bus.events$.subscribe((e) => events.push(e));
  return { replica, parts, events, variables: stepVariables(parts), stats: runningStats(parts.student) };
}

let ready: ReturnType<typeof build> | undefined;
let failure: Error | undefined;
/** The last target pass, until the main thread's source pass completes the step's update. */
let awaiting: { pass: PassResult; before: Float32Array[]; running: Float32Array[] } | undefined;

async function handle(m: { type: string } & Record<string, unknown>): Promise<void> {
  if (m.type === 'hello') {
    ready = build();
    await ready;
    port.postMessage({ type: 'ready' });
    return;
  }
  const r = await ready!;
  const { parts } = r;
  switch (m.type) {
    case 'state': {
      const state = m.state as Float32Array[];
      const targets = replicaState(parts, parts.optimizer);
      if (state.length !== targets.length) throw new Error(`the replica has ${targets.length} state tensors, the main thread ${state.length}: build both from one config`);
      const { m: moments, v } = parts.optimizer.stateTensors();
      const nModel = targets.length - moments.length - v.length;
      tf.tidy(() => targets.slice(0, nModel).forEach((t, i) => (t as tf.Variable).assign(tf.tensor(state[i], t.shape, t.dtype))));
      const load = (from: number, n: number) => state.slice(from, from + n).map((a, i) => tf.tensor(a, moments[i].shape));
      const [mt, vt] = [load(nModel, moments.length), load(nModel + moments.length, v.length)];
      parts.optimizer.restore(m.optimizerStep as number, mt, vt);
      tf.dispose([...mt, ...vt]);
      port.postMessage({ type: 'ok' });
      return;
    }
    case 'step': {
      const batch = m.batch as BatchMessage;
      const o = m.opts as StepOptions;
      const source = toTensors(batch.source, true, 'source');
      const target = toTensors(batch.target, o.mode === 'target-oracle', 'target');
      r.events.length = 0;
      setRunningStats(r.stats, m.running as Float32Array[]);
      if (m.lossState) parts.loss.state?.set(m.lossState as Float32Array);
      try {
        const opts: StepOptions = { ...o, ctx: { step: o.ctx.step, training: true, rng: root.fork(`step-${o.ctx.step}`) } };
        if (hasSourceLoss(parts, o.mode)) {
          // first the teacher's source labels, for the rectifier's source-side loss on the main thread
          const labels = sourceLabels(parts, { source: source as { image: tf.Tensor4D; labels: tf.Tensor3D } }, opts);
          let message;
          try {
            message = sourceLabelsToHost(labels);
          } finally {
            tf.dispose([labels.probs, labels.features, labels.logProbs]);
          }
          port.postMessage(message, [message.probs, message.features, message.logProbs].map((h) => h.values.buffer as ArrayBuffer));
        }
        const pass = targetPass(parts, { source: source as { image: tf.Tensor4D; labels: tf.Tensor3D }, target }, opts);
        const grads = gradsToHost(r.variables, pass.grads);
        const running = snapshotRunningStats(r.stats);
        awaiting = { pass, before: m.running as Float32Array[], running };
        const reply: TargetPassMessage = {
          type: 'pass', grads, total: pass.total, losses: pass.losses, pseudo: pass.pseudo, teacherMs: pass.teacherMs,
          rectifierMs: pass.rectifierMs, running, lossState: parts.loss.state?.slice(), events: [...r.events], numTensors: tf.memory().numTensors,
        };
        port.postMessage(reply, buffersOf(grads));
      } finally {
        tf.dispose([source.image, ...(source.labels ? [source.labels] : []), target.image, ...(target.labels ? [target.labels] : [])]);
      }
      return;
    }
    case 'source': {
      // the step's update, as the main thread makes it: source + target gradients, the merged statistics
      const s = m as unknown as SourcePassMessage;
      const mine = awaiting;
      awaiting = undefined;
      if (!mine) throw new Error('a source pass arrived without a target pass to complete');
      if (s.failed) {
        tf.dispose(Object.values(mine.pass.grads));
        setRunningStats(r.stats, mine.before);
        return;
      }
      const grads = sumGradients([{ grads: gradsFromHost(r.variables, s.grads!) }, mine.pass]);
      try {
        stepLosses([{ total: s.total!, losses: s.losses! }, mine.pass], s.opts!.ctx.step);
      } catch {
        // a non-finite loss: the main thread reports it; both replicas stay as they were
        tf.dispose(Object.values(grads));
        setRunningStats(r.stats, mine.before);
        return;
      }
      setRunningStats(r.stats, mergeRunningStats(r.stats, mine.before, s.running!, mine.running));
      const o = s.opts!;
      applyUpdate(parts, grads, { lr: o.lr, emaMax: o.emaMax, ctx: { step: o.ctx.step, training: true, rng: root } });
      return; // no reply: the main thread does not wait for it
    }
    case 'memory':
      port.postMessage({ type: 'memory', numTensors: tf.memory().numTensors });
      return;
    case 'get-state':
      port.postMessage({ type: 'state', state: replicaState(parts, parts.optimizer).map(toHost) });
      return;
    case 'close':
      parts.optimizer.dispose();
      r.replica.dispose?.();
      await r.replica.pipeline.dispose();
      for (const n of [r.replica.student, r.replica.teacher]) n.dispose();
      port.postMessage({ type: 'closed' });
      return;
    default:
      throw new Error(`unknown message '${m.type}'`);
  }
}

// one message at a time, in arrival order; a failure answers the request in flight or the next one
let queue = Promise.resolve();
port.on('message', (m: { type: string } & Record<string, unknown>) => {
  queue = queue.then(async () => {
    if (failure) throw failure;
    await handle(m);
  }).catch((err: unknown) => {
    failure = err instanceof Error ? err : new Error(String(err));
    // an ir2f error keeps its code across the thread boundary; anything else is the worker failing
    port.postMessage({ type: 'error', message: failure.message, code: failure.name === 'Ir2fError' ? (failure as { code?: string }).code : undefined });
  });
});
