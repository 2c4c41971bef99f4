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

/** The other eleven Cityscapes classes, drawn by scenes whose priors have `extras` (the 19-class member). */
export const X = {
  wall: 3, fence: 4, trafficLight: 6, trafficSign: 7, terrain: 9, rider: 12, truck: 14, bus: 15, train: 16, motorcycle: 17, bicycle: 18,
} as const;
export const ALL_CLASS_IDS: readonly number[] = Array.from({ length: 19 }, (_, i) => i);

/** Counts of the extra classes' objects (terrain, walls and fences are bands along the street). */
export interface ExtraPriors {
  trafficLights: [number, number];
  trafficSigns: [number, number];
  riders: [number, number];
  trucks: [number, number];
  buses: [number, number];
  /** Probability of a tram (train) crossing the street. */
  train: number;
}

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
  /** Draw all 19 Cityscapes classes (thin ones included): the extra objects' counts. */
  extras?: ExtraPriors;
}

export const SOURCE_PRIORS: GeometryPriors = {
  horizon: [0.36, 0.46], roadHalfWidth: [0.3, 0.42], cars: [1, 3], people: [1, 3], trees: [1, 3], poles: [1, 3], objectScale: 1,
};

/** Real-world target: higher camera (horizon lower in the frame), more and larger cars, fewer trees. */
export const TARGET_PRIORS: GeometryPriors = {
  horizon: [0.44, 0.56], roadHalfWidth: [0.36, 0.5], cars: [2, 5], people: [0, 2], trees: [0, 2], poles: [2, 4], objectScale: 1.25,
};

/**
 * A camera mounted higher, pitched down, with a wider field of view: the horizon high in the frame, a wide
 * road, small objects, and denser traffic.
 */
export const HIGH_WIDE_PRIORS: GeometryPriors = {
  horizon: [0.2, 0.32], roadHalfWidth: [0.45, 0.62], cars: [4, 8], people: [2, 5], trees: [1, 4], poles: [3, 6], objectScale: 0.6,
};

/** The 19-class scenes: the source's geometry plus every other Cityscapes class. */
export const EXTRA_PRIORS: ExtraPriors = { trafficLights: [1, 2], trafficSigns: [1, 3], riders: [0, 2], trucks: [0, 1], buses: [0, 1], train: 0.25 };


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
  // the extra classes draw from their own stream, so scenes without them are unchanged
  const xr = priors.extras ? rng.fork('extras') : undefined;
  if (xr) streetBands(xr, label, width, height, horizon, vanishX, halfBottom, walk);
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
  if (xr && priors.extras) {
    placeExtras(xr, priors.extras, { width, height, horizon, s, set, newObject, lights, placed, sideX: (y, onWalk) => {
      const t = (y - horizon) / (height - horizon);
      const dir = xr.next() < 0.5 ? -1 : 1;
      const off = onWalk ? halfBottom * t + walk * t * (0.3 + 0.5 * xr.next()) : halfBottom * t * xr.next() * 0.8;
      return { x: Math.round(vanishX + dir * off), scale: t };
    }, groundY: (tMin) => horizon + 1 + Math.floor((height - horizon - 2) * (tMin + (1 - tMin) * xr.next())) });
  }
  placed.sort((a, b) => a.y - b.y).forEach((p) => p.draw());
  return { width, height, horizon, label, object, objects, lights, vanishX };
}

/** Terrain, a wall or a fence beyond each sidewalk: bands that follow the perspective. */
function streetBands(rng: Rng, label: Uint8Array, width: number, height: number, horizon: number, vanishX: number, halfBottom: number, walk: number): void {
  const sides = [-1, 1].map(() => ({ terrain: width * (0.04 + 0.08 * rng.next()), band: rng.next() < 0.5 ? X.wall : X.fence, depth: width * (0.03 + 0.04 * rng.next()) }));
  for (let y = horizon + 1; y < height; y++) {
    const t = (y - horizon) / (height - horizon);
    const edge = halfBottom * t + walk * t + 1;
    for (let x = 0; x < width; x++) {
      const side = sides[x + 0.5 < vanishX ? 0 : 1];
      const d = Math.abs(x + 0.5 - vanishX) - edge;
      if (d <= 0) continue;
      const i = y * width + x;
      if (d <= side.terrain * t) label[i] = X.terrain;
      else if (d <= (side.terrain + side.depth) * t + 1) label[i] = side.band === X.fence && (x + y) % 3 === 0 ? C.building : side.band;
    }
  }
}

interface ExtraCtx {
  width: number;
  height: number;
  horizon: number;
  s: number;
  set: (x: number, y: number, cls: number, obj?: number) => void;
  newObject: (cls: number) => number;
  lights: LightSource[];
  placed: { y: number; draw: () => void }[];
  sideX: (y: number, onWalk: boolean) => { x: number; scale: number };
  groundY: (tMin: number) => number;
}

const fillRect = (c: ExtraCtx, x0: number, y0: number, w: number, h: number, cls: number, obj: number) => {
  for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) c.set(x, y, cls, obj);
};

/** Thin classes on poles (traffic lights, signs), riders on two-wheelers, trucks, buses and a tram. */
function placeExtras(rng: Rng, p: ExtraPriors, c: ExtraCtx): void {
  const { height, s } = c;
  const onPole = (cls: number, k: number) => {
    for (; k > 0; k--) {
      const y = c.groundY(0.15);
      const { x, scale } = c.sideX(y, true);
      c.placed.push({
        y,
        draw: () => {
          const h = Math.max(6, Math.round(height * 0.6 * scale * s));
          fillRect(c, x, y - h, 1, h + 1, C.pole, c.newObject(C.pole));
          const obj = c.newObject(cls);
          const bw = Math.max(2, Math.round(4 * scale * s));
          if (cls === X.trafficLight) {
            const bh = Math.max(3, Math.round(bw * 2.2));
            fillRect(c, x - (bw >> 1), y - h - bh + 1, bw, bh, cls, obj);
            c.lights.push({ x, y: y - h - bh / 2, radius: 1 + 2 * scale, color: rng.next() < 0.5 ? [255, 40, 30] : [60, 255, 120] });
          } else {
            fillRect(c, x - bw, y - h, 2 * bw, Math.max(2, Math.round(bw * 1.4)), cls, obj);
          }
        },
      });
    }
  };
  onPole(X.trafficLight, count(rng, p.trafficLights));
  onPole(X.trafficSign, count(rng, p.trafficSigns));
  for (let k = count(rng, p.riders); k > 0; k--) {
    const y = c.groundY(0.2);
    const { x, scale } = c.sideX(y, false);
    const motor = rng.next() < 0.4;
    c.placed.push({
      y,
      draw: () => {
        const w = Math.max(4, Math.round(c.width * 0.12 * scale * s));
        const wheel = Math.max(1, Math.round(w * 0.22));
        const veh = c.newObject(motor ? X.motorcycle : X.bicycle);
        for (const cx of [x - (w >> 1) + wheel, x + (w >> 1) - wheel]) {
          for (let yy = y - 2 * wheel; yy <= y; yy++) for (let xx = cx - wheel; xx <= cx + wheel; xx++) {
            const d = Math.hypot(xx - cx, yy - (y - wheel));
            if (motor ? d <= wheel : Math.abs(d - wheel) < 0.8) c.set(xx, yy, motor ? X.motorcycle : X.bicycle, veh);
          }
        }
        fillRect(c, x - (w >> 1) + wheel, y - wheel - (motor ? wheel : 1), w - 2 * wheel, motor ? 2 * wheel : 1, motor ? X.motorcycle : X.bicycle, veh);
        const rider = c.newObject(X.rider);
        const rh = Math.max(3, Math.round(w * 0.9));
        const rw = Math.max(1, Math.round(rh * 0.3));
        fillRect(c, x - (rw >> 1), y - 2 * wheel - rh, rw, rh, X.rider, rider);
      },
    });
  }
  const box = (cls: number, n: number, long: number, tall: number) => {
    for (let k = n; k > 0; k--) {
      const y = c.groundY(0.1);
      const { x, scale } = c.sideX(y, false);
      c.placed.push({
        y,
        draw: () => {
          const w = Math.max(6, Math.round(c.width * 0.3 * long * scale * s));
          const h = Math.max(4, Math.round(c.width * 0.3 * tall * scale * s));
          const obj = c.newObject(cls);
          fillRect(c, x - (w >> 1), y - h, w, h + 1, cls, obj);
        },
      });
    }
  };
  box(X.truck, count(rng, p.trucks), 1.4, 0.9);
  box(X.bus, count(rng, p.buses), 1.9, 1.0);
  if (rng.next() < p.train) {
    // a tram across the street at mid distance, in front of the façades
    const y = c.horizon + Math.round((height - c.horizon) * (0.25 + 0.2 * rng.next()));
    c.placed.push({
      y,
      draw: () => {
        const t = (y - c.horizon) / (height - c.horizon);
        const h = Math.max(4, Math.round(height * 0.35 * t * s));
        fillRect(c, 0, y - h, c.width, h + 1, X.train, c.newObject(X.train));
      },
    });
  }
}
