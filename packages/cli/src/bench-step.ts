/**
 * `ir2f bench`: the cost of one DAFormer-style iteration (batch B+B, crop S²) of a model preset on the
 * current backend, with its phases (teacher, student forward+backward, optimiser+EMA), on seeded random
 * data so that no dataset is needed. The repository's `npm run bench -- train` adds the PyTorch reference.
 */
import * as tf from '@tensorflow/tfjs';
import {
  AdamW, ClassMix, ConfidencePseudoLabeler, IdentityRectifier, initBackend, paramGroups, Rng, udaStep, WeightedCrossEntropy,
  type Rectifier, type TrainMode,
} from '@ir2f/core';
import { createModel } from '@ir2f/backbones';

export interface StepBenchOptions {
  preset: string;
  size: number;
  batch: number;
  steps: number;
  warmup?: number;
  numClasses?: number;
  mode?: TrainMode;
  backend?: string;
  rectifier?: Rectifier;
}

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
      default:
    }
  }
  return flops;
}

export interface StepBenchResult {
  backend: string;
  /** Median over unprofiled steps (profiling adds a device sync per phase). */
  msPerStep: number;
  /** Medians over profiled steps. */
  phases: { teacher: number; student: number; rectifier: number; optimizer: number };
  numTensorsDelta: number;
  /** Convolution and matrix-product FLOPs of one iteration (`kernelFlops`). */
  flops: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function benchStep(o: StepBenchOptions): Promise<StepBenchResult> {
  const backend = await initBackend(o.backend);
  const K = o.numClasses ?? 19;
  const student = createModel(o.preset, { numClasses: K, seed: 1 });
  const teacher = createModel(o.preset, { numClasses: K, seed: 1 });
  const optimizer = new AdamW(paramGroups(student.namedState()));
  const parts = {
    student, teacher, optimizer, rectifier: o.rectifier ?? new IdentityRectifier(),
    pseudoLabeler: new ConfidencePseudoLabeler({ threshold: 0.968 }), mixer: new ClassMix({ numClasses: K }), loss: new WeightedCrossEntropy(),
  };
  const rng = new Rng(0);
  const { size: S, batch: B } = o;
  const labels = () => tf.tensor3d(Int32Array.from({ length: B * S * S }, (_, i) => (Math.floor(i / (S * 8)) + (i % S < S / 2 ? 0 : 3)) % K), [B, S, S], 'int32');
  const batch = {
    source: { image: tf.tensor4d(rng.normalArray(B * S * S * 3), [B, S, S, 3]), labels: labels() },
    target: { image: tf.tensor4d(rng.normalArray(B * S * S * 3), [B, S, S, 3]), labels: labels() },
  };
  const run = (step: number, profile: boolean) => {
    const t0 = performance.now();
    const r = udaStep(parts, batch, { mode: o.mode ?? 'uda', lr: 1e-5, ctx: { step, training: true, rng: rng.fork(`s${step}`) }, profile });
    return { ms: performance.now() - t0, phases: r.phases };
  };
  try {
    for (let i = 0; i < (o.warmup ?? 1); i++) run(i, false);
    const before = tf.memory().numTensors;
    const plain = Array.from({ length: o.steps }, (_, i) => run(100 + i, false).ms);
    const profiled = Array.from({ length: Math.max(2, Math.ceil(o.steps / 2)) }, (_, i) => run(200 + i, true));
    const phase = (k: 'teacher' | 'student' | 'rectifier' | 'optimizer') => median(profiled.map((p) => p.phases![k]));
    const numTensorsDelta = tf.memory().numTensors - before;
    const record = await tf.profile(() => {
      run(300, false);
    });
    return {
      backend: backend.threads ? `${backend.name} (${backend.threads} thread${backend.threads > 1 ? 's' : ''})` : backend.name, msPerStep: median(plain),
      phases: { teacher: phase('teacher'), student: phase('student'), rectifier: phase('rectifier'), optimizer: phase('optimizer') },
      numTensorsDelta, flops: kernelFlops(record.kernels as unknown as KernelRecord[]),
    };
  } finally {
    tf.dispose([batch.source.image, batch.source.labels, batch.target.image, batch.target.labels]);
    optimizer.dispose();
    student.dispose();
    teacher.dispose();
  }
}
