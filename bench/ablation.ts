/**
 * `npm run bench -- ablation`: the ablation ladder of DESIGN §5.3 on both embedded benchmarks, 3 seeds each
 * (the embedded presets, 400 steps), each rung one config change (a plugin or the mode): target mIoU, mIoU on
 * boundary pixels (within 2 px of a class edge), the calibration of r against pseudo-label correctness on
 * target val (expected calibration error, 10 bins; the teacher's max probability for reference). With the
 * INR rectifier in the ladder, also its cost against the decode head's. Writes a section of bench/RESULTS.md.
 *
 *   npm run bench -- ablation [--variants source-only,baseline,inr,ir2f,oracle] [--seeds 3] [--steps 400]
 *   npm run bench -- rectifier        (= --variants baseline,inr)
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { boundaryMask, ConfusionMatrix, expectedCalibrationError, inferLogits, initBackend, Rng } from '@ir2f/core';
import { createModel } from '@ir2f/backbones';
import { loadRawConfig, loadTrained, loadTrainedRectifier, resolveConfig, runTraining } from '@ir2f/cli';
import { EMBEDDED_BENCHMARKS, ensureBenchmark, loadSample, normalize, scanDataset } from '@ir2f/datasets';
import { InrRectifier } from '@ir2f/plugin-inr-rectifier';
import { medianMs } from './timing.js';

const INR_PLUGIN = { package: '@ir2f/plugin-inr-rectifier', options: {} };
const RMM_PLUGIN = { package: '@ir2f/plugin-rmm', options: {} };

/** The rungs of DESIGN §5.3, each a change of mode or plugins on the embedded preset. */
export const VARIANTS = {
  'source-only': { label: 'source-only', set: ['train.mode="source-only"'], inr: false },
  baseline: { label: 'DAFormer-style baseline', set: [], inr: false },
  inr: { label: '+ INR rectifier', set: [`plugins=${JSON.stringify([INR_PLUGIN])}`], inr: true },
  ir2f: { label: '+ INR + RMM (IR2F)', set: [`plugins=${JSON.stringify([INR_PLUGIN, RMM_PLUGIN])}`], inr: true },
  oracle: { label: 'target oracle', set: ['train.mode="target-oracle"'], inr: false },
} as const;
export type VariantName = keyof typeof VARIANTS;

interface RunMetrics {
  miou: number;
  boundaryMiou: number;
  eceR?: number;
  eceTeacher?: number;
}

async function measure(
  checkpoint: string, valRoot: ReturnType<typeof ensureBenchmark> extends Promise<infer B> ? B : never, inr: boolean, selfTraining: boolean,
): Promise<RunMetrics> {
  const val = await scanDataset(valRoot.targetVal);
  const { model: student, config, checkpoint: ckpt } = await loadTrained(checkpoint, 'student');
  const { model: teacher } = await loadTrained(ckpt, 'teacher');
  const rect = inr ? await loadTrainedRectifier(ckpt, config, teacher) : undefined;
  const K = config.model.numClasses;
  const [all, edge] = [new ConfusionMatrix(K), new ConfusionMatrix(K)];
  const rs: number[] = [];
  const confs: number[] = [];
  const corrects: number[] = [];
  for (const item of val.items) {
    const s = await loadSample(item);
    const { width, height } = s.image;
    const label = s.label!.data;
    const x = tf.tensor4d(normalize(s.image), [1, height, width, 3]);
    const pred = tf.tidy(() => tf.argMax(inferLogits(student, x), 3).dataSync());
    all.update(pred, label);
    const mask = boundaryMask(label, width, height);
    edge.update(pred, Uint8Array.from(label, (v, i) => (mask[i] ? v : 255)));
    // the teacher labels the image as in training; r rates those pseudo-labels
    const [tPred, tConf, r] = tf.tidy(() => {
      const out = teacher.forward(x);
      const probs = tf.softmax(inferLogits(teacher, x));
      const rMap = rect ? rect.rectifier.rectifyGrid!(out.embedding, tf.logSoftmax(out.logits) as tf.Tensor4D, height, width) : undefined;
      return [tf.argMax(probs, 3).dataSync(), tf.max(probs, 3).dataSync(), rMap?.dataSync()];
    });
    label.forEach((v, i) => {
      if (v === 255) return;
      corrects.push(tPred[i] === v ? 1 : 0);
      confs.push(tConf[i]);
      if (r) rs.push(r[i]);
    });
    x.dispose();
  }
  student.dispose();
  teacher.dispose();
  await rect?.dispose();
  return {
    miou: all.miou(valRoot.classes), boundaryMiou: edge.miou(valRoot.classes),
    eceR: inr ? expectedCalibrationError(rs, corrects) : undefined,
    eceTeacher: selfTraining ? expectedCalibrationError(confs, corrects) : undefined,
  };
}

const meanStd = (xs: number[]) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
  return xs.length > 1 ? `${(m * 100).toFixed(1)} ± ${(sd * 100).toFixed(1)}` : `${(m * 100).toFixed(1)} (1 seed)`;
};

/** Decode head forward vs the rectifier at label resolution and at 4×, mit-tiny-daformer features at 96². */
function cost(): { head: number; rectify: number; rectify4x: number } {
  const model = createModel('mit-tiny-daformer', { numClasses: 19 }).eval();
  const rect = new InrRectifier({}, { embeddingChannels: model.decodeHead.embeddingChannels, numClasses: 19 });
  const x = tf.tensor4d(new Rng(0).normalArray(2 * 96 * 96 * 3), [2, 96, 96, 3]);
  const feats = model.backbone.forward(x);
  const out = model.decodeHead.forward(feats);
  const lp = tf.logSoftmax(out.logits) as tf.Tensor4D;
  const head = medianMs(() => tf.tidy(() => model.decodeHead.forward(feats).logits.dataSync()), { warmup: 2, runs: 7 });
  const rectify = medianMs(() => tf.tidy(() => rect.rectifyGrid(out.embedding, lp, 96, 96).dataSync()), { warmup: 2, runs: 7 });
  const rectify4x = medianMs(() => tf.tidy(() => rect.rectifyGrid(out.embedding, lp, 4 * 96, 4 * 96).dataSync()), { warmup: 1, runs: 3 });
  tf.dispose([x, ...feats, out.logits, out.embedding, lp]);
  model.dispose();
  rect.dispose();
  return { head, rectify, rectify4x };
}

export async function benchAblation(defaultVariants: VariantName[] = ['source-only', 'baseline', 'inr', 'ir2f', 'oracle'], title = 'The ablation ladder'): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(3), allowPositionals: true,
    options: { seeds: { type: 'string', default: '3' }, steps: { type: 'string' }, variants: { type: 'string' } },
  });
  const variants = (values.variants ? values.variants.split(',') : defaultVariants) as VariantName[];
  for (const v of variants) if (!(v in VARIANTS)) throw new Error(`unknown variant '${v}'; known: ${Object.keys(VARIANTS).join(', ')}`);
  const seeds = Array.from({ length: Number(values.seeds) }, (_, i) => i);
  const backend = await initBackend('wasm');
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'ir2f-bench-ablation-'));
  const lines: string[] = [];
  if (variants.some((v) => VARIANTS[v].inr)) {
    const c = cost();
    lines.push(`Cost (mit-tiny-daformer, batch 2, 96² labels, ${backend.name}): decode head forward ${c.head.toFixed(1)} ms; ` +
      `rectifier at label resolution ${c.rectify.toFixed(1)} ms (${(c.rectify / c.head).toFixed(2)}× the head); ` +
      `at 4× (384²) ${c.rectify4x.toFixed(1)} ms (${(c.rectify4x / c.head).toFixed(2)}×).`, '');
    console.log(lines[0]);
  }
  const rows: string[] = ['| benchmark | variant | target mIoU | boundary mIoU | ECE of r | ECE of teacher max-prob | ms/iteration |', '|---|---|---|---|---|---|---|'];
  for (const name of EMBEDDED_BENCHMARKS) {
    const bench = await ensureBenchmark(name);
    for (const variant of variants) {
      const spec = VARIANTS[variant];
      const metrics: RunMetrics[] = [];
      const ms: number[] = [];
      for (const seed of seeds) {
        const raw = await loadRawConfig(name);
        const config = resolveConfig(raw, {
          steps: values.steps ? Number(values.steps) : undefined,
          set: [`train.seed=${seed}`, ...spec.set],
        });
        const r = await runTraining(config, { workDir: path.join(work, `${name}-${variant}-${seed}`), quiet: true });
        const m = await measure(r.checkpoint!, bench, spec.inr, variant === 'baseline' || spec.inr);
        metrics.push(m);
        ms.push(r.msPerStep);
        console.log(`${name} ${variant} seed ${seed}: mIoU ${(m.miou * 100).toFixed(1)}, boundary ${(m.boundaryMiou * 100).toFixed(1)}` +
          `${m.eceR != null ? `, ECE r ${m.eceR.toFixed(3)}` : ''}${m.eceTeacher != null ? `, ECE teacher ${m.eceTeacher.toFixed(3)}` : ''}, ${r.msPerStep.toFixed(0)} ms/it`);
      }
      const ece = metrics.every((m) => m.eceR != null) ? metrics.map((m) => m.eceR!) : undefined;
      rows.push(`| ${name} | ${spec.label} | ${meanStd(metrics.map((m) => m.miou))} | ` +
        `${meanStd(metrics.map((m) => m.boundaryMiou))} | ${ece ? `${(ece.reduce((a, b) => a + b, 0) / ece.length).toFixed(3)}` : '—'} | ` +
        `${metrics.every((m) => m.eceTeacher != null) ? (metrics.reduce((a, m) => a + m.eceTeacher!, 0) / metrics.length).toFixed(3) : '—'} | ` +
        `${(ms.reduce((a, b) => a + b, 0) / ms.length).toFixed(0)} |`);
    }
  }
  lines.push(...rows);
  console.log(`\n${rows.join('\n')}`);
  const section = `\n## ${title} (${new Date().toISOString().slice(0, 10)})\n\n` +
    `\`npm run bench -- ${process.argv.slice(2).join(' ')}\` (variants ${variants.join(', ')}; seeds ${seeds.join(', ')}; embedded presets; mean ± std over seeds; mIoU over the benchmark's 8 classes ` +
    `on 100 target val images; boundary = labelled pixels within 2 px of another class).\n\n${lines.join('\n')}\n`;
  const file = new URL('./RESULTS.md', import.meta.url);
  const old = await fs.readFile(file, 'utf8').catch(() => '# Benchmark results\n');
  await fs.writeFile(file, old + section);
  await fs.rm(work, { recursive: true, force: true });
}

export async function benchRectifier(): Promise<void> {
  await benchAblation(['baseline', 'inr'], 'INR rectifier vs baseline');
}
