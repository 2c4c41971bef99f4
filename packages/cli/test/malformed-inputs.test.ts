/**
 * Malformed input, as a careful new user would try it: for each, a non-zero exit, one line naming the culprit,
 * no stack trace, and no partial file left behind.
 */
import test from 'ava';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { AUTO_SLIDE_PIXELS } from '@ir2f/core';
import { runCli } from '@ir2f/cli';
import { makeBenchmark, scanDataset, writeIndexedPng } from '@ir2f/datasets';

let dir = '';
let data = '';
let ckpt = '';

const run = async (...args: string[]) => {
  const out: string[] = [];
  const err: string[] = [];
  // --workers and --threads set these for the process: one case's must not reach the next
  const env = { w: process.env.IR2F_WORKERS, t: process.env.IR2F_WASM_THREADS };
  try {
    const code = await runCli(['node', 'ir2f', ...args], { log: (l) => out.push(l), error: (l) => err.push(l), tty: false });
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    for (const [k, v] of [['IR2F_WORKERS', env.w], ['IR2F_WASM_THREADS', env.t]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
};

const tiny = ['--set', 'data.crop=[32,32]', '--set', 'train.evalEvery=0', '--set', 'train.checkpointEvery=0', '--set', 'data.rareClass.minPixels=5'];
const train = (...extra: string[]) => ['train', '--config', 'synth2real', '--source', `gta:${data}/gta`, '--target', `cityscapes:${data}/cityscapes`, ...tiny, ...extra];

/** A copy of the benchmark with the first gta label (or image) replaced. */
async function brokenCopy(name: string, write: (label: string, image: string) => Promise<unknown>): Promise<string> {
  const root = path.join(dir, name);
  await makeBenchmark('synth2real', root, { size: [48, 40], counts: { source: 3, targetTrain: 2, targetVal: 2 } });
  const ds = await scanDataset({ ...(await import('@ir2f/datasets')).gta5(path.join(root, 'gta')) });
  await write(ds.items[0].label!, ds.items[0].image);
  return root;
}

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-malformed-'));
  data = path.join(dir, 'bench');
  await makeBenchmark('synth2real', data, { size: [48, 40], counts: { source: 3, targetTrain: 2, targetVal: 2 } });
  const r = await run(...train('--steps', '2', '--work-dir', path.join(dir, 'ok')));
  if (r.code !== 0) throw new Error(r.err);
  ckpt = path.join(dir, 'ok', 'step-000002.safetensors');
});

test.after.always(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Case {
  name: string;
  args: () => Promise<string[]> | string[];
  culprit: RegExp;
  /** Paths that must not exist afterwards (no partial output). */
  absent?: () => string[];
}

const f = (...p: string[]) => path.join(dir, ...p);

let own: Promise<string> | undefined;
/** A small folder dataset of one's own (colour-coded labels, two classes) with good and bad spec files; made once. */
function ownData(): Promise<string> {
  own ??= (async () => {
    const root = f('own');
    const colours = [[200, 0, 0], [0, 0, 200]];
    for (const [name, off] of [['a', [0, 0]], ['b', [0, 0]], ['c', [9, 9]]] as const) {
      const folderName = name === 'c' ? 'bad' : 'src';
      await mkdir(path.join(root, folderName, 'images'), { recursive: true });
      await mkdir(path.join(root, folderName, 'labels'), { recursive: true });
      await sharp(Buffer.alloc(48 * 40 * 3, 90), { raw: { width: 48, height: 40, channels: 3 } }).png().toFile(path.join(root, folderName, 'images', `${name}.png`));
      const label = Buffer.alloc(48 * 40 * 3);
      for (let i = 0; i < 48 * 40; i++) label.set(i % 48 < 24 ? colours[0] : colours[1].map((v, k) => v + off[k % 2]), i * 3);
      await sharp(label, { raw: { width: 48, height: 40, channels: 3 } }).png().toFile(path.join(root, folderName, 'labels', `${name}.png`));
    }
    await writeFile(path.join(root, 'pal.yaml'), 'encoding: palette\nclasses:\n  - { name: lava, color: [200, 0, 0] }\n  - { name: rock, color: [0, 0, 200] }\n');
    await writeFile(path.join(root, 'ids.yaml'), 'classes:\n  - { name: lava }\n  - { name: rock }\n');
    await writeFile(path.join(root, 'dup.yaml'), 'classes:\n  - { name: lava, id: 1 }\n  - { name: rock, id: 1 }\n');
    await writeFile(path.join(root, 'ice.yaml'), 'encoding: palette\nclasses:\n  - { name: ice, color: [200, 0, 0] }\n  - { name: rock, color: [0, 0, 200] }\n');
    return root;
  })();
  return own;
}
const ownTrain = async (...extra: string[]) => ['train', '--config', 'synth2real', '--source', `folder:${await ownData()}/src`, ...tiny, '--steps', '1', ...extra];

const CASES: Case[] = [
  // the command line itself
  { name: 'train without --config', args: () => ['train'], culprit: /required option '-c, --config/ },
  { name: 'unknown command', args: () => ['trian'], culprit: /unknown command 'trian'/ },
  { name: 'unknown option', args: () => ['train', '--config', 'synth2real', '--stpes', '3'], culprit: /unknown option '--stpes'/ },
  { name: '--steps 0', args: () => train('--steps', '0'), culprit: /--steps must be a positive integer, got '0'/ },
  { name: '--steps abc', args: () => train('--steps', 'abc'), culprit: /--steps must be a positive integer, got 'abc'/ },
  { name: '--threads 0', args: () => ['--threads', '0', ...train()], culprit: /--threads must be a positive integer/ },
  { name: '--workers 3', args: () => ['--workers', '3', ...train('--work-dir', f('w3'))], culprit: /workers .* must be 1 or 2, got '3'/, absent: () => [f('w3', 'config.json')] },
  { name: '--backend nope', args: () => train('--backend', 'nope'), culprit: /option '--backend <name>' argument 'nope' is invalid/ },
  // configs
  { name: 'unknown preset', args: () => ['train', '--config', 'gta2mars'], culprit: /'gta2mars' is neither a config file nor a preset/ },
  { name: 'missing config file', args: () => ['train', '--config', f('nope.yaml')], culprit: /config file .*nope\.yaml does not exist/ },
  {
    name: 'unparsable YAML', args: async () => {
      await writeFile(f('bad.yaml'), 'extends: synth2real\ntrain: [1, 2\n');
      return ['train', '--config', f('bad.yaml')];
    }, culprit: /cannot parse .*bad\.yaml/,
  },
  {
    name: 'a config that is a list', args: async () => {
      await writeFile(f('list.json'), '[1, 2]');
      return ['train', '--config', f('list.json')];
    }, culprit: /list\.json must hold an object/,
  },
  {
    name: 'a section that is not an object', args: async () => {
      await writeFile(f('section.yaml'), 'extends: synth2real\ntrain: [1, 2, 3]\n');
      return ['train', '--config', f('section.yaml')];
    }, culprit: /train: .*expected object, received array/,
  },
  { name: '--set without =', args: () => train('--set', 'train.steps'), culprit: /--set expects key=value, got 'train\.steps'/ },
  { name: '--set unknown key', args: () => train('--set', 'train.stepz=3'), culprit: /train: Unrecognized key.*stepz/ },
  { name: '--set negative steps', args: () => train('--set', 'train.steps=-3'), culprit: /train\.steps/ },
  { name: '--set a bad crop', args: () => train('--set', 'data.crop=big'), culprit: /data\.crop/ },
  { name: 'unknown model preset', args: () => train('--model', 'resnet-9000'), culprit: /model\.preset|resnet-9000/ },
  { name: 'unknown rectifier type', args: () => train('--set', 'rectifier.type="inr"'), culprit: /rectifier\.type/ },
  { name: 'plugin not installed', args: () => train('--set', 'plugins=[{"package":"@ir2f/plugin-nope"}]', '--work-dir', f('plug')), culprit: /plugin package '@ir2f\/plugin-nope' is not installed: npm install @ir2f\/plugin-nope/, absent: () => [f('plug', 'step-000001.safetensors')] },
  { name: 'invalid plugin options', args: () => train('--set', 'plugins=[{"package":"@ir2f/plugin-rmm","options":{"lambda":-1}}]', '--work-dir', f('plugopt')), culprit: /invalid options for plugin '@ir2f\/plugin-rmm'.*lambda/ },
  { name: 'two rectifiers', args: () => train('--set', 'rectifier.type="confidence"', '--set', 'plugins=[{"package":"@ir2f/plugin-inr-rectifier"}]', '--work-dir', f('tworect')), culprit: /token Rectifier is bound by two plugins: '@ir2f\/plugin-inr-rectifier' and '@ir2f\/core\/confidence-rectifier'/ },
  // data
  { name: 'unknown layout', args: () => train('--source', 'mars:/x'), culprit: /--source expects <layout>:<dir> with layout one of/ },
  { name: 'missing source folder', args: () => train('--source', `gta:${f('nowhere')}`, '--work-dir', f('nosrc')), culprit: /dataset 'gta': folder '\.' not found under .*nowhere/ },
  {
    name: 'source that is a file', args: async () => {
      await writeFile(f('a-file'), 'x');
      return train('--source', `gta:${f('a-file')}`, '--work-dir', f('srcfile'));
    }, culprit: /dataset 'gta': .*a-file is a file; give the dataset's folder/,
  },
  { name: 'classes beyond the model', args: () => train('--set', 'model.numClasses=3', '--work-dir', f('k3')), culprit: /holds train id \d+ .* and the model has 3 classes: set model\.numClasses to 19/, absent: () => [f('k3', 'step-000002.safetensors')] },
  {
    name: 'a corrupt source image', args: async () => train('--source', `gta:${await brokenCopy('corrupt', (_l, i) => writeFile(i, 'garbage'))}/gta`, '--work-dir', f('corrupt-run')),
    culprit: /cannot read the header of .*00000\.png/,
  },
  {
    name: 'a corrupt image with the wrong onCorrupt value', args: async () => train('--set', 'data.onCorrupt="ignore"'),
    culprit: /data\.onCorrupt/,
  },
  {
    name: 'a label of the wrong size', args: async () => train('--source', `gta:${await brokenCopy('size', (l) => writeIndexedPng(l, { data: new Uint8Array(16 * 16), width: 16, height: 16 }, [[0, 0, 0]]))}/gta`, '--work-dir', f('size-run')),
    culprit: /is 16×16 but its image .* is 48×40/,
  },
  {
    name: 'an RGBA label', args: async () => train('--source', `gta:${await brokenCopy('rgba', (l) => sharp(Buffer.alloc(48 * 40 * 4, 7), { raw: { width: 48, height: 40, channels: 4 } }).png().toFile(l))}/gta`, '--work-dir', f('rgba-run')),
    culprit: /has 4 channels \(RGBA\)/,
  },
  {
    name: 'an empty label', args: async () => train('--source', `gta:${await brokenCopy('empty', (l) => writeFile(l, ''))}/gta`, '--work-dir', f('empty-run')),
    culprit: /label .*00000\.png is empty \(0 bytes\)/,
  },
  // work dirs and resume
  { name: '--resume without a checkpoint', args: () => train('--resume', '--work-dir', f('fresh')), culprit: /--resume: no checkpoint \(step-\*\.safetensors\) in .*fresh/ },
  { name: 'a work dir that already holds a run', args: () => train('--steps', '2', '--work-dir', f('ok')), culprit: /already holds a run \(step-000002\.safetensors\): pass --resume/ },
  { name: '--resume with other steps', args: () => train('--steps', '5', '--work-dir', f('ok'), '--resume'), culprit: /these fields differ: train\.steps/ },
  {
    name: 'a work dir locked by a live run', args: async () => {
      await mkdir(f('locked'), { recursive: true });
      await writeFile(f('locked', '.ir2f.lock'), JSON.stringify({ pid: process.pid, host: os.hostname(), started: 'now' }));
      return train('--work-dir', f('locked'));
    }, culprit: /work dir .*locked is in use by ir2f train \(pid \d+ on /, absent: () => [f('locked', 'config.json')],
  },
  {
    name: 'a work dir under a file', args: async () => {
      await writeFile(f('plain'), 'x');
      return train('--work-dir', f('plain', 'run'));
    }, culprit: /work dir .*plain\/run: .*plain is a file/,
  },
  // eval, predict, export
  { name: 'eval a missing checkpoint', args: () => ['eval', '--checkpoint', f('none.safetensors')], culprit: /cannot read checkpoint .*none\.safetensors/ },
  {
    name: 'eval a file that is not a checkpoint', args: async () => {
      await writeFile(f('junk.safetensors'), 'not safetensors');
      return ['eval', '--checkpoint', f('junk.safetensors')];
    }, culprit: /junk\.safetensors is not a readable checkpoint/,
  },
  { name: 'eval with an unknown layout', args: () => ['eval', '--checkpoint', ckpt, '--data', 'mars:/x'], culprit: /--data expects <layout>:<dir>/ },
  { name: 'predict a missing input', args: () => ['predict', '--checkpoint', ckpt, '--input', f('no-images'), '--out', f('pred1')], culprit: /--input .*no-images does not exist/, absent: () => [f('pred1')] },
  {
    name: 'predict into an existing file', args: async () => {
      await writeFile(f('out-file'), 'x');
      return ['predict', '--checkpoint', ckpt, '--input', path.join(data, 'cityscapes', 'leftImg8bit', 'val'), '--out', f('out-file')];
    }, culprit: /--out .*out-file is a file: give a folder/,
  },
  {
    name: 'predict a corrupt image', args: async () => {
      await writeFile(f('broken.png'), 'garbage');
      return ['predict', '--checkpoint', ckpt, '--input', f('broken.png'), '--out', f('pred2')];
    }, culprit: /cannot decode image .*broken\.png/,
  },
  { name: 'predict --scale 0', args: () => ['predict', '--checkpoint', ckpt, '--input', f('x.png'), '--out', f('p'), '--scale', '0'], culprit: /--scale must be in \(0, 16\], got '0'/ },
  { name: 'export without a target', args: () => ['export', '--checkpoint', ckpt], culprit: /export needs --onnx <file>, --rectifier <file> or both/ },
  {
    name: 'export onto an existing folder', args: async () => {
      await mkdir(f('onnx-dir'), { recursive: true });
      return ['export', '--checkpoint', ckpt, '--onnx', f('onnx-dir')];
    }, culprit: /--onnx .*onnx-dir is a folder: give a file name/,
  },
  { name: 'export a rectifier the run does not have', args: () => ['export', '--checkpoint', ckpt, '--rectifier', f('r.onnx')], culprit: /rectifier/, absent: () => [f('r.onnx')] },
  // data make
  { name: 'data make an unknown benchmark', args: () => ['data', 'make', 'mars2venus', '--out', f('m')], culprit: /unknown benchmark 'mars2venus'/ },
  { name: 'data make --counts 0,0,0', args: () => ['data', 'make', 'synth2real', '--out', f('zero'), '--counts', '0,0,0'], culprit: /--counts/, absent: () => [f('zero')] },
  {
    name: 'data make --out a file', args: async () => {
      await writeFile(f('make-file'), 'x');
      return ['data', 'make', 'synth2real', '--out', f('make-file'), '--counts', '2,2,2', '--size', '48x40'];
    }, culprit: /--out .*make-file is a file/,
  },
  { name: 'data make --size big', args: () => ['data', 'make', 'synth2real', '--out', f('big'), '--size', 'big'], culprit: /--size/ },
  // your own data
  { name: 'a folder source without a label spec', args: () => ownTrain('--target', `folder:${f('own')}/src`), culprit: /data\.source: the folder layout needs a label-spec file: pass --classes <spec\.yaml>/ },
  { name: '--classes on a layout with its own classes', args: () => train('--classes', f('own', 'pal.yaml')), culprit: /data\.source\.classes: a label-spec file is for the folder layout; 'gta' has its own classes/ },
  { name: 'a label spec that does not exist', args: () => ownTrain('--classes', f('own', 'nope.yaml'), '--target', `folder:${f('own')}/src`), culprit: /label spec .*nope\.yaml does not exist/ },
  { name: 'a label spec with an id used twice', args: () => ownTrain('--classes', f('own', 'dup.yaml'), '--target', `folder:${f('own')}/src`), culprit: /label spec .*dup\.yaml: raw id\(s\) used by two classes: 1/ },
  {
    name: 'a target spec with a class the source lacks', args: () => ownTrain('--classes', f('own', 'pal.yaml'), '--target', `folder:${f('own')}/src`, '--target-classes', f('own', 'ice.yaml'), '--work-dir', f('ice-run')),
    culprit: /class\(es\) 'ice' match no source class \(source classes: lava, rock\); add them to 'mapping'/, absent: () => [f('ice-run', 'config.json')],
  },
  {
    name: 'colour-coded labels read through an id spec', args: () => ownTrain('--classes', f('own', 'ids.yaml'), '--target', `folder:${f('own')}/src`, '--work-dir', f('ids-run')),
    culprit: /labels\/a\.png has 3 channels .* give a label spec with encoding: palette/, absent: () => [f('ids-run', 'step-000001.safetensors')],
  },
  { name: 'data check of a folder without --classes', args: async () => ['data', 'check', `folder:${await ownData()}/src`], culprit: /data check folder:<dir> needs the label spec: --classes <spec\.yaml>/ },
  {
    name: 'data check of a folder with a label colour outside the spec', args: async () => ['data', 'check', `folder:${await ownData()}/bad`, '--classes', f('own', 'pal.yaml'), '--out', f('bad-check.png')],
    culprit: /data check: 1 problem\(s\) would stop training .*labels\/c\.png has colours outside the .* spec: \[9, 9, 209\]/,
  },
];

test('at least 40 malformed inputs', (t) => {
  t.true(CASES.length >= 40, `${CASES.length} cases`);
});

for (const c of CASES) {
  test.serial(`malformed: ${c.name}`, async (t) => {
    const r = await run(...await c.args());
    t.not(r.code, 0, `exit code 0; out: ${r.out}`);
    const lines = r.err.split('\n').filter(Boolean);
    t.is(lines.length, 1, `one line: ${r.err}`);
    t.regex(r.err, c.culprit);
    t.notRegex(r.err, /\n\s+at |Error: .*\n/, 'no stack trace');
    for (const p of c.absent?.() ?? []) {
      const there = await readdir(path.dirname(p)).then((names) => names.includes(path.basename(p))).catch(() => false);
      t.false(there, `${p} left behind`);
    }
    // no writer's temp file anywhere under the test dir
    const temps = (await readdir(dir, { recursive: true })).filter((n) => String(n).endsWith('.tmp'));
    t.deepEqual(temps, []);
  });
}

test.serial('data.onCorrupt="skip": a corrupt source image is left out with a warning and the run trains', async (t) => {
  const root = await brokenCopy('skip-run', (_l, i) => writeFile(i, 'garbage'));
  const r = await run(...train('--steps', '1', '--source', `gta:${root}/gta`, '--work-dir', f('skip-run-out'), '--set', 'data.onCorrupt="skip"'));
  t.is(r.code, 0, r.err);
  const log = await (await import('node:fs/promises')).readFile(f('skip-run-out', 'events.jsonl'), 'utf8');
  t.regex(log, /"code":"CORRUPT_IMAGE","message":"source: left out 00000: cannot read the header/);
});

test.serial('a 4×4 image and a 1800×1200 one (above AUTO_SLIDE_PIXELS) predict (padded; sliding windows)', async (t) => {
  const small = f('tiny.png');
  await sharp(Buffer.alloc(4 * 4 * 3, 120), { raw: { width: 4, height: 4, channels: 3 } }).png().toFile(small);
  const big = f('huge.png');
  await sharp(Buffer.alloc(1800 * 1200 * 3, 90), { raw: { width: 1800, height: 1200, channels: 3 } }).png().toFile(big);
  t.true(1800 * 1200 > AUTO_SLIDE_PIXELS);
  for (const [input, w, h] of [[big, 1800, 1200], [small, 4, 4]] as const) {
    const out = f(`pred-${w}`);
    const r = await run('predict', '--checkpoint', ckpt, '--input', input, '--out', out);
    t.is(r.code, 0, r.err);
    const pred = (await readdir(out)).find((n) => n.endsWith('_pred.png'))!;
    const meta = await sharp(path.join(out, pred)).metadata();
    t.deepEqual([meta.width, meta.height], [w, h]);
  }
});

test.serial('data check lists each problem of a folder (unreadable, size, colours outside the spec, unpaired both ways) and exits 1; a clean one exits 0 with counts', async (t) => {
  const own = await ownData();
  const clean = await run('data', 'check', `folder:${own}/src`, '--classes', path.join(own, 'pal.yaml'), '--out', f('clean-check.png'));
  t.is(clean.code, 0, clean.err);
  t.regex(clean.out, /^ {2}all +2 +2 +0 +0 +0 +48×40 \(2\)$/m);
  t.regex(clean.out, /^ {2}lava +50\.0 % +2$/m);
  t.regex(clean.out, /no problems found/);
  const root = f('own-broken');
  for (const sub of ['images', 'labels']) await mkdir(path.join(root, sub), { recursive: true });
  const image = (file: string) => sharp(Buffer.alloc(48 * 40 * 3, 90), { raw: { width: 48, height: 40, channels: 3 } }).png().toFile(file);
  const label = (file: string, w = 48, colour = [200, 0, 0]) => {
    const data = Buffer.alloc(w * 40 * 3);
    for (let i = 0; i < w * 40; i++) data.set(colour, i * 3);
    return sharp(data, { raw: { width: w, height: 40, channels: 3 } }).png().toFile(file);
  };
  await image(path.join(root, 'images/ok.png'));
  await label(path.join(root, 'labels/ok.png'));
  await writeFile(path.join(root, 'images/corrupt.png'), 'garbage');
  await label(path.join(root, 'labels/corrupt.png'));
  await image(path.join(root, 'images/small.png'));
  await label(path.join(root, 'labels/small.png'), 20);
  await image(path.join(root, 'images/odd.png'));
  await label(path.join(root, 'labels/odd.png'), 48, [1, 2, 3]);
  await image(path.join(root, 'images/nolabel.png'));
  await label(path.join(root, 'labels/noimage.png'));
  const r = await run('data', 'check', `folder:${root}`, '--classes', path.join(own, 'pal.yaml'), '--out', f('broken-check.png'));
  t.is(r.code, 1);
  t.regex(r.err, /^ir2f: data check: 5 problem\(s\) would stop training/);
  t.regex(r.out, /^ {2}all +5 +1 +1 +1 +1 +48×40 \(4\)$/m);
  for (const culprit of [/own-broken\/labels\/noimage\.png has no image/, /image nolabel has no label/, /corrupt\.png.*(corrupt|not an image)/, /small\.png is 20×40 but its image/, /odd\.png has colours outside .*\[1, 2, 3\]/]) {
    t.regex(r.out, culprit);
  }
  t.regex(r.out, /label values outside the spec: \[1, 2, 3\] \(1920 px\)/);
  t.true((await readdir(dir)).includes('broken-check.png'), 'the PNG is written even when problems are found');
});
