/**
 * @ir2f/core: extension points and their DI tokens, the plugin API, typed events, the UDA training loop, and
 * seeded randomness, on @ir2f/runtime (backends, kernels, gradients).
 */
export { container, inject, injectable, instanceCachingFactory, singleton, Lifecycle } from './di.js';
export type { DependencyContainer, InjectionToken } from './di.js';
export type {
  Backbone, DecodeHead, DecodeOutput, Disposable, EventBus, Loss, LossInput, LossOutput, MixBatch, MixResult, Mixer,
  PseudoLabeler, PseudoLabels, Rectified, Rectifier, RectifierSourceSide, RectifyInput, StepContext,
} from './contracts.js';
export { Tokens, TOKEN_PROVIDERS, tokenName, type TokenName } from './tokens.js';
export {
  EVENT_SCHEMA_VERSION, RxEventBus, ofType, type EventOf, type Ir2fEvent, type Ir2fEventInput, type Ir2fEventType,
  type SmallMap,
} from './events.js';
export { definePlugin, describeIssues, type Ir2fPlugin, type PluginDefinition, type PluginFactory } from './plugin.js';
/** zod, as core validates plugin options with it: plugins define their schemas with this instance. */
export { z } from 'zod';
export { createPipeline, type Binding, type Constructor, type Pipeline, type PipelineOptions, type PipelineParts } from './pipeline.js';
export { IdentityRectifier } from './rectifier-identity.js';
export { ConfidenceRectifier, ConfidenceRectifierOptionsSchema, confidenceRectifier } from './rectifier-confidence.js';
export { RECTIFIER_WEIGHTINGS, redistributeWeight, type RectifierWeighting } from './rectifier-weighting.js';
export { Rng, type RngState } from './rng.js';
export { boundaryMask, ConfusionMatrix, expectedCalibrationError } from './metrics.js';
// the runtime's backend API, re-exported so that a pipeline needs one import (see README: why)
export {
  currentBackend, describeBackend, initBackend, wasmThreads, BACKEND_NAMES, DENSE_KERNELS, RuntimeError, stopGradient, withoutGradients,
  type BackendInfo, type BackendName, type BackendOptions, type DenseKernels, type RuntimeErrorCode,
} from '@ir2f/runtime';
export { Ir2fError, type Ir2fErrorCode } from './errors.js';
export { Layer, Module, ModuleList, fromTorch, toTorch, torchShape, type ParamLayout, type StateEntry } from './nn/module.js';
export {
  BatchNorm2d, Conv2d, ConvBnReLU, Dropout, GELU, LayerNorm, Linear, MaxPool2d, ReLU, resizeTo, runningStats, Sequential, setRunningStats, snapshotRunningStats,
  type Conv2dOptions,
} from './nn/layers.js';
// the ONNX graph builder is the runtime's; emitters (Module.toOnnx) write into it, so it is core's export API too
export { attr, OnnxGraph, type Dim, type OnnxAttr } from '@ir2f/runtime';
export { unsupportedOp } from './onnx/unsupported-op.js';
export { exportOnnx, writeOnnx, type ExportOptions, type OnnxExportable } from './onnx/export.js';
export {
  decodeSafetensors, describeFsError, encodeSafetensors, loadState, saveState, stateTensors, writeAtomic,
  type LoadOptions, type LoadReport, type SafeDtype, type SafeTensor,
} from './weights/safetensors.js';
export { ConfidencePseudoLabeler, type ConfidencePseudoLabelerOptions } from './defaults/pseudo-labeler-confidence.js';
export { pixelCrossEntropy, WeightedCrossEntropy } from './defaults/loss-weighted-ce.js';
export { ClassMix, classMixMask, gaussianBlur, type ClassMixOptions } from './defaults/mixer-classmix.js';
export { colorJitter, colorJitterComposed, drawColorJitter, type ColorJitterParams } from './defaults/color-jitter.js';
export { emaAlpha, emaUpdate, emaUpdateModule } from './defaults/ema.js';
export {
  AdamW, DAFORMER_PARAM_RULES, paramGroups, polyLr,
  type AdamWOptions, type ParamGroup, type ParamRule, type ScheduleOptions,
} from './optim/adamw.js';
export {
  DataParallelStepper, mergeRunningStats, replicaState, siblingModule, type BatchMessage, type Replica, type ReplicaSpec,
} from './train/data-parallel.js';
export { ReplicaProbe, type ReplicaChoice, type ReplicaProbeOptions } from './train/replica-probe.js';
export {
  applyUpdate, hasSourceLoss, joinPasses, rectifierSourcePass, sourceLabels, sourcePass, stepVariables, targetPass, type PassResult,
  type SourceLabels, type StepOptions,
} from './train/uda-step.js';
export {
  downscaleLabels, udaStep, type FeatureDistance, type SegmentationNetwork, type TrainMode, type UdaBatch, type UdaParts,
  type UdaStepResult,
} from './train/uda-step.js';
export {
  assertResumable, RESUMABLE_FIELDS, stepPartsFor, toTensors, train, TrainConfigSchema, type HostBatch, type TrainConfig, type TrainConfigInput, type TrainData,
  type TrainerOptions, type TrainResult,
} from './train/trainer.js';
export {
  canonicalJson, CHECKPOINT_FORMAT, checkpointFile, checkpointPart, configDiff, configHash, latestCheckpoint, listCheckpoints,
  readCheckpoint, restoreCheckpoint, restoreLossState, restoreRectifier, saveCheckpoint, type CheckpointMeta, type CheckpointState, type LoadedCheckpoint,
} from './train/checkpoint.js';
export {
  AUTO_SLIDE, AUTO_SLIDE_PIXELS, evaluate, inferLogits, MIN_SIDE, slidingWindows, windowedLogits,
  type EvalResult, type EvalSample, type Predictor, type SlideOptions,
} from './train/evaluate.js';
