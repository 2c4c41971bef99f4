/**
 * One training run from a validated config: work dir, models, pipeline, data, subscribers (JSONL log,
 * progress, history), SIGINT/SIGTERM → checkpoint and stop, then the curve PNG and a summary.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import {
  initBackend, Ir2fError, latestCheckpoint, Tokens, train, writeAtomic, type BackendInfo, type TrainResult,
} from '@ir2f/core';
import type { RunConfig } from './config.js';
import { writeCurvesPng } from './curves.js';
import { buildData, buildModels, buildPipeline } from './run-setup.js';
import { jsonlLog, progress, recordHistory, type History } from './subscribers.js';

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
}

export interface TrainRunResult extends TrainResult {
  workDir: string;
  backend: BackendInfo;
  history: History;
  files: { events: string; curves: string; summary: string; config: string };
}

export async function runTraining(config: RunConfig, opts: TrainRunOptions): Promise<TrainRunResult> {
  const log = opts.log ?? console.log;
  const backend = await initBackend(config.backend);
  const workDir = path.resolve(opts.workDir);
  const existing = await latestCheckpoint(workDir);
  let resume: string | undefined;
  if (opts.resume) {
    resume = typeof opts.resume === 'string' ? opts.resume : existing;
    if (!resume) throw new Ir2fError('INVALID_CHECKPOINT', `--resume: no checkpoint (step-*.safetensors) in ${workDir}`);
  } else if (existing) {
    throw new Ir2fError('INVALID_ARGUMENT',
      `work dir ${workDir} already holds a run (${path.basename(existing)}): pass --resume to continue it, or choose another --work-dir`);
  }
  await fs.mkdir(workDir, { recursive: true });
  const files = {
    events: path.join(workDir, 'events.jsonl'), curves: path.join(workDir, 'curves.png'),
    summary: path.join(workDir, 'summary.json'), config: path.join(workDir, 'config.json'),
  };
  await writeAtomic(files.config, new TextEncoder().encode(`${JSON.stringify(config, null, 2)}\n`));

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
    const data = await buildData(config, bus);
    if (config.featureDistance && !imnet && !config.model.pretrained) {
      bus.emit({ type: 'warning', code: 'NO_FEATURE_DISTANCE', message: 'featureDistance is configured but model.pretrained is not: training without it' });
    }
    if (!opts.quiet) log(`data: ${data.describe}; model ${config.model.preset}; ${backend.name} backend${backend.threads ? ` (${backend.threads} thread${backend.threads > 1 ? 's' : ''})` : ''}; work dir ${workDir}`);
    const result = await train({
      config: config.train, runConfig: config, trainConfigPath: 'train', student, teacher, numClasses: config.model.numClasses, pipeline,
      data: data.data, workDir, resume, signal: abort.signal, backend,
      featureDistance: imnet && config.featureDistance ? { imnet, ...config.featureDistance } : undefined,
    });
    await writeCurvesPng(history, files.curves, `${config.extends ?? config.model.preset}: ${config.train.mode}`);
    const summary = {
      step: result.step, reason: result.reason, msPerStep: result.msPerStep, checkpoint: result.checkpoint, backend: backend.name, threads: backend.threads,
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
  }
}
