/**
 * One writing process per queue store (docs/architecture.md, "One writing process at a time").
 * Two processes that keep the store open and write it in turns lose acknowledged writes (a
 * stress run: 7 of 86,861 of a long-lived writer's). The likely reason, read in lmdb-js 3.5's
 * mdb.c: each process caches free pages between transactions, and a commit can reuse a page the
 * other process's last commit filled. Threads of one process share the cache and are safe.
 *
 * `queue_directory/queue.lmdb-writer` names the process that writes the store: its PID and
 * start time (from /proc, so a PID reused by another program is not mistaken for it). A process
 * that opens the store for writing claims it: created with O_EXCL, or taken over when the
 * process it names is gone (a crash or SIGKILL leaves the file behind; nothing else has to
 * clean it up). Every thread of the server claims it as the same process. A command's main
 * thread gives it up when it closes its last store; the server keeps it until it exits.
 * Readers (mailq, postcat, qshape) claim nothing.
 *
 * Node has no flock(2), hence a PID file, as Postfix's master.pid before its lock. A dead
 * holder's file is removed by one process at a time (takeOver); a process killed in that step
 * (microseconds) leaves its guard behind, cleared after TAKEOVER_STALE_MS, and only then can two
 * processes clearing it at once both take over.
 */
import { linkSync, mkdirSync, readFileSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isMainThread, threadId } from 'node:worker_threads';
import { sleepSync } from '../runtime/sleep-sync.js';

export const WRITER_FILE = 'queue.lmdb-writer';

/** How long a claim waits for a live holder to finish (a server still exiting, a postsuper run). */
const WAIT_MS = 3000;
const POLL_MS = 50;

/** Another live process writes the store. */
export class StoreBusyError extends Error {
  override name = 'StoreBusyError';
  constructor(directory: string, readonly pid: number) {
    super(`queue store ${join(directory, 'queue.lmdb')} is being written by process ${pid}: only one process may write it at a time (stop it, or let it finish, and try again)`);
  }
}

/** A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), '' where unknown. */
function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

const SELF = `${process.pid} ${startTime(process.pid)}`;

/** The file's text, trimmed; null when there is no file. */
function readClaim(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * Who a claim names: 'self' (this process: another of its threads claimed it), 'gone' (a
 * process that ended, a PID now another program's, or text that is no claim), or the PID of the
 * live process that writes the store.
 */
function holderOf(claim: string): 'self' | 'gone' | number {
  if (claim === SELF) return 'self';
  const [pidText = '', start = ''] = claim.split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return 'gone';
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return 'gone';
  }
  const now = startTime(pid);
  return now !== '' && start !== '' && now !== start ? 'gone' : pid;
}

/** A take-over older than this was left by a process that died in it (it takes microseconds). */
const TAKEOVER_STALE_MS = 2000;

/**
 * Removes a dead holder's file, one process at a time: under `queue.lmdb-writer.takeover` (a
 * directory, made by one process only), the file is read again and removed only if it still
 * names the holder found dead. Nothing else can change it meanwhile: a claim is only linked where
 * there is no file, and only its live holder gives it up. Returns false when another process is
 * taking over (the caller looks again).
 */
function takeOver(file: string, dead: string): boolean {
  const guard = `${file}.takeover`;
  try {
    mkdirSync(guard, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    try {
      if (Date.now() - statSync(guard).mtimeMs > TAKEOVER_STALE_MS) rmdirSync(guard);
    } catch { /* another process finished or cleared it */ }
    return false;
  }
  try {
    if (readClaim(file) === dead) unlinkSync(file);
  } finally {
    rmdirSync(guard);
  }
  return true;
}

/** Main-thread claims per directory (a command may open the same store more than once). */
const claims = new Map<string, number>();

/** Claims the store in `directory` for this process's writes; throws StoreBusyError. */
export function claimWriter(directory: string): void {
  const file = join(directory, WRITER_FILE);
  const deadline = Date.now() + WAIT_MS;
  // Written under a name of its own, then linked into place: the file is never seen empty.
  const mine = `${file}.${process.pid}.${threadId}`;
  writeFileSync(mine, `${SELF}\n`, { mode: 0o600 });
  try {
    for (;;) {
      try {
        linkSync(mine, file);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const claim = readClaim(file);
      if (claim === null) continue; // given up meanwhile: link again
      const holder = holderOf(claim);
      if (holder === 'self') break;
      if (holder === 'gone') {
        if (!takeOver(file, claim)) sleepSync(1);
        continue;
      }
      if (Date.now() >= deadline) throw new StoreBusyError(directory, holder);
      sleepSync(POLL_MS);
    }
  } finally {
    unlinkSync(mine);
  }
  if (isMainThread) claims.set(directory, (claims.get(directory) ?? 0) + 1);
}

/**
 * Gives a claim up. Only a main thread's last claim removes the file (a command closing its
 * store); the server's threads keep it until the process exits.
 */
export function releaseWriter(directory: string): void {
  if (!isMainThread) return;
  const n = (claims.get(directory) ?? 0) - 1;
  if (n > 0) {
    claims.set(directory, n);
    return;
  }
  claims.delete(directory);
  const file = join(directory, WRITER_FILE);
  try {
    if (readFileSync(file, 'utf8').trim() === SELF) unlinkSync(file);
  } catch { /* gone already */ }
}
