/** ONNX helpers for token ([B, N, C]) ↔ map ([B, C, H, W]) layouts with dynamic H and W. */
import { attr, type OnnxGraph } from '@ir2f/core';

/** [B, C, H, W] → [B, H·W, C]. */
export function mapToTokens(g: OnnxGraph, map: string, prefix: string): string {
  const flat = g.node('Reshape', [map, g.int64s(`${prefix}flat_shape`, [0, 0, -1])], {}, `${prefix}flat`);
  return g.node('Transpose', [flat], { perm: attr.ints([0, 2, 1]) }, `${prefix}tokens`);
}

/** [B, H·W, C] → [B, C, H, W], with H and W read from `shapeOf` (a [B, ·, H, W] tensor's Shape). */
export function tokensToMap(g: OnnxGraph, tokens: string, channels: number, shapeOf: string, prefix: string): string {
  const t = g.node('Transpose', [tokens], { perm: attr.ints([0, 2, 1]) }, `${prefix}to_cn`);
  const hw = g.node('Slice', [shapeOf, g.int64s(`${prefix}hw_s`, [2]), g.int64s(`${prefix}hw_e`, [4])], {}, `${prefix}hw`);
  const shape = g.node('Concat', [g.int64s(`${prefix}bc`, [0, channels]), hw], { axis: attr.int(0) }, `${prefix}map_shape`);
  return g.node('Reshape', [t, shape], {}, `${prefix}map`);
}

/** Bilinear (half-pixel) resize of `x` [B, C, h, w] to the H, W of `like` [B, ·, H, W]. */
export function resizeLike(g: OnnxGraph, x: string, like: string, prefix: string): string {
  const likeShape = g.node('Shape', [like], {}, `${prefix}like_shape`);
  const hw = g.node('Slice', [likeShape, g.int64s(`${prefix}rs_s`, [2]), g.int64s(`${prefix}rs_e`, [4])], {}, `${prefix}like_hw`);
  const xShape = g.node('Shape', [x], {}, `${prefix}x_shape`);
  const bc = g.node('Slice', [xShape, g.int64s(`${prefix}bc_s`, [0]), g.int64s(`${prefix}bc_e`, [2])], {}, `${prefix}x_bc`);
  const sizes = g.node('Concat', [bc, hw], { axis: attr.int(0) }, `${prefix}sizes`);
  return g.node('Resize', [x, '', '', sizes], {
    mode: attr.str('linear'), coordinate_transformation_mode: attr.str('half_pixel'),
  }, `${prefix}resized`);
}
