/**
 * The replica plan by measurement (`TrainOptions.parallel.auto`). Two replicas pay where a step has enough work
 * besides its dense kernels to overlap, and lose where the kernels dominate and the two cores share arithmetic
 * units (measured on this project's 2-vCPU VM: mit-tiny-daformer at 256² 620 against 938 ms on one replica;
 * resnet-tiny-deeplabv2 at 128² 189 against 135). Which holds depends on the model, the crop and the machine,
 * so a run times both on its first steps: after `warmup` steps on two replicas, `steps` + 1 on this thread
 * alone (the first untimed: it builds this thread's target-pass kernels), then, the worker brought up to date,
 * `steps` on two; the faster median stays. Both plans compute the same step (up to float summation order), so
 * the probe's steps are training steps, and a run that must repeat bit for bit sets its replicas instead.
 */

export interface ReplicaProbeOptions {
  /** Steps on two replicas before the probe (default 5: the first steps build kernels and JIT-compile). */
  warmup?: number;
  /** Timed steps of each plan (default 5). */
  steps?: number;
  /** Runs shorter than this (steps left to train) keep two replicas unprobed (default 50). */
  minSteps?: number;
}

export interface ReplicaChoice {
  workers: 1 | 2;
  /** Median ms a step on one replica and on two. */
  one: number;
  two: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export class ReplicaProbe {
  private readonly warmup: number;
  private readonly steps: number;
  private readonly one: number[] = [];
  private readonly two: number[] = [];

  /** A probe from step `from` (the run's first), or undefined where fewer than `minSteps` steps are left. */
  static start(from: number, total: number, opts: ReplicaProbeOptions = {}): ReplicaProbe | undefined {
    return total - from >= (opts.minSteps ?? 50) ? new ReplicaProbe(from, opts) : undefined;
  }

  private constructor(private readonly from: number, opts: ReplicaProbeOptions) {
    this.warmup = opts.warmup ?? 5;
    this.steps = opts.steps ?? 5;
    if (!(Number.isInteger(this.warmup) && this.warmup >= 0 && Number.isInteger(this.steps) && this.steps >= 1)) {
      throw new Error(`replica probe: warmup must be a whole number ≥ 0 and steps ≥ 1, got ${this.warmup} and ${this.steps}`);
    }
  }

  /** The step's place in the probe: < 0 warm-up, 0 … steps on one replica, then steps on two. */
  private at(step: number): number {
    return step - this.from - this.warmup;
  }

  /** Whether step `step` runs on two replicas. */
  parallel(step: number): boolean {
    const i = this.at(step);
    return i < 0 || i > this.steps;
  }

  /** Whether the worker must take this thread's state before step `step` (it sat out the one-replica steps). */
  needsSync(step: number): boolean {
    return this.at(step) === this.steps + 1;
  }

  /** Record step `step`'s wall time; the choice once both plans are timed. */
  record(step: number, ms: number): ReplicaChoice | undefined {
    const i = this.at(step);
    if (i >= 1 && i <= this.steps) this.one.push(ms);
    else if (i > this.steps) this.two.push(ms);
    if (this.two.length < this.steps) return undefined;
    const [one, two] = [median(this.one), median(this.two)];
    return { workers: one < two ? 1 : 2, one, two };
  }
}
