/**
 * The outcomes of address verification probes (messages in trace mode `probe`, sent by the
 * verify service) go back to the verify service, as Postfix's delivery agents report them with
 * verify_append(): one update per recipient — under the address the probe was sent to (its
 * original recipient) and, when a virtual alias changed it, under the address delivered to as
 * well. With address_verify_negative_cache = no only deliverable outcomes are reported. A probe
 * is never deferred, bounced or reported to its sender: after its one attempt it is removed.
 */
import type { Config } from '../../src/config/index.js';
import { valuesOf, type Params } from '../../src/config/declared.js';
import type { Logger } from '../../src/log/maillog.js';
import type { MessageMeta } from '../../src/queue/types.js';
import type { Actor } from '../../src/runtime/endpoint.js';
import { VerifyClient } from '../../src/verify/client.js';
import type { RecipientOutcome } from '../protocol.js';

const STATUS = { sent: 'ok', bounced: 'bounce', deferred: 'defer' } as const;

/** What the probe reports read (with the rest of qmgr's: manager.ts QMGR_PARAMS). */
export const PROBE_PARAMS = {
  'address_verify_service_name': 'str',
  'address_verify_negative_cache': 'bool',
} as const;

export class ProbeReports {
  private readonly client: VerifyClient;
  private readonly negativeCache: boolean;

  constructor(from: Config | Params<typeof PROBE_PARAMS>, actor: Actor, private readonly log: Logger) {
    const p = valuesOf(from, PROBE_PARAMS, 'qmgr');
    this.client = new VerifyClient((service, body) => actor.request(service, body), p.address_verify_service_name.trim());
    this.negativeCache = p.address_verify_negative_cache;
  }

  async report(meta: MessageMeta, outcomes: Iterable<RecipientOutcome>): Promise<void> {
    for (const o of outcomes) {
      const status = STATUS[o.status];
      if (status !== 'ok' && !this.negativeCache) continue;
      const r = meta.recipients[o.index];
      if (!r) continue;
      const original = /^rfc822;(.+)$/i.exec(r.orcpt ?? '')?.[1] ?? r.address;
      try {
        await this.client.update(original, status, o.reason);
        if (original !== r.address) await this.client.update(r.address, status, o.reason);
      } catch {
        this.log.warn(`${meta.queueId}: ${this.client.service} service failure`);
      }
    }
  }
}
