/**
 * `exportOnnx`: a model that can emit itself (`toOnnx`) becomes an ONNX ModelProto with an NCHW float input
 * `[N, 3, H, W]` and a logits output, N/H/W dynamic by default. Weights are captured in eval mode
 * (running batch-norm statistics); the model's mode is restored afterwards. Nothing is written unless the
 * whole graph was emitted (`writeOnnx` then writes atomically).
 */
import { Ir2fError } from '../errors.js';
import { writeAtomic } from '../weights/safetensors.js';
import { OnnxGraph } from '@ir2f/runtime';

export interface OnnxExportable {
  /** Emit the computation on NCHW `input`; return the name of the logits tensor [N, K, H', W']. */
  toOnnx(g: OnnxGraph, input: string): string;
  readonly training: boolean;
  train(on?: boolean): unknown;
}

export interface ExportOptions {
  opset?: number;
  /** Dynamic N, H, W (default true); false fixes them to `inputShape`. */
  dynamicAxes?: boolean;
  /** [N, H, W] when axes are fixed. */
  inputShape?: [number, number, number];
  inputName?: string;
  outputName?: string;
}

export function exportOnnx(model: OnnxExportable, opts: ExportOptions = {}): Uint8Array {
  const opset = opts.opset ?? 17;
  if (opset < 13) throw new Ir2fError('INVALID_ARGUMENT', `ONNX export needs opset ≥ 13 (got ${opset})`);
  const dynamic = opts.dynamicAxes ?? true;
  if (!dynamic && !opts.inputShape) {
    throw new Ir2fError('INVALID_ARGUMENT', 'ONNX export with fixed axes needs inputShape: [N, H, W]');
  }
  const [n, h, w] = opts.inputShape ?? [1, 1, 1];
  const wasTraining = model.training;
  model.train(false);
  try {
    const g = new OnnxGraph();
    const outputName = g.name(opts.outputName ?? 'logits');
    const input = g.input(opts.inputName ?? 'input', dynamic ? ['N', 3, 'H', 'W'] : [n, 3, h, w]);
    const out = model.toOnnx(g, input);
    g.nodeN('Identity', [out], {}, 'output', 1);
    // rename the Identity's output to the reserved output name
    g.nodes[g.nodes.length - 1].output = [outputName];
    // K and the output size are the model's: left symbolic, onnxruntime infers them
    g.output(outputName, [dynamic ? 'N' : n, 'K', 'H_out', 'W_out']);
    return g.toModel({ opset });
  } finally {
    model.train(wasTraining);
  }
}

export async function writeOnnx(model: OnnxExportable, file: string, opts: ExportOptions = {}): Promise<void> {
  const bytes = exportOnnx(model, opts);
  await writeAtomic(file, bytes);
}
