/**
 * A generated toy segmentation task: noisy backgrounds with random rectangles and discs, each class with its
 * own colour and texture, so that a small net must use colour and local texture to segment. Deterministic
 * from the RNG. (The domain-shift benchmarks in the real dataset layouts come with @ir2f/datasets.)
 */
import * as tf from '@tensorflow/tfjs';
import type { Rng } from '@ir2f/core';

export const TOY_CLASSES = ['background', 'rectangle', 'disc', 'stripe'] as const;

const COLOURS: [number, number, number][] = [[0.45, 0.45, 0.45], [0.8, 0.25, 0.2], [0.2, 0.55, 0.85], [0.3, 0.75, 0.3]];

export interface ToyBatch {
  images: tf.Tensor4D;
  labels: tf.Tensor3D;
}

export function makeToyBatch(rng: Rng, batch: number, size: number): ToyBatch {
  const img = new Float32Array(batch * size * size * 3);
  const lab = new Int32Array(batch * size * size);
  for (let b = 0; b < batch; b++) {
    const shapes = 2 + rng.int(4);
    const kinds: { cls: number; cx: number; cy: number; a: number; c: number }[] = [];
    for (let s = 0; s < shapes; s++) {
      kinds.push({ cls: 1 + rng.int(3), cx: rng.next() * size, cy: rng.next() * size, a: size * (0.1 + 0.2 * rng.next()), c: size * (0.08 + 0.15 * rng.next()) });
    }
    const tint = [rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1)];
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        let cls = 0;
        for (const k of kinds) {
          const dx = x - k.cx;
          const dy = y - k.cy;
          if (k.cls === 1 && Math.abs(dx) < k.a && Math.abs(dy) < k.c) cls = 1;
          else if (k.cls === 2 && dx * dx + dy * dy < k.a * k.a) cls = 2;
          else if (k.cls === 3 && Math.abs(dx + dy) < k.c * 0.5 && Math.abs(dx - dy) < k.a * 2) cls = 3;
        }
        const i = (b * size + y) * size + x;
        lab[i] = cls;
        // class texture: stripes for class 3, checker for class 1, smooth otherwise
        const texture = cls === 3 ? 0.15 * Math.sin(x * 1.3) : cls === 1 ? 0.1 * (((x >> 1) + (y >> 1)) & 1) : 0;
        for (let ch = 0; ch < 3; ch++) {
          img[i * 3 + ch] = COLOURS[cls][ch] + tint[ch] + texture + rng.normal(0, 0.12);
        }
      }
    }
  }
  return {
    images: tf.tensor4d(img, [batch, size, size, 3]),
    labels: tf.tensor3d(lab, [batch, size, size], 'int32'),
  };
}

/** Pixel accuracy of logits against labels (host-side number). */
export function pixelAccuracy(logits: tf.Tensor4D, labels: tf.Tensor3D): number {
  return tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(logits, 3), labels), 'float32')).dataSync()[0]);
}

/** Mean IoU over classes present in labels or prediction, and IoU per class (null where absent from both). */
export function meanIoU(logits: tf.Tensor4D, labels: tf.Tensor3D, numClasses: number): { miou: number; perClass: (number | null)[] } {
  // read outside tf.tidy: tidy walks a returned typed array element by element
  const argmax = tf.argMax(logits, 3);
  const pred = argmax.dataSync();
  argmax.dispose();
  const truth = labels.dataSync();
  const inter = new Float64Array(numClasses);
  const union = new Float64Array(numClasses);
  for (let i = 0; i < truth.length; i++) {
    const p = pred[i];
    const t = truth[i];
    if (t >= numClasses) continue;
    if (p === t) {
      inter[t]++;
      union[t]++;
    } else {
      union[t]++;
      union[p]++;
    }
  }
  const perClass = Array.from(union, (u, k) => (u > 0 ? inter[k] / u : null));
  const present = perClass.filter((v): v is number => v != null);
  return { miou: present.reduce((a, b) => a + b, 0) / Math.max(1, present.length), perClass };
}
