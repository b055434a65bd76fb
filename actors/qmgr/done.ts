/**
 * The end of a message's delivery attempt, once every entry is back (Postfix's
 * qmgr_active_done with qmgr_defer.c and qmgr_bounce.c): this attempt's outcomes go to the
 * status logs (bounce: failed, defer: delayed — replaced every attempt as Postfix's defer log
 * is —, trace: success notices and -v / -bv reports), the notices made from them are sent
 * (./notices.ts), and the message is removed (nothing left), deferred with its next attempt
 * time (./backoff.ts), or returned to the sender as expired after maximal_queue_lifetime
 * (bounce_queue_lifetime for mail from <>). Probes report to the verify service instead
 * (./probes.ts); deferred recipients feed the fast flush logs (./fast-flush.ts). A message
 * postsuper asked to delete, hold or requeue ends here too, once its deliveries in flight are
 * back, and a message whose content an agent found damaged, which goes to the corrupt queue.
 * A failed store write strands the message: the next scan puts it back into incoming.
 *
 * Collaborators come in explicitly (store, notifier, probe reports, fast flush feed, and hooks
 * into the active queue), so a test finishes a message of a real store (test/qmgr-parts.test.ts).
 */
import { metrics } from '../../src/metrics/thread.js';
import type { Config } from '../../src/config/index.js';
import { valuesOf, type Params } from '../../src/config/declared.js';
import type { Logger } from '../../src/log/maillog.js';
import type { QueueStore } from '../../src/queue/store.js';
import type { LogKind, MessageMeta, RecipientRecord, StatusRecord } from '../../src/queue/types.js';
import type { AdminEventName } from '../../src/queue/admin.js';
import { formatDelays } from '../../src/delivery/log.js';
import { logOutcome } from './probes.js';
import { SOFT_BOUNCE_PARAMS } from '../../src/delivery/soft-bounce.js';
import type { DeliveryRecipient, RecipientOutcome } from '../protocol.js';
import { expired, nextAttempt } from './backoff.js';
import { statusRecord, wants, type Notifier } from './notices.js';
import type { ProbeReports } from './probes.js';
import type { FastFlushFeed } from './fast-flush.js';
import type { ActiveMessage } from './message.js';

/** The services the end of an attempt reports to (rebuilt on reload). */
export interface Reporters {
  notifier: Notifier;
  probes: ProbeReports;
  fastFlush: FastFlushFeed;
}

export interface AttemptEndHooks {
  /** The message leaves memory (the active queue's map and probe count). */
  forget(queueId: string, probe: boolean): void;
  /** Its end could not be written: a later scan requeues it (./active.ts). */
  strand(queueId: string): void;
  /** After the end is written: flow tokens, and new mail if the active queue has room again. */
  after(): void;
}

/** What the end of an attempt reads (with the rest of qmgr's: manager.ts QMGR_PARAMS). */
export const ATTEMPT_END_PARAMS = {
  'minimal_backoff_time': 'time',
  'maximal_backoff_time': 'time',
  'maximal_queue_lifetime': 'time',
  'bounce_queue_lifetime': 'time',
  ...SOFT_BOUNCE_PARAMS,
} as const;

export class AttemptEnd {
  /** finish() calls still writing to the store. */
  finishing = 0;
  private reporters!: Reporters;
  private minBackoff!: number;
  private maxBackoff!: number;
  private queueLifetime!: number;
  private bounceLifetime!: number;
  /**
   * soft_bounce: a bounce log (from before it was turned on) is not flushed, and the message
   * stays with it (Postfix's bounce_flush fails); an expired message is still returned, as
   * Postfix's defer_flush does.
   */
  private softBounce!: boolean;

  constructor(config: Config | Params<typeof ATTEMPT_END_PARAMS>, reporters: Reporters, private readonly store: QueueStore, private readonly log: Logger, private readonly hooks: AttemptEndHooks) {
    this.reconfigure(config, reporters);
  }

  /** The values qmgr read (a configuration: read here). */
  reconfigure(from: Config | Params<typeof ATTEMPT_END_PARAMS>, reporters: Reporters): void {
    const p = valuesOf(from, ATTEMPT_END_PARAMS, 'qmgr');
    this.reporters = reporters;
    this.minBackoff = p.minimal_backoff_time;
    this.maxBackoff = p.maximal_backoff_time;
    this.queueLifetime = p.maximal_queue_lifetime;
    this.bounceLifetime = p.bounce_queue_lifetime;
    this.softBounce = p.soft_bounce;
  }

  /** Every delivery of this attempt is back: bounce, defer or remove; then the message leaves memory. */
  async finish(msg: ActiveMessage): Promise<void> {
    this.finishing++;
    try {
      await this.finishAttempt(msg);
    } finally {
      this.finishing--;
    }
  }

  /**
   * postsuper -e / -f: no delivery attempt; every pending recipient is deferred with "message is
   * administratively expired" (as Postfix's qmgr does through its error agent), and finish()
   * then returns the message to the sender as expired.
   */
  forceExpire(msg: ActiveMessage, pending: DeliveryRecipient[]): void {
    const now = Date.now();
    const delays = formatDelays(msg.meta.arrival, msg.activated, now, { connect: 0, transmit: 0 }, now);
    for (const r of pending) {
      const o: RecipientOutcome = { index: r.index, status: 'deferred', dsn: '4.7.0', reason: 'message is administratively expired', relay: 'none' };
      logOutcome(this.log, msg, r, o, delays);
      metrics().deliveries.inc({ transport: 'expired', status: o.status });
      msg.outcomes.set(r.index, o);
    }
    void this.finish(msg);
  }

  private async finishAttempt(msg: ActiveMessage): Promise<void> {
    msg.finishing = true;
    if (msg.admin) return this.finishAdmin(msg, msg.admin);
    if (msg.corrupt) return this.saveCorrupt(msg, msg.corrupt);
    const { meta } = msg;
    const id = meta.queueId;
    const now = Date.now();
    const lifetime = meta.sender === '' ? this.bounceLifetime : this.queueLifetime;
    const verify = meta.trace === 'verify' || meta.trace === 'probe';
    if (meta.trace === 'probe') await this.reporters.probes.report(meta, msg.outcomes.values(), msg.probeLines);
    const anyDeferred = [...msg.outcomes.values()].some((o) => o.status === 'deferred');
    const expiring = !verify && anyDeferred && (meta.forcedExpire || expired(now, meta.arrival, lifetime));
    if (expiring) {
      this.log.info(`${id}: from=<${meta.sender}>, status=expired, returned to sender`);
      metrics().qmgrExpired.inc();
    }
    // This attempt's outcomes as status log records: bounce (failed), defer (delayed, replaced
    // every attempt as Postfix's defer log is), trace (success notices, -v / -bv reports).
    const bounceRecs: StatusRecord[] = [];
    const deferRecs: StatusRecord[] = [];
    const traceRecs: StatusRecord[] = [];
    /** This attempt's deferred recipients, for the fast flush logs (fast-flush.ts). */
    const deferredTo: string[] = [];
    const recipients = meta.recipients.map((r, i): RecipientRecord => {
      const o = msg.outcomes.get(i);
      if (!o) return r;
      const { reason: _old, ...rest } = r;
      if (meta.trace === 'probe') return { ...rest, done: true }; // reported to the verify service
      if (o.status === 'sent') {
        if (meta.trace) traceRecs.push(statusRecord(meta, o, verify ? 'deliverable' : successAction(o), now));
        else if (o.action !== 'passed' && wants(r.notify, 'SUCCESS')) traceRecs.push(statusRecord(meta, o, successAction(o), now));
        return { ...rest, done: true };
      }
      if (verify) {
        traceRecs.push(statusRecord(meta, o, o.status === 'bounced' ? 'undeliverable' : 'delayed', now));
        return { ...rest, done: true };
      }
      if (o.status === 'bounced' || expiring) {
        bounceRecs.push(statusRecord(meta, o, 'failed', now));
        if (meta.trace) traceRecs.push(statusRecord(meta, o, 'failed', now));
        return { ...rest, done: true };
      }
      deferRecs.push(statusRecord(meta, o, 'delayed', now));
      if (meta.trace) traceRecs.push(statusRecord(meta, o, 'delayed', now));
      deferredTo.push(r.address);
      return { ...rest, reason: o.reason };
    });
    const remaining = recipients.some((r) => !r.done);
    const delayNotice = remaining && this.reporters.notifier.delayDue(meta, now) ? deferRecs : null;
    const notices = bounceRecs.length > 0 || traceRecs.length > 0 || delayNotice !== null || this.store.hasLogs(id);
    // A notice carries the message (or its headers): its content is checked first, as an agent
    // checks it, so damaged content never goes out in a bounce either.
    if (notices) {
      const content = this.store.verify(id, meta);
      if (content !== 'ok') return this.saveCorrupt(msg, content);
    }
    const deferPatch = (extra: Partial<MessageMeta>): Partial<MessageMeta> => ({
      recipients,
      attempts: meta.attempts + 1,
      nextAttempt: nextAttempt(now, meta.arrival, this.minBackoff, this.maxBackoff),
      ...(meta.trace === 'record' ? { trace: undefined } : {}), // -v reports the first attempt only
      ...extra,
    });
    try {
      if (!notices) {
        // The common case, one write: all done (removed with its logs), or deferred with this
        // attempt's defer log. It rides a later commit (QueueStore.removeLater / moveLater), not
        // waited for: a crash before it is on disk leaves the message in active (or incoming),
        // and it is tried again after the restart — a repeated delivery, never a loss. "removed"
        // is logged once the removal is on disk, as Postfix logs it after the unlink. The
        // envelope written is qmgr's own: while a message is active only qmgr changes it
        // (postsuper -e through expireActive).
        if (!remaining) {
          void this.store.removeLater(id, 'active').then((removed) => {
            if (!removed) return;
            this.log.info(`${id}: removed`);
            metrics().qmgrRemoved.inc();
          });
        } else {
          // The fast flush logs learn of it once it is in deferred (a flush then finds it there).
          void this.store.moveLater(id, 'active', { ...meta, ...deferPatch({}), queue: 'deferred' }, { defer: deferRecs }).then((deferred) => {
            if (deferred) void this.reporters.fastFlush.deferred(id, deferredTo);
          });
        }
      } else {
        // Status logs first (durable), then the notices made from them, then the logs whose
        // notices are queued are dropped with the message's next state: a crash in between
        // sends a notice again, never loses one.
        const updated = await this.store.update(id, { recipients }, { append: { bounce: bounceRecs, trace: traceRecs }, set: { defer: deferRecs } });
        if (!updated) return;
        const { cleared, delayWarned } = await this.reporters.notifier.send(updated, delayNotice, now, this.softBounce && !expiring);
        const left = (['bounce', 'trace'] as const).some((k) => !cleared.includes(k) && this.store.logs(id, k).length > 0);
        if (!remaining && !left) {
          await this.store.remove(id, 'active');
          this.log.info(`${id}: removed`);
          metrics().qmgrRemoved.inc();
        } else {
          await this.store.move(id, 'deferred', deferPatch(delayWarned ? { delayWarned: true } : {}), 'active', { clear: cleared });
          if (remaining) void this.reporters.fastFlush.deferred(id, deferredTo);
        }
      }
    } catch (err) {
      this.log.warn(`${id}: queue update failed: ${(err as Error).message}; the message is requeued at the next queue scan`);
      this.hooks.strand(id);
    } finally {
      this.hooks.forget(id, meta.trace === 'probe');
    }
    this.hooks.after();
  }

  /**
   * A message whose content is damaged (an agent found it so, or a notice was to carry it) moves
   * from active to corrupt (Postfix's qmgr_active_corrupt); nothing of this attempt is recorded.
   */
  private async saveCorrupt(msg: ActiveMessage, damaged: 'missing' | 'mismatch'): Promise<void> {
    const id = msg.meta.queueId;
    this.log.warn(`${id}: ${damaged === 'missing' ? 'message content is missing' : 'message content does not match its checksum'}`);
    try {
      if (await this.store.move(id, 'corrupt', {}, 'active')) this.log.warn(`saving corrupt file "${id}" from queue "active" to queue "corrupt"`);
    } catch (err) {
      this.log.warn(`${id}: move to the corrupt queue failed: ${(err as Error).message}`);
      this.hooks.strand(id);
    } finally {
      this.hooks.forget(id, msg.meta.trace === 'probe');
    }
    this.hooks.after();
  }

  /**
   * The end of an attempt of a message postsuper asked to delete, hold or requeue (its deliveries
   * in flight are back). Delete: removed, no notice. Hold / requeue: what was delivered or
   * bounced is recorded (a bounce goes to the bounce log and its notice is sent) and the rest goes
   * to hold / incoming instead of deferred; a message with nothing left is removed as usual.
   */
  private async finishAdmin(msg: ActiveMessage, admin: NonNullable<ActiveMessage['admin']>): Promise<void> {
    const { meta } = msg;
    const id = meta.queueId;
    const events: AdminEventName[] = [];
    const now = Date.now();
    try {
      if (admin.action === 'delete') {
        if (await this.store.remove(id, 'active')) events.push('removed');
      } else {
        const bounceRecs = [...msg.outcomes.values()].filter((o) => o.status === 'bounced').map((o) => statusRecord(meta, o, 'failed', now));
        const recipients = meta.recipients.map((r, i) => {
          const o = msg.outcomes.get(i);
          if (!o) return r;
          if (o.status === 'sent' || o.status === 'bounced') return { ...r, done: true };
          return admin.action === 'requeue' ? r : { ...r, reason: o.reason };
        });
        let cleared: LogKind[] = [];
        if (bounceRecs.length > 0 || this.store.hasLogs(id)) {
          const updated = await this.store.update(id, { recipients }, { append: { bounce: bounceRecs } });
          if (updated) cleared = (await this.reporters.notifier.send(updated, null, now, this.softBounce)).cleared;
        }
        const left = (['bounce', 'trace'] as const).some((k) => !cleared.includes(k) && this.store.logs(id, k).length > 0);
        if (recipients.every((r) => r.done) && !left) {
          await this.store.remove(id, 'active');
          this.log.info(`${id}: removed`);
          metrics().qmgrRemoved.inc();
        } else if (admin.action === 'hold') {
          if (await this.store.move(id, 'hold', { recipients, attempts: meta.attempts + 1 }, 'active', { clear: cleared })) events.push('placed on hold');
        } else {
          const patch = { recipients: recipients.map(({ reason: _r, ...r }) => r), forcedExpire: false };
          if (await this.store.move(id, 'incoming', patch, 'active', { clear: cleared })) events.push('requeued');
        }
      }
    } catch (err) {
      this.log.warn(`${id}: queue update failed: ${(err as Error).message}; the message is requeued at the next queue scan`);
      this.hooks.strand(id);
    } finally {
      this.hooks.forget(id, meta.trace === 'probe');
    }
    for (const w of admin.waiters) w(events);
    this.hooks.after();
  }
}

/** The RFC 3464 action a success is reported with ("passed": the next hop notifies instead). */
function successAction(o: RecipientOutcome): string {
  return o.action === 'passed' ? 'relayed' : (o.action ?? 'delivered');
}
