/**
 * The UDA self-training run (DESIGN §4, §4.1): batches in, `udaStep` per iteration over the pipeline's
 * extension points, evaluation of student and EMA teacher, checkpoints, events out. Progress bars, logs and
 * PNG snapshots are subscribers of the pipeline's event bus, not code in here.
 *
 * Determinism: every random draw of iteration t comes from `Rng(seed).fork('step-t')`, and data sources are
 * asked for batches from index t on, so 3 steps + resume + 3 steps equals 6 steps straight.
 */
import { promises as fs } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { currentBackend, type BackendInfo, type BackendName } from '@ir2f/runtime';
import type { EventBus } from '../contracts.js';
import { Ir2fError } from '../errors.js';
import { emaUpdateModule } from '../defaults/ema.js';
import { AdamW, DAFORMER_PARAM_RULES, paramGroups, polyLr, type ParamRule } from '../optim/adamw.js';
import type { Pipeline } from '../pipeline.js';
import { Rng } from '../rng.js';
import { describeIssues } from '../plugin.js';
import { Tokens } from '../tokens.js';
import {
  checkpointFile, configDiff, latestCheckpoint, listCheckpoints, readCheckpoint, restoreCheckpoint, saveCheckpoint,
  type LoadedCheckpoint,
} from './checkpoint.js';
import { evaluate, type EvalResult, type EvalSample, type SlideOptions } from './evaluate.js';
import { DataParallelStepper, type ReplicaSpec } from './data-parallel.js';
import { ReplicaProbe, type ReplicaProbeOptions } from './replica-probe.js';
import { udaStep, type FeatureDistance, type SegmentationNetwork, type TrainMode, type UdaParts } from './uda-step.js';

/** The trainer's own settings (DESIGN §4.1 defaults: DAFormer's schedule at paper scale). */
export const TrainConfigSchema = z.object({
  mode: z.enum(['uda', 'source-only', 'target-oracle']).default('uda'),
  steps: z.number().int().positive().default(40000),
  seed: z.number().int().nonnegative().default(0),
  optimizer: z.object({
    lr: z.number().positive().default(6e-5),
    headLrMult: z.number().positive().default(10),
    /** Learning-rate multiplier of the rectifier's variables (ψ). */
    rectifierLrMult: z.number().positive().default(1),
    weightDecay: z.number().nonnegative().default(0.01),
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
    warmupSteps: z.number().int().nonnegative().default(1500),
    warmupRatio: z.number().positive().max(1).default(1e-6),
    power: z.number().positive().default(1),
  }).strict().prefault({}),
  /** Upper bound of the EMA teacher's momentum α (DESIGN §4.1: 0.999 for 40k steps). */
  emaMax: z.number().min(0).lt(1).default(0.999),
  /** The teacher's batch norms when labelling: each batch's statistics (DAFormer's code) or running ones. */
  teacherNorm: z.enum(['batch', 'running']).default('batch'),
  /** Evaluate every N steps (0: only at the end). */
  evalEvery: z.number().int().nonnegative().default(0),
  /** Checkpoint every N steps (0: only at the end and on interruption). */
  checkpointEvery: z.number().int().nonnegative().default(0),
  /** Checkpoints kept in the work dir (oldest removed first). */
  keepCheckpoints: z.number().int().positive().default(2),
  /** Also evaluate the EMA teacher (it lags the student on short schedules: DESIGN §4.1). */
  evalTeacher: z.boolean().default(true),
}).strict();

export type TrainConfig = z.output<typeof TrainConfigSchema>;
export type TrainConfigInput = z.input<typeof TrainConfigSchema>;

/** Fields that may change between a checkpoint and its resumption. */
export const RESUMABLE_FIELDS = ['evalEvery', 'checkpointEvery', 'keepCheckpoints', 'evalTeacher'] as const;

/** A batch on the host, as @ir2f/datasets' loader yields it. */
export interface HostBatch {
  /** [B, H, W, 3] normalised. */
  images: Float32Array;
  /** [B, H, W] train ids (255 ignore). */
  labels?: Uint8Array;
  batchSize: number;
  height: number;
  width: number;
}

export interface TrainData {
  /** Labelled source batches, from batch index `from` on (resume asks for the batches not yet used). */
  source(from: number): AsyncIterable<HostBatch> | Iterable<HostBatch>;
  /** Target batches (labels only for the target-oracle bound). */
  target(from: number): AsyncIterable<HostBatch> | Iterable<HostBatch>;
  /** Labelled target validation samples; mIoU averages over `classes`. */
  evaluation?: {
    samples: () => AsyncIterable<EvalSample> | Iterable<EvalSample>;
    classes?: readonly number[];
    classNames?: readonly string[];
    slide?: SlideOptions;
  };
}

export interface TrainerOptions {
  config: TrainConfigInput;
  /** Student and teacher: two instances of one architecture; the teacher starts as a copy of the student. */
  student: SegmentationNetwork;
  teacher: SegmentationNetwork;
  numClasses: number;
  /** Resolves PseudoLabeler, Rectifier, Mixer, Loss and EventBus. */
  pipeline: Pick<Pipeline, 'resolve'>;
  data: TrainData;
  /** Where checkpoints go; none written when absent. */
  workDir?: string;
  /** A checkpoint file, or 'latest' for the newest in `workDir`. */
  resume?: string;
  /** The whole run's config, stored in checkpoints and compared on resume (default: `config`). */
  runConfig?: unknown;
  /** Where `config` sits inside `runConfig` (e.g. 'train'), so that its resumable fields may differ on resume. */
  trainConfigPath?: string;
  /** Abort to stop after the current step; a checkpoint is written and the run ends 'interrupted'. */
  signal?: AbortSignal;
  featureDistance?: Omit<FeatureDistance, 'numClasses'>;
  backend?: BackendInfo;
  /** Measure the phases of every step (adds a device sync per phase). */
  profile?: boolean;
  /**
   * Run each step's target pass on a second replica in a worker thread while this thread runs the source
   * pass (`DataParallelStepper`): the same results up to float summation order; on 2 cores 1.1× (128²) to
   * 1.2× (256²) the one-replica speed with onnxruntime's kernels (bench: `npm run bench -- train`). `replica` builds the same networks and pipeline in the worker; `threads` is the
   * worker's wasm thread count (default 1). Ignored in source-only mode (it has one pass). With `auto`, the
   * run times one replica against two over its first steps and keeps the faster (`ReplicaProbe`; a
   * `replicas` event says which).
   */
  parallel?: { replica: ReplicaSpec; threads?: number; auto?: ReplicaProbeOptions };
}

export interface TrainResult {
  step: number;
  reason: 'completed' | 'interrupted';
  checkpoint?: string;
  eval?: { student: EvalResult; teacher?: EvalResult };
  /** Mean ms per iteration over this run's steps (first step excluded when there are more). */
  msPerStep: number;
  /** Model replicas that trained the last step (2: data-parallel passes; with `parallel.auto`, the one chosen). */
  workers: 1 | 2;
}

function parseConfig(input: TrainConfigInput): TrainConfig {
  const r = TrainConfigSchema.safeParse(input);
  if (!r.success) {
    throw new Ir2fError('INVALID_CONFIG', `invalid training config:\n${describeIssues(r.error.issues, '(config)')}`);
  }
  return r.data;
}

/** A host batch as tensors; `labels` requires them (naming `what` when they are missing). */
export function toTensors(b: HostBatch, labels: boolean, what: string): { image: tf.Tensor4D; labels?: tf.Tensor3D } {
  if (labels && !b.labels) throw new Ir2fError('INVALID_ARGUMENT', `${what} batches need labels`);
  const image = tf.tensor4d(b.images, [b.batchSize, b.height, b.width, 3]);
  return { image, labels: labels ? tf.tensor3d(Int32Array.from(b.labels!), [b.batchSize, b.height, b.width], 'int32') : undefined };
}

type BatchIterator = AsyncIterator<HostBatch> | Iterator<HostBatch>;

/** Sync or async sources alike (a generator function is the simplest data source). */
function iterate(source: AsyncIterable<HostBatch> | Iterable<HostBatch>): BatchIterator {
  const s = source as Partial<AsyncIterable<HostBatch> & Iterable<HostBatch>>;
  if (s[Symbol.asyncIterator]) return s[Symbol.asyncIterator]!();
  if (s[Symbol.iterator]) return s[Symbol.iterator]!();
  throw new Ir2fError('INVALID_ARGUMENT', 'TrainData.source/target must return an iterable or async iterable of batches');
}

async function next(it: BatchIterator, what: string): Promise<HostBatch> {
  const r = await it.next();
  if (r.done) throw new Ir2fError('INVALID_ARGUMENT', `the ${what} data ran out before the last step: give an endless source`);
  return r.value;
}

/**
 * Refuse to resume `ckpt` under a config that differs from its own outside the resumable fields
 * (`RESUMABLE_FIELDS`, under `trainConfigPath` within a run config; undefined: compare everything).
 */
export function assertResumable(ckpt: LoadedCheckpoint, runConfig: unknown, trainConfigPath?: string): void {
  const at = trainConfigPath;
  const diff = configDiff(ckpt.meta.config, runConfig, at === undefined ? [] : RESUMABLE_FIELDS.map((f) => (at ? `${at}.${f}` : f)));
  if (diff.length) {
    throw new Ir2fError('CONFIG_MISMATCH',
      `checkpoint ${ckpt.file} was written by another config; these fields differ: ${diff.join(', ')}. ` +
      'Resume with the config it was trained with, or start a new run in another work dir');
  }
}

/** The parts of a step and the optimiser, from the networks and pipeline (the trainer's and each replica's). */
export function stepPartsFor(
  opts: Pick<TrainerOptions, 'student' | 'teacher' | 'pipeline' | 'featureDistance' | 'numClasses'>, config: TrainConfig,
): UdaParts & { bus: EventBus } {
  const { student, teacher, pipeline } = opts;
  const rectifier = pipeline.resolve(Tokens.Rectifier);
  const o = config.optimizer;
  const rules: ParamRule[] = DAFORMER_PARAM_RULES.map((r) => (r.lrMult ? { ...r, lrMult: o.headLrMult } : r));
  const groups = paramGroups(student.namedState(), rules);
  if (rectifier.variables.length) groups.push({ variables: [...rectifier.variables], lrMult: o.rectifierLrMult, decayMult: 1 });
  return {
    student, teacher, rectifier,
    pseudoLabeler: pipeline.resolve(Tokens.PseudoLabeler),
    mixer: pipeline.resolve(Tokens.Mixer),
    loss: pipeline.resolve(Tokens.Loss),
    featureDistance: opts.featureDistance && { ...opts.featureDistance, numClasses: opts.numClasses },
    optimizer: new AdamW(groups, { betas: o.betas, weightDecay: o.weightDecay }),
    bus: pipeline.resolve<EventBus>(Tokens.EventBus),
  };
}

export async function train(opts: TrainerOptions): Promise<TrainResult> {
  const config = parseConfig(opts.config);
  const runConfig = opts.runConfig ?? config;
  const mode: TrainMode = config.mode;
  const { student, teacher } = opts;
  const stepParts = stepPartsFor(opts, config);
  const { bus, rectifier, optimizer, loss } = stepParts;
  const o = config.optimizer;
  const started = Date.now();

  let start = 0;
  let step = 0;
  let lastCheckpoint: string | undefined;
  let srcIt: BatchIterator | undefined;
  let tgtIt: BatchIterator | undefined;
  let closeStepper: () => Promise<void> | undefined = () => undefined;
  try {
    if (opts.resume) {
      const file = opts.resume === 'latest' ? await latestCheckpoint(opts.workDir ?? '.') : opts.resume;
      if (!file) {
        throw new Ir2fError('INVALID_CHECKPOINT',
          `--resume: no checkpoint (step-*.safetensors) in ${opts.workDir ?? '.'}; start without --resume or point it at a file`);
      }
      const ckpt = await readCheckpoint(file);
      assertResumable(ckpt, runConfig, opts.runConfig === undefined ? '' : opts.trainConfigPath);
      await restoreCheckpoint(ckpt, { student, teacher, rectifier, loss, optimizer });
      start = ckpt.meta.step;
      lastCheckpoint = file;
    } else {
      emaUpdateModule(teacher, student, 0); // the teacher starts as a copy of the student
    }

    let stepper = opts.parallel && mode !== 'source-only'
      ? await DataParallelStepper.start(opts.parallel.replica,
        { trainConfig: config, backend: tf.getBackend(), threads: opts.parallel.threads ?? 1 }, stepParts)
      : undefined;
    closeStepper = () => stepper?.close();
    let probe = stepper && opts.parallel?.auto ? ReplicaProbe.start(start, config.steps, opts.parallel.auto) : undefined;
    bus.emit({ type: 'run-start', config: runConfig, backend: opts.backend ?? currentBackend() ?? { name: tf.getBackend() as BackendName, version: tf.version_core, package: 'unknown' }, seed: config.seed, steps: config.steps, startStep: start });
    const root = new Rng(config.seed);
    srcIt = iterate(opts.data.source(start));
    tgtIt = iterate(opts.data.target(start));

    const save = async (step: number) => {
      if (!opts.workDir) return undefined;
      const file = checkpointFile(opts.workDir, step);
      await saveCheckpoint(file, { student, teacher, rectifier, loss, optimizer },
        { step, seed: config.seed, config: runConfig, backend: tf.getBackend() });
      const all = await listCheckpoints(opts.workDir);
      for (const old of all.slice(0, Math.max(0, all.length - config.keepCheckpoints))) await fs.rm(old.file, { force: true });
      bus.emit({ type: 'checkpoint', step, path: file });
      lastCheckpoint = file;
      return file;
    };
    const runEval = async (step: number) => {
      const ev = opts.data.evaluation;
      if (!ev) return undefined;
      const evalOne = async (model: 'student' | 'teacher') => {
        const r = await evaluate(model === 'student' ? student : teacher, ev.samples(),
          { numClasses: opts.numClasses, classes: ev.classes, slide: ev.slide });
        bus.emit({ type: 'eval', step, model, miou: r.miou, perClassIoU: r.perClassIoU, classNames: ev.classNames && [...ev.classNames] });
        return r;
      };
      const s = await evalOne('student');
      return { student: s, teacher: config.evalTeacher && mode === 'uda' ? await evalOne('teacher') : undefined };
    };

    step = start;
    let reason: TrainResult['reason'] = 'completed';
    let lastEval: TrainResult['eval'];
    const times: number[] = [];
    while (step < config.steps) {
      if (opts.signal?.aborted) {
        reason = 'interrupted';
        break;
      }
      const [sb, tb] = await Promise.all([next(srcIt, 'source'), next(tgtIt, 'target')]);
      if (stepper && probe?.needsSync(step)) await stepper.sync();
      const parallel = stepper && (probe?.parallel(step) ?? true) ? stepper : undefined;
      const t0 = performance.now();
      const source = toTensors(sb, true, 'source');
      const target = toTensors(tb, mode === 'target-oracle', 'target');
      const lr = polyLr(step, { baseLr: o.lr, maxSteps: config.steps, warmupSteps: o.warmupSteps, warmupRatio: o.warmupRatio, power: o.power });
      let result;
      try {
        const tensors = { source: source as { image: tf.Tensor4D; labels: tf.Tensor3D }, target };
        const stepOpts = { mode, lr, ctx: { step, training: true, rng: root.fork(`step-${step}`) }, profile: opts.profile, emaMax: config.emaMax, teacherNorm: config.teacherNorm };
        result = parallel ? await parallel.step({ host: { source: sb, target: tb }, tensors }, stepOpts) : udaStep(stepParts, tensors, stepOpts);
      } catch (err) {
        if (err instanceof Ir2fError && err.code === 'NON_FINITE_LOSS') {
          throw new Ir2fError('NON_FINITE_LOSS', `${err.message}. Last good checkpoint: ${lastCheckpoint ?? 'none written yet'}`, { cause: err });
        }
        throw err;
      } finally {
        tf.dispose([source.image, source.labels!, target.image, ...(target.labels ? [target.labels] : [])]);
      }
      const ms = performance.now() - t0;
      const choice = probe?.record(step, ms);
      step++;
      times.push(ms);
      bus.emit({ type: 'step', step, losses: result.losses, lr, ms, ...(result.phases ? { phases: result.phases } : {}) });
      if (choice) {
        probe = undefined;
        bus.emit({ type: 'replicas', step, workers: choice.workers, msPerStep: { one: choice.one, two: choice.two } });
        if (choice.workers === 1) {
          await stepper?.close();
          stepper = undefined;
        }
      }
      if (result.pseudo) bus.emit({ type: 'pseudo-labels', step, ...result.pseudo });
      // the checkpoint first: an evaluation that fails (a broken val file) loses no training
      if (config.checkpointEvery > 0 && step % config.checkpointEvery === 0 && step < config.steps) await save(step);
      if (config.evalEvery > 0 && step % config.evalEvery === 0 && step < config.steps) lastEval = await runEval(step);
    }
    const checkpoint = (await save(step)) ?? lastCheckpoint;
    if (reason === 'completed') lastEval = (await runEval(step)) ?? lastEval;
    const timed = times.length > 1 ? times.slice(1) : times;
    bus.emit({ type: 'run-end', step, reason, ms: Date.now() - started });
    return { step, reason, checkpoint, eval: lastEval, msPerStep: timed.reduce((a, b) => a + b, 0) / Math.max(timed.length, 1), workers: stepper ? 2 : 1 };
  } catch (err) {
    bus.emit({ type: 'run-end', step, reason: 'failed', ms: Date.now() - started, error: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    await closeStepper();
    optimizer.dispose();
    await Promise.all([srcIt?.return?.(), tgtIt?.return?.()]);
  }
}
