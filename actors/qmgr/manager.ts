/**
 * The queue manager (Postfix's qmgr.c): the parts below wired together, the triggers that feed
 * the active queue (cleanup's "queued", the queue_run_delay timer, postqueue -f / -s / -i,
 * postkick, postsuper while the server runs), and the loop that hands out deliveries —
 * transports round-robin, each transport's next entry chosen by its selector (./strategy.ts:
 * nqmgr's preemptive job list for qmgr, oqmgr's destinations round-robin, first in first out).
 *
 * The parts, one Postfix seam each, each built from explicit collaborators so that a test can
 * drive it in-process (test/qmgr-parts.test.ts):
 *   ./active.ts     qmgr_active.c      incoming / deferred → active, corrupt, stranded, flow tokens
 *   ./message.ts    qmgr_message.c     recipients read in slices, resolved, sorted into entries
 *   ./entry.ts      qmgr_entry.c, qmgr_peer.c (and the job side of qmgr_job.c; ./scheduler.ts
 *                   is the job list itself)
 *   ./queue.ts      qmgr_queue.c       destinations: concurrency window, feedback, dead
 *   ./transport.ts  qmgr_transport.c   per-transport limits, down / back
 *   ./deliver.ts    qmgr_deliver.c     an entry to its agent, and the agent's reply
 *   ./done.ts       qmgr_active_done, qmgr_defer.c, qmgr_bounce.c: the end of an attempt
 * Here remain what Postfix keeps in qmgr.c, qmgr_scan.c and the selection loop: scan(),
 * schedule() (qmgr_transport_select, then the transport's entry) and deferTodo() (qmgr_defer_todo).
 */
import { metrics, registerGauges } from '../../src/metrics/thread.js';
import { QUEUE_NAMES } from '../../src/queue/types.js';
import type { Config } from '../../src/config/index.js';
import { readParams, type Params } from '../../src/config/declared.js';
import type { Logger } from '../../src/log/maillog.js';
import type { QueueStore } from '../../src/queue/store.js';
import type { Actor } from '../../src/runtime/endpoint.js';
import { flowOf, type MailFlow } from '../../src/runtime/flow.js';
import { formatDelays } from '../../src/delivery/log.js';
import { logOutcome } from './probes.js';
import { deliveryService, type DeliveryReply, type RecipientOutcome } from '../protocol.js';
import type { AdminEventName } from '../../src/queue/admin.js';
import { Notifier, noticeConfig, NOTICE_PARAMS } from './notices.js';
import { Resolver, RESOLVE_PARAMS } from './resolve.js';
import { ProbeReports, PROBE_PARAMS } from './probes.js';
import { FastFlushFeed, FAST_FLUSH_PARAMS } from './fast-flush.js';
import { DestinationRing, jobSelector } from './strategy.js';
import type { SchedulerName } from '../../src/config/queue-managers.js';
import { Transports, TRANSPORT_PARAMS } from './transport.js';
import { Destinations, DESTINATION_PARAMS, mayStart, type Destination } from './queue.js';
import { Entries, type Entry, type Job } from './entry.js';
import { Messages, MESSAGE_PARAMS } from './message.js';
import { Deliveries } from './deliver.js';
import { WARM_REQUEST } from '../../src/runtime/wire.js';
import { AttemptEnd, ATTEMPT_END_PARAMS } from './done.js';
import { ActiveQueue, ACTIVE_PARAMS } from './active.js';

/**
 * What qmgr reads by name, once per thread with the registry's types (index.ts declares it):
 * each part's own set, declared beside it, and queue_run_delay here. A reload reads them again
 * from the new configuration. Per-transport limits stay read by their computed names
 * (./transport.ts limitsOf), and the in-process resolver reads trivial-rewrite's set.
 */
export const QMGR_PARAMS = {
  ...ACTIVE_PARAMS,
  ...MESSAGE_PARAMS,
  ...DESTINATION_PARAMS,
  ...TRANSPORT_PARAMS,
  ...ATTEMPT_END_PARAMS,
  ...NOTICE_PARAMS,
  ...RESOLVE_PARAMS,
  ...PROBE_PARAMS,
  ...FAST_FLUSH_PARAMS,
  'queue_run_delay': 'time',
} as const;
export type QmgrParams = Params<typeof QMGR_PARAMS>;

export class QueueManager {
  private readonly transports: Transports;
  private readonly destinations: Destinations;
  private readonly entries: Entries;
  private readonly messages: Messages;
  private readonly deliveries: Deliveries;
  private readonly end: AttemptEnd;
  private readonly active: ActiveQueue;
  /** Where the next round-robin pass over transports starts. */
  private transportTurn = 0;
  private runDelay: number;
  private readonly flow: MailFlow | null;
  private scanning = false;
  private timer: NodeJS.Timeout | null = null;
  /** start() is recovering and scanning the queues: a new message waits for its last scan. */
  private starting = false;
  private queuedEarly = false;
  private paused = false;

  /**
   * `scheduler`: the master.cf command this queue manager runs as (./strategy.ts); fixed for the
   * thread's life, as a Postfix queue manager is one program or the other.
   */
  constructor(config: Config, private readonly store: QueueStore, private readonly actor: Actor, private readonly log: Logger, readonly scheduler: SchedulerName = 'qmgr', p: QmgrParams = readParams(config, QMGR_PARAMS, 'qmgr')) {
    this.flow = flowOf(actor.data);
    const schedule = () => this.schedule();
    const resolver = new Resolver(config, actor, log, p);
    const probes = new ProbeReports(p, actor, log);
    const fastFlush = new FastFlushFeed(config, actor, log, p);
    this.transports = new Transports(config, log, scheduler, {
      selector: (jobs) => (scheduler === 'oqmgr'
        ? new DestinationRing<Destination, Entry>({
          open: (dest, now) => dest.todo.length > 0 && mayStart(dest, now),
          take: (dest) => this.entries.takeOldest(dest),
          live: (dest) => dest.todo.length > 0 || dest.busy > 0,
        })
        : jobSelector<Job, Destination, Entry>(jobs, (job, now) => this.entries.pickPeer(job, now))),
      wake: (transport) => this.destinations.wake(transport),
      schedule,
      warm: (transport) => actor.send(transport, WARM_REQUEST),
    }, p);
    this.destinations = new Destinations(p, this.transports, log, { schedule });
    this.entries = new Entries(this.transports, this.destinations);
    const parts = { transports: this.transports, destinations: this.destinations, entries: this.entries };
    this.messages = new Messages(p, resolver, store, log, scheduler, parts, {
      maybeFinish: (msg) => this.active.maybeFinish(msg),
      schedule,
      probesActive: () => this.active.probesActive,
    });
    this.runDelay = Math.max(1, p.queue_run_delay);
    const notifier = new Notifier(noticeConfig(p), store, actor, log);
    this.end = new AttemptEnd(p, { notifier, probes, fastFlush }, store, log, {
      forget: (queueId, probe) => this.active.forget(queueId, probe),
      strand: (queueId) => this.active.stranded.add(queueId),
      after: () => {
        this.active.flowStep(false);
        if (this.active.incomingBacklog && this.active.room()) void this.scan(false);
      },
    });
    this.active = new ActiveQueue(p, store, log, this.flow, { ...parts, messages: this.messages, end: this.end });
    this.deliveries = new Deliveries((transport, request, affinity) => deliveryService.call(actor, request, transport, affinity), log, parts, {
      entryBack: (msg) => {
        this.active.entryBack(msg);
        // oqmgr held new mail back for qmgr_message_recipient_limit (room()): take it once there is room.
        if (this.scheduler === 'oqmgr' && this.active.incomingBacklog && this.active.room()) void this.scan(false);
      },
      schedule,
    });
  }

  /**
   * Applies a new configuration (postactor reload) without losing the active queue: routing and
   * limits change for what is scheduled from now on; deliveries in flight finish as they are.
   * The declared parameters are read again from the new configuration.
   */
  reconfigure(config: Config): void {
    const p = readParams(config, QMGR_PARAMS, 'qmgr');
    const resolver = new Resolver(config, this.actor, this.log, p);
    const probes = new ProbeReports(p, this.actor, this.log);
    const fastFlush = new FastFlushFeed(config, this.actor, this.log, p);
    this.messages.reconfigure(p, resolver);
    this.transports.reconfigure(config, p);
    this.active.reconfigure(p);
    this.destinations.reconfigure(p);
    const runDelay = Math.max(1, p.queue_run_delay);
    if (this.timer && runDelay !== this.runDelay) {
      clearInterval(this.timer);
      this.timer = setInterval(() => void this.scan(false), runDelay * 1000);
    }
    this.runDelay = runDelay;
    const notifier = new Notifier(noticeConfig(p), this.store, this.actor, this.log);
    this.end.reconfigure(p, { notifier, probes, fastFlush });
  }

  /**
   * Start-up: what was active goes back to incoming (as Postfix does), then both queues are
   * scanned. smtpd runs meanwhile (master does not wait for qmgr, as Postfix's master does not):
   * a message queued before the scan is done is taken by one more scan of incoming after it.
   */
  async start(): Promise<void> {
    this.starting = true;
    const recovered = await this.store.recoverActive();
    if (recovered) this.log.info(`recovered ${recovered} message(s) from the active queue`);
    this.active.incomingBacklog = true;
    await this.scan(true);
    this.starting = false;
    if (this.queuedEarly) {
      this.queuedEarly = false;
      void this.scan(true);
    }
    this.active.flowStep(false);
    this.timer = setInterval(() => void this.scan(false), this.runDelay * 1000);
  }

  /**
   * The gauges qmgr alone knows, computed when a metrics snapshot is taken (once a second at
   * most, never per message): queue sizes from the store's index, and each destination's
   * deliveries in progress, concurrency window and, while it is dead, the time left before retry.
   */
  registerMetrics(): void {
    registerGauges((registry, { Gauge }) => {
      const store = this.store;
      const destinations = this.destinations.all;
      new Gauge({
        name: 'postactor_queue_messages', help: 'Messages in each queue.', labelNames: ['queue'], registers: [registry],
        collect() {
          for (const q of QUEUE_NAMES) this.set({ queue: q }, store.count(q));
        },
      });
      const labels = (d: Destination) => ({ transport: d.transport, nexthop: d.nexthop });
      new Gauge({
        name: 'postactor_destination_concurrency', help: 'Deliveries in progress per destination (transport, nexthop).', labelNames: ['transport', 'nexthop'], registers: [registry],
        collect() {
          this.reset();
          for (const d of destinations.values()) this.inc(labels(d), d.busy);
        },
      });
      new Gauge({
        name: 'postactor_destination_concurrency_limit', help: 'Each destination\'s concurrency window (0: dead).', labelNames: ['transport', 'nexthop'], registers: [registry],
        collect() {
          this.reset();
          for (const d of destinations.values()) this.inc(labels(d), d.fb.window);
        },
      });
      new Gauge({
        name: 'postactor_destination_backoff_seconds', help: 'Seconds until a dead destination is tried again.', labelNames: ['transport', 'nexthop'], registers: [registry],
        collect() {
          this.reset();
          const now = Date.now();
          for (const d of destinations.values()) if (d.dead) this.inc(labels(d), Math.max(0, (d.dead.until - now) / 1000));
        },
      });
    });
  }

  status(): { active: number; inDelivery: number; destinations: number } {
    return { active: this.active.messages.size, inDelivery: this.deliveries.inDelivery, destinations: this.destinations.all.size };
  }

  /** cleanup's "queued": take the new message now, unless the active queue is full. */
  queued(queueId: string): void {
    if (this.starting) {
      // The active queue is being recovered and scanned (start()): taken by the scan after it.
      this.queuedEarly = true;
      return;
    }
    if (!this.active.room()) {
      this.active.incomingBacklog = true;
      return;
    }
    void this.active.activate(queueId, 'incoming');
  }

  /** postactor flush / postqueue -f: every deferred message is due now. */
  flush(): void {
    this.forgetDead();
    void this.scan(false, Infinity);
  }

  /**
   * postkick public qmgr REQUESTS, as Postfix's qmgr reads each character: F forgets the dead
   * destinations first; I scans incoming; D the deferred messages that are due; A all deferred
   * messages, due or not; W (a plain wake-up, as master's wakeup timer sends) scans as the timer does.
   * Other characters are ignored, as Postfix does.
   */
  kick(requests: string): void {
    if (requests.includes('F')) this.forgetDead();
    const incoming = /[IAW]/.test(requests);
    if (!incoming && !/[DA]/.test(requests)) return;
    void this.scan(incoming, requests.includes('A') ? Infinity : Date.now());
  }

  /**
   * postqueue -s site / -i queue_id: the deferred messages with a pending recipient in domain
   * `site`, or the one message `queueId`, are due now; then a scan takes them. As Postfix's
   * flush_send_file() only moves the file to incoming and asks qmgr for a scan, a message already
   * in incoming is not taken at once: the scan takes it within qmgr_message_active_limit.
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
    const incoming = match.queueId !== undefined && this.store.get(match.queueId)?.queue === 'incoming';
    if (incoming) {
      n++;
      this.active.incomingBacklog = true; // a scan already running does not drop the request
    }
    if (n) void this.scan(incoming, now);
    return n;
  }

  // --- postsuper while the server runs (see src/queue/admin.ts and ./admin.ts) ---

  /** True if the message is in qmgr's memory (active, or being activated). */
  holds(queueId: string): boolean {
    return this.active.holds(queueId);
  }

  /** Resolves once the message is neither being activated nor being finished. */
  async settle(queueId: string): Promise<void> {
    while (this.active.activating.has(queueId) || this.active.messages.get(queueId)?.finishing) await new Promise((r) => setTimeout(r, 5));
  }

  /**
   * delete / hold / requeue an active message: deliveries not yet handed out are dropped, those
   * in flight are awaited, and then the message is deleted, held or requeued instead of being
   * deferred. Resolves null if the message is not (or no longer) ours to change.
   */
  adminActive(queueId: string, action: 'delete' | 'hold' | 'requeue'): Promise<AdminEventName[]> | null {
    const msg = this.active.messages.get(queueId);
    if (!msg || msg.finishing) return null;
    const waiting = new Promise<AdminEventName[]>((resolve) => {
      if (msg.admin) {
        if (action === 'delete') msg.admin.action = 'delete'; // delete wins over hold / requeue
        msg.admin.waiters.push(resolve);
      } else {
        msg.admin = { action, waiters: [resolve] };
      }
    });
    for (const dest of this.destinations.all.values()) {
      const drop = dest.todo.filter((e) => e.msg === msg);
      if (drop.length === 0) continue;
      dest.todo.splice(0, dest.todo.length, ...dest.todo.filter((e) => e.msg !== msg));
      for (const e of drop) {
        msg.outstanding--;
        this.entries.unqueue(e);
      }
    }
    this.active.maybeFinish(msg);
    return waiting;
  }

  /** postsuper -e / -f on an active message: it expires at the end of this attempt. */
  expireActive(queueId: string): boolean {
    const msg = this.active.messages.get(queueId);
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
    this.destinations.sweepIdle(Date.now());
    this.scanning = true;
    const active = this.active;
    try {
      if (active.stranded.size) await active.requeueStranded();
      if (incoming || active.incomingBacklog) {
        active.incomingBacklog = false;
        // IDs first, then the moves: activate() takes each message out of the index being read,
        // and a live cursor over it then skips the next entry (every other message stayed behind).
        const ids = [...this.store.list('incoming', active.limit)];
        if (ids.length >= active.limit) active.incomingBacklog = true;
        if (!(await active.activateAll(ids, 'incoming'))) active.incomingBacklog = true;
      }
      await active.activateAll([...this.store.dueDeferred(dueBy, active.limit)], 'deferred');
    } finally {
      this.scanning = false;
    }
  }

  /** Stop handing out deliveries (shutdown): what is in flight still completes and is recorded. */
  pause(): void {
    this.paused = true;
    // No more scans either: nothing taken now would be handed out.
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Resolves when no delivery is in flight and no result is being written (or after timeoutMs). */
  async idle(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.deliveries.inDelivery > 0 || this.end.finishing > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  /**
   * Hands out deliveries, as both of Postfix's queue managers do: transports round-robin, one
   * entry per transport per turn, chosen by the transport's selector (./strategy.ts): nqmgr's job
   * list (preemption, then jobs in list order, then the job's destinations round-robin) or
   * oqmgr's destinations round-robin, first in first out; each destination within its
   * concurrency window. First, the entries of a dead destination or of an unavailable transport
   * are deferred at once.
   */
  private schedule(): void {
    if (this.paused) return;
    const now = Date.now();
    const { ready } = this.destinations;
    for (const dest of ready) {
      ready.delete(dest);
      const down = this.transports.downAt(dest.transport, now);
      if (down) this.deferTodo(dest, down.reason, '4.3.0');
      else if (dest.dead && now >= dest.dead.until) this.destinations.revive(dest);
      else if (dest.dead) this.deferTodo(dest, `delivery temporarily suspended: ${dest.dead.reason}`, dest.dead.dsn);
    }
    const ts = [...this.transports.all.values()];
    if (ts.length === 0) return;
    // Bounded: each pass hands out at least one entry or ends the loop.
    for (let progress = true, n = 0; progress && n < 1_000_000; ) {
      progress = false;
      for (let k = 0; k < ts.length; k++) {
        const t = ts[(this.transportTurn + k) % ts.length]!;
        if (t.full || now < t.suspendedUntil || this.transports.isDown(t.name) || t.selector.idle()) continue;
        const entry = t.selector.select(now);
        if (!entry) continue;
        this.deliveries.dispatch(entry);
        progress = true;
        n++;
      }
      this.transportTurn = (this.transportTurn + 1) % ts.length;
    }
  }

  /** Defers every entry waiting for `dest`, without a delivery attempt (relay=none; Postfix's qmgr_defer_todo). */
  private deferTodo(dest: Destination, reason: string, dsn: string): void {
    const entries = dest.todo.splice(0);
    const now = Date.now();
    for (const entry of entries) {
      this.entries.unqueue(entry);
      const { msg } = entry;
      const delays = formatDelays(msg.meta.arrival, msg.activated, now, { connect: 0, transmit: 0 }, now);
      for (const r of entry.recipients) {
        const o: RecipientOutcome = { index: r.index, status: 'deferred', dsn, reason, relay: 'none' };
        logOutcome(this.log, msg, r, o, delays);
        metrics().deliveries.inc({ transport: dest.transport, status: o.status });
        msg.outcomes.set(r.index, o);
      }
      msg.outstanding--;
      this.active.maybeFinish(msg);
    }
  }

  /** Revives the dead destinations and the unavailable transports whose time is up (each queue run). */
  private reviveDue(): void {
    const now = Date.now();
    this.destinations.reviveDue(now);
    this.transports.backDue(now);
  }

  /** postqueue -f (Postfix's F trigger): forget dead destinations and unavailable transports. */
  private forgetDead(): void {
    this.destinations.forgetDead();
    this.transports.forgetDown();
  }
}
