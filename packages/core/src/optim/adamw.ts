/**
 * AdamW with parameter groups (PyTorch semantics: decoupled weight decay p ← p·(1 − lr·wd) before the Adam
 * step, bias-corrected moments, eps outside the square root) and DAFormer's schedule: linear warm-up, then
 * polynomial decay. Groups carry lr and decay multipliers chosen by parameter name (head ×10, no decay on
 * norms and position blocks). State (moments, step) is exposed for checkpoints.
 */
import * as tf from '@tensorflow/tfjs';
import { hasHostKernel, registerHostKernel, registerOnce } from '@ir2f/runtime';
import type { StateEntry } from '../nn/module.js';

export interface ParamRule {
  /** Substring (or RegExp) of the dotted parameter name. */
  match: string | RegExp;
  lrMult?: number;
  decayMult?: number;
}

export interface ParamGroup {
  variables: tf.Variable[];
  lrMult: number;
  decayMult: number;
}

/** DAFormer's rules: `head` lr ×10; `norm` and `pos_block` without weight decay. */
export const DAFORMER_PARAM_RULES: readonly ParamRule[] = [
  { match: 'head', lrMult: 10 },
  { match: 'pos_block', decayMult: 0 },
  { match: 'norm', decayMult: 0 },
];

/**
 * Group trainable entries by the multipliers their names select. As mmcv's `custom_keys`, a name takes the
 * single longest matching rule (ties: the first listed).
 */
export function paramGroups(named: readonly [string, StateEntry][], rules: readonly ParamRule[] = DAFORMER_PARAM_RULES): ParamGroup[] {
  const groups = new Map<string, ParamGroup>();
  const keyLength = (r: ParamRule) => (typeof r.match === 'string' ? r.match.length : r.match.source.length);
  const ordered = [...rules].sort((a, b) => keyLength(b) - keyLength(a));
  for (const [name, e] of named) {
    if (!e.trainable) continue;
    const rule = ordered.find((r) => (typeof r.match === 'string' ? name.includes(r.match) : r.match.test(name)));
    const lrMult = rule?.lrMult ?? 1;
    const decayMult = rule?.decayMult ?? 1;
    const key = `${lrMult}/${decayMult}`;
    if (!groups.has(key)) groups.set(key, { variables: [], lrMult, decayMult });
    groups.get(key)!.variables.push(e.variable);
  }
  return [...groups.values()];
}

export interface ScheduleOptions {
  baseLr: number;
  maxSteps: number;
  warmupSteps?: number;
  warmupRatio?: number;
  power?: number;
  minLr?: number;
}

/** mmcv's poly schedule with linear warm-up, for 0-based `step`. */
export function polyLr(step: number, o: ScheduleOptions): number {
  const power = o.power ?? 1;
  const minLr = o.minLr ?? 0;
  const lr = (o.baseLr - minLr) * Math.pow(1 - Math.min(step, o.maxSteps) / o.maxSteps, power) + minLr;
  const warm = o.warmupSteps ?? 0;
  if (step >= warm) return lr;
  const ratio = o.warmupRatio ?? 1e-6;
  return lr * (1 - (1 - step / warm) * (1 - ratio));
}

export interface AdamWOptions {
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** One AdamW update's constants: moments' betas, their bias corrections c = 1 − βᵗ, lr, decay factor. */
interface AdamWStep {
  beta1: number;
  beta2: number;
  c1: number;
  c2: number;
  eps: number;
  lr: number;
  /** 1 − lr·weight decay (decoupled). */
  decay: number;
}

const ADAMW_KERNEL = 'Ir2fAdamW';

/**
 * (p', m', v') for one parameter. One pass over the parameter on wasm (SIMD) and cpu (JS) (~15 element-wise kernels
 * per parameter otherwise, a few thousand per training step); elsewhere the same maths as tensor ops.
 */
function adamwUpdate(p: tf.Tensor, g: tf.Tensor, m: tf.Tensor, v: tf.Tensor, s: AdamWStep): [tf.Tensor, tf.Tensor, tf.Tensor] {
  registerOptimKernels();
  if (hasHostKernel(ADAMW_KERNEL)) {
    return tf.engine().runKernel(ADAMW_KERNEL, { p, g, m, v }, s as unknown as tf.NamedAttrMap) as unknown as [tf.Tensor, tf.Tensor, tf.Tensor];
  }
  const m1 = tf.add(tf.mul(m, s.beta1), tf.mul(g, 1 - s.beta1));
  const v1 = tf.add(tf.mul(v, s.beta2), tf.mul(tf.square(g), 1 - s.beta2));
  const update = tf.div(tf.div(m1, s.c1), tf.add(tf.sqrt(tf.div(v1, s.c2)), s.eps));
  return [tf.sub(s.decay === 1 ? p : tf.mul(p, s.decay), tf.mul(update, s.lr)), m1, v1];
}

const registerOptimKernels = registerOnce(() => {
  registerHostKernel({
    name: ADAMW_KERNEL,
    outputShapes: (shapes) => [shapes.p, shapes.p, shapes.p],
    // wasm: SIMD in float32 arithmetic (the JS loop's is float64 between the stored moments): 9 ms a 128²
    // mit-tiny step in 134 calls as JS
    wasm: {
      scratchBytes: () => 0,
      compute: ({ p, g, m, v }, [p1, m1, v1], _scratch, { simd }, attrs) => {
        const { beta1, beta2, c1, c2, eps, lr, decay } = attrs as unknown as AdamWStep;
        simd.adamw(p.ptr, g.ptr, m.ptr, v.ptr, tf.util.sizeFromShape(p.shape), beta1, 1 - beta1, beta2, 1 - beta2, c1, c2, eps, lr, decay, p1, m1, v1);
      },
    },
    compute: ({ p, g, m, v }, [p1, m1, v1], attrs) => {
      const { beta1, beta2, c1, c2, eps, lr, decay } = attrs as unknown as AdamWStep;
      const [pv, gv, mv, vv] = [p.values as Float32Array, g.values as Float32Array, m.values as Float32Array, v.values as Float32Array];
      for (let i = 0; i < pv.length; i++) {
        const gi = gv[i];
        m1[i] = mv[i] * beta1 + gi * (1 - beta1);
        v1[i] = vv[i] * beta2 + gi * gi * (1 - beta2);
        // from the stored (float32) moments, as the tensor-op version computes it
        p1[i] = pv[i] * decay - ((m1[i] / c1) / (Math.sqrt(v1[i] / c2) + eps)) * lr;
      }
    },
  });
});

export class AdamW {
  private t = 0;
  private readonly m = new Map<tf.Variable, tf.Variable>();
  private readonly v = new Map<tf.Variable, tf.Variable>();
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;

  constructor(readonly groups: ParamGroup[], opts: AdamWOptions = {}) {
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    // a variable shares its initial tensor's data: the initial is freed here, or dispose() would leave its memory
    const zeros = (p: tf.Variable) => tf.tidy(() => tf.variable(tf.zerosLike(p), false));
    for (const g of groups) {
      for (const p of g.variables) {
        this.m.set(p, zeros(p));
        this.v.set(p, zeros(p));
      }
    }
  }

  get step(): number {
    return this.t;
  }

  /** One update with base learning rate `lr`; `grads` by variable name (as tf.variableGrads returns). */
  apply(grads: Record<string, tf.Tensor>, lr: number): void {
    this.t++;
    const { beta1: b1, beta2: b2, eps, t } = this;
    const c1 = 1 - b1 ** t;
    const c2 = 1 - b2 ** t;
    tf.tidy(() => {
      for (const g of this.groups) {
        const glr = lr * g.lrMult;
        const decay = 1 - glr * this.weightDecay * g.decayMult;
        for (const p of g.variables) {
          const grad = grads[p.name];
          if (!grad) continue; // unused in this step's graph
          const m = this.m.get(p)!;
          const v = this.v.get(p)!;
          const [p1, m1, v1] = adamwUpdate(p, grad, m, v, { beta1: b1, beta2: b2, c1, c2, eps, lr: glr, decay });
          m.assign(m1);
          v.assign(v1);
          p.assign(p1);
        }
      }
    });
  }

  /** Moments in group order, for checkpoints. */
  stateTensors(): { step: number; m: tf.Variable[]; v: tf.Variable[] } {
    const ps = this.groups.flatMap((g) => g.variables);
    return { step: this.t, m: ps.map((p) => this.m.get(p)!), v: ps.map((p) => this.v.get(p)!) };
  }

  /** Restore moments (same order as `stateTensors`) and the step counter. */
  restore(step: number, m: tf.Tensor[], v: tf.Tensor[]): void {
    const s = this.stateTensors();
    if (m.length !== s.m.length || v.length !== s.v.length) {
      throw new Error(`optimiser state has ${m.length} moments, this optimiser ${s.m.length}: a checkpoint of another model?`);
    }
    s.m.forEach((x, i) => x.assign(m[i]));
    s.v.forEach((x, i) => x.assign(v[i]));
    this.t = step;
  }

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
  }
}
