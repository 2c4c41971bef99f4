import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import {
  createPipeline, definePlugin, inject, injectable, Ir2fError, Tokens,
  type Backbone, type DecodeHead, type EventBus, type Rectified, type Rectifier, type RectifyInput,
} from '@ir2f/core';

const backbone: Backbone = {
  channels: [4], strides: [4], variables: [],
  forward: (x) => [tf.avgPool(x, 4, 4, 'valid') as tf.Tensor4D], dispose() {},
};
const head: DecodeHead = {
  numClasses: 2, embeddingChannels: 4, variables: [],
  forward: (f) => ({ logits: f[0], embedding: f[0] }), dispose() {},
};
const parts = { backbone, decodeHead: head, pseudoLabeler: { label: () => { throw new Error('unused'); } },
  loss: { compute: () => { throw new Error('unused'); } }, mixer: { mix: () => { throw new Error('unused'); } } };

/** A rectifier resolved by explicit token injection (no decorator metadata involved). */
@injectable()
class HalfRectifier implements Rectifier {
  readonly variables = [];
  constructor(@inject(Tokens.EventBus) readonly bus: EventBus) {}
  rectify(input: RectifyInput): Rectified {
    return { ...input.pseudo, rectification: tf.mul(input.pseudo.weight, 0.5) };
  }
  dispose() {}
}

const halfPlugin = definePlugin({
  name: 'half-rectifier',
  options: z.object({ scale: z.number().positive().default(0.5), hidden: z.array(z.number().int()).default([64]) }),
  register(c) {
    c.register(Tokens.Rectifier, { useClass: HalfRectifier });
  },
});

test('a plugin binds a token and its class receives injected tokens', async (t) => {
  const p = createPipeline({ ...parts, plugins: [halfPlugin()] });
  const r = p.resolve(Tokens.Rectifier);
  t.true(r instanceof HalfRectifier);
  t.is((r as HalfRectifier).bus, p.resolve(Tokens.EventBus));
  t.deepEqual(p.plugins, ['half-rectifier']);
  await p.dispose();
});

test('plugin options get defaults and invalid options name the path and the expected type', (t) => {
  t.deepEqual(halfPlugin().options, { scale: 0.5, hidden: [64] });
  const err = t.throws(() => halfPlugin({ scale: 1, hidden: [64, 'wide' as unknown as number] }), { instanceOf: Ir2fError });
  t.is(err?.code, 'PLUGIN_OPTIONS');
  t.regex(err!.message, /half-rectifier/);
  t.regex(err!.message, /hidden\.1/);
  t.regex(err!.message, /expected number/);
  const neg = t.throws(() => halfPlugin({ scale: -1 }));
  t.regex(neg!.message, /scale: .*>0|scale: .*positive|scale: .*greater/i);
});

test('a token bound by two plugins is an error naming both', (t) => {
  const other = definePlugin({
    name: 'other-rectifier', options: z.object({}),
    register(c) { c.register(Tokens.Rectifier, { useValue: new HalfRectifier({} as EventBus) }); },
  });
  const err = t.throws(() => createPipeline({ ...parts, plugins: [halfPlugin(), other()] }), { instanceOf: Ir2fError });
  t.is(err?.code, 'PLUGIN_CONFLICT');
  t.regex(err!.message, /Rectifier/);
  t.regex(err!.message, /'half-rectifier'/);
  t.regex(err!.message, /'other-rectifier'/);
});

test('a required token left unbound names the token and the package providing it', (t) => {
  const { backbone: _omit, ...rest } = parts;
  void _omit;
  const err = t.throws(() => createPipeline(rest), { instanceOf: Ir2fError });
  t.is(err?.code, 'UNBOUND_TOKEN');
  t.regex(err!.message, /token Backbone/);
  t.regex(err!.message, /@ir2f\/backbones/);
  // not required → fine
  t.notThrows(() => createPipeline({ ...rest, require: ['DecodeHead', 'EventBus'] }));
});

test('explicit parts override plugin bindings and core defaults', (t) => {
  const mine = new HalfRectifier({} as EventBus);
  const p = createPipeline({ ...parts, rectifier: mine, plugins: [halfPlugin()] });
  t.is(p.resolve(Tokens.Rectifier), mine);
  const q = createPipeline(parts);
  t.is(q.resolve(Tokens.Rectifier).constructor.name, 'IdentityRectifier');
  t.is(q.resolve(Tokens.Backbone), backbone);
  // only the model is needed: the DAFormer baseline parts are core defaults
  const d = createPipeline({ backbone, decodeHead: head });
  t.is(d.resolve(Tokens.PseudoLabeler).constructor.name, 'ConfidencePseudoLabeler');
  t.is(d.resolve(Tokens.Loss).constructor.name, 'WeightedCrossEntropy');
  t.is(d.resolve(Tokens.Mixer).constructor.name, 'ClassMix');
});

test('factory and class parts are one instance per pipeline, separate across pipelines', (t) => {
  let made = 0;
  const opts = { ...parts, backbone: { useFactory: () => { made++; return { ...backbone }; } } };
  const a = createPipeline(opts);
  const b = createPipeline(opts);
  t.is(a.resolve(Tokens.Backbone), a.resolve(Tokens.Backbone));
  t.not(a.resolve(Tokens.Backbone), b.resolve(Tokens.Backbone));
  t.is(made, 2);
});

test('passing a plugin factory instead of a plugin value is a clear error', (t) => {
  const err = t.throws(() => createPipeline({ ...parts, plugins: [halfPlugin as never] }));
  t.regex(err!.message, /call the factory/);
});
