/**
 * As an external user installs them: `npm pack` @ir2f/runtime, @ir2f/core and one plugin, install just those tarballs (and
 * @tensorflow/tfjs) into a fresh project (tarballs from the npm cache, metadata from the registry where the cache lacks it), and train there with a user-written
 * network, on one replica and on two (data parallelism from the installed dist: its worker script loads the
 * user's replica module). Without the optional peer onnxruntime-node the backend keeps its own kernels and
 * says why, and asking for onnxruntime by name is an error naming the package. Builds the packages first
 * (dist is what the tarballs ship).
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));

async function pack(pkg: string, dest: string): Promise<string> {
  const { stdout } = await run('npm', ['pack', '--pack-destination', dest, '--silent'], { cwd: path.join(root, 'packages', pkg) });
  return path.join(dest, stdout.trim().split('\n').pop()!);
}

/** The files of a tarball that an installed package should not carry (sources, tests). */
async function sourcesIn(tarball: string): Promise<string[]> {
  return (await run('tar', ['-tzf', tarball])).stdout.split('\n').filter((f) => /\/(src|test)\//.test(f));
}

/** A fresh project in `dir`/app with just these tarballs and tfjs installed; returns its folder and its @ir2f packages. */
async function installInFreshApp(dir: string, tarballs: string[]): Promise<{ app: string; installed: string[] }> {
  const app = path.join(dir, 'app');
  await run('mkdir', [app]);
  // --prefer-offline: tarballs from the cache that `npm ci` filled, registry metadata fetched when the cache lacks it (`npm ci` never caches
  // it, so --offline failed with ERESOLVE on a fresh machine); @types/node pinned as in the workspace
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app', type: 'module', private: true, overrides: { '@types/node': '20.19.43' } }));
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...tarballs, '@tensorflow/tfjs@4.22.0'], { cwd: app });
  return { app, installed: (await readdir(path.join(app, 'node_modules', '@ir2f'))).sort() };
}

for (const [pkg, name] of [['plugin-inr-rectifier', '@ir2f/plugin-inr-rectifier'], ['plugin-rmm', '@ir2f/plugin-rmm']] as const) {
  test.serial(`${name} installed alone with @ir2f/core and @ir2f/runtime from tarballs trains a user-written network`, async (t) => {
    await run('npx', ['tsc', '-b', 'packages/runtime', 'packages/core', `packages/${pkg}`], { cwd: root });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-pack-'));
    try {
      const tarballs = [await pack(pkg, dir), await pack('core', dir), await pack('runtime', dir)];
      t.deepEqual(await sourcesIn(tarballs[0]), [], 'no sources or tests in the tarball');
      const { app, installed } = await installInFreshApp(dir, tarballs);
      t.deepEqual(installed, ['core', pkg, 'runtime'].sort());
      await copyFile(path.join(root, 'test', 'fixtures', 'user-app.mjs'), path.join(app, 'app.mjs'));
      await copyFile(path.join(root, 'test', 'fixtures', 'user-replica.mjs'), path.join(app, 'replica.mjs'));
      const { stdout } = await run(process.execPath, ['app.mjs', name], { cwd: app });
      type Run = { step: number; events: string[]; losses: Record<string, number>[] };
      const out = JSON.parse(stdout.trim().split('\n').pop()!) as { backend: string; dense: unknown; denseError?: string; one: Run; two: Run };
      t.is(out.backend, 'wasm');
      // without the optional peer onnxruntime-node: the backend's own kernels, and a clear error when asked for it
      t.deepEqual(out.dense, { provider: 'backend', reason: 'onnxruntime-node is not installed (npm install onnxruntime-node@1.30.0)' });
      t.regex(out.denseError ?? '', /denseKernels 'onnxruntime': onnxruntime-node is not installed \(npm install onnxruntime-node@1\.30\.0\); or set IR2F_DENSE_KERNELS=backend/);
      // one replica, and two (the installed core's worker script, the user's replica module)
      for (const r of [out.one, out.two]) {
        t.is(r.step, 3);
        t.true(r.events.includes(pkg === 'plugin-rmm' ? 'rmm' : 'rectifier'), r.events.join(', '));
      }
      out.one.losses.forEach((l, i) => {
        for (const [k, v] of Object.entries(l)) t.true(Math.abs(v - out.two.losses[i][k]) <= 1e-5 * Math.max(1, Math.abs(v)), `step ${i + 1} ${k}`);
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test.serial('@ir2f/runtime installed alone from its tarball trains a plain tfjs network (dilated and depthwise convolutions) on wasm, gradients as on cpu', async (t) => {
  await run('npx', ['tsc', '-b', 'packages/runtime'], { cwd: root });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-pack-'));
  try {
    const tarball = await pack('runtime', dir);
    t.deepEqual(await sourcesIn(tarball), [], 'no sources or tests in the tarball');
    const { app, installed } = await installInFreshApp(dir, [tarball]);
    t.deepEqual(installed, ['runtime']);
    await copyFile(path.join(root, 'test', 'fixtures', 'runtime-app.mjs'), path.join(app, 'app.mjs'));
    const { stdout } = await run(process.execPath, ['app.mjs'], { cwd: app });
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as { backend: string; losses: number[]; gradError: number; tensorsFlat: boolean };
    t.is(out.backend, 'wasm');
    t.log(`losses ${out.losses.map((l) => l.toFixed(3)).join(' → ')}, largest gradient error against cpu ${out.gradError.toExponential(2)}`);
    t.true(out.losses.at(-1)! < 0.8 * out.losses[0], 'the loss falls');
    t.true(out.gradError < 1e-4, `gradients match the cpu backend's (relative error ${out.gradError})`);
    t.true(out.tensorsFlat, 'no tensors leak across steps');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
