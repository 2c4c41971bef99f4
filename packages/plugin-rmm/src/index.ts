/**
 * @ir2f/plugin-rmm: IR2F's rectification-aware mixture model loss (DESIGN §5.2) as an ir2f plugin binding
 * the `Loss` token: v2 (default) a mixture over pseudo-label losses with the rectifier's r as each pixel's
 * prior (`loss-mixture.ts`), v1 the label mixture (`rmm-loss.ts`).
 */
export { rmm } from './plugin.js';
export { RmmLoss, RmmOptionsSchema, type RmmOptions, type RmmOptionsInput } from './rmm.js';
export {
  emFit, gaussianLogPdf, initialFit, LOSS_FLOOR, logLoss, lossMixtureStep, MIXTURE_STATE_SIZE, mixtureLogLikelihood, posterior, RunningLossMixture,
  separated, type EmOptions, type Gaussian, type LossMixtureTerms, type MixtureFit,
} from './loss-mixture.js';
export { logR, rmmTerms, type RmmTermOptions, type RmmTerms } from './rmm-loss.js';
