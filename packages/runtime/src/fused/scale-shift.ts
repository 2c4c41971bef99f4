/** The check the fused normalisations share: a per-channel scale and shift over x's last axis. */
import type * as tf from '@tensorflow/tfjs';

/** Throws, naming `op` and both sizes, unless `gamma` and `beta` each hold one value per channel of x's last axis. */
export function checkScaleShift(op: string, x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor): void {
  const C = x.shape[x.shape.length - 1];
  if (gamma.size !== C || beta.size !== C) throw new Error(`${op}: gamma and beta need ${C} values (x's last axis), got ${gamma.size} and ${beta.size}`);
}
