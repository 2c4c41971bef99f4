/**
 * Run configs: JSON or YAML files (or a preset name), validated by zod with errors that show the path.
 * Precedence: preset or file (a file may `extends` a preset) → command-line flags → `--set key=value`.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { BACKEND_NAMES, describeIssues, Ir2fError, RECTIFIER_WEIGHTINGS, TrainConfigSchema, z } from '@ir2f/core';
import { CITYSCAPES_TRAIN_IDS, EMBEDDED_BENCHMARKS, joinLabelSpecs, readLabelSpecFile } from '@ir2f/datasets';
import { PRESETS } from './presets.js';

export const LAYOUT_NAMES = ['gta', 'synthia', 'cityscapes', 'acdc', 'dark_zurich', 'folder'] as const;
export type LayoutName = (typeof LAYOUT_NAMES)[number];

const int = z.number().int();
const size = z.tuple([int.positive(), int.positive()]);

export const DataSpecSchema = z.object({
  layout: z.enum(LAYOUT_NAMES),
  root: z.string().min(1),
  split: z.enum(['train', 'val', 'test']).optional(),
  /** ACDC / Dark Zurich condition folder (e.g. night). */
  condition: z.string().optional(),
  /**
   * A label-spec file (JSON/YAML: your own classes; required by the `folder` layout; a target's is joined to
   * the source's classes), or for SYNTHIA 16 or 13 evaluation classes.
   */
  classes: z.union([z.literal(16), z.literal(13), z.string().min(1)]).optional(),
}).strict();
export type DataSpec = z.output<typeof DataSpecSchema>;

/** Cityscapes "thing" train ids: DAFormer's feature-distance classes. */
export const THING_CLASSES = [6, 7, 11, 12, 13, 14, 15, 16, 17, 18];

export const RunConfigSchema = z.object({
  /** Informational: which preset this config came from. */
  extends: z.string().optional(),
  backend: z.enum(BACKEND_NAMES).optional(),
  model: z.object({
    preset: z.string().default('mit-tiny-daformer'),
    numClasses: int.positive().default(19),
    /** ImageNet-pretrained encoder weights (safetensors) and their naming. */
    pretrained: z.object({
      file: z.string().min(1),
      format: z.enum(['torchvision-resnet', 'mmseg-mit', 'hf-segformer']),
    }).strict().optional(),
  }).strict().prefault({}),
  data: z.object({
    /** An embedded benchmark (generated into the cache on first use) instead of source/target/val. */
    benchmark: z.enum(EMBEDDED_BENCHMARKS).optional(),
    source: DataSpecSchema.optional(),
    target: DataSpecSchema.optional(),
    val: DataSpecSchema.optional(),
    /** [width, height] of training crops. */
    crop: size.default([512, 512]),
    /** Keep-ratio resize scales [long, short] per split (mmseg img_scale). */
    resize: z.object({ source: size.optional(), target: size.optional(), val: size.optional() }).strict().prefault({}),
    batchSize: int.positive().default(2),
    rareClass: z.union([
      z.literal(false),
      z.object({ temperature: z.number().positive().default(0.01), minPixels: int.nonnegative().default(3000) }).strict(),
    ]).prefault({}),
    photometric: z.boolean().default(true),
    /** Train ids mIoU averages over (default: the benchmark's or the label spec's). */
    evalClasses: z.array(int.nonnegative()).optional(),
    /** An unreadable image or label: `fail` (stop, naming it) or `skip` (leave it out with a warning). */
    onCorrupt: z.enum(['fail', 'skip']).default('fail'),
    /** Evaluate on the first N validation images only (0: all). */
    valLimit: int.nonnegative().default(0),
    slide: z.object({ crop: size, stride: size }).strict().optional(),
  }).strict().prefault({}),
  pseudoLabeler: z.object({ threshold: z.number().min(0).max(1).default(0.968) }).strict().prefault({}),
  /** ClassMix's DACS augmentation of the mixed image (DESIGN §4.1). */
  mixer: z.object({
    colorJitterStrength: z.number().min(0).max(1).default(0.2),
    /** Chance the jitter is applied (DAFormer's color_jitter_probability=0.2 is a skip threshold: 0.8 here). */
    colorJitterProbability: z.number().min(0).max(1).default(0.8),
    blur: z.boolean().default(true),
  }).strict().prefault({}),
  /**
   * Core's rectifier when no plugin binds one: `identity` (r = DAFormer's q, the baseline) or `confidence`
   * (r = the teacher's max-probability per pixel: DESIGN §5.3's control rung), with §5.1.7's weighting.
   */
  rectifier: z.object({
    type: z.enum(['identity', 'confidence']).default('identity'),
    weighting: z.enum(RECTIFIER_WEIGHTINGS).default('redistribute'),
  }).strict().prefault({}),
  /** Plugins by npm package name, loaded only if installed. */
  plugins: z.array(z.object({ package: z.string().min(1), options: z.record(z.string(), z.unknown()).default({}) }).strict()).default([]),
  /** DAFormer's ImageNet feature distance; applies when model.pretrained is set. */
  featureDistance: z.object({
    lambda: z.number().nonnegative().default(0.005),
    classes: z.array(int.nonnegative()).default(THING_CLASSES),
    minRatio: z.number().min(0).max(1).default(0.75),
  }).strict().optional(),
  train: TrainConfigSchema.prefault({}),
}).strict().superRefine((c, ctx) => {
  const d = c.data;
  if (!d.benchmark && !(d.source && d.target)) {
    ctx.addIssue({ code: 'custom', path: ['data'], message: 'give data.benchmark, or data.source and data.target (e.g. --source gta:/data/gta --target cityscapes:/data/cityscapes)' });
  }
});

export type RunConfig = z.output<typeof RunConfigSchema>;

/** A parsed JSON/YAML object. */
export type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => v != null && typeof v === 'object' && !Array.isArray(v);

/** Deep merge: objects merge key by key, anything else replaces. */
export function merge(base: unknown, over: unknown): unknown {
  if (!isObj(base) || !isObj(over)) return over === undefined ? base : over;
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = merge(base[k], v);
  return out;
}

/** `a.b.c=value`; the value is read as JSON when it parses (numbers, booleans, arrays), else as a string. */
export function applySet(config: Json, assignment: string): Json {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new Ir2fError('INVALID_CONFIG', `--set expects key=value, got '${assignment}'`);
  const keys = assignment.slice(0, eq).trim().split('.');
  const raw = assignment.slice(eq + 1);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  const patch: Json = {};
  let cur = patch;
  keys.forEach((k, i) => {
    if (i === keys.length - 1) cur[k] = value;
    else cur = cur[k] = {};
  });
  // a --set replaces arrays and scalars wholesale, and merges objects
  return merge(config, patch) as Json;
}

/** `layout:dir` as given to --source / --target. */
export function parseDataArg(arg: string, flag: string): DataSpec {
  const i = arg.indexOf(':');
  const layout = i > 0 ? arg.slice(0, i) : '';
  if (!(LAYOUT_NAMES as readonly string[]).includes(layout) || i === arg.length - 1) {
    throw new Ir2fError('INVALID_ARGUMENT', `${flag} expects <layout>:<dir> with layout one of ${LAYOUT_NAMES.join(', ')}; got '${arg}'`);
  }
  return { layout: layout as LayoutName, root: arg.slice(i + 1) };
}

async function readConfigFile(file: string): Promise<Json> {
  const text = await fs.readFile(file, 'utf8');
  let parsed: unknown;
  try {
    parsed = /\.ya?ml$/i.test(file) ? YAML.parse(text) : JSON.parse(text);
  } catch (err) {
    throw new Ir2fError('INVALID_CONFIG', `cannot parse ${file}: ${(err as Error).message}`);
  }
  if (!isObj(parsed)) throw new Ir2fError('INVALID_CONFIG', `${file} must hold an object (a run config)`);
  return parsed;
}

function preset(name: string, via: string): Json {
  const p = PRESETS[name];
  if (!p) {
    throw new Ir2fError('INVALID_CONFIG', `${via}: '${name}' is neither a config file nor a preset; presets: ${Object.keys(PRESETS).join(', ')}`);
  }
  return structuredClone(p.config) as Json;
}

/** The raw config of `--config`: a preset name or a JSON/YAML file (which may `extends` a preset). */
export async function loadRawConfig(ref: string): Promise<Json> {
  const looksLikeFile = /\.(json|ya?ml)$/i.test(ref) || ref.includes(path.sep) || existsSync(ref);
  if (!looksLikeFile) return { extends: ref, ...preset(ref, '--config') };
  if (!existsSync(ref)) throw new Ir2fError('INVALID_CONFIG', `config file ${ref} does not exist`);
  const file = await readConfigFile(ref);
  if (typeof file.extends === 'string') return merge(preset(file.extends, `${ref}: extends`), file) as Json;
  return file;
}

export interface ConfigOverrides {
  model?: string;
  steps?: number;
  source?: string;
  target?: string;
  /** A label-spec file for the source (and the target, unless `targetClasses`). */
  classes?: string;
  /** A label-spec file for the target and its val split. */
  targetClasses?: string;
  set?: string[];
}

/** Apply flags, then `--set`s, then validate. */
export function resolveConfig(raw: Json, o: ConfigOverrides = {}): RunConfig {
  let c: Json = structuredClone(raw);
  if (o.model) c = merge(c, { model: { preset: o.model } }) as Json;
  if (o.steps != null) c = merge(c, { train: { steps: o.steps } }) as Json;
  if (o.source || o.target) {
    const data = isObj(c.data) ? { ...c.data } : {};
    delete data.benchmark;
    if (o.source) data.source = parseDataArg(o.source, '--source');
    if (o.target) {
      const t = parseDataArg(o.target, '--target');
      const hasSplits = t.layout !== 'gta' && t.layout !== 'synthia';
      data.target = hasSplits ? { ...t, split: 'train' } : t;
      data.val = hasSplits ? { ...t, split: 'val' } : t;
    }
    c.data = data;
  }
  if (o.classes || o.targetClasses) {
    const data = isObj(c.data) ? { ...c.data } : {};
    const withClasses = (key: 'source' | 'target' | 'val', file: string | undefined) => {
      if (!file || !isObj(data[key])) return;
      data[key] = { ...data[key], classes: path.resolve(file) };
    };
    withClasses('source', o.classes);
    for (const key of ['target', 'val'] as const) withClasses(key, o.targetClasses ?? (isFolder(data[key]) ? o.classes : undefined));
    if (!isObj(data.source)) throw new Ir2fError('INVALID_ARGUMENT', '--classes needs a source dataset: pass --source <layout>:<dir> as well');
    c.data = data;
  }
  for (const s of o.set ?? []) c = applySet(c, s);
  const r = RunConfigSchema.safeParse(c);
  if (!r.success) throw new Ir2fError('INVALID_CONFIG', `invalid config:\n${describeIssues(r.error.issues, '(config)')}`);
  return followLabelSpec(r.data);
}

const isFolder = (d: unknown) => isObj(d) && d.layout === 'folder';

/**
 * A source read through a label-spec file sets the model's class count (the spec's classes are the model's);
 * a `folder` dataset without a spec, or a spec on a layout with fixed classes, is an error naming the fix.
 */
function followLabelSpec(config: RunConfig): RunConfig {
  const d = config.data;
  for (const [key, spec] of [['source', d.source], ['target', d.target], ['val', d.val]] as const) {
    if (!spec) continue;
    if (spec.layout === 'folder' && typeof spec.classes !== 'string') {
      throw new Ir2fError('INVALID_CONFIG', `data.${key}: the folder layout needs a label-spec file: pass --classes <spec.yaml> (or set data.${key}.classes)`);
    }
    if (typeof spec.classes === 'string' && spec.layout !== 'folder') {
      throw new Ir2fError('INVALID_CONFIG', `data.${key}.classes: a label-spec file is for the folder layout; '${spec.layout}' has its own classes`);
    }
    if (typeof spec.classes === 'number' && spec.layout !== 'synthia') {
      throw new Ir2fError('INVALID_CONFIG', `data.${key}.classes: 16 or 13 is for the synthia layout; give a label-spec file for '${spec.layout}'`);
    }
  }
  const source = d.source && typeof d.source.classes === 'string' ? readLabelSpecFile(d.source.classes) : undefined;
  // a target spec that cannot be joined to the source's classes fails here, before a work dir is touched
  for (const spec of [d.target, d.val]) {
    if (typeof spec?.classes === 'string' && spec.classes !== source?.file) joinLabelSpecs(source ?? CITYSCAPES_TRAIN_IDS, readLabelSpecFile(spec.classes));
  }
  return source ? { ...config, model: { ...config.model, numClasses: source.classes.length } } : config;
}
