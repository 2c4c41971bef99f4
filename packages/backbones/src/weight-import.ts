/**
 * Import of ImageNet-pretrained encoder weights from safetensors files named as the common PyTorch
 * checkpoints name them. One table per source format maps a checkpoint name to the encoder's state name
 * (null = not part of the encoder, skipped on purpose: classifier heads, batch counters).
 */
import { loadState, type LoadReport, type Module } from '@ir2f/core';

export type WeightFormat = 'torchvision-resnet';

/** checkpoint tensor name → encoder state name, or null to skip. */
export const WEIGHT_MAPS: Record<WeightFormat, (name: string) => string | null> = {
  // torchvision resnet*.pth: conv1/bn1/layerN.M.* match ours; fc.* is the ImageNet classifier
  'torchvision-resnet': (name) => {
    if (name.startsWith('fc.') || name.endsWith('.num_batches_tracked')) return null;
    return name;
  },
};

export interface ImportOptions {
  format: WeightFormat;
  /** Load what matches and list the rest instead of failing. */
  allowPartial?: boolean;
}

/** Load pretrained encoder weights (a .safetensors path or bytes) into `encoder`. */
export async function importEncoderWeights(encoder: Module, source: string | Uint8Array, opts: ImportOptions): Promise<LoadReport> {
  const map = WEIGHT_MAPS[opts.format];
  if (!map) throw new Error(`unknown weight format '${opts.format}'; available: ${Object.keys(WEIGHT_MAPS).join(', ')}`);
  return loadState(encoder, source, { rename: map, allowPartial: opts.allowPartial });
}
