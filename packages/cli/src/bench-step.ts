/**
 * `ir2f bench`: the cost of one DAFormer-style iteration (batch B+B, crop S²) of a model preset on the
 * current backend, with its phases (teacher, student forward+backward, rectifier, optimiser+EMA), on seeded
 * random data so that no dataset is needed; on one replica, or two (the source and target passes in
 * parallel, as `ir2f train` on 2+ cores). The repository's `npm run bench -- train` adds the PyTorch reference.
 */
import * as tf from '@tensorflow/tfjs';
import {
  createPipeline, DataParallelStepper, describeBackend, initBackend, Rng, siblingModule, stepPartsFor, toTensors, TrainConfigSchema, udaStep,
  type HostBatch, type Replica, type TrainMode, type UdaStepResult,
} from '@ir2f/core';
import { createModel } from '@ir2f/backbones';
import type { RunConfig } from './config.js';
import { loadPlugins } from './run-setup.js';

export interface StepBenchOptions {
  preset: string;
  size: number;
  batch: number;
  steps: number;
  warmup?: number;
  numClasses?: number;
  mode?: TrainMode;
  backend?: string;
  /** Plugins of the pipeline (e.g. the INR rectifier), as in a run config. */
  plugins?: RunConfig['plugins'];
  /** 2: the step's target pass on a worker replica (each replica on `threads` wasm threads, default 1). */
  workers?: number;
  threads?: number;
}

/** What builds the bench's models and pipeline, here and in a worker replica. */
export interface BenchReplicaArgs {
  preset: string;
  numClasses: number;
  plugins: RunConfig['plugins'];
}

/** The bench's networks (seed 1 both) and pipeline: core's defaults plus the plugins. */
export async function buildBenchReplica(args: BenchReplicaArgs): Promise<Replica> {
  const student = createModel(args.preset, { numClasses: args.numClasses, seed: 1 });
  const teacher = createModel(args.preset, { numClasses: args.numClasses, seed: 1 });
  const pipeline = createPipeline({ backbone: student.backbone, decodeHead: student.decodeHead, plugins: await loadPlugins(args.plugins) });
  return { student, teacher, numClasses: args.numClasses, pipeline };
}

const BENCH_MODULE = siblingModule(import.meta.url, 'bench-step');

/** The part of a tf.profile kernel record that `kernelFlops` reads. */
export interface KernelRecord {
  name: string;
  inputShapes: number[][];
  outputShapes: number[][];
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Multiply-add FLOPs (2 per MAC) of the convolution and matrix-product kernels in a tf.profile record,
 * forward and backward; element-wise work is not counted. Kernels a kernel calls internally are not
 * profiled, so nothing counts twice.
 */
export function kernelFlops(kernels: KernelRecord[]): number {
  let flops = 0;
  for (const k of kernels) {
    const [a, b] = k.inputShapes;
    const out = k.outputShapes[0] ?? [];
    switch (k.name) {
      case 'Conv2D': case 'FusedConv2D': // x, filter [kh, kw, cin, cout] → y
        flops += 2 * size(out) * b[0] * b[1] * b[2];
        break;
      case 'Conv2DBackpropInput': // dy, filter → dx: as many MACs as the forward
        flops += 2 * size(a) * b[0] * b[1] * b[2];
        break;
      case 'Conv2DBackpropFilter': // x, dy → filter [kh, kw, cin, cout]
        flops += 2 * size(b) * out[0] * out[1] * out[2];
        break;
      case 'DepthwiseConv2dNative': case 'FusedDepthwiseConv2D':
        flops += 2 * size(out) * b[0] * b[1];
        break;
      case 'DepthwiseConv2dNativeBackpropInput':
        flops += 2 * size(a) * b[0] * b[1];
        break;
      case 'DepthwiseConv2dNativeBackpropFilter':
        flops += 2 * size(b) * out[0] * out[1];
        break;
      case 'BatchMatMul': case '_FusedMatMul': { // out [..., M, N]; K from a's size whatever its transposition
        const m = out[out.length - 2];
        const n = out[out.length - 1];
        const batch = size(out) / (m * n);
        const aBatch = size(a.slice(0, -2));
        flops += 2 * batch * m * n * (size(a) / (aBatch * m));
        break;
      }
      // table, index, x [N, Q, K], wx [K, H₀], wOut, bOut, weight, then w, b per layer (, ds; or target, scale)
      case 'Ir2fEnsembleMlp': case 'Ir2fEnsembleMlpGrad': case 'Ir2fEnsembleMlpBce': {
        const rows = size(k.inputShapes[2].slice(0, 2));
        const extra = { Ir2fEnsembleMlp: 0, Ir2fEnsembleMlpGrad: 1, Ir2fEnsembleMlpBce: 2 }[k.name];
        const layers = k.inputShapes.slice(7, k.inputShapes.length - extra).filter((_, i) => i % 2 === 0);
        const macs = size(k.inputShapes[3]) + layers.reduce((acc, w) => acc + size(w), 0) + size(k.inputShapes[4]);
        // the gradient recomputes the forward, then per layer the input's and the weights' products; the BCE's
        // graph computes no gradient of x, so its first layer has the weights' product only
        flops += 2 * rows * (extra ? 3 * macs - (extra === 2 ? size(k.inputShapes[3]) : 0) : macs);
        break;
      }
      default:
    }
  }
  return flops;
}

export interface StepBenchResult {
  backend: string;
  /** Median over unprofiled steps (profiling adds a device sync per phase). */
  msPerStep: number;
  /** Each unprofiled step's time, in order (how far the warm-up settled). */
  stepsMs: number[];
  /**
   * Minor page faults of the process per unprofiled step (median): memory touched for the first time, ~11 µs each
   * on the project's VM. They fall to near zero once the heaps stop growing.
   */
  faultsPerStep: number;
  /** Medians over profiled steps. */
  phases: { teacher: number; student: number; rectifier: number; optimizer: number };
  numTensorsDelta: number;
  /** Convolution and matrix-product FLOPs of one iteration (`kernelFlops`). */
  flops: number;
  /** Kernel dispatches of one iteration on one replica (both passes), and the kernels by total time. */
  kernels: { count: number; top: KernelTotal[] };
}

export interface KernelTotal {
  name: string;
  calls: number;
  ms: number;
}

/**
 * tf.profile records a custom-gradient op's forward as a kernel named after its tidy scope, and the kernels it runs
 * as their own records too: counted, its time would count twice (`ensembleMlp`'s ~13 ms, `dense`'s).
 */
export const isKernelRecord = (k: { name: string }): boolean => k.name !== 'unnamed scope';

/** A profiled iteration's kernels summed by name, slowest first (the wasm backend times each kernel by wall clock). */
export function kernelTotals(kernels: { name: string; kernelTimeMs?: unknown }[]): KernelTotal[] {
  const by = new Map<string, KernelTotal>();
  for (const k of kernels.filter(isKernelRecord)) {
    const t = by.get(k.name) ?? { name: k.name, calls: 0, ms: 0 };
    t.calls++;
    if (typeof k.kernelTimeMs === 'number') t.ms += k.kernelTimeMs;
    by.set(k.name, t);
  }
  return [...by.values()].sort((a, b) => b.ms - a.ms || b.calls - a.calls);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** One bench setup ready to step: its replica(s) and pipeline on the seeded batch. */
interface BenchSetup {
  backend: Awaited<ReturnType<typeof initBackend>>;
  parts: ReturnType<typeof stepPartsFor>;
  config: ReturnType<typeof TrainConfigSchema.parse>;
  batch: { source: { image: tf.Tensor4D; labels: tf.Tensor3D }; target: { image: tf.Tensor4D; labels?: tf.Tensor3D } };
  root: Rng;
  /** One iteration (`step` seeds its noise), its wall time and, with `profile`, its phases. */
  run(step: number, profile: boolean): Promise<{ ms: number; phases: UdaStepResult['phases'] }>;
  close(): Promise<void>;
}

async function benchSetup(o: StepBenchOptions): Promise<BenchSetup> {
  const workers = o.workers ?? 1;
  const backend = await initBackend(o.backend, workers > 1 ? { wasmThreads: o.threads ?? 1 } : {});
  const K = o.numClasses ?? 19;
  const args: BenchReplicaArgs = { preset: o.preset, numClasses: K, plugins: o.plugins ?? [] };
  const replica = await buildBenchReplica(args);
  const config = TrainConfigSchema.parse({ seed: 0, mode: o.mode ?? 'uda' });
  const parts = stepPartsFor(replica, config);
  const stepper = workers > 1
    ? await DataParallelStepper.start({ module: BENCH_MODULE, export: 'buildBenchReplica', args }, { trainConfig: config, backend: backend.name, threads: o.threads ?? 1 }, parts)
    : undefined;
  const root = new Rng(0);
  const { size: S, batch: B } = o;
  const host = (seed: number): HostBatch => ({
    images: Float32Array.from(new Rng(seed).normalArray(B * S * S * 3)),
    labels: Uint8Array.from({ length: B * S * S }, (_, i) => (Math.floor(i / (S * 8)) + (i % S < S / 2 ? 0 : 3)) % K),
    batchSize: B, height: S, width: S,
  });
  const hostBatch = { source: host(1), target: host(2) };
  const batch = {
    source: toTensors(hostBatch.source, true, 'source') as { image: tf.Tensor4D; labels: tf.Tensor3D },
    target: toTensors(hostBatch.target, true, 'target'),
  };
  return {
    backend, parts, config, batch, root,
    run: async (step, profile) => {
      const t0 = performance.now();
      const opts = { mode: config.mode, lr: 1e-5, ctx: { step, training: true, rng: root.fork(`step-${step}`) }, profile };
      const r = stepper ? await stepper.step({ host: hostBatch, tensors: batch }, opts) : udaStep(parts, batch, opts);
      return { ms: performance.now() - t0, phases: r.phases };
    },
    close: async () => {
      await stepper?.close();
      tf.dispose([batch.source.image, batch.source.labels, batch.target.image, batch.target.labels!]);
      parts.optimizer.dispose();
      replica.student.dispose();
      replica.teacher.dispose();
      await replica.pipeline.dispose();
    },
  };
}

export async function benchStep(o: StepBenchOptions): Promise<StepBenchResult> {
  const workers = o.workers ?? 1;
  const setup = await benchSetup(o);
  const { backend, parts, config, batch, root, run } = setup;
  try {
    for (let i = 0; i < (o.warmup ?? 1); i++) await run(i, false);
    const before = tf.memory().numTensors;
    const plain: number[] = [];
    const faults: number[] = [];
    for (let i = 0; i < o.steps; i++) {
      const faultsBefore = process.resourceUsage().minorPageFault;
      plain.push((await run(100 + i, false)).ms);
      faults.push(process.resourceUsage().minorPageFault - faultsBefore);
    }
    const profiled: Awaited<ReturnType<typeof run>>[] = [];
    for (let i = 0; i < Math.max(2, Math.ceil(o.steps / 2)); i++) profiled.push(await run(200 + i, true));
    const phase = (k: 'teacher' | 'student' | 'rectifier' | 'optimizer') => median(profiled.map((p) => p.phases![k]));
    const numTensorsDelta = tf.memory().numTensors - before;
    // FLOPs of one iteration, counted on one replica (the same work whichever replica runs it)
    const record = await tf.profile(() => {
      udaStep(parts, batch, { mode: config.mode, lr: 1e-5, ctx: { step: 300, training: true, rng: root.fork('step-300') } });
    });
    return {
      backend: `${describeBackend(backend)}${workers > 1 ? ' × 2 replicas' : ''}`, msPerStep: median(plain), stepsMs: plain, faultsPerStep: median(faults),
      phases: { teacher: phase('teacher'), student: phase('student'), rectifier: phase('rectifier'), optimizer: phase('optimizer') },
      numTensorsDelta, flops: kernelFlops(record.kernels as unknown as KernelRecord[]),
      kernels: { count: record.kernels.filter(isKernelRecord).length, top: kernelTotals(record.kernels).slice(0, 12) },
    };
  } finally {
    await setup.close();
  }
}

/**
 * Several setups in one process, one iteration of each in turn (after `warmup` such rounds): the times of their
 * `steps` rounds, per setup in order. Steps of one round ran seconds apart in one process, so their ratios are
 * free of the speed spread between processes (tens of percent on the project's VM) and of its drift. The setups
 * share the backend: they must agree on its threads (`threads` of two-replica setups, IR2F_WASM_THREADS else).
 */
export async function benchInterleaved(setups: StepBenchOptions[], steps: number, warmup: number): Promise<number[][]> {
  const ready: BenchSetup[] = [];
  try {
    for (const o of setups) ready.push(await benchSetup(o));
    for (let i = 0; i < warmup; i++) for (const s of ready) await s.run(i, false);
    const times = ready.map(() => [] as number[]);
    for (let i = 0; i < steps; i++) for (const [k, s] of ready.entries()) times[k].push((await s.run(100 + i, false)).ms);
    return times;
  } finally {
    for (const s of ready) await s.close();
  }
}
