/**
 * `ir2f data check <layout>:<dir> [--classes spec]`: scan a dataset as `ir2f train` would read it and print
 * what a user needs before training on it: counts per split, image sizes, label values against the spec,
 * unpaired files, unreadable files and a class-frequency table; a PNG with class-frequency bars and a few
 * images beside their labels in the spec's palette. Problems that would stop a run make the exit code non-zero.
 */
import path from 'node:path';
import sharp from 'sharp';
import { Ir2fError, writeAtomic } from '@ir2f/core';
import {
  checkDataset, colorize, folderSplits, imageGridPng, readLabel, readLabelSpecFile, readRgb, scanDataset, type DataCheckReport, type Dataset,
  type DatasetLayout, type LabelSpec, type RgbImage,
} from '@ir2f/datasets';
import { parseDataArg, type DataSpec } from './config.js';
import { assertFileOrAbsent } from './paths.js';
import { layoutOf } from './run-setup.js';
import type { CheckProgress } from './run-setup.js';

export interface DataCheckCliOptions {
  /** A label-spec file (required for the folder layout). */
  classes?: string;
  /** `source`: every image needs a label; `target`: labels are optional (those present are checked and scored). */
  as?: 'source' | 'target';
  /** The PNG report (default data-check-<dir name>.png in the working folder: the dataset's may be read-only). */
  out?: string;
  onProgress?: CheckProgress;
}

export interface SplitCheck {
  split: string;
  layout: DatasetLayout;
  dataset?: Dataset;
  report?: DataCheckReport;
  unpaired: string[];
  orphanLabels: string[];
  /** Problems that stop the scan itself (missing folder, no images). */
  scanError?: string;
}

export interface DataCheckResult {
  spec: LabelSpec;
  splits: SplitCheck[];
  problems: { split: string; file: string; message: string }[];
  png: string;
}

const hasSplits = (layout: DataSpec['layout']) => !['gta', 'synthia'].includes(layout);

/** The splits `ir2f data check` reads for a dataset argument. */
async function splitsOf(spec: DataSpec): Promise<(string | undefined)[]> {
  if (spec.layout === 'folder') {
    const found = await folderSplits(spec.root);
    return found.length ? found : [undefined];
  }
  return hasSplits(spec.layout) ? ['train', 'val'] : [undefined];
}

export async function dataCheck(arg: string, opts: DataCheckCliOptions, log: (line: string) => void): Promise<DataCheckResult> {
  const base = parseDataArg(arg, 'data check');
  if (base.layout === 'folder' && !opts.classes) {
    throw new Ir2fError('INVALID_ARGUMENT', 'data check folder:<dir> needs the label spec: --classes <spec.yaml>');
  }
  if (opts.classes && base.layout !== 'folder') {
    throw new Ir2fError('INVALID_ARGUMENT', `--classes is for the folder layout; '${base.layout}' has its own classes`);
  }
  const png = opts.out ?? `data-check-${path.basename(path.resolve(base.root))}.png`;
  await assertFileOrAbsent(png, '--out');
  const custom = opts.classes ? readLabelSpecFile(path.resolve(opts.classes)) : undefined;
  const asTarget = opts.as === 'target';
  const splits: SplitCheck[] = [];
  let spec: LabelSpec | undefined = custom;
  for (const split of await splitsOf(base)) {
    const dataSpec: DataSpec = { ...base, split: split as DataSpec['split'], classes: custom ? path.resolve(opts.classes!) : undefined };
    const layout = await layoutOf(dataSpec, custom);
    const name = split ?? 'all';
    const labelled = layout.labels.length > 0;
    const check: SplitCheck = { split: name, layout, unpaired: [], orphanLabels: [] };
    splits.push(check);
    let ds;
    try {
      ds = await scanDataset(layout, { labelled, allowUnpaired: true, orphans: 'report' });
    } catch (err) {
      // a target split without a label folder is read as images only
      const retry = err instanceof Ir2fError && err.code === 'DATASET_LAYOUT' && labelled && asTarget;
      try {
        if (!retry) throw err;
        ds = await scanDataset(layout, { labelled: false });
      } catch (err2) {
        if (!(err2 instanceof Ir2fError)) throw err2;
        check.scanError = err2.message;
        continue;
      }
    }
    check.dataset = ds;
    check.unpaired = ds.unpaired;
    check.orphanLabels = ds.orphanLabels;
    spec ??= ds.labelSource?.spec ?? layout.labels[0]?.spec;
    // images without a label are still checked as images
    const lone = new Set(ds.unpaired);
    const imagesOnly = lone.size ? (await scanDataset(layout, { labelled: false })).items.filter((i) => lone.has(i.id)) : [];
    check.report = await checkDataset({ ...ds, items: [...ds.items, ...imagesOnly] }, {
      numClasses: spec.classes.length, scored: name === 'val' || (asTarget && ds.items.some((i) => i.label)),
      collect: true, onProgress: opts.onProgress && ((done, total) => opts.onProgress!(split ?? 'folder', done, total)),
    });
  }
  if (!spec) throw new Ir2fError('DATASET_LAYOUT', splits.map((s) => s.scanError).filter(Boolean).join('; ') || `nothing to check under ${base.root}`);
  const problems = splits.flatMap((s) => [
    ...(s.scanError ? [{ split: s.split, file: s.layout.root, message: s.scanError }] : []),
    ...s.orphanLabels.map((f) => ({
      split: s.split, file: f, message: `label ${path.join(s.layout.root, s.layout.labels[0].dir, f)} has no image (expected under ${path.join(s.layout.root, s.layout.imageDir)})`,
    })),
    ...(!asTarget && s.dataset?.labelSource ? s.unpaired.map((id) => ({ split: s.split, file: id, message: `image ${id} has no label (a source image needs one; pass --as target for a target set)` })) : []),
    ...(s.report?.problems ?? []).map((p) => ({ split: s.split, file: p.file, message: p.message })),
  ]);
  printReport(base, spec, splits, problems, log);
  await writeReportPng(png, spec, splits);
  log(`wrote ${png}`);
  const result = { spec, splits, problems, png };
  if (problems.length) {
    throw Object.assign(new Ir2fError('INVALID_ARGUMENT', `data check: ${problems.length} problem(s) would stop training (listed above); first: ${problems[0].message}`), { result });
  }
  return result;
}

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

function printReport(base: DataSpec, spec: LabelSpec, splits: SplitCheck[], problems: DataCheckResult['problems'], log: (line: string) => void): void {
  const encoding = spec.colorToTrainId ? 'colour-coded labels' : 'id labels';
  log(`${base.layout}:${base.root} (label spec '${spec.name}': ${spec.classes.length} classes, ${encoding})`);
  const rows = [['split', 'images', 'labelled', 'no label', 'label, no image', 'unreadable', 'sizes']];
  for (const s of splits) {
    if (s.scanError) {
      rows.push([s.split, '-', '-', '-', '-', '-', s.scanError.split('\n')[0]]);
      continue;
    }
    const r = s.report!;
    const sizes = [...r.sizes].sort((a, b) => b[1] - a[1]);
    rows.push([
      s.split, String((s.dataset?.items.length ?? 0) + s.unpaired.length), String(r.labels), String(s.unpaired.length), String(s.orphanLabels.length),
      String(r.problems.filter((p) => p.code === 'CORRUPT_IMAGE').length),
      sizes.slice(0, 3).map(([k, n]) => `${k} (${n})`).join(', ') + (sizes.length > 3 ? ` … ${sizes.length} sizes` : ''),
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) log('  ' + r.map((v, c) => v.padEnd(widths[c])).join('  ').trimEnd());
  const outside = new Map<number, number>();
  for (const s of splits) for (const [v, n] of s.report?.outOfSpec ?? []) outside.set(v, (outside.get(v) ?? 0) + n);
  const show = (v: number) => (spec.colorToTrainId ? `[${v >> 16}, ${(v >> 8) & 255}, ${v & 255}]` : String(v));
  log(outside.size
    ? `label values outside the spec: ${[...outside].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([v, n]) => `${show(v)} (${n} px)`).join(', ')}`
    : 'label values: all inside the spec');
  const pixels = spec.classes.map((_, k) => splits.reduce((a, s) => a + (s.report?.classPixels[k] ?? 0), 0));
  const images = spec.classes.map((_, k) => splits.reduce((a, s) => a + (s.report?.classImages[k] ?? 0), 0));
  const total = pixels.reduce((a, b) => a + b, 0);
  if (total > 0) {
    log('class frequency (share of labelled pixels, labels containing it):');
    const w = Math.max(...spec.classes.map((c) => c.length));
    spec.classes.forEach((c, k) => log(`  ${c.padEnd(w)}  ${pct(pixels[k] / total).padStart(7)}  ${images[k]}${pixels[k] === 0 ? '   (absent)' : ''}`));
  }
  if (problems.length) {
    log(`problems (${problems.length}):`);
    for (const p of problems.slice(0, 20)) log(`  [${p.split}] ${p.message.split('\n')[0]}`);
    if (problems.length > 20) log(`  … ${problems.length - 20} more`);
  } else {
    log('no problems found');
  }
}

const TILE: [number, number] = [160, 120];

async function tile(img: RgbImage, nearest: boolean): Promise<RgbImage> {
  const { data, info } = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(TILE[0], TILE[1], { fit: 'contain', background: { r: 255, g: 255, b: 255 }, kernel: nearest ? 'nearest' : 'lanczos3' })
    .raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

const esc = (s: string) => s.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]!);

/** Class-frequency bars (in the spec's palette) over a grid of up to 6 image / label pairs. */
async function writeReportPng(file: string, spec: LabelSpec, splits: SplitCheck[]): Promise<void> {
  const pixels = spec.classes.map((_, k) => splits.reduce((a, s) => a + (s.report?.classPixels[k] ?? 0), 0));
  const total = Math.max(1, pixels.reduce((a, b) => a + b, 0));
  const W = 760;
  const rowH = 18;
  const barsH = 50 + spec.classes.length * rowH;
  const rgb = (c: readonly number[]) => `rgb(${c[0]},${c[1]},${c[2]})`;
  const maxShare = Math.max(...pixels) / total || 1;
  const bars = spec.classes.map((c, k) => {
    const y = 40 + k * rowH;
    const w = (pixels[k] / total / maxShare) * 420;
    return `<text x="180" y="${y + 13}" font-size="12" text-anchor="end">${esc(c)}</text>` +
      `<rect x="190" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 4}" fill="${rgb(spec.palette[k] ?? [128, 128, 128])}" stroke="#444" stroke-width="0.5"/>` +
      `<text x="${(196 + w).toFixed(1)}" y="${y + 13}" font-size="11">${pct(pixels[k] / total)}</text>`;
  }).join('\n');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${barsH}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="22" font-size="15" text-anchor="middle">class frequency (labelled pixels): ${esc(spec.name)}</text>
${bars}
</svg>`;
  const layers: { input: Buffer; top: number; left: number }[] = [{ input: await sharp(Buffer.from(svg)).png().toBuffer(), top: 0, left: 0 }];
  let height = barsH;
  const pairs = splits.flatMap((s) => (s.dataset?.items ?? []).filter((i) => i.label).slice(0, 3));
  if (pairs.length) {
    const rows: RgbImage[][] = [];
    for (let i = 0; i < pairs.length; i += 2) {
      const row: RgbImage[] = [];
      for (const item of pairs.slice(i, i + 2)) {
        try {
          const label = await readLabel(item.label!, item.labelSpec!, 'ignore');
          row.push(await tile(await readRgb(item.image), false), await tile(colorize(label, spec.palette), true));
        } catch {
          // an unreadable pair is already among the problems
        }
      }
      if (row.length) rows.push(row);
    }
    if (rows.length) {
      const grid = await imageGridPng(rows, { scale: 1, groupEvery: 2 });
      const meta = await sharp(grid).metadata();
      layers.push({ input: grid, top: height + 10, left: Math.max(0, Math.round((W - (meta.width ?? 0)) / 2)) });
      height += 20 + (meta.height ?? 0);
    }
  }
  const out = await sharp({ create: { width: W, height, channels: 3, background: { r: 255, g: 255, b: 255 } } }).composite(layers).png().toBuffer();
  await writeAtomic(file, out);
}
