/**
 * A streaming batch loader: indices from a sampler, images and labels decoded in parallel (sharp and
 * fast-png run off the JS thread or are short), transforms from a per-sample RNG so results do not depend
 * on completion order, and a bounded number of samples in flight, so memory does not grow with the dataset.
 * A corrupt file is reported through `onWarning` and skipped, or fails the run, by option; never silently.
 */
import { Ir2fError, Rng, type EventBus } from '@ir2f/core';
import { readLabel, readRgb, type OutOfSpecPolicy } from './image-io.js';
import type { Dataset, DatasetItem } from './layouts.js';
import { normalize, type Sample } from './transforms.js';

export type Sampler = (rng: Rng) => number;

export interface LoaderOptions {
  batchSize: number;
  /** Item index source; default: shuffled epochs. */
  sampler?: Sampler;
  /** Applied to every sample, with that sample's own RNG; must give all samples one size. */
  transform?: (sample: Sample, rng: Rng) => Sample | Promise<Sample>;
  /** Batches prepared ahead (default 2). */
  prefetch?: number;
  /** Decodes in flight at once (default 4). */
  concurrency?: number;
  /** Labels are read unless false (an unlabelled target split). */
  labels?: boolean;
  outOfSpec?: OutOfSpecPolicy;
  onCorrupt?: 'fail' | 'skip';
  onWarning?: (w: { code: string; message: string; file?: string }) => void;
  /** When given, warnings are also emitted on the bus as `warning` events. */
  bus?: EventBus;
  seed?: number | string;
  /** Stop after this many batches (default: endless). */
  maxBatches?: number;
  /**
   * Start as if this many batches had been drawn already (a resumed run gets the batches it has not seen;
   * exact unless files were skipped as corrupt before the resume point).
   */
  skipBatches?: number;
}

export interface Batch {
  /** [B, H, W, 3] ImageNet-normalised. */
  images: Float32Array;
  /** [B, H, W] train ids, when labels were read. */
  labels?: Uint8Array;
  batchSize: number;
  height: number;
  width: number;
  ids: string[];
}

export interface LoaderStats {
  samplesLoaded: number;
  skipped: number;
  maxInFlight: number;
}

/** Shuffled passes over all items, reshuffled each epoch. */
export function shuffledSampler(count: number): Sampler {
  let order: number[] = [];
  let pos = 0;
  return (rng) => {
    if (pos >= order.length) {
      order = rng.shuffle(Array.from({ length: count }, (_, i) => i));
      pos = 0;
    }
    return order[pos++];
  };
}

export function sequentialSampler(count: number): Sampler {
  let i = 0;
  return () => i++ % count;
}

export async function loadSample(item: DatasetItem, opts: { labels?: boolean; outOfSpec?: OutOfSpecPolicy } = {}): Promise<Sample> {
  const wantLabel = opts.labels !== false && item.label != null;
  const [image, label] = await Promise.all([
    readRgb(item.image),
    wantLabel ? readLabel(item.label!, item.labelSpec!, opts.outOfSpec ?? 'error') : Promise.resolve(undefined),
  ]);
  if (label && (label.width !== image.width || label.height !== image.height)) {
    throw new Ir2fError('SIZE_MISMATCH',
      `image ${item.image} is ${image.width}×${image.height} but its label ${item.label} is ${label.width}×${label.height}: ` +
      'the pair does not belong together, or one was resized; regenerate the label at the image size');
  }
  return { image, label: label && { data: label.data, width: label.width, height: label.height } };
}

export class BatchLoader implements AsyncIterable<Batch> {
  readonly stats: LoaderStats = { samplesLoaded: 0, skipped: 0, maxInFlight: 0 };
  private readonly sampler: Sampler;

  constructor(private readonly dataset: Dataset, private readonly opts: LoaderOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize <= 0) {
      throw new Ir2fError('INVALID_ARGUMENT', `batchSize must be a positive integer, got ${opts.batchSize}`);
    }
    if (dataset.items.length === 0) throw new Ir2fError('INVALID_ARGUMENT', `dataset '${dataset.layout.name}' is empty`);
    this.sampler = opts.sampler ?? shuffledSampler(dataset.items.length);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Batch> {
    const { batchSize } = this.opts;
    const limit = Math.max(1, (this.opts.prefetch ?? 2) * batchSize);
    const concurrency = Math.max(1, this.opts.concurrency ?? 4);
    const root = new Rng(this.opts.seed ?? 0);
    const samplerRng = root.fork('sampler');
    let counter = 0;
    let consecutiveSkips = 0;
    for (let i = 0; i < (this.opts.skipBatches ?? 0) * batchSize; i++) {
      this.sampler(samplerRng);
      counter++;
    }
    let active = 0;
    const waiters: (() => void)[] = [];
    const slot = async () => {
      while (active >= concurrency) await new Promise<void>((r) => waiters.push(r));
      active++;
    };
    const release = () => {
      active--;
      waiters.shift()?.();
    };
    const load = async (): Promise<{ sample: Sample; id: string }> => {
      for (;;) {
        const k = counter++;
        const item = this.dataset.items[this.sampler(samplerRng)];
        await slot();
        try {
          const raw = await loadSample(item, this.opts);
          const sample = this.opts.transform ? await this.opts.transform(raw, root.fork(`sample-${k}`)) : raw;
          this.stats.samplesLoaded++;
          consecutiveSkips = 0;
          return { sample, id: item.id };
        } catch (err) {
          if (err instanceof Ir2fError && err.code === 'CORRUPT_IMAGE' && this.opts.onCorrupt === 'skip') {
            this.stats.skipped++;
            if (++consecutiveSkips > this.dataset.items.length) {
              throw new Ir2fError('CORRUPT_IMAGE',
                `every file of dataset '${this.dataset.layout.name}' drawn in a row was corrupt (${consecutiveSkips}): ` +
                `check the data under ${this.dataset.layout.root}`, { cause: err });
            }
            const message = `${err.message} (skipped)`;
            this.opts.onWarning?.({ code: 'CORRUPT_IMAGE', message, file: item.image });
            this.opts.bus?.emit({ type: 'warning', code: 'CORRUPT_IMAGE', message });
            continue;
          }
          throw err;
        } finally {
          release();
        }
      }
    };
    const queue: Promise<{ sample: Sample; id: string }>[] = [];
    const fill = () => {
      while (queue.length < limit) {
        const p = load();
        p.catch(() => undefined); // surfaced when awaited in order
        queue.push(p);
      }
      this.stats.maxInFlight = Math.max(this.stats.maxInFlight, queue.length);
    };
    for (let b = this.opts.skipBatches ?? 0; this.opts.maxBatches == null || b < this.opts.maxBatches; b++) {
      fill();
      const parts = [];
      for (let i = 0; i < batchSize; i++) {
        parts.push(await queue.shift()!);
        fill();
      }
      yield this.collate(parts);
    }
  }

  private collate(parts: { sample: Sample; id: string }[]): Batch {
    const { width, height } = parts[0].sample.image;
    const n = parts.length;
    const images = new Float32Array(n * height * width * 3);
    const withLabels = parts.every((p) => p.sample.label);
    const labels = withLabels ? new Uint8Array(n * height * width) : undefined;
    parts.forEach((p, i) => {
      const { image, label } = p.sample;
      if (image.width !== width || image.height !== height) {
        throw new Ir2fError('SIZE_MISMATCH',
          `samples of one batch differ in size (${width}×${height} vs ${image.width}×${image.height} for ${p.id}): ` +
          'add a resize or crop transform');
      }
      normalize(image, images, i * height * width * 3);
      if (labels && label) labels.set(label.data, i * height * width);
    });
    return { images, labels, batchSize: n, height, width, ids: parts.map((p) => p.id) };
  }
}

export function createLoader(dataset: Dataset, opts: LoaderOptions): BatchLoader {
  return new BatchLoader(dataset, opts);
}
