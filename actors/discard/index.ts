/**
 * discard: Postfix's discard(8). Every recipient is reported delivered (dsn 2.0.0, relay=none)
 * and the message is dropped. The nexthop is the reason shown in "status=sent (…)": with
 * "transport = discard:silently dropped" the log says "status=sent (silently dropped)"; a
 * leading status code ("discard:2.0.1 text") sets the dsn.
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
    const { dsn, text } = dsnSplit('2.0.0', req.nexthop);
    const ok = dsn.startsWith('2');
    return report(c, req, every(req, { status: ok ? 'sent' : 'deferred', dsn: ok ? dsn : '4.3.5', reason: ok ? text : `mail system configuration error: discard status ${dsn} is not a success status`, relay: 'none' }), started);
  },
});
