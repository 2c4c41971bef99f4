/**
 * From a validated run config to the pieces the core trainer takes: models, a pipeline with the configured
 * plugins (loaded only if installed), and the data (@ir2f/datasets' readers and DAFormer pipelines).
 */
import {
  confidenceRectifier,  ClassMix, ConfidencePseudoLabeler, createPipeline, Ir2fError, type EventBus, type Ir2fPlugin, type Pipeline, type TrainData,
} from '@ir2f/core';
import { createModel, importEncoderWeights, PRESET_NAMES, type SegmentationModel } from '@ir2f/backbones';
import {
  acdc, checkDataset, CITYSCAPES_TRAIN_IDS, cityscapes, darkZurich, ensureBenchmark, folder, folderSplits, gta5, joinLabelSpecs, readLabelSpecFile,
  scanDataset, synthia, SYNTHIA_13, SYNTHIA_16, udaData, type CustomLabelSpec, type DatasetLayout, type LabelSpec,
} from '@ir2f/datasets';
import type { DataSpec, RunConfig } from './config.js';

/**
 * The classes the run's model predicts: the source's label-spec file (folder layout) or the Cityscapes
 * classes every other layout and the embedded benchmarks use.
 */
export function runLabelSpec(config: RunConfig): LabelSpec {
  const c = config.data.source?.classes;
  return typeof c === 'string' ? readLabelSpecFile(c) : CITYSCAPES_TRAIN_IDS;
}

/**
 * A folder's labels in the run's classes: its own spec joined to the source's (by `mapping` or by name), or
 * the source's spec itself when the folder has none of its own.
 */
function folderSpec(spec: DataSpec, source: LabelSpec): LabelSpec {
  if (typeof spec.classes !== 'string') return source;
  const own = readLabelSpecFile(spec.classes);
  return (source as CustomLabelSpec).file === own.file ? own : joinLabelSpecs(source, own);
}

/**
 * The layout of one data spec. A folder with split subfolders (images/train, images/val) reads the asked
 * split; one without reads all its images, and as a val split, those of them that have a label.
 */
export async function layoutOf(spec: DataSpec, source: LabelSpec = CITYSCAPES_TRAIN_IDS): Promise<DatasetLayout> {
  switch (spec.layout) {
    case 'folder': {
      const splits = await folderSplits(spec.root);
      const split = spec.split && splits.includes(spec.split) ? spec.split : undefined;
      return folder(spec.root, { spec: folderSpec(spec, source), split, partialLabels: !split && spec.split === 'val' });
    }
    case 'gta': return gta5(spec.root);
    case 'synthia': return synthia(spec.root, spec.classes === 13 ? SYNTHIA_13 : SYNTHIA_16);
    case 'cityscapes': return cityscapes(spec.root, spec.split ?? 'train');
    case 'acdc': return acdc(spec.root, { split: spec.split ?? 'train', condition: spec.condition });
    case 'dark_zurich': return darkZurich(spec.root, { split: spec.split ?? 'train', condition: spec.condition });
  }
}

export function buildModel(config: RunConfig, seed = config.train.seed): SegmentationModel {
  if (!PRESET_NAMES.includes(config.model.preset)) {
    throw new Ir2fError('INVALID_CONFIG', `model.preset: unknown preset '${config.model.preset}'; available: ${PRESET_NAMES.join(', ')}`);
  }
  return createModel(config.model.preset, { numClasses: config.model.numClasses, seed });
}

/** Student, teacher and (with pretrained weights and the feature distance) the frozen ImageNet model. */
export async function buildModels(config: RunConfig): Promise<{ student: SegmentationModel; teacher: SegmentationModel; imnet?: SegmentationModel }> {
  const student = buildModel(config);
  const teacher = buildModel(config);
  let imnet: SegmentationModel | undefined;
  const pre = config.model.pretrained;
  if (pre) {
    await importEncoderWeights(student.backbone, pre.file, { format: pre.format });
    if (config.featureDistance && config.featureDistance.lambda > 0) {
      imnet = buildModel(config);
      await importEncoderWeights(imnet.backbone, pre.file, { format: pre.format });
      imnet.eval();
    }
  }
  return { student, teacher, imnet };
}

/** Import each configured plugin package and build its plugin value with the configured options. */
export async function loadPlugins(specs: RunConfig['plugins']): Promise<Ir2fPlugin[]> {
  const out: Ir2fPlugin[] = [];
  for (const spec of specs) {
    let mod: Record<string, unknown>;
    try {
      mod = await import(spec.package) as Record<string, unknown>;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
        throw new Ir2fError('PLUGIN_NOT_INSTALLED', `plugin package '${spec.package}' is not installed: npm install ${spec.package}`, { cause: err });
      }
      throw err;
    }
    type Factory = ((o?: unknown) => Ir2fPlugin) & { pluginName?: string };
    const factories = Object.values(mod).filter((v): v is Factory => typeof v === 'function' && typeof (v as Factory).pluginName === 'string');
    const factory = factories.find((f) => f.pluginName === spec.package) ?? (factories.length === 1 ? factories[0] : undefined);
    if (!factory) {
      throw new Ir2fError('PLUGIN_OPTIONS',
        `package '${spec.package}' exports ${factories.length ? `several plugins (${factories.map((f) => f.pluginName).join(', ')}) and none named after it` : 'no ir2f plugin (a definePlugin factory)'}`);
    }
    out.push(factory(spec.options));
  }
  return out;
}

export async function buildPipeline(config: RunConfig, student: SegmentationModel): Promise<Pipeline> {
  return createPipeline({
    backbone: student.backbone,
    decodeHead: student.decodeHead,
    pseudoLabeler: { useValue: new ConfidencePseudoLabeler({ threshold: config.pseudoLabeler.threshold }) },
    mixer: {
      useValue: new ClassMix({
        numClasses: config.model.numClasses, colorJitterStrength: config.mixer.colorJitterStrength,
        colorJitterThreshold: 1 - config.mixer.colorJitterProbability, blur: config.mixer.blur,
      }),
    },
    plugins: [
      ...await loadPlugins(config.plugins),
      // after the plugins: a rectifier plugin as well is a conflict that names both
      ...(config.rectifier.type === 'confidence' ? [confidenceRectifier({ weighting: config.rectifier.weighting })] : []),
    ],
  });
}

export interface ResolvedData {
  data: TrainData;
  classes: readonly number[];
  classNames: string[];
  /** Where the data lives, for messages. */
  describe: string;
}

export async function resolveLayouts(config: RunConfig): Promise<{ source: DatasetLayout; target: DatasetLayout; val?: DatasetLayout; classes?: readonly number[] }> {
  const d = config.data;
  if (d.benchmark) {
    const b = await ensureBenchmark(d.benchmark);
    return { source: b.source, target: b.targetTrain, val: b.targetVal, classes: b.classes };
  }
  const spec = runLabelSpec(config);
  return { source: await layoutOf(d.source!, spec), target: await layoutOf(d.target!, spec), val: d.val && await layoutOf(d.val, spec) };
}

/** Progress of the data check before step 1: `split` is 'source', 'target' or 'val'. */
export type CheckProgress = (split: string, done: number, total: number) => void;

export async function buildData(config: RunConfig, bus?: EventBus, onCheck?: CheckProgress): Promise<ResolvedData> {
  const layouts = await resolveLayouts(config);
  const oracle = config.train.mode === 'target-oracle';
  const [source, target, val] = await Promise.all([
    scanDataset(layouts.source),
    scanDataset(layouts.target, { labelled: oracle }),
    layouts.val ? scanDataset(layouts.val) : Promise.resolve(undefined),
  ]);
  const d = config.data;
  if (val && !val.items.length) {
    // a folder target without labels: nothing to evaluate on, which is a normal UDA set-up
    bus?.emit({ type: 'warning', code: 'NO_VAL', message: `no labelled target images under ${val.layout.root}: the run trains without evaluation` });
  }
  const scoredVal = val?.items.length ? val : undefined;
  const limited = scoredVal && d.valLimit > 0 ? { ...scoredVal, items: scoredVal.items.slice(0, d.valLimit) } : scoredVal;
  // every file before step 1: a broken one found at the first evaluation would cost all the steps before it
  const numClasses = config.model.numClasses;
  for (const [split, ds, scored] of [['source', source, false], ['target', target, false], ['val', limited, true]] as const) {
    if (!ds) continue;
    const report = await checkDataset(ds, { numClasses, scored, onCorrupt: d.onCorrupt, onProgress: onCheck && ((done, total) => onCheck(split, done, total)) });
    if (report.skipped.length) {
      const left = new Set(report.skipped.map((s) => s.id));
      ds.items = ds.items.filter((item) => !left.has(item.id));
      for (const s of report.skipped) bus?.emit({ type: 'warning', code: 'CORRUPT_IMAGE', message: `${split}: left out ${s.id}: ${s.reason}` });
      if (!ds.items.length) throw new Ir2fError('CORRUPT_IMAGE', `every ${split} file is unreadable (${report.skipped.length}): check the data under ${ds.layout.root}`);
    }
  }
  const data = await udaData({
    source, target, val: limited, numClasses: config.model.numClasses, batchSize: d.batchSize, crop: d.crop, resize: d.resize,
    rareClass: d.rareClass, photometric: d.photometric, targetLabels: oracle, seed: config.train.seed, bus, onCorrupt: d.onCorrupt,
  });
  const classes = d.evalClasses ?? layouts.classes ?? scoredVal?.labelSource?.spec.evalClasses
    ?? Array.from({ length: config.model.numClasses }, (_, i) => i);
  const names = runLabelSpec(config).classes;
  const classNames = Array.from({ length: config.model.numClasses }, (_, i) => names[i] ?? `class ${i}`);
  if (data.evaluation) Object.assign(data.evaluation, { classes, classNames, slide: d.slide });
  return {
    data, classes, classNames,
    describe: `${source.items.length} source (${source.layout.name}), ${target.items.length} target (${target.layout.name})` +
      (limited ? `, ${limited.items.length} val (${limited.layout.name})` : ''),
  };
}
