/**
 * The README's rectification figure from `ir2f predict --rectification` output: one row per image,
 * image | prediction overlay | r (each scaled to r's resolution, nearest neighbour).
 *
 *   npx tsx --tsconfig tsconfig.tsx.json docs/rectification-figure.ts <pred dir> <out.png> <image> [<image> …]
 */
import path from 'node:path';
import sharp from 'sharp';

const [predDir, out, ...images] = process.argv.slice(2);
if (!predDir || !out || images.length === 0) {
  console.error('usage: rectification-figure.ts <pred dir> <out.png> <image> [<image> …]');
  process.exit(1);
}
const GAP = 8;
const rows: { input: Buffer; top: number; left: number }[] = [];
let width = 0;
let y = GAP;
for (const image of images) {
  const stem = path.join(predDir, path.basename(image).replace(/\.(png|jpe?g|webp|tiff?)$/i, ''));
  const r = await sharp(`${stem}_rectification.png`).metadata();
  const [w, h] = [r.width!, r.height!];
  const tiles = [image, `${stem}_overlay.png`, `${stem}_rectification.png`];
  let x = GAP;
  for (const file of tiles) {
    rows.push({ input: await sharp(file).resize(w, h, { kernel: 'nearest' }).png().toBuffer(), top: y, left: x });
    x += w + GAP;
  }
  width = Math.max(width, x);
  y += h + GAP;
}
await sharp({ create: { width, height: y, channels: 3, background: { r: 255, g: 255, b: 255 } } }).composite(rows).png().toFile(out);
console.log(`wrote ${out} (${width}×${y})`);
