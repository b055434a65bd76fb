/**
 * A message in the active queue and its recipients (Postfix's qmgr_message.c): recipients are
 * read into memory in slices — the first as big as qmgr_message_recipient_limit leaves (at
 * least qmgr_message_recipient_minimum; oqmgr: qmgr_fudge_factor % of the limit), more as
 * entries finish (<transport>_recipient_refill_limit / _delay) — resolved (./resolve.ts; a
 * content filter replaces the route), and sorted into entries per destination of at most
 * <transport>_destination_recipient_limit recipients (./entry.ts). A recipient the resolver
 * refuses fails here, without a delivery. Recipients delivered so far are marked done in the
 * store as the message goes, so a restart does not deliver them again.
 *
 * Collaborators come in explicitly (store, resolver, the other parts and hooks into the
 * manager), so a test builds it with a real store and a resolver of its own
 * (test/qmgr-parts.test.ts).
 */
import { metrics } from '../../src/metrics/thread.js';
import type { Config } from '../../src/config/index.js';
import { valuesOf, type Params } from '../../src/config/declared.js';
import type { Logger } from '../../src/log/maillog.js';
import type { QueueStore } from '../../src/queue/store.js';
import type { MessageMeta } from '../../src/queue/types.js';
import type { AdminEventName } from '../../src/queue/admin.js';
import { formatDelays } from '../../src/delivery/log.js';
import { logOutcome } from './probes.js';
import { bounceOrDefer, SOFT_BOUNCE_PARAMS } from '../../src/delivery/soft-bounce.js';
import type { DeliveryRecipient, HeldStatusLine, RecipientOutcome } from '../protocol.js';
import type { Route } from './resolve.js';
import type { SchedulerName } from '../../src/config/queue-managers.js';
import type { Destination, Destinations } from './queue.js';
import type { Transports } from './transport.js';
import type { Entries } from './entry.js';

export interface ActiveMessage {
  meta: MessageMeta;
  activated: number;
  /** Entries handed out or waiting, not yet reported. */
  outstanding: number;
  outcomes: Map<number, RecipientOutcome>;
  /** finish() has started: too late for an admin request to change the outcome. */
  finishing?: boolean;
  /** postsuper asked to delete / hold / requeue it: done when its deliveries in flight are back. */
  admin?: { action: 'delete' | 'hold' | 'requeue'; waiters: ((events: AdminEventName[]) => void)[] };
  /** An agent found its content damaged: no more deliveries; the attempt ends in the corrupt queue. */
  corrupt?: 'missing' | 'mismatch';
  /** Recipients enter memory in slices (readSlice): the pending ones, and how far they are read. */
  rcpt: RecipientSlices;
  /** A probe's status lines, logged once the verify service has its outcome (./probes.ts). */
  probeLines?: HeldStatusLine[];
}

export interface RecipientSlices {
  pending: number[];
  readPos: number;
  /** Recipients in entries not yet finished, and the most this message may hold. */
  inMemory: number;
  cap: number;
  reading: boolean;
  lastRead: number;
  /** Delivered recipients not yet marked done in the store, and when they last were. */
  unsaved: number[];
  lastSave: number;
}

/** What a slice's recipients are resolved with (./resolve.ts's Resolver). */
export interface Router {
  route(address: string, sender: string, probe?: boolean): Promise<Route>;
}

export interface MessageHooks {
  /** The attempt may be over (./active.ts). */
  maybeFinish(msg: ActiveMessage): void;
  /** Hand out deliveries (the manager's schedule()). */
  schedule(): void;
  /** Probes (trace mode probe) in the active queue now. */
  probesActive(): number;
}

/** What the messages' recipient slices read (with the rest of qmgr's: manager.ts QMGR_PARAMS). */
export const MESSAGE_PARAMS = {
  ...SOFT_BOUNCE_PARAMS,
  'address_verify_pending_request_limit': 'int',
  'qmgr_message_recipient_limit': 'int',
  'qmgr_message_recipient_minimum': 'int',
  'qmgr_fudge_factor': 'int',
} as const;

export class Messages {
  private router!: Router;
  private rcptLimit!: number;
  private rcptMinimum!: number;
  /** oqmgr: recipients read per message at a time, qmgr_message_recipient_limit × qmgr_fudge_factor %. */
  private fudgeSlice!: number;
  /** address_verify_pending_request_limit. */
  private pendingProbeLimit!: number;
  /** soft_bounce: qmgr's own bounces (qmgr_bounce.c) are kept as deferrals too. */
  private softBounce!: boolean;

  constructor(
    config: Config | Params<typeof MESSAGE_PARAMS>,
    router: Router,
    private readonly store: QueueStore,
    private readonly log: Logger,
    readonly scheduler: SchedulerName,
    private readonly parts: { transports: Transports; destinations: Destinations; entries: Entries },
    private readonly hooks: MessageHooks,
  ) {
    this.reconfigure(config, router);
  }

  /** The values qmgr read (a configuration: read here). */
  reconfigure(from: Config | Params<typeof MESSAGE_PARAMS>, router: Router): void {
    const p = valuesOf(from, MESSAGE_PARAMS, 'qmgr');
    this.router = router;
    this.pendingProbeLimit = p.address_verify_pending_request_limit;
    this.softBounce = p.soft_bounce;
    this.rcptLimit = Math.max(1, p.qmgr_message_recipient_limit);
    this.rcptMinimum = Math.max(1, p.qmgr_message_recipient_minimum);
    this.fudgeSlice = Math.max(1, Math.floor((this.rcptLimit * Math.min(100, Math.max(10, p.qmgr_fudge_factor))) / 100));
  }

  /**
   * oqmgr stops opening messages while qmgr_message_recipient_limit recipients are in memory
   * (nqmgr does not: each new message gets at least qmgr_message_recipient_minimum).
   */
  full(): boolean {
    return this.scheduler === 'oqmgr' && this.parts.entries.rcptInMemory >= this.rcptLimit;
  }

  /**
   * A message just activated with `pending` recipients to deliver: its in-memory state. The first
   * slice: what qmgr_message_recipient_limit leaves, but at least qmgr_message_recipient_minimum
   * (nqmgr); oqmgr reads the same per-message share of it for every message (qmgr_fudge_factor).
   */
  create(meta: MessageMeta, pendingIdx: number[], now: number): ActiveMessage {
    const cap = Math.min(pendingIdx.length, this.scheduler === 'oqmgr' ? this.fudgeSlice : Math.max(this.rcptMinimum, this.rcptLimit - this.parts.entries.rcptInMemory));
    const rcpt: RecipientSlices = { pending: pendingIdx, readPos: 0, inMemory: 0, cap, reading: false, lastRead: now, unsaved: [], lastSave: now };
    return { meta, activated: now, outstanding: 0, outcomes: new Map(), rcpt };
  }

  /**
   * Reads the next `count` pending recipients of `msg` into memory (Postfix's recipient slices
   * and refills): resolves them and groups them into entries for their destinations. Done
   * recipients are never read again: they are marked done in the store.
   */
  async readSlice(msg: ActiveMessage, count: number): Promise<void> {
    const { meta, rcpt } = msg;
    const queueId = meta.queueId;
    rcpt.reading = true;
    const pending = rcpt.pending.slice(rcpt.readPos, rcpt.readPos + count).map((index) => ({ r: meta.recipients[index]!, index }));
    rcpt.readPos += pending.length;
    rcpt.lastRead = Date.now();
    let routes: Route[];
    try {
      if (rcpt.readPos > pending.length) await this.saveDone(msg);
      // Resolve (trivial-rewrite); a recipient the resolver refuses fails here, without a delivery.
      // Probes are routed with the address_verify_* overrides (Postfix's resolve_clnt_verify).
      const probe = meta.trace === 'probe';
      routes = await Promise.all(pending.map(({ r }) => this.router.route(r.address, meta.sender, probe)));
    } finally {
      rcpt.reading = false;
    }
    if (msg.admin || msg.finishing) return this.hooks.maybeFinish(msg);
    // A content filter (FILTER action, content_filter) replaces the transport and, when given,
    // the nexthop of every deliverable recipient, as Postfix's qmgr does.
    if (meta.filter) routes = routes.map((route) => (route.error ? route : filterRoute(route, meta!.filter!)));
    // "error:STATUS text" as the filter (cleanup's bounce of a rejected local submission) fails
    // every recipient here, without a delivery agent, as error(8) would.
    if (meta.filter?.startsWith('error:')) routes = routes.map((route) => (route.error ? route : { ...route, error: errorOf(meta!.filter!.slice(6)) }));
    // Safety (Postfix's qmgr): more probes in the active queue than address_verify_pending_request_limit
    // are deferred, not delivered; the verify service hears "Too many address verification requests".
    if (meta.trace === 'probe' && this.hooks.probesActive() > this.pendingProbeLimit) {
      routes = routes.map((route) => (route.error ? route : { ...route, error: { dsn: '4.3.2', text: 'Too many address verification requests' } }));
    }
    const now = Date.now();
    const { entries } = this.parts;
    // Group by destination, at most <transport>_destination_recipient_limit per delivery.
    const batches = new Map<Destination, DeliveryRecipient[]>();
    for (const [i, { r, index }] of pending.entries()) {
      const route = routes[i]!;
      if (route.error) {
        const verify = meta.trace === 'verify' || meta.trace === 'probe';
        const o: RecipientOutcome = bounceOrDefer({ index, status: route.error.dsn.startsWith('5') ? 'bounced' : 'deferred', dsn: route.error.dsn, reason: route.error.text, relay: 'none' }, this.softBounce, verify);
        logOutcome(this.log, msg, r, o, formatDelays(meta.arrival, msg.activated, now, { connect: 0, transmit: 0 }, now));
        metrics().deliveries.inc({ transport: route.transport || 'error', status: o.status });
        msg.outcomes.set(index, o);
        continue;
      }
      const dest = this.parts.destinations.get(route);
      let batch = batches.get(dest);
      const limit = dest.recipientLimit;
      if (!batch || batch.length >= limit) {
        if (batch) entries.enqueue(msg, dest, batch);
        batch = [];
        batches.set(dest, batch);
      }
      // The original recipient travels with the resolved address (Postfix's orig_addr), for orig_to=<…> and X-Original-To.
      const original = r.original ?? r.address;
      batch.push({ index, address: route.recipient, ...(r.orcpt ? { orcpt: r.orcpt } : {}), ...(r.notify ? { notify: r.notify } : {}), ...(original !== route.recipient ? { original } : {}) });
    }
    for (const [dest, batch] of batches) entries.enqueue(msg, dest, batch);
    const unread = rcpt.pending.length - rcpt.readPos;
    for (const t of this.parts.transports.all.values()) {
      const job = t.jobOf.get(msg);
      if (!job) continue;
      job.unreadEntries = unread;
      if (unread === 0 && job.doneEntries >= job.readEntries) entries.freeJob(job);
    }
    if (msg.outstanding === 0) return this.hooks.maybeFinish(msg);
    this.hooks.schedule();
  }

  /** After an entry is finished: read more recipients when enough room (or time) has come (Postfix's refill). */
  refill(msg: ActiveMessage): void {
    const { rcpt } = msg;
    const left = rcpt.pending.length - rcpt.readPos;
    if (rcpt.reading || left === 0 || msg.admin || msg.finishing || msg.corrupt) return;
    const inMemory = this.parts.entries.rcptInMemory;
    if (this.scheduler === 'oqmgr') {
      // oqmgr (qmgr_entry_done): the next slice when the message has nothing left in memory, or
      // once all messages together hold fewer than the slice size less 100 recipients.
      if (rcpt.inMemory === 0 || inMemory < this.fudgeSlice - 100) void this.readSlice(msg, Math.min(left, this.fudgeSlice));
      return;
    }
    const room = Math.min(rcpt.cap - rcpt.inMemory, this.rcptLimit - inMemory, left);
    if (room <= 0 && rcpt.inMemory > 0) return;
    const limits = this.refillLimits(msg);
    if (rcpt.inMemory === 0 || room >= Math.min(limits.count, left) || Date.now() - rcpt.lastRead >= limits.delay) void this.readSlice(msg, Math.max(room, this.rcptMinimum));
  }

  /** <transport>_recipient_refill_limit / _delay of the message's transports (the smallest). */
  private refillLimits(msg: ActiveMessage): { count: number; delay: number } {
    let count = Infinity;
    let delay = Infinity;
    for (const t of this.parts.transports.all.values()) {
      if (!t.jobOf.has(msg)) continue;
      // Read once per transport with its other limits (a malformed value is warned there).
      const limits = this.parts.transports.limitsOf(t.name);
      count = Math.min(count, limits.refillLimit);
      delay = Math.min(delay, limits.refillDelay);
    }
    return { count: count === Infinity ? 100 : count, delay: delay === Infinity ? 5000 : delay };
  }

  /**
   * Marks the recipients delivered so far done in the store (at most once a second, and before
   * each refill), so that a restart in the middle of a big message does not deliver them again.
   * The marks go into qmgr's envelope (the only one changed while the message is active) and ride
   * a later commit (QueueStore.moveLater, active to active): a crash before it only delivers
   * those recipients again. A failed commit is the store's onLaterFailure (./active.ts).
   */
  async saveDone(msg: ActiveMessage, force = false): Promise<void> {
    const { rcpt } = msg;
    if (rcpt.unsaved.length === 0 || (!force && Date.now() - rcpt.lastSave < 1000)) return;
    const done = rcpt.unsaved.splice(0);
    rcpt.lastSave = Date.now();
    const recipients = msg.meta.recipients.slice();
    for (const i of done) if (recipients[i]) recipients[i] = { ...recipients[i]!, done: true };
    msg.meta = { ...msg.meta, recipients };
    void this.store.moveLater(msg.meta.queueId, 'active', msg.meta);
  }
}

/** error(8)'s reading of its nexthop: "5.7.1 text" (a missing status is 5.0.0). */
function errorOf(nexthop: string): { code: number; dsn: string; text: string } {
  const m = /^([245]\.\d{1,3}\.\d{1,3})\s+(.*)$/s.exec(nexthop.trim());
  const dsn = m ? m[1]! : '5.0.0';
  return { code: dsn.startsWith('4') ? 450 : 550, dsn, text: m ? m[2]! : nexthop.trim() };
}

/** "transport:nexthop" of a content filter applied to a resolved route (empty nexthop: the route's). */
function filterRoute(route: Route, filter: string): Route {
  const colon = filter.indexOf(':');
  const transport = (colon < 0 ? filter : filter.slice(0, colon)).trim();
  const nexthop = (colon < 0 ? '' : filter.slice(colon + 1)).trim() || route.nexthop;
  return { ...route, transport, nexthop, key: `${transport}:${nexthop}` };
}
