/**
 * The flush service's requests (Postfix's flush.c), over the fast flush logs in the queue store
 * (`flush` and `flush-sites`, src/queue/store.ts):
 *
 *  - add: the queue ID is appended to the destination's log, when fast_flush_domains lists the
 *    destination (else 'deny').
 *  - send_site: the destination's listed messages that are in deferred move to incoming and the
 *    log is emptied, in one transaction; qmgr is first told to forget its dead destinations
 *    (Postfix's UNTHROTTLE_BEFORE: the "F" trigger), then each moved message is announced to
 *    it as cleanup announces a new one (Postfix triggers an incoming scan, "I"; a trigger that
 *    arrives while qmgr scans would wait for its next queue run here). A destination with no
 *    log has no deferred mail: 'ok'. As in Postfix, every message in the log is moved,
 *    whichever of its recipients was deferred.
 *  - refresh: each non-empty log not read for fast_flush_refresh_time is sent as above (without
 *    the "F"), each empty one not updated for fast_flush_purge_time is deleted. Logs are
 *    truncated only by a send, not when mail is delivered, so without this they would only grow.
 *  - purge: a refresh of every non-empty log.
 */
import type { DomainList } from '../../src/address/domain.js';
import type { Logger } from '../../src/log/maillog.js';
import type { QueueStore } from '../../src/queue/store.js';
import type { FlushStatus } from '../../src/flush/protocol.js';
import { siteKey } from './site.js';

export interface FlushSettings {
  /** fast_flush_refresh_time and fast_flush_purge_time, in ms. */
  refreshTime: number;
  purgeTime: number;
}

/** What the service tells qmgr (its mailbox): forget the dead destinations; a message is in incoming. */
export interface QmgrNotices {
  forgetDead(): void;
  queued(queueId: string): void;
}

export class FlushService {
  constructor(
    private readonly store: QueueStore,
    /** fast_flush_domains; null when a file or table of it could not be opened (every request fails). */
    private readonly domains: DomainList | null,
    private readonly settings: FlushSettings,
    private readonly qmgr: QmgrNotices,
    private readonly log: Logger,
  ) {}

  /** Whether fast_flush_domains lists the destination ('fail' when a table lookup failed). */
  private async eligible(site: string): Promise<FlushStatus | null> {
    if (!this.domains) return 'fail';
    try {
      return (await this.domains.has(site)) ? null : 'deny';
    } catch (err) {
      this.log.warn(`fast_flush_domains: ${(err as Error).message}`);
      return 'fail';
    }
  }

  async add(site: string, queueId: string): Promise<FlushStatus> {
    if (!/^[A-Za-z0-9]{1,255}$/.test(queueId)) return 'bad';
    const denied = await this.eligible(site);
    if (denied) return denied;
    const k = siteKey(site);
    if ('problem' in k) return k.problem;
    await this.store.flushAppend(k.key, queueId);
    return 'ok';
  }

  async sendSite(site: string): Promise<FlushStatus> {
    const denied = await this.eligible(site);
    if (denied) return denied;
    const k = siteKey(site);
    if ('problem' in k) return k.problem;
    this.qmgr.forgetDead();
    await this.send(k.key);
    return 'ok';
  }

  private async send(key: string): Promise<void> {
    const ready = await this.store.flushSend(key);
    for (const id of ready ?? []) this.qmgr.queued(id);
  }

  /** refresh (maxAge: fast_flush_refresh_time) or purge (maxAge 0). */
  async refresh(maxAge: number, now = Date.now()): Promise<void> {
    for (const { site, times, size } of [...this.store.flushLogs()]) {
      try {
        if (size === 0) {
          if (times.updated + this.settings.purgeTime < now) await this.store.flushDelete(site, times.updated);
        } else if (times.read + maxAge < now || maxAge === 0) {
          await this.send(site);
        }
      } catch (err) {
        this.log.warn(`fast flush logfile ${site}: ${(err as Error).message}`);
      }
    }
  }
}
