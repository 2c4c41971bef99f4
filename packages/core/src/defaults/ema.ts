/**
 * The mean teacher (DESIGN §4.1): φ ← α φ + (1 − α) θ with α = min(1 − 1/(t + 1), 0.999), applied to
 * parameters and to batch-norm running statistics (the teacher runs in eval mode, so its statistics would
 * otherwise stay at their initial values).
 */
import * as tf from '@tensorflow/tfjs';
import { blend } from '../nn/blend.js';
import type { Module } from '../nn/module.js';

export function emaAlpha(step: number, max = 0.999): number {
  return Math.min(1 - 1 / (step + 1), max);
}

/** Update teacher state in place from student state (same order and shapes). */
export function emaUpdate(teacher: readonly tf.Variable[], student: readonly tf.Variable[], alpha: number): void {
  if (teacher.length !== student.length) {
    throw new Error(`EMA: teacher has ${teacher.length} tensors, student ${student.length}: build both from one architecture`);
  }
  tf.tidy(() => {
    teacher.forEach((t, i) => {
      const s = student[i];
      if (t.shape.join() !== s.shape.join()) throw new Error(`EMA: '${t.name}' [${t.shape}] vs '${s.name}' [${s.shape}]`);
      t.assign(alpha === 0 ? s : blend(t, s, alpha));
    });
  });
}

/** EMA over every parameter and buffer of two modules of one architecture, matched by name. */
export function emaUpdateModule(teacher: Module, student: Module, alpha: number): void {
  const t = teacher.namedState();
  const s = new Map(student.namedState());
  const missing = t.filter(([n]) => !s.has(n)).map(([n]) => n);
  if (missing.length || t.length !== s.size) {
    throw new Error(`EMA: teacher and student differ (${missing.slice(0, 3).join(', ') || `${t.length} vs ${s.size} tensors`})`);
  }
  emaUpdate(t.map(([, e]) => e.variable), t.map(([n]) => s.get(n)!.variable), alpha);
}
