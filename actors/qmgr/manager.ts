/**
 * The active queue and its scheduling (first version): messages in memory, one queue per
 * destination with a concurrency limit and a recipient limit per delivery, round-robin over
 * destinations, and the end of each message's attempt (remove, defer with backoff, bounce).
 * Concurrency feedback and dead destinations (./feedback.ts, Postfix's qmgr_queue.c): a reply
 * with a siteFailure is negative feedback, any other completed delivery positive; a dead
 * destination's entries are deferred at once ("delivery temporarily suspended: …") until
 * minimal_backoff_time has passed or postqueue -f forgets it. A transport whose agents cannot be
 * reached or crash is unavailable for transport_retry_time. Preemption comes with issue 4.
 */
import { parseTime, transportParam, type Config } from '../../src/config/index.js';
import type { Logger } from '../../src/log/maillog.js';
import { newQueueId } from '../../src/queue/qid.js';
import type { QueueStore } from '../../src/queue/store.js';
import type { MessageMeta, QueueName } from '../../src/queue/types.js';
import type { Actor } from '../../src/runtime/endpoint.js';
import { ServiceError } from '../../src/runtime/wire.js';
import { formatDelays, logDelivery } from '../smtp/log.js';
import type { BounceReply, BounceRequest, CleanupReply, DeliveryRecipient, DeliveryReply, DeliveryRequest, RecipientOutcome } from '../protocol.js';
import type { AdminEventName } from '../../src/queue/admin.js';
import { expired, nextAttempt } from './backoff.js';
import { Resolver, type Route } from './resolve.js';
import { isDead, negative, newWindow, parseFeedback, positive, revive, settings, type WindowSettings, type WindowState } from './feedback.js';

interface ActiveMessage {
  meta: MessageMeta;
  activated: number;
  /** Entries handed out or waiting, not yet reported. */
  outstanding: number;
  outcomes: Map<number, RecipientOutcome>;
  /** finish() has started: too late for an admin request to change the outcome. */
  finishing?: boolean;
  /** postsuper asked to delete / hold / requeue it: done when its deliveries in flight are back. */
  admin?: { action: 'delete' | 'hold' | 'requeue'; waiters: ((events: AdminEventName[]) => void)[] };
}

interface Entry {
  msg: ActiveMessage;
  dest: Destination;
  recipients: DeliveryRecipient[];
}

interface Destination {
  key: string;
  transport: string;
  nexthop: string;
  todo: Entry[];
  busy: number;
  recipientLimit: number;
  /** The transport's feedback settings; window 0 in `fb` means dead. */
  settings: WindowSettings;
  fb: WindowState;
  /** Why it is dead (the site failure) and the enhanced status to defer with. */
  dead?: { reason: string; dsn: string; until: number; timer: NodeJS.Timeout };
  /** <transport>_destination_rate_delay in ms (0: none); no delivery starts before suspendedUntil. */
  rateDelay: number;
  suspendedUntil: number;
}

interface TransportLimits {
  settings: WindowSettings;
  recipientLimit: number;
  rateDelay: number;
}

export class QueueManager {
  private readonly active = new Map<string, ActiveMessage>();
  private readonly activating = new Set<string>();
  private readonly destinations = new Map<string, Destination>();
  private readonly ready = new Set<Destination>();
  // Settings from main.cf; replaced as a whole by reconfigure() on `postactor reload`.
  private resolver!: Resolver;
  private activeLimit!: number;
  private minBackoff!: number;
  private maxBackoff!: number;
  private queueLifetime!: number;
  private bounceLifetime!: number;
  private runDelay!: number;
  private bounceSizeLimit!: number;
  private readonly warnedTransports = new Set<string>();
  private readonly limits = new Map<string, TransportLimits>();
  /** Transports whose agents failed (NOSERVICE, THROTTLED, CRASHED): deferred until `until`. */
  private readonly unavailable = new Map<string, { reason: string; until: number; timer: NodeJS.Timeout }>();
  private transportRetry!: number;
  private feedbackDebug!: boolean;
  private incomingBacklog = false;
  private scanning = false;
  private timer: NodeJS.Timeout | null = null;
  private inDelivery = 0;
  private paused = false;
  /** finish() calls still writing to the store. */
  private finishing = 0;

  constructor(private config: Config, private readonly store: QueueStore, private readonly actor: Actor, private readonly log: Logger) {
    this.reconfigure(config);
  }

  /**
   * Applies a new configuration (postactor reload) without losing the active queue: routing and
   * limits change for what is scheduled from now on; deliveries in flight finish as they are.
   */
  reconfigure(config: Config): void {
    this.config = config;
    this.resolver = new Resolver(config, this.actor, this.log);
    this.limits.clear();
    this.activeLimit = config.getInt('qmgr_message_active_limit');
    this.minBackoff = config.getTime('minimal_backoff_time');
    this.transportRetry = config.getTime('transport_retry_time');
    this.feedbackDebug = config.getBool('destination_concurrency_feedback_debug');
    this.maxBackoff = config.getTime('maximal_backoff_time');
    this.queueLifetime = config.getTime('maximal_queue_lifetime');
    this.bounceLifetime = config.getTime('bounce_queue_lifetime');
    const runDelay = Math.max(1, config.getTime('queue_run_delay'));
    if (this.timer && runDelay !== this.runDelay) {
      clearInterval(this.timer);
      this.timer = setInterval(() => void this.scan(false), runDelay * 1000);
    }
    this.runDelay = runDelay;
    this.bounceSizeLimit = config.getInt('bounce_size_limit');
  }

  /** Start-up: what was active goes back to incoming (as Postfix does), then both queues are scanned. */
  async start(): Promise<void> {
    const recovered = await this.store.recoverActive();
    if (recovered) this.log.info(`recovered ${recovered} message(s) from the active queue`);
    this.incomingBacklog = true;
    await this.scan(true);
    this.timer = setInterval(() => void this.scan(false), this.runDelay * 1000);
  }

  status(): { active: number; inDelivery: number; destinations: number } {
    return { active: this.active.size, inDelivery: this.inDelivery, destinations: this.destinations.size };
  }

  /** cleanup's "queued": take the new message now, unless the active queue is full. */
  queued(queueId: string): void {
    if (this.active.size + this.activating.size >= this.activeLimit) {
      this.incomingBacklog = true;
      return;
    }
    void this.activate(queueId, 'incoming');
  }

  /** postactor flush / postqueue -f: every deferred message is due now. */
  flush(): void {
    this.forgetDead();
    void this.scan(false, Infinity);
  }

  /**
   * postqueue -s site / -i queue_id: the deferred messages with a pending recipient in domain
   * `site`, or the one message `queueId`, are due now; then a scan takes them.
   */
  async flushSome(match: { site?: string; queueId?: string }): Promise<number> {
    const now = Date.now();
    const site = match.site?.toLowerCase();
    const ids = match.queueId ? [match.queueId] : [...this.store.list('deferred')];
    let n = 0;
    for (const id of ids) {
      const done = await this.store.change(id, (m) => {
        if (m.queue !== 'deferred') return null;
        if (site && !m.recipients.some((r) => !r.done && r.address.slice(r.address.lastIndexOf('@') + 1).toLowerCase() === site)) return null;
        return { patch: { nextAttempt: now } };
      });
      if (done) n++;
    }
    if (match.queueId && this.store.get(match.queueId)?.queue === 'incoming') void this.activate(match.queueId, 'incoming');
    if (n) void this.scan(false, now);
    return n;
  }

  // --- postsuper while the server runs (see src/queue/admin.ts and ./admin.ts) ---

  /** True if the message is in qmgr's memory (active, or being activated). */
  holds(queueId: string): boolean {
    return this.active.has(queueId) || this.activating.has(queueId);
  }

  /** Resolves once the message is neither being activated nor being finished. */
  async settle(queueId: string): Promise<void> {
    while (this.activating.has(queueId) || this.active.get(queueId)?.finishing) await new Promise((r) => setTimeout(r, 5));
  }

  /**
   * delete / hold / requeue an active message: deliveries not yet handed out are dropped, those
   * in flight are awaited, and then the message is deleted, held or requeued instead of being
   * deferred. Resolves null if the message is not (or no longer) ours to change.
   */
  adminActive(queueId: string, action: 'delete' | 'hold' | 'requeue'): Promise<AdminEventName[]> | null {
    const msg = this.active.get(queueId);
    if (!msg || msg.finishing) return null;
    const waiting = new Promise<AdminEventName[]>((resolve) => {
      if (msg.admin) {
        if (action === 'delete') msg.admin.action = 'delete'; // delete wins over hold / requeue
        msg.admin.waiters.push(resolve);
      } else {
        msg.admin = { action, waiters: [resolve] };
      }
    });
    for (const dest of this.destinations.values()) {
      const keep = dest.todo.filter((e) => e.msg !== msg);
      msg.outstanding -= dest.todo.length - keep.length;
      dest.todo.splice(0, dest.todo.length, ...keep);
    }
    if (msg.outstanding === 0) void this.finish(msg);
    return waiting;
  }

  /** postsuper -e / -f on an active message: it expires at the end of this attempt. */
  expireActive(queueId: string): boolean {
    const msg = this.active.get(queueId);
    if (!msg || msg.finishing) return false;
    msg.meta = { ...msg.meta, forcedExpire: true };
    return true;
  }

  /** After postsuper -r / -H: requeued messages are taken now, released ones at a scan now. */
  adminWake(requeued: string[], released: string[]): void {
    for (const id of requeued) this.queued(id);
    if (released.length) void this.scan(false, Date.now());
  }

  /** Takes messages from incoming (when it has a backlog) and the deferred messages that are due. */
  private async scan(incoming: boolean, dueBy = Date.now()): Promise<void> {
    this.reviveDue();
    if (this.scanning) return;
    this.scanning = true;
    try {
      if (incoming || this.incomingBacklog) {
        this.incomingBacklog = false;
        // IDs first, then the moves: activate() takes each message out of the index being read,
        // and a live cursor over it then skips the next entry (every other message stayed behind).
        const ids = [...this.store.list('incoming', this.activeLimit)];
        if (ids.length >= this.activeLimit) this.incomingBacklog = true;
        for (const id of ids) {
          if (!this.room()) {
            this.incomingBacklog = true;
            break;
          }
          await this.activate(id, 'incoming');
        }
      }
      for (const id of [...this.store.dueDeferred(dueBy, this.activeLimit)]) {
        if (!this.room()) break;
        await this.activate(id, 'deferred');
      }
    } finally {
      this.scanning = false;
    }
  }

  private room(): boolean {
    return this.active.size + this.activating.size < this.activeLimit;
  }

  /** One message into the active queue: one transaction, then its recipients to their destinations. */
  private async activate(queueId: string, from: QueueName): Promise<void> {
    if (this.active.has(queueId) || this.activating.has(queueId)) return;
    this.activating.add(queueId);
    let meta: MessageMeta | undefined;
    try {
      meta = await this.store.move(queueId, 'active', {}, from);
    } finally {
      this.activating.delete(queueId);
    }
    if (!meta) return;
    const msg: ActiveMessage = { meta, activated: Date.now(), outstanding: 0, outcomes: new Map() };
    this.active.set(queueId, msg);
    const pending = meta.recipients.map((r, index) => ({ r, index })).filter(({ r }) => !r.done);
    this.log.info(`${queueId}: from=<${meta.sender}>, size=${meta.size}, nrcpt=${pending.length} (queue active)`);
    if (meta.forcedExpire && pending.length > 0) return void this.forceExpire(msg, pending.map(({ r, index }) => ({ index, address: r.address })));

    // Resolve (trivial-rewrite); a recipient the resolver refuses fails here, without a delivery.
    let routes = await Promise.all(pending.map(({ r }) => this.resolver.route(r.address)));
    // A content filter (FILTER action, content_filter) replaces the transport and, when given,
    // the nexthop of every deliverable recipient, as Postfix's qmgr does.
    if (meta.filter) routes = routes.map((route) => (route.error ? route : filterRoute(route, meta!.filter!)));
    const now = Date.now();
    // Group by destination, at most <transport>_destination_recipient_limit per delivery.
    const batches = new Map<Destination, DeliveryRecipient[]>();
    for (const [i, { r, index }] of pending.entries()) {
      const route = routes[i]!;
      if (route.error) {
        const o: RecipientOutcome = { index, status: route.error.dsn.startsWith('5') ? 'bounced' : 'deferred', dsn: route.error.dsn, reason: route.error.text, relay: 'none' };
        logDelivery(this.log, queueId, r.address, o, formatDelays(meta.arrival, msg.activated, now, { connect: 0, transmit: 0 }, now));
        msg.outcomes.set(index, o);
        continue;
      }
      const dest = this.destination(route);
      let batch = batches.get(dest);
      const limit = dest.recipientLimit;
      if (!batch || batch.length >= limit) {
        if (batch) this.enqueue({ msg, dest, recipients: batch });
        batch = [];
        batches.set(dest, batch);
      }
      batch.push({ index, address: route.recipient, ...(r.orcpt ? { orcpt: r.orcpt } : {}) });
    }
    for (const [dest, batch] of batches) this.enqueue({ msg, dest, recipients: batch });
    if (msg.outstanding === 0) return void this.finish(msg);
    this.schedule();
  }

  private destination(route: Route): Destination {
    let dest = this.destinations.get(route.key);
    if (!dest) {
      const limits = this.transportLimits(route.transport);
      dest = { key: route.key, transport: route.transport, nexthop: route.nexthop, todo: [], busy: 0, ...limits, fb: newWindow(limits.settings), suspendedUntil: 0 };
      this.destinations.set(route.key, dest);
    }
    return dest;
  }

  /**
   * A transport's scheduling parameters, read once per transport: destination concurrency and
   * recipient limits (0 = no limit), initial concurrency, feedback, failed-cohort limit and
   * destination rate delay (which forces concurrency 1, as in Postfix).
   */
  private transportLimits(transport: string): TransportLimits {
    let limits = this.limits.get(transport);
    if (!limits) {
      const param = (suffix: string) => transportParam(this.config, transport, suffix);
      const warn = (text: string) => this.log.warn(text);
      // A malformed number is reported and replaced by Postfix's default for it.
      const num = (suffix: string, fallback: number, parse: (v: string) => number | null = (v) => (/^\s*\d+\s*$/.test(v) ? Number(v) : null)) => {
        const v = param(suffix);
        const n = parse(v);
        if (n !== null) return n;
        this.log.warn(`${transport}_${suffix}: bad value "${v}": using ${fallback}`);
        return fallback;
      };
      const rateDelay = num('destination_rate_delay', 0, (v) => parseTime(v, 's'));
      if (num('transport_rate_delay', 0, (v) => parseTime(v, 's')) > 0) {
        this.log.warn(`${transport}_transport_rate_delay: not supported: the delay between deliveries over a whole transport is not built yet (ignored; ${transport}_destination_rate_delay works)`);
      }
      const concurrency = rateDelay > 0 ? 1 : num('destination_concurrency_limit', 20);
      const recipientLimit = num('destination_recipient_limit', 50);
      limits = {
        settings: settings({
          limit: concurrency,
          initial: num('initial_destination_concurrency', 5),
          positive: parseFeedback(param('destination_concurrency_positive_feedback'), `${transport}_destination_concurrency_positive_feedback`, warn),
          negative: parseFeedback(param('destination_concurrency_negative_feedback'), `${transport}_destination_concurrency_negative_feedback`, warn),
          cohortLimit: num('destination_concurrency_failed_cohort_limit', 1),
        }),
        recipientLimit: recipientLimit > 0 ? recipientLimit : Infinity,
        rateDelay: rateDelay * 1000,
      };
      this.limits.set(transport, limits);
    }
    return limits;
  }

  private enqueue(entry: Entry): void {
    entry.msg.outstanding++;
    entry.dest.todo.push(entry);
    this.ready.add(entry.dest);
  }

  /** Stop handing out deliveries (shutdown): what is in flight still completes and is recorded. */
  pause(): void {
    this.paused = true;
  }

  /** Resolves when no delivery is in flight and no result is being written (or after timeoutMs). */
  async idle(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.inDelivery > 0 || this.finishing > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  /**
   * Hands out deliveries: round-robin over destinations, each within its concurrency window.
   * The entries of a dead destination or of an unavailable transport are deferred at once.
   */
  private schedule(): void {
    if (this.paused) return;
    const now = Date.now();
    for (const dest of this.ready) {
      const down = this.unavailable.get(dest.transport);
      if (down && now < down.until) this.deferTodo(dest, down.reason, '4.3.0');
      else if (dest.dead && now >= dest.dead.until) this.reviveDest(dest);
      else if (dest.dead) this.deferTodo(dest, `delivery temporarily suspended: ${dest.dead.reason}`, dest.dead.dsn);
      if (now < dest.suspendedUntil) continue; // rate delay: its timer schedules again
      while (dest.todo.length > 0 && dest.busy < dest.fb.window) {
        this.dispatch(dest.todo.shift()!);
        if (dest.rateDelay > 0) break;
      }
      if (dest.todo.length === 0) this.ready.delete(dest);
    }
  }

  /** Defers every entry waiting for `dest`, without a delivery attempt (relay=none). */
  private deferTodo(dest: Destination, reason: string, dsn: string): void {
    const entries = dest.todo.splice(0);
    const now = Date.now();
    for (const entry of entries) {
      const { msg } = entry;
      const delays = formatDelays(msg.meta.arrival, msg.activated, now, { connect: 0, transmit: 0 }, now);
      for (const r of entry.recipients) {
        const o: RecipientOutcome = { index: r.index, status: 'deferred', dsn, reason, relay: 'none' };
        logDelivery(this.log, msg.meta.queueId, r.address, o, delays);
        msg.outcomes.set(r.index, o);
      }
      if (--msg.outstanding === 0) void this.finish(msg);
    }
  }

  /** A dead destination comes back (minimal_backoff_time passed, a success, or postqueue -f). */
  private reviveDest(dest: Destination): void {
    if (!dest.dead) return;
    clearTimeout(dest.dead.timer);
    dest.dead = undefined;
    revive(dest.fb, dest.busy, dest.settings);
    this.debugWindow('revived', dest);
    if (dest.todo.length > 0) this.ready.add(dest);
  }

  /** Revives the dead destinations whose time is up (each queue run). */
  private reviveDue(): void {
    const now = Date.now();
    for (const dest of this.destinations.values()) if (dest.dead && now >= dest.dead.until) this.reviveDest(dest);
    for (const [transport, down] of this.unavailable) if (now >= down.until) this.transportBack(transport);
  }

  /** postqueue -f (Postfix's F trigger): forget dead destinations and unavailable transports. */
  private forgetDead(): void {
    for (const dest of this.destinations.values()) this.reviveDest(dest);
    for (const transport of [...this.unavailable.keys()]) this.transportBack(transport);
  }

  private transportBack(transport: string): void {
    const down = this.unavailable.get(transport);
    if (!down) return;
    clearTimeout(down.timer);
    this.unavailable.delete(transport);
    for (const dest of this.destinations.values()) if (dest.transport === transport && dest.todo.length > 0) this.ready.add(dest);
  }

  /** The transport's agents failed: its deliveries are deferred for transport_retry_time. */
  private transportDown(transport: string, reason: string): void {
    if (this.unavailable.has(transport)) return;
    const ms = this.transportRetry * 1000;
    const timer = setTimeout(() => {
      this.transportBack(transport);
      this.schedule();
    }, ms);
    timer.unref();
    this.unavailable.set(transport, { reason, until: Date.now() + ms, timer });
    for (const dest of this.destinations.values()) if (dest.transport === transport && dest.todo.length > 0) this.ready.add(dest);
  }

  /** Concurrency feedback from a completed delivery (Postfix's qmgr_queue_throttle / _unthrottle). */
  private feedback(dest: Destination, outcomes: RecipientOutcome[], siteFailure: string | undefined): void {
    if (siteFailure === undefined) {
      if (dest.dead) return this.reviveDest(dest); // "sooner on any success"
      positive(dest.fb, dest.busy, dest.settings);
      this.debugWindow('success', dest);
      return;
    }
    if (dest.dead || !negative(dest.fb, dest.settings)) return this.debugWindow('failure', dest);
    const ms = this.minBackoff * 1000;
    const timer = setTimeout(() => {
      this.reviveDest(dest);
      this.schedule();
    }, ms);
    timer.unref();
    const dsn = outcomes.find((o) => o.status === 'deferred')?.dsn ?? '4.4.1';
    dest.dead = { reason: siteFailure, dsn, until: Date.now() + ms, timer };
    this.debugWindow('dead', dest);
    if (dest.todo.length > 0) this.ready.add(dest);
  }

  /** destination_concurrency_feedback_debug = yes: the window after each adjustment. */
  private debugWindow(what: string, dest: Destination): void {
    if (!this.feedbackDebug) return;
    const { fb, settings: s } = dest;
    const limit = s.limit === Infinity ? 0 : s.limit;
    this.log.info(`${what}: queue ${dest.key}: limit ${limit} window ${fb.window} success ${+fb.success.toFixed(3)} failure ${+fb.failure.toFixed(3)} fail_cohorts ${+fb.failCohorts.toFixed(3)}`);
  }

  private dispatch(entry: Entry): void {
    const { msg, dest } = entry;
    dest.busy++;
    this.inDelivery++;
    const request: DeliveryRequest = {
      queueId: msg.meta.queueId,
      transport: dest.transport,
      nexthop: dest.nexthop,
      sender: msg.meta.sender,
      recipients: entry.recipients,
      arrival: msg.meta.arrival,
      activated: msg.activated,
      size: msg.meta.size,
    };
    this.actor.request<DeliveryReply>(dest.transport, request).then(
      (reply) => {
        if (!entry.msg.admin) this.feedback(entry.dest, reply.outcomes, reply.siteFailure);
        this.delivered(entry, reply.outcomes);
      },
      (err: unknown) => this.agentFailed(entry, err),
    );
  }

  /** The agent did not answer: push back (busy pool), or defer (crash, throttle, no such transport). */
  private agentFailed(entry: Entry, err: unknown): void {
    const code = err instanceof ServiceError ? err.code : 'ERROR';
    if (code === 'BUSY' && entry.msg.admin) return this.delivered(entry, []); // being deleted/held: not again
    if (code === 'BUSY') {
      entry.dest.busy--;
      this.inDelivery--;
      entry.dest.todo.unshift(entry);
      this.ready.add(entry.dest);
      setTimeout(() => this.schedule(), 100);
      return;
    }
    let reason = 'unknown mail transport error';
    if (code === 'NOSERVICE' || code === 'THROTTLED' || code === 'CRASHED') {
      if (code !== 'CRASHED') reason = 'mail transport unavailable';
      this.transportDown(entry.dest.transport, reason);
    }
    if (code === 'NOSERVICE' || code === 'THROTTLED') {
      reason = 'mail transport unavailable';
      if (code === 'NOSERVICE' && !this.warnedTransports.has(entry.dest.transport)) {
        this.warnedTransports.add(entry.dest.transport);
        this.log.warn(`connect to transport private/${entry.dest.transport}: not supported: no such service in master.cf${entry.dest.transport === 'local' ? ' (local delivery is not built yet)' : ''}`);
      }
    } else {
      this.log.warn(`${entry.msg.meta.queueId}: delivery agent ${entry.dest.transport} failed: ${(err as Error)?.message ?? err}`);
    }
    const now = Date.now();
    const delays = formatDelays(entry.msg.meta.arrival, entry.msg.activated, now, { connect: 0, transmit: 0 }, now);
    const outcomes = entry.recipients.map((r): RecipientOutcome => {
      const o: RecipientOutcome = { index: r.index, status: 'deferred', dsn: '4.3.0', reason, relay: 'none' };
      logDelivery(this.log, entry.msg.meta.queueId, r.address, o, delays);
      return o;
    });
    this.delivered(entry, outcomes);
  }

  private delivered(entry: Entry, outcomes: RecipientOutcome[]): void {
    entry.dest.busy--;
    this.inDelivery--;
    if (entry.dest.rateDelay > 0) {
      // <transport>_destination_rate_delay: the destination pauses after each delivery.
      entry.dest.suspendedUntil = Date.now() + entry.dest.rateDelay;
      setTimeout(() => this.schedule(), entry.dest.rateDelay).unref();
    }
    for (const o of outcomes) entry.msg.outcomes.set(o.index, o);
    if (--entry.msg.outstanding === 0) void this.finish(entry.msg);
    if (entry.dest.todo.length > 0) this.ready.add(entry.dest);
    this.schedule();
  }

  /** Every delivery of this attempt is back: bounce, defer or remove; then the message leaves memory. */
  private async finish(msg: ActiveMessage): Promise<void> {
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
  private forceExpire(msg: ActiveMessage, pending: DeliveryRecipient[]): void {
    const now = Date.now();
    const delays = formatDelays(msg.meta.arrival, msg.activated, now, { connect: 0, transmit: 0 }, now);
    for (const r of pending) {
      const o: RecipientOutcome = { index: r.index, status: 'deferred', dsn: '4.7.0', reason: 'message is administratively expired', relay: 'none' };
      logDelivery(this.log, msg.meta.queueId, r.address, o, delays);
      msg.outcomes.set(r.index, o);
    }
    void this.finish(msg);
  }

  private async finishAttempt(msg: ActiveMessage): Promise<void> {
    msg.finishing = true;
    if (msg.admin) return this.finishAdmin(msg, msg.admin);
    const { meta } = msg;
    const now = Date.now();
    const bounced: RecipientOutcome[] = [];
    const deferred: RecipientOutcome[] = [];
    for (const o of msg.outcomes.values()) {
      if (o.status === 'bounced') bounced.push(o);
      else if (o.status === 'deferred') deferred.push(o);
    }
    const lifetime = meta.sender === '' ? this.bounceLifetime : this.queueLifetime;
    if (deferred.length > 0 && (meta.forcedExpire || expired(now, meta.arrival, lifetime))) {
      this.log.info(`${meta.queueId}: from=<${meta.sender}>, status=expired, returned to sender`);
      bounced.push(...deferred.splice(0));
    }
    try {
      if (bounced.length > 0 && !(await this.bounce(meta, bounced))) {
        deferred.push(...bounced.splice(0)); // no notice written: keep them and try again later
      }
      const recipients = meta.recipients.map((r, i) => {
        const o = msg.outcomes.get(i);
        if (!o) return r;
        if (deferred.includes(o)) return { ...r, reason: o.reason };
        return { ...r, done: true };
      });
      if (deferred.length === 0) {
        await this.store.remove(meta.queueId, 'active');
        this.log.info(`${meta.queueId}: removed`);
      } else {
        await this.store.move(meta.queueId, 'deferred', {
          recipients,
          attempts: meta.attempts + 1,
          nextAttempt: nextAttempt(now, meta.arrival, this.minBackoff, this.maxBackoff),
        }, 'active');
      }
    } catch (err) {
      this.log.warn(`${meta.queueId}: queue update failed: ${(err as Error).message}; the message stays in the active queue until restart`);
    } finally {
      this.active.delete(meta.queueId);
    }
    if (this.incomingBacklog && this.room()) void this.scan(false);
  }

  /**
   * The end of an attempt of a message postsuper asked to delete, hold or requeue (its deliveries
   * in flight are back). Delete: removed, no notice. Hold / requeue: what was delivered or
   * bounced is recorded (bounces are sent) and the rest goes to hold / incoming instead of
   * deferred; a message with nothing left is removed as usual.
   */
  private async finishAdmin(msg: ActiveMessage, admin: NonNullable<ActiveMessage['admin']>): Promise<void> {
    const { meta } = msg;
    const id = meta.queueId;
    const events: AdminEventName[] = [];
    try {
      if (admin.action === 'delete') {
        if (await this.store.remove(id, 'active')) events.push('removed');
      } else {
        const bounced = [...msg.outcomes.values()].filter((o) => o.status === 'bounced');
        const noticeSent = bounced.length === 0 || (await this.bounce(meta, bounced));
        const recipients = meta.recipients.map((r, i) => {
          const o = msg.outcomes.get(i);
          if (!o) return r;
          if (o.status === 'sent' || (o.status === 'bounced' && noticeSent)) return { ...r, done: true };
          return admin.action === 'requeue' ? r : { ...r, reason: o.reason };
        });
        if (recipients.every((r) => r.done)) {
          await this.store.remove(id, 'active');
          this.log.info(`${id}: removed`);
        } else if (admin.action === 'hold') {
          if (await this.store.move(id, 'hold', { recipients, attempts: meta.attempts + 1 }, 'active')) events.push('placed on hold');
        } else {
          const patch = { recipients: recipients.map(({ reason: _r, ...r }) => r), forcedExpire: false };
          if (await this.store.move(id, 'incoming', patch, 'active')) events.push('requeued');
        }
      }
    } catch (err) {
      this.log.warn(`${id}: queue update failed: ${(err as Error).message}; the message stays in the active queue until restart`);
    } finally {
      this.active.delete(id);
    }
    for (const w of admin.waiters) w(events);
    if (this.incomingBacklog && this.room()) void this.scan(false);
  }

  /**
   * Sends the sender a non-delivery notification for `failed`. Mail from <> is never bounced (no
   * bounce loops); Postfix would notify the postmaster for notify_classes=2bounce — issue 4.
   * Resolves false if the notice could not be queued (the recipients are then kept).
   */
  private async bounce(meta: MessageMeta, failed: RecipientOutcome[]): Promise<boolean> {
    if (meta.sender === '') {
      this.log.info(`${meta.queueId}: undeliverable bounce from <> discarded (no bounce loops)`);
      return true;
    }
    const original = this.store.content(meta.queueId) ?? Buffer.alloc(0);
    const headersOnly = meta.ret === 'HDRS' || original.length > this.bounceSizeLimit;
    const request: BounceRequest = {
      queueId: meta.queueId,
      sender: meta.sender,
      arrival: meta.arrival,
      failed: failed.map((o) => ({ address: meta.recipients[o.index]!.address, dsn: o.dsn, reason: o.reason, relay: o.relay, ...(meta.recipients[o.index]!.orcpt ? { orcpt: meta.recipients[o.index]!.orcpt } : {}) })),
      original: headersOnly ? headerSection(original) : original,
      headersOnly,
    };
    try {
      const notice = await this.actor.request<BounceReply>('bounce', request);
      const bounceId = newQueueId();
      const queued = await this.actor.request<CleanupReply>('cleanup', {
        queueId: bounceId,
        sender: '',
        recipients: [{ address: meta.sender }],
        content: notice.content,
        arrival: Date.now(),
        origin: 'bounce',
      });
      if (!queued.ok) throw new Error(`${queued.code} ${queued.dsn} ${queued.text}`);
      this.log.info(`${meta.queueId}: sender non-delivery notification: ${bounceId}`);
      return true;
    } catch (err) {
      this.log.warn(`${meta.queueId}: bounce notice failed: ${(err as Error).message}`);
      return false;
    }
  }
}

/** The header section of a message (up to and including the blank line). */
function headerSection(content: Buffer): Buffer {
  const crlf = content.indexOf('\r\n\r\n');
  if (crlf >= 0) return content.subarray(0, crlf + 4);
  const lf = content.indexOf('\n\n');
  return lf >= 0 ? content.subarray(0, lf + 2) : content;
}

/** "transport:nexthop" of a content filter applied to a resolved route (empty nexthop: the route's). */
function filterRoute(route: Route, filter: string): Route {
  const colon = filter.indexOf(':');
  const transport = (colon < 0 ? filter : filter.slice(0, colon)).trim();
  const nexthop = (colon < 0 ? '' : filter.slice(colon + 1)).trim() || route.nexthop;
  return { ...route, transport, nexthop, key: `${transport}:${nexthop}` };
}
