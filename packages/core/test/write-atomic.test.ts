/** writeAtomic: a refused write names the file and why, and leaves no temp file. */
import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describeFsError, writeAtomic } from '@ir2f/core';

test('writes through a temp file; a refused write names the file and the reason, nothing left behind', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ir2f-atomic-'));
  try {
    await writeAtomic(path.join(dir, 'sub', 'a.bin'), new Uint8Array([1, 2, 3]));
    t.deepEqual([...await readFile(path.join(dir, 'sub', 'a.bin'))], [1, 2, 3]);
    await writeFile(path.join(dir, 'plain'), 'x');
    const err = await t.throwsAsync(writeAtomic(path.join(dir, 'plain', 'b.bin'), new Uint8Array([1])));
    t.regex(err!.message, /^cannot write .*plain\/b\.bin: a part of the path is a file, not a folder$/);
    t.is((err as { code?: string }).code, 'WRITE_FAILED');
    const onto = await t.throwsAsync(writeAtomic(path.join(dir, 'sub'), new Uint8Array([1])));
    t.regex(onto!.message, /cannot write .*sub: it is a folder: give a file name/);
    t.deepEqual((await readdir(dir, { recursive: true })).filter((n) => String(n).endsWith('.tmp')), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('file-system errors in words: disk full, read-only, permissions', (t) => {
  const e = (code: string) => Object.assign(new Error(`${code}: raw`), { code });
  t.regex(describeFsError(e('ENOSPC')), /disk is full/);
  t.regex(describeFsError(e('EROFS')), /read-only/);
  t.regex(describeFsError(e('EACCES')), /permission denied/);
  t.is(describeFsError(e('EIO')), 'EIO: raw');
});
