/**
 * As an external user installs them: `npm pack` @ir2f/core and one plugin, install just those tarballs (and
 * @tensorflow/tfjs) into a fresh project offline from the npm cache, and train there with a user-written
 * network. Builds the packages first (dist is what the tarballs ship).
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

for (const [pkg, name] of [['plugin-inr-rectifier', '@ir2f/plugin-inr-rectifier'], ['plugin-rmm', '@ir2f/plugin-rmm']] as const) {
  test.serial(`${name} installed alone with @ir2f/core from tarballs trains a user-written network`, async (t) => {
    await run('npx', ['tsc', '-b', 'packages/core', `packages/${pkg}`], { cwd: root });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-pack-'));
    try {
      const tarballs = [await pack('core', dir), await pack(pkg, dir)];
      const files = (await run('tar', ['-tzf', tarballs[1]])).stdout.split('\n').filter(Boolean);
      t.true(files.every((f) => !/\/(src|test)\//.test(f)), `no sources or tests in the tarball: ${files.join(', ')}`);
      const app = path.join(dir, 'app');
      await run('mkdir', [app]);
      // @types/node pinned as in the workspace, so the npm cache has every file (offline)
      await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app', type: 'module', private: true, overrides: { '@types/node': '20.19.43' } }));
      await run('npm', ['install', '--offline', '--no-audit', '--no-fund', ...tarballs, '@tensorflow/tfjs@4.22.0'], { cwd: app });
      t.deepEqual((await readdir(path.join(app, 'node_modules', '@ir2f'))).sort(), ['core', pkg]);
      await copyFile(path.join(root, 'test', 'fixtures', 'user-app.mjs'), path.join(app, 'app.mjs'));
      const { stdout } = await run(process.execPath, ['app.mjs', name], { cwd: app });
      const out = JSON.parse(stdout.trim().split('\n').pop()!) as { backend: string; step: number; events: string[] };
      t.is(out.backend, 'wasm');
      t.is(out.step, 3);
      t.true(out.events.includes(pkg === 'plugin-rmm' ? 'rmm' : 'rectifier'), out.events.join(', '));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
