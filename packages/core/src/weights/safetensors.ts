/**
 * safetensors: an 8-byte little-endian header length, a JSON header mapping each tensor name to
 * { dtype, shape, data_offsets }, then the raw little-endian data. Module state is stored in PyTorch layouts
 * under PyTorch-style names, so files are interchangeable with `safetensors.torch`.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Ir2fError } from '../errors.js';
import { fromTorch, toTorch, torchShape, type Module } from '../nn/module.js';

export type SafeDtype = 'F32' | 'F64' | 'F16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface SafeTensor {
  dtype: SafeDtype;
  shape: number[];
  /** Raw little-endian bytes. */
  data: Uint8Array;
}

const BYTES: Record<SafeDtype, number> = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, I16: 2, I8: 1, U8: 1, BOOL: 1 };

function bad(message: string): Ir2fError {
  return new Ir2fError('INVALID_ARGUMENT', `safetensors: ${message}`);
}

export function encodeSafetensors(tensors: Map<string, SafeTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const names = [...tensors.keys()].sort();
  for (const name of names) {
    const t = tensors.get(name)!;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let pos = 8 + head.length;
  for (const name of names) {
    const d = tensors.get(name)!.data;
    out.set(d, pos);
    pos += d.byteLength;
  }
  return out;
}

export function decodeSafetensors(bytes: Uint8Array): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> } {
  if (bytes.byteLength < 8) throw bad('file is shorter than its 8-byte header length');
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (8 + n > bytes.byteLength) throw bad(`header length ${n} runs past the end of the file (${bytes.byteLength} bytes): truncated?`);
  let header: Record<string, { dtype: SafeDtype; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  } catch (err) {
    throw bad(`header is not valid JSON (${(err as Error).message})`);
  }
  const base = 8 + n;
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = info as unknown as Record<string, string>;
      continue;
    }
    const size = BYTES[info.dtype];
    if (!size) throw bad(`tensor '${name}' has unknown dtype '${info.dtype}'`);
    const [begin, end] = info.data_offsets;
    const expected = info.shape.reduce((a, b) => a * b, 1) * size;
    if (end - begin !== expected) throw bad(`tensor '${name}' holds ${end - begin} bytes, its shape [${info.shape}] needs ${expected}`);
    if (base + end > bytes.byteLength) throw bad(`tensor '${name}' runs past the end of the file: truncated?`);
    tensors.set(name, { dtype: info.dtype, shape: info.shape, data: bytes.subarray(base + begin, base + end) });
  }
  return { tensors, metadata };
}

/** Why the file system refused, in words a user can act on. */
export function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOSPC': return 'the disk is full: free space or write elsewhere';
    case 'EDQUOT': return 'the disk quota is used up: free space or write elsewhere';
    case 'EROFS': return 'the file system is read-only: write elsewhere';
    case 'EACCES': case 'EPERM': return 'permission denied: write elsewhere or fix the folder\'s permissions';
    // mkdir -p meeting a file answers EEXIST
    case 'ENOTDIR': case 'EEXIST': return 'a part of the path is a file, not a folder';
    case 'EISDIR': return 'it is a folder: give a file name';
    default: return e.message ?? String(err);
  }
}

/**
 * Write atomically: temp file in the same folder, then rename; a refusal is an error naming the file and why
 * (disk full, read-only, …), and no temp file is left behind.
 */
export async function writeAtomic(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
    await fs.writeFile(tmp, bytes);
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw new Ir2fError('WRITE_FAILED', `cannot write ${file}: ${describeFsError(err)}`, { cause: err });
  }
}

/** The float values of an F32/F64 entry (copied: the view may be unaligned inside the file buffer). */
export function toFloat32(t: SafeTensor, name: string): Float32Array {
  const aligned = t.data.slice();
  switch (t.dtype) {
    case 'F32': return new Float32Array(aligned.buffer);
    case 'F64': return Float32Array.from(new Float64Array(aligned.buffer));
    default: throw bad(`tensor '${name}' is ${t.dtype}; ir2f loads float tensors (F32/F64) into parameters`);
  }
}

/** A float32 tensor's current values as an F32 entry. */
export function float32Entry(t: tf.Tensor): SafeTensor {
  const data = t.dataSync() as Float32Array;
  return { dtype: 'F32', shape: t.shape, data: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) };
}

/** Module state as safetensors entries (PyTorch layouts, float32). */
export function stateTensors(module: Module, prefix = ''): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  for (const [name, e] of module.namedState(prefix)) {
    const torch = tf.tidy(() => toTorch(e.variable, e.layout));
    out.set(name, float32Entry(torch));
    torch.dispose();
  }
  return out;
}

export async function saveState(module: Module, file: string, metadata: Record<string, string> = {}): Promise<void> {
  await writeAtomic(file, encodeSafetensors(stateTensors(module), metadata));
}

export interface LoadOptions {
  /** Map a file's tensor name to the module's (return null to skip it on purpose). Default: identity. */
  rename?: (name: string) => string | null;
  /** Load what matches and report the rest instead of failing. */
  allowPartial?: boolean;
  /** How errors name the source (default: the path, or 'the given weights'). */
  label?: string;
}

export interface LoadReport {
  loaded: string[];
  /** Module entries the file did not provide. */
  missing: string[];
  /** File tensors with no module entry (after renaming). */
  unexpected: string[];
  /** File tensors skipped on purpose by `rename`. */
  skipped: string[];
}

/** Load safetensors (a path, bytes, or already decoded tensors) into a module, by name. */
export async function loadState(
  module: Module, source: string | Uint8Array | Map<string, SafeTensor>, opts: LoadOptions = {},
): Promise<LoadReport> {
  const where = opts.label ?? (typeof source === 'string' ? source : 'the given weights');
  const tensors = source instanceof Map ? source
    : decodeSafetensors(typeof source === 'string' ? new Uint8Array(await fs.readFile(source)) : source).tensors;
  const state = new Map(module.namedState());
  const report: LoadReport = { loaded: [], missing: [], unexpected: [], skipped: [] };
  const pending: [string, Float32Array, string][] = [];
  for (const [fileName, t] of tensors) {
    const name = opts.rename ? opts.rename(fileName) : fileName;
    if (name == null) {
      report.skipped.push(fileName);
      continue;
    }
    const entry = state.get(name);
    if (!entry) {
      report.unexpected.push(fileName);
      continue;
    }
    const want = torchShape(entry.variable.shape, entry.layout);
    if (want.length !== t.shape.length || want.some((d, i) => d !== t.shape[i])) {
      throw bad(`tensor '${fileName}' in ${where} has shape [${t.shape}], but '${name}' needs [${want}] (PyTorch layout)`);
    }
    pending.push([name, toFloat32(t, fileName), fileName]);
  }
  const provided = new Set(pending.map(([n]) => n));
  report.missing = [...state.keys()].filter((n) => !provided.has(n));
  if (!opts.allowPartial && (report.missing.length || report.unexpected.length)) {
    const parts = [];
    if (report.missing.length) parts.push(`missing ${report.missing.length}: ${report.missing.slice(0, 6).join(', ')}`);
    if (report.unexpected.length) parts.push(`unexpected ${report.unexpected.length}: ${report.unexpected.slice(0, 6).join(', ')}`);
    throw bad(`${where} does not match the model (${parts.join('; ')}); pass allowPartial to load what matches`);
  }
  for (const [name, data, fileName] of pending) {
    const entry = state.get(name)!;
    tf.tidy(() => entry.variable.assign(fromTorch(tf.tensor(data, torchShape(entry.variable.shape, entry.layout)), entry.layout, entry.variable.shape)));
    report.loaded.push(fileName);
  }
  return report;
}
