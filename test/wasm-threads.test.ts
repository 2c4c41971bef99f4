/**
 * A run's threads: onnxruntime's dense kernels on them (wasm on its single-thread build), or without them the
 * threaded wasm build (XNNPACK on a thread pool, started by `initBackend` in Node). Either way the same UDA
 * steps on 1 and 2 threads give the same losses (1e-5 relative: both split work between threads, not sums),
 * tf.memory() stays flat, the process exits on its own, and a bad thread count is refused.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));

interface RunOut {
  threads: number;
  denseThreads?: number;
  losses: Record<string, number>[];
  tensors: number[];
  bytes: number[];
}

async function steps(threads: string, dense = 'onnxruntime'): Promise<RunOut> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--conditions=ir2f-source', 'test/fixtures/threads-run.ts'], {
    cwd: root, env: { ...process.env, IR2F_WASM_THREADS: threads, IR2F_DENSE_KERNELS: dense }, timeout: 240_000,
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as RunOut;
}

// each setting runs once: the tests below share the runs
const runs = new Map<string, Promise<RunOut>>();
const cached = (threads: string, dense: 'onnxruntime' | 'backend') => {
  const k = `${threads}/${dense}`;
  if (!runs.has(k)) runs.set(k, steps(threads, dense));
  return runs.get(k)!;
};

for (const dense of ['onnxruntime', 'backend'] as const) {
  const where = dense === 'onnxruntime' ? 'onnxruntime threads (wasm single-threaded)' : 'wasm threads (XNNPACK)';
  test(`UDA steps on 1 and 2 ${where}: the same losses within 1e-5, memory flat in both, the process exits`, async (t) => {
    const [one, two] = await Promise.all([cached('1', dense), cached('2', dense)]);
    // [XNNPACK's threads, onnxruntime's]
    const used = (r: RunOut) => [r.threads, r.denseThreads];
    t.deepEqual(used(one), dense === 'onnxruntime' ? [1, 1] : [1, undefined]);
    t.deepEqual(used(two), dense === 'onnxruntime' ? [1, 2] : [2, undefined]);
    t.is(one.losses.length, 4);
    one.losses.forEach((l, i) => {
      for (const [name, v] of Object.entries(l)) {
        const w = two.losses[i][name];
        t.true(Math.abs(v - w) <= 1e-5 * Math.max(1, Math.abs(v)), `step ${i + 1} ${name}: ${v} (1 thread) vs ${w} (2 threads)`);
      }
    });
    for (const r of [one, two]) {
      // the optimiser's moments exist from the first step on
      t.deepEqual(r.tensors.slice(1), Array(3).fill(r.tensors[1]), `numTensors ${r.tensors.join(', ')} (${r.threads} threads)`);
      t.deepEqual(r.bytes.slice(1), Array(3).fill(r.bytes[1]), `numBytes ${r.bytes.join(', ')} (${r.threads} threads)`);
    }
  });
}

test('the same steps with onnxruntime\'s kernels and with the backend\'s give the same losses within 2e-5 (measured: 2.4e-6)', async (t) => {
  const [ort, own] = await Promise.all([cached('1', 'onnxruntime'), cached('1', 'backend')]);
  t.is(ort.losses.length, 4);
  ort.losses.forEach((l, i) => {
    for (const [name, v] of Object.entries(l)) {
      const w = own.losses[i][name];
      t.true(Math.abs(v - w) <= 2e-5 * Math.max(1, Math.abs(v)), `step ${i + 1} ${name}: ${v} (onnxruntime) vs ${w} (backend kernels)`);
    }
  });
});

test('a thread count outside 1–4 is refused, naming the variable', async (t) => {
  const err = await t.throwsAsync(steps('7'));
  t.regex(String((err as { stderr?: string }).stderr), /IR2F_WASM_THREADS \(ir2f --threads\) must be an integer from 1 to 4, got '7'/);
});
