/**
 * Model presets by name. Sizes follow the papers; `*-tiny` presets are sized for the embedded benchmarks
 * on 2 CPU cores.
 */
import { Ir2fError, Rng } from '@ir2f/core';
import { DeepLabV2Head } from './deeplabv2-head.js';
import { MIT_VARIANTS, MixVisionTransformer } from './mit.js';
import { DAFormerHead, SegFormerHead } from './mlp-heads.js';
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

function mit(name: string, variant: string, head: 'segformer' | 'daformer', embedDim: number): Factory {
  return ({ numClasses, seed }) => {
    const rng = new Rng(seed);
    const backbone = new MixVisionTransformer(MIT_VARIANTS[variant], rng.fork('backbone'));
    const opts = { inChannels: backbone.channels, numClasses, embedDim };
    const decode = head === 'segformer' ? new SegFormerHead(opts, rng.fork('head')) : new DAFormerHead(opts, rng.fork('head'));
    return new SegmentationModel(backbone, decode, name);
  };
}

const PRESETS: Record<string, Factory> = {
  // DAFormer (Hoyer et al. 2022) and IR2F: MiT-B5 with the context-aware fusion head, embedding 256
  'mit-b5-daformer': mit('mit-b5-daformer', 'mit-b5', 'daformer', 256),
  'mit-b0-daformer': mit('mit-b0-daformer', 'mit-b0', 'daformer', 256),
  // SegFormer (Xie et al. 2021): B0 uses a 256-d head, B1–B5 768
  'mit-b0-segformer': mit('mit-b0-segformer', 'mit-b0', 'segformer', 256),
  'mit-b1-segformer': mit('mit-b1-segformer', 'mit-b1', 'segformer', 768),
  'mit-b2-segformer': mit('mit-b2-segformer', 'mit-b2', 'segformer', 768),
  'mit-b3-segformer': mit('mit-b3-segformer', 'mit-b3', 'segformer', 768),
  'mit-b4-segformer': mit('mit-b4-segformer', 'mit-b4', 'segformer', 768),
  'mit-b5-segformer': mit('mit-b5-segformer', 'mit-b5', 'segformer', 768),
  // the embedded default: sized for 96–128 px benchmarks on 2 CPU cores
  'mit-tiny-daformer': mit('mit-tiny-daformer', 'mit-tiny', 'daformer', 64),
  'mit-tiny-segformer': mit('mit-tiny-segformer', 'mit-tiny', 'segformer', 64),
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
