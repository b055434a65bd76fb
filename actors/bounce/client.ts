/** bounce's client: qmgr asks it to render a notice (bounce, defer, delay, trace, verify report). */
import { serviceClient } from '../../src/runtime/call.js';
import type { NoticeReply, NoticeRequest } from '../protocol.js';

export const bounceService = serviceClient<NoticeRequest, NoticeReply>('bounce');
