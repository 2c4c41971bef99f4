import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { envWithMallocTunables, MALLOC_TUNABLES, mallocTunablesSet, onGlibc } from '@ir2f/runtime';

const RUNTIME = new URL('../dist/index.js', import.meta.url).href;

test('the tunables merge into a GLIBC_TUNABLES of the user\'s, whose own malloc entries win', (t) => {
  t.is(envWithMallocTunables({}).GLIBC_TUNABLES, MALLOC_TUNABLES);
  t.false(mallocTunablesSet({}));
  t.true(mallocTunablesSet({ GLIBC_TUNABLES: MALLOC_TUNABLES }));
  const mine = envWithMallocTunables({ GLIBC_TUNABLES: 'glibc.cpu.x86_shstk=off:glibc.malloc.mmap_threshold=65536', PATH: '/bin' });
  t.is(mine.GLIBC_TUNABLES, 'glibc.cpu.x86_shstk=off:glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=1073741824:glibc.malloc.arena_max=1');
  t.is(mine.PATH, '/bin');
  const set = { GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=1:glibc.malloc.mmap_threshold=2' };
  t.is(envWithMallocTunables(set), set);
});

/** Runs `body` in a fresh node (ESM, the built runtime imported as `rt`) and returns what it printed last. */
function node(body: string, env: NodeJS.ProcessEnv): { out: string; status: number | null } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import * as rt from '${RUNTIME}';\n${body}`], { env, encoding: 'utf8' });
  return { out: r.stdout.trim(), status: r.status };
}

test('an entry point relaunches itself once with the tunables, passing its exit code on; IR2F_MALLOC_TUNABLES=0 opts out', (t) => {
  const body = `const code = await rt.relaunchWithMallocTunables();
if (code !== undefined) process.exit(code);
console.log(JSON.stringify(process.env.GLIBC_TUNABLES ?? null));
process.exit(7);`;
  const base = { ...process.env };
  delete base.GLIBC_TUNABLES;
  const plain = node(body, { ...base, IR2F_MALLOC_TUNABLES: '0' });
  t.deepEqual(plain, { out: 'null', status: 7 });
  const relaunched = node(body, base);
  t.is(relaunched.status, 7);
  t.is(relaunched.out, JSON.stringify(onGlibc() ? MALLOC_TUNABLES : null));
});

test('with the tunables, onnxruntime\'s products stop page-faulting their output in afresh on every call (glibc only)', (t) => {
  if (!onGlibc()) {
    t.pass('not glibc: the tunables do not apply');
    return;
  }
  // a [131072, 16]·[16, 64] product on the cpu backend routed to onnxruntime: 32 MiB of output, 8,192 pages
  const body = `import * as tf from '@tensorflow/tfjs';
await rt.initBackend('cpu', { denseKernels: 'onnxruntime' });
const [a, b] = [tf.ones([131072, rt.MIN_DEPTH]), tf.ones([rt.MIN_DEPTH, 64])];
// warm-up: the heap grows to its working size over the first calls (~25,000 faults with the tunables, then none)
for (let i = 0; i < 4; i++) tf.matMul(a, b).dispose();
const before = process.resourceUsage().minorPageFault;
for (let i = 0; i < 8; i++) tf.matMul(a, b).dispose();
console.log(JSON.stringify({ faults: process.resourceUsage().minorPageFault - before, calls: rt.denseKernelCalls().BatchMatMul }));`;
  const base: NodeJS.ProcessEnv = { ...process.env, IR2F_MALLOC_TUNABLES: '0' };
  delete base.GLIBC_TUNABLES;
  const run = (env: NodeJS.ProcessEnv) => JSON.parse(node(body, env).out.split('\n').pop()!) as { faults: number; calls: number };
  const without = run(base);
  const withTunables = run(envWithMallocTunables(base));
  t.is(without.calls, 12, 'the products ran on onnxruntime');
  t.true(without.faults > 8 * 4096, `without: ${without.faults} faults for 8 calls`);
  t.true(withTunables.faults < without.faults / 4, `with: ${withTunables.faults} faults, without: ${without.faults}`);
});

test('a relaunched child whose launcher is SIGKILLed terminates itself (no orphan keeps running)', async (t) => {
  if (!onGlibc()) {
    t.pass('not glibc: nothing is relaunched');
    return;
  }
  const body = `const code = await rt.relaunchWithMallocTunables();
if (code !== undefined) process.exit(code);
console.log(process.pid);
setTimeout(() => {}, 60000);`;
  const base: NodeJS.ProcessEnv = { ...process.env };
  delete base.GLIBC_TUNABLES;
  delete base.IR2F_MALLOC_TUNABLES;
  const launcher = spawn(process.execPath, ['--input-type=module', '-e', `import * as rt from '${RUNTIME}';\n${body}`], { env: base });
  const childPid = await new Promise<number>((resolve) => launcher.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  t.true(childPid > 0 && childPid !== launcher.pid);
  launcher.kill('SIGKILL');
  const alive = () => {
    try {
      process.kill(childPid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const deadline = Date.now() + 5000;
  while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.false(alive(), 'the child outlived its launcher by 5 s');
});

test('ir2f\'s #! line sets the same tunables, with the user\'s own GLIBC_TUNABLES after them', (t) => {
  const line = readFileSync(new URL('../../cli/src/bin.ts', import.meta.url), 'utf8').split('\n')[0];
  const m = /^#!(\S+) (-S .*)$/.exec(line);
  t.truthy(m, line);
  // as the kernel runs it: the interpreter, the rest of the line as one argument, then the script's arguments
  const print = (env: NodeJS.ProcessEnv) => spawnSync(m![1], [m![2], '-e', 'console.log(process.env.GLIBC_TUNABLES)'], { env, encoding: 'utf8' }).stdout.trim();
  const base: NodeJS.ProcessEnv = { PATH: process.env.PATH };
  t.true(print(base).startsWith(`${MALLOC_TUNABLES}:`));
  t.is(print({ ...base, GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' }), `${MALLOC_TUNABLES}:glibc.malloc.mmap_threshold=65536`);
});
