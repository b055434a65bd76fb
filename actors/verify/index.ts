/**
 * verify: Postfix's address verification server (verify(8)), a singleton long-lived actor
 * (master.cf `verify unix - - n - 1 verify`). It keeps the cache of which addresses are known
 * deliverable or undeliverable (cache.ts, in the queue store), answers smtpd's queries and
 * qmgr's probe outcomes (service.ts), and sends the probes (probe.ts). One thread, as Postfix's
 * verify is one process: a query's read, probe and write happen in one turn, so two queries
 * for an unknown address send one probe.
 *
 * address_verify_cache_cleanup_interval runs the cache cleanup (expired entries without an
 * outstanding probe are dropped), and logs "cache NAME full cleanup: retained=N dropped=M
 * entries" as Postfix's dict_cache does.
 */
import { defineService } from '../../src/runtime/service.js';
import meta from './meta.js';
import type { CleanupReply, VerifyReply, VerifyRequest } from '../protocol.js';
import { VerifyCache } from '../../src/verify/cache.js';
import { probeSender } from './probe.js';
import { VerifySender } from '../../src/verify/sender.js';
import { VerifyService } from './service.js';

interface State {
  service: VerifyService;
  timer: NodeJS.Timeout | null;
}

export default defineService({
  ...meta,
  params: {
    'address_verify_positive_expire_time': 'time',
    'address_verify_positive_refresh_time': 'time',
    'address_verify_negative_expire_time': 'time',
    'address_verify_negative_refresh_time': 'time',
    'address_verify_negative_cache': 'bool',
    'address_verify_cache_cleanup_interval': 'time',
    'address_verify_map': 'str',
  },
  setup(ctx): State {
    const { config, params, log, actor } = ctx;
    const cache = new VerifyCache(config, ctx.store);
    const sender = new VerifySender(config);
    const probe = probeSender(sender, (r) => actor.request<CleanupReply>('cleanup', r), log);
    const service = new VerifyService(cache, {
      positiveExpire: params.address_verify_positive_expire_time * 1000,
      positiveRefresh: params.address_verify_positive_refresh_time * 1000,
      negativeExpire: params.address_verify_negative_expire_time * 1000,
      negativeRefresh: params.address_verify_negative_refresh_time * 1000,
      negativeCache: params.address_verify_negative_cache,
    }, probe, (text) => log.warn(text));

    const interval = params.address_verify_cache_cleanup_interval;
    const name = cache.volatile ? 'internal:verify' : `${params.address_verify_map.trim()} (queue store database "verify")`;
    let cleaning = false;
    const timer = interval > 0 ? setInterval(() => {
      if (cleaning) return;
      cleaning = true;
      const now = Date.now();
      cache.cleanup((e) => service.keep(e, now))
        .then((s) => log.info(`cache ${name} full cleanup: retained=${s.retained} dropped=${s.dropped} entries`))
        .catch((err: Error) => log.warn(`cache ${name} cleanup: ${err.message}`))
        .finally(() => { cleaning = false; });
    }, interval * 1000) : null;
    return { service, timer };
  },
  control: { status: (state) => ({ running: state !== null }) },
  async handle(state, req: VerifyRequest, { log }): Promise<VerifyReply> {
    switch (req.op) {
      case 'query': return { op: 'query', ...state.service.query(req.address) };
      case 'update':
        await state.service.update(req.address, req.status, req.text);
        return { op: 'update' };
      default:
        log.warn(`unrecognized request: "${String((req as { op?: unknown }).op)}", ignored`);
        throw new Error('unrecognized request');
    }
  },
  // Writes in flight finish before the thread ends: the skeleton closes the store next, which
  // commits what is pending (the store resolves each write once on disk).
  stop(state) {
    if (state.timer) clearInterval(state.timer);
  },
});
