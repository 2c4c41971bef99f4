/**
 * The embedded domain-shift benchmarks, written to disk in the real dataset layouts so that the same readers
 * serve them and the real datasets:
 *
 * - `synth2real`: source `gta/` (synthetic style, GTA5 layout with Cityscapes-id palettised labels) →
 *   target `cityscapes/` (real style: other textures and colours, blur, noise, JPEG, shifted geometry priors).
 * - `day2night`: source `cityscapes/` (real style, day) → target `dark_zurich/` (the same kind of scenes at night).
 *
 * Each has a labelled source train split, an unlabelled target train split (its labels are written too, for
 * the target-oracle bound only; UDA never reads them) and a labelled target val split. Generation is
 * deterministic in the seed, writes into a temporary folder and renames it into place when complete.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Ir2fError, Rng } from '@ir2f/core';
import { writeGrayPng, writeIndexedPng, writeRgbPng } from '../image-io.js';
import {
  CITYSCAPES_CLASSES, CITYSCAPES_LABELS, CITYSCAPES_TRAIN_IDS, IGNORE_INDEX, type LabelSpec,
} from '../label-specs.js';
import { cityscapes, darkZurich, gta5, type DatasetLayout } from '../layouts.js';
import { renderScene, type DomainStyleName } from './render.js';
import { EMBEDDED_CLASS_IDS, layoutScene, SOURCE_PRIORS, TARGET_PRIORS, type GeometryPriors } from './street-scene.js';

export const EMBEDDED_BENCHMARKS = ['synth2real', 'day2night'] as const;
export type EmbeddedBenchmarkName = (typeof EMBEDDED_BENCHMARKS)[number];

/** Bumped when generation changes, so cached copies are regenerated. */
export const EMBEDDED_VERSION = 1;

export interface MakeOptions {
  seed?: number;
  /** [width, height]; default [128, 96]. */
  size?: [number, number];
  counts?: { source?: number; targetTrain?: number; targetVal?: number };
  /** Replace an existing folder. */
  overwrite?: boolean;
}

export interface EmbeddedBenchmark {
  name: EmbeddedBenchmarkName;
  root: string;
  source: DatasetLayout;
  targetTrain: DatasetLayout;
  targetVal: DatasetLayout;
  /** Train ids present in the benchmark; evaluation averages over these. */
  classes: readonly number[];
  /** Cityscapes train ids restricted to the benchmark's classes, for evaluation. */
  evalSpec: LabelSpec;
}

interface DomainPlan {
  priors: GeometryPriors;
  style: DomainStyleName;
}

const PLANS: Record<EmbeddedBenchmarkName, { source: DomainPlan; target: DomainPlan }> = {
  synth2real: { source: { priors: SOURCE_PRIORS, style: 'synthetic' }, target: { priors: TARGET_PRIORS, style: 'real' } },
  day2night: { source: { priors: TARGET_PRIORS, style: 'real' }, target: { priors: TARGET_PRIORS, style: 'night' } },
};

const pad = (n: number, w: number) => String(n).padStart(w, '0');

/** Where each split lives and how it is read. */
export function benchmarkLayouts(name: EmbeddedBenchmarkName, root: string): EmbeddedBenchmark {
  const evalSpec: LabelSpec = { ...CITYSCAPES_TRAIN_IDS, name: `embedded-${name}`, evalClasses: EMBEDDED_CLASS_IDS };
  const common = { name, root, classes: EMBEDDED_CLASS_IDS, evalSpec };
  if (name === 'synth2real') {
    return {
      ...common,
      source: gta5(path.join(root, 'gta')),
      targetTrain: cityscapes(path.join(root, 'cityscapes'), 'train'),
      targetVal: cityscapes(path.join(root, 'cityscapes'), 'val'),
    };
  }
  if (name === 'day2night') {
    return {
      ...common,
      source: cityscapes(path.join(root, 'cityscapes'), 'train'),
      targetTrain: darkZurich(path.join(root, 'dark_zurich'), { split: 'train' }),
      targetVal: darkZurich(path.join(root, 'dark_zurich'), { split: 'val' }),
    };
  }
  throw new Ir2fError('INVALID_ARGUMENT', `unknown embedded benchmark '${String(name)}'; available: ${EMBEDDED_BENCHMARKS.join(', ')}`);
}

const TRAIN_TO_ID = new Map<number, number>();
for (const l of CITYSCAPES_LABELS) if (l.trainId !== IGNORE_INDEX && !TRAIN_TO_ID.has(l.trainId)) TRAIN_TO_ID.set(l.trainId, l.id);
const ID_PALETTE: [number, number, number][] = [];
for (const l of CITYSCAPES_LABELS) ID_PALETTE[l.id] = l.color;

type Writer = (dir: string, index: number, img: { data: Uint8Array; width: number; height: number }, label: Uint8Array) => Promise<void>;

function gtaWriter(): Writer {
  return async (dir, i, img, label) => {
    const ids = Uint8Array.from(label, (t) => TRAIN_TO_ID.get(t) ?? 0);
    await writeRgbPng(path.join(dir, 'gta', 'images', `${pad(i, 5)}.png`), img);
    await writeIndexedPng(path.join(dir, 'gta', 'labels', `${pad(i, 5)}.png`), { data: ids, width: img.width, height: img.height }, ID_PALETTE);
  };
}

function cityscapesWriter(split: 'train' | 'val'): Writer {
  const city = split === 'train' ? 'embedcity' : 'embedval';
  return async (dir, i, img, label) => {
    const stem = `${city}_000000_${pad(i, 6)}`;
    await writeRgbPng(path.join(dir, 'cityscapes', 'leftImg8bit', split, city, `${stem}_leftImg8bit.png`), img);
    await writeGrayPng(path.join(dir, 'cityscapes', 'gtFine', split, city, `${stem}_gtFine_labelTrainIds.png`),
      { data: label, width: img.width, height: img.height });
  };
}

function darkZurichWriter(split: 'train' | 'val'): Writer {
  const seq = split === 'train' ? 'GOPR0001' : 'GOPR0002';
  return async (dir, i, img, label) => {
    const stem = `${seq}_frame_${pad(i, 6)}`;
    await writeRgbPng(path.join(dir, 'dark_zurich', 'rgb_anon', split, 'night', seq, `${stem}_rgb_anon.png`), img);
    await writeGrayPng(path.join(dir, 'dark_zurich', 'gt', split, 'night', seq, `${stem}_gt_labelTrainIds.png`),
      { data: label, width: img.width, height: img.height });
  };
}

async function renderSplit(
  rng: Rng, plan: DomainPlan, n: number, size: [number, number], write: Writer, dir: string,
): Promise<void> {
  const batch = 8;
  for (let start = 0; start < n; start += batch) {
    const jobs = [];
    for (let i = start; i < Math.min(n, start + batch); i++) {
      const r = rng.fork(`image-${i}`);
      const scene = layoutScene(r.fork('layout'), size[0], size[1], plan.priors);
      jobs.push(renderScene(scene, plan.style, r.fork('render')).then((img) => write(dir, i, img, scene.label)));
    }
    await Promise.all(jobs);
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(() => true, () => false);
}

/** Generate benchmark `name` into `outDir` (created; must not exist unless `overwrite`). */
export async function makeBenchmark(name: EmbeddedBenchmarkName, outDir: string, opts: MakeOptions = {}): Promise<EmbeddedBenchmark> {
  if (!(EMBEDDED_BENCHMARKS as readonly string[]).includes(name)) {
    throw new Ir2fError('INVALID_ARGUMENT', `unknown embedded benchmark '${name}'; available: ${EMBEDDED_BENCHMARKS.join(', ')}`);
  }
  const seed = opts.seed ?? 0;
  const size = opts.size ?? [128, 96];
  if (!size.every((v) => Number.isInteger(v) && v >= 32 && v <= 1024)) {
    throw new Ir2fError('INVALID_ARGUMENT', `size must be two integers in [32, 1024], got ${JSON.stringify(size)}`);
  }
  const counts = { source: 300, targetTrain: 300, targetVal: 100, ...opts.counts };
  const root = path.resolve(outDir);
  if (!opts.overwrite && await exists(root) && (await fs.readdir(root)).length > 0) {
    throw new Ir2fError('INVALID_ARGUMENT', await exists(path.join(root, 'manifest.json'))
      ? `${root} already holds a benchmark: pass overwrite (--overwrite) to regenerate it`
      : `${root} exists and is not empty: choose an empty or new folder`);
  }
  const tmp = `${root}.partial-${process.pid}`;
  await fs.rm(tmp, { recursive: true, force: true });
  await fs.mkdir(tmp, { recursive: true });
  try {
    const rng = new Rng(`${name}:${seed}`);
    const plan = PLANS[name];
    const [sourceWriter, trainWriter, valWriter] = name === 'synth2real'
      ? [gtaWriter(), cityscapesWriter('train'), cityscapesWriter('val')]
      : [cityscapesWriter('train'), darkZurichWriter('train'), darkZurichWriter('val')];
    await renderSplit(rng.fork('source'), plan.source, counts.source, size, sourceWriter, tmp);
    await renderSplit(rng.fork('target-train'), plan.target, counts.targetTrain, size, trainWriter, tmp);
    await renderSplit(rng.fork('target-val'), plan.target, counts.targetVal, size, valWriter, tmp);
    const manifest = {
      name, version: EMBEDDED_VERSION, seed, size, counts,
      classes: EMBEDDED_CLASS_IDS.map((c) => CITYSCAPES_CLASSES[c]),
    };
    await fs.writeFile(path.join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2));
    await fs.rm(root, { recursive: true, force: true });
    await fs.mkdir(path.dirname(root), { recursive: true });
    await fs.rename(tmp, root);
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return benchmarkLayouts(name, root);
}

export function defaultCacheDir(): string {
  return process.env.IR2F_CACHE ?? path.join(os.homedir(), '.cache', 'ir2f');
}

/**
 * The benchmark from the cache folder (`IR2F_CACHE`, default ~/.cache/ir2f), generating it on first use.
 * Concurrent first uses each generate into their own temp folder; the last rename wins with identical data.
 */
export async function ensureBenchmark(
  name: EmbeddedBenchmarkName, opts: Omit<MakeOptions, 'overwrite'> & { cacheDir?: string } = {},
): Promise<EmbeddedBenchmark> {
  const size = opts.size ?? [128, 96];
  const c = opts.counts;
  const countsKey = c ? `-n${c.source ?? 300}.${c.targetTrain ?? 300}.${c.targetVal ?? 100}` : '';
  const dir = path.join(opts.cacheDir ?? defaultCacheDir(), 'benchmarks',
    `${name}-v${EMBEDDED_VERSION}-s${opts.seed ?? 0}-${size[0]}x${size[1]}${countsKey}`);
  if (await exists(path.join(dir, 'manifest.json'))) return benchmarkLayouts(name, dir);
  return makeBenchmark(name, dir, { ...opts, overwrite: true });
}

