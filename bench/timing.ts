/** Timing helpers for benchmarks: warm-up, then the median of repeated runs (ms). */
import { promises as fs } from 'node:fs';
import type * as tf from '@tensorflow/tfjs';

export function medianMs(fn: () => void, { warmup = 2, runs = 5 } = {}): number {
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Time a tensor-producing function, reading the result back so that asynchronous backends finish. */
export function medianKernelMs(make: () => tf.Tensor, opts?: { warmup?: number; runs?: number }): number {
  return medianMs(() => {
    const y = make();
    y.dataSync();
    y.dispose();
  }, opts);
}

/**
 * A tensor's values, read after tf.tidy has returned: tidy walks whatever its callback returns element by
 * element, so returning `t.dataSync()` of a 4M-element tensor from a tidy costs seconds.
 */
export function readback(t: tf.Tensor): Float32Array | Int32Array | Uint8Array {
  const values = t.dataSync() as Float32Array | Int32Array | Uint8Array;
  t.dispose();
  return values;
}

export function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '—';
}

export function table(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')).join('\n');
}

/** Replace the section of bench/RESULTS.md that starts with `## <title>` (up to the next `## `), or append it. */
export async function writeSection(title: string, body: string): Promise<void> {
  const file = new URL('./RESULTS.md', import.meta.url);
  const old = await fs.readFile(file, 'utf8').catch(() => '# Benchmark results\n');
  const head = `\n## ${title}`;
  const at = old.indexOf(head);
  const next = at < 0 ? -1 : old.indexOf('\n## ', at + head.length);
  const section = `${head}\n\n${body}\n`;
  const text = at < 0 ? old + section : old.slice(0, at) + section + (next < 0 ? '' : old.slice(next));
  await fs.writeFile(file, text);
}
