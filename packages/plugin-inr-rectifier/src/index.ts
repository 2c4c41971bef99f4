/**
 * @ir2f/plugin-inr-rectifier: IR2F's implicit-neural-representation pseudo-label rectifier (DESIGN §5.1) as
 * an ir2f plugin binding the `Rectifier` token.
 */
export { inrRectifier } from './plugin.js';
export { InrOptionsSchema, InrRectifier, type InrOptions, type InrOptionsInput } from './inr-rectifier.js';
export {
  batchGridCoords, firstLayerGrid, gridCoords, latentGrid, mlpLogits, queryChunked, queryGeometry, queryLogits, type HostCoords, type InrParams, type InrShape,
  type QueryCell, type QueryGeometry,
} from './inr-query.js';
export { exportRectifierOnnx, writeRectifierOnnx } from './inr-onnx.js';
