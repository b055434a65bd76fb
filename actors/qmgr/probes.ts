/**
 * The outcomes of address verification probes (messages in trace mode `probe`, sent by the
 * verify service) go back to the verify service, as Postfix's delivery agents report them with
 * verify_append(): one update per recipient — under the address the probe was sent to (its
 * original recipient) and, when a virtual alias changed it, under the address delivered to as
 * well. With address_verify_negative_cache = no only deliverable outcomes are reported. A probe
 * is never deferred, bounced or reported to its sender: after its one attempt it is removed.
 *
 * verify_append() updates first and logs the status line after, and only when the update
 * worked ("ID: verify service failure" instead): whoever reads the line and asks again finds
 * the answer cached. So a probe's status lines, the agents' and qmgr's own, are held
 * (src/delivery/log.ts StatusLog) and logged here, under the tag of whoever wrote them, once
 * the verify service has the outcome; status=deliverable, undeliverable, or
 * undeliverable-but-not-cached (a failure with the negative cache off).
 */
import type { Config } from '../../src/config/index.js';
import { valuesOf, type Params } from '../../src/config/declared.js';
import { maillogTag, type Logger } from '../../src/log/maillog.js';
import { heldLine, logDelivery, statusLine, type Delays, type LoggedRecipient } from '../../src/delivery/log.js';
import type { MessageMeta } from '../../src/queue/types.js';
import type { Actor } from '../../src/runtime/endpoint.js';
import { VerifyClient } from '../../src/verify/client.js';
import type { HeldStatusLine, RecipientOutcome } from '../protocol.js';
import type { ActiveMessage } from './message.js';

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

  /** Tells the verify service each recipient's outcome, then logs that recipient's held status lines. */
  async report(meta: MessageMeta, outcomes: Iterable<RecipientOutcome>, held: readonly HeldStatusLine[] = []): Promise<void> {
    for (const o of outcomes) {
      const lines = held.filter((l) => l.outcome.index === o.index);
      const status = STATUS[o.status];
      const r = meta.recipients[o.index];
      if (r && (status === 'ok' || this.negativeCache)) {
        const original = /^rfc822;(.+)$/i.exec(r.orcpt ?? '')?.[1] ?? r.address;
        try {
          await this.client.update(original, status, o.reason);
          if (original !== r.address) await this.client.update(r.address, status, o.reason);
        } catch {
          this.logAs(lines[0]?.tag).warn(`${meta.queueId}: ${this.client.service} service failure`);
          continue;
        }
      }
      for (const l of lines) {
        const word = l.outcome.status === 'sent' ? 'deliverable' : this.negativeCache ? 'undeliverable' : 'undeliverable-but-not-cached';
        this.logAs(l.tag).info(statusLine(meta.queueId, l.recipient, l.outcome, l, word));
      }
    }
  }

  private logAs(tag: string | undefined): Logger {
    return tag === undefined || tag === this.log.tag() ? this.log : maillogTag(tag);
  }
}

/**
 * qmgr's own status line for a recipient it settles without an agent (a resolve error, a dead
 * transport, a deferral without an attempt): held for a probe, as the agents' are; a -bv
 * message's says deliverable/undeliverable (src/delivery/log.ts).
 */
export function logOutcome(log: Logger, msg: ActiveMessage, r: LoggedRecipient, o: RecipientOutcome, d: Delays): void {
  const { trace } = msg.meta;
  if (trace === 'probe') (msg.probeLines ??= []).push(heldLine(log, r, o, d));
  else logDelivery(log, msg.meta.queueId, r, o, d, trace === 'verify');
}
