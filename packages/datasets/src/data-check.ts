/**
 * The check a run makes of its data before step 1, so that a broken file stops it at once instead of at the
 * first evaluation thousands of steps in: every image's header (readable, three channels, non-empty), every
 * label decoded through its spec (single-channel, the image's size, values inside the spec, train ids below
 * the model's class count), and, for a split that is scored, at least one labelled pixel.
 */
import { promises as fs } from 'node:fs';
import sharp, { type Metadata } from 'sharp';
import { Ir2fError } from '@ir2f/core';
import { readLabel } from './image-io.js';
import type { Dataset } from './layouts.js';

export interface DataCheckOptions {
  /** The model's class count: train ids must be below it. */
  numClasses: number;
  /** The split is scored (a val split): it must hold labelled pixels. */
  scored?: boolean;
  /** Called after each file pair. */
  onProgress?: (done: number, total: number) => void;
  /** `skip`: an unreadable image or label leaves its pair out (listed in `skipped`) instead of stopping the check. */
  onCorrupt?: 'fail' | 'skip';
  /**
   * Collect every problem in `problems` (and the statistics `ir2f data check` prints) instead of throwing at
   * the first one.
   */
  collect?: boolean;
}

export interface DataCheckProblem {
  file: string;
  code: string;
  message: string;
}

export interface DataCheckReport {
  images: number;
  labels: number;
  /** Labelled (not ignored) pixels over all labels. */
  labelledPixels: number;
  /** Ids of the pairs left out as unreadable (`onCorrupt: 'skip'`), with why. */
  skipped: { id: string; reason: string }[];
  /** With `collect`: each problem that would stop a run, in file order. */
  problems: DataCheckProblem[];
  /** Image sizes 'W×H' → count. */
  sizes: Map<string, number>;
  /** Labelled pixels and labels containing each train id (index = train id). */
  classPixels: number[];
  classImages: number[];
  /** Raw label values (or packed colours) outside the spec → pixel count. */
  outOfSpec: Map<number, number>;
}

async function imageHeader(file: string): Promise<{ width: number; height: number }> {
  const stat = await fs.stat(file).catch((err: NodeJS.ErrnoException) => {
    throw new Ir2fError('CORRUPT_IMAGE', `cannot read ${file}: ${err.code ?? err.message}`, { cause: err });
  });
  if (stat.size === 0) throw new Ir2fError('CORRUPT_IMAGE', `${file} is empty (0 bytes): re-extract or re-download it`);
  let meta: Metadata;
  try {
    meta = await sharp(file).metadata();
  } catch (err) {
    throw new Ir2fError('CORRUPT_IMAGE', `cannot read the header of ${file} (${(err as Error).message}): the file is corrupt or not an image`, { cause: err });
  }
  if (!meta.width || !meta.height) throw new Ir2fError('CORRUPT_IMAGE', `${file} has no image size in its header: the file is corrupt`);
  return { width: meta.width, height: meta.height };
}

async function labelChannels(file: string): Promise<{ channels: number; palette: boolean }> {
  const meta = await sharp(file).metadata().catch((err: Error) => {
    throw new Ir2fError('CORRUPT_IMAGE', `cannot read the header of label ${file} (${err.message}): the file is corrupt or not a PNG`, { cause: err });
  });
  return { channels: meta.channels ?? 1, palette: meta.isPalette };
}

/** Check every file of `ds` (in order, one pair at a time); throws naming the first broken file and the fix. */
export async function checkDataset(ds: Dataset, opts: DataCheckOptions): Promise<DataCheckReport> {
  const report: DataCheckReport = {
    images: 0, labels: 0, labelledPixels: 0, skipped: [], problems: [], sizes: new Map(), outOfSpec: new Map(),
    classPixels: new Array<number>(opts.numClasses).fill(0), classImages: new Array<number>(opts.numClasses).fill(0),
  };
  const total = ds.items.length;
  for (const [i, item] of ds.items.entries()) {
    if (!opts.collect) {
      await checkItem(item, opts, report);
    } else {
      try {
        await checkItem(item, opts, report);
      } catch (err) {
        if (!(err instanceof Ir2fError)) throw err;
        report.problems.push({ file: (err as { file?: string }).file ?? item.image, code: err.code, message: err.message });
      }
    }
    opts.onProgress?.(i + 1, total);
  }
  if (opts.scored && report.labels > 0 && report.labelledPixels === 0) {
    const err = new Ir2fError('LABEL_OUT_OF_SPEC',
      `dataset '${ds.layout.name}': every pixel of its ${report.labels} labels is ignore (${ds.items[0].labelSpec?.ignoreIndex ?? 255}): ` +
      'there is nothing to score. Check the label files (or the reader: *_labelTrainIds vs *_labelIds)');
    if (!opts.collect) throw err;
    report.problems.push({ file: ds.layout.root, code: err.code, message: err.message });
  }
  return report;
}

/** One pair: a problem throws (an Ir2fError whose `file` says which of the pair). */
async function checkItem(item: Dataset['items'][number], opts: DataCheckOptions, report: DataCheckReport): Promise<void> {
  let img: { width: number; height: number };
  try {
    img = await imageHeader(item.image);
    if (item.label) {
      await fs.stat(item.label).then((st) => {
        if (st.size === 0) throw fileError(item.label!, new Ir2fError('CORRUPT_IMAGE', `label ${item.label} is empty (0 bytes): re-extract or re-download it`));
      });
    }
  } catch (err) {
    if (opts.onCorrupt !== 'skip' || !(err instanceof Ir2fError && err.code === 'CORRUPT_IMAGE')) throw err;
    report.skipped.push({ id: item.id, reason: err.message });
    return;
  }
  report.images++;
  const size = `${img.width}×${img.height}`;
  report.sizes.set(size, (report.sizes.get(size) ?? 0) + 1);
  if (!item.label || !item.labelSpec) return;
  const file = item.label;
  const spec = item.labelSpec;
  const { channels, palette } = await labelChannels(file);
  if (channels > 2 && !palette && !spec.colorToTrainId) {
    throw fileError(file, new Ir2fError('LABEL_OUT_OF_SPEC',
      `label ${file} has ${channels} channels (${channels === 4 ? 'RGBA' : 'RGB'}); '${spec.name}' labels are single-channel ` +
      'id images (or palette PNGs): convert it to one channel of class ids, e.g. with the dataset\'s own conversion script' +
      ' (or, for colour-coded labels of your own data, give a label spec with encoding: palette)'));
  }
  const label = await readLabel(file, spec, opts.collect ? 'ignore' : 'error').catch((err: unknown) => {
    throw fileError(file, err);
  });
  if (label.outOfSpec.size) {
    for (const [v, n] of label.outOfSpec) report.outOfSpec.set(v, (report.outOfSpec.get(v) ?? 0) + n);
    // what readLabel's 'error' policy would have said
    await readLabel(file, spec, 'error').catch((err: unknown) => {
      throw fileError(file, err);
    });
  }
  if (label.width !== img.width || label.height !== img.height) {
    throw fileError(file, new Ir2fError('SIZE_MISMATCH',
      `label ${file} is ${label.width}×${label.height} but its image ${item.image} is ${img.width}×${img.height}: ` +
      'image and label must be the same size (re-export one of them)'));
  }
  const seen = new Set<number>();
  for (const v of label.data) {
    if (v === spec.ignoreIndex) continue;
    if (v >= opts.numClasses) {
      throw fileError(file, new Ir2fError('LABEL_OUT_OF_SPEC',
        `label ${file} holds train id ${v} ('${spec.classes[v] ?? v}') and the model has ${opts.numClasses} classes: ` +
        `set model.numClasses to ${spec.classes.length} ('${spec.name}' has ${spec.classes.length} classes)`));
    }
    report.labelledPixels++;
    report.classPixels[v]++;
    seen.add(v);
  }
  for (const v of seen) report.classImages[v]++;
  report.labels++;
}

/** Tag an error with the file it is about (for `collect`). */
function fileError(file: string, err: unknown): unknown {
  if (err instanceof Ir2fError) Object.assign(err, { file });
  return err;
}
