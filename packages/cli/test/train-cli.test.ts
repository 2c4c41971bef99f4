/**
 * The CLI end to end on a tiny generated benchmark: train (with resume), eval --json, predict PNGs,
 * export to ONNX checked by onnxruntime against tfjs, and the errors users meet.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { initBackend, readCheckpoint } from '@ir2f/core';
import { loadTrained, runCli } from '@ir2f/cli';
import { makeBenchmark, normalize, readRgb } from '@ir2f/datasets';

let dir = '';
let data = '';

const run = async (...args: string[]) => {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(['node', 'ir2f', ...args], { log: (l) => out.push(l), error: (l) => err.push(l), tty: false });
  return { code, out: out.join('\n'), err: err.join('\n') };
};

const tiny = ['--set', 'data.crop=[32,32]', '--set', 'train.evalEvery=2', '--set', 'train.checkpointEvery=2',
  '--set', 'train.optimizer.warmupSteps=1', '--set', 'data.rareClass.minPixels=5'];

test.before(async () => {
  await initBackend('wasm');
  dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-cli-train-'));
  data = path.join(dir, 'bench');
  await makeBenchmark('synth2real', data, { size: [48, 40], counts: { source: 6, targetTrain: 4, targetVal: 2 } });
});

test.after.always(async () => {
  await rm(dir, { recursive: true, force: true });
});

test.serial('ir2f train → eval --json → predict → export: a run a user can follow', async (t) => {
  const work = path.join(dir, 'run');
  const args = ['train', '--config', 'synth2real', '--source', `gta:${data}/gta`, '--target', `cityscapes:${data}/cityscapes`,
    '--steps', '4', '--work-dir', work, ...tiny, '--set', 'data.resize.val=[40,30]'];
  const r = await run(...args);
  t.is(r.code, 0, r.err);
  t.regex(r.out, /data: 6 source \(gta\), 4 target \(cityscapes train\), 2 val \(cityscapes val\)/);
  t.regex(r.out, /eval @2 student: mIoU \d/);
  t.regex(r.out, /done at step 4 .* target mIoU student [\d.]+, teacher [\d.]+/);
  const files = await readdir(work);
  for (const f of ['config.json', 'curves.png', 'events.jsonl', 'summary.json', 'step-000002.safetensors', 'step-000004.safetensors']) {
    t.true(files.includes(f), `${f} in ${files.join(', ')}`);
  }
  const events = (await readFile(path.join(work, 'events.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string });
  t.is(events[0].type, 'run-start');
  t.is(events.at(-1)!.type, 'run-end');
  t.is(events.filter((e) => e.type === 'step').length, 4);
  const curves = await sharp(path.join(work, 'curves.png')).metadata();
  t.is(curves.format, 'png');

  // a second run into the same work dir must not clobber it …
  const again = await run(...args);
  t.is(again.code, 1);
  t.regex(again.err, /already holds a run .*pass --resume/);
  // … and --resume with more steps is a different schedule: refused with the field named
  const configBefore = await readFile(path.join(work, 'config.json'), 'utf8');
  const longer = await run(...args.map((a) => (a === '4' ? '6' : a)), '--resume');
  t.is(longer.code, 1);
  t.regex(longer.err, /these fields differ: train\.steps/);
  // refused: config.json still describes the checkpoints beside it
  t.is(await readFile(path.join(work, 'config.json'), 'utf8'), configBefore);

  const ckpt = path.join(work, 'step-000004.safetensors');
  const ev = await run('eval', '--checkpoint', ckpt, '--json');
  t.is(ev.code, 0, ev.err);
  const report = JSON.parse(ev.out) as { miou: number; perClass: Record<string, number | null>; images: number; classes: number[] };
  t.true(report.miou >= 0 && report.miou <= 1);
  t.is(report.images, 2);
  // the run's own final evaluation, at its val scale (data.resize.val), gives the same number
  const summary = JSON.parse(await readFile(path.join(work, 'summary.json'), 'utf8')) as { miou: { student: number } };
  t.true(Math.abs(report.miou - summary.miou.student) < 1e-9, `ir2f eval ${report.miou} vs the run's ${summary.miou.student}`);
  // a Cityscapes-layout target is evaluated over the 19 Cityscapes classes (classes absent from both are null)
  t.is(Object.keys(report.perClass).length, 19);
  t.is(Object.keys(report.perClass)[0], 'road');
  t.is(report.perClass.wall, null);
  const ev2 = await run('eval', '--checkpoint', ckpt, '--data', `cityscapes:${data}/cityscapes`, '--split', 'val', '--teacher');
  t.is(ev2.code, 0, ev2.err);
  t.regex(ev2.out, /teacher of .* \(step 4\) on cityscapes val .*, 2 images[\s\S]*mIoU [\d.]+ over 19 classes/);

  const pred = path.join(dir, 'pred');
  const p = await run('predict', '--checkpoint', ckpt, '--input', path.join(data, 'cityscapes', 'leftImg8bit', 'val'), '--out', pred, '--probs');
  t.is(p.code, 0, p.err);
  const pngs = (await readdir(pred)).sort();
  t.is(pngs.length, 8);
  t.true(pngs.some((f) => f.endsWith('_pred.png')) && pngs.some((f) => f.endsWith('_overlay.png')) && pngs.some((f) => f.endsWith('_entropy.png')));
  const meta = await sharp(path.join(pred, pngs.find((f) => f.endsWith('_pred.png'))!)).metadata();
  t.deepEqual([meta.width, meta.height], [48, 40]);

  const onnxFile = path.join(dir, 'model.onnx');
  const ex = await run('export', '--checkpoint', ckpt, '--onnx', onnxFile);
  t.is(ex.code, 0, ex.err);
  // onnxruntime on a real image vs tfjs on the same input
  const valDir = path.join(data, 'cityscapes', 'leftImg8bit', 'val');
  const city = (await readdir(valDir))[0];
  const img = await readRgb(path.join(valDir, city, (await readdir(path.join(valDir, city)))[0]));
  const x = normalize(img);
  const nchw = new Float32Array(x.length);
  for (let i = 0; i < img.width * img.height; i++) for (let c = 0; c < 3; c++) nchw[c * img.width * img.height + i] = x[i * 3 + c];
  const session = await ort.InferenceSession.create(onnxFile);
  const out = await session.run({ input: new ort.Tensor('float32', nchw, [1, 3, img.height, img.width]) });
  const { model } = await loadTrained(ckpt);
  const ref = tf.tidy(() => tf.transpose(model.predict(tf.tensor4d(x, [1, img.height, img.width, 3])), [0, 3, 1, 2]).dataSync());
  model.dispose();
  const got = out.logits.data as Float32Array;
  t.is(got.length, ref.length);
  t.true(got.every((v, i) => Math.abs(v - ref[i]) < 1e-4), 'onnxruntime logits match tfjs within 1e-4');
});

test.serial('ir2f train --resume continues an interrupted run to the same weights as a straight run', async (t) => {
  const common = ['train', '--config', 'synth2real', '--source', `gta:${data}/gta`, '--target', `cityscapes:${data}/cityscapes`,
    '--steps', '4', ...tiny, '--set', 'data.valLimit=1'];
  const straight = path.join(dir, 'straight');
  t.is((await run(...common, '--work-dir', straight)).code, 0);
  // a run killed while writing step 4: its checkpoint cut short, a writer's temp file, the lock of a dead process
  const parted = path.join(dir, 'parted');
  t.is((await run(...common, '--work-dir', parted)).code, 0);
  const last = path.join(parted, 'step-000004.safetensors');
  const bytes = await readFile(last);
  await writeFile(last, bytes.subarray(0, bytes.length >> 1));
  const dead = await deadPid();
  const tmpName = `step-000004.safetensors.${dead}.1700000000000.tmp`;
  await writeFile(path.join(parted, tmpName), 'partial');
  await writeFile(path.join(parted, '.ir2f.lock'), JSON.stringify({ pid: dead, host: os.hostname(), started: '2026-01-01T00:00:00Z' }));
  const resumed = await run(...common, '--work-dir', parted, '--resume');
  t.is(resumed.code, 0, resumed.err);
  t.regex(resumed.out, new RegExp(`warning: taking over the lock of a run that is gone \\(pid ${dead} `));
  t.regex(resumed.out, new RegExp(`warning: removed ${tmpName.replace(/\./g, '\\.')}, left by a writer that was killed`));
  t.regex(resumed.out, /warning: step-000004\.safetensors is broken \(.*\); resuming from an older checkpoint/);
  const files = await readdir(parted);
  t.false(files.some((f) => f.endsWith('.tmp') || f === '.ir2f.lock'), files.join(', '));
  const a = await readCheckpoint(path.join(straight, 'step-000004.safetensors'));
  const b = await readCheckpoint(last);
  for (const [name, tensor] of a.tensors) t.deepEqual(b.tensors.get(name)?.data, tensor.data, name);
  // the log holds each step once: the steps after the resumed checkpoint were cut before the run went on
  const steps = (await readFile(path.join(parted, 'events.jsonl'), 'utf8')).trim().split('\n')
    .map((l) => JSON.parse(l) as { type: string; step?: number }).filter((e) => e.type === 'step').map((e) => e.step);
  t.deepEqual(steps, [1, 2, 3, 4]);
  // a live holder: the second run is refused, naming it
  await writeFile(path.join(parted, '.ir2f.lock'), JSON.stringify({ pid: process.pid, host: os.hostname(), started: '2026-01-01T00:00:00Z' }));
  const locked = await run(...common, '--work-dir', parted, '--resume');
  t.is(locked.code, 1);
  t.regex(locked.err, new RegExp(`work dir .*parted is in use by ir2f train \\(pid ${process.pid} on ${os.hostname()} since 2026-01-01T00:00:00Z\\): wait for it to finish, or choose another --work-dir`));
  await rm(path.join(parted, '.ir2f.lock'));
});

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

test.serial('configuration errors name the field, the file or the package', async (t) => {
  const unknown = await run('train', '--config', 'gta2mars');
  t.is(unknown.code, 1);
  t.regex(unknown.err, /'gta2mars' is neither a config file nor a preset; presets: gta2cs-daformer, syn2cs-daformer/);
  const bad = await run('train', '--config', 'synth2real', '--set', 'train.steps=-3', '--set', 'data.crop=big');
  t.regex(bad.err, /^ir2f: invalid config: data\.crop: [^\n]*; train\.steps: [^\n]*$/);
  const yaml = path.join(dir, 'run.yaml');
  await writeFile(yaml, 'extends: synth2real\nplugins:\n  - package: "@ir2f/plugin-nonexistent"\n');
  const plugin = await run('train', '--config', yaml, '--work-dir', path.join(dir, 'p'));
  t.regex(plugin.err, /plugin package '@ir2f\/plugin-nonexistent' is not installed: npm install @ir2f\/plugin-nonexistent/);
  const missing = await run('train', '--config', 'synth2real', '--source', `gta:${dir}/nowhere`, '--target', `cityscapes:${data}/cityscapes`, '--work-dir', path.join(dir, 'm'));
  t.regex(missing.err, /dataset 'gta': folder '\.' not found under .*nowhere/);
  const layout = await run('train', '--config', 'synth2real', '--source', 'kitti:/data');
  t.regex(layout.err, /--source expects <layout>:<dir> with layout one of gta, synthia, cityscapes, acdc, dark_zurich, folder; got 'kitti:\/data'/);
  const notCkpt = await run('eval', '--checkpoint', yaml);
  t.regex(notCkpt.err, /not a readable checkpoint/);
  t.teardown(() => delete process.env.IR2F_WORKERS); // the option sets it for this process
  const workers = await run('--workers', '3', 'train', '--config', 'synth2real', '--work-dir', path.join(dir, 'w3'));
  t.regex(workers.err, /workers \(IR2F_WORKERS, ir2f --workers\) must be 1 or 2, got '3'/);
  for (const r of [bad, plugin, missing, layout, notCkpt, workers]) t.is(r.code, 1);
});

test.serial('ir2f presets and data list print what exists', async (t) => {
  const p = await run('presets');
  t.regex(p.out, /gta2cs-daformer +GTA5 → Cityscapes/);
  t.regex(p.out, /cs2dz-daformer/);
  const d = await run('data', 'list');
  for (const name of ['synth2real', 'day2night', 'camera', 'fog', 'sensor', 'city19']) t.regex(d.out, new RegExp(`^  ${name} +\\S`, 'm'));
  t.regex(d.out, /folder:<dir> is your own data/);
});

test.serial('SIGTERM during ir2f train: the step finishes, a checkpoint is written, the run ends "interrupted"', async (t) => {
  const work = path.join(dir, 'signalled');
  const bin = fileURLToPath(new URL('../src/bin.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import=tsx', '--conditions=ir2f-source', bin, 'train', '--config', 'synth2real',
    '--source', `gta:${data}/gta`, '--target', `cityscapes:${data}/cityscapes`, '--steps', '500', '--work-dir', work, ...tiny,
    '--set', 'train.evalEvery=0', '--set', 'train.checkpointEvery=0'], { env: { ...process.env, TSX_TSCONFIG_PATH: 'tsconfig.tsx.json' } });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // wait for the third step in the JSONL log, then stop the run
  for (let i = 0; i < 600; i++) {
    const log = await readFile(path.join(work, 'events.jsonl'), 'utf8').catch(() => '');
    if ((log.match(/"type":"step"/g) ?? []).length >= 3) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGTERM');
  t.is(await exited, 0, stderr);
  const events = (await readFile(path.join(work, 'events.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; step?: number; reason?: string });
  const end = events.at(-1)!;
  t.is(end.type, 'run-end');
  t.is(end.reason, 'interrupted');
  t.true(end.step! >= 3 && end.step! < 500);
  const ckpt = await readCheckpoint(path.join(work, `step-${String(end.step).padStart(6, '0')}.safetensors`));
  t.is(ckpt.meta.step, end.step!);
});

test.serial('a run with the INR rectifier plugin from the config; predict --rectification writes r at 2× the image', async (t) => {
  const work = path.join(dir, 'inr');
  const r = await run('train', '--config', 'synth2real', '--source', `gta:${data}/gta`, '--target', `cityscapes:${data}/cityscapes`,
    '--steps', '2', '--work-dir', work, ...tiny, '--set', 'data.valLimit=1',
    '--set', 'plugins=[{"package":"@ir2f/plugin-inr-rectifier","options":{"hidden":[16],"projChannels":4}}]');
  t.is(r.code, 0, r.err);
  const events = (await readFile(path.join(work, 'events.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; mean?: number });
  t.true(events.filter((e) => e.type === 'rectifier').length >= 2);
  const pred = path.join(dir, 'pred-inr');
  const valDir = path.join(data, 'cityscapes', 'leftImg8bit', 'val');
  const p = await run('predict', '--checkpoint', path.join(work, 'step-000002.safetensors'), '--input', valDir, '--out', pred, '--rectification', '--scale', '2');
  t.is(p.code, 0, p.err);
  const maps = (await readdir(pred)).filter((f) => f.endsWith('_rectification.png'));
  t.is(maps.length, 2);
  const meta = await sharp(path.join(pred, maps[0])).metadata();
  t.deepEqual([meta.width, meta.height], [96, 80]);
  // the rectifier as ONNX, callable without the model
  const rectOnnx = path.join(dir, 'rect.onnx');
  const ex = await run('export', '--checkpoint', path.join(work, 'step-000002.safetensors'), '--rectifier', rectOnnx);
  t.is(ex.code, 0, ex.err);
  const session = await ort.InferenceSession.create(rectOnnx);
  const [E, K, h, w] = [64, 19, 3, 4];
  const rOut = await session.run({
    embedding: new ort.Tensor('float32', new Float32Array(E * h * w).fill(0.1), [1, E, h, w]),
    log_probs: new ort.Tensor('float32', new Float32Array(K * h * w).fill(Math.log(1 / K)), [1, K, h, w]),
    coords: new ort.Tensor('float32', Float32Array.of(0, 0, 0.5, -0.5), [1, 2, 2]),
    cell: new ort.Tensor('float32', Float32Array.of(0.1, 0.1, 0.1, 0.1), [1, 2, 2]),
  });
  t.deepEqual(rOut.r.dims, [1, 2]);
  t.true(Array.from(rOut.r.data as Float32Array).every((v) => v > 0 && v < 1));
  // a checkpoint without a continuous rectifier says so
  const plain = await run('predict', '--checkpoint', path.join(dir, 'run', 'step-000004.safetensors'), '--input', valDir, '--out', pred, '--rectification');
  t.is(plain.code, 1);
  t.regex(plain.err, /no rectification map \(IdentityRectifier\): train with @ir2f\/plugin-inr-rectifier/);
});

test.serial('--workers 2 (source and target passes on two replicas) gives the losses of --workers 1: IR2F plugins, drop path, batch norm', async (t) => {
  type Ev = { type: string; losses?: Record<string, number>; gamma?: number; mean?: number };
  t.teardown(() => delete process.env.IR2F_WORKERS); // --workers sets it for this process
  const losses = async (workers: string) => {
    const work = path.join(dir, `workers-${workers}`);
    const r = await run('--workers', workers, 'train', '--config', 'synth2real', '--source', `gta:${data}/gta`, '--target', `cityscapes:${data}/cityscapes`,
      '--steps', '3', '--work-dir', work, ...tiny, '--set', 'train.evalEvery=0', '--set', 'data.valLimit=1', '--set', 'train.optimizer.lr=1e-3',
      '--set', 'plugins=[{"package":"@ir2f/plugin-inr-rectifier","options":{"hidden":[16],"projChannels":4}},{"package":"@ir2f/plugin-rmm"}]');
    t.is(r.code, 0, r.err);
    if (workers === '2') t.regex(r.out, /2 replicas/);
    const events = (await readFile(path.join(work, 'events.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Ev);
    const summary = JSON.parse(await readFile(path.join(work, 'summary.json'), 'utf8')) as { workers: number; miou: { student: number } };
    t.is(summary.workers, Number(workers));
    return { events, summary };
  };
  const [one, two] = [await losses('1'), await losses('2')];
  const steps = (e: Ev[]) => e.filter((x) => x.type === 'step').map((x) => x.losses!);
  t.is(steps(two.events).length, 3);
  steps(one.events).forEach((l, i) => {
    t.deepEqual(Object.keys(steps(two.events)[i]).sort(), Object.keys(l).sort());
    for (const [k, v] of Object.entries(l)) t.true(Math.abs(v - steps(two.events)[i][k]) <= 1e-5 * Math.max(1, Math.abs(v)), `step ${i + 1} ${k}: ${v} vs ${steps(two.events)[i][k]}`);
  });
  // the worker's parts report through the main bus: the rectifier's and the RMM's events arrive, equal
  for (const type of ['rectifier', 'rmm']) {
    const [a, b] = [one, two].map((r) => r.events.filter((e) => e.type === type));
    t.true(a.length >= 3 && a.length === b.length, `${type}: ${a.length} vs ${b.length}`);
  }
  t.true(Math.abs(one.summary.miou.student - two.summary.miou.student) < 1e-3);
});

test.serial('ImageNet weights in the config: the encoder is imported and the feature distance joins the loss', async (t) => {
  const { createModel } = await import('@ir2f/backbones');
  const { saveState } = await import('@ir2f/core');
  const weights = path.join(dir, 'mit_tiny.safetensors');
  const donor = createModel('mit-tiny-daformer', { numClasses: 19, seed: 7 });
  await saveState(donor.backbone, weights); // NVlabs names, as mit_b*.pth converted to safetensors
  donor.dispose();
  const work = path.join(dir, 'pretrained');
  const r = await run('train', '--config', 'synth2real', '--source', `gta:${data}/gta`, '--target', `cityscapes:${data}/cityscapes`,
    '--steps', '2', '--work-dir', work, ...tiny, '--set', 'data.valLimit=1',
    '--set', `model.pretrained={"file":${JSON.stringify(weights)},"format":"mmseg-mit"}`, '--set', 'featureDistance={"lambda":0.005}');
  t.is(r.code, 0, r.err);
  const steps = (await readFile(path.join(work, 'events.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; losses?: Record<string, number> })
    .filter((e) => e.type === 'step');
  t.true(steps.every((e) => Number.isFinite(e.losses!.featDist)), 'featDist is a loss part');
  const bad = await run('train', '--config', 'synth2real', '--set', 'model.pretrained={"file":"/nonexistent.safetensors","format":"mmseg-mit"}', '--work-dir', path.join(dir, 'nope'));
  t.is(bad.code, 1);
  t.regex(bad.err, /nonexistent\.safetensors/);
});

test.serial('ir2f bench times one iteration with its phases', async (t) => {
  const r = await run('bench', '--model', 'resnet-tiny-deeplabv2', '--size', '32', '--batch', '1', '--steps', '1');
  t.is(r.code, 0, r.err);
  t.regex(r.out, /resnet-tiny-deeplabv2, 1\+1 at 32², wasm backend \(\d threads?(; convolutions and matrix products on [^)]+)?\)( × 2 replicas)?: \d+ ms\/iteration \(teacher \d+, student fwd\+bwd \d+, rectifier \d+, optimiser\+EMA \d+ ms\); \d+ kernels\/iteration, slowest: \w+ \d+ ms\/\d+/);
});
