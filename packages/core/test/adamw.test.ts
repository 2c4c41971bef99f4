import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { AdamW, emaUpdate, initBackend, paramGroups, polyLr, Rng, type StateEntry } from '@ir2f/core';
import { hasHostKernel } from '@ir2f/runtime';

test.before(async () => {
  await initBackend('wasm');
});

const entry = (v: tf.Variable): StateEntry => ({ variable: v, layout: 'plain', trainable: true });

test('one AdamW step equals the hand-computed PyTorch-semantics update', (t) => {
  const p = tf.variable(tf.tensor1d([1]), true, 'adamw_hand_p');
  const opt = new AdamW([{ variables: [p], lrMult: 1, decayMult: 1 }], { weightDecay: 0.01 });
  opt.apply({ [p.name]: tf.tensor1d([0.5]) }, 0.1);
  // p·(1 − 0.1·0.01) − 0.1 · m̂/(√v̂ + ε), m̂ = 0.5, √v̂ = 0.5
  t.true(Math.abs(p.dataSync()[0] - (0.999 - 0.1 * (0.5 / (0.5 + 1e-8)))) < 1e-6);
  t.is(opt.step, 1);
  opt.dispose();
});

test.serial('an AdamW built and disposed leaves no tensor behind (its moments\' initial zeros are freed)', (t) => {
  const p = tf.variable(tf.ones([3, 4]), true, 'adamw_leak_p');
  const before = tf.memory().numTensors;
  const bytes = tf.memory().numBytes;
  const opt = new AdamW([{ variables: [p], lrMult: 1, decayMult: 1 }]);
  t.is(tf.memory().numTensors, before + 2);
  opt.dispose();
  t.is(tf.memory().numTensors, before);
  t.is(tf.memory().numBytes, bytes);
  p.dispose();
});

test('parameter groups follow mmcv custom_keys: head ×10, no decay on norms, longest key wins', (t) => {
  const mk = (n: string) => [n, entry(tf.variable(tf.zeros([1]), true, `pg_${n}`))] as [string, StateEntry];
  const groups = paramGroups([mk('backbone.block1.0.attn.q.weight'), mk('backbone.norm1.weight'), mk('decode_head.conv_seg.weight'),
    mk('decode_head.fuse_layer.bottleneck.bn.weight')]);
  const of = (suffix: string) => groups.find((g) => g.variables.some((v) => v.name.endsWith(suffix)))!;
  t.deepEqual([of('attn.q.weight').lrMult, of('attn.q.weight').decayMult], [1, 1]);
  t.deepEqual([of('backbone.norm1.weight').lrMult, of('backbone.norm1.weight').decayMult], [1, 0]);
  t.deepEqual([of('conv_seg.weight').lrMult, of('bn.weight').lrMult], [10, 10]);
});

test('poly schedule with linear warm-up (mmcv): ratio at step 0, base after warm-up, 0 at the end', (t) => {
  const o = { baseLr: 6e-5, maxSteps: 40000, warmupSteps: 1500, warmupRatio: 1e-6 };
  t.true(Math.abs(polyLr(0, o) - 6e-5 * 1e-6) < 1e-15);
  t.true(Math.abs(polyLr(750, o) - 6e-5 * (1 - 750 / 40000) * (1 - 0.5 * (1 - 1e-6))) < 1e-12);
  t.true(Math.abs(polyLr(1500, o) - 6e-5 * (1 - 1500 / 40000)) < 1e-15);
  t.is(polyLr(40000, o), 0);
});

test('AdamW matches torch.optim.AdamW over 5 steps with two groups (when Debian python3-torch is installed)', (t) => {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' });
  } catch {
    t.log('skipped: /usr/bin/python3 has no torch (apt-get install python3-torch)');
    t.pass();
    return;
  }
  const rng = new Rng(2);
  const p0 = Array.from(rng.normalArray(6));
  const grads = Array.from({ length: 5 }, () => Array.from(rng.normalArray(6)));
  const a = tf.variable(tf.tensor1d(p0.slice(0, 3)), true, 'adamw_pt_a');
  const b = tf.variable(tf.tensor1d(p0.slice(3)), true, 'adamw_pt_b');
  const opt = new AdamW([{ variables: [a], lrMult: 1, decayMult: 1 }, { variables: [b], lrMult: 10, decayMult: 0 }], { weightDecay: 0.01 });
  const lrs = [1e-3, 2e-3, 3e-3, 2e-3, 1e-3];
  grads.forEach((g, i) => opt.apply({ [a.name]: tf.tensor1d(g.slice(0, 3)), [b.name]: tf.tensor1d(g.slice(3)) }, lrs[i]));
  const script = `
import json, sys, torch
d = json.loads(sys.argv[1])
a = torch.tensor(d['p0'][:3], requires_grad=True); b = torch.tensor(d['p0'][3:], requires_grad=True)
opt = torch.optim.AdamW([{'params': [a], 'lr': 1.0, 'weight_decay': 0.01}, {'params': [b], 'lr': 10.0, 'weight_decay': 0.0}], lr=1.0)
for g, lr in zip(d['grads'], d['lrs']):
    opt.param_groups[0]['lr'] = lr; opt.param_groups[1]['lr'] = 10 * lr
    a.grad = torch.tensor(g[:3]); b.grad = torch.tensor(g[3:]); opt.step()
print(json.dumps(a.tolist() + b.tolist()))`;
  const ref = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script, JSON.stringify({ p0, grads, lrs })], { encoding: 'utf8' }));
  const ours = [...a.dataSync(), ...b.dataSync()];
  ours.forEach((v, i) => t.true(Math.abs(v - ref[i]) < 1e-6, `param ${i}: ${v} vs ${ref[i]}`));
  opt.dispose();
});

test('AdamW and the EMA update: the JS kernels (wasm, cpu) give the results of the tensor-op versions other backends run', async (t) => {
  const rng = new Rng(9);
  const n = 1000;
  const init = rng.normalArray(n);
  const gradients = [0, 1, 2].map(() => rng.normalArray(n));
  const student = rng.normalArray(n);
  // three AdamW steps with decay, then one EMA step; returns p, m, v and the teacher
  const run = () => {
    const p = tf.variable(tf.tensor1d(init), true);
    const teacher = tf.variable(tf.tensor1d(init), false);
    const s = tf.variable(tf.tensor1d(student), false);
    const opt = new AdamW([{ variables: [p], lrMult: 1, decayMult: 1 }], { weightDecay: 0.05 });
    gradients.forEach((g, i) => opt.apply({ [p.name]: tf.tensor1d(g) }, 1e-2 * (i + 1)));
    emaUpdate([teacher], [s], 0.9);
    const { m, v } = opt.stateTensors();
    const out = [p, m[0], v[0], teacher].map((x) => Float32Array.from(x.dataSync()));
    opt.dispose();
    tf.dispose([p, teacher, s]);
    return out;
  };
  const kernels = run();
  const cpuKernels = await (async () => {
    await tf.setBackend('cpu');
    try {
      const r = run();
      // without the JS kernels cpu composes tensor ops, as webgl and tfjs-node do
      for (const name of ['Ir2fAdamW', 'Ir2fBlend']) tf.unregisterKernel(name, 'cpu');
      t.false(hasHostKernel('Ir2fAdamW'));
      return [r, run()];
    } finally {
      await tf.setBackend('wasm');
    }
  })();
  t.true(hasHostKernel('Ir2fAdamW') && hasHostKernel('Ir2fBlend'), 'wasm runs the kernels');
  for (const [label, other] of [['cpu kernels', cpuKernels[0]], ['tensor ops', cpuKernels[1]]] as const) {
    ['p', 'm', 'v', 'teacher'].forEach((what, i) => {
      // relative to the tensor's scale: single-precision constants (1 − β) differ in the last bits
      const scale = Math.max(...other[i].map(Math.abs));
      const err = Math.max(...kernels[i].map((x, j) => Math.abs(x - other[i][j]))) / scale;
      t.true(err < 1e-5, `${label}, ${what}: relative difference ${err}`);
    });
  }
});
