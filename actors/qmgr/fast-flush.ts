/**
 * The fast flush logs' feed: when an attempt ends with recipients deferred and the message goes
 * to the deferred queue, each deferred recipient's domain (the part after the last "@") is told
 * to the flush service with the queue ID, as Postfix's defer_append() calls flush_add() for
 * every deferred recipient. The client skips domains fast_flush_domains does not list (the
 * default, $relay_domains, is empty), and nothing is asked when master.cf has no service named
 * flush_service_name. A failure is a warning "ID: flush service failure"; the message is
 * deferred all the same (a whole-queue flush still finds it).
 */
import type { Config } from '../../src/config/index.js';
import { readParams, type Params } from '../../src/config/declared.js';
import { FLUSH_CLIENT_PARAMS, FlushClient } from '../../src/flush/client.js';
import type { Logger } from '../../src/log/maillog.js';
import type { Actor } from '../../src/runtime/endpoint.js';

/**
 * What the feed and its flush client (src/flush, which smtpd and master share) read (with the
 * rest of qmgr's: manager.ts QMGR_PARAMS).
 */
export const FAST_FLUSH_PARAMS = {
  ...FLUSH_CLIENT_PARAMS,
} as const;

export class FastFlushFeed {
  private readonly client: FlushClient | null;

  constructor(config: Config, actor: Actor, private readonly log: Logger, p: Params<typeof FAST_FLUSH_PARAMS> = readParams(config, FAST_FLUSH_PARAMS, 'qmgr')) {
    const service = p.flush_service_name.trim();
    const present = config.services.some((s) => s.name === service && s.command === 'flush');
    this.client = present && p.fast_flush_domains.length > 0 ? new FlushClient(p, (svc, body) => actor.request(svc, body)) : null;
  }

  /** The message was deferred with these recipients deferred in this attempt (not awaited by the caller). */
  async deferred(queueId: string, addresses: Iterable<string>): Promise<void> {
    if (!this.client) return;
    const sites = new Set<string>();
    for (const a of addresses) {
      const at = a.lastIndexOf('@');
      if (at >= 0 && at < a.length - 1) sites.add(a.slice(at + 1));
    }
    for (const site of sites) {
      const status = await this.client.add(site, queueId);
      if (status !== 'ok' && status !== 'deny') this.log.warn(`${queueId}: ${this.client.service} service failure`);
    }
  }
}
