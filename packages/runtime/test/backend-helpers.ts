import * as tf from '@tensorflow/tfjs';

/** The last queued `onBackend` run: each waits for the one before it. */
let queue: Promise<unknown> = Promise.resolve();

/**
 * Run `fn` with `backend` active, returning plain arrays so results can be compared across backends. Runs are
 * queued: ava runs a file's tests concurrently, and two tests switching the one global backend around their
 * awaits would otherwise run each other's `fn` on the wrong backend.
 */
export function onBackend<T>(backend: string, fn: () => T): Promise<T> {
  const run = queue.then(async () => {
    const previous = tf.getBackend();
    await tf.setBackend(backend);
    try {
      if (tf.getBackend() !== backend) throw new Error(`onBackend: '${backend}' did not become the active backend`);
      return fn();
    } finally {
      if (previous) await tf.setBackend(previous);
    }
  });
  queue = run.catch(() => undefined);
  return run;
}

/** Deterministic pseudo-random values (test inputs only). */
export function randomArray(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

/**
 * max |a−b| / max(max|b|, minScale): relative to the reference's scale, robust to near-zero entries. `minScale`
 * (default 1e-6) floors the scale, e.g. at a fraction of a whole model's gradients where one parameter's are
 * analytically zero and their values are rounding noise.
 */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>, minScale = 1e-6): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let maxDiff = 0;
  let scale = minScale;
  for (let i = 0; i < a.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return maxDiff / scale;
}

export type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

/** A convolution test case (NHWC input, HWIO filter). */
export interface ConvCase {
  x: [number, number, number, number];
  filter: [number, number, number, number];
  strides: [number, number];
  pad: Pad;
  dilations: [number, number];
}
