/**
 * Errors a user can act on: each names the problem and the fix. `code` is stable for programs; the message is
 * for people. (ir2f's own packages throw `Ir2fError` from @ir2f/core; the runtime depends on no ir2f package.)
 */
export type RuntimeErrorCode = 'UNKNOWN_BACKEND' | 'BACKEND_NOT_INSTALLED' | 'BACKEND_INIT_FAILED' | 'INVALID_CONFIG';

export class RuntimeError extends Error {
  readonly code: RuntimeErrorCode;
  constructor(code: RuntimeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RuntimeError';
    this.code = code;
  }
}
