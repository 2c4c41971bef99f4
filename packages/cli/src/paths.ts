/** Checks of output paths given on the command line, before anything is written to them. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Ir2fError } from '@ir2f/core';

async function kind(p: string): Promise<'file' | 'folder' | undefined> {
  const st = await fs.stat(p).catch(() => undefined);
  return st ? (st.isDirectory() ? 'folder' : 'file') : undefined;
}

/** `p` is a folder or does not exist yet (then no ancestor of it may be a file). */
export async function assertFolderOrAbsent(p: string, flag: string): Promise<void> {
  if ((await kind(p)) === 'file') throw new Ir2fError('INVALID_ARGUMENT', `${flag} ${p} is a file: give a folder`);
  await assertNoFileAncestor(p, flag);
}

/** `p` is a file or does not exist yet. */
export async function assertFileOrAbsent(p: string, flag: string): Promise<void> {
  if ((await kind(p)) === 'folder') throw new Ir2fError('INVALID_ARGUMENT', `${flag} ${p} is a folder: give a file name`);
  await assertNoFileAncestor(path.dirname(p), flag);
}

async function assertNoFileAncestor(p: string, flag: string): Promise<void> {
  for (let dir = path.resolve(p); ; dir = path.dirname(dir)) {
    const k = await kind(dir);
    if (k === 'file') throw new Ir2fError('INVALID_ARGUMENT', `${flag} ${p}: ${dir} is a file, so nothing can be written under it`);
    if (k === 'folder' || path.dirname(dir) === dir) return;
  }
}

/** Create a folder for output, with an error that names it and what to do when the file system refuses. */
export async function makeFolder(p: string, what: string): Promise<void> {
  await assertFolderOrAbsent(p, what);
  try {
    await fs.mkdir(p, { recursive: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EROFS' ? 'the file system is read-only' : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
      : code === 'ENOSPC' ? 'the disk is full' : (err as Error).message;
    throw new Ir2fError('INVALID_ARGUMENT', `${what} ${p} cannot be created (${why}): choose another location`, { cause: err });
  }
}
