/**
 * `npm run bench -- rectifier-cost`: the INR rectifier's cost against the decode head it serves (issue #6: per
 * training step ≤ 0.5× the head's; issue #20: a 4× query ≤ 3× the head's forward), at DESIGN §5.1's defaults
 * (C_r 32, hidden [64, 64], 3×3 unfolding, four-neighbour ensemble, every label pixel), for two heads:
 * - mit-b5-daformer: DAFormer's context-aware fusion head (embedding 256), the one DAFormer and IR2F train
 *   and that DESIGN's rectifier defaults are sized against;
 * - mit-tiny-daformer: the embedded default, whose head has a quarter of the channels (embedding 64).
 * Batch 2 at 96² (features at stride 4, 24²), on the current backend. A training step runs the rectifier
 * forward and backward at label resolution; the head's step is its forward and backward.
 *
 *   npm run bench -- rectifier-cost [--presets mit-b5-daformer,mit-tiny-daformer] [--size 96]
 */
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { describeBackend, initBackend, Rng } from '@ir2f/core';
import { createModel } from '@ir2f/backbones';
import { kernelFlops } from '@ir2f/cli';
import { InrRectifier } from '@ir2f/plugin-inr-rectifier';
import { fmt, medianKernelMs, table, writeSection } from './timing.js';

interface Cost {
  ms: number;
  /** Convolution and matrix-product FLOPs (`kernelFlops`). */
  gflop: number;
}

async function timed(make: () => tf.Tensor, runs: number): Promise<Cost> {
  const profile = await tf.profile(() => {
    make().dispose();
  });
  return { ms: medianKernelMs(make, { warmup: 1, runs }), gflop: kernelFlops(profile.kernels as never) / 1e9 };
}

/** f's value after a backward pass to `vars` (gradients computed, then dropped). */
function withBackward(f: () => tf.Scalar, vars: tf.Variable[]): () => tf.Tensor {
  return () => {
    const { value, grads } = tf.variableGrads(f, vars);
    tf.dispose(Object.values(grads));
    return value;
  };
}

interface PresetCost {
  preset: string;
  headFwd: Cost;
  headStep: Cost;
  rectFwd: Cost;
  rectStep: Cost;
  rect4x: Cost;
  /** The 4× query over the head's forward, the median of `PAIRS` back-to-back pairs (each side the median of 3 runs). */
  ratio4x: number;
}

/** Pairs of the 4× ratio: this VM's speed drifts by tens of percent over seconds, and a pair's two sides share a drift. */
const PAIRS = 9;

function pairedRatio(query: () => tf.Tensor, head: () => tf.Tensor): number {
  const ratios = Array.from({ length: PAIRS }, () => medianKernelMs(query, { warmup: 0, runs: 3 }) / medianKernelMs(head, { warmup: 0, runs: 3 }));
  return ratios.sort((a, b) => a - b)[Math.floor(PAIRS / 2)];
}

async function presetCost(preset: string, S: number): Promise<PresetCost> {
  const model = createModel(preset, { numClasses: 19 }).eval();
  const rect = new InrRectifier({}, { embeddingChannels: model.decodeHead.embeddingChannels, numClasses: 19 });
  const x = tf.tensor4d(new Rng(0).normalArray(2 * S * S * 3), [2, S, S, 3]);
  const feats = model.backbone.forward(x);
  const out = model.decodeHead.forward(feats);
  const lp = tf.logSoftmax(out.logits) as tf.Tensor4D;
  const headVars = model.decodeHead.variables as tf.Variable[];
  const rectVars = rect.variables as tf.Variable[];
  const head = () => tf.tidy(() => model.decodeHead.forward(feats).logits);
  const query4x = () => rect.rectifyGrid(out.embedding, lp, 4 * S, 4 * S);
  try {
    const cost = {
      preset,
      headFwd: await timed(head, 5),
      headStep: await timed(withBackward(() => tf.sum(model.decodeHead.forward(feats).logits), headVars), 5),
      rectFwd: await timed(() => rect.rectifyGrid(out.embedding, lp, S, S), 5),
      rectStep: await timed(withBackward(() => tf.sum(rect.rectifyGrid(out.embedding, lp, S, S)), rectVars), 5),
      rect4x: await timed(query4x, 3),
    };
    return { ...cost, ratio4x: pairedRatio(query4x, head) };
  } finally {
    tf.dispose([x, ...feats, out.logits, out.embedding, lp]);
    model.dispose();
    rect.dispose();
  }
}

export async function benchRectifierCost(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(3),
    options: { presets: { type: 'string', default: 'mit-b5-daformer,mit-tiny-daformer' }, size: { type: 'string', default: '96' } },
  });
  const S = Number(values.size);
  const backend = await initBackend();
  const where = describeBackend(backend);
  const rows: (string | number)[][] = [[
    'head (preset)', 'head fwd ms', 'rect fwd ms', 'rect/head fwd ×', 'head f+b ms', 'rect f+b ms', 'step ratio × (≤ 0.5)',
    '4× query ms', '4×/head fwd × (≤ 3)', 'FLOPs: step ×, 4× ×',
  ]];
  for (const preset of values.presets.split(',')) {
    const c = await presetCost(preset, S);
    const ratio = (a: Cost, b: Cost) => fmt(a.ms / b.ms, 2);
    rows.push([
      preset, fmt(c.headFwd.ms), fmt(c.rectFwd.ms), ratio(c.rectFwd, c.headFwd), fmt(c.headStep.ms), fmt(c.rectStep.ms),
      ratio(c.rectStep, c.headStep), fmt(c.rect4x.ms, 0), fmt(c.ratio4x, 2),
      `${fmt(c.rectStep.gflop / c.headStep.gflop, 2)}, ${fmt(c.rect4x.gflop / c.headFwd.gflop, 2)}`,
    ]);
    console.log(`${preset}: head ${fmt(c.headFwd.gflop, 2)} GFLOP fwd, ${fmt(c.headStep.gflop, 2)} f+b; rectifier ${fmt(c.rectFwd.gflop, 2)} fwd, ` +
      `${fmt(c.rectStep.gflop, 2)} f+b, ${fmt(c.rect4x.gflop, 2)} at 4×`);
  }
  const text = table(rows);
  console.log(`\n# INR rectifier (DESIGN §5.1 defaults) vs the decode head, batch 2, ${S}² labels (${S * 4}² at 4×), ${where}\n\n${text}`);
  const md = [`| ${rows[0].join(' | ')} |`, `|${rows[0].map(() => '---').join('|')}|`, ...rows.slice(1).map((r) => `| ${r.join(' | ')} |`)];
  await writeSection('INR rectifier cost',
    `\`npm run bench -- rectifier-cost\` (batch 2, ${S}² labels, ${where}; medians of 5 runs, 3 at 4×; the 4× ratio the median of ` +
    `${PAIRS} back-to-back pairs of a 4× query and the head's forward; FLOPs are convolution and ` +
    `matrix-product FLOPs from \`kernelFlops\`).\n\n${md.join('\n')}`);
}
