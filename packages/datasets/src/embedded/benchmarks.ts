/**
 * The embedded domain-shift benchmarks, written to disk in the real dataset layouts so that the same readers
 * serve them and the real datasets:
 *
 * - `synth2real`: source `gta/` (synthetic style, GTA5 layout with Cityscapes-id palettised labels) →
 *   target `cityscapes/` (real style: other textures and colours, blur, noise, JPEG, shifted geometry priors).
 * - `day2night`: source `cityscapes/` (real style, day) → target `dark_zurich/` (the same kind of scenes at night).
 *
 * The family (DESIGN's small presets are chosen across all of them; each shifts one thing of another kind):
 * - `camera`: real → real through another good camera: its colour response (white balance, tone curve,
 *   saturation), a rolled mount and a wide-angle lens (barrel distortion), mounted higher (the horizon high in
 *   the frame, small objects, denser traffic). Geometry alone barely moves a small model (measured: no gap at
 *   the toy scale), the response is what two real cameras differ in first.
 * - `fog`: real, clear → real in fog (depth-dependent haze), in the ACDC layout (`acdc/rgb_anon/fog/…`).
 * - `sensor`: real → real through a poor camera (resolution loss, motion blur, vignetting, colour cast, strong
 *   noise, heavy JPEG).
 * - `city19`: synthetic → real with all 19 Cityscapes classes, thin ones included (traffic lights and signs on
 *   poles, fences, bicycles, riders), evaluated over the 19.
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
import { acdc, cityscapes, darkZurich, gta5, type DatasetLayout } from '../layouts.js';
import { renderScene, type DomainStyleName } from './render.js';
import { applyLens, type LensPriors } from './lens.js';
import {
  ALL_CLASS_IDS, EMBEDDED_CLASS_IDS, EXTRA_PRIORS, HIGH_WIDE_PRIORS, layoutScene, SOURCE_PRIORS, TARGET_PRIORS, type GeometryPriors,
} from './street-scene.js';

export const EMBEDDED_BENCHMARKS = ['synth2real', 'day2night', 'camera', 'fog', 'sensor', 'city19'] as const;
export type EmbeddedBenchmarkName = (typeof EMBEDDED_BENCHMARKS)[number];

/** Bumped when generation changes, so cached copies are regenerated. */
export const EMBEDDED_VERSION = 2;

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
  /** Another camera (colour response, roll, wide-angle distortion), applied to image and label together. */
  lens?: LensPriors;
}

/** Which real layouts a benchmark is written in: synthetic → real, or a real source → a condition's target. */
type LayoutPair = 'gta-cityscapes' | 'cityscapes-dark_zurich' | 'cityscapes-acdc';

interface Plan {
  source: DomainPlan;
  target: DomainPlan;
  layouts: LayoutPair;
  classes: readonly number[];
  /** For `ir2f data list`. */
  describe: string;
}

/** The camera member's other camera: a cool, flat colour response, a rolled mount and a wide-angle lens. */
const OTHER_CAMERA: LensPriors = {
  roll: [4, 12], barrel: [0.15, 0.35], response: { red: [0.8, 0.9], blue: [1.1, 1.25], gamma: [0.7, 0.85], saturation: [0.55, 0.75] },
};

const S19: GeometryPriors = { ...SOURCE_PRIORS, extras: EXTRA_PRIORS };
const T19: GeometryPriors = { ...TARGET_PRIORS, extras: EXTRA_PRIORS };

const PLANS: Record<EmbeddedBenchmarkName, Plan> = {
  synth2real: {
    source: { priors: SOURCE_PRIORS, style: 'synthetic' }, target: { priors: TARGET_PRIORS, style: 'real' }, layouts: 'gta-cityscapes',
    classes: EMBEDDED_CLASS_IDS, describe: 'synthetic → real: textures, colours, sensor effects and camera priors (gta → cityscapes, 8 classes)',
  },
  day2night: {
    source: { priors: TARGET_PRIORS, style: 'real' }, target: { priors: TARGET_PRIORS, style: 'night' }, layouts: 'cityscapes-dark_zurich',
    classes: EMBEDDED_CLASS_IDS, describe: 'day → night: low light, colour casts, lamps and glare (cityscapes → dark_zurich, 8 classes)',
  },
  camera: {
    source: { priors: SOURCE_PRIORS, style: 'real' }, target: { priors: HIGH_WIDE_PRIORS, style: 'real', lens: OTHER_CAMERA }, layouts: 'gta-cityscapes',
    classes: EMBEDDED_CLASS_IDS, describe: 'another camera: its colour response (white balance, tone curve, saturation), a rolled mount and a wide-angle lens, mounted higher: small objects, dense traffic (8 classes)',
  },
  fog: {
    source: { priors: TARGET_PRIORS, style: 'real' }, target: { priors: TARGET_PRIORS, style: 'fog' }, layouts: 'cityscapes-acdc',
    classes: EMBEDDED_CLASS_IDS, describe: 'clear → fog: depth-dependent haze (cityscapes → acdc fog, 8 classes)',
  },
  sensor: {
    source: { priors: TARGET_PRIORS, style: 'real' }, target: { priors: TARGET_PRIORS, style: 'degraded' }, layouts: 'gta-cityscapes',
    classes: EMBEDDED_CLASS_IDS, describe: 'good → poor camera: resolution loss, motion blur, vignetting, colour cast, noise, heavy JPEG (8 classes)',
  },
  city19: {
    source: { priors: S19, style: 'synthetic' }, target: { priors: T19, style: 'real' }, layouts: 'gta-cityscapes',
    classes: ALL_CLASS_IDS, describe: 'synthetic → real with all 19 Cityscapes classes, thin ones included (traffic lights, signs, fences, bicycles)',
  },
};

/** One line per benchmark for `ir2f data list`. */
export const EMBEDDED_DESCRIPTIONS: Readonly<Record<EmbeddedBenchmarkName, string>> = Object.fromEntries(
  Object.entries(PLANS).map(([k, p]) => [k, p.describe]),
) as Record<EmbeddedBenchmarkName, string>;

const pad = (n: number, w: number) => String(n).padStart(w, '0');

/** Where each split lives and how it is read. */
export function benchmarkLayouts(name: EmbeddedBenchmarkName, root: string): EmbeddedBenchmark {
  const plan = PLANS[name];
  if (!plan) throw new Ir2fError('INVALID_ARGUMENT', `unknown embedded benchmark '${String(name)}'; available: ${EMBEDDED_BENCHMARKS.join(', ')}`);
  const evalSpec: LabelSpec = { ...CITYSCAPES_TRAIN_IDS, name: `embedded-${name}`, evalClasses: plan.classes };
  const common = { name, root, classes: plan.classes, evalSpec };
  if (plan.layouts === 'gta-cityscapes') {
    return {
      ...common,
      source: gta5(path.join(root, 'gta')),
      targetTrain: cityscapes(path.join(root, 'cityscapes'), 'train'),
      targetVal: cityscapes(path.join(root, 'cityscapes'), 'val'),
    };
  }
  if (plan.layouts === 'cityscapes-acdc') {
    return {
      ...common,
      source: cityscapes(path.join(root, 'cityscapes'), 'train'),
      targetTrain: acdc(path.join(root, 'acdc'), { condition: 'fog', split: 'train' }),
      targetVal: acdc(path.join(root, 'acdc'), { condition: 'fog', split: 'val' }),
    };
  }
  {
    return {
      ...common,
      source: cityscapes(path.join(root, 'cityscapes'), 'train'),
      targetTrain: darkZurich(path.join(root, 'dark_zurich'), { split: 'train' }),
      targetVal: darkZurich(path.join(root, 'dark_zurich'), { split: 'val' }),
    };
  }
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

function acdcWriter(split: 'train' | 'val'): Writer {
  const seq = split === 'train' ? 'GP010475' : 'GP010476';
  return async (dir, i, img, label) => {
    const stem = `${seq}_frame_${pad(i, 6)}`;
    await writeRgbPng(path.join(dir, 'acdc', 'rgb_anon', 'fog', split, seq, `${stem}_rgb_anon.png`), img);
    await writeGrayPng(path.join(dir, 'acdc', 'gt', 'fog', split, seq, `${stem}_gt_labelTrainIds.png`),
      { data: label, width: img.width, height: img.height });
  };
}

const WRITERS: Record<LayoutPair, () => [Writer, Writer, Writer]> = {
  'gta-cityscapes': () => [gtaWriter(), cityscapesWriter('train'), cityscapesWriter('val')],
  'cityscapes-dark_zurich': () => [cityscapesWriter('train'), darkZurichWriter('train'), darkZurichWriter('val')],
  'cityscapes-acdc': () => [cityscapesWriter('train'), acdcWriter('train'), acdcWriter('val')],
};

async function renderSplit(
  rng: Rng, plan: DomainPlan, n: number, size: [number, number], write: Writer, dir: string,
): Promise<void> {
  const batch = 8;
  for (let start = 0; start < n; start += batch) {
    const jobs = [];
    for (let i = start; i < Math.min(n, start + batch); i++) {
      const r = rng.fork(`image-${i}`);
      const scene = layoutScene(r.fork('layout'), size[0], size[1], plan.priors);
      jobs.push(renderScene(scene, plan.style, r.fork('render')).then((img) => {
        if (!plan.lens) return write(dir, i, img, scene.label);
        const seen = applyLens(img, scene.label, plan.lens, r.fork('lens'));
        return write(dir, i, seen.image, seen.label);
      }));
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
    const [sourceWriter, trainWriter, valWriter] = WRITERS[plan.layouts]();
    await renderSplit(rng.fork('source'), plan.source, counts.source, size, sourceWriter, tmp);
    await renderSplit(rng.fork('target-train'), plan.target, counts.targetTrain, size, trainWriter, tmp);
    await renderSplit(rng.fork('target-val'), plan.target, counts.targetVal, size, valWriter, tmp);
    const manifest = {
      name, version: EMBEDDED_VERSION, seed, size, counts,
      classes: plan.classes.map((c) => CITYSCAPES_CLASSES[c]),
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

