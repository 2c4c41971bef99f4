/**
 * Per-image class pixel counts, computed once and cached as JSON next to the data (or in a cache folder
 * when the data folder is read-only), and DAFormer's rare-class sampling (DESIGN §4.1): class c is drawn
 * with P(c) ∝ exp((1 − f_c) / T), then an image containing at least `minPixels` of c uniformly.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeAtomic, type Rng } from '@ir2f/core';
import { readLabel } from './image-io.js';
import type { Dataset } from './layouts.js';

const STATS_VERSION = 1;

export interface ClassStats {
  numClasses: number;
  /** counts[i][c]: pixels of class c in item i (items in dataset order). */
  counts: number[][];
}

interface StatsFile {
  version: number;
  fileListHash: string;
  numClasses: number;
  counts: number[][];
}

export function fileListHash(dataset: Dataset): string {
  const h = createHash('sha256');
  for (const item of dataset.items) h.update(`${item.id}\0${item.label ?? ''}\n`);
  return h.digest('hex').slice(0, 16);
}

function candidatePaths(dataset: Dataset, cacheDir: string | undefined): string[] {
  const name = `class-stats-${dataset.layout.name.replace(/[^\w.-]+/g, '_')}.json`;
  return [
    path.join(dataset.layout.root, '.ir2f-cache', name),
    path.join(cacheDir ?? path.join(os.homedir(), '.cache', 'ir2f'), createHash('sha256').update(dataset.layout.root).digest('hex').slice(0, 12), name),
  ];
}

/**
 * Class pixel counts for every labelled item. Reads the cache when its file-list hash matches, else
 * computes (decoding every label once) and writes it. Returns where the cache lives.
 */
export async function classStats(
  dataset: Dataset, numClasses: number, opts: { cacheDir?: string } = {},
): Promise<ClassStats & { cachePath?: string; fromCache: boolean }> {
  const hash = fileListHash(dataset);
  const paths = candidatePaths(dataset, opts.cacheDir);
  for (const p of paths) {
    try {
      const cached = JSON.parse(await fs.readFile(p, 'utf8')) as StatsFile;
      if (cached.version === STATS_VERSION && cached.fileListHash === hash && cached.numClasses === numClasses) {
        return { numClasses, counts: cached.counts, cachePath: p, fromCache: true };
      }
    } catch {
      // absent or unreadable: compute
    }
  }
  const counts: number[][] = [];
  for (const item of dataset.items) {
    const row = new Array<number>(numClasses).fill(0);
    if (item.label && item.labelSpec) {
      const { data } = await readLabel(item.label, item.labelSpec, 'ignore');
      for (let i = 0; i < data.length; i++) if (data[i] < numClasses) row[data[i]]++;
    }
    counts.push(row);
  }
  const body: StatsFile = { version: STATS_VERSION, fileListHash: hash, numClasses, counts };
  for (const p of paths) {
    try {
      await writeAtomic(p, new TextEncoder().encode(JSON.stringify(body)));
      return { numClasses, counts, cachePath: p, fromCache: false };
    } catch {
      // read-only location: try the next
    }
  }
  return { numClasses, counts, fromCache: false };
}

export interface RareClassSampler {
  /** P(c) per class (0 for classes absent from the data). */
  classProbs: number[];
  /** Class frequencies f_c. */
  freq: number[];
  /** Draw one item index. */
  sample(rng: Rng): { index: number; cls: number };
}

export function rareClassSampler(stats: ClassStats, opts: { temperature?: number; minPixels?: number } = {}): RareClassSampler {
  const T = opts.temperature ?? 0.01;
  const minPixels = opts.minPixels ?? 0;
  const totals = new Array<number>(stats.numClasses).fill(0);
  for (const row of stats.counts) row.forEach((v, c) => (totals[c] += v));
  const all = totals.reduce((a, b) => a + b, 0);
  const freq = totals.map((t) => (all > 0 ? t / all : 0));
  const withClass = totals.map((_, c) => stats.counts.flatMap((row, i) => (row[c] > minPixels ? [i] : [])));
  // softmax over present classes, shifted by the max for stability
  const logits = freq.map((f, c) => (withClass[c].length > 0 ? (1 - f) / T : -Infinity));
  const m = Math.max(...logits);
  const exps = logits.map((l) => (Number.isFinite(l) ? Math.exp(l - m) : 0));
  const z = exps.reduce((a, b) => a + b, 0);
  if (!(z > 0)) throw new Error('rare-class sampling: no class has enough labelled pixels (check minPixels)');
  const classProbs = exps.map((e) => e / z);
  return {
    classProbs,
    freq,
    sample(rng) {
      const cls = rng.choice(classProbs);
      const pool = withClass[cls];
      return { index: pool[rng.int(pool.length)], cls };
    },
  };
}
