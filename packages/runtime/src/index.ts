/**
 * @ir2f/runtime: train tfjs models in Node at native-library speed on the wasm or cpu backend. It adds to tfjs
 * the backend resolver (tensorflow, wasm, cpu; threads), the gradient kernels tfjs-backend-wasm lacks, the
 * gradients tfjs itself lacks (dilated convolutions, fused batch norm, reductions, bilinear resize),
 * onnxruntime's CPU kernels for the dense work, host kernels (a JS loop over a tensor's memory on wasm and cpu),
 * `stopGradient`, and the ONNX graph builder those kernels (and model export) use. It depends on no ir2f package.
 */
export {
  currentBackend, describeBackend, initBackend, wasmThreads, BACKEND_NAMES, DENSE_KERNELS, type BackendInfo, type BackendName, type BackendOptions, type DenseKernels,
} from './backend.js';
export { RuntimeError, type RuntimeErrorCode } from './errors.js';
export { envWithMallocTunables, MALLOC_TUNABLES, mallocTunablesSet, onGlibc, relaunchWithMallocTunables } from './malloc-tunables.js';
export { denseKernelCalls, MIN_DEPTH, MIN_ELEMENTS, MIN_MACS } from './kernels/ort-dense-kernels.js';
export {
  filledTensors, hasHostKernel, HOST_BACKENDS, registerHostKernel, registerOnce, type HostArray, type HostInput, type HostKernel, type TensorSpec, type WasmHeap,
  type WasmHostKernel,
} from './kernels/host-kernel.js';
export type { SimdKernels } from './simd/simd-kernels.js';
export { registerWasmGradientKernels, wasmGradientKernels, replacedWasmKernels } from './kernels/register-wasm-kernels.js';
export { registerDilatedConvGradients } from './gradients/dilated-conv-grads.js';
export { registerBatchNormGradient } from './gradients/batch-norm-grad.js';
export { registerReduceGradients } from './gradients/reduce-grads.js';
export { bilinearMatrix, registerResizeBilinearGradient } from './gradients/resize-bilinear-grad.js';
export { stopGradient, withoutGradients } from './stop-gradient.js';
export { batchNormTrain, batchNormTrainComposed, type BatchNormTrainResult } from './fused/batch-norm-train.js';
export { dense, denseComposed, type DenseActivation } from './fused/dense.js';
export { ensembleDot, ensembleDotComposed } from './fused/ensemble-dot.js';
export {
  bceWithLogitsSum, ensembleMlp, ensembleMlpBce, ensembleMlpBceComposed, ensembleMlpComposed, ensembleMlpTail, type MlpLayer,
} from './fused/ensemble-mlp.js';
export { gatherAffineRelu, gatherAffineReluComposed } from './fused/gather-affine-relu.js';
export { gelu, geluComposed } from './fused/gelu.js';
export { layerNorm, layerNormComposed } from './fused/layer-norm.js';
export { softmaxCrossEntropy, softmaxCrossEntropyComposed } from './fused/softmax-cross-entropy.js';
export { attr, OnnxGraph, type Dim, type OnnxAttr } from './onnx/graph.js';
