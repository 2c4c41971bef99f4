/**
 * "Adapt to your own domain" (README) end to end, on data that is not a street scene: aerial farmland, five
 * classes in the source (soil, crop, tree, water, roof), rendered flat and sunny with colour-coded labels; a
 * hazy, noisy, darker target without roofs whose few labelled val images store class ids under other names
 * (field, river), joined to the source's classes by its spec's mapping. Then the guide's commands, in process:
 * `data check` on both folders, `train`, `eval` and `predict`.
 *
 *   npx tsx --tsconfig tsconfig.tsx.json --conditions=ir2f-source examples/own-domain.ts [dir] [--steps N]
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Rng } from '@ir2f/core';
import { runCli } from '@ir2f/cli';
import { writeGrayPng, writeRgbPng, type RgbImage } from '@ir2f/datasets';

const W = 128;
const H = 96;
const CLASSES = ['soil', 'crop', 'tree', 'water', 'roof'] as const;
/** Source label colours (its spec's palette encoding) and flat render colours. */
const LABEL_COLORS: [number, number, number][] = [[139, 105, 60], [120, 200, 60], [20, 90, 30], [40, 90, 200], [200, 60, 50]];
const SOURCE_LOOK: [number, number, number][] = [[150, 118, 80], [110, 190, 70], [35, 100, 40], [60, 110, 210], [190, 80, 70]];
/** The target: hazy and dark, with greyer fields and murkier water. */
const TARGET_LOOK: [number, number, number][] = [[96, 92, 84], [88, 112, 80], [40, 62, 52], [62, 80, 100], [120, 90, 90]];
/** Target val labels: raw ids per own class (0 = unlabelled). */
const TARGET_IDS = { soil: 1, field: 2, tree: 3, river: 4 };

/** One scene's class map: soil, fields (striped rectangles), a river band, trees, and (source only) roofs. */
function layout(rng: Rng, roofs: boolean): Uint8Array {
  const map = new Uint8Array(W * H);
  const set = (x: number, y: number, k: number) => {
    if (x >= 0 && x < W && y >= 0 && y < H) map[y * W + x] = k;
  };
  for (let f = 1 + rng.int(3); f > 0; f--) {
    const [x0, y0, w, h] = [rng.int(W - 20), rng.int(H - 16), 20 + rng.int(50), 16 + rng.int(40)];
    for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) set(x, y, 1);
  }
  if (rng.uniform() < 0.7) {
    const [y0, amp, freq, width] = [rng.uniform(20, H - 20), rng.uniform(4, 14), rng.uniform(0.03, 0.08), rng.uniform(5, 12)];
    for (let x = 0; x < W; x++) {
      const yc = y0 + amp * Math.sin(freq * x);
      for (let y = Math.floor(yc - width / 2); y <= yc + width / 2; y++) set(x, y, 3);
    }
  }
  for (let t = 4 + rng.int(16); t > 0; t--) {
    const [cx, cy, r] = [rng.uniform(0, W), rng.uniform(0, H), rng.uniform(3, 7)];
    for (let y = Math.floor(cy - r); y <= cy + r; y++) for (let x = Math.floor(cx - r); x <= cx + r; x++) if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) set(x, y, 2);
  }
  if (roofs) {
    for (let b = rng.int(5); b > 0; b--) {
      const [x0, y0, w, h] = [rng.int(W - 12), rng.int(H - 12), 6 + rng.int(7), 6 + rng.int(7)];
      for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) set(x, y, 4);
    }
  }
  return map;
}

/** Colours per class, field stripes and tree speckle; the target adds haze, sensor noise and a blur. */
function render(map: Uint8Array, look: [number, number, number][], rng: Rng, target: boolean): RgbImage {
  const data = new Float32Array(W * H * 3);
  for (let i = 0; i < W * H; i++) {
    const [x, y] = [i % W, Math.floor(i / W)];
    const k = map[i];
    const stripe = k === 1 ? (Math.floor((x + y) / 3) % 2 ? 12 : -12) : 0;
    const speckle = k === 2 ? rng.normal(0, 10) : 0;
    for (let c = 0; c < 3; c++) data[i * 3 + c] = look[k][c] + stripe + speckle + rng.normal(0, target ? 14 : 4);
  }
  let px = data;
  if (target) {
    // a 3×3 box blur, then haze towards grey
    px = new Float32Array(data.length);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        for (let c = 0; c < 3; c++) {
          let [s, n] = [0, 0];
          for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
            const [xx, yy] = [x + dx, y + dy];
            if (xx >= 0 && xx < W && yy >= 0 && yy < H) [s, n] = [s + data[(yy * W + xx) * 3 + c], n + 1];
          }
          px[(y * W + x) * 3 + c] = 0.75 * (s / n) + 0.25 * 120;
        }
      }
    }
  }
  return { data: Uint8Array.from(px, (v) => Math.max(0, Math.min(255, Math.round(v)))), width: W, height: H };
}

const SOURCE_SPEC = `# the source's classes: the model's classes, in this order
name: farmland-source
encoding: palette          # labels are RGB PNGs, one colour per class
classes:
${CLASSES.map((c, k) => `  - { name: ${c}, color: [${LABEL_COLORS[k].join(', ')}] }`).join('\n')}
`;

const TARGET_SPEC = `# the target's val labels: class ids, own names, no roofs
name: farmland-target
encoding: index
classes:
${Object.entries(TARGET_IDS).map(([c, id]) => `  - { name: ${c}, id: ${id} }`).join('\n')}
ignore: [0]
mapping: { field: crop, river: water }   # own name: source name (soil and tree match by name)
`;

export interface OwnDomainCounts {
  source: number;
  targetTrain: number;
  targetVal: number;
}

/** Write the two folders and their label-spec files under `dir`. */
export async function makeFarmland(dir: string, counts: OwnDomainCounts = { source: 120, targetTrain: 120, targetVal: 30 }, seed = 0): Promise<void> {
  const rng = new Rng(seed);
  const src = rng.fork('source');
  for (let i = 0; i < counts.source; i++) {
    const map = layout(src, true);
    const stem = `farm_${String(i).padStart(4, '0')}`;
    await writeRgbPng(path.join(dir, 'source/images', `${stem}.png`), render(map, SOURCE_LOOK, src, false));
    const label = new Uint8Array(W * H * 3);
    map.forEach((k, j) => label.set(LABEL_COLORS[k], j * 3));
    await writeRgbPng(path.join(dir, 'source/labels', `${stem}.png`), { data: label, width: W, height: H });
  }
  const tgt = rng.fork('target');
  const targetIds = [TARGET_IDS.soil, TARGET_IDS.field, TARGET_IDS.tree, TARGET_IDS.river];
  for (const [split, n] of [['train', counts.targetTrain], ['val', counts.targetVal]] as const) {
    for (let i = 0; i < n; i++) {
      const map = layout(tgt, false);
      const stem = `aerial_${split}_${String(i).padStart(4, '0')}`;
      await writeRgbPng(path.join(dir, 'target/images', split, `${stem}.png`), render(map, TARGET_LOOK, tgt, true));
      if (split === 'val') await writeGrayPng(path.join(dir, 'target/labels/val', `${stem}.png`), { data: map.map((k) => targetIds[k]), width: W, height: H });
    }
  }
  await fs.writeFile(path.join(dir, 'source.yaml'), SOURCE_SPEC);
  await fs.writeFile(path.join(dir, 'target.yaml'), TARGET_SPEC);
}

/** The guide's commands, as a user types them after `npm run ir2f --`. */
export function guideCommands(dir: string, steps: number, workDir = path.join(dir, 'run')): string[][] {
  const ckpt = path.join(workDir, `step-${String(steps).padStart(6, '0')}.safetensors`);
  return [
    ['data', 'check', `folder:${path.join(dir, 'source')}`, '--classes', path.join(dir, 'source.yaml'), '--out', path.join(dir, 'check-source.png')],
    ['data', 'check', `folder:${path.join(dir, 'target')}`, '--classes', path.join(dir, 'target.yaml'), '--as', 'target', '--out', path.join(dir, 'check-target.png')],
    ['train', '--config', 'synth2real', '--source', `folder:${path.join(dir, 'source')}`, '--classes', path.join(dir, 'source.yaml'),
      '--target', `folder:${path.join(dir, 'target')}`, '--target-classes', path.join(dir, 'target.yaml'), '--steps', String(steps),
      '--set', `train.evalEvery=${Math.min(100, steps)}`, '--set', `train.checkpointEvery=${Math.min(100, steps)}`, '--work-dir', workDir],
    ['eval', '--checkpoint', ckpt, '--json'],
    ['predict', '--checkpoint', ckpt, '--input', path.join(dir, 'target/images/val'), '--out', path.join(workDir, 'pred')],
  ];
}

/** Make the data and run the guide; returns each command's output lines, and fails on the first non-zero exit. */
export async function ownDomain(dir: string, opts: { steps?: number; counts?: OwnDomainCounts; log?: (line: string) => void } = {}): Promise<{ outputs: string[][]; eval: { miou: number; classes: number[]; perClass: Record<string, number | null> } }> {
  const steps = opts.steps ?? 400;
  await makeFarmland(dir, opts.counts);
  const outputs: string[][] = [];
  for (const args of guideCommands(dir, steps)) {
    const lines: string[] = [];
    opts.log?.(`$ ir2f ${args.join(' ')}`);
    const code = await runCli(['node', 'ir2f', ...args], {
      tty: false,
      log: (l) => {
        lines.push(l);
        opts.log?.(l);
      },
      error: (l) => lines.push(l),
    });
    outputs.push(lines);
    if (code !== 0) throw new Error(`ir2f ${args.slice(0, 2).join(' ')} exited ${code}: ${lines.at(-1)}`);
  }
  return { outputs, eval: JSON.parse(outputs[3].join('\n')) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ options: { steps: { type: 'string', default: '400' } }, allowPositionals: true });
  const dir = path.resolve(positionals[0] ?? path.join('work_dirs', 'own-domain'));
  ownDomain(dir, { steps: Number(values.steps), log: (l) => console.log(l) }).then((r) => {
    console.log(`target mIoU ${(r.eval.miou * 100).toFixed(1)} over ${r.eval.classes.length} classes (${Object.keys(r.eval.perClass).join(', ')})`);
  }).catch((err: unknown) => {
    console.error(`example failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
