/**
 * `npm run bench -- train`: one DAFormer-style iteration (batch 2+2) of the small presets at 128² and 256²
 * on tfjs-wasm: one replica on 1 thread and on N threads (XNNPACK's pool), and the default of `ir2f train`
 * on N ≥ 2 cores, the faster of two replicas (the source and target passes in parallel) on N/2 threads each
 * and one on N/2 threads (a run times both over its first steps and keeps the faster); each in a
 * process of its own (the wasm module's threads are fixed per process). Convolutions, matrix products and
 * transcendentals run on onnxruntime's MLAS kernels (core's default when onnxruntime-node is installed); the
 * column "1 thr, wasm kernels" is the same step with IR2F_DENSE_KERNELS=backend (XNNPACK and ir2f's kernels). Next to it the PyTorch twin running
 * the same step (bench/reference/models.py train) on 1 and N threads, as throughput ratios (> 1: tfjs is
 * faster); the iteration's convolution/matmul GFLOP/s against the machine's practical peak (PyTorch's 2048²
 * sgemm); the phases of the default, its kernel dispatches per iteration and the top kernels by time; and the peak RSS of a training process at 256² (target ≤ 2 GiB).
 * The INR step ÷ the plain one (target ≤ 1.4) is timed apart, a plain and an INR iteration in turn in one process
 * per plan (`inrRatio`), each round's pair a ratio: in separate processes it took their speed spread too.
 *
 * The default's ms per iteration is kept in bench/train-reference.json (with the CPU it was measured on);
 * `npm run bench -- train --check` times only the default, compares with it and exits non-zero when a case is
 * more than 25 % slower: a regression (such as the broadcast-Tile one) is caught in about a minute. The default
 * and PyTorch columns are medians of `--rounds N` (default 3) rounds over all cases, since this VM's speed
 * drifts over minutes; the ratio columns are medians of each round's own ratio (its default and PyTorch steps
 * ran back to back).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { benchInterleaved, benchStep, type StepBenchResult } from '@ir2f/cli';
import { writeAtomic } from '@ir2f/core';
import { DEBIAN_PYTHON, debianBlas } from './python-reference.js';
import { fmt, table } from './timing.js';

const CASES: [string, number, 'inr'?][] = [
  ['mit-tiny-daformer', 128], ['mit-tiny-daformer', 256], ['resnet-tiny-deeplabv2', 128], ['mit-tiny-daformer', 128, 'inr'],
];
const THREADS = Math.min(4, os.availableParallelism());

interface TorchStep {
  ms: number;
  phases: Record<string, number>;
}

function torchStep(preset: string, size: number, threads: number): TorchStep | undefined {
  try {
    const script = fileURLToPath(new URL('./reference/models.py', import.meta.url));
    const out = execFileSync(DEBIAN_PYTHON, [script, 'train', '--preset', preset, '--size', String(size), '--batch', '2',
      '--threads', String(threads), '--runs', '5', '--warmup', String(TORCH_WARMUP)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return JSON.parse(out.trim().split('\n').pop()!) as TorchStep;
  } catch {
    return undefined;
  }
}

/** GFLOP/s of PyTorch's float32 2048² matrix product on `threads` threads: the machine's practical peak. */
function sgemmPeak(threads: number): number | undefined {
  const code = `import torch, time
torch.set_num_threads(${threads})
a = torch.randn(2048, 2048); b = torch.randn(2048, 2048)
for _ in range(2): a @ b
t = time.perf_counter(); n = 8
for _ in range(n): a @ b
print(2 * 2048 ** 3 * n / (time.perf_counter() - t) / 1e9)`;
  try {
    return Number(execFileSync(DEBIAN_PYTHON, ['-c', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim());
  } catch {
    return undefined;
  }
}

interface ChildResult extends StepBenchResult {
  maxRssKiB: number;
}

/**
 * One iteration's timing (and peak RSS) in a fresh process with `threads` wasm threads per replica, after
 * `--warmup` steps (default 30): onnxruntime's sessions, the JIT-compiled JS and V8's wasm tier-up settle over the
 * first ones (resnet-tiny at 128² ran ~150 ms a step at steps 3–8 and ~100 from 15 on before ir2f lowered the
 * tiering budget; a training run lives at the steady state), and so does the malloc heap: onnxruntime-node
 * returns each run's output as a copy that lives until V8 collects it, and until the heap has grown past the
 * holes those copies leave, steps fault in fresh pages (resnet-tiny at 128², three processes: 50–3,000 faults a
 * step up to steps 25–31, then about none, and steps of ~65 ms against ~70–80 before; the phases table's last
 * column shows what is left).
 */
function stepInChild(preset: string, size: number, threads: number, inr: boolean, workers = 1, dense = 'onnxruntime', steps = 6): ChildResult {
  const child = spawnSync(process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), '--step-child', preset, String(size), String(steps), inr ? 'inr' : '', String(workers), String(warmupOption())],
    { encoding: 'utf8', env: { ...process.env, IR2F_WASM_THREADS: String(threads), IR2F_DENSE_KERNELS: dense } });
  const line = child.stdout.trim().split('\n').pop() ?? '';
  if (child.status !== 0 || !line.startsWith('{')) throw new Error(`bench child failed: ${child.stderr.slice(-500)}`);
  return JSON.parse(line) as ChildResult;
}

const HALF = Math.max(1, Math.floor(THREADS / 2));
/** Iterations PyTorch runs before it times its own. */
const TORCH_WARMUP = 3;

/** `--name N`: a whole number of at least `min`, else `fallback`. */
function intOption(name: string, fallback: number, min: number): number {
  const at = process.argv.indexOf(name);
  const n = at < 0 ? fallback : Number(process.argv[at + 1]);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} needs a whole number ≥ ${min}, got '${process.argv[at + 1]}'`);
  return n;
}

/** `--rounds N` (default 3): how many times the default and PyTorch's steps are timed, in rounds over all cases. */
const roundsOption = () => intOption('--rounds', 3, 1);
/** `--warmup N` (default 30): warm-up steps before a tfjs child times its steps (see `stepInChild`). */
const warmupOption = () => intOption('--warmup', 30, 0);

interface DefaultResult extends ChildResult {
  /** The replicas of the plan the default keeps. */
  workers: 1 | 2;
}

/**
 * The default of `ir2f train`: on 2+ cores, two replicas on half the threads each or one on half the threads,
 * whichever is faster (a run times both over its first steps and keeps the faster: core's `ReplicaProbe`);
 * else one replica.
 */
function defaultStep(preset: string, size: number, inr: boolean): DefaultResult {
  if (THREADS === 1) return { ...stepInChild(preset, size, 1, inr), workers: 1 };
  const two = stepInChild(preset, size, HALF, inr, 2);
  const one = stepInChild(preset, size, HALF, inr, 1);
  return one.msPerStep < two.msPerStep ? { ...one, workers: 1 } : { ...two, workers: 2 };
}

/** The middle element of `xs` by `ms` (the upper of the two middle ones for an even count). */
const medianOf = <T>(xs: T[], ms: (x: T) => number): T => [...xs].sort((a, b) => ms(a) - ms(b))[Math.floor(xs.length / 2)];
const median = (xs: number[]) => medianOf(xs, (x) => x);

const REFERENCE = new URL('./train-reference.json', import.meta.url);
/** A case's default step may take this much longer than the reference before `--check` fails. */
const SLOWER_LIMIT = 1.25;

interface TrainReference {
  date: string;
  commit: string;
  cpu: string;
  threads: number;
  /** ms per iteration of the default (the faster plan) per case, `preset[+inr]@size`. */
  msPerStep: Record<string, number>;
}

const caseKey = ([preset, size, extra]: (typeof CASES)[number]) => `${preset}${extra ? `+${extra}` : ''}@${size}`;
const cpuModel = () => os.cpus()[0]?.model.trim() ?? 'unknown';

/** `--check`: the default step of each case against the committed reference of this machine. */
export async function checkAgainstReference(reference = REFERENCE): Promise<void> {
  const ref = JSON.parse(await fs.readFile(reference, 'utf8').catch(() => 'null')) as TrainReference | null;
  if (!ref) throw new Error(`no ${fileURLToPath(reference)}: run \`npm run bench -- train\` once to record the reference`);
  if (ref.cpu !== cpuModel() || ref.threads !== THREADS) {
    throw new Error(`the reference was measured on '${ref.cpu}' with ${ref.threads} threads, this is '${cpuModel()}' with ${THREADS}: ` +
      'run `npm run bench -- train` here to record one (timings only compare on the same machine)');
  }
  const rows: (string | number)[][] = [['case', 'reference ms', 'now ms', 'now ÷ reference', 'verdict']];
  let slower = 0;
  for (const c of CASES) {
    const was = ref.msPerStep[caseKey(c)];
    const now = defaultStep(c[0], c[1], c[2] === 'inr').msPerStep;
    const ratio = was ? now / was : NaN;
    if (ratio > SLOWER_LIMIT) slower++;
    rows.push([caseKey(c), was ? fmt(was, 0) : '—', fmt(now, 0), fmt(ratio, 2), !was ? 'no reference' : ratio > SLOWER_LIMIT ? 'SLOWER' : 'ok']);
  }
  console.log(`# the default training step against ${fileURLToPath(reference)} (${ref.commit}, ${ref.date}); limit ${SLOWER_LIMIT}×\n`);
  console.log(table(rows));
  if (slower) {
    console.log(`\n${slower} case(s) more than ${Math.round((SLOWER_LIMIT - 1) * 100)} % slower than the reference`);
    process.exitCode = 1;
  }
}

export async function benchTrain(): Promise<void> {
  if (process.argv.includes('--check')) return checkAgainstReference();
  const peak1 = sgemmPeak(1);
  const reference: TrainReference = {
    date: new Date().toISOString().slice(0, 10), commit: execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(),
    cpu: cpuModel(), threads: THREADS, msPerStep: {},
  };
  const peakN = sgemmPeak(THREADS);
  console.log(`# one DAFormer-style training iteration, batch 2+2: tfjs-wasm on 1 and ${THREADS} threads with onnxruntime's dense kernels ` +
    `(and once with XNNPACK's), PyTorch CPU (${debianBlas()}) on the same threads; tfjs steps timed after ${warmupOption()} warm-up steps, PyTorch's after ${TORCH_WARMUP}`);
  console.log(`# practical peak (PyTorch 2048² sgemm): ${fmt(peak1 ?? NaN, 0)} GFLOP/s on 1 thread, ${fmt(peakN ?? NaN, 0)} on ${THREADS}\n`);
  const rows: (string | number)[][] = [[
    'preset', 'crop', 'GFLOP/it', '1 thr, wasm kernels ms', 'wasm 1 thr ms', `wasm ${THREADS} thr ms`, 'default ms (replicas)', 'default GFLOP/s',
    'torch 1 thr ms', `torch ${THREADS} thr ms`, 'default ÷ torch 1 thr', `default ÷ torch ${THREADS} thr`, 'default ÷ torch best',
  ]];
  const phases: (string | number)[][] = [['preset', 'crop', 'teacher', 'student f+b', 'rectifier', 'optim+EMA', 'kernels/it', 'page faults/it']];
  const kernelTables: string[] = [];
  // the default and PyTorch's steps in rounds over all cases, each case's median kept: this VM's speed drifts
  // by tens of percent over minutes (PyTorch's too), and a drift then touches every case of a round alike
  const rounds = roundsOption();
  const dps: DefaultResult[][] = CASES.map(() => []);
  const torch: [TorchStep | undefined, TorchStep | undefined][][] = CASES.map(() => []);
  const inrRatios: InrRatio[] = [];
  for (let r = 0; r < rounds; r++) {
    CASES.forEach(([preset, size, extra], i) => {
      dps[i].push(defaultStep(preset, size, extra === 'inr'));
      if (!extra) torch[i].push([torchStep(preset, size, 1), torchStep(preset, size, THREADS)]);
    });
    inrRatios.push(inrRatio());
  }
  const torchMs = (i: number, k: 0 | 1) => {
    const ok = torch[i].map((t) => t[k]).filter((t): t is TorchStep => t !== undefined);
    return ok.length ? medianOf(ok, (t) => t.ms).ms : undefined;
  };
  for (const [i, [preset, size, extra]] of CASES.entries()) {
    const inr = extra === 'inr';
    const plainWasm = stepInChild(preset, size, 1, inr, 1, 'backend');
    const one = stepInChild(preset, size, 1, inr);
    const many = THREADS > 1 ? stepInChild(preset, size, THREADS, inr) : one;
    const dp = medianOf(dps[i], (d) => d.msPerStep);
    reference.msPerStep[caseKey([preset, size, extra])] = dp.msPerStep;
    const [t1, tN] = [torchMs(i, 0), torchMs(i, 1)];
    // throughput ratios (> 1: tfjs is faster), each the median over the rounds of that round's own ratio: a
    // round times the default and PyTorch back to back, so a drift of the VM's speed touches both sides alike
    const paired = (torchOf: (t: [TorchStep | undefined, TorchStep | undefined]) => number | undefined) => {
      const ratios = dps[i].flatMap((d, r) => {
        const t = torch[i][r] ? torchOf(torch[i][r]) : undefined;
        return t ? [t / d.msPerStep] : [];
      });
      return ratios.length ? fmt(median(ratios), 2) : 'n/a';
    };
    const name = extra ? `${preset} + INR` : preset;
    const bestOf = ([a, b]: [TorchStep | undefined, TorchStep | undefined]) => (a && b ? Math.min(a.ms, b.ms) : undefined);
    // the rounds' plans: a case near the crossover may keep either
    const plans = [...new Set(dps[i].map((d) => d.workers))].sort().join('/');
    rows.push([name, `${size}²`, fmt(dp.flops / 1e9, 2), fmt(plainWasm.msPerStep, 0), fmt(one.msPerStep, 0), fmt(many.msPerStep, 0), `${fmt(dp.msPerStep, 0)} (${plans})`,
      fmt(dp.flops / dp.msPerStep / 1e6, 1), t1 ? fmt(t1, 0) : 'n/a', tN ? fmt(tN, 0) : 'n/a',
      paired((t) => t[0]?.ms), paired((t) => t[1]?.ms), paired(bestOf)]);
    phases.push([name, `${size}²`, ...(['teacher', 'student', 'rectifier', 'optimizer'] as const).map((k) => fmt(dp.phases[k], 0)), dp.kernels.count, dp.faultsPerStep]);
    // timed on one thread and one replica, where the kernels' wall times add up to the step
    kernelTables.push(`${name} ${size}² (1 replica, 1 thread: ${one.kernels.count} kernels, ${fmt(one.kernels.top.reduce((a, k) => a + k.ms, 0), 0)} ms in the top ${one.kernels.top.length})\n` +
      table([['kernel', 'calls', 'ms', 'ms/call'], ...one.kernels.top.map((k) => [k.name, k.calls, fmt(k.ms, 1), fmt(k.ms / k.calls, 3)])]));
  }
  console.log(table(rows));
  console.log(`\nmedians of ${rounds} round(s) for the default and PyTorch columns, and of the rounds' own ratios for the ratio columns`);
  console.log(`the INR step ÷ the plain one (the default of each, 128², in turn in one process a plan): ${fmt(median(inrRatios.map((x) => x.ratio)), 2)} ` +
    `(rounds: ${inrRatios.map((x) => `${fmt(x.ratio, 2)} = ${fmt(x.ms.inr, 0)} (${x.workers.inr}) / ${fmt(x.ms.plain, 0)} (${x.workers.plain}) ms`).join(', ')}; target ≤ 1.4)`);
  await writeAtomic(fileURLToPath(REFERENCE), new TextEncoder().encode(`${JSON.stringify(reference, null, 2)}\n`));
  console.log(`\nthe default's ms per iteration: ${fileURLToPath(REFERENCE)} (\`npm run bench -- train --check\` compares with it)`);
  console.log(`\n# phases of the default iteration (its plan; ms; profiled steps sync after each phase; on 2 replicas teacher and rectifier summed over both, the student the rest of the passes' wall time)\n`);
  console.log(table(phases));
  console.log(`\n# the top kernels by time of one profiled iteration (tf.profile; dense kernels on onnxruntime)\n\n${kernelTables.join('\n\n')}`);
  // each replica's wasm heap grows to its own pass's peak: two replicas hold about twice one's
  const rss = (workers: number) => stepInChild('mit-tiny-daformer', 256, workers > 1 ? HALF : THREADS, false, workers, 'onnxruntime', 3).maxRssKiB / 1024;
  console.log(`\npeak RSS, mit-tiny-daformer 2+2 at 256² on wasm: ${fmt(rss(1), 0)} MiB with one replica (${THREADS} threads), ` +
    `${fmt(rss(2), 0)} MiB with two (${HALF} thread each; target ≤ 2048 with one)`);
}

interface InrRatio {
  /** The INR default's ms ÷ the plain default's: the median of paired rounds when both keep the same plan. */
  ratio: number;
  ms: { plain: number; inr: number };
  workers: { plain: number; inr: number };
}

/**
 * The INR step ÷ the plain one (mit-tiny-daformer 2+2 at 128²; the default of each, the faster of its plans),
 * timed in turn: per plan one process that runs a plain and an INR iteration alternately (`benchInterleaved`).
 * Timed in separate processes the ratio took the spread between processes too (session 18: rounds from 1.07 to
 * 2.19 at one code); in one process the four setups of both plans slowed the INR steps most (its 2-replica step
 * 1.6× the plain one where alone it was 1.2–1.4×), so each plan has its own.
 */
function inrRatio(steps = 10): InrRatio {
  const plans = (THREADS > 1 ? [2, 1] : [1]).map((workers) => {
    const child = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--pair-child', String(workers), String(steps), String(warmupOption())],
      { encoding: 'utf8', env: { ...process.env, IR2F_WASM_THREADS: String(HALF), IR2F_DENSE_KERNELS: 'onnxruntime' } });
    const line = child.stdout.trim().split('\n').pop() ?? '';
    if (child.status !== 0 || !line.startsWith('[')) throw new Error(`bench child failed: ${child.stderr.slice(-500)}`);
    const [plain, inr] = JSON.parse(line) as [number[], number[]];
    return { workers, plain, inr };
  });
  // the default of each: its plan with the lower median (a run times both and keeps the faster)
  const best = (k: 'plain' | 'inr') => [...plans].sort((a, b) => median(a[k]) - median(b[k]))[0];
  const [p, i] = [best('plain'), best('inr')];
  const ms = { plain: median(p.plain), inr: median(i.inr) };
  const ratio = p === i ? median(i.inr.map((t, r) => t / i.plain[r])) : ms.inr / ms.plain;
  return { ratio, ms, workers: { plain: p.workers, inr: i.workers } };
}

if (process.argv[2] === '--pair-child') {
  const [workers, steps, warmup] = process.argv.slice(3).map(Number);
  const setup = (plugins: { package: string; options: Record<string, unknown> }[]) => ({ preset: 'mit-tiny-daformer', size: 128, batch: 2, steps, backend: 'wasm', plugins, workers, threads: HALF });
  console.log(JSON.stringify(await benchInterleaved([setup([]), setup([{ package: '@ir2f/plugin-inr-rectifier', options: {} }])], steps, warmup)));
}

if (process.argv[2] === '--step-child') {
  const [preset, size, steps, inr, workers, warmup] = process.argv.slice(3);
  const plugins = inr === 'inr' ? [{ package: '@ir2f/plugin-inr-rectifier', options: {} }] : [];
  const r = await benchStep({
    preset, size: Number(size), batch: 2, steps: Number(steps), warmup: Number(warmup), backend: 'wasm', plugins, workers: Number(workers), threads: Number(process.env.IR2F_WASM_THREADS ?? 1),
  });
  console.log(JSON.stringify({ ...r, maxRssKiB: process.resourceUsage().maxRSS }));
}
