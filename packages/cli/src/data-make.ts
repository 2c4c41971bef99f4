/** `ir2f data make <name> --out <dir>`: generate an embedded benchmark in the real dataset layouts. */
import path from 'node:path';
import { Ir2fError } from '@ir2f/core';
import { assertFolderOrAbsent } from './paths.js';
import { EMBEDDED_BENCHMARKS, makeBenchmark, scanDataset, writePreviewGrid, type EmbeddedBenchmarkName } from '@ir2f/datasets';

export interface DataMakeOptions {
  out: string;
  seed: string;
  size: string;
  counts?: string;
  preview?: string | boolean;
  overwrite?: boolean;
}

function parseIntStrict(v: string, what: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Ir2fError('INVALID_ARGUMENT', `${what} must be a non-negative integer, got '${v}'`);
  return n;
}

function parsePair(v: string, what: string, sep: string): number[] {
  const parts = v.split(sep);
  return parts.map((p) => parseIntStrict(p, what));
}

export async function dataMake(name: string, opts: DataMakeOptions, log: (line: string) => void): Promise<void> {
  if (!(EMBEDDED_BENCHMARKS as readonly string[]).includes(name)) {
    throw new Ir2fError('INVALID_ARGUMENT', `unknown benchmark '${name}'; available: ${EMBEDDED_BENCHMARKS.join(', ')}`);
  }
  const size = parsePair(opts.size, '--size (WxH)', 'x');
  if (size.length !== 2) throw new Ir2fError('INVALID_ARGUMENT', `--size must look like 128x96, got '${opts.size}'`);
  let counts: { source: number; targetTrain: number; targetVal: number } | undefined;
  if (opts.counts) {
    const c = parsePair(opts.counts, '--counts (source,targetTrain,targetVal)', ',');
    if (c.length !== 3 || c.some((n) => n < 1)) {
      throw new Ir2fError('INVALID_ARGUMENT', `--counts must be three positive integers (source, target train, target val) like 300,300,100, got '${opts.counts}'`);
    }
    counts = { source: c[0], targetTrain: c[1], targetVal: c[2] };
  }
  await assertFolderOrAbsent(opts.out, '--out');
  const t0 = Date.now();
  const bench = await makeBenchmark(name as EmbeddedBenchmarkName, opts.out, {
    seed: parseIntStrict(opts.seed, '--seed'), size: size as [number, number], counts, overwrite: opts.overwrite,
  });
  const [src, train, val] = await Promise.all([
    scanDataset(bench.source), scanDataset(bench.targetTrain, { labelled: false }), scanDataset(bench.targetVal),
  ]);
  log(`${name}: ${src.items.length} source (${bench.source.name}), ${train.items.length} target train ` +
    `(${bench.targetTrain.name}), ${val.items.length} target val (${bench.targetVal.name}) in ${bench.root} ` +
    `(${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  if (opts.preview) {
    const file = typeof opts.preview === 'string' ? opts.preview : path.join(bench.root, 'preview.png');
    await writePreviewGrid(bench, file);
    log(`preview: ${file}`);
  }
}
