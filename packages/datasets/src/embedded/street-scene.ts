/**
 * Procedural street scenes in Cityscapes classes: a road in perspective toward a vanishing point, sidewalks,
 * building façades with a skyline, sky, trees, poles (with lamps), cars on the road and people on the
 * sidewalks. `layoutScene` draws the geometry (label map, object ids, light sources) from an RNG and a set
 * of geometry priors, so that a domain can shift priors (horizon height, object sizes and counts) as well as
 * appearance (see render.ts).
 */
import type { Rng } from '@ir2f/core';

/** Train ids (Cityscapes) used by the embedded benchmarks. */
export const C = { road: 0, sidewalk: 1, building: 2, pole: 5, vegetation: 8, sky: 10, person: 11, car: 13 } as const;
export const EMBEDDED_CLASS_IDS: readonly number[] = Object.values(C).sort((a, b) => a - b);

export interface GeometryPriors {
  /** Horizon as a fraction of the height: [min, max]. */
  horizon: [number, number];
  /** Road half-width at the bottom, as a fraction of the width. */
  roadHalfWidth: [number, number];
  cars: [number, number];
  people: [number, number];
  trees: [number, number];
  poles: [number, number];
  /** Scale of objects relative to the default. */
  objectScale: number;
}

export const SOURCE_PRIORS: GeometryPriors = {
  horizon: [0.36, 0.46], roadHalfWidth: [0.3, 0.42], cars: [1, 3], people: [1, 3], trees: [1, 3], poles: [1, 3], objectScale: 1,
};

/** Real-world target: higher camera (horizon lower in the frame), more and larger cars, fewer trees. */
export const TARGET_PRIORS: GeometryPriors = {
  horizon: [0.44, 0.56], roadHalfWidth: [0.36, 0.5], cars: [2, 5], people: [0, 2], trees: [0, 2], poles: [2, 4], objectScale: 1.25,
};

export interface LightSource {
  x: number;
  y: number;
  radius: number;
  color: [number, number, number];
}

export interface SceneObject {
  cls: number;
  /** Per-object tint in [-1, 1], for appearance variation. */
  tint: number;
}

export interface Scene {
  width: number;
  height: number;
  horizon: number;
  /** Train ids per pixel. */
  label: Uint8Array;
  /** Object index per pixel (into `objects`); 0 = background stuff. */
  object: Uint16Array;
  objects: SceneObject[];
  lights: LightSource[];
  /** Vanishing point x. */
  vanishX: number;
}

const between = (rng: Rng, [lo, hi]: [number, number]) => lo + (hi - lo) * rng.next();
const count = (rng: Rng, [lo, hi]: [number, number]) => lo + rng.int(hi - lo + 1);

export function layoutScene(rng: Rng, width: number, height: number, priors: GeometryPriors): Scene {
  const label = new Uint8Array(width * height);
  const object = new Uint16Array(width * height);
  const objects: SceneObject[] = [{ cls: -1, tint: 0 }];
  const lights: LightSource[] = [];
  const horizon = Math.round(height * between(rng, priors.horizon));
  const vanishX = width * (0.5 + (rng.next() - 0.5) * 0.3);
  const halfBottom = width * between(rng, priors.roadHalfWidth);
  const walk = width * (0.12 + 0.08 * rng.next());

  const set = (x: number, y: number, cls: number, obj = 0) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    const i = y * width + x;
    label[i] = cls;
    object[i] = obj;
  };
  const newObject = (cls: number) => {
    objects.push({ cls, tint: rng.next() * 2 - 1 });
    return objects.length - 1;
  };

  // sky, then a skyline of building blocks down to the horizon
  label.fill(C.sky);
  let x = 0;
  while (x < width) {
    const w = 8 + rng.int(22);
    const top = Math.round(height * (0.04 + 0.3 * rng.next()));
    const obj = newObject(C.building);
    for (let xx = x; xx < Math.min(width, x + w); xx++) for (let y = top; y <= horizon; y++) set(xx, y, C.building, obj);
    x += w;
  }
  // ground below the horizon: road trapezoid, sidewalks, façades beyond
  for (let y = horizon + 1; y < height; y++) {
    const t = (y - horizon) / (height - horizon);
    const half = halfBottom * t;
    const side = walk * t;
    for (let xx = 0; xx < width; xx++) {
      const d = Math.abs(xx + 0.5 - vanishX);
      const i = y * width + xx;
      if (d <= half) {
        label[i] = C.road;
        object[i] = 0;
      } else if (d <= half + side + 1) {
        label[i] = C.sidewalk;
        object[i] = 0;
      }
      // else: façade continues (building from the skyline pass, or set below)
      else if (label[i] === C.sky) label[i] = C.building;
    }
  }
  const groundY = (tMin: number) => horizon + 1 + Math.floor((height - horizon - 2) * (tMin + (1 - tMin) * rng.next()));
  const sideX = (y: number, onWalk: boolean) => {
    const t = (y - horizon) / (height - horizon);
    const half = halfBottom * t;
    const side = walk * t;
    const dir = rng.next() < 0.5 ? -1 : 1;
    const off = onWalk ? half + side * (0.3 + 0.5 * rng.next()) : half * rng.next() * 0.8;
    return { x: Math.round(vanishX + dir * off), scale: t };
  };

  type Placed = { y: number; draw: () => void };
  const placed: Placed[] = [];
  const s = priors.objectScale;

  for (let k = count(rng, priors.trees); k > 0; k--) {
    const y = groundY(0.15);
    const { x: tx, scale } = sideX(y, true);
    placed.push({
      y,
      draw: () => {
        const obj = newObject(C.vegetation);
        const h = Math.max(4, Math.round(height * 0.55 * scale * s));
        const r = Math.max(2, Math.round(h * 0.35));
        const cy = y - h + r;
        for (let yy = cy - r; yy <= cy + r; yy++) {
          for (let xx = tx - r; xx <= tx + r; xx++) {
            const wobble = 0.8 + 0.2 * Math.sin((xx * 1.7 + yy * 2.3) * 0.9);
            if ((xx - tx) ** 2 + (yy - cy) ** 2 <= (r * wobble) ** 2) set(xx, yy, C.vegetation, obj);
          }
        }
        for (let yy = cy + r; yy <= y; yy++) set(tx, yy, C.vegetation, obj);
      },
    });
  }
  for (let k = count(rng, priors.poles); k > 0; k--) {
    const y = groundY(0.1);
    const { x: px, scale } = sideX(y, true);
    placed.push({
      y,
      draw: () => {
        const obj = newObject(C.pole);
        const h = Math.max(5, Math.round(height * 0.7 * scale * s));
        const w = scale * s > 0.6 ? 2 : 1;
        for (let yy = y - h; yy <= y; yy++) for (let xx = px; xx < px + w; xx++) set(xx, yy, C.pole, obj);
        lights.push({ x: px + w / 2, y: y - h, radius: 2 + 4 * scale, color: [255, 196, 120] });
      },
    });
  }
  for (let k = count(rng, priors.people); k > 0; k--) {
    const y = groundY(0.2);
    const { x: px, scale } = sideX(y, true);
    placed.push({
      y,
      draw: () => {
        const obj = newObject(C.person);
        const h = Math.max(4, Math.round(height * 0.3 * scale * s));
        const w = Math.max(1, Math.round(h * 0.3));
        const head = Math.max(1, Math.round(h * 0.15));
        for (let yy = y - h + 2 * head; yy <= y; yy++) for (let xx = px - (w >> 1); xx <= px + (w >> 1); xx++) set(xx, yy, C.person, obj);
        for (let yy = y - h; yy < y - h + 2 * head; yy++) {
          for (let xx = px - head; xx <= px + head; xx++) {
            if ((xx - px) ** 2 + (yy - (y - h + head)) ** 2 <= head * head) set(xx, yy, C.person, obj);
          }
        }
      },
    });
  }
  for (let k = count(rng, priors.cars); k > 0; k--) {
    const y = groundY(0.1);
    const { x: cx, scale } = sideX(y, false);
    placed.push({
      y,
      draw: () => {
        const obj = newObject(C.car);
        const w = Math.max(4, Math.round(width * 0.3 * scale * s));
        const h = Math.max(3, Math.round(w * 0.55));
        const x0 = cx - (w >> 1);
        for (let yy = y - h; yy <= y; yy++) {
          const cabin = yy < y - h * 0.55;
          const inset = cabin ? Math.round(w * 0.18) : 0;
          for (let xx = x0 + inset; xx < x0 + w - inset; xx++) set(xx, yy, C.car, obj);
        }
        const ly = y - Math.round(h * 0.35);
        const rad = 1 + 2.5 * scale;
        const facing = rng.next() < 0.5; // headlights (white) or tail lights (red)
        const color: [number, number, number] = facing ? [255, 250, 220] : [255, 40, 30];
        lights.push({ x: x0 + 1, y: ly, radius: rad, color }, { x: x0 + w - 2, y: ly, radius: rad, color });
      },
    });
  }
  placed.sort((a, b) => a.y - b.y).forEach((p) => p.draw());
  return { width, height, horizon, label, object, objects, lights, vanishX };
}
