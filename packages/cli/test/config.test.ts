import test from 'ava';
import { applySet, loadRawConfig, PRESETS, resolveConfig, RunConfigSchema } from '@ir2f/cli';

test('every preset validates, and the embedded ones need no data on disk', async (t) => {
  for (const name of Object.keys(PRESETS)) {
    const c = resolveConfig(await loadRawConfig(name));
    t.truthy(c.model.preset, name);
  }
  t.is(resolveConfig(await loadRawConfig('synth2real')).data.benchmark, 'synth2real');
});

test('flags override the preset: --model, --steps, --source and a split-aware --target', async (t) => {
  const c = resolveConfig(await loadRawConfig('gta2cs-daformer'), {
    model: 'resnet101-deeplabv2', steps: 123, source: 'synthia:/d/syn', target: 'dark_zurich:/d/dz',
  });
  t.is(c.model.preset, 'resnet101-deeplabv2');
  t.is(c.train.steps, 123);
  t.deepEqual(c.data.source, { layout: 'synthia', root: '/d/syn' });
  t.deepEqual(c.data.target, { layout: 'dark_zurich', root: '/d/dz', split: 'train' });
  t.deepEqual(c.data.val, { layout: 'dark_zurich', root: '/d/dz', split: 'val' });
  t.is(c.data.benchmark, undefined);
  // the preset's other settings stay
  t.is(c.train.optimizer.warmupSteps, 1500);
  t.deepEqual(c.data.crop, [512, 512]);
});

test('--set reads JSON values, creates nested fields and merges objects', (t) => {
  const c = applySet(applySet({ train: { optimizer: { lr: 1 } } }, 'train.optimizer.warmupSteps=10'), 'data.crop=[64,32]');
  t.deepEqual(c, { train: { optimizer: { lr: 1, warmupSteps: 10 } }, data: { crop: [64, 32] } });
  t.deepEqual(applySet({}, 'name=plain text'), { name: 'plain text' });
  t.throws(() => applySet({}, 'novalue'), { message: /key=value/ });
});

test('a config without data names what is missing', (t) => {
  const r = RunConfigSchema.safeParse({});
  t.false(r.success);
  t.regex(JSON.stringify(r.error!.issues), /data\.benchmark, or data\.source and data\.target/);
});
