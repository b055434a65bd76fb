/**
 * One address, one mail system. smtpd threads listen with SO_REUSEPORT so that the threads of
 * one instance share a port; the kernel would just as gladly let a second Postactor instance
 * (another queue_directory, another configuration) join the same port, and the two would
 * silently split each other's mail. So every master records the addresses it serves in a
 * registry shared by all instances of this user, and refuses an address that a live instance
 * with another queue directory already serves:
 *
 *   postactor: fatal: 127.0.0.1:2525 is already served by another Postactor instance
 *   (queue_directory /var/spool/other, pid 1234)
 *
 * The registry is a directory (/run/postactor for root, /tmp/postactor-UID otherwise) with one
 * file per address, created with O_EXCL so that two masters starting at once cannot both take
 * it. A wildcard address (0.0.0.0, [::]) overlaps every address of its family on that port.
 * An entry is stale, and removed, when its pid is no longer that queue's proven master (its
 * lock: lock.ts). The same queue directory twice is the master lock's business (a second master
 * of one queue refuses to start before it gets here).
 */
import { closeSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatListenAddress, type ListenAddress } from '../../src/net/listen.js';
import { LOCK_SUPPORTED, provenMaster } from './lock.js';

interface Entry {
  pid: number;
  queueDirectory: string;
  host: string;
  port: number;
}

/** The registry directory, made owner-only; null (no registry) when it cannot be trusted. */
export function registryDirectory(warn: (text: string) => void): string | null {
  const uid = process.getuid?.() ?? -1;
  const candidates = uid === 0 ? ['/run/postactor', join(tmpdir(), 'postactor-0')] : [join('/tmp', `postactor-${uid}`), join(tmpdir(), `postactor-${uid}`)];
  for (const dir of candidates) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const st = lstatSync(dir);
      // Someone else's directory (or a symlink planted in /tmp) is not ours to trust.
      if (!st.isDirectory() || (uid >= 0 && st.uid !== uid) || (st.mode & 0o022) !== 0) continue;
      return dir;
    } catch {
      /* try the next one */
    }
  }
  warn(`cannot make a private instance registry directory (${candidates.join(', ')}): another Postactor instance could share this instance's ports`);
  return null;
}

function fileName(a: { host: string; port: number }): string {
  return `tcp-${formatListenAddress(a)}`;
}

function readEntry(file: string): Entry | null {
  try {
    const e = JSON.parse(readFileSync(file, 'utf8')) as Entry;
    return typeof e.pid === 'number' && typeof e.queueDirectory === 'string' ? e : null;
  } catch {
    return null;
  }
}

/**
 * Whether the entry's master still runs: proven by its queue's master lock (lock.ts) where
 * that exists, else its pid lives and its queue's master.pid names it.
 */
function alive(e: Entry): boolean {
  if (LOCK_SUPPORTED) return provenMaster(e.queueDirectory) === e.pid;
  try {
    process.kill(e.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return Number(readFileSync(join(e.queueDirectory, 'pid', 'master.pid'), 'utf8').trim()) === e.pid;
  } catch (err) {
    // A queue directory we may not read: the live pid is all we can go by.
    return (err as NodeJS.ErrnoException).code === 'EACCES';
  }
}

const WILDCARD: Record<string, number> = { '0.0.0.0': 4, '::': 6 };

function overlaps(a: { host: string; port: number }, b: { host: string; port: number }): boolean {
  if (a.port !== b.port) return false;
  if (a.host === b.host) return true;
  const family = (h: string) => (h.includes(':') ? 6 : 4);
  return WILDCARD[a.host] === family(b.host) || WILDCARD[b.host] === family(a.host);
}

export class InstanceRegistry {
  private readonly held = new Set<string>();

  constructor(private readonly dir: string | null, private readonly queueDirectory: string, private readonly pid = process.pid) {}

  /** Another live instance's entry that overlaps a, or null (stale entries are removed on the way). */
  private conflict(a: ListenAddress): Entry | null {
    for (const name of readdirSync(this.dir!)) {
      if (!name.startsWith('tcp-')) continue;
      const file = join(this.dir!, name);
      const e = readEntry(file);
      if (e === null) continue;
      if (e.pid === this.pid || e.queueDirectory === this.queueDirectory) continue;
      if (!overlaps(a, e)) continue;
      if (!alive(e)) {
        rmSync(file, { force: true });
        continue;
      }
      return e;
    }
    return null;
  }

  /**
   * Records the addresses as this instance's; throws naming the first one another instance
   * serves. Addresses already held (a reload) are kept.
   */
  claim(addresses: ListenAddress[]): void {
    if (this.dir === null) return;
    for (const a of addresses) {
      const name = fileName(a);
      if (this.held.has(name)) continue;
      const other = this.conflict(a);
      if (other) throw new Error(`${formatListenAddress(a)} is already served by another Postactor instance (queue_directory ${other.queueDirectory}, pid ${other.pid})`);
      const file = join(this.dir, name);
      const entry = JSON.stringify({ pid: this.pid, queueDirectory: this.queueDirectory, host: a.host, port: a.port } satisfies Entry) + '\n';
      for (let attempt = 0; ; attempt++) {
        try {
          const fd = openSync(file, 'wx', 0o600);
          try { writeSync(fd, entry); } finally { closeSync(fd); }
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
          // Taken meanwhile, or left behind: ours (same queue), stale, or a live other instance.
          const e = readEntry(file);
          if (e && e.pid !== this.pid && e.queueDirectory !== this.queueDirectory && alive(e)) {
            throw new Error(`${formatListenAddress(a)} is already served by another Postactor instance (queue_directory ${e.queueDirectory}, pid ${e.pid})`);
          }
          rmSync(file, { force: true });
        }
      }
      this.held.add(name);
    }
  }

  /** Gives up every held address not in keep (all of them when keep is empty). */
  release(keep: ListenAddress[] = []): void {
    if (this.dir === null) return;
    const kept = new Set(keep.map(fileName));
    for (const name of [...this.held]) {
      if (kept.has(name)) continue;
      const file = join(this.dir, name);
      if (readEntry(file)?.pid === this.pid) rmSync(file, { force: true });
      this.held.delete(name);
    }
  }
}
