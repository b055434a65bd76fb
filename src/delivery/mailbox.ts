/**
 * The mailbox writers of local(8) and virtual(8): an mbox file (appended under a lock) or a Maildir (a file
 * written in tmp/, fsynced, then moved to new/ under a unique name). Both fsync before they
 * report success; every failure is a MailboxError carrying the reason for the log and the DSN
 * (4.2.0 "cannot update mailbox …" as Postfix's mailbox.c says, so nothing is lost).
 *
 * Locking of an mbox (mailbox_delivery_lock, Postfix's default "fcntl, dotlock"):
 *   dotlock  FILE.lock created with O_CREAT|O_EXCL, deliver_lock_attempts tries
 *            deliver_lock_delay apart; a lock older than stale_lock_time is removed.
 *   flock    flock(2) on the open mailbox. Node.js has no flock() binding, so /usr/bin/flock
 *            (util-linux) is run on our open file descriptor (`flock -x -w N 3` with the fd as
 *            its fd 3): flock locks belong to the open file description, so the lock stays
 *            held by our descriptor after the helper exits and is released when we close it.
 *   fcntl    POSIX record locks belong to a process and cannot be taken from Node.js: in the
 *            delivery helper a Perl companion (locker.ts) takes them, and flock, on the
 *            helper's descriptor; "fcntl" also takes flock (a superset: readers of either
 *            kind are excluded). Without a locker (no /usr/bin/perl, or not in a helper)
 *            flock is taken through /usr/bin/flock and serves for fcntl too.
 *
 * The file operations are synchronous: these writers run in the delivery helper process
 * (helper.ts), one delivery at a time, where a call into libuv's thread pool would only add a
 * thread hop per step (and credential switches must not overlap a pool thread's work).
 *
 * Privileges: the `Privs` hooks run a step as the recipient (Postfix's set_eugid(uid, gid))
 * or with the spool directory's privileges. In-process (not root) they are no-ops; the
 * delivery helper (helper.ts, a child started as root) switches its effective uid/gid around
 * each step.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants as C, fchownSync, fstatSync, fsyncSync, ftruncateSync, linkSync, mkdirSync, openSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { threadId } from 'node:worker_threads';
import type { Params } from '../config/declared.js';
import type { Locker } from './locker.js';

export class MailboxError extends Error {
  constructor(message: string, readonly dsn = '4.2.0') { super(message); }
}

export interface Privs {
  /** Runs fn with the recipient's effective uid/gid. */
  asUser<T>(fn: () => Promise<T>): Promise<T>;
  /** Runs fn with the privileges that may create files in the spool directory. */
  asSpool<T>(fn: () => Promise<T>): Promise<T>;
  uid: number;
  gid: number;
}

export const NO_PRIVS: Privs = { asUser: (fn) => fn(), asSpool: (fn) => fn(), uid: -1, gid: -1 };

export interface LockSettings {
  dotlock: boolean;
  flock: boolean;
  /** A real fcntl lock too, where a locker is available (otherwise flock serves). */
  fcntl?: boolean;
  attempts: number;
  delayMs: number;
  staleMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const why = (e: unknown) => {
  const err = e as NodeJS.ErrnoException;
  return err.code && err.syscall ? `${err.syscall} ${err.path ?? ''}: ${errnoText(err)}`.replace(' :', ':') : String((e as Error).message ?? e);
};
function errnoText(err: NodeJS.ErrnoException): string {
  const m = /^[A-Z]+: (.*?),/.exec(err.message);
  return m ? m[1]!.replace(/^./, (c) => c.toUpperCase()) : err.message;
}

/** Creates FILE.lock exclusively, deliver_lock_attempts tries deliver_lock_delay apart; returns its path. */
export async function dotLock(path: string, s: LockSettings): Promise<string> {
  for (let i = 0; i < s.attempts; i++) {
    const lock = tryDotLock(path, s);
    if (lock) return lock;
    if (i + 1 < s.attempts) await sleep(s.delayMs);
  }
  throw new MailboxError(`unable to lock for exclusive access: ${path}.lock: file exists`);
}

let locker: Locker | null = null;

/** The delivery helper's lock companion: flock and fcntl locks are taken through it. */
export function useLocker(l: Locker | null): void {
  locker = l;
}

/** flock(LOCK_EX) on fd through /usr/bin/flock, waiting up to seconds. */
export function flockFd(fd: number, seconds: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/flock', ['-x', '-w', String(seconds), '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', (e) => reject(new MailboxError(`unable to lock for exclusive access: /usr/bin/flock: ${e.message}`)));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new MailboxError(`unable to lock for exclusive access: flock: ${err.trim() || `exit status ${code}`}`))));
  });
}

/**
 * Appends one message (already in mbox form: From line … blank line) to the mbox at path.
 * The file must be a regular file with one link, owned by the recipient when we know them
 * (Postfix's safe_open); a missing file is created 0600 and given to the recipient.
 */
export async function appendMbox(path: string, data: Buffer, privs: Privs, locks: LockSettings, inSpool: boolean, sizeLimit = 0): Promise<void> {
  // Outside the spool every step runs as the recipient: switch once for all of them.
  if (!inSpool) return privs.asUser(() => appendSteps(path, data, { ...privs, asUser: (fn) => fn(), asSpool: (fn) => fn() }, locks, inSpool, sizeLimit));
  return appendSteps(path, data, privs, locks, inSpool, sizeLimit);
}

async function appendSteps(path: string, data: Buffer, privs: Privs, locks: LockSettings, inSpool: boolean, sizeLimit: number): Promise<void> {
  const asCreator = inSpool ? privs.asSpool : privs.asUser;
  let lockFile: string | null = null;
  let fd: number | null = null;
  let kernelLocked = false;
  try {
    if (locks.dotlock) lockFile = await asCreator(() => dotLock(path, locks));
    const opened = await asCreator(async () => mboxOpen(path, privs.uid, privs.gid));
    fd = opened.fd;
    if (locks.flock || locks.fcntl) {
      if (locker) {
        const r = await locker.lock(fd, lockKinds(locks), locks.attempts, locks.delayMs);
        if (!r.ok) throw new MailboxError(`unable to lock for exclusive access: ${r.error}`);
        kernelLocked = true;
      } else await flockFd(fd, Math.max(1, Math.round((locks.attempts * locks.delayMs) / 1000)));
    }
    const handle = fd;
    await privs.asUser(async () => {
      mboxAppend(handle, opened.size, data, sizeLimit);
      try {
        fsyncSync(handle);
      } catch (e) {
        throw mboxUndo(handle, opened.size, e);
      }
    });
  } finally {
    if (kernelLocked) await locker?.unlock();
    if (fd !== null) try { closeSync(fd); } catch { /* already reported */ }
    if (lockFile) { const l = lockFile; await asCreator(async () => unlinkSync(l)).catch(() => {}); }
  }
}

/** The kernel locks the locker takes for these settings ("fcntl" takes flock too). */
export function lockKinds(locks: LockSettings): ('flock' | 'fcntl')[] {
  return [...(locks.fcntl ? ['fcntl' as const] : []), 'flock'];
}

/** One dot-lock attempt (a stale lock is removed first): the lock's path, or null while another holds it. */
export function tryDotLock(path: string, s: LockSettings): string | null {
  const lock = `${path}.lock`;
  try {
    closeSync(openSync(lock, C.O_WRONLY | C.O_CREAT | C.O_EXCL, 0o600));
    return lock;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code !== 'EEXIST') throw new MailboxError(`unable to create lock file ${lock}: ${errnoText(err)}`);
    try {
      const st = statSync(lock);
      if (Date.now() - st.mtimeMs > s.staleMs) unlinkSync(lock); // stale_lock_time: the next attempt takes it
    } catch { /* gone meanwhile */ }
    return null;
  }
}

/**
 * Opens the mbox for appending (Postfix's safe_open): never through a symlink, a regular file
 * with one link, owned by uid when uid >= 0; a missing file is created 0600 and given to
 * uid/gid. Synchronous, with the caller's credentials; returns the descriptor and the size.
 */
export function mboxOpen(path: string, uid: number, gid: number): { fd: number; size: number } {
  let fd: number;
  try {
    try {
      fd = openSync(path, C.O_WRONLY | C.O_APPEND | C.O_NOFOLLOW, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      fd = openSync(path, C.O_WRONLY | C.O_APPEND | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
      try { if (uid >= 0) fchownSync(fd, uid, gid); } catch (c) { closeSync(fd); throw c; }
    }
  } catch (e) {
    throw new MailboxError(`cannot open file: ${why(e)}`);
  }
  try {
    const st: Stats = fstatSync(fd);
    if (!st.isFile()) throw new MailboxError(`${path}: not a regular file`, '5.2.0');
    if (st.nlink !== 1) throw new MailboxError(`${path}: file has ${st.nlink} hard links`, '5.2.0');
    if (uid >= 0 && st.uid !== uid) throw new MailboxError(`${path}: file has bad owner uid ${st.uid}`, '5.2.0');
    return { fd, size: st.size };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/**
 * Appends data to the locked mbox that was `size` bytes long (not fsynced yet). mailbox_size_limit:
 * Postfix sets RLIMIT_FSIZE, and the write fails with EFBIG (5.2.2); a failed write is cut off.
 */
export function mboxAppend(fd: number, size: number, data: Buffer, sizeLimit: number): void {
  if (sizeLimit > 0 && size + data.length > sizeLimit) throw new MailboxError('error writing message: File too large', '5.2.2');
  try {
    writeAll(fd, data);
  } catch (e) {
    throw mboxUndo(fd, size, e);
  }
}

/** A failed write or fsync: the mbox is cut back to its old size (as Postfix's ftruncate); the error to report. */
export function mboxUndo(fd: number, size: number, e: unknown): MailboxError {
  try { ftruncateSync(fd, size); } catch { /* best effort, as Postfix's ftruncate */ }
  return new MailboxError(`error writing message: ${why(e)}`);
}

/** mkdir -p with mode 0700, failing with the path that could not be made (as Postfix's make_dirs). */
function makeDirs(path: string): void {
  try {
    mkdirSync(path, 0o700);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT' || dirname(path) === path) throw e;
    makeDirs(dirname(path));
    try { mkdirSync(path, 0o700); } catch (again) { if ((again as NodeJS.ErrnoException).code !== 'EEXIST') throw again; }
  }
}

/** write(2) until all of data is written (a short write is possible on a full disk). */
function writeAll(fd: number, data: Buffer): void {
  for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off);
}

let seq = 0;
/** The host part of Maildir names, once per process (as Postfix's get_hostname() caches it). */
let maildirHost: string | null = null;

/** A unique Maildir file name: time.P<pid>T<thread>Q<count>M<usec>.host (host with / and : escaped). */
export function maildirName(): string {
  const now = Date.now();
  const host = (maildirHost ??= hostname().replace(/\//g, '\\057').replace(/:/g, '\\072'));
  return `${Math.floor(now / 1000)}.P${process.pid}T${threadId}Q${++seq}M${(now % 1000) * 1000 + Math.floor(Math.random() * 1000)}.${host}`;
}

/** A Maildir file written in tmp/, not yet synced or linked into new/ (batch.ts runs these steps for many). */
export interface MaildirFile { dir: string; tmp: string; fin: string; fd: number | null }

/**
 * Writes data into a new tmp/NAME of the Maildir dir (ending in "/"), making tmp, new and cur
 * when tmp/ is missing (Postfix's make_dirs on the first delivery). Synchronous, with the
 * caller's credentials; a failure leaves nothing behind.
 */
export function maildirWrite(dir: string, data: Buffer, sizeLimit = 0): MaildirFile {
  if (sizeLimit > 0 && data.length > sizeLimit) throw new MailboxError('error writing message: File too large', '5.2.2');
  const name = maildirName();
  const f: MaildirFile = { dir, tmp: join(dir, 'tmp', name), fin: join(dir, 'new', name), fd: null };
  try {
    try {
      f.fd = openSync(f.tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    } catch (e) {
      // The first delivery to this Maildir: make tmp, new and cur (Postfix's make_dirs), then again.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      for (const sub of ['tmp', 'new', 'cur']) {
        try { makeDirs(join(dir, sub)); } catch (m) { throw new MailboxError(`create maildir file ${join(dir, sub)}: ${why(m)}`); }
      }
      f.fd = openSync(f.tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
    }
    writeAll(f.fd, data);
    return f;
  } catch (e) {
    throw maildirAbort(f, e);
  }
}

/** Closes the synced file and links tmp/NAME to new/NAME (remaking new/ and cur/ if gone), then drops tmp/NAME. */
export function maildirLink(f: MaildirFile): void {
  try {
    if (f.fd !== null) { const fd = f.fd; f.fd = null; closeSync(fd); }
    try {
      linkSync(f.tmp, f.fin);
    } catch (e) {
      // new/ (or cur/) gone while tmp/ stayed: make them and link again, as Postfix's maildir.c does.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      for (const sub of ['cur', 'new']) makeDirs(join(f.dir, sub));
      linkSync(f.tmp, f.fin);
    }
    unlinkSync(f.tmp);
  } catch (e) {
    throw maildirAbort(f, e);
  }
}

/** A failed Maildir step: closes and removes tmp/NAME; the error as the delivery reports it. */
export function maildirAbort(f: MaildirFile, e: unknown): MailboxError {
  if (f.fd !== null) try { closeSync(f.fd); } catch { /* reported below */ }
  f.fd = null;
  try { unlinkSync(f.tmp); } catch { /* never created, or linked and gone */ }
  return e instanceof MailboxError ? e : new MailboxError(`create maildir file ${f.tmp}: ${why(e)}`);
}

/** The error of a Maildir delivery whose file is already linked (the directory's fsync failed). */
export function maildirError(f: MaildirFile, e: unknown): MailboxError {
  return new MailboxError(`create maildir file ${f.tmp}: ${why(e)}`);
}

/** fsync(2) of a directory, so the links made in it are on disk. */
export function fsyncDir(dir: string): void {
  const d = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  try { fsyncSync(d); } finally { closeSync(d); }
}

/**
 * Delivers to the Maildir dir (ending in "/"): tmp/NAME, fsynced, linked to new/NAME, and new/
 * fsynced (Postfix's maildir.c stops at the file's fsync; batch.ts says why this does not).
 * sizeLimit (mailbox_size_limit, virtual_mailbox_limit): Postfix's file size limit applies to
 * each Maildir file, so a larger message fails as its write would (EFBIG, 5.2.2).
 */
export async function deliverMaildir(dir: string, data: Buffer, privs: Privs, sizeLimit = 0): Promise<string> {
  if (sizeLimit > 0 && data.length > sizeLimit) throw new MailboxError('error writing message: File too large', '5.2.2');
  return privs.asUser(async () => {
    const f = maildirWrite(dir, data, sizeLimit);
    try { fsyncSync(f.fd!); } catch (e) { throw maildirAbort(f, e); }
    maildirLink(f);
    try { fsyncDir(dirname(f.fin)); } catch (e) { throw maildirError(f, e); }
    return f.fin;
  });
}

/** What a mailbox lock reads besides its lock methods (an agent that locks declares these with its own). */
export const LOCK_PARAMS = {
  'deliver_lock_attempts': 'int',
  'deliver_lock_delay': 'time',
  'stale_lock_time': 'time',
} as const;

/**
 * A mailbox lock parameter's methods (mailbox_delivery_lock, virtual_mailbox_lock: "fcntl,
 * dotlock", read by the agent as a list) with deliver_lock_attempts, deliver_lock_delay and
 * stale_lock_time, as the agent read them. `error` names an unknown method.
 */
export function lockSettings(methods: readonly string[], p: Params<typeof LOCK_PARAMS>, param: string): { locks: LockSettings; error: string | null; fcntl: boolean } {
  const names = methods.map((s) => s.toLowerCase());
  const bad = names.find((n) => !['fcntl', 'flock', 'dotlock'].includes(n));
  return {
    locks: {
      dotlock: names.includes('dotlock'),
      flock: names.includes('flock') || names.includes('fcntl'),
      fcntl: names.includes('fcntl'),
      attempts: Math.max(1, p.deliver_lock_attempts),
      delayMs: p.deliver_lock_delay * 1000,
      staleMs: p.stale_lock_time * 1000,
    },
    error: bad ? `${param}: unknown lock method "${bad}"` : null,
    fcntl: names.includes('fcntl'),
  };
}
