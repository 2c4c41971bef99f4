/** @ir2f/cli: the `ir2f` command, also callable in-process, and the pieces it is built from. */
export { buildProgram, runCli, type CliIo } from './program.js';
export { dataMake, type DataMakeOptions } from './data-make.js';
export {
  applySet, DataSpecSchema, LAYOUT_NAMES, loadRawConfig, merge, parseDataArg, resolveConfig, RunConfigSchema, THING_CLASSES,
  type ConfigOverrides, type DataSpec, type Json, type LayoutName, type RunConfig,
} from './config.js';
export { PRESETS, type Preset } from './presets.js';
export { buildData, buildModel, buildModels, buildPipeline, layoutOf, loadPlugins, resolveLayouts, type CheckProgress, type ResolvedData } from './run-setup.js';
export { replicaPlan, runTraining, type TrainRunOptions, type TrainRunResult } from './train-run.js';
export { buildReplica } from './replica.js';
export { checkProgress, jsonlLog, progress, recordHistory, type History } from './subscribers.js';
export { curvesSvg, writeCurvesPng } from './curves.js';
export {
  evalCheckpoint, exportCheckpoint, heatColor, heatMap, loadTrained, pixelMaps, loadTrainedRectifier, predictImages, type EvalReport, type PredictOptions, type Which,
} from './model-io.js';
export { benchInterleaved, benchStep, kernelFlops, kernelTotals, type KernelRecord, type KernelTotal, type StepBenchOptions, type StepBenchResult } from './bench-step.js';
