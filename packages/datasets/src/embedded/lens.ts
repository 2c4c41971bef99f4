/**
 * Another camera, applied to a rendered image and its label map together: its colour response (white balance,
 * tone curve, saturation: what differs first between two real cameras), and its optics: a wide-angle lens's
 * barrel distortion (straight lines bow outward, the edges are compressed), a roll of the mount, and the zoom
 * that keeps the frame filled (no pixel samples outside the rendered scene, so no ignore borders).
 */
import type { Rng } from '@ir2f/core';
import type { RgbImage } from '../image-io.js';

export interface LensPriors {
  /** Roll of the mount in degrees, drawn in [lo, hi] with a random sign. */
  roll: [number, number];
  /** Radial distortion k (r_scene = r_image · (1 + k·r_image²), r normalised by the half-diagonal), drawn in [lo, hi]. */
  barrel: [number, number];
  /** Colour response, each drawn per image in its range: white-balance gains (R, B; G is 1), gamma, saturation. */
  response: { red: [number, number]; blue: [number, number]; gamma: [number, number]; saturation: [number, number] };
}

/** The camera's colour response: gains, then a tone curve, then saturation around the pixel's grey. */
function respond(data: Uint8Array, priors: LensPriors['response'], between: (r: [number, number]) => number): Uint8Array {
  const gains = [between(priors.red), 1, between(priors.blue)];
  const gamma = between(priors.gamma);
  const sat = between(priors.saturation);
  // one tone curve per channel and input value
  const curve = gains.map((g) => Float32Array.from({ length: 256 }, (_, v) => 255 * Math.pow(Math.min(1, (v / 255) * g), gamma)));
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i += 3) {
    const [r, g, b] = [curve[0][data[i]], curve[1][data[i + 1]], curve[2][data[i + 2]]];
    const grey = 0.299 * r + 0.587 * g + 0.114 * b;
    out[i] = Math.round(Math.min(255, Math.max(0, grey + sat * (r - grey))));
    out[i + 1] = Math.round(Math.min(255, Math.max(0, grey + sat * (g - grey))));
    out[i + 2] = Math.round(Math.min(255, Math.max(0, grey + sat * (b - grey))));
  }
  return out;
}

/** Where each output pixel looks in the rendered frame, in pixels (before the fill zoom). */
function mapper(width: number, height: number, rollDeg: number, k: number) {
  const [cx, cy] = [width / 2, height / 2];
  const half = Math.hypot(cx, cy);
  const [c, s] = [Math.cos((rollDeg * Math.PI) / 180), Math.sin((rollDeg * Math.PI) / 180)];
  return (x: number, y: number, zoom: number): [number, number] => {
    const u = (x + 0.5 - cx) / half;
    const v = (y + 0.5 - cy) / half;
    const d = (1 + k * (u * u + v * v)) * zoom;
    const [ru, rv] = [d * (c * u - s * v), d * (s * u + c * v)];
    return [cx + ru * half - 0.5, cy + rv * half - 0.5];
  };
}

/** The largest zoom ≤ 1 for which every border pixel samples inside the frame (the interior follows: the map is monotone in r). */
function fillZoom(width: number, height: number, map: ReturnType<typeof mapper>): number {
  let zoom = 1;
  const fit = (x: number, y: number) => {
    const [sx, sy] = map(x, y, 1);
    const [cx, cy] = [(width - 1) / 2, (height - 1) / 2];
    const fx = Math.abs(sx - cx) / cx;
    const fy = Math.abs(sy - cy) / cy;
    zoom = Math.min(zoom, 1 / Math.max(fx, fy, 1e-9));
  };
  for (let x = 0; x < width; x++) { fit(x, 0); fit(x, height - 1); }
  for (let y = 0; y < height; y++) { fit(0, y); fit(width - 1, y); }
  return zoom;
}

/** The image through the camera's response, then image (bilinear) and label map (nearest) through its lens, drawn from `priors`. */
export function applyLens(img: RgbImage, label: Uint8Array, priors: LensPriors, rng: Rng): { image: RgbImage; label: Uint8Array } {
  const between = ([lo, hi]: [number, number]) => lo + (hi - lo) * rng.next();
  const { width, height } = img;
  const data = respond(img.data, priors.response, between);
  const roll = between(priors.roll) * (rng.next() < 0.5 ? -1 : 1);
  const map = mapper(width, height, roll, between(priors.barrel));
  const zoom = fillZoom(width, height, map);
  const out = new Uint8Array(data.length);
  const outLabel = new Uint8Array(label.length);
  const clampX = (v: number) => Math.min(width - 1, Math.max(0, v));
  const clampY = (v: number) => Math.min(height - 1, Math.max(0, v));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [sx, sy] = map(x, y, zoom);
      const i = y * width + x;
      outLabel[i] = label[clampY(Math.round(sy)) * width + clampX(Math.round(sx))];
      const x0 = clampX(Math.floor(sx));
      const y0 = clampY(Math.floor(sy));
      const x1 = clampX(x0 + 1);
      const y1 = clampY(y0 + 1);
      const tx = Math.min(1, Math.max(0, sx - x0));
      const ty = Math.min(1, Math.max(0, sy - y0));
      const [a, b, c, d] = [(y0 * width + x0) * 3, (y0 * width + x1) * 3, (y1 * width + x0) * 3, (y1 * width + x1) * 3];
      for (let ch = 0; ch < 3; ch++) {
        const top = data[a + ch] + (data[b + ch] - data[a + ch]) * tx;
        const bottom = data[c + ch] + (data[d + ch] - data[c + ch]) * tx;
        out[i * 3 + ch] = Math.round(top + (bottom - top) * ty);
      }
    }
  }
  return { image: { data: out, width, height }, label: outLabel };
}
