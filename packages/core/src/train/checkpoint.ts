/**
 * Training checkpoints: one safetensors file holding everything a run needs to continue exactly (DESIGN §6:
 * the EMA teacher and the rectifier are checkpoint state, as in mmengine's EMAHook): student, teacher,
 * rectifier variables, AdamW moments and step, the run's step, seed and config with its hash. Written
 * atomically (temp file, then rename), so an interrupted write never leaves a half file behind.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Ir2fError } from '../errors.js';
import type { Module } from '../nn/module.js';
import type { AdamW } from '../optim/adamw.js';
import {
  decodeSafetensors, encodeSafetensors, float32Entry, loadState, stateTensors, toFloat32, writeAtomic, type SafeTensor,
} from '../weights/safetensors.js';

export const CHECKPOINT_FORMAT = 1;

export interface CheckpointMeta {
  format: number;
  /** Training iterations completed. */
  step: number;
  seed: number;
  config: unknown;
  configHash: string;
  /** Backend the state was produced on (resume on another backend is allowed but not bit-exact). */
  backend?: string;
  /** AdamW's own step counter (its bias corrections). */
  optimizerStep: number;
  createdAt: string;
}

export interface CheckpointState {
  student: Module;
  teacher: Module;
  rectifier?: { readonly variables: readonly tf.Variable[] };
  /** The loss's host state (`Loss.state`), stored as `loss.state`. */
  loss?: { readonly state?: Float32Array };
  optimizer?: AdamW;
}

export interface LoadedCheckpoint {
  meta: CheckpointMeta;
  tensors: Map<string, SafeTensor>;
  file: string;
}

/** Canonical JSON (sorted keys), so equal configs hash equally whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : v));
}

export function configHash(config: unknown): string {
  return createHash('sha256').update(canonicalJson(config)).digest('hex').slice(0, 16);
}

/** Dotted paths where two configs differ (leaves compared by canonical JSON), skipping `ignore` paths. */
export function configDiff(a: unknown, b: unknown, ignore: readonly string[] = [], prefix = ''): string[] {
  if (ignore.includes(prefix)) return [];
  const isObj = (v: unknown): v is Record<string, unknown> => v != null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => configDiff(a[k], b[k], ignore, prefix ? `${prefix}.${k}` : k));
  }
  return canonicalJson(a) === canonicalJson(b) ? [] : [prefix || '(config)'];
}

function toTensor(t: SafeTensor, name: string): tf.Tensor {
  if (t.dtype !== 'F32') throw new Ir2fError('INVALID_CHECKPOINT', `checkpoint tensor '${name}' is ${t.dtype}, expected F32`);
  return tf.tensor(toFloat32(t, name), t.shape, 'float32');
}

export async function saveCheckpoint(file: string, state: CheckpointState, meta: Omit<CheckpointMeta, 'format' | 'createdAt' | 'configHash' | 'optimizerStep'>): Promise<void> {
  const tensors = new Map<string, SafeTensor>([...stateTensors(state.student, 'student.'), ...stateTensors(state.teacher, 'teacher.')]);
  state.rectifier?.variables.forEach((v, i) => tensors.set(`rectifier.${i}`, float32Entry(v)));
  const lossState = state.loss?.state;
  if (lossState) tensors.set('loss.state', { dtype: 'F32', shape: [lossState.length], data: new Uint8Array(lossState.slice().buffer) });
  let optimizerStep = 0;
  if (state.optimizer) {
    const s = state.optimizer.stateTensors();
    optimizerStep = s.step;
    s.m.forEach((m, i) => tensors.set(`optimizer.m.${i}`, float32Entry(m)));
    s.v.forEach((v, i) => tensors.set(`optimizer.v.${i}`, float32Entry(v)));
  }
  const full: CheckpointMeta = {
    ...meta, format: CHECKPOINT_FORMAT, configHash: configHash(meta.config), optimizerStep, createdAt: new Date().toISOString(),
  };
  await writeAtomic(file, encodeSafetensors(tensors, { ir2f: JSON.stringify(full) }));
}

export async function readCheckpoint(file: string): Promise<LoadedCheckpoint> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await fs.readFile(file));
  } catch (err) {
    throw new Ir2fError('INVALID_CHECKPOINT', `cannot read checkpoint ${file}: ${(err as Error).message}`, { cause: err });
  }
  let decoded: ReturnType<typeof decodeSafetensors>;
  try {
    decoded = decodeSafetensors(bytes);
  } catch (err) {
    throw new Ir2fError('INVALID_CHECKPOINT', `${file} is not a readable checkpoint (${(err as Error).message})`, { cause: err });
  }
  const raw = decoded.metadata.ir2f;
  if (!raw) {
    throw new Ir2fError('INVALID_CHECKPOINT',
      `${file} is a safetensors file without ir2f training metadata: a weights file, not a checkpoint written by the trainer`);
  }
  const meta = JSON.parse(raw) as CheckpointMeta;
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new Ir2fError('INVALID_CHECKPOINT', `${file} has checkpoint format ${meta.format}; this ir2f reads format ${CHECKPOINT_FORMAT}`);
  }
  return { meta, tensors: decoded.tensors, file };
}

/** The tensors under `prefix.`, with the prefix removed. */
export function checkpointPart(ckpt: LoadedCheckpoint, prefix: 'student' | 'teacher'): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  for (const [k, v] of ckpt.tensors) if (k.startsWith(`${prefix}.`)) out.set(k.slice(prefix.length + 1), v);
  return out;
}

/** The rectifier's variables from a checkpoint (in order; count and shapes checked). */
export function restoreRectifier(ckpt: LoadedCheckpoint, variables: readonly tf.Variable[]): void {
  const stored = [...ckpt.tensors.keys()].filter((k) => k.startsWith('rectifier.')).length;
  if (stored !== variables.length) {
    throw new Ir2fError('INVALID_CHECKPOINT',
      `${ckpt.file} holds ${stored} rectifier tensors, this pipeline's rectifier has ${variables.length}: it was written with another rectifier`);
  }
  variables.forEach((v, i) => {
    const t = toTensor(ckpt.tensors.get(`rectifier.${i}`)!, `rectifier.${i}`);
    if (t.shape.join() !== v.shape.join()) {
      t.dispose();
      throw new Ir2fError('INVALID_CHECKPOINT', `rectifier tensor ${i} is [${t.shape}] in ${ckpt.file}, the rectifier needs [${v.shape}]`);
    }
    v.assign(t);
    t.dispose();
  });
}

/** The loss's host state from a checkpoint, into `state` (length checked); nothing when the loss has none. */
export function restoreLossState(ckpt: LoadedCheckpoint, state: Float32Array | undefined): void {
  const stored = ckpt.tensors.get('loss.state');
  if (!state) return;
  if (!stored) {
    throw new Ir2fError('INVALID_CHECKPOINT', `${ckpt.file} holds no loss state and this pipeline's loss keeps one: it was written with another loss`);
  }
  const values = toFloat32(stored, 'loss.state');
  if (values.length !== state.length) {
    throw new Ir2fError('INVALID_CHECKPOINT', `${ckpt.file} holds ${values.length} loss-state values, this pipeline's loss keeps ${state.length}: it was written with another loss`);
  }
  state.set(values);
}

/** Restore a checkpoint into freshly built state of the same architecture. */
export async function restoreCheckpoint(ckpt: LoadedCheckpoint, state: CheckpointState): Promise<void> {
  for (const part of ['student', 'teacher'] as const) {
    await loadState(state[part], checkpointPart(ckpt, part), { label: `${part} state of ${ckpt.file}` });
  }
  restoreRectifier(ckpt, state.rectifier?.variables ?? []);
  restoreLossState(ckpt, state.loss?.state);
  if (state.optimizer) {
    const n = state.optimizer.stateTensors().m.length;
    const m: tf.Tensor[] = [];
    const v: tf.Tensor[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const mi = ckpt.tensors.get(`optimizer.m.${i}`);
        const vi = ckpt.tensors.get(`optimizer.v.${i}`);
        if (!mi || !vi) throw new Ir2fError('INVALID_CHECKPOINT', `${ckpt.file} lacks optimiser moment ${i} (of ${n})`);
        m.push(toTensor(mi, `optimizer.m.${i}`));
        v.push(toTensor(vi, `optimizer.v.${i}`));
      }
      state.optimizer.restore(ckpt.meta.optimizerStep, m, v);
    } finally {
      tf.dispose([...m, ...v]);
    }
  }
}

const CKPT_RE = /^step-(\d+)\.safetensors$/;

export function checkpointFile(dir: string, step: number): string {
  return path.join(dir, `step-${String(step).padStart(6, '0')}.safetensors`);
}

/** Checkpoints in a work dir, oldest first. */
export async function listCheckpoints(dir: string): Promise<{ file: string; step: number }[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return [];
  }
  return names.flatMap((n) => {
    const m = CKPT_RE.exec(n);
    return m ? [{ file: path.join(dir, n), step: Number(m[1]) }] : [];
  }).sort((a, b) => a.step - b.step);
}

export async function latestCheckpoint(dir: string): Promise<string | undefined> {
  return (await listCheckpoints(dir)).at(-1)?.file;
}
