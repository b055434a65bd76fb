/**
 * The output stage of cleanup (Postfix's cleanup_out.c, cleanup_final.c and cleanup_api.c's
 * cleanup_flush(), cleanup_bounce.c): a discarded message is dropped; otherwise envelope and
 * content go into incoming (or hold) in one LMDB transaction, synced before the reply, since the
 * reply lets smtpd say "250 Ok: queued"; then qmgr is told (a held message waits for postsuper
 * and gives its in_flow_delay token back). A local submission refused for good is queued instead
 * with every recipient routed to error(8), so that it bounces to its sender.
 */
import { maillog } from '../../src/log/maillog.js';
import type { MessageMeta, QueueStore } from '../../src/queue/store.js';
import type { MailFlow } from '../../src/runtime/flow.js';
import { tell } from '../../src/runtime/mailbox.js';
import type { CleanupReply, CleanupRequest, EnvelopeRecipient, QmgrMessage } from '../protocol.js';
import { scanHeaders } from './headers.js';
import { smtputf8Flags, type Smtputf8Settings } from './smtputf8.js';
import { WRITE_ERROR, type Failure, type Verdict } from './state.js';

const log = maillog('cleanup');

/** Where the output goes: the queue store, qmgr's mailbox (of `instance`), the in_flow_delay tokens. */
export interface Output {
  store: QueueStore;
  instance: string;
  flow: MailFlow | null;
  /** in_flow_delay (ms). */
  inFlowDelay: number;
  smtputf8: Smtputf8Settings;
}

/** The message as built so far, as it is written. */
export interface Finished {
  request: CleanupRequest;
  recipients: EnvelopeRecipient[];
  verdict: Verdict;
  content: Uint8Array;
  messageId: string | null;
  /** The local header rewrite context: an XFORWARD passes it on (SOURCE=LOCAL / REMOTE). */
  localClient: boolean;
}

/** A recipient as stored: its original recipient only where it is not the address itself. */
function queued(r: EnvelopeRecipient): MessageMeta['recipients'][number] {
  if (r.original === undefined || r.original !== r.address) return { ...r, done: false };
  const { original: _same, ...rest } = r;
  return { ...rest, done: false };
}

/** Queues the message (or drops it when discarded) and tells qmgr; the reply to the submitter. */
export async function writeMessage(s: Output, msg: Finished): Promise<CleanupReply> {
  const { request, recipients, verdict, content, messageId, localClient } = msg;
  // content_filter (from the receiving smtpd or pickup) applies to all its mail; FILTER overrides it.
  if (!verdict.filter && request.contentFilter) verdict.filter = request.contentFilter;
  if (verdict.discard) {
    // Accepted, then dropped (the discard: line was logged by the check).
    return { ok: true, queueId: request.queueId, size: content.length };
  }
  const smtputf8 = smtputf8Flags(s.smtputf8, request, recipients, content, scanHeaders(content).end);
  const meta: MessageMeta = {
    queueId: request.queueId,
    queue: verdict.hold ? 'hold' : 'incoming',
    arrival: request.arrival,
    sender: request.sender,
    recipients: recipients.map(queued),
    size: content.length,
    nextAttempt: 0,
    attempts: 0,
    ...(messageId ? { messageId } : {}),
    // rewriteLocal: the rewrite context an XFORWARD passes on (SOURCE=LOCAL / REMOTE).
    ...(request.client ? { client: localClient ? { ...request.client, rewriteLocal: true } : request.client } : {}),
    ...(request.envId ? { envId: request.envId } : {}),
    ...(request.ret ? { ret: request.ret } : {}),
    ...(request.trace ? { trace: request.trace } : {}),
    ...(verdict.filter ? { filter: verdict.filter } : {}),
    ...(smtputf8 ? { smtputf8 } : {}),
  };
  try {
    await s.store.enqueue(meta, content);
  } catch (err) {
    // Postfix's cleanup: "ID: write queue file: No space left on device", and 451 4.3.0. The
    // commit failed as a whole: nothing of the message is in the store.
    log.warn(`${request.queueId}: write queue file: ${(err as Error).message}`);
    return WRITE_ERROR;
  }
  if (messageId) log.info(`${request.queueId}: message-id=${messageId}`);
  if (!verdict.hold) tell(s.instance, 'qmgr', { type: 'queued', queueId: request.queueId } satisfies QmgrMessage);
  else if (s.flow && s.inFlowDelay > 0 && request.origin !== 'bounce') s.flow.put(1); // not for incoming: the token goes back
  return { ok: true, queueId: request.queueId, size: content.length };
}

/**
 * Queues a rejected local submission with every recipient routed to error(8) with the reject's
 * status and text, so qmgr bounces it to the sender with the usual notice and log lines.
 */
export async function bounceLocal(s: Pick<Output, 'store' | 'instance'>, request: CleanupRequest, content: Uint8Array, failure: Failure): Promise<CleanupReply> {
  const meta: MessageMeta = {
    queueId: request.queueId,
    queue: 'incoming',
    arrival: request.arrival,
    sender: request.sender,
    recipients: request.recipients.map(queued),
    size: content.length,
    nextAttempt: 0,
    attempts: 0,
    filter: `error:${failure.dsn} ${failure.text}`,
    ...(request.envId ? { envId: request.envId } : {}),
    ...(request.ret ? { ret: request.ret } : {}),
  };
  try {
    await s.store.enqueue(meta, content);
  } catch (err) {
    log.warn(`${request.queueId}: queue file write error: ${(err as Error).message}`);
    return WRITE_ERROR;
  }
  tell(s.instance, 'qmgr', { type: 'queued', queueId: request.queueId } satisfies QmgrMessage);
  return { ok: true, queueId: request.queueId, size: content.length };
}
