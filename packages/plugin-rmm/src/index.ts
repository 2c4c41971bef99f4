/**
 * @ir2f/plugin-rmm: IR2F's rectification-aware mixture model loss (DESIGN §5.2) as an ir2f plugin binding
 * the `Loss` token.
 */
export { rmm } from './plugin.js';
export { RmmLoss, RmmOptionsSchema, type RmmOptions, type RmmOptionsInput } from './rmm.js';
export { rmmTerms, type RmmTermOptions, type RmmTerms } from './rmm-loss.js';
