/**
 * An ONNX graph builder over onnx-proto: unique names, initialisers as raw little-endian data, typed
 * attributes, inputs/outputs with dynamic (named) dimensions, serialised to a ModelProto.
 */
import pkg from 'onnx-proto';

const { onnx } = pkg;

export type OnnxAttr =
  | { i: number }
  | { f: number }
  | { s: string }
  | { ints: number[] }
  | { floats: number[] };

export const attr = {
  int: (i: number): OnnxAttr => ({ i }),
  float: (f: number): OnnxAttr => ({ f }),
  str: (s: string): OnnxAttr => ({ s }),
  ints: (ints: number[]): OnnxAttr => ({ ints }),
  floats: (floats: number[]): OnnxAttr => ({ floats }),
};

export type Dim = number | string;

const DT = onnx.TensorProto.DataType;
const AT = onnx.AttributeProto.AttributeType;

function toAttribute(name: string, a: OnnxAttr): pkg.onnx.IAttributeProto {
  if ('i' in a) return { name, type: AT.INT, i: a.i };
  if ('f' in a) return { name, type: AT.FLOAT, f: a.f };
  if ('s' in a) return { name, type: AT.STRING, s: new TextEncoder().encode(a.s) };
  if ('ints' in a) return { name, type: AT.INTS, ints: a.ints };
  return { name, type: AT.FLOATS, floats: a.floats };
}

function valueInfo(name: string, dims: Dim[], elemType = DT.FLOAT): pkg.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

export class OnnxGraph {
  readonly nodes: pkg.onnx.INodeProto[] = [];
  readonly initializers: pkg.onnx.ITensorProto[] = [];
  readonly inputs: pkg.onnx.IValueInfoProto[] = [];
  readonly outputs: pkg.onnx.IValueInfoProto[] = [];
  private readonly used = new Set<string>();
  private readonly opsUsed = new Set<string>();
  /** Operator domains other than ONNX's own that the nodes use (each imported at version 1). */
  private readonly domains = new Set<string>();

  /** A fresh name derived from `base`. */
  name(base: string): string {
    const clean = base.replace(/[^\w./:-]+/g, '_') || 't';
    let n = clean;
    for (let k = 1; this.used.has(n); k++) n = `${clean}_${k}`;
    this.used.add(n);
    return n;
  }

  input(name: string, dims: Dim[]): string {
    const n = this.name(name);
    this.inputs.push(valueInfo(n, dims));
    return n;
  }

  output(name: string, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, dims));
  }

  /** A float32 initialiser (raw data). */
  floats(base: string, data: Float32Array, dims: number[]): string {
    const n = this.name(base);
    const bytes = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
    this.initializers.push({ name: n, dataType: DT.FLOAT, dims, rawData: bytes });
    return n;
  }

  /** A float32 initialiser holding a tensor's current values, in its own shape. */
  tensor(base: string, t: { dataSync(): ArrayLike<number>; shape: number[] }): string {
    return this.floats(base, Float32Array.from(t.dataSync()), t.shape);
  }

  /** An int64 initialiser (shapes, axes, indices). */
  int64s(base: string, values: number[], dims: number[] = [values.length]): string {
    const n = this.name(base);
    const data = new BigInt64Array(values.map((v) => BigInt(v)));
    this.initializers.push({ name: n, dataType: DT.INT64, dims, rawData: new Uint8Array(data.buffer) });
    return n;
  }

  /** Add a node; returns its output names (`outputs` of them, named after `base`). */
  nodeN(op: string, inputs: string[], attrs: Record<string, OnnxAttr> = {}, base = op, outputs = 1): string[] {
    const outs = Array.from({ length: outputs }, (_, k) => this.name(outputs === 1 ? base : `${base}_${k}`));
    this.nodes.push({
      opType: op, name: this.name(`${base}_node`), input: inputs, output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => toAttribute(k, v)),
    });
    this.opsUsed.add(op);
    return outs;
  }

  /** A node of another operator domain (e.g. onnxruntime's `com.microsoft.nchwc`), imported at version 1. */
  nodeIn(domain: string, op: string, inputs: string[], attrs: Record<string, OnnxAttr> = {}): string {
    const out = this.node(op, inputs, attrs);
    this.nodes[this.nodes.length - 1].domain = domain;
    this.domains.add(domain);
    return out;
  }

  node(op: string, inputs: string[], attrs: Record<string, OnnxAttr> = {}, base = op): string {
    return this.nodeN(op, inputs, attrs, base, 1)[0];
  }

  get ops(): string[] {
    return [...this.opsUsed].sort();
  }

  /** Serialise as a ModelProto (IR version 8, default domain at `opset`). */
  toModel(opts: { opset?: number; graphName?: string; producer?: string; docString?: string } = {}): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: opts.producer ?? 'ir2f',
      producerVersion: '0.1.0',
      opsetImport: [{ domain: '', version: opts.opset ?? 17 }, ...[...this.domains].map((domain) => ({ domain, version: 1 }))],
      docString: opts.docString ?? '',
      graph: {
        name: opts.graphName ?? 'ir2f',
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
