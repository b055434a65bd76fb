/**
 * The master's lock, and the proof that a process is Postactor's master for a queue.
 *
 * Postfix's master holds an exclusive kernel lock on pid/master.pid for its whole life, and
 * `postfix status|stop|abort|reload` first test that lock (master -t): a pid file nobody
 * locks means "not running". Node has no flock(2)/fcntl(2) locks, so Postactor's master binds
 * a Linux abstract-namespace Unix socket whose name is derived from the real path of
 * queue_directory. Only one process can bind a name, and the kernel drops it when that process
 * dies, so nothing stale survives a crash and nothing on disk can fake it.
 *
 * A process is proven to be the master of this queue when
 *   1. the lock is held: its name is listed in /proc/net/unix (with the socket's inode);
 *   2. the process holds that socket: /proc/PID/fd has a link to socket:[inode];
 *   3. its command line runs postactor.js start-fg.
 * The pid file (pid/master.pid, as in Postfix) only names the first candidate; if that one is
 * not the holder, the processes that run postactor.js are searched. A pid file alone proves
 * nothing: it may be stale, or another MTA's (Postfix's own pid/master.pid names Postfix's
 * master, and `postactor stop` must never signal it).
 *
 * Diagnostics: acquireMasterLock() rejects with MasterLockHeld when another process holds the
 * lock. Linux only; elsewhere the lock is not taken and a running master is recognised by its
 * control socket's answer (see runningMaster in index.ts).
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { basename, join } from 'node:path';

export const LOCK_SUPPORTED = process.platform === 'linux';

/** The master's pid file, as Postfix's queue_directory/pid/master.pid. */
export function pidFilePath(queueDir: string): string {
  return join(queueDir, 'pid', 'master.pid');
}

/** The abstract socket name for a queue directory (without the leading NUL). */
export function lockName(queueDir: string): string {
  const real = realpathSync(queueDir);
  return `postactor-master:${createHash('sha256').update(real).digest('hex').slice(0, 40)}`;
}

export class MasterLockHeld extends Error {}

export interface MasterLock {
  release(): Promise<void>;
}

/** Takes this queue's lock; rejects with MasterLockHeld when another process holds it. */
export function acquireMasterLock(queueDir: string): Promise<MasterLock> {
  if (!LOCK_SUPPORTED) return Promise.resolve({ release: async () => undefined });
  const server: Server = createServer((socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE' ? new MasterLockHeld(`${queueDir}: locked by another process`) : err);
    });
    server.listen(`\0${lockName(queueDir)}`, () => {
      server.unref();
      resolve({ release: () => new Promise<void>((r) => server.close(() => r())) });
    });
  });
}

/** Inodes of the sockets bound to name (the listener and any connection it accepted). */
function lockInodes(name: string): Set<string> {
  const inodes = new Set<string>();
  // Num RefCount Protocol Flags Type St Inode Path; an abstract name shows as "@name".
  for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[7] === `@${name}`) inodes.add(f[6]!);
  }
  return inodes;
}

/** The process's argv, or null when it is gone. */
function commandLine(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter((a) => a !== '');
  } catch {
    return null;
  }
}

/** node …/postactor.js [-c DIR] start-fg (the master started by `postactor start` or by hand). */
export function isMasterCommandLine(argv: readonly string[]): boolean {
  return argv.slice(1).some((a) => basename(a) === 'postactor.js') && argv.includes('start-fg');
}

/** Whether pid holds one of the sockets; null when its descriptors cannot be read (another user). */
function holdsSocket(pid: number, inodes: Set<string>): boolean | null {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EACCES' || code === 'EPERM' ? null : false;
  }
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && inodes.has(m[1]!)) return true;
  }
  return false;
}

/** The pid the pid file names, or null (missing, empty, not a number). */
export function pidFromFile(queueDir: string): number | null {
  try {
    const text = readFileSync(pidFilePath(queueDir), 'utf8').trim();
    const pid = /^\d+$/.test(text) ? Number(text) : 0;
    return pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * The pid of the process proven to be Postactor's master for this queue directory, or null
 * ("not running"). Linux only (see the header); callers fall back elsewhere.
 */
export function provenMaster(queueDir: string): number | null {
  let inodes: Set<string>;
  try {
    inodes = lockInodes(lockName(queueDir));
  } catch {
    return null; // no queue directory: nothing runs on it
  }
  if (inodes.size === 0) return null;
  const fromFile = pidFromFile(queueDir);
  if (fromFile !== null) {
    const argv = commandLine(fromFile);
    if (argv && isMasterCommandLine(argv)) {
      const holds = holdsSocket(fromFile, inodes);
      // Another user's master: its descriptors are closed to us, but the lock is held and the
      // pid file names a Postactor master; it cannot be signalled by us anyway.
      if (holds === true || holds === null) return fromFile;
    }
  }
  // The pid file is stale or foreign: find the holder among the processes running postactor.js.
  let pids: number[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number);
  } catch {
    return null;
  }
  for (const pid of pids) {
    if (pid === fromFile || pid === process.pid) continue;
    const argv = commandLine(pid);
    if (argv && isMasterCommandLine(argv) && holdsSocket(pid, inodes) === true) return pid;
  }
  return null;
}
