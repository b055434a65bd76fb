/**
 * A delivery helper's batch (helper.ts): the mailbox writes an agent thread had waiting when the
 * helper became free, done together so that they share their disk flushes — a group commit, as
 * the queue's LMDB commits are shared. Each delivery keeps every durability step of its own
 * (mailbox.ts): its file is fsynced before it is linked into new/ or before its mbox is
 * unlocked, and the directory new/ is fsynced after the link, before success is reported; what
 * a batch changes is that these waits overlap:
 *
 *   1. every Maildir file is written in tmp/, every mbox is dot-locked, opened and checked
 *      (synchronous steps with the owner's or the spool's credentials, grouped by owner);
 *   2. the mboxes' kernel locks (flock, fcntl) are asked of the Perl companion in one go
 *      (locker.ts), then each mbox gets its message;
 *   3. all files are fsynced at once (in libuv's threads: ext4 commits concurrent fsyncs
 *      together, where one after the other each waits for a journal commit of its own);
 *   4. each Maildir file is linked into new/ (and its tmp/ name removed), the mboxes' locks are
 *      released together;
 *   5. each new/ directory of the batch is fsynced, once.
 *
 * As Postfix's local(8) and virtual(8) (maildir.c, mail_copy.c) the file is fsynced before it
 * is linked into new/ (or its mbox unlocked). Unlike Postfix, the directory new/ is fsynced
 * after the links, once per directory per batch (step 5): on a file system without a journal
 * (ext4 without one, as on this project's CI machine) a link not synced can be gone after a
 * crash while qmgr has already removed the message — a lost delivery, which this project
 * does not trade for speed.
 *
 * A failure touches only its own delivery. An mbox whose dot-lock or kernel lock another
 * process holds is released and tried again in a later round, deliver_lock_delay apart, up to
 * deliver_lock_attempts times (Postfix's local waits the same way); a second message for an
 * mbox already in the round goes in the next round, without that wait. Without the Perl companion every mbox
 * goes the one-at-a-time way (mailbox.ts appendMbox).
 *
 * Credentials never change while a file call runs in another thread, nor between the steps of
 * a synchronous section: fsync runs on descriptors opened earlier, every open, mkdir, link and
 * unlink is synchronous and preceded by the switch to the credentials it needs (Creds). A
 * section does not go back to root at its end: each switch signals every thread of the
 * helper (glibc's set*id broadcast), so the credentials stay as they are until a step needs
 * others — a batch for one owner switches once, not six times. So a helper may run several
 * batches at once (helper.ts), each step with its own owner's rights.
 */
import { closeSync, constants as C, fsync, openSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Locker } from './locker.js';
import { lockKinds, maildirAbort, maildirError, maildirLink, maildirWrite, MailboxError, mboxAppend, mboxOpen, mboxUndo, tryDotLock, type MaildirFile } from './mailbox.js';
import type { WriteResult, WriterJob } from './protocol.js';

export interface BatchItem { job: WriterJob; data: Buffer }

/**
 * The helper's credential switches (set_eugid in Postfix): all synchronous, each a no-op when
 * the credentials are already those asked for. Every step asks for its own before it runs.
 */
export interface Creds {
  /** Effective uid/gid (and groups) of the job's owner. */
  user(job: WriterJob): void;
  /** Root, with the job's gid as effective gid (what creates a lock and mbox in the spool). */
  spool(job: WriterJob): void;
  /** Root (what starts the Perl lock companion). */
  root(): void;
}

const failure = (e: unknown): WriteResult => {
  const err = e instanceof MailboxError ? e : new MailboxError(String((e as Error).message ?? e), '4.3.0');
  return { ok: false, dsn: err.dsn, reason: err.message };
};

const fsyncAsync = (fd: number) => new Promise<void>((resolve, reject) => fsync(fd, (e) => (e ? reject(e) : resolve())));

interface Mbox { i: number; fd: number; size: number; lockFile: string | null; failed: boolean }

/**
 * The mboxes a batch of this process is writing: another batch waits for the first to finish
 * with one, instead of finding its dot-lock taken and waiting deliver_lock_delay.
 */
const writing = new Map<string, { done: Promise<void>; release: () => void }>();

function claim(): { done: Promise<void>; release: () => void } {
  let release!: () => void;
  const done = new Promise<void>((r) => { release = r; });
  return { done, release };
}

/**
 * Writes the batch; results[i] answers items[i]. An mbox whose lock another process holds is
 * tried again deliver_lock_delay later, up to deliver_lock_attempts times; a second message
 * for an mbox already in the round goes in the next round, at once (or when the other batch of
 * this process that writes it is done with it): only a lock another process holds costs
 * deliver_lock_delay, and only to its own delivery. Before any wait, `early` gets the results
 * so far (null where one is still to come), so the others are not held up. `single` writes an
 * mbox when there is no Perl companion (mailbox.ts appendMbox; the helper then runs one request
 * at a time). Never rejects.
 */
export async function writeBatch(items: BatchItem[], creds: Creds, locker: Locker | null, single: (item: BatchItem) => Promise<WriteResult>, early?: (results: (WriteResult | null)[]) => void): Promise<WriteResult[]> {
  const results: (WriteResult | null)[] = items.map(() => null);
  const alone = locker ? [] : items.flatMap((it, i) => (it.job.kind === 'mbox' ? [i] : []));
  // Grouped by owner, so the credentials change once per owner, not per delivery.
  let pending = items.map((_, i) => i).filter((i) => !alone.includes(i)).sort((a, b) => items[a]!.job.gid - items[b]!.job.gid || items[a]!.job.uid - items[b]!.job.uid);
  const tries = new Map<number, number>();
  /** Items whose lock another process held: not tried again before this time. */
  const notBefore = new Map<number, number>();
  let told = 0;
  const tell = () => {
    const known = results.filter((r) => r !== null).length;
    if (known > told) early?.([...results]);
    told = known;
  };
  while (pending.length > 0) {
    const now = Date.now();
    const due = pending.filter((i) => (notBefore.get(i) ?? 0) <= now);
    if (due.length === 0) {
      tell();
      await sleep(Math.min(...pending.map((i) => notBefore.get(i)!)) - now);
      continue;
    }
    const busy = new Map<number, string>();
    const waits: Promise<void>[] = [];
    const claimed: string[] = [];
    let next: number[];
    try {
      next = await round(items, due, results, creds, locker, busy, waits, claimed);
    } finally {
      for (const path of claimed) { writing.get(path)?.release(); writing.delete(path); }
    }
    for (const [i, why] of busy) {
      const n = (tries.get(i) ?? 0) + 1;
      tries.set(i, n);
      const { locks } = items[i]!.job;
      if (n >= locks.attempts) results[i] = failure(new MailboxError(`unable to lock for exclusive access: ${why}`));
      else notBefore.set(i, Date.now() + locks.delayMs);
    }
    const later = new Set(next);
    pending = pending.filter((i) => results[i] === null && (later.has(i) || !due.includes(i)));
    if (pending.length > 0 && waits.length > 0) {
      tell();
      await Promise.all(waits);
    }
  }
  if (alone.length > 0) tell();
  for (const i of alone) results[i] = await single(items[i]!);
  return results.map((r) => r ?? { ok: false, dsn: '4.3.0', reason: 'unknown mail transport error' });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/**
 * One round over the pending items: writes what it can, answers in results, and returns the
 * items for another round (with `busy` saying why, for those whose lock another holds).
 */
async function round(items: BatchItem[], order: number[], results: (WriteResult | null)[], creds: Creds, locker: Locker | null, busy: Map<number, string>, waits: Promise<void>[], claimed: string[]): Promise<number[]> {
  const later: number[] = [];
  // 1. Maildir files into tmp/; mboxes dot-locked, opened and checked.
  const maildirs: { i: number; f: MaildirFile }[] = [];
  const mboxes: Mbox[] = [];
  const paths = new Set<string>();
  for (const i of order) {
    const { job, data } = items[i]!;
    if (job.kind !== 'maildir') continue;
    creds.user(job);
    try { maildirs.push({ i, f: maildirWrite(job.path, data, job.sizeLimit) }); } catch (e) { results[i] = failure(e); }
  }
  for (const i of order) {
    const { job } = items[i]!;
    if (job.kind !== 'mbox') continue;
    if (paths.has(job.path)) { later.push(i); continue; }
    // Another batch of this process writes it: the next round, when that one is done with it.
    const other = writing.get(job.path);
    if (other) { later.push(i); waits.push(other.done); continue; }
    paths.add(job.path);
    claimed.push(job.path);
    writing.set(job.path, claim());
    if (job.inSpool) creds.spool(job); else creds.user(job);
    let lockFile: string | null = null;
    try {
      if (job.locks.dotlock) {
        lockFile = tryDotLock(job.path, job.locks);
        if (lockFile === null) { later.push(i); busy.set(i, `${job.path}.lock: file exists`); continue; }
      }
      const o = mboxOpen(job.path, job.anyOwner ? -1 : job.uid, job.gid);
      mboxes.push({ i, fd: o.fd, size: o.size, lockFile, failed: false });
    } catch (e) {
      results[i] = failure(e);
      if (lockFile) try { unlinkSync(lockFile); } catch { /* as appendMbox */ }
    }
  }

  // 2. The mboxes' kernel locks, all asked at once (one attempt each); then the appends, as their owners.
  const held: number[] = [];
  if (mboxes.length > 0 && locker) {
    if (!locker.running) {
      creds.root();
      locker.ensure();
    }
    const asked = mboxes.map((m) => {
      const { locks } = items[m.i]!.job;
      return locks.flock || locks.fcntl ? locker.lock(m.fd, lockKinds(locks), 1, 0) : Promise.resolve({ ok: true as const, id: 0 });
    });
    const got = await Promise.all(asked);
    got.forEach((r, k) => {
      const m = mboxes[k]!;
      if (r.ok) { if (r.id) held.push(r.id); return; }
      m.failed = true;
      if (r.busy) { later.push(m.i); busy.set(m.i, r.error); } else results[m.i] = failure(new MailboxError(`unable to lock for exclusive access: ${r.error}`));
    });
    for (const m of mboxes) {
      if (m.failed) continue;
      const { job, data } = items[m.i]!;
      creds.user(job);
      try { mboxAppend(m.fd, m.size, data, job.sizeLimit); } catch (e) { m.failed = true; results[m.i] = failure(e); }
    }
  }

  // 3. Every file to disk at once.
  await Promise.all([
    ...maildirs.map((d) => fsyncAsync(d.f.fd!).catch((e: unknown) => {
      creds.user(items[d.i]!.job); // tmp/NAME is removed as its owner
      results[d.i] = failure(maildirAbort(d.f, e));
    })),
    ...mboxes.filter((m) => !m.failed).map((m) => fsyncAsync(m.fd).catch((e: unknown) => { m.failed = true; results[m.i] = failure(mboxUndo(m.fd, m.size, e)); })),
  ]);

  // 4. Links into new/; the mboxes unlocked, closed, their dot-locks removed.
  const dirs = new Map<string, { job: WriterJob; waiting: { i: number; f: MaildirFile }[] }>();
  for (const d of maildirs) {
    if (results[d.i]) continue;
    const { job } = items[d.i]!;
    creds.user(job);
    try {
      maildirLink(d.f);
      const dir = dirname(d.f.fin);
      const w = dirs.get(dir) ?? { job, waiting: [] };
      w.waiting.push(d);
      dirs.set(dir, w);
    } catch (e) { results[d.i] = failure(e); }
  }
  if (held.length > 0) await locker!.unlock(held);
  for (const m of mboxes) {
    try { closeSync(m.fd); } catch { /* already reported */ }
    if (!m.failed) results[m.i] = { ok: true };
    if (m.lockFile) {
      const { job } = items[m.i]!;
      if (job.inSpool) creds.spool(job); else creds.user(job);
      try { unlinkSync(m.lockFile); } catch { /* as appendMbox */ }
    }
  }

  // 5. Each new/ directory fsynced once for all its links (opened as its owner, in parallel),
  // and only then is a Maildir delivery reported done: the link itself must be on disk before
  // qmgr removes the message (on a file system without a journal nothing else puts it there).
  // Postfix's maildir.c stops at the file's fsync; this costs one fsync per directory per batch.
  const dirFds: { fd: number; waiting: { i: number; f: MaildirFile }[] }[] = [];
  for (const [dir, w] of dirs) {
    creds.user(w.job);
    try { dirFds.push({ fd: openSync(dir, C.O_RDONLY | C.O_DIRECTORY), waiting: w.waiting }); } catch (e) { for (const d of w.waiting) results[d.i] = failure(maildirError(d.f, e)); }
  }
  await Promise.all(dirFds.map(async (d) => {
    try {
      await fsyncAsync(d.fd);
      for (const w of d.waiting) results[w.i] ??= { ok: true };
    } catch (e) {
      for (const w of d.waiting) results[w.i] = failure(maildirError(w.f, e));
    } finally {
      try { closeSync(d.fd); } catch { /* nothing to add */ }
    }
  }));

  return later;
}
