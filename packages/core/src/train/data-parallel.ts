/**
 * Data parallelism over two replicas for one training process: the main thread runs the iteration's source
 * pass while a `worker_threads` replica runs its target pass (teacher, pseudo-labels, rectifier, mix, the
 * student on the mixed crop); the gradients are added in the order the one-thread step adds them, both
 * replicas apply the same AdamW and EMA update, and the batch-norm running statistics are merged as if the
 * two forward passes had run one after the other. Each replica runs its own tfjs backend (wasm on one
 * thread each on 2 cores), so every part of the step, JS included, runs in parallel.
 *
 * The worker builds its replica with a factory (`ReplicaSpec`): a module that builds the same networks and
 * pipeline as the main thread from a structured-cloneable argument (the CLI passes its run config). The
 * main thread then sends its whole state, so the replicas start equal whatever the factory initialised.
 */
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import type { Ir2fEvent } from '../events.js';
import { Ir2fError, type Ir2fErrorCode } from '../errors.js';
import { runningStats, setRunningStats, snapshotRunningStats } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import type { AdamW } from '../optim/adamw.js';
import type { HostBatch } from './trainer.js';
import {
  applyUpdate, hasSourceLoss, joinPasses, lossesOrRollback, phasesOf, rectifierSourcePass, sourcePass, stepVariables, sumGradients,
  type PassResult, type SourceLabels, type StepOptions, type UdaParts, type UdaStepResult,
} from './uda-step.js';

/** Where the worker finds the function that builds its replica. */
export interface ReplicaSpec {
  /** A module URL (`file:` or a package specifier) or an absolute path. */
  module: string;
  /** The export to call (default `buildReplica`): `(args) => Replica | Promise<Replica>`. */
  export?: string;
  /** Its argument, structured-cloneable (e.g. the run config). */
  args?: unknown;
}

/** What a replica factory returns: the networks and pipeline the main thread trains, built the same way. */
export interface Replica {
  student: Module & UdaParts['student'];
  teacher: Module & UdaParts['teacher'];
  numClasses: number;
  pipeline: { resolve<T>(token: unknown): T; dispose(): Promise<void> };
  featureDistance?: Omit<NonNullable<UdaParts['featureDistance']>, 'numClasses'>;
  /** Anything else to free when the worker stops (e.g. a frozen ImageNet copy). */
  dispose?(): void;
}

/** A batch as it crosses to the worker. */
export interface BatchMessage {
  source: HostBatch;
  target: HostBatch;
}

/** What the worker sends back for one step. */
export interface TargetPassMessage {
  type: 'pass';
  /** Gradients in `stepVariables` order (null: the variable is not in this pass's graph). */
  grads: (Float32Array | null)[];
  total: number;
  losses: Record<string, number>;
  pseudo?: UdaStepResult['pseudo'];
  teacherMs: number;
  rectifierMs: number;
  /** The student's batch-norm running statistics after the pass, in `runningStats` order. */
  running: Float32Array[];
  /** The loss's host state after the pass (`Loss.state`), when it has one. */
  lossState?: Float32Array;
  /** Events the worker's parts emitted during the pass (rectifier, rmm, warnings). */
  events: Ir2fEvent[];
  numTensors: number;
}

/**
 * Running statistics as if the target pass had followed the source pass: r = (1 − μ)·r_src + μ·s_tgt, where
 * the target replica's r_tgt = (1 − μ)·r₀ + μ·s_tgt, so r = (1 − μ)(r_src − r₀) + r_tgt. Both replicas compute
 * it from the same arrays (r₀ = `before`, r_src after the source pass, r_tgt after the target pass).
 */
export function mergeRunningStats(stats: { momentum: number }[], before: Float32Array[], source: Float32Array[], target: Float32Array[]): Float32Array[] {
  return stats.map(({ momentum }, i) => {
    const out = new Float32Array(source[i].length);
    for (let j = 0; j < out.length; j++) out[j] = (1 - momentum) * (source[i][j] - before[i][j]) + target[i][j];
    return out;
  });
}

/** A tensor's values and shape as they cross between replicas. */
export interface HostTensor {
  values: Float32Array;
  shape: number[];
}

/**
 * The teacher's labels of the source crop for the rectifier's source-side loss: the worker sends them first in
 * a step that has one, so that the main thread computes that loss right after its own source pass.
 */
export interface SourceLabelsMessage {
  type: 'source-labels';
  probs: HostTensor;
  features: HostTensor;
  logProbs: HostTensor;
  teacherMs: number;
}

/** `sourceLabels` as a message (the tensors are not freed). */
export function sourceLabelsToHost(labels: SourceLabels): SourceLabelsMessage {
  const host = (t: tf.Tensor): HostTensor => ({ values: toHost(t), shape: t.shape });
  return { type: 'source-labels', probs: host(labels.probs), features: host(labels.features), logProbs: host(labels.logProbs), teacherMs: labels.teacherMs };
}

function sourceLabelsFromHost(m: SourceLabelsMessage): SourceLabels {
  const t = (h: HostTensor) => tf.tensor4d(h.values, h.shape as [number, number, number, number]);
  return { probs: t(m.probs), features: t(m.features), logProbs: t(m.logProbs), teacherMs: m.teacherMs };
}

/** The source pass's part of an iteration, as it crosses to the worker (or that the pass failed). */
export interface SourcePassMessage {
  type: 'source';
  failed?: boolean;
  grads?: (Float32Array | null)[];
  total?: number;
  losses?: Record<string, number>;
  /** The student's batch-norm running statistics after the source pass, in `runningStats` order. */
  running?: Float32Array[];
  opts?: Pick<StepOptions, 'lr' | 'emaMax'> & { ctx: { step: number } };
}

/** The state both replicas must share, in a fixed order: student, teacher, rectifier, optimiser moments. */
export function replicaState(parts: Pick<UdaParts, 'student' | 'teacher' | 'rectifier'>, optimizer: AdamW): tf.Tensor[] {
  const { m, v } = optimizer.stateTensors();
  return [
    ...parts.student.namedState().map(([, e]) => e.variable), ...parts.teacher.namedState().map(([, e]) => e.variable),
    ...parts.rectifier.variables, ...m, ...v,
  ];
}

/** A float32 tensor's values, copied to the host (a buffer of their own, free to transfer). */
export const toHost = (t: tf.Tensor): Float32Array => Float32Array.from(t.dataSync() as Float32Array);

/** Gradients by variable name as host arrays in `variables` order (null: not in this pass's graph). */
export function gradsToHost(variables: tf.Variable[], grads: Record<string, tf.Tensor>): (Float32Array | null)[] {
  return variables.map((v) => (grads[v.name] ? toHost(grads[v.name]) : null));
}

/** The inverse of `gradsToHost`, keyed by this replica's variable names. */
export function gradsFromHost(variables: tf.Variable[], grads: (Float32Array | null)[]): Record<string, tf.Tensor> {
  return Object.fromEntries(grads.flatMap((g, i) => (g ? [[variables[i].name, tf.tensor(g, variables[i].shape)]] : [])));
}

/** The buffers of host arrays, to transfer rather than copy. */
export const buffersOf = (arrays: (Float32Array | null)[]): ArrayBuffer[] => arrays.flatMap((a) => (a ? [a.buffer as ArrayBuffer] : []));

/**
 * The URL of module `name` next to the module at `importMetaUrl`: `.ts` when that one runs from source
 * (tsx), `.js` when built. For worker scripts and replica modules, which are loaded by URL.
 */
export function siblingModule(importMetaUrl: string, name: string): string {
  return new URL(`./${name}${importMetaUrl.endsWith('.ts') ? '.ts' : '.js'}`, importMetaUrl).href;
}

/**
 * Runs each step's target pass on a worker replica while the main thread runs the source pass. The main thread
 * sends its pass's gradients as soon as it has them and takes the worker's when they come; each replica then
 * adds the two (source first) and applies the update itself, so neither waits for the other's update. A
 * rectifier's source-side loss runs here after the source pass, on the teacher's source labels that the worker
 * computes and sends before its target pass.
 */
export class DataParallelStepper {
  private readonly worker: Worker;
  /** Replies awaited, answered in the order the worker sends them. */
  private readonly pending: { resolve: (m: unknown) => void; reject: (e: Error) => void }[] = [];
  private failure?: Error;
  private readonly stats: { variable: tf.Variable; momentum: number }[];
  private readonly variables: tf.Variable[];

  private constructor(worker: Worker, private readonly parts: UdaParts & { bus: { emit(e: never): void } }) {
    this.worker = worker;
    this.stats = runningStats(parts.student);
    this.variables = stepVariables(parts);
    worker.on('message', (m: { type: string; message?: string; code?: string }) => {
      if (m.type === 'error') {
        // the worker stops at its first failure: every reply awaited fails with it
        const err = new Ir2fError((m.code ?? 'WORKER_FAILED') as Ir2fErrorCode, `data-parallel worker: ${m.message}`);
        for (const p of this.pending.splice(0)) p.reject(err);
      } else {
        this.pending.shift()?.resolve(m);
      }
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => {
      if (code !== 0) this.fail(new Error(`data-parallel worker exited with code ${code}`));
    });
  }

  private fail(err: Error): void {
    this.failure = new Ir2fError('WORKER_FAILED', `data-parallel worker failed: ${err.message}. Train with one replica (workers: 1)`, { cause: err });
    for (const p of this.pending.splice(0)) p.reject(this.failure);
  }

  /** A reply to wait for: the next message the worker sends that no earlier `expect` took. */
  private expect<T>(): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => this.pending.push({ resolve: resolve as (m: unknown) => void, reject }));
  }

  private request<T>(message: unknown, transfer: ArrayBuffer[] = []): Promise<T> {
    const reply = this.expect<T>();
    if (!this.failure) this.worker.postMessage(message, transfer);
    return reply;
  }

  /** Start the worker, build its replica, and copy this replica's state into it. */
  static async start(spec: ReplicaSpec, init: { trainConfig: unknown; backend: string; threads: number }, parts: UdaParts & { bus: { emit(e: never): void } }): Promise<DataParallelStepper> {
    // the worker script sits next to this module: .js when built, .ts when run from source, where the worker
    // registers tsx itself (a worker started from another worker does not inherit its loader) and resolves
    // @ir2f packages to their sources, so that it shares module instances with the script
    const fromSource = import.meta.url.endsWith('.ts');
    const script = siblingModule(import.meta.url, 'data-parallel-worker');
    const boot = `const { workerData } = require('node:worker_threads');
      (async () => {
        if (workerData.tsx) (await import(workerData.tsx)).register();
        await import(workerData.script);
      })().catch((err) => { setImmediate(() => { throw err; }); });`;
    const worker = new Worker(boot, {
      eval: true,
      execArgv: fromSource ? [...process.execArgv.filter((a) => !a.startsWith('--conditions')), '--conditions=ir2f-source'] : process.execArgv,
      workerData: { spec, ...init, script, tsx: fromSource ? import.meta.resolve('tsx/esm/api') : undefined },
      // the worker's wasm module is its own, with its own thread count
      env: { ...process.env, IR2F_WASM_THREADS: String(init.threads) },
    });
    const stepper = new DataParallelStepper(worker, parts);
    try {
      await stepper.request({ type: 'hello' });
      await stepper.sync();
      return stepper;
    } catch (err) {
      await worker.terminate();
      throw err;
    }
  }

  /** Send this thread's whole state (weights, optimizer) to the worker: after steps this thread ran alone. */
  async sync(): Promise<void> {
    const state = replicaState(this.parts, this.parts.optimizer).map(toHost);
    await this.request({ type: 'state', state, optimizerStep: this.parts.optimizer.step }, state.map((a) => a.buffer as ArrayBuffer));
  }

  /** One iteration: the source pass here, the target pass on the worker, then the same update on both. */
  async step(batch: { host: BatchMessage; tensors: Parameters<typeof sourcePass>[1] }, opts: StepOptions): Promise<UdaStepResult> {
    // the worker starts from these statistics too, so the merge below holds even after a failed step
    const before = snapshotRunningStats(this.stats);
    // the loss's state (e.g. a running mixture fit) lives here between steps: the worker starts from it
    const lossState = this.parts.loss.state?.slice();
    // a rectifier's source-side loss: the worker's teacher labels the source crop first, while the source pass
    // runs here, and the loss follows it here (the target pass has the teacher's target labels and the
    // rectifier's target queries to run: the two replicas' shares stay close)
    const labelsReply = hasSourceLoss(this.parts, opts.mode) ? this.expect<SourceLabelsMessage>() : undefined;
    labelsReply?.catch(() => undefined);
    const reply = this.request<TargetPassMessage>({
      type: 'step', batch: batch.host, running: before, lossState, opts: { ...opts, ctx: { step: opts.ctx.step, training: true } },
    });
    // keep a rejection from going unhandled while the source pass runs
    reply.catch(() => undefined);
    const t0 = performance.now();
    let src: PassResult | undefined;
    try {
      src = sourcePass(this.parts, batch.tensors, opts);
      if (labelsReply) src = joinPasses(src, rectifierSourcePass(this.parts, batch.tensors, sourceLabelsFromHost(await labelsReply), opts));
    } catch (err) {
      if (src) tf.dispose(Object.values(src.grads));
      // the worker drops its pass's update; its reply is awaited so that it answers this request, not the next
      this.worker.postMessage({ type: 'source', failed: true } satisfies SourcePassMessage);
      await reply.catch(() => undefined);
      setRunningStats(this.stats, before);
      throw err;
    }
    const srcRunning = snapshotRunningStats(this.stats);
    const srcHost = gradsToHost(this.variables, src.grads);
    this.worker.postMessage({
      type: 'source', grads: srcHost, total: src.total, losses: src.losses, running: srcRunning,
      opts: { lr: opts.lr, emaMax: opts.emaMax, ctx: { step: opts.ctx.step } },
    } satisfies SourcePassMessage, buffersOf(srcHost));
    let tgt: TargetPassMessage;
    try {
      tgt = await reply;
    } catch (err) {
      tf.dispose(Object.values(src.grads));
      setRunningStats(this.stats, before);
      throw err;
    }
    const tgtPass: PassResult = {
      grads: gradsFromHost(this.variables, tgt.grads),
      total: tgt.total, losses: tgt.losses, pseudo: tgt.pseudo, teacherMs: tgt.teacherMs, rectifierMs: tgt.rectifierMs,
    };
    for (const e of tgt.events) {
      const { v: _v, time: _t, ...event } = e as Ir2fEvent & { v: unknown; time: unknown };
      this.parts.bus.emit(event as never);
    }
    // the worker does the same from the same arrays: the replicas stay equal
    const grads = sumGradients([src, tgtPass]);
    const losses = lossesOrRollback([src, tgtPass], grads, this.stats, before, opts.ctx.step);
    if (tgt.lossState) this.parts.loss.state?.set(tgt.lossState);
    const t2 = performance.now();
    setRunningStats(this.stats, mergeRunningStats(this.stats, before, srcRunning, tgt.running));
    applyUpdate(this.parts, grads, opts);
    const t3 = performance.now();
    return {
      losses, pseudo: tgt.pseudo,
      // the teacher's and the rectifier's times summed over both replicas; the student's is the rest of the wall time
      phases: opts.profile ? phasesOf(src, tgtPass, t2 - t0, t3 - t2) : undefined,
    };
  }

  /** tf.memory().numTensors in the worker (for leak tests). */
  async workerTensors(): Promise<number> {
    return (await this.request<{ numTensors: number }>({ type: 'memory' })).numTensors;
  }

  /** The worker replica's state in `replicaState` order (for tests). */
  async workerState(): Promise<Float32Array[]> {
    return (await this.request<{ state: Float32Array[] }>({ type: 'get-state' })).state;
  }

  async close(): Promise<void> {
    if (!this.failure) await this.request({ type: 'close' }).catch(() => undefined);
    await this.worker.terminate();
  }
}
