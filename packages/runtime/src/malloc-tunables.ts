/**
 * glibc's malloc hands large freed blocks back to the kernel: above a threshold that adapts up to 32 MiB a block
 * is its own mmap, and a heap's free top is trimmed. A buffer allocated and freed on every call is then
 * page-faulted in afresh each time, and onnxruntime-node allocates an output-sized buffer on every run (its
 * arena option does not change it). Measured on this project's 2-core VM, where a fault costs ~12 µs: a
 * [131072, 2]·[2, 64] product took 99 ms a run with 8,200 minor faults, 22 ms with the tunables below; in a
 * tfjs step, Exp over [131072, 64] went from 91 ms to 6.4 (the wasm backend's own: 66). The tunables keep such
 * blocks in the heap and up to 1 GiB of free heap top, in one arena. The free top: the INR rectifier's 4× query
 * (chunks of [524288, 64] intermediates, 134 MB each) freed more than 256 MiB at the top of the heap at once, and
 * with a 256 MiB threshold took 231–676 ms a call with up to 41,000 faults, with 1 GiB 206–305 ms and none (peak
 * RSS of two replicas at 256² the same, 1655–1714 MiB against 1690). One arena: a worker thread (the second training
 * replica) otherwise allocates from its own arena, whose 64 MiB heaps cannot hold these blocks and shrink
 * eagerly (two replicas with the INR rectifier at 128²: 811 and 1016 ms a step, 544 and 522 in one arena;
 * without the rectifier 422 → 409 ms, 256² 1118 → 1033, peak RSS a little lower). glibc reads them at process
 * start only, so a launcher sets them (`relaunchWithMallocTunables`) or the user does. Elsewhere (musl, macOS,
 * Windows) they do not apply.
 */
import { spawn } from 'node:child_process';

/** The `GLIBC_TUNABLES` entries: no mmap below 1 GiB, trim a heap's free top above 1 GiB, one arena. */
export const MALLOC_TUNABLES = [
  'glibc.malloc.mmap_threshold=1073741824', 'glibc.malloc.trim_threshold=1073741824', 'glibc.malloc.arena_max=1',
].join(':');

/** Whether this process runs on glibc (the only malloc the tunables are for). */
export function onGlibc(): boolean {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return process.platform === 'linux' && typeof header?.glibcVersionRuntime === 'string';
}

/** Whether `env` sets both tunables (the user's own values count). */
export function mallocTunablesSet(env: NodeJS.ProcessEnv = process.env): boolean {
  const t = env.GLIBC_TUNABLES ?? '';
  return /glibc\.malloc\.mmap_threshold=/.test(t) && /glibc\.malloc\.trim_threshold=/.test(t);
}

/** `env` with the tunables added to any `GLIBC_TUNABLES` it has (its own malloc entries win). */
export function envWithMallocTunables(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (mallocTunablesSet(env)) return env;
  const own = (env.GLIBC_TUNABLES ?? '').split(':').filter(Boolean);
  const names = new Set(own.map((e) => e.split('=')[0]));
  const added = MALLOC_TUNABLES.split(':').filter((e) => !names.has(e.split('=')[0]));
  return { ...env, GLIBC_TUNABLES: [...own, ...added].join(':') };
}

/**
 * For a program's entry point: on glibc without the tunables (and unless IR2F_MALLOC_TUNABLES=0), run this
 * same command again with them, stdio shared, and resolve to its exit code for the caller to exit with;
 * undefined where nothing was relaunched (go on in this process). SIGINT and SIGTERM are passed to the child,
 * and a child killed by a signal kills this process with it; a child whose launcher dies without a word
 * (SIGKILL) terminates itself within a second. Supervised programs (services, a CLI a scheduler may kill)
 * should rather set the variable where they start: `ir2f`'s executable does it in its `#!` line.
 */
export async function relaunchWithMallocTunables(): Promise<number | undefined> {
  watchParent();
  if (process.env.IR2F_MALLOC_TUNABLES === '0' || mallocTunablesSet() || !onGlibc()) return undefined;
  const env = { ...envWithMallocTunables(), [PARENT]: String(process.pid) };
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
  for (const s of signals) process.on(s, forward);
  const done = await new Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'failed'>((resolve) => {
    child.once('error', () => resolve('failed'));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  for (const s of signals) process.off(s, forward);
  if (done === 'failed') return undefined; // could not relaunch: run here, only slower
  if (done.signal) process.kill(process.pid, done.signal);
  return done.code ?? 1;
}

/** Set in a relaunched child: its launcher's pid. */
const PARENT = 'IR2F_RELAUNCHED_BY';

/** In a relaunched child: terminate (SIGTERM, so the program may clean up) once the launcher is gone. */
function watchParent(): void {
  const parent = Number(process.env[PARENT]);
  if (!parent || process.ppid !== parent) return;
  delete process.env[PARENT];
  setInterval(() => {
    if (process.ppid !== parent) process.kill(process.pid, 'SIGTERM');
  }, 500).unref();
}

