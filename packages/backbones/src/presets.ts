/**
 * Model presets by name. Sizes follow the papers; `*-tiny` presets are sized for the embedded benchmarks
 * on 2 CPU cores.
 */
import { Ir2fError, Rng } from '@ir2f/core';
import { DeepLabV2Head } from './deeplabv2-head.js';
import { ResNet, type ResNetOptions } from './resnet.js';
import { SegmentationModel } from './segmentor.js';

export interface PresetOptions {
  numClasses?: number;
  seed?: number;
}

type Factory = (o: Required<PresetOptions>) => SegmentationModel;

function deeplabv2(name: string, resnet: ResNetOptions): Factory {
  return ({ numClasses, seed }) => {
    const rng = new Rng(seed);
    const backbone = new ResNet({ outputStride: 8, ...resnet }, rng.fork('backbone'));
    const head = new DeepLabV2Head({ inChannels: backbone.channels[3], numClasses }, rng.fork('head'));
    return new SegmentationModel(backbone, head, name);
  };
}

const PRESETS: Record<string, Factory> = {
  'resnet101-deeplabv2': deeplabv2('resnet101-deeplabv2', { depth: 101 }),
  'resnet50-deeplabv2': deeplabv2('resnet50-deeplabv2', { depth: 50 }),
  'resnet18-deeplabv2': deeplabv2('resnet18-deeplabv2', { depth: 18 }),
  'resnet-tiny-deeplabv2': deeplabv2('resnet-tiny-deeplabv2', { depth: 18, layers: [1, 1, 1, 1], width: 16 }),
};

export const PRESET_NAMES = Object.keys(PRESETS);

export function createModel(preset: string, opts: PresetOptions = {}): SegmentationModel {
  const factory = PRESETS[preset];
  if (!factory) throw new Ir2fError('INVALID_ARGUMENT', `unknown model preset '${preset}'; available: ${PRESET_NAMES.join(', ')}`);
  return factory({ numClasses: opts.numClasses ?? 19, seed: opts.seed ?? 0 });
}
