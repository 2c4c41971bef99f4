/**
 * Appearance of the embedded domains. The same scene geometry can be rendered as:
 * - `synthetic` (the source, GTA-like): flat saturated colours, clean procedural textures (window grids,
 *   lane marks, tiles), no sensor effects;
 * - `real` (the synthetic→real target, Cityscapes-like): other textures and colour statistics (asphalt and
 *   brick noise, muted palette, warm white balance), blur, sensor noise and JPEG artefacts;
 * - `night` (the day→night target, Dark Zurich-like): the `real` scene under low, gamma-compressed light with a
 *   sodium colour cast, strong noise, street lamps and car lights with glare.
 */
import sharp from 'sharp';
import type { Rng } from '@ir2f/core';
import type { RgbImage } from '../image-io.js';
import { C, X, type Scene } from './street-scene.js';

/**
 * `fog` (a weather shift): `real` under depth-dependent haze; `degraded` (a sensor shift): `real` through a
 * poor camera (resolution loss, motion blur, vignetting, a colour cast, strong noise and JPEG).
 */
export type DomainStyleName = 'synthetic' | 'real' | 'night' | 'fog' | 'degraded';

type RGB = [number, number, number];

function hash(x: number, y: number, seed: number): number {
  let h = (Math.imul(x, 374761393) + Math.imul(y, 668265263) + Math.imul(seed, 2147483647)) | 0;
  h = Math.imul(h ^ (h >>> 13), 1274126177);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

/** Smooth value noise in [0, 1) with lattice spacing `scale` pixels. */
function noise(x: number, y: number, scale: number, seed: number): number {
  const fx = x / scale;
  const fy = y / scale;
  const x0 = Math.floor(fx);
  const y0 = Math.floor(fy);
  const tx = fx - x0;
  const ty = fy - y0;
  const sx = tx * tx * (3 - 2 * tx);
  const sy = ty * ty * (3 - 2 * ty);
  const a = hash(x0, y0, seed);
  const b = hash(x0 + 1, y0, seed);
  const c = hash(x0, y0 + 1, seed);
  const d = hash(x0 + 1, y0 + 1, seed);
  return a + (b - a) * sx + (c - a) * sy + (a - b - c + d) * sx * sy;
}

const SYNTHETIC: Record<number, RGB> = {
  [C.road]: [110, 110, 118], [C.sidewalk]: [196, 150, 180], [C.building]: [150, 120, 95], [C.pole]: [140, 140, 150],
  [C.vegetation]: [60, 170, 60], [C.sky]: [90, 160, 235], [C.person]: [200, 60, 80], [C.car]: [40, 70, 200],
  [X.wall]: [175, 160, 135], [X.fence]: [150, 110, 60], [X.trafficLight]: [235, 200, 40], [X.trafficSign]: [235, 235, 40],
  [X.terrain]: [150, 210, 110], [X.rider]: [240, 120, 40], [X.truck]: [70, 60, 170], [X.bus]: [40, 150, 160],
  [X.train]: [110, 70, 150], [X.motorcycle]: [30, 30, 235], [X.bicycle]: [170, 40, 40],
};
/** Target colours: the source's hues pulled toward muted, real-world ones (a shift, not a new palette). */
const REAL_TARGET: Record<number, RGB> = {
  [C.road]: [72, 70, 74], [C.sidewalk]: [178, 174, 166], [C.building]: [120, 110, 104], [C.pole]: [48, 50, 54],
  [C.vegetation]: [70, 90, 45], [C.sky]: [190, 200, 212], [C.person]: [70, 60, 64], [C.car]: [105, 105, 112],
  [X.wall]: [140, 134, 124], [X.fence]: [100, 94, 86], [X.trafficLight]: [38, 38, 40], [X.trafficSign]: [190, 192, 196],
  [X.terrain]: [112, 118, 72], [X.rider]: [64, 56, 70], [X.truck]: [160, 158, 150], [X.bus]: [205, 190, 150],
  [X.train]: [125, 128, 134], [X.motorcycle]: [52, 52, 58], [X.bicycle]: [72, 72, 78],
};
const REAL_MIX = 0.5;
const REAL: Record<number, RGB> = Object.fromEntries(Object.entries(REAL_TARGET).map(([k, v]) => [
  k, v.map((c, i) => Math.round(REAL_MIX * c + (1 - REAL_MIX) * SYNTHETIC[Number(k)][i])) as RGB,
]));

const CAR_COLOURS: RGB[] = [[210, 210, 205], [35, 35, 38], [150, 152, 155], [40, 50, 80], [110, 35, 35]];

function shadeSynthetic(scene: Scene, x: number, y: number, cls: number, tint: number, seed: number): RGB {
  const base = SYNTHETIC[cls] ?? [0, 0, 0];
  let f = 1 + 0.12 * tint;
  let add = 0;
  switch (cls) {
    case C.building:
      if (x % 6 >= 2 && y % 7 >= 3) f *= 0.55; // window grid
      break;
    case C.road: {
      const lane = Math.abs(x + 0.5 - scene.vanishX) < 0.6 + (y - scene.horizon) * 0.02;
      if (lane && Math.floor(y / 4) % 2 === 0) add = 110;
      break;
    }
    case C.sidewalk:
      if (x % 5 === 0 || y % 4 === 0) f *= 0.85; // tiles
      break;
    case C.vegetation:
      f *= 0.8 + 0.4 * noise(x, y, 4, seed);
      break;
    case C.sky:
      f *= 0.85 + 0.3 * (y / scene.horizon);
      break;
    case C.car:
      if (tint > 0.3) return [220, 40, 40];
      break;
  }
  return [base[0] * f + add, base[1] * f + add, base[2] * f + add];
}

function shadeReal(scene: Scene, x: number, y: number, cls: number, tint: number, seed: number): RGB {
  const base = REAL[cls] ?? [0, 0, 0];
  let f = 1 + 0.2 * tint;
  switch (cls) {
    case C.road:
      f *= 0.85 + 0.3 * noise(x, y, 1.5, seed) * noise(x, y, 9, seed + 1);
      break;
    case C.building:
      f *= 0.75 + 0.5 * noise(x, y, 2, seed + 2);
      if ((x + y * 3) % 11 < 3 && noise(x, y, 5, seed + 3) > 0.5) f *= 1.35; // irregular lit windows
      break;
    case C.sidewalk:
      f *= 0.9 + 0.15 * noise(x, y, 3, seed + 4);
      break;
    case C.vegetation:
      f *= 0.55 + 0.9 * noise(x, y, 1.2, seed + 5);
      break;
    case C.sky:
      f *= 0.9 + 0.15 * noise(x, y, 20, seed + 6);
      break;
    case C.car: {
      // muted body colours (white, black, silver, dark blue, dark red) with metallic streaks
      const body = CAR_COLOURS[Math.floor((tint + 1) * 2.499)];
      const streak = 0.85 + 0.3 * (1 - (y % 5) / 5);
      return [body[0] * streak, body[1] * streak, body[2] * streak];
    }
  }
  return [base[0] * f, base[1] * f * 0.98, base[2] * f * 0.94];
}

const clamp = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : v);

/** Render a scene in a domain style (async: blur and JPEG go through sharp). */
export async function renderScene(scene: Scene, style: DomainStyleName, rng: Rng): Promise<RgbImage> {
  const { width, height, label, object, objects } = scene;
  const seed = rng.uint32() & 0x7fffffff;
  const px = new Float32Array(width * height * 3);
  const shade = style === 'synthetic' ? shadeSynthetic : shadeReal;
  // the fog's and the camera's own draws come from forks, so 'real' renders stay as they were
  const extra = rng.fork('style');
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const [r, g, b] = shade(scene, x, y, label[i], objects[object[i]]?.tint ?? 0, seed);
      px[i * 3] = r;
      px[i * 3 + 1] = g;
      px[i * 3 + 2] = b;
    }
  }
  if (style === 'night') applyNight(scene, px, rng);
  if (style === 'fog') applyFog(scene, px, extra);
  let data = Uint8Array.from(px, clamp);
  if (style === 'synthetic') return { data, width, height };
  if (style === 'degraded') return degrade(data, width, height, extra);

  // sensor: blur, noise, then JPEG compression
  const blurred = await sharp(data, { raw: { width, height, channels: 3 } }).blur(0.6 + 0.4 * rng.next()).raw().toBuffer();
  data = new Uint8Array(blurred);
  const sigma = style === 'night' ? 7 : 5;
  for (let i = 0; i < data.length; i++) data[i] = clamp(Math.round(data[i] + rng.normal(0, sigma)));
  const jpeg = await sharp(data, { raw: { width, height, channels: 3 } }).jpeg({ quality: 35 + rng.int(30) }).toBuffer();
  const decoded = await sharp(jpeg).removeAlpha().raw().toBuffer();
  return { data: new Uint8Array(decoded), width, height };
}

/**
 * Koschmieder haze: I = J·T + A·(1 − T), T = exp(−β·depth). Depth grows toward the horizon on the ground and is
 * far above it (façades, sky); β and the airlight vary per image.
 */
function applyFog(scene: Scene, px: Float32Array, rng: Rng): void {
  const { width, height, horizon } = scene;
  const beta = 1.2 + 1.6 * rng.next();
  const air = 185 + 35 * rng.next();
  for (let y = 0; y < height; y++) {
    const depth = y > horizon ? Math.min(1.6, 6 / (y - horizon + 6)) : 1.6;
    const T = Math.exp(-beta * depth);
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) px[i + c] = px[i + c] * T + air * (c === 2 ? 1.02 : 1) * (1 - T);
    }
  }
}

/** A poor camera: half resolution, horizontal motion blur, vignetting, a colour cast, strong noise, low JPEG quality. */
async function degrade(data: Uint8Array, width: number, height: number, rng: Rng): Promise<RgbImage> {
  const raw = { raw: { width, height, channels: 3 as const } };
  const small = await sharp(data, raw).resize(Math.round(width / 2), Math.round(height / 2), { kernel: 'linear' }).toBuffer();
  const k = 3 + 2 * rng.int(2);
  let img = new Uint8Array(await sharp(small, { raw: { width: Math.round(width / 2), height: Math.round(height / 2), channels: 3 } })
    .resize(width, height, { kernel: 'linear' })
    // horizontal motion blur (sharp's kernels are at least 3 high: the middle row only)
    .convolve({ width: k, height: 3, kernel: [...new Array<number>(k).fill(0), ...new Array<number>(k).fill(1 / k), ...new Array<number>(k).fill(0)] })
    .raw().toBuffer());
  const gain: RGB = [1 + 0.25 * (rng.next() - 0.3), 1, 1 - 0.25 * rng.next()];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = 1 - 0.45 * (((x - width / 2) / width) ** 2 + ((y - height / 2) / height) ** 2) * 2;
      const i = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) img[i + c] = clamp(Math.round(img[i + c] * v * gain[c] + rng.normal(0, 16)));
    }
  }
  const jpeg = await sharp(img, raw).jpeg({ quality: 8 + rng.int(14) }).toBuffer();
  img = new Uint8Array(await sharp(jpeg).removeAlpha().raw().toBuffer());
  return { data: img, width, height };
}

/**
 * Low light: gamma-compressed darkening with a colour cast and a dark sky; the scene is lit by an ambient
 * term plus each light's pool of light; some windows glow; lights get a bright core and glare.
 */
function applyNight(scene: Scene, px: Float32Array, rng: Rng): void {
  const { width, height, label } = scene;
  const ambient = 0.55 + 0.15 * rng.next();
  const cast: RGB = rng.next() < 0.7 ? [1.08, 0.97, 0.8] : [0.88, 0.94, 1.12];
  const lit = new Float32Array(width * height).fill(ambient);
  for (const light of scene.lights) {
    const r2 = (light.radius * 7) ** 2;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        lit[y * width + x] += 0.9 * Math.exp(-((x - light.x) ** 2 + (y - light.y) ** 2) / r2);
      }
    }
  }
  const windowSeed = rng.uint32() & 0xffff;
  for (let i = 0; i < width * height; i++) {
    const x = i % width;
    const y = (i - x) / width;
    const glow = label[i] === C.building && x % 6 >= 2 && y % 7 >= 3 && hash(Math.floor(x / 6), Math.floor(y / 7), windowSeed) < 0.15;
    for (let c = 0; c < 3; c++) {
      const v = px[i * 3 + c] / 255;
      px[i * 3 + c] = glow ? 200 * cast[c] : 255 * Math.min(1, lit[i]) * Math.pow(v, 1.15) * cast[c];
    }
    if (label[i] === C.sky) {
      px[i * 3] *= 0.45;
      px[i * 3 + 1] *= 0.45;
      px[i * 3 + 2] *= 0.55;
    }
  }
  for (const light of scene.lights) {
    const reach = light.radius * 4;
    for (let y = Math.max(0, Math.floor(light.y - reach)); y < Math.min(height, light.y + reach); y++) {
      for (let x = Math.max(0, Math.floor(light.x - reach)); x < Math.min(width, light.x + reach); x++) {
        const d2 = ((x - light.x) ** 2 + (y - light.y) ** 2) / (light.radius * light.radius);
        const glare = 1.4 * Math.exp(-d2) + 0.2 * Math.exp(-d2 / 6);
        const i = (y * width + x) * 3;
        for (let c = 0; c < 3; c++) px[i + c] += glare * light.color[c];
      }
    }
  }
}
