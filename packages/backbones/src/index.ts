/**
 * @ir2f/backbones: segmentation encoders and decode heads implementing core's `Backbone` and `DecodeHead`,
 * with ONNX emitters and PyTorch-named state for safetensors weights.
 */
export { BasicBlock, Bottleneck, ResNet, RESNET_DEPTHS, type BlockArgs, type ResNetOptions } from './resnet.js';
export { DeepLabV2Head, type DeepLabV2HeadOptions } from './deeplabv2-head.js';
export { MIT_VARIANTS, MixVisionTransformer, type MiTOptions } from './mit.js';
export { DAFormerHead, SegFormerHead, type MLPHeadOptions } from './mlp-heads.js';
export { SegmentationModel, type OnnxDecodeHead, type OnnxEncoder } from './segmentor.js';
export { createModel, PRESET_NAMES, type PresetOptions } from './presets.js';
export { importEncoderWeights, WEIGHT_MAPS, type ImportOptions, type WeightFormat, type WeightMap } from './weight-import.js';
