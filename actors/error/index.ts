/**
 * error / retry: Postfix's error(8). Every recipient fails with the status and text in the
 * nexthop ("error:5.1.1 no such user" → bounced, dsn 5.1.1, "(no such user)"); a 4.x.y status
 * defers instead. A nexthop without a status code gets 5.0.0.
 *
 * The same module runs the "retry" service (master.cf "retry unix … error"), which is
 * error(8) in defer mode: default status 4.0.0, and every recipient is deferred (a 5.x.y
 * status given to retry is softened to 4.x.y, since the mail is not returned).
 */
import { defineService } from '../../src/runtime/service.js';
import meta from './meta.js';
import type { DeliveryReply, DeliveryRequest } from '../protocol.js';
import { dsnSplit, every, report, type AgentContext } from '../../src/delivery/agent.js';

export default defineService({
  ...meta,
  params: {},
  setup: (ctx): AgentContext => ctx,
  async handle(c, req: DeliveryRequest): Promise<DeliveryReply> {
    const started = Date.now();
    const deferMode = c.service === 'retry';
    let { dsn, text } = dsnSplit(deferMode ? '4.0.0' : '5.0.0', req.nexthop);
    if (dsn.startsWith('2')) dsn = deferMode ? '4.0.0' : '5.0.0'; // error(8) never reports success
    const defer = deferMode || dsn.startsWith('4');
    if (defer && !dsn.startsWith('4')) dsn = `4${dsn.slice(1)}`;
    return report(c, req, every(req, { status: defer ? 'deferred' : 'bounced', dsn, reason: text, relay: 'none' }), started);
  },
});
