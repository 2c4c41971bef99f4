/**
 * The training-curve PNG: loss parts (moving average), mIoU of student and teacher, and the pseudo-labels'
 * reliability (q, mean r, mean γ) against the step, drawn as SVG and rasterised by sharp.
 */
import sharp from 'sharp';
import { writeAtomic } from '@ir2f/core';
import type { History } from './subscribers.js';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

function movingAverage(values: number[], window: number): number[] {
  const out: number[] = [];
  let sum = 0;
  values.forEach((v, i) => {
    sum += v;
    if (i >= window) sum -= values[i - window];
    out.push(sum / Math.min(i + 1, window));
  });
  return out;
}

const esc = (s: string) => s.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c]!);

interface Series {
  name: string;
  points: [number, number][];
  color: string;
}

function panel(x0: number, y0: number, w: number, h: number, title: string, series: Series[], yRange?: [number, number]): string {
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return `<text x="${x0 + w / 2}" y="${y0 + h / 2}" text-anchor="middle" font-size="14">${esc(title)}: no data</text>`;
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const [xmin, xmax] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
  const [ymin, ymaxRaw] = yRange ?? [Math.min(0, ...ys), Math.max(...ys)];
  const ymax = ymaxRaw > ymin ? ymaxRaw : ymin + 1;
  const px = (x: number) => x0 + ((x - xmin) / (xmax - xmin)) * w;
  const py = (y: number) => y0 + h - ((y - ymin) / (ymax - ymin)) * h;
  const parts = [`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#888"/>`,
    `<text x="${x0}" y="${y0 - 8}" font-size="14" font-weight="bold">${esc(title)}</text>`];
  for (let i = 0; i <= 4; i++) {
    const y = ymin + ((ymax - ymin) * i) / 4;
    parts.push(`<line x1="${x0}" x2="${x0 + w}" y1="${py(y)}" y2="${py(y)}" stroke="#eee"/>`,
      `<text x="${x0 - 6}" y="${py(y) + 4}" font-size="11" text-anchor="end">${y.toPrecision(3)}</text>`);
  }
  parts.push(`<text x="${x0}" y="${y0 + h + 16}" font-size="11">${xmin}</text>`,
    `<text x="${x0 + w}" y="${y0 + h + 16}" font-size="11" text-anchor="end">step ${xmax}</text>`);
  series.forEach((s) => {
    const d = s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
    parts.push(s.points.length > 1
      ? `<polyline points="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`
      : `<circle cx="${px(s.points[0][0])}" cy="${py(s.points[0][1])}" r="3" fill="${s.color}"/>`);
  });
  // legend in the title row, right-aligned, so it never covers a curve
  let x = x0 + w;
  for (const s of [...series].reverse()) {
    parts.push(`<text x="${x}" y="${y0 - 8}" font-size="12" text-anchor="end" fill="${s.color}">■ ${esc(s.name)}</text>`);
    x -= 24 + 7 * s.name.length;
  }
  return parts.join('\n');
}

export function curvesSvg(history: History, title = 'ir2f training'): string {
  const W = 900;
  const H = 620;
  const names = [...new Set(history.steps.flatMap((s) => Object.keys(s.losses)))];
  const window = Math.max(1, Math.round(history.steps.length / 50));
  const lossSeries: Series[] = names.map((name, i) => {
    const pts = history.steps.filter((s) => Number.isFinite(s.losses[name]));
    const smooth = movingAverage(pts.map((s) => s.losses[name]), window);
    return { name, color: COLORS[i % COLORS.length], points: pts.map((s, j) => [s.step, smooth[j]] as [number, number]) };
  });
  const evalSeries: Series[] = (['student', 'teacher'] as const).flatMap((model, i) => {
    const pts = history.evals.filter((e) => e.model === model).map((e) => [e.step, e.miou * 100] as [number, number]);
    return pts.length ? [{ name: `${model} mIoU`, color: COLORS[i], points: pts }] : [];
  });
  const rel = history.reliability;
  const relSeries: Series[] = (['q', 'r', 'gamma'] as const).flatMap((k, i) => {
    const pts = rel.filter((p) => p[k] != null);
    const smooth = movingAverage(pts.map((p) => p[k]!), window);
    const name = { q: 'q (pseudo-label weight)', r: 'mean r', gamma: 'mean γ' }[k];
    return pts.length ? [{ name, color: COLORS[i + 2], points: pts.map((p, j) => [p.step, smooth[j]] as [number, number]) }] : [];
  });
  const withRel = relSeries.length > 0;
  const height = withRel ? H + 290 : H;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="24" font-size="16" text-anchor="middle">${esc(title)}</text>
${panel(70, 60, W - 100, 220, `losses (moving average over ${window} steps)`, lossSeries)}
${panel(70, 350, W - 100, 220, 'target mIoU (%)', evalSeries)}
${withRel ? panel(70, 640, W - 100, 220, 'pseudo-label reliability (target pixels)', relSeries, [0, 1]) : ''}
</svg>`;
}

export async function writeCurvesPng(history: History, file: string, title?: string): Promise<void> {
  const png = await sharp(Buffer.from(curvesSvg(history, title))).png().toBuffer();
  await writeAtomic(file, png);
}
