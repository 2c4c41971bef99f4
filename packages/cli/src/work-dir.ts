/**
 * What a work dir needs so that runs in it cannot tread on each other or leave debris: one owner at a time (a
 * lock file naming its process and host), temp files of dead writers removed, `--resume` falling back past a
 * broken newest checkpoint, and the event log cut back to the step a resumed run starts from.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Ir2fError, listCheckpoints, readCheckpoint } from '@ir2f/core';

export const LOCK_FILE = '.ir2f.lock';

interface LockInfo {
  pid: number;
  host: string;
  started: string;
}

/** Whether process `pid` is alive on this host (EPERM: alive, someone else's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Take the work dir's lock or fail naming its holder. A lock whose process is gone (same host) is taken over,
 * reported through `warn`. Returns the release function (it removes the lock only while it is still ours).
 */
export async function lockWorkDir(workDir: string, warn: (message: string) => void): Promise<() => Promise<void>> {
  const file = path.join(workDir, LOCK_FILE);
  const mine: LockInfo = { pid: process.pid, host: os.hostname(), started: new Date().toISOString() };
  const text = `${JSON.stringify(mine)}\n`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await fs.writeFile(file, text, { flag: 'wx' });
      return async () => {
        const now = await fs.readFile(file, 'utf8').catch(() => '');
        if (now === text) await fs.rm(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let held: Partial<LockInfo> = {};
    try {
      held = JSON.parse(await fs.readFile(file, 'utf8')) as LockInfo;
    } catch {
      // unreadable (a writer killed mid-write): nobody can be named as its holder, so it is stale
    }
    const holder = `pid ${held.pid ?? '?'} on ${held.host ?? '?'}${held.started ? ` since ${held.started}` : ''}`;
    if (held.host && held.host !== mine.host) {
      throw new Ir2fError('WORK_DIR_LOCKED',
        `work dir ${workDir} is in use by ir2f train (${holder}); this host cannot tell whether that run is alive: ` +
        `wait for it, or delete ${file} if it is not running`);
    }
    if (held.pid && alive(held.pid)) {
      throw new Ir2fError('WORK_DIR_LOCKED', `work dir ${workDir} is in use by ir2f train (${holder}): wait for it to finish, or choose another --work-dir`);
    }
    warn(`taking over the lock of a run that is gone (${holder}) in ${workDir}`);
    await fs.rm(file, { force: true });
  }
  throw new Ir2fError('WORK_DIR_LOCKED', `work dir ${workDir}: another run took the lock at the same moment; choose another --work-dir`);
}

/** `writeAtomic`'s temp files (`<file>.<pid>.<ms>.tmp`) whose writer is gone are removed; returns their names. */
export async function removeStaleTemps(workDir: string): Promise<string[]> {
  const names = await fs.readdir(workDir).catch(() => [] as string[]);
  const stale = names.filter((n) => {
    const m = /\.(\d+)\.\d+\.tmp$/.exec(n);
    return m != null && Number(m[1]) !== process.pid && !alive(Number(m[1]));
  });
  for (const n of stale) await fs.rm(path.join(workDir, n), { force: true });
  return stale;
}

/**
 * The newest checkpoint in `workDir` that reads back whole; each broken newer one is reported through `warn`
 * (named, with why). Undefined when there is none.
 */
export async function latestIntactCheckpoint(workDir: string, warn: (message: string) => void): Promise<string | undefined> {
  for (const { file } of (await listCheckpoints(workDir)).reverse()) {
    try {
      await readCheckpoint(file);
      return file;
    } catch (err) {
      warn(`${path.basename(file)} is broken (${(err as Error).message}); resuming from an older checkpoint`);
    }
  }
  return undefined;
}

/** Cut `events.jsonl` back to what happened up to `step`, so that the steps a resumed run repeats appear once. */
export async function truncateEvents(file: string, step: number): Promise<number> {
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (text == null) return 0;
  const lines = text.split('\n').filter(Boolean);
  const kept = lines.filter((l) => {
    try {
      const e = JSON.parse(l) as { step?: unknown };
      return typeof e.step !== 'number' || e.step <= step;
    } catch {
      return false; // a line cut short by a kill
    }
  });
  if (kept.length !== lines.length) {
    const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
    await fs.writeFile(tmp, kept.map((l) => `${l}\n`).join(''));
    await fs.rename(tmp, file);
  }
  return lines.length - kept.length;
}
