/**
 * Import of ImageNet-pretrained encoder weights from safetensors files named as the common PyTorch
 * checkpoints name them. One table per source format, all in this file: `merge` rewrites the tensor set
 * where one of our parameters is two of theirs (Hugging Face's separate key/value), `rename` maps a
 * checkpoint name to the encoder's state name or null to skip it on purpose (classifier heads, batch
 * counters, decode heads).
 */
import {
  decodeSafetensors, loadState, type LoadReport, type Module, type SafeTensor,
} from '@ir2f/core';
import { promises as fs } from 'node:fs';

export type WeightFormat = 'torchvision-resnet' | 'mmseg-mit' | 'hf-segformer';

export interface WeightMap {
  merge?: (tensors: Map<string, SafeTensor>) => Map<string, SafeTensor>;
  rename: (name: string) => string | null;
}

const HF_BLOCK = /^segformer\.encoder\.block\.(\d+)\.(\d+)\.(.+)$/;
const HF_BLOCK_PARTS: [RegExp, string][] = [
  [/^layer_norm_1\./, 'norm1.'],
  [/^layer_norm_2\./, 'norm2.'],
  [/^attention\.self\.query\./, 'attn.q.'],
  [/^attention\.self\.kv\./, 'attn.kv.'],
  [/^attention\.self\.sr\./, 'attn.sr.'],
  [/^attention\.self\.layer_norm\./, 'attn.norm.'],
  [/^attention\.output\.dense\./, 'attn.proj.'],
  [/^mlp\.dense1\./, 'mlp.fc1.'],
  [/^mlp\.dwconv\.dwconv\./, 'mlp.dwconv.dwconv.'],
  [/^mlp\.dense2\./, 'mlp.fc2.'],
];

/** Concatenate two same-shaped PyTorch tensors along dim 0 (raw bytes, row-major). */
function catDim0(a: SafeTensor, b: SafeTensor): SafeTensor {
  const data = new Uint8Array(a.data.byteLength + b.data.byteLength);
  data.set(a.data, 0);
  data.set(b.data, a.data.byteLength);
  return { dtype: a.dtype, shape: [a.shape[0] + b.shape[0], ...a.shape.slice(1)], data };
}

export const WEIGHT_MAPS: Record<WeightFormat, WeightMap> = {
  // torchvision resnet*.pth: conv1/bn1/layerN.M.* as ours; fc.* is the ImageNet classifier
  'torchvision-resnet': {
    rename: (name) => (name.startsWith('fc.') || name.endsWith('.num_batches_tracked') ? null : name),
  },
  // NVlabs SegFormer / DAFormer mit_b*.pth, bare or under mmseg's `backbone.`; `head.*` is the ImageNet classifier
  'mmseg-mit': {
    rename: (name) => {
      if (name.startsWith('decode_head.') || name.startsWith('auxiliary_head.')) return null;
      const n = name.startsWith('backbone.') ? name.slice('backbone.'.length) : name;
      return n.startsWith('head.') ? null : n;
    },
  },
  // Hugging Face transformers SegformerForImageClassification / ForSemanticSegmentation
  'hf-segformer': {
    merge: (tensors) => {
      const out = new Map<string, SafeTensor>();
      for (const [name, t] of tensors) {
        if (/\.attention\.self\.value\./.test(name)) continue;
        const key = name.match(/^(.*)\.attention\.self\.key\.(weight|bias)$/);
        if (key) {
          const value = tensors.get(`${key[1]}.attention.self.value.${key[2]}`);
          if (value) {
            out.set(`${key[1]}.attention.self.kv.${key[2]}`, catDim0(t, value));
            continue;
          }
        }
        out.set(name, t);
      }
      return out;
    },
    rename: (name) => {
      if (!name.startsWith('segformer.encoder.')) return null; // decode_head.*, classifier.*
      let m = name.match(/^segformer\.encoder\.patch_embeddings\.(\d+)\.(proj|layer_norm)\.(weight|bias)$/);
      if (m) return `patch_embed${Number(m[1]) + 1}.${m[2] === 'proj' ? 'proj' : 'norm'}.${m[3]}`;
      m = name.match(/^segformer\.encoder\.layer_norm\.(\d+)\.(weight|bias)$/);
      if (m) return `norm${Number(m[1]) + 1}.${m[2]}`;
      m = name.match(HF_BLOCK);
      if (m) {
        for (const [re, ours] of HF_BLOCK_PARTS) {
          if (re.test(m[3])) return `block${Number(m[1]) + 1}.${m[2]}.${m[3].replace(re, ours)}`;
        }
      }
      return name; // unknown: reported as unexpected
    },
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
  const bytes = typeof source === 'string' ? new Uint8Array(await fs.readFile(source)) : source;
  let tensors = decodeSafetensors(bytes).tensors;
  if (map.merge) tensors = map.merge(tensors);
  const label = typeof source === 'string' ? source : `the given ${opts.format} weights`;
  return loadState(encoder, tensors, { rename: map.rename, allowPartial: opts.allowPartial, label });
}
