/**
 * Train briefly, export to ONNX, run the .onnx in onnxruntime-node on an image file, write its class map as a
 * PNG, and compare with tfjs's prediction on the same image.
 */
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs';
import { createPipeline, exportOnnx, initBackend, train } from '@ir2f/core';
import { createModel } from '@ir2f/backbones';
import { CITYSCAPES_PALETTE, colorize, ensureBenchmark, normalize, readRgb, scanDataset, writeRgbPng } from '@ir2f/datasets';
import { syntheticData } from './toy/synthetic-data.js';

export async function exportAndRun(outDir: string, steps = 3): Promise<{ maxAbsDiff: number; agreement: number; png: string; onnxBytes: number }> {
  await initBackend();
  const student = createModel('mit-tiny-daformer', { numClasses: 19, seed: 0 });
  const teacher = createModel('mit-tiny-daformer', { numClasses: 19, seed: 0 });
  const pipeline = createPipeline({ backbone: student.backbone, decodeHead: student.decodeHead });
  try {
    await train({ config: { steps, optimizer: { lr: 6e-4, warmupSteps: 0 } }, student, teacher, numClasses: 19, pipeline, data: syntheticData(32, 19) });
    const onnx = exportOnnx(student);
    const bench = await ensureBenchmark('synth2real');
    const imageFile = (await scanDataset(bench.targetVal)).items[0].image;
    const img = await readRgb(imageFile);
    const { width: W, height: H } = img;
    const x = normalize(img);
    const nchw = new Float32Array(x.length);
    for (let i = 0; i < W * H; i++) for (let c = 0; c < 3; c++) nchw[c * W * H + i] = x[i * 3 + c];
    const session = await ort.InferenceSession.create(onnx);
    const out = await session.run({ input: new ort.Tensor('float32', nchw, [1, 3, H, W]) });
    await session.release();
    const logits = out.logits.data as Float32Array; // [1, K, H, W]
    const K = logits.length / (W * H);
    const labels = new Uint8Array(W * H);
    for (let i = 0; i < W * H; i++) {
      let best = 0;
      for (let k = 1; k < K; k++) if (logits[k * W * H + i] > logits[best * W * H + i]) best = k;
      labels[i] = best;
    }
    const png = path.join(outDir, 'onnx-class-map.png');
    await writeRgbPng(png, colorize({ data: labels, width: W, height: H }, CITYSCAPES_PALETTE));
    const [ref, refLabels] = tf.tidy(() => {
      const l = tf.transpose(student.eval().predict(tf.tensor4d(x, [1, H, W, 3])), [0, 3, 1, 2]);
      return [l.dataSync(), tf.argMax(l, 1).dataSync()];
    });
    let maxAbsDiff = 0;
    ref.forEach((v, i) => (maxAbsDiff = Math.max(maxAbsDiff, Math.abs(v - logits[i]))));
    const agreement = labels.reduce((n, v, i) => n + (v === refLabels[i] ? 1 : 0), 0) / labels.length;
    return { maxAbsDiff, agreement, png, onnxBytes: onnx.byteLength };
  } finally {
    student.dispose();
    teacher.dispose();
    await pipeline.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  exportAndRun(process.argv[2] ?? '.').then((r) => console.log(`onnxruntime vs tfjs: max |Δlogit| ${r.maxAbsDiff.toExponential(2)}, ` +
    `${(r.agreement * 100).toFixed(2)}% equal labels; class map ${r.png}`)).catch((err: unknown) => {
    console.error(`example failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
