/**
 * The privileged delivery helper of local(8) and virtual(8): a long-lived child process, started
 * as root by each agent thread (helpers.ts), that writes messages into mailboxes as their
 * owners, switching its effective uid/gid per step — as Postfix's local(8) does with
 * set_eugid() inside its own long-lived process. A request is a batch, written together (batch.ts: their
 * fsyncs shared), and several requests run at once, as several local(8) processes would.
 *
 * Why a process: set*id() changes the credentials of a whole process (glibc applies them to
 * every thread), and the agents' worker threads share theirs with smtpd and qmgr. This process
 * runs nothing but deliveries, so it can switch freely. Per step it sets the supplementary
 * groups to the owner's group alone, takes root only for what Postfix does with root (the lock
 * and the mbox in a mail_spool_directory that is not world-writable, then a chown to the
 * owner) and does every other step — mkdir, open, write, link, unlink — with the owner's
 * effective uid/gid (mailbox.ts: locking, O_NOFOLLOW, link count and owner checks, size limit,
 * fsync before success). Every call that depends on the credentials (open, mkdir, link,
 * unlink) is synchronous and comes right after the switch it needs, so no credential switch
 * happens while another delivery's step is under way; only fsync, on descriptors already
 * open, runs in libuv's threads. Without the Perl companion requests run one at a time
 * (mailbox.ts's writer waits for flock(1) with the owner's credentials). flock and fcntl locks
 * on an mbox are held by its Perl companion (locker.ts), started as root with the helper's
 * first mbox.
 *
 * Credentials change only when a step needs others than the current ones, and stay between
 * steps and between requests (as Postfix's local keeps mail_owner's between deliveries, not
 * root's): every set*id() call signals each thread of the process (glibc applies it to all of
 * them), which cost more CPU per delivery than the writing itself, so a batch for one owner
 * switches once (from another owner: back to root, then groups, gid, uid), and the helper runs
 * with few threads (helpers.ts). Files created with root's rights (a lock or an mbox in
 * mail_spool_directory) are chowned to the recipient.
 *
 * Messages: protocol.ts, over the IPC channel. The helper exits when the channel closes (its
 * agent thread ended); if it dies mid-request, the agent defers the recipients of the request
 * (helpers.ts).
 * Commands and .forward programs do not come here: they run in children of their own.
 */
import { writeBatch, type BatchItem, type Creds } from './batch.js';
import { Locker } from './locker.js';
import { appendMbox, deliverMaildir, MailboxError, useLocker, type Privs } from './mailbox.js';
import type { HelperReady, HelperReply, HelperRequest, WriteResult, WriterJob } from './protocol.js';

const root = process.getuid?.() === 0;
const locker = Locker.available() ? new Locker() : null;
useLocker(locker);
/**
 * The credentials now: the gid in the supplementary groups and the effective gid, and the
 * effective uid. Only changed when a step needs others (each set*id() call is a signal to every
 * thread of the process).
 */
let gidNow = -1;
let uidNow = 0;

/** Effective uid root: what the spool steps need, and the way from one owner to another. */
function toRoot(): void {
  if (root && uidNow !== 0) { process.seteuid!(0); uidNow = 0; }
}

/** Groups and effective gid of the job (Postfix's set_eugid(): while the euid is still root). */
function useGid(gid: number): void {
  if (!root || gidNow === gid) return;
  toRoot();
  process.setgroups!([gid]);
  process.setegid!(gid);
  gidNow = gid;
}

/** The batch's switches: each only when the credentials differ from the current ones. */
const creds: Creds = {
  user(job: WriterJob) {
    if (!root) return;
    useGid(job.gid);
    if (uidNow !== job.uid) { toRoot(); process.seteuid!(job.uid); uidNow = job.uid; }
  },
  spool(job: WriterJob) {
    if (!root) return;
    useGid(job.gid);
    toRoot();
  },
  root: toRoot,
};

/** Runs one write as job.uid/job.gid (Postfix's set_eugid around each step), back to root after. */
async function write(item: BatchItem): Promise<WriteResult> {
  const { job, data } = item;
  const privs: Privs = {
    uid: job.anyOwner ? -1 : job.uid,
    gid: job.gid,
    async asUser(fn) {
      if (!root) return fn();
      process.seteuid!(job.uid);
      uidNow = job.uid;
      try { return await fn(); } finally { process.seteuid!(0); uidNow = 0; }
    },
    asSpool: (fn) => fn(),
  };
  creds.root();
  if (job.kind === 'mbox') locker?.ensure(); // as root
  useGid(job.gid);
  try {
    if (job.kind === 'mbox') await appendMbox(job.path, data, privs, job.locks, job.inSpool, job.sizeLimit);
    else await deliverMaildir(job.path, data, privs, job.sizeLimit);
    return { ok: true };
  } catch (e) {
    const err = e instanceof MailboxError ? e : new MailboxError(String((e as Error).message ?? e), '4.3.0');
    return { ok: false, dsn: err.dsn, reason: err.message };
  } finally {
    // Back to root whatever happened (asUser restores in its finally; this is the safety net).
    if (root && process.geteuid!() !== 0) process.seteuid!(0);
    uidNow = 0;
  }
}

async function run(req: HelperRequest): Promise<(WriteResult | null)[]> {
  const items: BatchItem[] = req.writes.map((w) => ({ job: w.job, data: Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength) }));
  if (!locker && items.length === 1) return [await write(items[0]!)];
  return writeBatch(items, creds, locker, write, (results) => send({ type: 'reply', id: req.id, results, partial: true }));
}

const send = (m: HelperReply | HelperReady): void => { process.send!(m); };
let chain: Promise<void> = Promise.resolve();

process.on('message', (m: HelperRequest) => {
  if (!m || m.type !== 'write') return;
  const answer = async () => send({ type: 'reply', id: m.id, results: await run(m) });
  // With the Perl companion every write goes through batch.ts, whose waits happen as root:
  // requests run side by side. Without it an mbox write waits for flock(1) with the owner's
  // credentials, so requests run one after the other.
  if (locker) void answer();
  else chain = chain.then(answer);
});
// The agent thread is gone: nothing more will come.
process.on('disconnect', () => process.exit(0));
send({ type: 'ready', pid: process.pid });
