/**
 * Readers for the directory layouts DAFormer/mmsegmentation document. A layout names an image folder, an
 * optional label folder and the file suffixes that pair them; `scanDataset` walks the folders and pairs
 * files, failing with the expected tree when a folder is missing and naming unpaired files.
 *
 *   gta/images/*.png                      gta/labels/*.png (Cityscapes ids) or *_labelTrainIds.png
 *   synthia/RGB/*.png                     synthia/GT/LABELS/*.png (16-bit ids) or *_labelTrainIds.png
 *   cityscapes/leftImg8bit/<split>/<city>/*_leftImg8bit.png
 *                                         cityscapes/gtFine/<split>/<city>/*_gtFine_labelTrainIds.png (or _labelIds)
 *   acdc/rgb_anon/<condition>/<split>/<seq>/*_rgb_anon.png
 *                                         acdc/gt/<condition>/<split>/<seq>/*_gt_labelTrainIds.png
 *   dark_zurich/rgb_anon/<split>/<condition>/<seq>/*_rgb_anon.png
 *                                         dark_zurich/gt/<split>/<condition>/<seq>/*_gt_labelTrainIds.png
 *   <any>/images/[<split>/]<name>.png|jpg  <any>/labels/[<split>/]<name>.png   (folder: your own data, read
 *                                         through a label-spec file, see label-spec-file.ts)
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Ir2fError } from '@ir2f/core';
import {
  CITYSCAPES_IDS, CITYSCAPES_TRAIN_IDS, GTA5_LABELS, SYNTHIA_16, type LabelSpec,
} from './label-specs.js';

export interface LabelSource {
  dir: string;
  suffix: string;
  spec: LabelSpec;
}

export interface DatasetLayout {
  /** Short name shown in errors (e.g. 'cityscapes val'). */
  name: string;
  root: string;
  imageDir: string;
  imageSuffix: string;
  /** Alternatives to `imageSuffix` (e.g. '.png', '.jpg'), any of which makes an image. */
  imageSuffixes?: readonly string[];
  /** Images without a label are left out of a labelled scan instead of failing it (a target folder's labelled subset). */
  partialLabels?: boolean;
  /** Label sources in order of preference (e.g. trainIds, else raw ids to convert); none = unlabelled. */
  labels: LabelSource[];
  /** The expected tree, shown when a folder is missing. */
  expectedTree: string;
}

export interface DatasetItem {
  /** Relative stem shared by image and label, e.g. 'aachen/aachen_000000_000019'. */
  id: string;
  image: string;
  label?: string;
  labelSpec?: LabelSpec;
}

export interface Dataset {
  layout: DatasetLayout;
  items: DatasetItem[];
  /** Which label source was found (undefined for unlabelled sets). */
  labelSource?: LabelSource;
}

export function gta5(root: string): DatasetLayout {
  return {
    name: 'gta', root, imageDir: 'images', imageSuffix: '.png',
    labels: [
      { dir: 'labels', suffix: '_labelTrainIds.png', spec: CITYSCAPES_TRAIN_IDS },
      { dir: 'labels', suffix: '.png', spec: GTA5_LABELS },
    ],
    expectedTree: `${root}/\n  images/<name>.png\n  labels/<name>.png   (Cityscapes ids; or <name>_labelTrainIds.png)`,
  };
}

export function synthia(root: string, spec: LabelSpec = SYNTHIA_16): DatasetLayout {
  return {
    name: 'synthia', root, imageDir: 'RGB', imageSuffix: '.png',
    labels: [
      { dir: 'GT/LABELS', suffix: '_labelTrainIds.png', spec: { ...CITYSCAPES_TRAIN_IDS, evalClasses: spec.evalClasses } },
      { dir: 'GT/LABELS', suffix: '.png', spec },
    ],
    expectedTree: `${root}/\n  RGB/<name>.png\n  GT/LABELS/<name>.png   (16-bit SYNTHIA ids; or <name>_labelTrainIds.png)`,
  };
}

export function cityscapes(root: string, split: 'train' | 'val' | 'test' = 'train'): DatasetLayout {
  return {
    name: `cityscapes ${split}`, root, imageDir: `leftImg8bit/${split}`, imageSuffix: '_leftImg8bit.png',
    labels: [
      { dir: `gtFine/${split}`, suffix: '_gtFine_labelTrainIds.png', spec: CITYSCAPES_TRAIN_IDS },
      { dir: `gtFine/${split}`, suffix: '_gtFine_labelIds.png', spec: CITYSCAPES_IDS },
    ],
    expectedTree: `${root}/\n  leftImg8bit/${split}/<city>/<name>_leftImg8bit.png\n` +
      `  gtFine/${split}/<city>/<name>_gtFine_labelTrainIds.png   (or _gtFine_labelIds.png)`,
  };
}

export function acdc(root: string, opts: { condition?: string; split?: 'train' | 'val' | 'test' } = {}): DatasetLayout {
  const condition = opts.condition ?? 'night';
  const split = opts.split ?? 'train';
  return {
    name: `acdc ${condition} ${split}`, root, imageDir: `rgb_anon/${condition}/${split}`, imageSuffix: '_rgb_anon.png',
    labels: [{ dir: `gt/${condition}/${split}`, suffix: '_gt_labelTrainIds.png', spec: CITYSCAPES_TRAIN_IDS }],
    expectedTree: `${root}/\n  rgb_anon/${condition}/${split}/<sequence>/<name>_rgb_anon.png\n` +
      `  gt/${condition}/${split}/<sequence>/<name>_gt_labelTrainIds.png`,
  };
}

export function darkZurich(root: string, opts: { split?: 'train' | 'val' | 'test'; condition?: string } = {}): DatasetLayout {
  const split = opts.split ?? 'train';
  const condition = opts.condition ?? 'night';
  return {
    name: `dark_zurich ${split} ${condition}`, root, imageDir: `rgb_anon/${split}/${condition}`,
    imageSuffix: '_rgb_anon.png',
    labels: [{ dir: `gt/${split}/${condition}`, suffix: '_gt_labelTrainIds.png', spec: CITYSCAPES_TRAIN_IDS }],
    expectedTree: `${root}/\n  rgb_anon/${split}/${condition}/<sequence>/<name>_rgb_anon.png\n` +
      `  gt/${split}/${condition}/<sequence>/<name>_gt_labelTrainIds.png   (labels: val only in the real dataset)`,
  };
}

/** The image extensions the `folder` layout reads. */
export const FOLDER_IMAGE_SUFFIXES = ['.png', '.jpg', '.jpeg'] as const;

/**
 * Your own data: `images/` and (where labelled) `labels/` with matching stems, read through `spec`. With a
 * split the folders are `images/<split>/` and `labels/<split>/`; `partialLabels` keeps the labelled images of
 * an otherwise unlabelled folder (a target whose few labelled images are its val split).
 */
export function folder(root: string, opts: { spec: LabelSpec; split?: string; partialLabels?: boolean }): DatasetLayout {
  const sub = opts.split ? `/${opts.split}` : '';
  return {
    name: `folder${opts.split ? ` ${opts.split}` : ''}`, root, imageDir: `images${sub}`, imageSuffix: '.png',
    imageSuffixes: FOLDER_IMAGE_SUFFIXES, partialLabels: opts.partialLabels,
    labels: [{ dir: `labels${sub}`, suffix: '.png', spec: opts.spec }],
    expectedTree: `${root}/\n  images${sub}/<name>.png (or .jpg)\n  labels${sub}/<name>.png   (as the label spec '${opts.spec.name}' says: class ids or colours)` +
      (opts.split ? '' : '\n  (or images/train, images/val, labels/train, labels/val)'),
  };
}

/** The split subfolders (`images/<split>`) a `folder` dataset has. */
export async function folderSplits(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const split of ['train', 'val', 'test']) if (await isDir(path.join(root, 'images', split))) out.push(split);
  return out;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Suffixes match regardless of case ('.JPG' is a '.jpg'). */
const endsWithAny = (name: string, suffixes: readonly string[]) => suffixes.some((x) => name.toLowerCase().endsWith(x.toLowerCase()));

/** Files under `dir` (recursively) ending in one of `suffixes`, as paths relative to `dir`, sorted. */
async function listFiles(dir: string, ...suffixes: readonly string[]): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && endsWithAny(e.name, suffixes))
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

function missingFolder(layout: DatasetLayout, folder: string): Ir2fError {
  return new Ir2fError('DATASET_LAYOUT',
    `dataset '${layout.name}': folder '${folder}' not found under ${layout.root}. Expected:\n${layout.expectedTree}`);
}

function firstFew(names: string[], n = 5): string {
  return names.slice(0, n).join(', ') + (names.length > n ? ` … (${names.length} in all)` : '');
}

/**
 * List and pair a dataset's files. `labelled: false` skips labels (an unlabelled target split);
 * `allowUnpaired` keeps images without labels instead of failing (they are reported in `unpaired`);
 * `orphans: 'report'` lists labels without an image in `orphanLabels` instead of failing.
 */
export async function scanDataset(
  layout: DatasetLayout, opts: { labelled?: boolean; allowUnpaired?: boolean; orphans?: 'fail' | 'report' } = {},
): Promise<Dataset & { unpaired: string[]; orphanLabels: string[] }> {
  const labelled = opts.labelled ?? layout.labels.length > 0;
  if (!(await isDir(layout.root))) {
    if (await fs.stat(layout.root).then(() => true, () => false)) {
      throw new Ir2fError('DATASET_LAYOUT', `dataset '${layout.name}': ${layout.root} is a file; give the dataset's folder. Expected:\n${layout.expectedTree}`);
    }
    throw missingFolder(layout, '.');
  }
  const imageRoot = path.join(layout.root, layout.imageDir);
  if (!(await isDir(imageRoot))) throw missingFolder(layout, layout.imageDir);
  const suffixes = layout.imageSuffixes ?? [layout.imageSuffix];
  const images = await listFiles(imageRoot, ...suffixes);
  if (images.length === 0) {
    throw new Ir2fError('DATASET_LAYOUT',
      `dataset '${layout.name}': no '*${suffixes.join("' or '*")}' files in ${imageRoot}. Expected:\n${layout.expectedTree}`);
  }
  const stemOf = (f: string) => f.slice(0, -suffixes.find((x) => endsWithAny(f, [x]))!.length);
  const stems = images.map(stemOf);
  const twice = stems.filter((s, i) => stems.indexOf(s) !== i);
  if (twice.length) {
    throw new Ir2fError('DATASET_PAIRING', `dataset '${layout.name}': image(s) stored twice under different extensions, e.g. ${firstFew(twice)}: keep one of each`);
  }
  const imageFile = new Map(stems.map((s, i) => [s, path.join(imageRoot, images[i])]));
  if (!labelled) {
    return { layout, unpaired: [], orphanLabels: [], items: stems.map((id) => ({ id, image: imageFile.get(id)! })) };
  }
  let source: LabelSource | undefined;
  let labels: string[] = [];
  for (const candidate of layout.labels) {
    const dir = path.join(layout.root, candidate.dir);
    if (!(await isDir(dir))) continue;
    // a raw-id suffix like '.png' also matches '_labelTrainIds.png' files: exclude the preferred suffixes
    const others = layout.labels.filter((l) => l !== candidate && l.suffix.endsWith(candidate.suffix)).map((l) => l.suffix);
    labels = (await listFiles(dir, candidate.suffix)).filter((f) => !others.some((o) => f.endsWith(o)));
    if (labels.length > 0) {
      source = candidate;
      break;
    }
  }
  if (!source && layout.partialLabels) return { layout, items: [], unpaired: stems, orphanLabels: [] };
  if (!source) throw missingFolder(layout, layout.labels[0].dir);
  const labelStems = new Set(labels.map((f) => f.slice(0, -source!.suffix.length)));
  const imageStems = new Set(stems);
  const noLabel = stems.filter((s) => !labelStems.has(s));
  const noImage = [...labelStems].filter((s) => !imageStems.has(s));
  if (noImage.length > 0 && opts.orphans !== 'report') {
    throw new Ir2fError('DATASET_PAIRING',
      `dataset '${layout.name}': ${noImage.length} label(s) have no image, e.g. ${firstFew(noImage.map((s) => s + source!.suffix))}. ` +
      `Images are expected as <name>${layout.imageSuffix} under ${imageRoot}`);
  }
  if (noLabel.length > 0 && !opts.allowUnpaired && !layout.partialLabels) {
    throw new Ir2fError('DATASET_PAIRING',
      `dataset '${layout.name}': ${noLabel.length} image(s) have no label, e.g. ${firstFew(noLabel.map((s) => s + layout.imageSuffix))}. ` +
      `Labels are expected as <name>${source.suffix} under ${path.join(layout.root, source.dir)} ` +
      '(or scan with allowUnpaired: true)');
  }
  const labelDir = path.join(layout.root, source.dir);
  const items: DatasetItem[] = stems
    .filter((s) => labelStems.has(s))
    .map((id) => ({
      id, image: imageFile.get(id)!, label: path.join(labelDir, id + source!.suffix), labelSpec: source!.spec,
    }));
  return { layout, items, labelSource: source, unpaired: noLabel, orphanLabels: noImage.map((s) => s + source!.suffix) };
}
