/**
 * cleanup's client (Postfix's cleanup_user.c side): smtpd, qmqpd, pickup and qmgr's notices
 * submit a new message with `cleanupService.call(actor, request)`. The content is transferred
 * to the cleanup thread, so after the call (whatever its answer) it no longer belongs to the
 * caller: a retry must send a new buffer.
 */
import { serviceClient, wholeBuffer } from '../../src/runtime/call.js';
import type { CleanupReply, CleanupRequest } from '../protocol.js';

export const cleanupService = serviceClient<CleanupRequest, CleanupReply>('cleanup', (req) => wholeBuffer(req.content));
