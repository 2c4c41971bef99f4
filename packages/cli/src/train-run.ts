/**
 * One training run from a validated config: work dir, models, pipeline, data, subscribers (JSONL log,
 * progress, history), SIGINT/SIGTERM → checkpoint and stop, then the curve PNG and a summary.
 */
import os from 'node:os';
import path from 'node:path';
import {
  assertResumable, currentBackend, describeBackend, initBackend, Ir2fError, wasmThreads, latestCheckpoint, readCheckpoint, Tokens, train, writeAtomic,
  type BackendInfo, type TrainMode, type TrainResult,
} from '@ir2f/core';
import type { RunConfig } from './config.js';
import { writeCurvesPng } from './curves.js';
import { REPLICA_MODULE } from './replica.js';
import { buildData, buildModels, buildPipeline } from './run-setup.js';
import { checkProgress, jsonlLog, progress, recordHistory, type History } from './subscribers.js';
import { makeFolder } from './paths.js';
import { latestIntactCheckpoint, lockWorkDir, removeStaleTemps, truncateEvents } from './work-dir.js';

export interface TrainRunOptions {
  workDir: string;
  resume?: boolean | string;
  log?: (line: string) => void;
  /** Show a progress bar (default: when stdout is a TTY). */
  tty?: boolean;
  /** Print a line every N steps when there is no bar. */
  logEvery?: number;
  /** Stop on these signals after the current step, writing a checkpoint (default: SIGINT, SIGTERM). */
  signals?: NodeJS.Signals[];
  /** Quiet: no progress lines at all (the JSONL log is still written). */
  quiet?: boolean;
  /**
   * Model replicas, 1 or 2 (default `IR2F_WORKERS`, else 2 on 2+ cores with the wasm or cpu backend, except
   * source-only runs): with 2, a worker thread runs each step's target pass while this thread runs the
   * source pass, each replica on half the threads. Not set: a run of 50+ steps times both over its first
   * steps and keeps the faster (core's `ReplicaProbe`).
   */
  workers?: number;
}

/** How many replicas train (requested, else `IR2F_WORKERS`, else 2 on 2+ cores), and the wasm threads each gets. */
export function replicaPlan(mode: TrainMode, backend: string | undefined, requested?: number): { workers: number; threads?: number; explicit: boolean } {
  const env = process.env.IR2F_WORKERS;
  const explicit = requested ?? (env != null && env.trim() !== '' ? Number(env) : undefined);
  if (explicit != null && explicit !== 1 && explicit !== 2) {
    throw new Ir2fError('INVALID_CONFIG', `workers (IR2F_WORKERS, ir2f --workers) must be 1 or 2, got '${requested ?? env}'`);
  }
  const hostBackend = backend == null || backend === 'wasm' || backend === 'cpu';
  const workers = mode === 'source-only' ? 1 : (explicit ?? (os.availableParallelism() >= 2 && hostBackend ? 2 : 1));
  if (workers === 1) return { workers, explicit: explicit != null };
  return { workers, threads: Math.max(1, Math.floor(wasmThreads() / 2)), explicit: explicit != null };
}

export interface TrainRunResult extends TrainResult {
  workDir: string;
  backend: BackendInfo;
  history: History;
  files: { events: string; curves: string; summary: string; config: string };
}

export async function runTraining(config: RunConfig, opts: TrainRunOptions): Promise<TrainRunResult> {
  const log = opts.log ?? console.log;
  let plan = replicaPlan(config.train.mode, config.backend, opts.workers);
  // the wasm module's threads are fixed once it has started (e.g. by an earlier run in this process): by
  // default, two replicas only where their threads fit the cores
  const started = currentBackend()?.threads;
  if (plan.workers > 1 && !plan.explicit && started && started + (plan.threads ?? 1) > os.availableParallelism()) plan = { workers: 1, explicit: false };
  const backend = await initBackend(config.backend, plan.threads ? { wasmThreads: plan.threads } : {});
  if (plan.workers > 1 && backend.name !== 'wasm' && backend.name !== 'cpu') {
    throw new Ir2fError('INVALID_CONFIG', `two replicas need the wasm or cpu backend (this run has ${backend.name}): set workers to 1`);
  }
  const workDir = path.resolve(opts.workDir);
  const warn = (message: string) => log(`warning: ${message}`);
  await makeFolder(workDir, 'work dir');
  // one run per work dir: taken before anything in it is read or written
  const unlock = await lockWorkDir(workDir, warn);
  // from here the run (trainIn) releases the lock
  let handed = false;
  try {
    for (const n of await removeStaleTemps(workDir)) warn(`removed ${n}, left by a writer that was killed`);
    const files = {
      events: path.join(workDir, 'events.jsonl'), curves: path.join(workDir, 'curves.png'),
      summary: path.join(workDir, 'summary.json'), config: path.join(workDir, 'config.json'),
    };
    const existing = await latestCheckpoint(workDir);
    let resume: string | undefined;
    if (opts.resume) {
      resume = typeof opts.resume === 'string' ? opts.resume : await latestIntactCheckpoint(workDir, warn);
      if (!resume) throw new Ir2fError('INVALID_CHECKPOINT', `--resume: no ${existing ? 'intact ' : ''}checkpoint (step-*.safetensors) in ${workDir}`);
      // accepted before anything is rewritten: a refused resume leaves config.json and the log as they were
      const ckpt = await readCheckpoint(resume);
      assertResumable(ckpt, config, 'train');
      await truncateEvents(files.events, ckpt.meta.step);
    } else if (existing) {
      throw new Ir2fError('INVALID_ARGUMENT',
        `work dir ${workDir} already holds a run (${path.basename(existing)}): pass --resume to continue it, or choose another --work-dir`);
    }
    await writeAtomic(files.config, new TextEncoder().encode(`${JSON.stringify(config, null, 2)}\n`));
    handed = true;
    return await trainIn(config, { ...opts, log }, { workDir, files, resume, plan, backend, unlock });
  } finally {
    if (!handed) await unlock();
  }
}

/** The run itself, in a work dir that is locked, checked and ready; releases the lock when done. */
async function trainIn(
  config: RunConfig, opts: TrainRunOptions & { log: (line: string) => void },
  ctx: { workDir: string; files: TrainRunResult['files']; resume?: string; plan: ReturnType<typeof replicaPlan>; backend: BackendInfo; unlock: () => Promise<void> },
): Promise<TrainRunResult> {
  const { workDir, files, resume, plan, backend, log } = { ...ctx, log: opts.log };
  const { student, teacher, imnet } = await buildModels(config);
  const pipeline = await buildPipeline(config, student);
  const closeLog = jsonlLog(pipeline.events$, files.events);
  const { history, subscription } = recordHistory(pipeline.events$);
  const bar = opts.quiet ? undefined : progress(pipeline.events$, { tty: opts.tty ?? !!process.stdout.isTTY, log, every: opts.logEvery });
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping after this step and writing a checkpoint (again to quit at once)`);
    if (abort.signal.aborted) process.exit(130);
    abort.abort();
  };
  const signals = opts.signals ?? ['SIGINT', 'SIGTERM'];
  for (const s of signals) process.on(s, onSignal);
  try {
    const bus = pipeline.resolve(Tokens.EventBus);
    const data = await buildData(config, bus, opts.quiet ? undefined : checkProgress({ tty: opts.tty ?? !!process.stdout.isTTY, log }));
    if (config.featureDistance && !imnet && !config.model.pretrained) {
      bus.emit({ type: 'warning', code: 'NO_FEATURE_DISTANCE', message: 'featureDistance is configured but model.pretrained is not: training without it' });
    }
    // unless the user set it, the replica count is timed over the first steps (the faster of 1 and 2 stays)
    const replicas = plan.workers < 2 ? '' : plan.explicit ? ', 2 replicas (source and target passes in parallel)'
      : ', 2 replicas (source and target passes in parallel) or 1, whichever the first steps time faster';
    if (!opts.quiet) log(`data: ${data.describe}; model ${config.model.preset}; ${describeBackend(backend)}${replicas}; work dir ${workDir}`);
    const result = await train({
      config: config.train, runConfig: config, trainConfigPath: 'train', student, teacher, numClasses: config.model.numClasses, pipeline,
      data: data.data, workDir, resume, signal: abort.signal, backend,
      featureDistance: imnet && config.featureDistance ? { imnet, ...config.featureDistance } : undefined,
      parallel: plan.workers > 1 ? { replica: { module: REPLICA_MODULE, args: config }, threads: backend.threads ?? 1, auto: plan.explicit ? undefined : {} } : undefined,
    });
    await writeCurvesPng(history, files.curves, `${config.extends ?? config.model.preset}: ${config.train.mode}`);
    const summary = {
      step: result.step, reason: result.reason, msPerStep: result.msPerStep, checkpoint: result.checkpoint, backend: backend.name, threads: backend.threads, dense: backend.dense?.provider,
      workers: result.workers,
      miou: result.eval && { student: result.eval.student.miou, teacher: result.eval.teacher?.miou },
      perClassIoU: result.eval?.student.perClassIoU, classes: data.classes, classNames: data.classNames,
    };
    await writeAtomic(files.summary, new TextEncoder().encode(`${JSON.stringify(summary, null, 2)}\n`));
    return { ...result, workDir, backend, history, files };
  } finally {
    for (const s of signals) process.off(s, onSignal);
    bar?.unsubscribe();
    subscription.unsubscribe();
    await closeLog();
    await pipeline.dispose();
    for (const m of [student, teacher, imnet]) m?.dispose();
    await ctx.unlock();
  }
}
