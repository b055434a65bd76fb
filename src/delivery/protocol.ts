/**
 * The typed messages between a delivery agent (local(8), virtual(8)) and its privileged
 * delivery helper process (helper.ts), carried over the child's IPC channel with V8
 * serialization, so the message bytes travel as a Uint8Array, not as JSON.
 *
 *   agent → helper   HelperRequest: a batch of mailbox writes (each a WriterJob and the bytes)
 *   helper → agent   HelperReady once at start, then one HelperReply per request, same id,
 *                    with a result per write in the request's order (possibly after a partial
 *                    one: the writes that had to wait for a lock come last)
 *
 * A helper runs one request at a time; the agent never sends a second before the reply. A
 * request carries the writes that were waiting when the helper became free (batch.ts).
 */
import type { LockSettings } from './mailbox.js';

/** One message into one mailbox, as its owner. */
export interface WriterJob {
  kind: 'mbox' | 'maildir';
  /** The mbox file, or the Maildir directory ending in "/". */
  path: string;
  uid: number;
  gid: number;
  /** The mbox is in a mail_spool_directory that is not world-writable: its lock and the file are created with root's rights (Postfix's mailbox.c). */
  inSpool: boolean;
  locks: LockSettings;
  /** mailbox_size_limit / virtual_mailbox_limit; 0 = none. */
  sizeLimit: number;
  /** A /file from an alias or virtual with strict_mailbox_ownership = no: any owner. */
  anyOwner?: boolean;
}

export interface HelperRequest {
  type: 'write';
  id: number;
  writes: { job: WriterJob; data: Uint8Array }[];
}

export interface HelperReady {
  type: 'ready';
  pid: number;
}

/** `died`: the helper died before it answered (the agent reports the reason as it stands, as qmgr does). */
export type WriteResult = { ok: true } | { ok: false; dsn: string; reason: string; died?: true };

/**
 * `partial`: more results of this request follow (null where one is still to come); the
 * request is finished with the reply without it, which carries every result.
 */
export interface HelperReply { type: 'reply'; id: number; results: (WriteResult | null)[]; partial?: true }

export type HelperMessage = HelperReady | HelperReply;
