/**
 * Label-spec files: a dataset's own classes, written by its user as JSON or YAML and validated by zod.
 *
 *   name: forest                 # shown in errors
 *   encoding: palette            # label PNGs store an RGB colour per class (`index`: a raw id per class)
 *   classes:                     # in train-id order: the model's class k is classes[k]
 *     - { name: ground, color: [120, 80, 40] }
 *     - { name: tree, color: [30, 120, 30], id: 2 }  # id: the raw value in index PNGs (default: its position)
 *   ignore: [255]                # index encoding: raw values that are not scored
 *   ignoreColors: [[0, 0, 0]]    # palette encoding: colours that are not scored
 *   evalClasses: [ground, tree]  # classes mIoU averages over (default: all)
 *   mapping: { shrub: tree }     # target spec only: own class → the source's class (null: not scored)
 *
 * A target spec whose classes differ from the source's is joined to it with `joinLabelSpecs`: its classes
 * become source train ids by `mapping` or by equal name; source classes it lacks leave its mIoU.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { describeIssues, Ir2fError, z } from '@ir2f/core';
import { IGNORE_INDEX, type LabelSpec } from './label-specs.js';

const rgb = z.tuple([z.number().int().min(0).max(255), z.number().int().min(0).max(255), z.number().int().min(0).max(255)]);

export const LabelSpecFileSchema = z.object({
  name: z.string().min(1).optional(),
  encoding: z.enum(['index', 'palette']).default('index'),
  classes: z.array(z.object({
    name: z.string().min(1),
    /** index encoding: the raw value in the label PNG (default: the class's position). */
    id: z.number().int().min(0).max(65535).optional(),
    /** palette encoding: the class's colour in the label PNG; otherwise its display colour. */
    color: rgb.optional(),
  }).strict()).min(1).max(254),
  ignore: z.array(z.number().int().min(0).max(65535)).default([IGNORE_INDEX]),
  ignoreColors: z.array(rgb).default([]),
  evalClasses: z.array(z.string()).optional(),
  mapping: z.record(z.string(), z.string().nullable()).optional(),
}).strict();

export type LabelSpecFile = z.output<typeof LabelSpecFileSchema>;

/** A spec read from a file: a `LabelSpec` plus what joining it to another spec needs. */
export interface CustomLabelSpec extends LabelSpec {
  /** The file it came from. */
  file?: string;
  /** Own class → source class name (null: not scored), from the file's `mapping`. */
  mapping?: Readonly<Record<string, string | null>>;
}

export const packRgb = (c: readonly number[]): number => (c[0] << 16) | (c[1] << 8) | c[2];

/** Distinct, stable display colours for classes without one (golden-angle hues). */
function displayColor(k: number): [number, number, number] {
  const h = (k * 137.508) % 360;
  // HSL(h, 65 %, 50 %) to RGB
  const f = (n: number) => {
    const x = (n + h / 30) % 12;
    return Math.round(255 * (0.5 - 0.325 * Math.max(-1, Math.min(x - 3, 9 - x, 1))));
  };
  return [f(0), f(8), f(4)];
}

function invalid(where: string, message: string): Ir2fError {
  return new Ir2fError('INVALID_LABEL_SPEC', `label spec ${where}: ${message}`);
}

function duplicates<T>(values: readonly T[]): T[] {
  const seen = new Set<T>();
  return [...new Set(values.filter((v) => (seen.has(v) ? true : (seen.add(v), false))))];
}

/** Validate a parsed spec file and build its `LabelSpec`; `where` names it in errors. */
export function labelSpecFromObject(raw: unknown, where = '(inline)'): CustomLabelSpec {
  const r = LabelSpecFileSchema.safeParse(raw);
  if (!r.success) throw invalid(where, `\n${describeIssues(r.error.issues, '(spec)')}`);
  const f = r.data;
  const names = f.classes.map((c) => c.name);
  const dupNames = duplicates(names);
  if (dupNames.length) throw invalid(where, `class name(s) listed twice: ${dupNames.join(', ')}`);
  const rawToTrainId = new Map<number, number>();
  let colorToTrainId: Map<number, number> | undefined;
  if (f.encoding === 'index') {
    const ids = f.classes.map((c, k) => c.id ?? k);
    const dupIds = duplicates(ids);
    if (dupIds.length) throw invalid(where, `raw id(s) used by two classes: ${dupIds.join(', ')}`);
    const clash = f.ignore.filter((v) => ids.includes(v));
    if (clash.length) throw invalid(where, `ignore value(s) ${clash.join(', ')} are also class ids`);
    ids.forEach((id, k) => rawToTrainId.set(id, k));
    for (const v of f.ignore) rawToTrainId.set(v, IGNORE_INDEX);
  } else {
    const missing = f.classes.filter((c) => !c.color).map((c) => c.name);
    if (missing.length) throw invalid(where, `encoding 'palette' needs a color for every class; missing for ${missing.join(', ')}`);
    const named = [...f.classes.map((c) => ({ what: `class '${c.name}'`, key: packRgb(c.color!) })), ...f.ignoreColors.map((c) => ({ what: 'ignoreColors', key: packRgb(c) }))];
    const dupColors = duplicates(named.map((n) => n.key));
    if (dupColors.length) {
      const show = (key: number) => `[${key >> 16}, ${(key >> 8) & 255}, ${key & 255}] (${named.filter((n) => n.key === key).map((n) => n.what).join(' and ')})`;
      throw invalid(where, `colour used twice: ${dupColors.map(show).join('; ')}`);
    }
    colorToTrainId = new Map(f.classes.map((c, k) => [packRgb(c.color!), k]));
    for (const c of f.ignoreColors) colorToTrainId.set(packRgb(c), IGNORE_INDEX);
  }
  const evalNames = f.evalClasses ?? names;
  const unknown = evalNames.filter((n) => !names.includes(n));
  if (unknown.length) throw invalid(where, `evalClasses name(s) not among the classes: ${unknown.join(', ')} (classes: ${names.join(', ')})`);
  return {
    name: f.name ?? path.basename(where), file: where, classes: names, ignoreIndex: IGNORE_INDEX,
    palette: f.classes.map((c, k) => c.color ?? displayColor(k)),
    rawToTrainId, colorToTrainId, evalClasses: names.map((_, k) => k).filter((k) => evalNames.includes(names[k])),
    mapping: f.mapping,
  };
}

/** Read and validate a JSON or YAML label-spec file (synchronous: a config resolves with it). */
export function readLabelSpecFile(file: string): CustomLabelSpec {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Ir2fError('INVALID_LABEL_SPEC', `label spec ${file} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (err as Error).message})`}`);
  }
  let parsed: unknown;
  try {
    parsed = /\.json$/i.test(file) ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw invalid(file, `cannot parse: ${(err as Error).message.split('\n')[0]}`);
  }
  return labelSpecFromObject(parsed, file);
}

/**
 * The target spec in the source's train ids: each target class goes to the source class its `mapping` names,
 * else to the source class of the same name; `null` leaves it unscored. Target labels then read straight into
 * the model's classes, and the target's mIoU averages over the source classes the target has (and evaluates).
 */
export function joinLabelSpecs(source: LabelSpec, target: CustomLabelSpec): LabelSpec {
  const map = target.mapping ?? {};
  const where = target.file ?? target.name;
  const stray = Object.keys(map).filter((n) => !target.classes.includes(n));
  if (stray.length) throw invalid(where, `mapping names class(es) the spec does not list: ${stray.join(', ')}`);
  const toSource = target.classes.map((n) => {
    const m = n in map ? map[n] : n;
    return m === null ? IGNORE_INDEX : source.classes.indexOf(m);
  });
  const unmapped = target.classes.filter((_, k) => toSource[k] < 0);
  if (unmapped.length) {
    throw invalid(where, `class(es) ${unmapped.map((n) => `'${n}'${n in map ? ` (mapped to '${map[n]}')` : ''}`).join(', ')} match no source class ` +
      `(source classes: ${source.classes.join(', ')}); add them to 'mapping' as own: source, or own: null to leave them unscored`);
  }
  const remap = (t: number) => (t === IGNORE_INDEX ? IGNORE_INDEX : toSource[t]);
  const evalClasses = [...new Set(target.evalClasses.map(remap).filter((t) => t !== IGNORE_INDEX))].sort((a, b) => a - b);
  return {
    name: `${target.name} → ${source.name}`, classes: source.classes, palette: source.palette, ignoreIndex: IGNORE_INDEX,
    rawToTrainId: new Map([...target.rawToTrainId].map(([raw, t]) => [raw, remap(t)])),
    colorToTrainId: target.colorToTrainId && new Map([...target.colorToTrainId].map(([c, t]) => [c, remap(t)])),
    evalClasses,
  };
}
