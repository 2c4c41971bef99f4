import { Ir2fError } from '../errors.js';

/** The error an emitter throws for a computation ONNX export does not cover. */
export function unsupportedOp(layer: string, op: string, hint = ''): Ir2fError {
  return new Ir2fError('INVALID_ARGUMENT',
    `ONNX export: layer '${layer}' uses '${op}', which has no ONNX mapping${hint ? `: ${hint}` : ''}; nothing was written`);
}
