/**
 * A run's threads: onnxruntime's dense kernels on them (wasm on its single-thread build), or without them the
 * threaded wasm build (XNNPACK on a thread pool, started by `initBackend` in Node). Either way the same UDA
 * steps on 1 and 2 threads give the same losses, tf.memory() stays flat, the process exits on its own, and a
 * bad thread count is refused.
 *
 * "The same" is tight for the first two steps and loose after: Adam's first update moves each weight by about
 * lr·sign(g), so wherever a gradient is near zero a 1e-7 difference between kernels flips the step's sign.
 * Measured (lr 1e-3): weights differ by up to 2e-4 after step 1 between onnxruntime's and the backend's kernels,
 * with layer norm and batch norm composed or fused alike; steps 1–2 then agree within 2e-7, steps 3–4 drift
 * to 2e-6–1e-4 depending on which signs flipped. A wrong kernel shows at step 1.
 */
import test, { type ExecutionContext } from 'ava';
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

/** Losses of the first two steps within `tight` (relative), of the later ones within LATE. */
const LATE = 5e-4;
function sameLosses(t: ExecutionContext, a: RunOut, b: RunOut, tight: number, names: [string, string]): void {
  t.is(a.losses.length, 4);
  a.losses.forEach((l, i) => {
    for (const [name, v] of Object.entries(l)) {
      const w = b.losses[i][name];
      const tol = i < 2 ? tight : LATE;
      t.true(Math.abs(v - w) <= tol * Math.max(1, Math.abs(v)), `step ${i + 1} ${name}: ${v} (${names[0]}) vs ${w} (${names[1]}), tolerance ${tol}`);
    }
  });
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
  test(`UDA steps on 1 and 2 ${where}: the same losses (1e-6 for two steps), memory flat in both, the process exits`, async (t) => {
    const [one, two] = await Promise.all([cached('1', dense), cached('2', dense)]);
    // [XNNPACK's threads, onnxruntime's]
    const used = (r: RunOut) => [r.threads, r.denseThreads];
    t.deepEqual(used(one), dense === 'onnxruntime' ? [1, 1] : [1, undefined]);
    t.deepEqual(used(two), dense === 'onnxruntime' ? [1, 2] : [2, undefined]);
    sameLosses(t, one, two, 1e-6, ['1 thread', '2 threads']);
    for (const r of [one, two]) {
      // the optimiser's moments exist from the first step on
      t.deepEqual(r.tensors.slice(1), Array(3).fill(r.tensors[1]), `numTensors ${r.tensors.join(', ')} (${r.threads} threads)`);
      t.deepEqual(r.bytes.slice(1), Array(3).fill(r.bytes[1]), `numBytes ${r.bytes.join(', ')} (${r.threads} threads)`);
    }
  });
}

test('the same steps with onnxruntime\'s kernels and with the backend\'s give the same losses (2e-6 for two steps; measured 2e-7)', async (t) => {
  const [ort, own] = await Promise.all([cached('1', 'onnxruntime'), cached('1', 'backend')]);
  sameLosses(t, ort, own, 2e-6, ['onnxruntime', 'backend kernels']);
});

test('a thread count outside 1–4 is refused, naming the variable', async (t) => {
  const err = await t.throwsAsync(steps('7'));
  t.regex(String((err as { stderr?: string }).stderr), /IR2F_WASM_THREADS \(ir2f --threads\) must be an integer from 1 to 4, got '7'/);
});
