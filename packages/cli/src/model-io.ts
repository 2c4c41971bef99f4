/**
 * Using a trained checkpoint: rebuild its model from the config stored in it, evaluate it on a labelled
 * split, predict PNGs (class map in the Cityscapes palette, overlay, confidence and entropy heat maps),
 * export it to ONNX.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  checkpointPart, createPipeline, currentBackend, evaluate, initBackend, inferLogits, Ir2fError, slidingWindows, windowedLogits, loadState, readCheckpoint, restoreRectifier, Tokens, writeAtomic, writeOnnx, type EvalResult, type LoadedCheckpoint, type Rectifier, type SlideOptions,
} from '@ir2f/core';
import type { SegmentationModel } from '@ir2f/backbones';
import {
  colorize, evalSamples, normalize, readRgb, scanDataset, writeRgbPng, type RgbImage,
} from '@ir2f/datasets';
import { RunConfigSchema, type DataSpec, type RunConfig } from './config.js';
import { buildModel, layoutOf, loadPlugins, resolveLayouts, runLabelSpec } from './run-setup.js';
import { assertFileOrAbsent, assertFolderOrAbsent } from './paths.js';

export type Which = 'student' | 'teacher';

/** A checkpoint's student or teacher, rebuilt from its stored config; pass the loaded checkpoint to read the file once. */
export async function loadTrained(
  source: string | LoadedCheckpoint, which: Which = 'student',
): Promise<{ model: SegmentationModel; config: RunConfig; step: number; checkpoint: LoadedCheckpoint }> {
  const ckpt = typeof source === 'string' ? await readCheckpoint(source) : source;
  const file = ckpt.file;
  const parsed = RunConfigSchema.safeParse(ckpt.meta.config);
  if (!parsed.success) {
    throw new Ir2fError('INVALID_CHECKPOINT', `${file} was not written by 'ir2f train' (its config is not a run config): load it with the core API`);
  }
  if (!currentBackend()) await initBackend(parsed.data.backend);
  const model = buildModel(parsed.data);
  try {
    await loadState(model, checkpointPart(ckpt, which), { label: `${which} of ${file}` });
  } catch (err) {
    model.dispose();
    throw err;
  }
  model.eval();
  return { model, config: parsed.data, step: ckpt.meta.step, checkpoint: ckpt };
}

export interface EvalReport {
  miou: number;
  perClass: Record<string, number | null>;
  pixelAccuracy: number;
  images: number;
  classes: number[];
  checkpoint: string;
  step: number;
  model: Which;
  data: string;
}

export async function evalCheckpoint(file: string, opts: { data?: DataSpec; which?: Which; limit?: number }): Promise<EvalReport & { result: EvalResult }> {
  const { model, config, step } = await loadTrained(file, opts.which);
  try {
    const own = opts.data ? undefined : await resolveLayouts(config);
    let layout = opts.data ? await layoutOf(opts.data, runLabelSpec(config)) : own!.val;
    let classes = config.data.evalClasses ?? (own?.classes && [...own.classes]);
    if (!layout) throw new Ir2fError('INVALID_ARGUMENT', 'no validation data in the checkpoint\'s config: pass --data <layout>:<dir>');
    const ds = await scanDataset(layout);
    const items = opts.limit ? ds.items.slice(0, opts.limit) : ds.items;
    classes ??= [...(ds.labelSource?.spec.evalClasses ?? Array.from({ length: config.model.numClasses }, (_, i) => i))];
    // at the scale the run evaluated at (data.resize.val), so that the numbers match its own evaluation
    const result = await evaluate(model, evalSamples(items, config.data.resize.val), { numClasses: config.model.numClasses, classes, slide: config.data.slide });
    const names = ds.labelSource?.spec.classes ?? [];
    const perClass = Object.fromEntries(classes.map((c) => [names[c] ?? `class ${c}`, result.perClassIoU[c]]));
    layout = ds.layout;
    return {
      miou: result.miou, perClass, pixelAccuracy: result.pixelAccuracy, images: result.images, classes, checkpoint: file, step,
      model: opts.which ?? 'student', data: `${layout.name} (${layout.root})`, result,
    };
  } finally {
    model.dispose();
  }
}

/** A heat colour for v ∈ [0, 1] (dark blue → red → yellow), for confidence/entropy/rectification maps. */
export function heatColor(v: number): [number, number, number] {
  const stops: [number, number, number][] = [[13, 8, 135], [126, 3, 168], [204, 71, 120], [248, 149, 64], [240, 249, 33]];
  const x = Math.min(Math.max(Number.isFinite(v) ? v : 0, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const f = x - i;
  return stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f)) as [number, number, number];
}

export function heatMap(values: Float32Array, width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  values.forEach((v, i) => data.set(heatColor(v), i * 3));
  return { data, width, height };
}

const IMAGE_EXT = /\.(png|jpe?g|webp|tiff?)$/i;

async function listImages(input: string): Promise<string[]> {
  let st;
  try {
    st = await fs.stat(input);
  } catch {
    throw new Ir2fError('INVALID_ARGUMENT', `--input ${input} does not exist`);
  }
  if (!st.isDirectory()) return [input];
  const out: string[] = [];
  for (const e of await fs.readdir(input, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && IMAGE_EXT.test(e.name)) out.push(path.join(e.parentPath, e.name));
  }
  if (!out.length) throw new Ir2fError('INVALID_ARGUMENT', `no images (png, jpg, webp, tif) under ${input}`);
  return out.sort();
}

export interface PredictOptions {
  which?: Which;
  /** Also write confidence (max probability) and entropy heat maps. */
  probs?: boolean;
  /** Also write the rectification map r at `scale`× the image resolution (a continuous rectifier's). */
  rectification?: { scale: number };
  slide?: SlideOptions;
}

/** The checkpoint's trained rectifier, rebuilt from its config's plugins for `model`'s head. */
export async function loadTrainedRectifier(
  ckpt: LoadedCheckpoint, config: RunConfig, model: SegmentationModel,
): Promise<{ rectifier: Rectifier; dispose(): Promise<void> }> {
  const pipeline = createPipeline({
    backbone: model.backbone, decodeHead: model.decodeHead, plugins: await loadPlugins(config.plugins), require: ['Rectifier'],
  });
  const rectifier = pipeline.resolve(Tokens.Rectifier);
  if (!rectifier.rectifyGrid) {
    await pipeline.dispose();
    throw new Ir2fError('INVALID_ARGUMENT',
      `${ckpt.file} was trained with a rectifier that has no rectification map (${rectifier.constructor.name}): train with @ir2f/plugin-inr-rectifier to get one`);
  }
  restoreRectifier(ckpt, rectifier.variables);
  return { rectifier, dispose: () => pipeline.dispose() };
}

/**
 * Class, max probability and normalised entropy per pixel of host logits [1, H, W, K] (row-major), in one pass
 * on the host: a large image needs no full-size probability tensor.
 */
export function pixelMaps(logits: Float32Array, K: number): { labels: Uint8Array; confidence: Float32Array; entropy: Float32Array } {
  const n = logits.length / K;
  const labels = new Uint8Array(n);
  const confidence = new Float32Array(n);
  const entropy = new Float32Array(n);
  const logK = Math.log(K);
  for (let p = 0; p < n; p++) {
    const o = p * K;
    let best = 0;
    for (let k = 1; k < K; k++) if (logits[o + k] > logits[o + best]) best = k;
    const m = logits[o + best];
    let z = 0;
    let s = 0;
    for (let k = 0; k < K; k++) {
      const d = logits[o + k] - m;
      const e = Math.exp(d);
      z += e;
      s += e * d;
    }
    // H = log Z − Σ e·d / Z (with d = logit − max), normalised by log K
    labels[p] = best;
    confidence[p] = 1 / z;
    entropy[p] = (Math.log(z) - s / z) / logK;
  }
  return { labels, confidence, entropy };
}

/** Class map, overlay (and optionally confidence and entropy) PNGs for each input image; returns the files. */
export async function predictImages(file: string, input: string, outDir: string, opts: PredictOptions = {}): Promise<string[]> {
  const images = await listImages(input);
  await assertFolderOrAbsent(outDir, '--out');
  const { model, config, checkpoint } = await loadTrained(file, opts.which);
  const palette = runLabelSpec(config).palette;
  const written: string[] = [];
  const rect = opts.rectification ? await loadTrainedRectifier(checkpoint, config, model).catch((err) => {
    model.dispose();
    throw err;
  }) : undefined;
  try {
    await fs.mkdir(outDir, { recursive: true });
    for (const imgFile of images) {
      const img = await readRgb(imgFile);
      const { width, height } = img;
      const x = tf.tensor4d(normalize(img), [1, height, width, 3]);
      // a large image's logits stay on the host (windowed), a small one's are read back
      const windows = slidingWindows(x, opts.slide ?? config.data.slide);
      let logits: { values: Float32Array; shape: number[] };
      if (windows) logits = windowedLogits(model, x, windows);
      else {
        const t = inferLogits(model, x);
        logits = { values: t.dataSync() as Float32Array, shape: t.shape };
        t.dispose();
      }
      x.dispose();
      const maps = pixelMaps(logits.values, logits.shape[3]);
      const stem = path.join(outDir, path.basename(imgFile).replace(IMAGE_EXT, ''));
      const color = colorize({ data: maps.labels, width, height }, palette);
      const overlay = { width, height, data: color.data.map((c, i) => Math.round(0.5 * c + 0.5 * img.data[i])) };
      const outputs: [string, RgbImage][] = [[`${stem}_pred.png`, color], [`${stem}_overlay.png`, overlay]];
      if (opts.probs) outputs.push([`${stem}_confidence.png`, heatMap(maps.confidence, width, height)], [`${stem}_entropy.png`, heatMap(maps.entropy, width, height)]);
      if (rect && opts.rectification) {
        // r from the model's own embedding and log-probabilities, at scale× the image resolution
        const [rh, rw] = [Math.round(height * opts.rectification.scale), Math.round(width * opts.rectification.scale)];
        const r = tf.tidy(() => {
          const out = model.forward(tf.tensor4d(normalize(img), [1, height, width, 3]));
          return rect.rectifier.rectifyGrid!(out.embedding, tf.logSoftmax(out.logits) as tf.Tensor4D, rh, rw);
        });
        outputs.push([`${stem}_rectification.png`, heatMap(await r.data() as Float32Array, rw, rh)]);
        r.dispose();
      }
      for (const [f, im] of outputs) {
        await writeRgbPng(f, im);
        written.push(f);
      }
    }
  } finally {
    model.dispose();
    await rect?.dispose();
  }
  return written;
}

export async function exportCheckpoint(
  file: string, onnxFile: string | undefined, opts: { which?: Which; opset?: number; rectifier?: string } = {},
): Promise<{ bytes: number; rectifierBytes?: number }> {
  for (const [f, flag] of [[onnxFile, '--onnx'], [opts.rectifier, '--rectifier']] as const) if (f) await assertFileOrAbsent(f, flag);
  const { model, config, checkpoint } = await loadTrained(file, opts.which);
  try {
    let bytes = 0;
    if (onnxFile) {
      await writeOnnx(model, onnxFile, { opset: opts.opset });
      bytes = (await fs.stat(onnxFile)).size;
    }
    if (!opts.rectifier) return { bytes };
    const rect = await loadTrainedRectifier(checkpoint, config, model);
    try {
      if (!rect.rectifier.exportOnnx) {
        throw new Ir2fError('INVALID_ARGUMENT', `the rectifier of ${file} (${rect.rectifier.constructor.name}) cannot export itself to ONNX`);
      }
      const onnx = rect.rectifier.exportOnnx({ opset: opts.opset });
      await writeAtomic(opts.rectifier, onnx);
      return { bytes, rectifierBytes: onnx.byteLength };
    } finally {
      await rect.dispose();
    }
  } finally {
    model.dispose();
  }
}
