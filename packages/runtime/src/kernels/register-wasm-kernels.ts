/**
 * Registers the ir2f gradient kernels for the wasm backend. They are ordinary `registerKernel` calls, so
 * tfjs's own gradient functions (conv2d, depthwiseConv2d, gather) find them like any other kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { fusedBatchNormWasm } from './wasm-batch-norm.js';
import { concatWasm, splitVWasm } from './wasm-concat-split.js';
import { conv2DBackpropFilterWasm, conv2DBackpropInputWasm } from './wasm-conv-backprop.js';
import { depthwiseBackpropFilterWasm, depthwiseBackpropInputWasm } from './wasm-depthwise-backprop.js';
import { gatherWasm } from './wasm-gather.js';
import { replacedWasmKernels } from './wasm-heap.js';
import { identityWasm } from './wasm-identity.js';
import { maxPoolGradWasm } from './wasm-max-pool-grad.js';
import { batchMatMulWasm } from './wasm-matmul.js';
import { meanWasm, sumWasm } from './wasm-reduce.js';
import { unsortedSegmentSumWasm } from './wasm-segment-sum.js';

const IR2F_MARK = Symbol.for('ir2f.kernel');

/**
 * The kernels ir2f registers for `wasm`; `Conv2DBackpropInput`, `BatchMatMul` (transposed operands),
 * `GatherV2`, `Sum` and `Mean` (over leading axes), `Concat` and `SplitV` (inner axes), `FusedBatchNorm` and
 * `MaxPoolGrad` replace the package's scalar paths; `Identity` its copy.
 */
export const wasmGradientKernels: readonly tf.KernelConfig[] = [
  { kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilterWasm as tf.KernelFunc },
  { kernelName: 'Conv2DBackpropInput', backendName: 'wasm', kernelFunc: conv2DBackpropInputWasm as tf.KernelFunc },
  {
    kernelName: 'DepthwiseConv2dNativeBackpropFilter', backendName: 'wasm',
    kernelFunc: depthwiseBackpropFilterWasm as tf.KernelFunc,
  },
  {
    kernelName: 'DepthwiseConv2dNativeBackpropInput', backendName: 'wasm',
    kernelFunc: depthwiseBackpropInputWasm as tf.KernelFunc,
  },
  { kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: unsortedSegmentSumWasm as tf.KernelFunc },
  // speed: the package's kernels take a scalar path for these cases
  { kernelName: 'BatchMatMul', backendName: 'wasm', kernelFunc: batchMatMulWasm as tf.KernelFunc },
  { kernelName: 'GatherV2', backendName: 'wasm', kernelFunc: gatherWasm as tf.KernelFunc },
  { kernelName: 'Sum', backendName: 'wasm', kernelFunc: sumWasm as tf.KernelFunc },
  { kernelName: 'Mean', backendName: 'wasm', kernelFunc: meanWasm as tf.KernelFunc },
  { kernelName: 'Identity', backendName: 'wasm', kernelFunc: identityWasm as tf.KernelFunc },
  { kernelName: 'Concat', backendName: 'wasm', kernelFunc: concatWasm as tf.KernelFunc },
  { kernelName: 'SplitV', backendName: 'wasm', kernelFunc: splitVWasm as tf.KernelFunc },
  { kernelName: 'FusedBatchNorm', backendName: 'wasm', kernelFunc: fusedBatchNormWasm as tf.KernelFunc },
  { kernelName: 'MaxPoolGrad', backendName: 'wasm', kernelFunc: maxPoolGradWasm as tf.KernelFunc },
].map((c) => Object.assign(c, { [IR2F_MARK]: true }));

/** Kernels of tfjs-backend-wasm that ir2f replaced: ir2f's hand them what they do not speed up, benchmarks compare. */
export { replacedWasmKernels };

/** Idempotent: call after `@tensorflow/tfjs-backend-wasm` has been imported. */
export function registerWasmGradientKernels(): void {
  for (const config of wasmGradientKernels) {
    const existing = tf.getKernel(config.kernelName, 'wasm') as (tf.KernelConfig & { [IR2F_MARK]?: boolean }) | undefined;
    if (existing?.[IR2F_MARK]) continue;
    if (existing) {
      replacedWasmKernels.set(config.kernelName, existing);
      tf.unregisterKernel(config.kernelName, 'wasm');
    }
    tf.registerKernel(config);
  }
  // ir2f's BatchMatMul, GatherV2, Sum, Mean, Concat, SplitV, FusedBatchNorm and MaxPoolGrad hand the cases they do not speed up to the package's own kernels, whose
  // setup (binding their wasm functions) must still run: tfjs runs a kernel's setupFunc when the backend starts
  const delegating = ['BatchMatMul', 'GatherV2', 'Sum', 'Mean', 'Concat', 'SplitV', 'FusedBatchNorm', 'MaxPoolGrad'];
  for (const name of delegating) {
    const orig = replacedWasmKernels.get(name);
    if (!orig) continue;
    const mine = tf.getKernel(name, 'wasm') as tf.KernelConfig & { setupFunc?: tf.KernelSetupFunc };
    if (orig.setupFunc && !mine.setupFunc) {
      mine.setupFunc = orig.setupFunc;
      const started = tf.findBackend('wasm');
      if (started) orig.setupFunc(started);
    }
  }
}
