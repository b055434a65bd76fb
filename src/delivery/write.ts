/**
 * Writes one message into one mailbox (an mbox appended under its locks, or a Maildir) as the
 * mailbox's owner: the entry point shared by local(8) and virtual(8).
 *
 * The write goes to this thread's delivery helpers (helpers.ts → helper.ts: long-lived child
 * processes that, as root, switch their effective uid/gid per delivery; the writers' file
 * operations are synchronous, so they never run on an agent's thread). Not root, we cannot
 * switch users: a mailbox of our own uid is written by a helper as ourselves, any other is
 * refused with 4.2.0 (deferred, nothing lost) and that reason.
 */
import { isMainThread, workerData } from 'node:worker_threads';
import { DeliveryHelpers } from './helpers.js';
import type { WriteResult, WriterJob } from './protocol.js';

export type { WriteResult, WriterJob } from './protocol.js';

/**
 * Helper processes per agent thread (the first starts with the thread, the second when the
 * first has all the requests it runs at once). Postfix runs up to default_process_limit
 * local(8) processes so that many writes wait for the disk at once; here each request is a
 * batch whose fsyncs wait together (batch.ts) and a helper runs several requests side by
 * side, so one or two Node.js processes keep the disk busy, not dozens.
 */
export const HELPERS_PER_THREAD = 2;

let helpers: DeliveryHelpers | null = null;

/** This thread's helpers; `warn` logs a helper's death (the first caller's logger). */
export function deliveryHelpers(warn: (text: string) => void): DeliveryHelpers {
  return (helpers ??= new DeliveryHelpers(HELPERS_PER_THREAD, warn));
}

/** Writes `data` as job.uid/job.gid, in one of this thread's helpers. */
export async function writeMailbox(job: WriterJob, data: Buffer, owner: string, warn: (text: string) => void): Promise<WriteResult> {
  const me = process.getuid?.() ?? -1;
  if (me !== 0 && job.uid !== me) return { ok: false, dsn: '4.2.0', reason: `cannot deliver as user ${owner} (uid ${job.uid}): Postactor is not running as root (uid ${me})` };
  return deliveryHelpers(warn).write(job, data);
}

/**
 * Called by an agent's set-up (local, virtual): in a pool thread, start the thread's first
 * helper at once, so the first deliveries do not wait for a process to boot. Resolves when it is
 * ready (or has died, or after PRESTART_WAIT_MS): the set-up waits for it, so that the thread is
 * announced ready (src/runtime/pool-thread.ts) only once it can deliver. `warn` is asked lazily
 * (it needs the agent's state); a failure here is left for the first delivery to report.
 */
export function prestartAgentHelpers(warn: () => (text: string) => void): Promise<void> {
  if (isMainThread || !(workerData as { service?: string } | undefined)?.service) return Promise.resolve();
  let started: Promise<void>;
  try {
    started = deliveryHelpers(warn()).prestart();
  } catch {
    return Promise.resolve(); // the first delivery reports what is wrong
  }
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => { timer = setTimeout(resolve, PRESTART_WAIT_MS); });
  return Promise.race([started, bound]).finally(() => clearTimeout(timer));
}

/** The longest an agent's set-up waits for its first helper (a helper boots in 0.2–0.4 s here). */
const PRESTART_WAIT_MS = 5_000;
