/**
 * @ir2f/datasets: label specs, readers for the real dataset layouts, transforms, rare-class sampling, a
 * streaming loader, and the seed-generated embedded domain-shift benchmarks.
 */
export {
  CITYSCAPES_CLASSES, CITYSCAPES_IDS, CITYSCAPES_LABELS, CITYSCAPES_PALETTE, CITYSCAPES_TRAIN_IDS, GTA5_LABELS,
  IGNORE_INDEX, SYNTHIA_13, SYNTHIA_13_CLASSES, SYNTHIA_16, SYNTHIA_16_CLASSES, SYNTHIA_ID_TO_TRAIN_ID, lookupTable,
  type CityscapesLabel, type LabelSpec,
} from './label-specs.js';
export {
  colorize, readLabel, readRawLabel, readRgb, writeGrayPng, writeIndexedPng, writeRgbPng,
  type LabelMap, type LabelReadResult, type OutOfSpecPolicy, type RgbImage,
} from './image-io.js';
export {
  joinLabelSpecs, labelSpecFromObject, LabelSpecFileSchema, packRgb, readLabelSpecFile, type CustomLabelSpec, type LabelSpecFile,
} from './label-spec-file.js';
export {
  acdc, cityscapes, darkZurich, folder, FOLDER_IMAGE_SUFFIXES, folderSplits, gta5, scanDataset, synthia,
  type Dataset, type DatasetItem, type DatasetLayout, type LabelSource,
} from './layouts.js';
export {
  horizontalFlip, IMAGENET_MEAN, IMAGENET_STD, keepRatioSize, normalize, photometricDistortion, randomCrop, resize,
  RESIZE_DEFAULTS, type Sample,
} from './transforms.js';
export { checkDataset, type DataCheckOptions, type DataCheckProblem, type DataCheckReport } from './data-check.js';
export { classStats, fileListHash, rareClassSampler, type ClassStats, type RareClassSampler } from './class-stats.js';
export {
  BatchLoader, createLoader, loadSample, sequentialSampler, shuffledSampler,
  type Batch, type LoaderOptions, type LoaderStats, type Sampler,
} from './loader.js';
export {
  benchmarkLayouts, defaultCacheDir, EMBEDDED_BENCHMARKS, EMBEDDED_DESCRIPTIONS, EMBEDDED_VERSION, ensureBenchmark, makeBenchmark,
  type EmbeddedBenchmark, type EmbeddedBenchmarkName, type MakeOptions,
} from './embedded/benchmarks.js';
export { imageGridPng, writeImageGrid, writePreviewGrid } from './embedded/preview.js';
export {
  ALL_CLASS_IDS, EMBEDDED_CLASS_IDS, EXTRA_PRIORS, HIGH_WIDE_PRIORS, layoutScene, SOURCE_PRIORS, TARGET_PRIORS,
  type ExtraPriors, type GeometryPriors, type LightSource, type Scene, type SceneObject,
} from './embedded/street-scene.js';
export { renderScene, type DomainStyleName } from './embedded/render.js';
export { applyLens, type LensPriors } from './embedded/lens.js';
export { evalSamples, udaData, type UdaDataOptions } from './uda-data.js';
