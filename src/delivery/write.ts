/**
 * Writes one message into one mailbox (an mbox appended under its locks, or a Maildir) as the
 * mailbox's owner: the entry point shared by local(8) and virtual(8).
 *
 * As root, the write goes to this thread's delivery helpers (helpers.ts → helper.ts: long-lived
 * child processes that switch their effective uid/gid per delivery). Not root, we cannot switch
 * users: a mailbox of our own uid is written in-process, any other is refused with 4.2.0
 * (deferred, nothing lost) and that reason.
 */
import { appendMbox, deliverMaildir, MailboxError, type Privs } from './mailbox.js';
import { DeliveryHelpers } from './helpers.js';
import type { WriteResult, WriterJob } from './protocol.js';

export type { WriteResult, WriterJob } from './protocol.js';

/**
 * Helper processes per agent thread: how many mailbox writes one thread has in flight at once.
 * Each write waits for two fsyncs, so a few in parallel keep the disk's queue full (Postfix
 * runs up to default_process_limit local(8) processes for the same reason).
 */
export const HELPERS_PER_THREAD = 4;

let helpers: DeliveryHelpers | null = null;

/** This thread's helpers; `warn` logs a helper's death (the first caller's logger). */
export function deliveryHelpers(warn: (text: string) => void): DeliveryHelpers {
  return (helpers ??= new DeliveryHelpers(HELPERS_PER_THREAD, warn));
}

/** Writes `data` as job.uid/job.gid: through a helper as root, in-process for our own uid. */
export async function writeMailbox(job: WriterJob, data: Buffer, owner: string, warn: (text: string) => void): Promise<WriteResult> {
  if (process.getuid?.() === 0) return deliveryHelpers(warn).write(job, data);
  const me = process.getuid?.() ?? -1;
  if (job.uid !== me) return { ok: false, dsn: '4.2.0', reason: `cannot deliver as user ${owner} (uid ${job.uid}): Postactor is not running as root (uid ${me})` };
  const privs: Privs = { asUser: (fn) => fn(), asSpool: (fn) => fn(), uid: job.anyOwner ? -1 : me, gid: process.getgid?.() ?? -1 };
  try {
    if (job.kind === 'maildir') await deliverMaildir(job.path, data, privs, job.sizeLimit);
    else await appendMbox(job.path, data, privs, job.locks, job.inSpool, job.sizeLimit);
    return { ok: true };
  } catch (e) {
    if (e instanceof MailboxError) return { ok: false, dsn: e.dsn, reason: e.message };
    throw e;
  }
}
