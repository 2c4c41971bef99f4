/**
 * A small module system for models that train in tfjs, save to safetensors and export to ONNX.
 *
 * Parameters and buffers carry PyTorch-style dotted names (`layer1.0.conv1.weight`) and a layout tag, so a
 * state dict is stored in PyTorch's layouts (conv OIHW, linear [out, in]) and ImageNet checkpoints map onto it
 * by name. In tfjs a conv weight lives as HWIO; `toTorch`/`fromTorch` convert at the boundary only.
 * Modules run in training mode until `eval()` (batch-norm statistics, dropout, stochastic depth).
 */
import * as tf from '@tensorflow/tfjs';
import type { OnnxGraph } from '@ir2f/runtime';
import type { Rng } from '../rng.js';

/** How a tensor is laid out in tfjs vs PyTorch. */
export type ParamLayout = 'conv' | 'depthwise' | 'linear' | 'plain';

export interface StateEntry {
  variable: tf.Variable;
  layout: ParamLayout;
  trainable: boolean;
}

let uid = 0;

export abstract class Module {
  private readonly entries = new Map<string, StateEntry>();
  private readonly children = new Map<string, Module>();
  /** tfjs variable names are global: each module instance gets its own prefix. */
  private readonly scope = `m${uid++}`;
  protected isTraining = true;

  get training(): boolean {
    return this.isTraining;
  }

  /** Register a trainable parameter whose initial value is `init` (in tfjs layout; taken over, not copied). */
  protected param(name: string, init: tf.Tensor, layout: ParamLayout = 'plain'): tf.Variable {
    return this.register(name, init, layout, true);
  }

  /** Register non-trainable state (e.g. batch-norm running statistics). */
  protected buffer(name: string, init: tf.Tensor): tf.Variable {
    return this.register(name, init, 'plain', false);
  }

  private register(name: string, init: tf.Tensor, layout: ParamLayout, trainable: boolean): tf.Variable {
    if (this.entries.has(name) || this.children.has(name)) throw new Error(`duplicate member '${name}'`);
    const variable = tf.variable(init, trainable, `${this.scope}/${name}`);
    init.dispose();
    this.entries.set(name, { variable, layout, trainable });
    return variable;
  }

  protected child<M extends Module>(name: string, module: M): M {
    if (this.entries.has(name) || this.children.has(name)) throw new Error(`duplicate member '${name}'`);
    this.children.set(name, module);
    return module;
  }

  /** Every parameter and buffer below this module, by dotted name. */
  namedState(prefix = ''): [string, StateEntry][] {
    const out: [string, StateEntry][] = [];
    for (const [n, e] of this.entries) out.push([prefix + n, e]);
    for (const [n, c] of this.children) out.push(...c.namedState(`${prefix}${n}.`));
    return out;
  }

  /** Trainable variables (for the optimiser). */
  get variables(): readonly tf.Variable[] {
    return this.namedState().filter(([, e]) => e.trainable).map(([, e]) => e.variable);
  }

  train(on = true): this {
    this.isTraining = on;
    this.onBatchStats(false);
    for (const c of this.children.values()) c.train(on);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * Inference that normalises with each batch's own statistics, running statistics untouched: how
   * DAFormer's EMA teacher labels a target batch (its dropout and drop path are off, its batch norms stay in
   * training mode). `train()` or `eval()` leave this mode.
   */
  batchStatsEval(): this {
    this.train(false);
    this.visitModules((m) => m.onBatchStats(true));
    return this;
  }

  /** Hook for layers whose inference depends on `batchStatsEval` (batch norm). */
  protected onBatchStats(_on: boolean): void {}

  /** Call `fn` on this module and every descendant, depth first in registration order. */
  visitModules(fn: (m: Module) => void): void {
    fn(this);
    for (const c of this.children.values()) c.visitModules(fn);
  }

  /**
   * Re-derive the random streams of stochastic layers (dropout, drop path) from `rng`, each from its own
   * path: the trainer does this every step, so a step's noise depends on (seed, step) only and a resumed
   * run draws what a straight run would.
   */
  reseed(rng: Rng): void {
    for (const [n, c] of this.children) c.reseed(rng.fork(n));
  }

  dispose(): void {
    for (const e of this.entries.values()) e.variable.dispose();
    for (const c of this.children.values()) c.dispose();
  }
}

/** A module with one input and one output tensor, and an ONNX emitter for the same computation (NCHW). */
export abstract class Layer extends Module {
  abstract forward(x: tf.Tensor): tf.Tensor;
  /** Emit ONNX nodes computing this layer on NCHW tensor `input`; returns the output's name. */
  abstract toOnnx(g: OnnxGraph, input: string, prefix: string): string;
}

/** tfjs layout → PyTorch layout. */
export function toTorch(t: tf.Tensor, layout: ParamLayout): tf.Tensor {
  switch (layout) {
    case 'conv': return tf.transpose(t, [3, 2, 0, 1]); // HWIO → OIHW
    case 'depthwise': { // [KH, KW, C, M] → [C·M, 1, KH, KW] (PyTorch groups = C)
      const [KH, KW, C, M] = t.shape;
      return tf.reshape(tf.transpose(t, [2, 3, 0, 1]), [C * M, 1, KH, KW]);
    }
    case 'linear': return tf.transpose(t, [1, 0]); // [in, out] → [out, in]
    default: return t.clone();
  }
}

/** PyTorch layout → tfjs layout (`shape` is the tfjs shape expected). */
export function fromTorch(t: tf.Tensor, layout: ParamLayout, shape: number[]): tf.Tensor {
  switch (layout) {
    case 'conv': return tf.transpose(t, [2, 3, 1, 0]);
    case 'depthwise': return tf.transpose(tf.reshape(t, [shape[2], shape[3], shape[0], shape[1]]), [2, 3, 0, 1]);
    case 'linear': return tf.transpose(t, [1, 0]);
    default: return tf.reshape(t, shape);
  }
}

/** The PyTorch shape of a tfjs-layout shape. */
export function torchShape(shape: number[], layout: ParamLayout): number[] {
  switch (layout) {
    case 'conv': return [shape[3], shape[2], shape[0], shape[1]];
    case 'depthwise': return [shape[2] * shape[3], 1, shape[0], shape[1]];
    case 'linear': return [shape[1], shape[0]];
    default: return shape;
  }
}

/** Modules held under the names '0', '1', … (PyTorch's ModuleList), or under given names (ModuleDict). */
export class ModuleList<M extends Module> extends Module {
  readonly items: readonly M[];

  constructor(items: M[], names?: string[]) {
    super();
    this.items = items.map((m, i) => this.child(names?.[i] ?? String(i), m));
  }
}
