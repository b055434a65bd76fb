/**
 * flush: Postfix's fast flush server (flush(8), master.cf "flush unix n - n 1000? 0 flush"), a
 * pool started on demand as Postfix spawns its flush processes. It keeps, per eligible
 * destination (fast_flush_domains, default $relay_domains), the queue IDs of its deferred mail,
 * so that ETRN, `postqueue -s` and `sendmail -qR` deliver that destination's mail without a
 * scan of the whole deferred queue (service.ts). The logs live in the queue store (LMDB), so
 * every thread of the pool sees one state and each change is one transaction (Postfix locks
 * each logfile instead). The master.cf wakeup column makes master send `refresh`
 * (actors/master/wakeup.ts).
 */
import { fastFlushDomainsOrNull } from '../../src/flush/client.js';
import type { FlushReply, FlushRequest } from '../../src/flush/protocol.js';
import { tell } from '../../src/runtime/mailbox.js';
import { defineService } from '../../src/runtime/service.js';
import meta from './meta.js';
import type { QmgrMessage } from '../protocol.js';
import { FlushService } from './service.js';

interface State {
  service: FlushService;
  refreshTime: number;
}

export default defineService({
  ...meta,
  params: { 'fast_flush_refresh_time': 'time', 'fast_flush_purge_time': 'time' },
  setup(ctx): State {
    const settings = {
      refreshTime: ctx.params.fast_flush_refresh_time * 1000,
      purgeTime: ctx.params.fast_flush_purge_time * 1000,
    };
    const qmgr = {
      forgetDead: () => tell(ctx.data.instance, 'qmgr', { type: 'kick', requests: 'F' } satisfies QmgrMessage),
      queued: (queueId: string) => tell(ctx.data.instance, 'qmgr', { type: 'queued', queueId } satisfies QmgrMessage),
    };
    return { service: new FlushService(ctx.store, fastFlushDomainsOrNull(ctx.config), settings, qmgr, ctx.log), refreshTime: settings.refreshTime };
  },
  async handle(s, req: FlushRequest, ctx): Promise<FlushReply> {
    switch (req?.op) {
      case 'add': return { status: await s.service.add(String(req.site), String(req.queueId)) };
      case 'send_site': return { status: await s.service.sendSite(String(req.site)) };
      // Postfix answers first and then works; here the reply waits for the work (nobody waits on
      // it but master's wakeup timer), so the pool does not end the thread halfway.
      case 'refresh':
      case 'purge':
        await s.service.refresh(req.op === 'purge' ? 0 : s.refreshTime);
        return { status: 'ok' };
      default:
        ctx.log.warn(`unrecognized request: "${String((req as { op?: unknown })?.op)}", ignored`);
        return { status: 'bad' };
    }
  },
});
