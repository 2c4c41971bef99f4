/**
 * The data side of a UDA run as the core trainer consumes it (`TrainData`): DAFormer's train pipelines
 * (resize keeping the ratio, random crop with cat_max_ratio 0.75, flip, photometric distortion, normalise)
 * for a rare-class-sampled source and a shuffled target, and the labelled target validation split.
 */
import { type Rng, type EvalSample, type EventBus, type HostBatch, type TrainData } from '@ir2f/core';
import { classStats, rareClassSampler } from './class-stats.js';
import type { Dataset, DatasetItem } from './layouts.js';
import { createLoader, loadSample } from './loader.js';
import { horizontalFlip, keepRatioSize, normalize, photometricDistortion, randomCrop, resize, type Sample } from './transforms.js';

export interface UdaDataOptions {
  source: Dataset;
  target: Dataset;
  /** Labelled target validation split (evaluation). */
  val?: Dataset;
  numClasses: number;
  /** Images per domain per step (DAFormer: 2). */
  batchSize?: number;
  /** [width, height] of training crops. */
  crop: [number, number];
  /** Keep-ratio resize scales [long, short] (mmseg `img_scale`) before cropping; none = keep the size. */
  resize?: { source?: [number, number]; target?: [number, number]; val?: [number, number] };
  /** Rare-class sampling of source images (DESIGN §4.1); false = shuffled epochs. */
  rareClass?: { temperature?: number; minPixels?: number } | false;
  photometric?: boolean;
  /** Read target labels for training (the target-oracle bound only). */
  targetLabels?: boolean;
  seed?: number;
  concurrency?: number;
  onCorrupt?: 'fail' | 'skip';
  bus?: EventBus;
  /** Where the rare-class statistics are cached when the data folder is read-only. */
  cacheDir?: string;
}

async function resized(s: Sample, scale?: [number, number]): Promise<Sample> {
  if (!scale) return s;
  const [w, h] = keepRatioSize(s.image.width, s.image.height, scale);
  return resize(s, w, h);
}

function trainTransform(crop: [number, number], scale: [number, number] | undefined, photometric: boolean) {
  return async (raw: Sample, rng: Rng): Promise<Sample> => {
    let s = await resized(raw, scale);
    if (s.image.width < crop[0] || s.image.height < crop[1]) {
      throw new Error(`crop ${crop[0]}×${crop[1]} is larger than the ${s.image.width}×${s.image.height} image: lower the crop or raise the resize scale`);
    }
    s = horizontalFlip(randomCrop(s, crop[0], crop[1], rng), rng);
    return photometric ? { ...s, image: photometricDistortion(s.image, rng) } : s;
  };
}

/** TrainData over datasets read by this package. */
export async function udaData(opts: UdaDataOptions): Promise<TrainData & { rareClassProbs?: number[] }> {
  const batchSize = opts.batchSize ?? 2;
  const seed = opts.seed ?? 0;
  const photometric = opts.photometric ?? true;
  let sampler: ((rng: Rng) => number) | undefined;
  let rareClassProbs: number[] | undefined;
  if (opts.rareClass !== false) {
    const stats = await classStats(opts.source, opts.numClasses, { cacheDir: opts.cacheDir });
    const rcs = rareClassSampler(stats, { temperature: opts.rareClass?.temperature, minPixels: opts.rareClass?.minPixels });
    rareClassProbs = rcs.classProbs;
    sampler = (rng) => rcs.sample(rng).index;
  }
  const common = { batchSize, concurrency: opts.concurrency, onCorrupt: opts.onCorrupt, bus: opts.bus };
  const loader = (ds: Dataset, from: number, extra: object) => createLoader(ds, { ...common, skipBatches: from, ...extra }) as AsyncIterable<HostBatch>;
  const data: TrainData & { rareClassProbs?: number[] } = {
    rareClassProbs,
    source: (from) => loader(opts.source, from, {
      sampler, seed: `${seed}-source`, transform: trainTransform(opts.crop, opts.resize?.source, photometric),
    }),
    target: (from) => loader(opts.target, from, {
      seed: `${seed}-target`, labels: !!opts.targetLabels, transform: trainTransform(opts.crop, opts.resize?.target, photometric),
    }),
  };
  if (opts.val) {
    const val = opts.val;
    data.evaluation = { samples: () => evalSamples(val.items, opts.resize?.val) };
  }
  return data;
}

/** Labelled items as normalised evaluation samples, optionally resized keeping the ratio to `scale`. */
export async function* evalSamples(items: readonly DatasetItem[], scale?: [number, number]): AsyncGenerator<EvalSample> {
  for (const item of items) {
    const s = await resized(await loadSample(item), scale);
    if (!s.label) throw new Error(`validation image ${item.image} has no label`);
    yield { image: normalize(s.image), label: s.label.data, height: s.image.height, width: s.image.width };
  }
}
