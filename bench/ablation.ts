/**
 * `npm run bench -- ablation`: the ablation ladder of DESIGN §5.3 (method v2) on both embedded benchmarks with
 * paired seeds (the embedded presets, 400 steps; default seeds 0–4), each rung one config change (a plugin, the
 * core rectifier or the mode): target mIoU, mIoU on boundary pixels (within 2 px of a class edge), and the
 * calibration (expected calibration error, 10 bins) against the teacher's pseudo-label correctness on target val
 * of r, of the RMM posterior γ and of the teacher's max-probability. Then each variant's per-seed difference to
 * the baseline at the same seed: mean ± std and t = mean / (std / √n); a variant *wins* when the mean is
 * positive with t ≥ 2 on both benchmarks. Writes a section of bench/RESULTS.md.
 *
 *   npm run bench -- ablation [--variants baseline,inr,control,ir2f,...] [--benchmarks synth2real,day2night]
 *                             [--seeds 5] [--steps 400] [--fresh] [--table-only] [--reverse]
 *   (each run is stored in bench/runs/ and reused until --fresh; runs of the v1 method, sessions 2–5, are kept
 *   apart in bench/runs/v1/. One process trains each UDA run on two replicas, one core each; to spread runs over
 *   processes instead, start one per core with IR2F_WORKERS=1 IR2F_WASM_THREADS=1 and different --variants,
 *   --benchmarks or --reverse)
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
import { EMBEDDED_BENCHMARKS, ensureBenchmark, loadSample, normalize, scanDataset, type EmbeddedBenchmarkName } from '@ir2f/datasets';
import { logLoss, posterior, type MixtureFit } from '@ir2f/plugin-rmm';
import { readback, writeSection } from './timing.js';

const INR = '@ir2f/plugin-inr-rectifier';
const RMM = '@ir2f/plugin-rmm';
const plugins = (...specs: [string, Record<string, unknown>?][]) => `plugins=${JSON.stringify(specs.map(([p, o]) => ({ package: p, options: o ?? {} })))}`;
const CONFIDENCE = 'rectifier.type="confidence"';

/** How a variant's r is read back on val for its ECE: the INR's map, the teacher's max-probability, or none. */
type Prior = 'inr' | 'confidence' | undefined;

interface Variant {
  label: string;
  set: string[];
  /** r for the ECE of r and of γ. */
  prior: Prior;
  /** The RMM v2 loss-mixture: γ's ECE from its fit in the checkpoint. */
  gamma?: boolean;
}

/** The rungs of DESIGN §5.3 (v2 defaults), then the options compared with them. */
export const VARIANTS: Record<string, Variant> = {
  'source-only': { label: 'source-only', set: ['train.mode="source-only"'], prior: undefined },
  baseline: { label: 'DAFormer-style baseline', set: [], prior: undefined },
  inr: { label: '+ INR rectifier (v2: redistribute)', set: [plugins([INR])], prior: 'inr' },
  control: {
    label: 'control: RMM v2 γ-weighted, r = teacher max-prob, no INR', set: [CONFIDENCE, plugins([RMM, { studentWeight: 'posterior' }])], prior: 'confidence', gamma: true,
  },
  ir2f: { label: '+ INR + RMM v2, γ-weighted student (§5.2 as written)', set: [plugins([INR], [RMM, { studentWeight: 'posterior' }])], prior: 'inr', gamma: true },
  'ir2f-prior': {
    label: '+ INR + RMM v2, student at the INR\'s weight, the mixture trains ψ (IR2F default)', set: [plugins([INR], [RMM, { studentWeight: 'rectifier' }])], prior: 'inr', gamma: true,
  },
  oracle: { label: 'target oracle', set: ['train.mode="target-oracle"'], prior: undefined },
  // options (each one config value away from a rung)
  confidence: { label: 'r = teacher max-prob, redistribute, no RMM (option)', set: [CONFIDENCE], prior: 'confidence' },
  'inr-shift': { label: '+ INR, calibration on a shifted source view (option)', set: [plugins([INR, { calibrationView: 'shifted' }])], prior: 'inr' },
  'inr-replace': { label: '+ INR, r replaces q (v1 weighting, option)', set: [plugins([INR, { weighting: 'replace' }])], prior: 'inr' },
  'ir2f-shift': {
    label: '+ INR (shifted calibration) + RMM v2 (option)', set: [plugins([INR, { calibrationView: 'shifted' }], [RMM, { studentWeight: 'posterior' }])], prior: 'inr', gamma: true,
  },
  'ir2f-prior-shift': {
    label: 'IR2F default, INR calibrated on a shifted source view (§5.1.8, option)',
    set: [plugins([INR, { calibrationView: 'shifted' }], [RMM, { studentWeight: 'rectifier' }])], prior: 'inr', gamma: true,
  },
  'ir2f-bootstrap': {
    label: '+ INR + RMM v2, bootstrapped soft target (option)', set: [plugins([INR], [RMM, { studentWeight: 'posterior', target: 'bootstrap' }])], prior: 'inr', gamma: true,
  },
  'control-bootstrap': {
    label: 'control, bootstrapped soft target (option)', set: [CONFIDENCE, plugins([RMM, { studentWeight: 'posterior', target: 'bootstrap' }])], prior: 'confidence', gamma: true,
  },
  'ir2f-v1': { label: '+ INR + RMM v1 label mixture (option)', set: [plugins([INR], [RMM, { formulation: 'label-mixture' }])], prior: 'inr' },
};
export type VariantName = keyof typeof VARIANTS;

interface RunMetrics {
  miou: number;
  boundaryMiou: number;
  eceR?: number;
  eceGamma?: number;
  eceTeacher?: number;
}

/** The loss-mixture fit a checkpoint holds (RMM v2's `loss.state`: [fitted, separated, μ_c, σ_c, μ_n, σ_n]). */
function checkpointFit(ckpt: { tensors: Map<string, { data: Uint8Array }>; file: string }): MixtureFit {
  const t = ckpt.tensors.get('loss.state');
  if (!t) throw new Error(`${ckpt.file} holds no loss state: not an RMM v2 run`);
  const s = new Float32Array(t.data.slice().buffer);
  return { clean: { mean: s[2], std: s[3] }, noisy: { mean: s[4], std: s[5] } };
}

async function measure(
  checkpoint: string, valRoot: ReturnType<typeof ensureBenchmark> extends Promise<infer B> ? B : never, variant: Variant, selfTraining: boolean,
): Promise<RunMetrics> {
  const val = await scanDataset(valRoot.targetVal);
  const { model: student, config, checkpoint: ckpt } = await loadTrained(checkpoint, 'student');
  const { model: teacher } = await loadTrained(ckpt, 'teacher');
  const rect = variant.prior === 'inr' ? await loadTrainedRectifier(ckpt, config, teacher) : undefined;
  // γ on val: the run's final fit, the student's loss on the teacher's pseudo-label, r as the prior (the
  // training-time γ is on mixed, augmented crops with the student in training mode: this is its clean-image twin)
  const fit = variant.gamma ? checkpointFit(ckpt) : undefined;
  const gammas: number[] = [];
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
    const [tPred, tConf, rInr, pStudent] = tf.tidy((): (tf.Tensor | undefined)[] => {
      const out = teacher.forward(x);
      const probs = tf.softmax(inferLogits(teacher, x));
      const rMap = rect ? rect.rectifier.rectifyGrid!(out.embedding, tf.logSoftmax(out.logits) as tf.Tensor4D, height, width) : undefined;
      const yHat = tf.argMax(probs, 3);
      // the student's probability of the teacher's pseudo-label (ℓ = −log of it)
      const pS = fit ? tf.sum(tf.mul(tf.softmax(inferLogits(student, x)), tf.oneHot(yHat, K)), 3) : undefined;
      return [yHat, tf.max(probs, 3), rMap, pS];
    }).map((t) => (t ? readback(t) : undefined));
    const r = variant.prior === 'confidence' ? tConf : rInr;
    label.forEach((v, i) => {
      if (v === 255) return;
      corrects.push(tPred![i] === v ? 1 : 0);
      confs.push(tConf![i]);
      if (r) rs.push(r[i]);
      if (fit && r) gammas.push(posterior(logLoss(-Math.log(Math.max(pStudent![i], 1e-30))), r[i], fit));
    });
    x.dispose();
  }
  student.dispose();
  teacher.dispose();
  await rect?.dispose();
  return {
    miou: all.miou(valRoot.classes), boundaryMiou: edge.miou(valRoot.classes),
    eceR: variant.prior ? expectedCalibrationError(rs, corrects) : undefined,
    eceGamma: fit ? expectedCalibrationError(gammas, corrects) : undefined,
    eceTeacher: selfTraining ? expectedCalibrationError(confs, corrects) : undefined,
  };
}

const meanStd = (xs: number[]) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
  return xs.length > 1 ? `${(m * 100).toFixed(1)} ± ${(sd * 100).toFixed(1)}` : `${(m * 100).toFixed(1)} (1 seed)`;
};

/**
 * The version of the embedded small preset (packages/cli/src/presets.ts) the stored runs were trained at; a
 * change to it re-bases every self-training run. 1: τ 0.968, EMA bound 0.99 (sessions 6–8; those runs are kept
 * in bench/runs/preset-v1/). 2: τ 0.9, EMA bound 0.95 (session 9, chosen across the family).
 */
export const PRESET_VERSION = 2;
/** Source-only and oracle runs read neither τ nor the EMA teacher: they hold at every preset version. */
const selfTrains = (recordedVariant: string) => !['source-only', 'oracle'].includes(recordedVariant.split(/[+@]/)[0]);

/** One finished run, stored as bench/runs/<benchmark>-<variant>-<seed>.json so that runs can be spread
 *  over processes (one per core) and over sessions, and the table is rendered from all of them. */
export interface RunRecord extends RunMetrics {
  /** DESIGN §5's method version the run's defaults follow (runs without it are v1, kept in bench/runs/v1/). */
  method: 2;
  /** PRESET_VERSION at the time of the run (absent: 1). */
  preset?: number;
  /** How the record came to be, where not by `runStored` at its preset (e.g. a candidate that became the preset). */
  note?: string;
  benchmark: string;
  variant: string;
  seed: number;
  steps: number;
  /** [step, student mIoU] at each evaluation, for runs made for a curve. */
  curve?: [number, number][];
  msPerStep: number;
  commit: string;
  date: string;
}

const RUNS_DIR = new URL('./runs/', import.meta.url);
const runFile = (b: string, v: string, s: number, dir = RUNS_DIR) => new URL(`${b}-${v}-${s}.json`, dir);

/**
 * A stored run, or nothing when there is none or it self-trained at another preset version (stale: τ and the
 * EMA bound changed what it measures). `dir`: the folder of records (a URL ending in '/'), bench/runs/ by default.
 */
export async function readRun(b: string, v: string, s: number, dir = RUNS_DIR): Promise<RunRecord | undefined> {
  const text = await fs.readFile(runFile(b, v, s, dir), 'utf8').catch(() => undefined);
  const record = text ? (JSON.parse(text) as RunRecord) : undefined;
  return record && selfTrains(v) && (record.preset ?? 1) !== PRESET_VERSION ? undefined : record;
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

/** Mean, sample std and t = mean / (std / √n) of paired differences. */
export function pairedStats(diffs: number[]): { mean: number; std: number; t: number; n: number } {
  const n = diffs.length;
  const mean = diffs.reduce((a, b) => a + b, 0) / n;
  const std = Math.sqrt(diffs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, n - 1));
  return { mean, std, n, t: n > 1 ? (std > 0 ? mean / (std / Math.sqrt(n)) : Math.sign(mean) * Infinity) : NaN };
}

/** The student's [step, mIoU] at each evaluation of a run, from its events.jsonl. */
async function studentCurve(events: string): Promise<[number, number][]> {
  const lines = (await fs.readFile(events, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; step: number; model?: string; miou?: number });
  return lines.filter((e) => e.type === 'eval' && e.model === 'student' && e.miou != null).map((e) => [e.step, e.miou!]);
}

/**
 * Train and measure each (seed, benchmark, variant) not yet stored in bench/runs/, seed by seed so that an
 * interrupted ladder still has whole pairs; `reverse` takes the seeds from the other end (a second process).
 */
export async function runStored(o: {
  benchmarks: readonly EmbeddedBenchmarkName[]; variants: readonly VariantName[]; seeds: readonly number[]; steps?: number; fresh?: boolean; reverse?: boolean;
  /** Extra `--set`s for every run (e.g. a step count for a curve). */
  set?: string[];
  /** Record name of the variant (default: the variant). */
  recordAs?: (variant: VariantName) => string;
  /** Keep the student's mIoU at each evaluation (`curve` in the record). */
  curve?: boolean;
}): Promise<void> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'ir2f-bench-ablation-'));
  await fs.mkdir(RUNS_DIR, { recursive: true });
  const commit = gitCommit();
  // started for the UDA runs' replicas (the wasm module's threads are fixed once it has started)
  await initBackend('wasm', { wasmThreads: replicaPlan('uda', 'wasm').threads });
  try {
    for (const seed of o.reverse ? [...o.seeds].reverse() : o.seeds) {
      for (const name of o.benchmarks) {
        const bench = await ensureBenchmark(name);
        for (const variant of o.variants) {
          const spec = VARIANTS[variant];
          const as = o.recordAs?.(variant) ?? variant;
          const raw = await loadRawConfig(name);
          const config = resolveConfig(raw, { steps: o.steps, set: [`train.seed=${seed}`, ...spec.set, ...(o.set ?? [])] });
          const done = await readRun(name, as, seed);
          if (done && !o.fresh && done.steps === config.train.steps) {
            console.log(`${name} ${as} seed ${seed}: stored (${done.commit}, ${done.date}); --fresh to rerun`);
            continue;
          }
          const dir = path.join(work, `${name}-${as}-${seed}`);
          const r = await runTraining(config, { workDir: dir, quiet: true });
          // a run stopped by a signal is not a result: store nothing, and stop the bench as the user asked
          if (r.reason !== 'completed') throw new Error(`${name} ${as} seed ${seed}: interrupted at step ${r.step}; nothing stored`);
          const m = await measure(r.checkpoint!, bench, spec, selfTrains(variant));
          const record: RunRecord = {
            method: 2, preset: PRESET_VERSION, benchmark: name, variant: as, seed, steps: config.train.steps, msPerStep: r.msPerStep, commit,
            date: new Date().toISOString().slice(0, 10), ...m,
            ...(o.curve ? { curve: await studentCurve(r.files.events) } : {}),
          };
          await writeAtomic(fileURLToPath(runFile(name, as, seed)), new TextEncoder().encode(`${JSON.stringify(record, null, 2)}\n`));
          const ece = (k: string, v?: number) => (v != null ? `, ECE ${k} ${v.toFixed(3)}` : '');
          console.log(`${name} ${as} seed ${seed}: mIoU ${(m.miou * 100).toFixed(1)}, boundary ${(m.boundaryMiou * 100).toFixed(1)}` +
            `${ece('r', m.eceR)}${ece('γ', m.eceGamma)}${ece('teacher', m.eceTeacher)}, ${r.msPerStep.toFixed(0)} ms/it`);
          await fs.rm(dir, { recursive: true, force: true });
        }
      }
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

export async function benchAblation(
  defaultVariants: VariantName[] = ['source-only', 'baseline', 'inr', 'control', 'ir2f', 'ir2f-prior', 'oracle'], title = `The ablation ladder (method v2, preset v${PRESET_VERSION})`,
): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(3), allowPositionals: true,
    options: {
      seeds: { type: 'string', default: '5' }, steps: { type: 'string' }, variants: { type: 'string' },
      benchmarks: { type: 'string' }, fresh: { type: 'boolean', default: false }, 'table-only': { type: 'boolean', default: false },
      // a second process started later takes the seeds from the other end, so the two rarely meet
      reverse: { type: 'boolean', default: false },
    },
  });
  const variants = (values.variants ? values.variants.split(',') : defaultVariants);
  for (const v of variants) if (!(v in VARIANTS)) throw new Error(`unknown variant '${v}'; known: ${Object.keys(VARIANTS).join(', ')}`);
  // the ladder's two benchmarks by default (the family's members by name, or through `bench family`)
  const benchmarks = (values.benchmarks ? values.benchmarks.split(',') : ['synth2real', 'day2night']) as (typeof EMBEDDED_BENCHMARKS)[number][];
  for (const b of benchmarks) {
    if (!(EMBEDDED_BENCHMARKS as readonly string[]).includes(b)) throw new Error(`unknown benchmark '${b}'; known: ${EMBEDDED_BENCHMARKS.join(', ')}`);
  }
  const seeds = Array.from({ length: Number(values.seeds) }, (_, i) => i);
  const steps = values.steps ? Number(values.steps) : undefined;
  if (!values['table-only']) await runStored({ benchmarks, variants, seeds, steps, fresh: values.fresh, reverse: values.reverse });
  // the tables cover every stored run of the chosen variants and seeds, whichever process made it
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const rows: string[] = [
    '| benchmark | variant | seeds | target mIoU | boundary mIoU | ECE of r | ECE of γ | ECE of teacher max-prob | ms/iteration |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  const paired: string[] = [
    '| benchmark | variant − baseline | paired seeds | Δ mIoU (mean ± std) | t | Δ boundary mIoU (mean ± std) | t | ms/it (variant / baseline) |',
    '|---|---|---|---|---|---|---|---|',
  ];
  // the rule of §5.3, for the rungs and options (not the bounds): Δ > 0 with t ≥ 2, per benchmark
  const wins = new Map<string, Map<string, boolean>>();
  const commits = new Set<string>();
  for (const name of benchmarks) {
    const base = new Map((await Promise.all(seeds.map((s) => readRun(name, 'baseline', s)))).filter((r): r is RunRecord => !!r).map((r) => [r.seed, r]));
    for (const variant of variants) {
      const runs = (await Promise.all(seeds.map((s) => readRun(name, variant, s)))).filter((r): r is RunRecord => !!r);
      if (!runs.length) continue;
      runs.forEach((r) => commits.add(`${r.commit} (${r.date})`));
      const ece = (pick: (r: RunRecord) => number | undefined) => (runs.every((r) => pick(r) != null) ? mean(runs.map((r) => pick(r)!)).toFixed(3) : '—');
      rows.push(`| ${name} | ${VARIANTS[variant].label} | ${runs.map((r) => r.seed).join(',')} | ${meanStd(runs.map((r) => r.miou))} | ` +
        `${meanStd(runs.map((r) => r.boundaryMiou))} | ${ece((r) => r.eceR)} | ${ece((r) => r.eceGamma)} | ${ece((r) => r.eceTeacher)} | ` +
        `${mean(runs.map((r) => r.msPerStep)).toFixed(0)} |`);
      const pairs = runs.filter((r) => base.has(r.seed));
      if (variant === 'baseline' || pairs.length < 2) continue;
      const d = pairedStats(pairs.map((r) => 100 * (r.miou - base.get(r.seed)!.miou)));
      const db = pairedStats(pairs.map((r) => 100 * (r.boundaryMiou - base.get(r.seed)!.boundaryMiou)));
      const baseMs = mean(pairs.map((r) => base.get(r.seed)!.msPerStep));
      paired.push(`| ${name} | ${VARIANTS[variant].label} | ${pairs.map((r) => r.seed).join(',')} | ${d.mean >= 0 ? '+' : ''}${d.mean.toFixed(2)} ± ${d.std.toFixed(2)} | ` +
        `${d.t.toFixed(2)} | ${db.mean >= 0 ? '+' : ''}${db.mean.toFixed(2)} ± ${db.std.toFixed(2)} | ${db.t.toFixed(2)} | ` +
        `${mean(pairs.map((r) => r.msPerStep)).toFixed(0)} / ${baseMs.toFixed(0)} |`);
      if (selfTrains(variant)) wins.set(variant, (wins.get(variant) ?? new Map()).set(name, d.mean > 0 && d.t >= 2));
    }
  }
  const verdict = [...wins].map(([v, w]) => `${VARIANTS[v].label}: ${benchmarks.every((b) => w.get(b)) ? 'wins' : 'does not win'}` +
    ` (${benchmarks.map((b) => `${b} ${w.has(b) ? (w.get(b) ? 'yes' : 'no') : 'not run'}`).join(', ')})`);
  console.log(`\n${rows.join('\n')}\n\n${paired.join('\n')}\n\n${verdict.join('\n')}`);
  await writeSection(title,
    `\`npm run bench -- ${process.argv.slice(2).join(' ')}\` (variants ${variants.join(', ')}; seeds ${seeds.join(', ')}; embedded presets; ` +
    `mean ± std over seeds; mIoU over the benchmark's 8 classes on 100 target val images; boundary = labelled pixels within 2 px of ` +
    `another class; ECE against the correctness of the teacher's pseudo-label on target val, γ from the run's final loss-mixture fit). ` +
    `Each run is stored in bench/runs/ and reused until \`--fresh\`; code versions: ${[...commits].join(', ')}.\n\n${rows.join('\n')}\n\n` +
    `Paired differences to the baseline at the same seed (a variant wins when Δ > 0 with t ≥ 2 on both benchmarks):\n\n${paired.join('\n')}\n\n` +
    `${verdict.map((v) => `- ${v}`).join('\n')}`);
}

export async function benchRectifier(): Promise<void> {
  await benchAblation(['baseline', 'inr'], `INR rectifier vs baseline (preset v${PRESET_VERSION})`);
}
