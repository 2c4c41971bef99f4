/**
 * Mix Transformer (MiT-B0…B5), the SegFormer/DAFormer encoder: per stage an overlapping patch embedding
 * (strided conv + LayerNorm), transformer blocks with efficient self-attention (keys/values from a
 * sequence-reduced map, ratio R) and a Mix-FFN (fc → 3×3 depthwise conv → GELU → fc), stochastic depth, and a
 * final LayerNorm. State names follow NVlabs' `mix_transformer.py` (as DAFormer's checkpoints):
 * `patch_embed1.proj.weight`, `block1.0.attn.q.weight`, `block1.0.mlp.dwconv.dwconv.weight`, `norm1.weight`.
 */
import type * as tf from '@tensorflow/tfjs';
import * as tfl from '@tensorflow/tfjs';
import {
  attr, Conv2d, Dropout, GELU, LayerNorm, Linear, Module, ModuleList, type Backbone, type OnnxGraph, type Rng,
} from '@ir2f/core';
import { mapToTokens, tokensToMap } from './onnx-tokens.js';

export interface MiTOptions {
  embedDims: [number, number, number, number];
  numHeads: [number, number, number, number];
  depths: [number, number, number, number];
  srRatios?: [number, number, number, number];
  mlpRatio?: number;
  dropPathRate?: number;
}

export const MIT_VARIANTS: Record<string, MiTOptions> = {
  'mit-b0': { embedDims: [32, 64, 160, 256], numHeads: [1, 2, 5, 8], depths: [2, 2, 2, 2] },
  'mit-b1': { embedDims: [64, 128, 320, 512], numHeads: [1, 2, 5, 8], depths: [2, 2, 2, 2] },
  'mit-b2': { embedDims: [64, 128, 320, 512], numHeads: [1, 2, 5, 8], depths: [3, 4, 6, 3] },
  'mit-b3': { embedDims: [64, 128, 320, 512], numHeads: [1, 2, 5, 8], depths: [3, 4, 18, 3] },
  'mit-b4': { embedDims: [64, 128, 320, 512], numHeads: [1, 2, 5, 8], depths: [3, 8, 27, 3] },
  'mit-b5': { embedDims: [64, 128, 320, 512], numHeads: [1, 2, 5, 8], depths: [3, 6, 40, 3] },
  /** Sized for the embedded benchmarks on 2 CPU cores. */
  'mit-tiny': { embedDims: [16, 32, 64, 128], numHeads: [1, 1, 2, 4], depths: [1, 1, 1, 1] },
};

class OverlapPatchEmbed extends Module {
  readonly proj: Conv2d;
  readonly norm: LayerNorm;

  constructor(inChannels: number, dim: number, patch: number, stride: number, rng: Rng) {
    super();
    this.proj = this.child('proj', new Conv2d(inChannels, dim, { kernel: patch, stride, padding: patch >> 1, bias: true }, rng));
    this.norm = this.child('norm', new LayerNorm(dim));
  }
}

class EfficientAttention extends Module {
  readonly q: Linear;
  readonly kv: Linear;
  readonly proj: Linear;
  readonly sr?: Conv2d;
  readonly norm?: LayerNorm;
  private readonly headDim: number;

  constructor(readonly dim: number, readonly heads: number, readonly srRatio: number, rng: Rng) {
    super();
    if (dim % heads !== 0) throw new Error(`MiT: dim ${dim} is not divisible by ${heads} heads`);
    this.headDim = dim / heads;
    this.q = this.child('q', new Linear(dim, dim, rng.fork('q')));
    this.kv = this.child('kv', new Linear(dim, 2 * dim, rng.fork('kv')));
    this.proj = this.child('proj', new Linear(dim, dim, rng.fork('proj')));
    if (srRatio > 1) {
      this.sr = this.child('sr', new Conv2d(dim, dim, { kernel: srRatio, stride: srRatio, bias: true }, rng.fork('sr')));
      this.norm = this.child('norm', new LayerNorm(dim));
    }
  }

  /** x: tokens [B, N, C] of an H×W map. */
  forward(x: tf.Tensor3D, H: number, W: number): tf.Tensor3D {
    const [B, N, C] = x.shape;
    const { heads, headDim: d } = this;
    const q = tfl.transpose(tfl.reshape(this.q.forward(x), [B, N, heads, d]), [0, 2, 1, 3]);
    let src: tf.Tensor = x;
    if (this.sr && this.norm) {
      const reduced = this.sr.forward(tfl.reshape(x, [B, H, W, C]));
      src = this.norm.forward(tfl.reshape(reduced, [B, -1, C]));
    }
    const M = src.shape[1]!;
    const kv = tfl.transpose(tfl.reshape(this.kv.forward(src), [B, M, 2, heads, d]), [2, 0, 3, 1, 4]);
    const [k, v] = tfl.unstack(kv, 0);
    const attn = tfl.softmax(tfl.mul(tfl.matMul(q, k, false, true), 1 / Math.sqrt(d)), -1);
    const out = tfl.reshape(tfl.transpose(tfl.matMul(attn, v), [0, 2, 1, 3]), [B, N, C]);
    return this.proj.forward(out) as tf.Tensor3D;
  }

  toOnnx(g: OnnxGraph, x: string, shapeOf: string, p: string): string {
    const { heads, headDim: d, dim } = this;
    const q = g.node('Transpose', [g.node('Reshape', [this.q.toOnnx(g, x, `${p}q.`), g.int64s(`${p}q_shape`, [0, 0, heads, d])])],
      { perm: attr.ints([0, 2, 1, 3]) }, `${p}q_heads`);
    let src = x;
    if (this.sr && this.norm) {
      const map = tokensToMap(g, x, dim, shapeOf, `${p}sr_in.`);
      const reduced = this.sr.toOnnx(g, map, `${p}sr.`);
      src = this.norm.toOnnx(g, mapToTokens(g, reduced, `${p}sr_out.`), `${p}norm.`);
    }
    const kv = g.node('Transpose', [g.node('Reshape', [this.kv.toOnnx(g, src, `${p}kv.`), g.int64s(`${p}kv_shape`, [0, 0, 2, heads, d])])],
      { perm: attr.ints([2, 0, 3, 1, 4]) }, `${p}kv_heads`);
    const k = g.node('Gather', [kv, g.int64s(`${p}i0`, [0], [])], { axis: attr.int(0) }, `${p}k`);
    const v = g.node('Gather', [kv, g.int64s(`${p}i1`, [1], [])], { axis: attr.int(0) }, `${p}v`);
    const kT = g.node('Transpose', [k], { perm: attr.ints([0, 1, 3, 2]) }, `${p}kT`);
    const scores = g.node('Mul', [g.node('MatMul', [q, kT], {}, `${p}qk`), g.floats(`${p}scale`, new Float32Array([1 / Math.sqrt(d)]), [])], {}, `${p}scores`);
    const attn = g.node('Softmax', [scores], { axis: attr.int(-1) }, `${p}attn`);
    const out = g.node('Transpose', [g.node('MatMul', [attn, v], {}, `${p}av`)], { perm: attr.ints([0, 2, 1, 3]) }, `${p}merge`);
    return this.proj.toOnnx(g, g.node('Reshape', [out, g.int64s(`${p}out_shape`, [0, 0, dim])], {}, `${p}merged`), `${p}proj.`);
  }
}

class DWConvWrapper extends Module {
  readonly dwconv: Conv2d;

  constructor(dim: number, rng: Rng) {
    super();
    this.dwconv = this.child('dwconv', new Conv2d(dim, dim, { kernel: 3, padding: 1, groups: dim, bias: true }, rng));
  }
}

class MixFFN extends Module {
  readonly fc1: Linear;
  readonly dwconv: DWConvWrapper;
  readonly fc2: Linear;
  private readonly act = new GELU();

  constructor(dim: number, hidden: number, rng: Rng) {
    super();
    this.fc1 = this.child('fc1', new Linear(dim, hidden, rng.fork('fc1')));
    this.dwconv = this.child('dwconv', new DWConvWrapper(hidden, rng.fork('dw')));
    this.fc2 = this.child('fc2', new Linear(hidden, dim, rng.fork('fc2')));
  }

  forward(x: tf.Tensor3D, H: number, W: number): tf.Tensor3D {
    const [B, N] = x.shape;
    const h = this.fc1.forward(x);
    const hidden = h.shape[2]!;
    const mixed = this.dwconv.dwconv.forward(tfl.reshape(h, [B, H, W, hidden]));
    return this.fc2.forward(this.act.forward(tfl.reshape(mixed, [B, N, hidden]))) as tf.Tensor3D;
  }

  toOnnx(g: OnnxGraph, x: string, shapeOf: string, p: string): string {
    const h = this.fc1.toOnnx(g, x, `${p}fc1.`);
    const map = tokensToMap(g, h, this.fc1.outFeatures, shapeOf, `${p}dw_in.`);
    const mixed = mapToTokens(g, this.dwconv.dwconv.toOnnx(g, map, `${p}dwconv.dwconv.`), `${p}dw_out.`);
    return this.fc2.toOnnx(g, this.act.toOnnx(g, mixed, `${p}act.`), `${p}fc2.`);
  }
}

class MiTBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: EfficientAttention;
  readonly norm2: LayerNorm;
  readonly mlp: MixFFN;
  private readonly dropPath: Dropout;

  constructor(dim: number, heads: number, mlpRatio: number, srRatio: number, dropPath: number, rng: Rng) {
    super();
    this.norm1 = this.child('norm1', new LayerNorm(dim, 1e-6));
    this.attn = this.child('attn', new EfficientAttention(dim, heads, srRatio, rng.fork('attn')));
    this.norm2 = this.child('norm2', new LayerNorm(dim, 1e-6));
    this.mlp = this.child('mlp', new MixFFN(dim, dim * mlpRatio, rng.fork('mlp')));
    this.dropPath = this.child('drop_path', new Dropout(dropPath, rng.fork('drop_path'), true));
  }

  /** One tidy per block: intermediates are freed as the forward goes (the tape keeps what backprop needs). */
  forward(x: tf.Tensor3D, H: number, W: number): tf.Tensor3D {
    return tfl.tidy(() => {
      const a = tfl.add(x, this.dropPath.forward(this.attn.forward(this.norm1.forward(x) as tf.Tensor3D, H, W))) as tf.Tensor3D;
      return tfl.add(a, this.dropPath.forward(this.mlp.forward(this.norm2.forward(a) as tf.Tensor3D, H, W))) as tf.Tensor3D;
    });
  }

  toOnnx(g: OnnxGraph, x: string, shapeOf: string, p: string): string {
    const a = g.node('Add', [x, this.attn.toOnnx(g, this.norm1.toOnnx(g, x, `${p}norm1.`), shapeOf, `${p}attn.`)], {}, `${p}res1`);
    return g.node('Add', [a, this.mlp.toOnnx(g, this.norm2.toOnnx(g, a, `${p}norm2.`), shapeOf, `${p}mlp.`)], {}, `${p}res2`);
  }
}

export class MixVisionTransformer extends Module implements Backbone {
  readonly channels: number[];
  readonly strides = [4, 8, 16, 32];
  private readonly embeds: OverlapPatchEmbed[] = [];
  private readonly stages: MiTBlock[][] = [];
  private readonly norms: LayerNorm[] = [];

  constructor(opts: MiTOptions, rng: Rng) {
    super();
    const sr = opts.srRatios ?? [8, 4, 2, 1];
    const mlpRatio = opts.mlpRatio ?? 4;
    const total = opts.depths.reduce((a, b) => a + b, 0);
    const rate = opts.dropPathRate ?? 0.1;
    let k = 0;
    this.channels = [...opts.embedDims];
    for (let s = 0; s < 4; s++) {
      const inCh = s === 0 ? 3 : opts.embedDims[s - 1];
      const dim = opts.embedDims[s];
      const srng = rng.fork(`stage${s + 1}`);
      this.embeds.push(this.child(`patch_embed${s + 1}`, new OverlapPatchEmbed(inCh, dim, s === 0 ? 7 : 3, s === 0 ? 4 : 2, srng.fork('embed'))));
      const blocks: MiTBlock[] = [];
      for (let b = 0; b < opts.depths[s]; b++) {
        const dp = total > 1 ? (rate * k++) / (total - 1) : 0;
        blocks.push(new MiTBlock(dim, opts.numHeads[s], mlpRatio, sr[s], dp, srng.fork(`block${b}`)));
      }
      this.child(`block${s + 1}`, new ModuleList(blocks));
      this.stages.push(blocks);
      this.norms.push(this.child(`norm${s + 1}`, new LayerNorm(dim, 1e-6)));
    }
  }

  forward(x: tf.Tensor4D): tf.Tensor4D[] {
    const outs: tf.Tensor4D[] = [];
    let h: tf.Tensor4D = x;
    for (let s = 0; s < 4; s++) {
      const map = this.embeds[s].proj.forward(h);
      const [B, H, W, C] = map.shape;
      let tokens = this.embeds[s].norm.forward(tfl.reshape(map, [B, H * W, C])) as tf.Tensor3D;
      for (const block of this.stages[s]) tokens = block.forward(tokens, H, W);
      h = tfl.reshape(this.norms[s].forward(tokens), [B, H, W, C]);
      outs.push(h);
    }
    return outs;
  }

  toOnnxFeatures(g: OnnxGraph, input: string, prefix: string): string[] {
    const outs: string[] = [];
    let h = input;
    for (let s = 0; s < 4; s++) {
      const p = `${prefix}patch_embed${s + 1}.`;
      const map = this.embeds[s].proj.toOnnx(g, h, `${p}proj.`);
      const shapeOf = g.node('Shape', [map], {}, `${p}shape`);
      let tokens = this.embeds[s].norm.toOnnx(g, mapToTokens(g, map, p), `${p}norm.`);
      this.stages[s].forEach((block, b) => (tokens = block.toOnnx(g, tokens, shapeOf, `${prefix}block${s + 1}.${b}.`)));
      tokens = this.norms[s].toOnnx(g, tokens, `${prefix}norm${s + 1}.`);
      h = tokensToMap(g, tokens, this.channels[s], shapeOf, `${prefix}stage${s + 1}_out.`);
      outs.push(h);
    }
    return outs;
  }
}
