/** Deterministic host batches for examples and tests: batch i of a domain is the same whatever index a source starts from. */
import { Rng, type HostBatch, type TrainData } from '@ir2f/core';

/** Two images of size×size; labels follow the first channel, so the task is learnable. */
export function syntheticBatch(domain: string, i: number, size: number, classes: number): HostBatch {
  const rng = new Rng(`${domain}-${i}`);
  const images = Float32Array.from(rng.normalArray(2 * size * size * 3));
  const labels = Uint8Array.from({ length: 2 * size * size }, (_, p) => Math.min(classes - 1, Math.max(0, Math.floor(images[p * 3] + 2))));
  return { images, labels, batchSize: 2, height: size, width: size };
}

/** Endless resumable source and target streams. */
export function syntheticData(size: number, classes: number): TrainData {
  const stream = (domain: string) => async function* (from: number) {
    for (let i = from; ; i++) yield syntheticBatch(domain, i, size, classes);
  };
  return { source: stream('s'), target: stream('t') };
}
