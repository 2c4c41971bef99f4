/**
 * What every published package promises an installer: an exports map into dist/ with types, exact version
 * ranges, every module its sources import declared, and a tarball with the build and README only.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const PACKAGES = ['runtime', 'core', 'backbones', 'datasets', 'plugin-inr-rectifier', 'plugin-rmm', 'cli'];

interface Manifest {
  name: string;
  exports: Record<string, Record<string, string>>;
  files: string[];
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

const manifest = async (pkg: string) => JSON.parse(await readFile(path.join(root, 'packages', pkg, 'package.json'), 'utf8')) as Manifest;

async function sources(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.ts')).map((e) => path.join(e.parentPath, e.name));
}

/** Bare module names a source file imports (static, side-effect and literal dynamic imports). */
function importedPackages(text: string): string[] {
  const names = new Set<string>();
  for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s+|\bimport\(|\brequire\()\s*'([^'.][^']*)'/g)) {
    const spec = m[1];
    if (spec.startsWith('node:')) continue;
    names.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]);
  }
  return [...names];
}

test.before(async () => {
  await run('npx', ['tsc', '-b'], { cwd: root });
});

for (const pkg of PACKAGES) {
  test(`${pkg}: exports map into dist with types, exact ranges, imports declared, tarball = build + README`, async (t) => {
    const m = await manifest(pkg);
    const main = m.exports['.'];
    t.is(main.types, './dist/index.d.ts');
    t.is(main.default, './dist/index.js');
    const ranges = { ...m.dependencies, ...m.optionalDependencies, ...m.peerDependencies };
    for (const [dep, range] of Object.entries(ranges)) t.regex(range, /^\d+\.\d+\.\d+$/, `${m.name}: ${dep}@${range} is not an exact version`);

    const declared = new Set(Object.keys(ranges));
    for (const file of await sources(path.join(root, 'packages', pkg, 'src'))) {
      for (const dep of importedPackages(await readFile(file, 'utf8'))) {
        t.true(declared.has(dep), `${path.relative(root, file)} imports '${dep}', which ${m.name}'s package.json does not declare`);
      }
    }

    // the house: runtime at the bottom (no ir2f package below it), core on the runtime, everything else on core
    const ir2f = [...declared].filter((d) => d.startsWith('@ir2f/')).sort();
    if (pkg === 'runtime') t.deepEqual(ir2f, [], 'the runtime depends on no ir2f package');
    if (pkg === 'core') t.deepEqual(ir2f, ['@ir2f/runtime']);

    const { stdout } = await run('npm', ['pack', '--dry-run', '--json'], { cwd: path.join(root, 'packages', pkg) });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
    t.true(files.includes('dist/index.js') && files.includes('dist/index.d.ts') && files.includes('README.md'), files.join(', '));
    const stray = files.filter((f) => !(f.startsWith('dist/') || f === 'README.md' || f === 'package.json') || /\.tsbuildinfo$|\.test\./.test(f));
    t.deepEqual(stray, [], `${m.name}'s tarball holds files it does not need`);
  });
}
