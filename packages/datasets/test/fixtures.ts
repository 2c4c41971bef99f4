import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { encode } from 'fast-png';
import { writeAtomic } from '@ir2f/core';
import { writeGrayPng, writeRgbPng } from '@ir2f/datasets';

export async function tempDir(prefix = 'ir2f-ds-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** A w×h RGB image whose pixels encode their position (so crops and flips can be checked). */
export function gradientImage(w: number, h: number) {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set([x * 7 % 256, y * 11 % 256, (x + y) % 256], (y * w + x) * 3);
  return { data, width: w, height: h };
}

export function labelMap(w: number, h: number, f: (x: number, y: number) => number) {
  const data = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = f(x, y);
  return { data, width: w, height: h };
}

export async function writePair(imageFile: string, labelFile: string, w = 8, h = 6, f: (x: number) => number = (x) => (x < 4 ? 0 : 13)) {
  await writeRgbPng(imageFile, gradientImage(w, h));
  await writeGrayPng(labelFile, labelMap(w, h, f));
}

/** A 16-bit 3-channel PNG with `ids` in the first channel (SYNTHIA's GT/LABELS format). */
export async function writeSynthiaLabel(file: string, w: number, h: number, id: (x: number, y: number) => number) {
  const data = new Uint16Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[(y * w + x) * 3] = id(x, y);
  await writeAtomic(file, encode({ width: w, height: h, data, channels: 3, depth: 16 }));
}
