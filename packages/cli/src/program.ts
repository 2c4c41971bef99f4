/**
 * The `ir2f` command line (commander): train, eval, predict, export, data, bench, presets. Every error
 * becomes one line `ir2f: <reason>` and a non-zero exit code.
 */
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { BACKEND_NAMES, describeBackend, Ir2fError } from '@ir2f/core';
import { EMBEDDED_BENCHMARKS, EMBEDDED_DESCRIPTIONS } from '@ir2f/datasets';
import { benchStep } from './bench-step.js';
import { loadRawConfig, parseDataArg, resolveConfig } from './config.js';
import { dataMake } from './data-make.js';
import { dataCheck } from './data-check.js';
import { evalCheckpoint, exportCheckpoint, predictImages, type Which } from './model-io.js';
import { PRESETS } from './presets.js';
import { checkProgress } from './subscribers.js';
import { replicaPlan, runTraining } from './train-run.js';

export interface CliIo {
  log?: (line: string) => void;
  error?: (line: string) => void;
  /** Progress bar instead of lines (default: stdout is a TTY). */
  tty?: boolean;
}

function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Ir2fError('INVALID_ARGUMENT', `${flag} must be a positive integer, got '${v}'`);
    return n;
  };
}

const collect = (v: string, prev: string[] = []) => [...prev, v];
const which = (o: { teacher?: boolean }): Which => (o.teacher ? 'teacher' : 'student');
const pct = (v: number | null | undefined) => (v == null ? '—' : (v * 100).toFixed(1));

/** The command tree; errors throw (exitOverride) instead of exiting, so the CLI can be run in-process. */
export function buildProgram(io: CliIo = {}): Command {
  const log = io.log ?? console.log;
  const error = io.error ?? console.error;
  // set before adding subcommands: commander copies these settings into each subcommand when it is created
  const program = new Command('ir2f')
    .description('Domain adaptive semantic segmentation with IR2F (implicit-neural-representation rectified pseudo-labels)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => log(s.trimEnd()),
      writeErr: (s) => error(s.trimEnd()),
      // one line, as every other error: commander's reason (and its "did you mean") and where the usage is
      outputError: (s, write) => write(`${s.trim().replace(/^error: /, 'ir2f: ').replace(/\s*\n\s*/g, ' ')} (ir2f <command> --help for usage)\n`),
    })
    .option('--threads <n>', 'threads per replica, 1–4: onnxruntime\'s dense kernels, else the wasm build\'s (default: IR2F_WASM_THREADS, else min(4, cores))',
      positiveInt('--threads'))
    .option('--workers <n>', 'training replicas, 1 or 2 (default: IR2F_WORKERS, else on 2+ cores whichever of 1 and 2 the first steps time faster; 2: the source and target passes of a step in parallel)',
      positiveInt('--workers'))
    .hook('preAction', (cmd) => {
      const { threads, workers } = cmd.opts() as { threads?: number; workers?: number };
      // initBackend and runTraining read them and check their ranges
      if (threads != null) process.env.IR2F_WASM_THREADS = String(threads);
      if (workers != null) process.env.IR2F_WORKERS = String(workers);
    });

  program.command('train')
    .description('train a model by UDA self-training (or a source-only / target-oracle bound)')
    .requiredOption('-c, --config <file|preset>', `a JSON/YAML run config or a preset (${Object.keys(PRESETS).join(', ')})`)
    .option('--set <key=value>', 'override a config field (repeatable), e.g. --set train.optimizer.lr=1e-4', collect)
    .option('--source <layout:dir>', 'labelled source data, e.g. gta:/data/gta')
    .option('--target <layout:dir>', 'target data, e.g. cityscapes:/data/cityscapes (its val split is evaluated)')
    .option('--classes <spec>', 'label-spec file (JSON/YAML) of a folder:<dir> source: its classes are the model\'s')
    .option('--target-classes <spec>', 'label-spec file of a folder:<dir> target whose classes or label encoding differ from the source\'s')
    .option('--model <preset>', 'model preset, e.g. mit-b5-daformer')
    .option('--steps <n>', 'training iterations', positiveInt('--steps'))
    .option('--work-dir <dir>', 'checkpoints, events.jsonl, curves.png, summary.json (default work_dirs/<config>)')
    .option('--resume [checkpoint]', 'continue from the newest checkpoint in the work dir (or the given file)')
    .addOption(new Option('--backend <name>', 'tensor backend (default: tensorflow → wasm → cpu)').choices([...BACKEND_NAMES]))
    .action(async (o) => {
      const raw = await loadRawConfig(o.config);
      if (o.backend) raw.backend = o.backend;
      const config = resolveConfig(raw, {
        model: o.model, steps: o.steps, source: o.source, target: o.target, classes: o.classes, targetClasses: o.targetClasses, set: o.set,
      });
      const name = config.extends ?? path.basename(o.config).replace(/\.(json|ya?ml)$/i, '');
      const r = await runTraining(config, { workDir: o.workDir ?? path.join('work_dirs', name), resume: o.resume, log, tty: io.tty });
      const miou = r.eval ? `; target mIoU student ${pct(r.eval.student.miou)}${r.eval.teacher ? `, teacher ${pct(r.eval.teacher.miou)}` : ''}` : '';
      log(`${r.reason === 'completed' ? 'done' : 'interrupted'} at step ${r.step} (${r.msPerStep.toFixed(0)} ms/it on ${describeBackend(r.backend)})${miou}`);
      log(`checkpoint ${r.checkpoint ?? '(none)'}; curves ${r.files.curves}; log ${r.files.events}`);
    });

  program.command('eval')
    .description('evaluate a checkpoint: mIoU and per-class IoU')
    .requiredOption('--checkpoint <file>', 'a checkpoint written by ir2f train')
    .option('--data <layout:dir>', 'labelled data (default: the validation split of the checkpoint\'s config)')
    .option('--classes <spec>', 'label-spec file of a folder:<dir> --data whose labels differ from the run\'s source (joined to its classes)')
    .addOption(new Option('--split <split>', 'split of --data').choices(['train', 'val', 'test']).default('val'))
    .option('--teacher', 'evaluate the EMA teacher instead of the student')
    .option('--limit <n>', 'only the first N images', positiveInt('--limit'))
    .option('--json', 'print JSON (miou, perClass, …)')
    .action(async (o) => {
      if (o.classes && !o.data?.startsWith('folder:')) throw new Ir2fError('INVALID_ARGUMENT', '--classes is for --data folder:<dir>');
      const data = o.data ? { ...parseDataArg(o.data, '--data'), split: o.split, classes: o.classes && path.resolve(o.classes) } : undefined;
      const r = await evalCheckpoint(o.checkpoint, { data, which: which(o), limit: o.limit });
      if (o.json) {
        const { result: _result, ...report } = r;
        log(JSON.stringify(report, null, 2));
        return;
      }
      log(`${r.model} of ${r.checkpoint} (step ${r.step}) on ${r.data}, ${r.images} images`);
      for (const [name, v] of Object.entries(r.perClass)) log(`  ${name.padEnd(14)} ${pct(v).padStart(5)}`);
      log(`mIoU ${pct(r.miou)} over ${r.classes.length} classes; pixel accuracy ${pct(r.pixelAccuracy)}`);
    });

  program.command('predict')
    .description('class-map and overlay PNGs (optionally confidence and entropy maps) for images')
    .requiredOption('--checkpoint <file>', 'a checkpoint written by ir2f train')
    .requiredOption('--input <image|dir>', 'an image or a folder of images')
    .requiredOption('--out <dir>', 'output folder')
    .option('--teacher', 'use the EMA teacher instead of the student')
    .option('--probs', 'also write confidence and entropy heat maps')
    .option('--rectification', 'also write the rectification map r (INR rectifier checkpoints)')
    .option('--scale <n>', 'resolution of the rectification map, × the image', (v: string) => {
      const n = Number(v);
      if (!(n > 0 && n <= 16)) throw new Ir2fError('INVALID_ARGUMENT', `--scale must be in (0, 16], got '${v}'`);
      return n;
    }, 1)
    .action(async (o) => {
      const files = await predictImages(o.checkpoint, o.input, o.out, {
        which: which(o), probs: o.probs, rectification: o.rectification ? { scale: o.scale } : undefined,
      });
      log(`wrote ${files.length} PNGs to ${o.out}`);
    });

  program.command('export')
    .description('export a checkpoint\'s model (input [N,3,H,W] ImageNet-normalised, output logits) and/or its rectifier to ONNX')
    .requiredOption('--checkpoint <file>', 'a checkpoint written by ir2f train')
    .option('--onnx <file>', 'the model\'s .onnx file to write')
    .option('--rectifier <file>', 'also (or only) the rectifier as ONNX: inputs embedding, log_probs, coords, cell; output r')
    .option('--teacher', 'export the EMA teacher instead of the student')
    .option('--opset <n>', 'ONNX opset (≥ 13)', positiveInt('--opset'), 17)
    .action(async (o) => {
      if (!o.onnx && !o.rectifier) throw new Ir2fError('INVALID_ARGUMENT', 'export needs --onnx <file>, --rectifier <file> or both');
      const r = await exportCheckpoint(o.checkpoint, o.onnx, { which: which(o), opset: o.opset, rectifier: o.rectifier });
      if (o.onnx) log(`wrote ${o.onnx} (${(r.bytes / 1e6).toFixed(1)} MB)`);
      if (o.rectifier) log(`wrote ${o.rectifier} (${((r.rectifierBytes ?? 0) / 1e3).toFixed(0)} kB)`);
    });

  const data = program.command('data').description('datasets: list, check, and generate the embedded benchmarks');
  data.command('list')
    .description('the embedded benchmarks and the real dataset layouts')
    .action(() => {
      log('embedded benchmarks (ir2f data make <name> --out <dir>; ir2f train --config <name>):');
      for (const name of EMBEDDED_BENCHMARKS) log(`  ${name.padEnd(11)} ${EMBEDDED_DESCRIPTIONS[name]}`);
      log('layouts for --source/--target/--data <layout>:<dir>: gta, synthia, cityscapes, acdc, dark_zurich, and folder');
      log('  folder:<dir> is your own data: images/ and labels/ with matching stems (optionally images/train, images/val, …),');
      log('  read through a label-spec file: --classes spec.yaml (see "Adapt to your own domain" in the README)');
    });
  data.command('check')
    .description('scan a dataset as training reads it: counts, sizes, label values, unpaired and unreadable files, class frequencies, and a PNG')
    .argument('<layout:dir>', 'e.g. folder:/data/forest or cityscapes:/data/cityscapes')
    .option('--classes <spec>', 'label-spec file (required for folder:<dir>)')
    .addOption(new Option('--as <role>', 'source: every image needs a label; target: labels are optional').choices(['source', 'target']).default('source'))
    .option('--out <file>', 'the report PNG (default data-check-<dir name>.png here)')
    .action(async (arg: string, o) => {
      await dataCheck(arg, { classes: o.classes, as: o.as, out: o.out, onProgress: checkProgress({ tty: io.tty ?? !!process.stdout.isTTY, log }) }, log);
    });
  data.command('make')
    .description('generate an embedded domain-shift benchmark in the real dataset layouts')
    .argument('<name>', EMBEDDED_BENCHMARKS.join(' | '))
    .requiredOption('-o, --out <dir>', 'output folder (new or empty)')
    .option('--seed <n>', 'generation seed', '0')
    .option('--size <WxH>', 'image size', '128x96')
    .option('--counts <s,t,v>', 'source, target-train and target-val image counts (default 300,300,100)')
    .option('--preview [file]', 'also write a preview grid PNG (default <out>/preview.png)')
    .option('--overwrite', 'replace an existing benchmark in --out')
    .action((name: string, opts) => dataMake(name, opts, log));

  program.command('presets')
    .description('the named run configs')
    .action(() => {
      for (const [name, p] of Object.entries(PRESETS)) log(`${name.padEnd(20)} ${p.description}`);
    });

  program.command('bench')
    .description('time one training iteration (batch B+B, S² crops) of a model preset on this machine')
    .option('--model <preset>', 'model preset', 'mit-tiny-daformer')
    .option('--size <n>', 'crop size', positiveInt('--size'), 128)
    .option('--batch <n>', 'images per domain', positiveInt('--batch'), 2)
    .option('--steps <n>', 'timed iterations', positiveInt('--steps'), 5)
    .addOption(new Option('--backend <name>', 'tensor backend').choices([...BACKEND_NAMES]))
    .action(async (o) => {
      const plan = replicaPlan('uda', o.backend);
      const r = await benchStep({ preset: o.model, size: o.size, batch: o.batch, steps: o.steps, backend: o.backend, workers: plan.workers, threads: plan.threads });
      log(`${o.model}, ${o.batch}+${o.batch} at ${o.size}², ${r.backend}: ${r.msPerStep.toFixed(0)} ms/iteration ` +
        `(teacher ${r.phases.teacher.toFixed(0)}, student fwd+bwd ${r.phases.student.toFixed(0)}, rectifier ${r.phases.rectifier.toFixed(0)}, ` +
        `optimiser+EMA ${r.phases.optimizer.toFixed(0)} ms); ${r.kernels.count} kernels/iteration, slowest: ` +
        r.kernels.top.slice(0, 5).map((k) => `${k.name} ${k.ms.toFixed(0)} ms/${k.calls}`).join(', '));
    });
  return program;
}

/** Run with `argv` (node-style: [node, script, ...args]); returns the exit code instead of exiting. */
export async function runCli(argv: string[], io: CliIo = {}): Promise<number> {
  const error = io.error ?? console.error;
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    // one line: a multi-line reason (a list of config issues) is joined with '; '
    const [first, ...rest] = (err instanceof Error ? err.message : String(err)).split('\n').map((l) => l.trim().replace(/^- /, '')).filter(Boolean);
    error(`ir2f: ${[first, rest.join('; ')].filter(Boolean).join(' ')}`);
    return 1;
  }
}
