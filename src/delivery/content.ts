/**
 * The message content as a delivery agent reads it (Postfix's agents read the queue file
 * themselves and mark a damaged one corrupt: mark_corrupt.c): checked against the checksum
 * qmgr's request carries, where the content is read anyway, so qmgr never reads (and CRCs) a
 * message's content only to check it. A damaged content never goes out: the agent answers
 * `corruptReply` (no recipient logged) and qmgr saves the message to the corrupt queue when its
 * attempt ends.
 */
import type { QueueStore } from '../queue/store.js';
import type { DeliveryReply, DeliveryRequest } from './request.js';

/** The content to deliver; `vanished`: the message was deleted meanwhile (postsuper -d); `damaged`: see corruptReply. */
export type AgentContent = { content: Buffer } | { damaged: 'missing' | 'mismatch' } | { vanished: true };

export function agentContent(store: QueueStore, req: DeliveryRequest): AgentContent {
  return store.checkedContent(req.queueId, req.checksum);
}

/** The reply for damaged content: nothing delivered, nothing logged per recipient (qmgr logs the damage). */
export function corruptReply(req: DeliveryRequest, damaged: 'missing' | 'mismatch'): DeliveryReply {
  return { queueId: req.queueId, outcomes: [], corrupt: damaged };
}
