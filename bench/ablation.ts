/**
 * `npm run bench -- ablation`: the ablation ladder of DESIGN §5.3 on both embedded benchmarks, 3 seeds each
 * (the embedded presets, 400 steps), each rung one config change (a plugin or the mode): target mIoU, mIoU on
 * boundary pixels (within 2 px of a class edge), the calibration of r against pseudo-label correctness on
 * target val (expected calibration error, 10 bins; the teacher's max probability for reference). Writes a
 * section of bench/RESULTS.md (the rectifier's cost: `npm run bench -- rectifier-cost`).
 *
 *   npm run bench -- ablation [--variants source-only,baseline,inr,ir2f,oracle] [--benchmarks synth2real,day2night]
 *                             [--seeds 3] [--steps 400] [--fresh] [--table-only] [--reverse]
 *   (each run is stored in bench/runs/. One process trains each UDA run on two replicas, one core each; to
 *   spread runs over processes instead, start one per core with IR2F_WORKERS=1 IR2F_WASM_THREADS=1 and
 *   different --variants, --benchmarks or --reverse)
 *   npm run bench -- rectifier        (= --variants baseline,inr)
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { boundaryMask, ConfusionMatrix, expectedCalibrationError, inferLogits, initBackend, writeAtomic } from '@ir2f/core';
import { loadRawConfig, replicaPlan, loadTrained, loadTrainedRectifier, resolveConfig, runTraining } from '@ir2f/cli';
import { EMBEDDED_BENCHMARKS, ensureBenchmark, loadSample, normalize, scanDataset } from '@ir2f/datasets';
import { readback, writeSection } from './timing.js';

const INR_PLUGIN = { package: '@ir2f/plugin-inr-rectifier', options: {} };
const RMM_PLUGIN = { package: '@ir2f/plugin-rmm', options: {} };

/** The rungs of DESIGN §5.3, each a change of mode or plugins on the embedded preset. */
export const VARIANTS = {
  'source-only': { label: 'source-only', set: ['train.mode="source-only"'], inr: false },
  baseline: { label: 'DAFormer-style baseline', set: [], inr: false },
  inr: { label: '+ INR rectifier', set: [`plugins=${JSON.stringify([INR_PLUGIN])}`], inr: true },
  ir2f: { label: '+ INR + RMM (IR2F)', set: [`plugins=${JSON.stringify([INR_PLUGIN, RMM_PLUGIN])}`], inr: true },
  oracle: { label: 'target oracle', set: ['train.mode="target-oracle"'], inr: false },
  // not rungs: options tried when the INR and IR2F rungs fell below the baseline
  'inr-qwarm': {
    label: '+ INR rectifier, q for the first 200 steps (option)',
    set: [`plugins=${JSON.stringify([{ ...INR_PLUGIN, options: { qWarmupSteps: 200 } }])}`], inr: true,
  },
  'ir2f-qwarm': {
    label: '+ INR + RMM, q as r for the first 200 steps (option)',
    set: [`plugins=${JSON.stringify([{ ...INR_PLUGIN, options: { qWarmupSteps: 200 } }, RMM_PLUGIN])}`], inr: true,
  },
  'ir2f-rest': {
    label: '+ INR + RMM, teacher-rest noise (option)',
    set: [`plugins=${JSON.stringify([INR_PLUGIN, { ...RMM_PLUGIN, options: { noise: 'teacher-rest' } }])}`], inr: true,
  },
  'ir2f-lambda0.1': {
    label: '+ INR + RMM, λ_RMM = 0.1 (option)',
    set: [`plugins=${JSON.stringify([INR_PLUGIN, { ...RMM_PLUGIN, options: { lambda: 0.1 } }])}`], inr: true,
  },
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
    // typed arrays are read outside tf.tidy: tidy walks whatever its callback returns, element by element
    const pred = readback(tf.tidy(() => tf.argMax(inferLogits(student, x), 3)));
    all.update(pred, label);
    const mask = boundaryMask(label, width, height);
    edge.update(pred, Uint8Array.from(label, (v, i) => (mask[i] ? v : 255)));
    // the teacher labels the image as in training; r rates those pseudo-labels
    const [tPred, tConf, r] = tf.tidy((): (tf.Tensor | undefined)[] => {
      const out = teacher.forward(x);
      const probs = tf.softmax(inferLogits(teacher, x));
      const rMap = rect ? rect.rectifier.rectifyGrid!(out.embedding, tf.logSoftmax(out.logits) as tf.Tensor4D, height, width) : undefined;
      return [tf.argMax(probs, 3), tf.max(probs, 3), rMap];
    }).map((t) => (t ? readback(t) : undefined));
    label.forEach((v, i) => {
      if (v === 255) return;
      corrects.push(tPred![i] === v ? 1 : 0);
      confs.push(tConf![i]);
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

/** One finished run, stored as bench/runs/<benchmark>-<variant>-<seed>.json so that runs can be spread
 *  over processes (one per core) and over sessions, and the table is rendered from all of them. */
interface RunRecord extends RunMetrics {
  benchmark: string;
  variant: VariantName;
  seed: number;
  steps: number;
  msPerStep: number;
  commit: string;
  date: string;
}

const RUNS_DIR = new URL('./runs/', import.meta.url);
const runFile = (b: string, v: string, s: number) => new URL(`${b}-${v}-${s}.json`, RUNS_DIR);

async function readRun(b: string, v: string, s: number): Promise<RunRecord | undefined> {
  const text = await fs.readFile(runFile(b, v, s), 'utf8').catch(() => undefined);
  return text ? (JSON.parse(text) as RunRecord) : undefined;
}

function gitCommit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'packages'], { encoding: 'utf8' }).trim();
    return dirty ? `${head}+dirty` : head;
  } catch {
    return 'unknown';
  }
}

export async function benchAblation(defaultVariants: VariantName[] = ['source-only', 'baseline', 'inr', 'ir2f', 'oracle'], title = 'The ablation ladder'): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(3), allowPositionals: true,
    options: {
      seeds: { type: 'string', default: '3' }, steps: { type: 'string' }, variants: { type: 'string' },
      benchmarks: { type: 'string' }, fresh: { type: 'boolean', default: false }, 'table-only': { type: 'boolean', default: false },
      // a second process started later takes the seeds from the other end, so the two rarely meet
      reverse: { type: 'boolean', default: false },
    },
  });
  const variants = (values.variants ? values.variants.split(',') : defaultVariants) as VariantName[];
  for (const v of variants) if (!(v in VARIANTS)) throw new Error(`unknown variant '${v}'; known: ${Object.keys(VARIANTS).join(', ')}`);
  const benchmarks = (values.benchmarks ? values.benchmarks.split(',') : [...EMBEDDED_BENCHMARKS]) as (typeof EMBEDDED_BENCHMARKS)[number][];
  for (const b of benchmarks) {
    if (!(EMBEDDED_BENCHMARKS as readonly string[]).includes(b)) throw new Error(`unknown benchmark '${b}'; known: ${EMBEDDED_BENCHMARKS.join(', ')}`);
  }
  const seeds = Array.from({ length: Number(values.seeds) }, (_, i) => i);
  const steps = values.steps ? Number(values.steps) : undefined;
  // started for the UDA runs' replicas (the wasm module's threads are fixed once it has started)
  await initBackend('wasm', { wasmThreads: replicaPlan('uda', 'wasm').threads });
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'ir2f-bench-ablation-'));
  await fs.mkdir(RUNS_DIR, { recursive: true });
  const commit = gitCommit();
  for (const name of values['table-only'] ? [] : benchmarks) {
    const bench = await ensureBenchmark(name);
    for (const variant of variants) {
      const spec = VARIANTS[variant];
      for (const seed of values.reverse ? [...seeds].reverse() : seeds) {
        const raw = await loadRawConfig(name);
        const config = resolveConfig(raw, { steps, set: [`train.seed=${seed}`, ...spec.set] });
        const done = await readRun(name, variant, seed);
        if (done && !values.fresh && done.steps === config.train.steps) {
          console.log(`${name} ${variant} seed ${seed}: stored (${done.commit}, ${done.date}); --fresh to rerun`);
          continue;
        }
        const r = await runTraining(config, { workDir: path.join(work, `${name}-${variant}-${seed}`), quiet: true });
        const m = await measure(r.checkpoint!, bench, spec.inr, variant === 'baseline' || spec.inr);
        const record: RunRecord = {
          benchmark: name, variant, seed, steps: config.train.steps, msPerStep: r.msPerStep, commit,
          date: new Date().toISOString().slice(0, 10), ...m,
        };
        await writeAtomic(fileURLToPath(runFile(name, variant, seed)), new TextEncoder().encode(`${JSON.stringify(record, null, 2)}\n`));
        console.log(`${name} ${variant} seed ${seed}: mIoU ${(m.miou * 100).toFixed(1)}, boundary ${(m.boundaryMiou * 100).toFixed(1)}` +
          `${m.eceR != null ? `, ECE r ${m.eceR.toFixed(3)}` : ''}${m.eceTeacher != null ? `, ECE teacher ${m.eceTeacher.toFixed(3)}` : ''}, ${r.msPerStep.toFixed(0)} ms/it`);
        await fs.rm(path.join(work, `${name}-${variant}-${seed}`), { recursive: true, force: true });
      }
    }
  }
  await fs.rm(work, { recursive: true, force: true });

  // the table covers every stored run of the chosen variants and seeds, whichever process made it
  const lines: string[] = [];
  const rows: string[] = ['| benchmark | variant | seeds | target mIoU | boundary mIoU | ECE of r | ECE of teacher max-prob | ms/iteration |', '|---|---|---|---|---|---|---|---|'];
  const commits = new Set<string>();
  for (const name of benchmarks) {
    for (const variant of variants) {
      const runs = (await Promise.all(seeds.map((s) => readRun(name, variant, s)))).filter((r): r is RunRecord => !!r);
      if (!runs.length) continue;
      runs.forEach((r) => commits.add(`${r.commit} (${r.date})`));
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const ece = (pick: (r: RunRecord) => number | undefined) => (runs.every((r) => pick(r) != null) ? mean(runs.map((r) => pick(r)!)).toFixed(3) : '—');
      rows.push(`| ${name} | ${VARIANTS[variant].label} | ${runs.map((r) => r.seed).join(',')} | ${meanStd(runs.map((r) => r.miou))} | ` +
        `${meanStd(runs.map((r) => r.boundaryMiou))} | ${ece((r) => r.eceR)} | ${ece((r) => r.eceTeacher)} | ${mean(runs.map((r) => r.msPerStep)).toFixed(0)} |`);
    }
  }
  lines.push(...rows);
  console.log(`\n${rows.join('\n')}`);
  await writeSection(title,
    `\`npm run bench -- ${process.argv.slice(2).join(' ')}\` (variants ${variants.join(', ')}; seeds ${seeds.join(', ')}; embedded presets; ` +
    `mean ± std over seeds; mIoU over the benchmark's 8 classes on 100 target val images; boundary = labelled pixels within 2 px of ` +
    `another class). Each run is stored in bench/runs/ and reused until \`--fresh\`; code versions: ${[...commits].join(', ')}.\n\n${lines.join('\n')}`);
}

export async function benchRectifier(): Promise<void> {
  await benchAblation(['baseline', 'inr'], 'INR rectifier vs baseline');
}
