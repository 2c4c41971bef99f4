/**
 * Gradients of dilated (atrous) conv2d and depthwiseConv2d, which tfjs refuses ("dilation rates greater
 * than 1 are not yet supported in gradients") and DeepLab's ASPP and the DAFormer head need.
 *
 * A stride-1 convolution with dilation d equals an undilated "valid" convolution on the d×d phase-split
 * input (space-to-batch), reassembled by batch-to-space; its gradients are therefore the undilated backprop
 * kernels applied between the same two reshuffles. This uses only kernels every backend has. On wasm,
 * ir2f's backprop kernels take the dilation directly and the reshuffles are skipped. Undilated calls go
 * to tfjs's own gradient unchanged.
 */
import * as tf from '@tensorflow/tfjs';

type Attrs = {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dilations?: number | [number, number];
  dataFormat?: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
};

function pair(v: number | [number, number] | undefined): [number, number] {
  if (v == null) return [1, 1];
  return typeof v === 'number' ? [v, v] : v;
}

/** Paddings and crops that make the padded input a whole number of d×d blocks. */
function atrousPlan(x: tf.Tensor4D, filterShape: number[], attrs: Attrs, depthwise: boolean) {
  const [dh, dw] = pair(attrs.dilations);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape, filterShape as [number, number, number, number], attrs.strides, [dh, dw], attrs.pad,
    attrs.dimRoundingMode, depthwise, 'channelsLast');
  const { top, bottom, left, right } = info.padInfo;
  const [KH, KW] = filterShape;
  const Hp = info.inHeight + top + bottom;
  const Wp = info.inWidth + left + right;
  const Hq = Math.ceil(Hp / dh) * dh;
  const Wq = Math.ceil(Wp / dw) * dw;
  const [B, , , C] = x.shape;
  return {
    block: [dh, dw],
    /** Shape of the space-to-batch input: d×d phases stacked on the batch axis. */
    blockedShape: [B * dh * dw, Hq / dh, Wq / dw, C] as [number, number, number, number],
    xPads: [[top, bottom + Hq - Hp], [left, right + Wq - Wp]],
    // the blocked valid conv yields Hq - (KH-1)·dh rows; the real output is its first OH rows
    dyPads: [[0, Hq - (KH - 1) * dh - info.outHeight], [0, Wq - (KW - 1) * dw - info.outWidth]],
  };
}

function checkAtrousAttrs(kernel: string, attrs: Attrs): void {
  if (attrs.dataFormat === 'NCHW') throw new Error(`ir2f: dilated ${kernel} gradient supports NHWC only`);
  const [sh, sw] = pair(attrs.strides);
  if (sh !== 1 || sw !== 1) throw new Error(`ir2f: ${kernel} with both strides and dilations > 1 has no gradient`);
}

function isDilated(attrs: Attrs): boolean {
  const [dh, dw] = pair(attrs.dilations);
  return dh > 1 || dw > 1;
}

/** Backends whose backprop kernels take a `dilations` attribute (ir2f's own wasm kernels do). */
const DILATION_AWARE_BACKENDS = new Set(['wasm']);

function atrousGradients(kernel: 'Conv2D' | 'DepthwiseConv2dNative') {
  const depthwise = kernel === 'DepthwiseConv2dNative';
  const inputKernel = depthwise ? 'DepthwiseConv2dNativeBackpropInput' : 'Conv2DBackpropInput';
  const filterKernel = depthwise ? 'DepthwiseConv2dNativeBackpropFilter' : 'Conv2DBackpropFilter';
  return (dy: tf.Tensor4D, x: tf.Tensor4D, filter: tf.Tensor4D, attrs: Attrs) => {
    checkAtrousAttrs(kernel, attrs);
    if (DILATION_AWARE_BACKENDS.has(tf.getBackend())) {
      // no space-to-batch round trip: the kernels handle the dilation themselves
      const a = { ...attrs, dataFormat: 'NHWC' };
      return {
        x: () => tf.engine().runKernel(inputKernel, { dy, filter }, { ...a, inputShape: x.shape }) as tf.Tensor4D,
        filter: () => tf.engine().runKernel(filterKernel, { x, dy }, { ...a, filterShape: filter.shape }) as tf.Tensor4D,
      };
    }
    const plan = atrousPlan(x, filter.shape, attrs, depthwise);
    const valid = { strides: [1, 1], pad: 'valid', dilations: [1, 1], dataFormat: 'NHWC' };
    // blocked dy serves both gradients. Made here, not in a closure: the engine runs each closure in its
    // own tidy, which would dispose a tensor shared between them; tensors made here live until the end of
    // the gradient computation.
    const dys = tf.spaceToBatchND(dy, plan.block, plan.dyPads) as tf.Tensor4D;
    return {
      x: () => {
        const dxs = tf.engine().runKernel(inputKernel, { dy: dys, filter }, { ...valid, inputShape: plan.blockedShape }) as tf.Tensor4D;
        return tf.batchToSpaceND(dxs, plan.block, plan.xPads);
      },
      filter: () => {
        const xs = tf.spaceToBatchND(x, plan.block, plan.xPads) as tf.Tensor4D;
        return tf.engine().runKernel(filterKernel, { x: xs, dy: dys }, { ...valid, filterShape: filter.shape }) as tf.Tensor4D;
      },
    };
  };
}

let installed = false;

/** Idempotent; overrides the gradient of Conv2D and DepthwiseConv2dNative for dilation > 1 only. */
export function registerDilatedConvGradients(): void {
  if (installed) return;
  for (const kernelName of ['Conv2D', 'DepthwiseConv2dNative'] as const) {
    const original = tf.getGradient(kernelName);
    if (original == null) throw new Error(`tfjs has no gradient registered for ${kernelName}`);
    const atrous = atrousGradients(kernelName);
    tf.registerGradient({
      kernelName,
      inputsToSave: ['x', 'filter'],
      gradFunc: (dy, saved, attrs) => {
        const a = attrs as unknown as Attrs;
        if (!isDilated(a)) return original.gradFunc(dy, saved, attrs);
        const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
        return atrous(dy as tf.Tensor4D, x, filter, a);
      },
    });
  }
  installed = true;
}
