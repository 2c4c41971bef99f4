/**
 * Errors users can act on: each names the problem and the fix. `code` is stable for programs; the message
 * is for people. (A backend that cannot start throws @ir2f/runtime's `RuntimeError`, re-exported here.)
 */
export type Ir2fErrorCode =
  | 'PLUGIN_OPTIONS'
  | 'PLUGIN_CONFLICT'
  | 'UNBOUND_TOKEN'
  | 'INVALID_ARGUMENT'
  | 'DATASET_LAYOUT'
  | 'DATASET_PAIRING'
  | 'CORRUPT_IMAGE'
  | 'SIZE_MISMATCH'
  | 'LABEL_OUT_OF_SPEC'
  | 'INVALID_LABEL_SPEC'
  | 'NON_FINITE_LOSS'
  | 'INVALID_CONFIG'
  | 'INVALID_CHECKPOINT'
  | 'CONFIG_MISMATCH'
  | 'PLUGIN_NOT_INSTALLED'
  | 'WORKER_FAILED'
  | 'WORK_DIR_LOCKED'
  | 'WRITE_FAILED';

export class Ir2fError extends Error {
  readonly code: Ir2fErrorCode;
  constructor(code: Ir2fErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Ir2fError';
    this.code = code;
  }
}
