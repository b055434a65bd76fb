/**
 * The verify service's two requests (Postfix's verify.c), over the cache (cache.ts):
 *
 *  - query: the address's status. Nothing usable cached, or the entry expired
 *    (address_verify_positive_expire_time for a deliverable address,
 *    address_verify_negative_expire_time otherwise) and no probe is outstanding: "todo" with
 *    "Address verification in progress". Then, when the entry needs refreshing
 *    (address_verify_positive_refresh_time / _negative_refresh_time since the last result;
 *    always when there is none) and no probe went out within PROBE_TTL, a probe is sent and the
 *    entry records when — with address_verify_negative_cache = no only for an address that
 *    already has a result, and an expired negative entry is deleted instead of kept.
 *  - update: a probe's outcome. A failure does not overwrite a deliverable entry before it
 *    expires (one failed probe must not lose a good address); the next query probes again.
 *
 * The reply to a query never waits for the probe: smtpd polls (address_verify_poll_count,
 * _poll_delay).
 */
import type { VerifyStatus } from '../protocol.js';
import type { VerifyEntry } from '../../src/queue/types.js';
import type { VerifyCache } from '../../src/verify/cache.js';

/** A probe without an answer after this long is taken as lost (Postfix: 1000 s). */
export const PROBE_TTL = 1000_000;

export interface VerifyTimes {
  /** Milliseconds. */
  positiveExpire: number;
  positiveRefresh: number;
  negativeExpire: number;
  negativeRefresh: number;
  negativeCache: boolean;
}

export const IN_PROGRESS = 'Address verification in progress';

export class VerifyService {
  constructor(
    private readonly cache: VerifyCache,
    private readonly times: VerifyTimes,
    /** Sends a probe to the address (asynchronously: the query reply does not wait for it). */
    private readonly probe: (address: string) => void,
    /** A cache write that failed (the query was answered; the next one probes again). */
    private readonly warn: (text: string) => void = () => undefined,
  ) {}

  private background(write: Promise<void>, address: string): void {
    write.catch((err: Error) => this.warn(`cache update for <${address}> failed: ${err.message}`));
  }

  private expired(e: VerifyEntry, now: number): boolean {
    return e.status === 'ok' ? e.updated + this.times.positiveExpire < now : e.updated + this.times.negativeExpire < now;
  }

  /** Whether an entry should be kept by a cleanup run (Postfix's verify_cache_validator). */
  keep(e: VerifyEntry, now = Date.now()): boolean {
    return now - e.probed < PROBE_TTL || !this.expired(e, now);
  }

  query(address: string, now = Date.now()): { status: VerifyStatus; text: string } {
    const t = this.times;
    const cached = this.cache.get(address);
    let e: VerifyEntry;
    if (!cached || (now - cached.probed > PROBE_TTL && this.expired(cached, now))) {
      e = { status: 'todo', probed: 0, updated: 0, text: IN_PROGRESS };
      if (cached && !t.negativeCache) this.background(this.cache.delete(address), address);
    } else {
      e = cached;
    }
    const refresh = e.status === 'ok' ? e.updated + t.positiveRefresh < now : e.updated + t.negativeRefresh < now;
    if (now - e.probed > PROBE_TTL && refresh) {
      this.probe(address);
      if (e.updated !== 0 || t.negativeCache) this.background(this.cache.put(address, { ...e, probed: now }), address);
    }
    return { status: e.status, text: e.text };
  }

  update(address: string, status: Exclude<VerifyStatus, 'todo'>, text: string, now = Date.now()): Promise<void> {
    const cached = this.cache.get(address);
    if (status !== 'ok' && cached?.status === 'ok') return Promise.resolve();
    return this.cache.put(address, { status, probed: 0, updated: now, text: printable(text) });
  }
}

/** Postfix's printable(text, '?'): control characters are not stored. */
function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f]/g, '?');
}
