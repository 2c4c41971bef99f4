/**
 * Swap the rectifier: a user-written class bound to the `Rectifier` token. This one rates each pseudo-label
 * by the teacher's normalised entropy (r = 1 − H(p)/log K), with no trainable variables; the loop, the
 * mixer and the loss stay as they are.
 */
import * as tf from '@tensorflow/tfjs';
import {
  createPipeline, definePlugin, initBackend, Tokens, train, z, type Rectified, type Rectifier, type RectifyInput, type TrainResult,
} from '@ir2f/core';
import { createModel } from '@ir2f/backbones';
import { syntheticData } from './toy/synthetic-data.js';

export class EntropyRectifier implements Rectifier {
  readonly variables: tf.Variable[] = [];
  constructor(private readonly power = 1) {}

  rectify(input: RectifyInput): Rectified {
    const r = tf.tidy(() => {
      const p = input.pseudo.probs;
      const K = p.shape[3];
      const h = tf.neg(tf.sum(tf.mul(p, tf.log(tf.maximum(p, 1e-12))), 3));
      return tf.pow(tf.sub(1, tf.div(h, Math.log(K))), this.power) as tf.Tensor3D;
    });
    return { labels: input.pseudo.labels, weight: r, rectification: r };
  }

  dispose(): void {}
}

/** The same as a plugin value, with validated options. */
export const entropyRectifier = definePlugin({
  name: 'entropy-rectifier',
  options: z.object({ power: z.number().positive().default(1) }),
  register(container, { power }) {
    container.register(Tokens.Rectifier, { useValue: new EntropyRectifier(power) });
  },
});

export async function swapRectifier(steps = 5): Promise<{ result: TrainResult; rectifier: Rectifier }> {
  await initBackend();
  const student = createModel('mit-tiny-daformer', { numClasses: 4, seed: 0 });
  const teacher = createModel('mit-tiny-daformer', { numClasses: 4, seed: 0 });
  const pipeline = createPipeline({ backbone: student.backbone, decodeHead: student.decodeHead, plugins: [entropyRectifier({ power: 2 })] });
  try {
    const result = await train({ config: { steps, optimizer: { lr: 6e-4, warmupSteps: 0 } }, student, teacher, numClasses: 4, pipeline, data: syntheticData(32, 4) });
    return { result, rectifier: pipeline.resolve(Tokens.Rectifier) };
  } finally {
    student.dispose();
    teacher.dispose();
    await pipeline.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  swapRectifier().then(({ result }) => console.log(`trained ${result.step} steps with the entropy rectifier`)).catch((err: unknown) => {
    console.error(`example failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
