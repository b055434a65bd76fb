/**
 * The active queue and its scheduling (first version): messages in memory, one queue per
 * destination with a concurrency limit and a recipient limit per delivery, round-robin over
 * destinations, and the end of each message's attempt (remove, defer with backoff, bounce).
 * Concurrency feedback and dead destinations (./feedback.ts, Postfix's qmgr_queue.c): a reply
 * with a siteFailure is negative feedback, any other completed delivery positive; a dead
 * destination's entries are deferred at once ("delivery temporarily suspended: …") until
 * minimal_backoff_time has passed or postqueue -f forgets it. A transport whose agents cannot be
 * reached or crash is unavailable for transport_retry_time. Which entry goes next is the
 * scheduler's choice (./strategy.ts): nqmgr's preemptive job list (qmgr) or oqmgr's destinations
 * round-robin, first in first out (oqmgr).
 */
import { metrics, registerGauges } from '../../src/metrics/thread.js';
import { QUEUE_NAMES } from '../../src/queue/types.js';
import { parseTime, transportParam, type Config } from '../../src/config/index.js';
import type { Logger } from '../../src/log/maillog.js';
import type { QueueStore } from '../../src/queue/store.js';
import type { LogKind, MessageMeta, QueueName, RecipientRecord, StatusRecord } from '../../src/queue/types.js';
import type { Actor } from '../../src/runtime/endpoint.js';
import { ServiceError } from '../../src/runtime/wire.js';
import { flowOf, type MailFlow } from '../../src/runtime/flow.js';
import { formatDelays, logDelivery } from '../../src/delivery/log.js';
import { xforwardAttrs } from '../../src/smtp/xforward.js';
import type { DeliveryRecipient, DeliveryReply, DeliveryRequest, RecipientOutcome } from '../protocol.js';
import type { AdminEventName } from '../../src/queue/admin.js';
import { expired, nextAttempt } from './backoff.js';
import { Notifier, noticeConfig, statusRecord, wants } from './notices.js';
import { Resolver, type Route } from './resolve.js';
import { ProbeReports } from './probes.js';
import { FastFlushFeed } from './fast-flush.js';
import { DEFAULT_SLOTS, JobList, newJob, type SchedJob, type SlotParams } from './scheduler.js';
import type { SchedulerName } from '../../src/config/queue-managers.js';
import { DestinationRing, jobSelector, type EntrySelector } from './strategy.js';
import { isDead, negative, newWindow, parseFeedback, positive, revive, settings, type WindowSettings, type WindowState } from './feedback.js';

/** Messages a queue scan activates at once (their moves share one commit). */
const SCAN_BATCH = 100;

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
  /** Recipients enter memory in slices (readSlice): the pending ones, and how far they are read. */
  rcpt: RecipientSlices;
}

interface RecipientSlices {
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

interface Entry {
  msg: ActiveMessage;
  dest: Destination;
  recipients: DeliveryRecipient[];
  job: Job;
  /** When the delivery request went to the agent (ms): the metrics' queue and transfer delays. */
  dispatched?: number;
}

/** nqmgr's job: one message within one transport, on that transport's job list (./scheduler.ts). */
interface Job extends SchedJob {
  msg: ActiveMessage;
  transport: Transport;
  /** One peer per destination: this job's entries waiting for it, served round-robin. */
  peers: Peer[];
  peerOf: Map<Destination, Peer>;
  rr: number;
  /** Entries back from their delivery (or deferred without one). */
  doneEntries: number;
}

interface Peer {
  job: Job;
  dest: Destination;
  entries: Entry[];
}

/** A master.cf transport as the scheduler sees it: its job list, deliveries in flight, rate delay. */
interface Transport {
  name: string;
  /** Its jobs (message × transport): nqmgr selects through them; oqmgr keeps them for the bookkeeping only. */
  jobs: JobList<Job>;
  /** How its next entry is chosen: qmgr's or oqmgr's (./strategy.ts). */
  selector: EntrySelector<Destination, Entry>;
  jobOf: Map<ActiveMessage, Job>;
  inDelivery: number;
  /** Its agents answered BUSY: nothing more is handed out until a delivery of it completes. */
  full: boolean;
  /** <transport>_transport_rate_delay in ms (0: none): one delivery at a time, then a pause. */
  rateDelay: number;
  suspendedUntil: number;
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
  /** Its transport's blocker tag when a job found it full (a delivery back then unblocks the transport's jobs). */
  blocker: number;
}

interface TransportLimits {
  settings: WindowSettings;
  recipientLimit: number;
  rateDelay: number;
  transportRateDelay: number;
  slots: SlotParams;
}

export class QueueManager {
  private readonly active = new Map<string, ActiveMessage>();
  private readonly activating = new Set<string>();
  /**
   * Messages whose end of attempt could not be written (a failed commit: a full disk): they are
   * still in the active queue on disk but no longer in memory. Each scan puts them back into
   * incoming; what this attempt delivered may then be delivered again (duplicates, never loss).
   */
  private readonly stranded = new Set<string>();
  private readonly destinations = new Map<string, Destination>();
  private readonly ready = new Set<Destination>();
  private readonly transports = new Map<string, Transport>();
  /** Where the next round-robin pass over transports starts. */
  private transportTurn = 0;
  /** Recipients of all active messages in memory (qmgr_message_recipient_limit). */
  private rcptInMemory = 0;
  private rcptLimit!: number;
  private rcptMinimum!: number;
  /** oqmgr: recipients read per message at a time, qmgr_message_recipient_limit × qmgr_fudge_factor %. */
  private fudgeSlice!: number;
  // Settings from main.cf; replaced as a whole by reconfigure() on `postactor reload`.
  private resolver!: Resolver;
  private probes!: ProbeReports;
  private fastFlush!: FastFlushFeed;
  /** Probes (trace mode probe) in the active queue, and address_verify_pending_request_limit. */
  private probesActive = 0;
  private pendingProbeLimit!: number;
  private activeLimit!: number;
  private minBackoff!: number;
  private maxBackoff!: number;
  private queueLifetime!: number;
  private bounceLifetime!: number;
  private runDelay!: number;
  private notifier!: Notifier;
  private readonly warnedTransports = new Set<string>();
  private readonly limits = new Map<string, TransportLimits>();
  /** Transports whose agents failed (NOSERVICE, THROTTLED, CRASHED): deferred until `until`. */
  private readonly unavailable = new Map<string, { reason: string; until: number; timer: NodeJS.Timeout }>();
  private transportRetry!: number;
  private feedbackDebug!: boolean;
  /** in_flow_delay (s) and the flow tokens shared with cleanup (src/runtime/flow.ts). */
  private inFlowDelay!: number;
  private procLimit!: number;
  private readonly flow: MailFlow | null;
  private incomingBacklog = false;
  private scanning = false;
  private timer: NodeJS.Timeout | null = null;
  private inDelivery = 0;
  private paused = false;
  /** finish() calls still writing to the store. */
  private finishing = 0;

  /**
   * `scheduler`: the master.cf command this queue manager runs as (./strategy.ts); fixed for the
   * thread's life, as a Postfix queue manager is one program or the other.
   */
  constructor(private config: Config, private readonly store: QueueStore, private readonly actor: Actor, private readonly log: Logger, readonly scheduler: SchedulerName = 'qmgr') {
    this.flow = flowOf(actor.data);
    this.reconfigure(config);
  }

  /**
   * Applies a new configuration (postactor reload) without losing the active queue: routing and
   * limits change for what is scheduled from now on; deliveries in flight finish as they are.
   */
  reconfigure(config: Config): void {
    this.config = config;
    this.resolver = new Resolver(config, this.actor, this.log);
    this.probes = new ProbeReports(config, this.actor, this.log);
    this.fastFlush = new FastFlushFeed(config, this.actor, this.log);
    this.pendingProbeLimit = config.getInt('address_verify_pending_request_limit');
    this.limits.clear();
    for (const t of this.transports?.values() ?? []) {
      const limits = this.transportLimits(t.name);
      t.jobs.params = limits.slots;
      t.rateDelay = limits.transportRateDelay;
    }
    this.activeLimit = config.getInt('qmgr_message_active_limit');
    this.rcptLimit = Math.max(1, config.getInt('qmgr_message_recipient_limit'));
    this.rcptMinimum = Math.max(1, config.getInt('qmgr_message_recipient_minimum'));
    this.fudgeSlice = Math.max(1, Math.floor((this.rcptLimit * Math.min(100, Math.max(10, config.getInt('qmgr_fudge_factor')))) / 100));
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
    this.inFlowDelay = config.getTime('in_flow_delay');
    this.procLimit = Math.max(1, config.getInt('default_process_limit'));
    this.notifier = new Notifier(noticeConfig(config), this.store, this.actor, this.log);
  }

  /** Start-up: what was active goes back to incoming (as Postfix does), then both queues are scanned. */
  async start(): Promise<void> {
    const recovered = await this.store.recoverActive();
    if (recovered) this.log.info(`recovered ${recovered} message(s) from the active queue`);
    this.incomingBacklog = true;
    await this.scan(true);
    this.flowStep(false);
    this.timer = setInterval(() => void this.scan(false), this.runDelay * 1000);
  }

  /**
   * Postfix's global flow control (mail_flow, in_flow_delay): a token back for each message taken
   * from incoming, the pool filled up to default_process_limit while incoming is empty. When
   * qmgr falls behind (active queue full, incoming piling up) the tokens run out and cleanup
   * slows each new message by in_flow_delay.
   */
  private flowStep(fedFromIncoming: boolean): void {
    if (!this.flow || this.inFlowDelay <= 0) return;
    this.flow.replenish(fedFromIncoming, !this.incomingBacklog, this.procLimit);
  }

  /**
   * The gauges qmgr alone knows, computed when a metrics snapshot is taken (once a second at
   * most, never per message): queue sizes from the store's index, and each destination's
   * deliveries in progress, concurrency window and, while it is dead, the time left before retry.
   */
  registerMetrics(): void {
    registerGauges((registry, { Gauge }) => {
      const store = this.store;
      const destinations = this.destinations;
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
    return { active: this.active.size, inDelivery: this.inDelivery, destinations: this.destinations.size };
  }

  /** cleanup's "queued": take the new message now, unless the active queue is full. */
  queued(queueId: string): void {
    if (!this.room()) {
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
      const drop = dest.todo.filter((e) => e.msg === msg);
      if (drop.length === 0) continue;
      dest.todo.splice(0, dest.todo.length, ...dest.todo.filter((e) => e.msg !== msg));
      for (const e of drop) {
        msg.outstanding--;
        this.unqueue(e);
      }
    }
    this.maybeFinish(msg);
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
    this.sweepIdle();
    this.scanning = true;
    try {
      if (this.stranded.size) await this.requeueStranded();
      if (incoming || this.incomingBacklog) {
        this.incomingBacklog = false;
        // IDs first, then the moves: activate() takes each message out of the index being read,
        // and a live cursor over it then skips the next entry (every other message stayed behind).
        const ids = [...this.store.list('incoming', this.activeLimit)];
        if (ids.length >= this.activeLimit) this.incomingBacklog = true;
        if (!(await this.activateAll(ids, 'incoming'))) this.incomingBacklog = true;
      }
      await this.activateAll([...this.store.dueDeferred(dueBy, this.activeLimit)], 'deferred');
    } finally {
      this.scanning = false;
    }
  }

  /** Moves a damaged message from active to corrupt (Postfix's qmgr_active_corrupt). */
  private async saveCorrupt(meta: MessageMeta, why: string): Promise<void> {
    const id = meta.queueId;
    this.log.warn(`${id}: ${why}`);
    try {
      if (await this.store.move(id, 'corrupt', {}, 'active')) this.log.warn(`saving corrupt file "${id}" from queue "active" to queue "corrupt"`);
    } catch (err) {
      this.log.warn(`${id}: move to the corrupt queue failed: ${(err as Error).message}`);
      this.stranded.add(id);
    }
  }

  /** Stranded messages (see `stranded`) back into incoming; each stays stranded until that commits. */
  private async requeueStranded(): Promise<void> {
    for (const id of [...this.stranded]) {
      try {
        await this.store.move(id, 'incoming', {}, 'active');
        this.stranded.delete(id);
        this.incomingBacklog = true;
      } catch {
        return; // still failing: the next scan tries again
      }
    }
  }

  /**
   * Activates messages of a scan, SCAN_BATCH at a time: the moves of a batch are asked for at
   * once, so the store commits them together (group commit: one synced commit per batch instead
   * of one per message), while the recipients read meanwhile stay bounded. activate() counts a
   * message as activating before its first await, so room() stays exact. False when the active
   * queue filled up before every message was taken.
   */
  private async activateAll(ids: string[], from: QueueName): Promise<boolean> {
    for (let i = 0; i < ids.length; i += SCAN_BATCH) {
      const moves: Promise<void>[] = [];
      for (const id of ids.slice(i, i + SCAN_BATCH)) {
        if (!this.room()) {
          await Promise.all(moves);
          return false;
        }
        moves.push(this.activate(id, from));
      }
      await Promise.all(moves);
    }
    return true;
  }

  /**
   * Whether another message may be activated: qmgr_message_active_limit; oqmgr also stops
   * opening messages while qmgr_message_recipient_limit recipients are in memory (nqmgr does not:
   * each new message gets at least qmgr_message_recipient_minimum).
   */
  private room(): boolean {
    if (this.scheduler === 'oqmgr' && this.rcptInMemory >= this.rcptLimit) return false;
    return this.active.size + this.activating.size < this.activeLimit;
  }

  /** One message into the active queue: one transaction, then its recipients to their destinations. */
  private async activate(queueId: string, from: QueueName): Promise<void> {
    if (this.active.has(queueId) || this.activating.has(queueId)) return;
    this.activating.add(queueId);
    let meta: MessageMeta | undefined;
    try {
      meta = await this.store.move(queueId, 'active', {}, from);
    } catch (err) {
      // A failed commit (a full disk): the message stays where it was, and a later scan takes it.
      this.log.warn(`${queueId}: move to the active queue failed: ${(err as Error).message}`);
      if (from === 'incoming') this.incomingBacklog = true;
      return;
    } finally {
      this.activating.delete(queueId);
    }
    if (!meta) return;
    if (from === 'incoming') this.flowStep(true);
    // LMDB keeps no checksums: a message whose content is not what cleanup stored is never
    // delivered; it goes to the corrupt queue, as Postfix's qmgr saves a damaged queue file.
    const content = this.store.verify(queueId, meta);
    if (content !== 'ok') return this.saveCorrupt(meta, content === 'missing' ? 'message content is missing' : 'message content does not match its checksum');
    if (from === 'incoming') metrics().qmgrInserted.inc();
    const pendingIdx: number[] = [];
    for (const [i, r] of meta.recipients.entries()) if (!r.done) pendingIdx.push(i);
    // The first slice: what qmgr_message_recipient_limit leaves, but at least qmgr_message_recipient_minimum
    // (nqmgr); oqmgr reads the same per-message share of it for every message (qmgr_fudge_factor).
    const cap = Math.min(pendingIdx.length, this.scheduler === 'oqmgr' ? this.fudgeSlice : Math.max(this.rcptMinimum, this.rcptLimit - this.rcptInMemory));
    const now0 = Date.now();
    const rcpt: RecipientSlices = { pending: pendingIdx, readPos: 0, inMemory: 0, cap, reading: false, lastRead: now0, unsaved: [], lastSave: now0 };
    const msg: ActiveMessage = { meta, activated: now0, outstanding: 0, outcomes: new Map(), rcpt };
    this.active.set(queueId, msg);
    if (meta.trace === 'probe') this.probesActive++;
    this.log.info(`${queueId}: from=<${meta.sender}>, size=${meta.size}, nrcpt=${pendingIdx.length} (queue active)`);
    if (meta.forcedExpire && pendingIdx.length > 0) {
      rcpt.readPos = pendingIdx.length;
      return void this.forceExpire(msg, pendingIdx.map((index) => ({ index, address: meta!.recipients[index]!.address })));
    }
    await this.readSlice(msg, cap);
  }

  /**
   * Reads the next `count` pending recipients of `msg` into memory (Postfix's recipient slices
   * and refills): resolves them and groups them into entries for their destinations. Done
   * recipients are never read again: they are marked done in the store.
   */
  private async readSlice(msg: ActiveMessage, count: number): Promise<void> {
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
      routes = await Promise.all(pending.map(({ r }) => this.resolver.route(r.address, meta.sender, probe)));
    } finally {
      rcpt.reading = false;
    }
    if (msg.admin || msg.finishing) return this.maybeFinish(msg);
    // A content filter (FILTER action, content_filter) replaces the transport and, when given,
    // the nexthop of every deliverable recipient, as Postfix's qmgr does.
    if (meta.filter) routes = routes.map((route) => (route.error ? route : filterRoute(route, meta!.filter!)));
    // "error:STATUS text" as the filter (cleanup's bounce of a rejected local submission) fails
    // every recipient here, without a delivery agent, as error(8) would.
    if (meta.filter?.startsWith('error:')) routes = routes.map((route) => (route.error ? route : { ...route, error: errorOf(meta!.filter!.slice(6)) }));
    // Safety (Postfix's qmgr): more probes in the active queue than address_verify_pending_request_limit
    // are deferred, not delivered; the verify service hears "Too many address verification requests".
    if (meta.trace === 'probe' && this.probesActive > this.pendingProbeLimit) {
      routes = routes.map((route) => (route.error ? route : { ...route, error: { dsn: '4.3.2', text: 'Too many address verification requests' } }));
    }
    const now = Date.now();
    // Group by destination, at most <transport>_destination_recipient_limit per delivery.
    const batches = new Map<Destination, DeliveryRecipient[]>();
    for (const [i, { r, index }] of pending.entries()) {
      const route = routes[i]!;
      if (route.error) {
        const o: RecipientOutcome = { index, status: route.error.dsn.startsWith('5') ? 'bounced' : 'deferred', dsn: route.error.dsn, reason: route.error.text, relay: 'none' };
        logDelivery(this.log, queueId, r.address, o, formatDelays(meta.arrival, msg.activated, now, { connect: 0, transmit: 0 }, now), meta.trace === 'verify' || meta.trace === 'probe');
        metrics().deliveries.inc({ transport: route.transport || 'error', status: o.status });
        msg.outcomes.set(index, o);
        continue;
      }
      const dest = this.destination(route);
      let batch = batches.get(dest);
      const limit = dest.recipientLimit;
      if (!batch || batch.length >= limit) {
        if (batch) this.enqueue(msg, dest, batch);
        batch = [];
        batches.set(dest, batch);
      }
      batch.push({ index, address: route.recipient, ...(r.orcpt ? { orcpt: r.orcpt } : {}), ...(r.notify ? { notify: r.notify } : {}) });
    }
    for (const [dest, batch] of batches) this.enqueue(msg, dest, batch);
    const unread = rcpt.pending.length - rcpt.readPos;
    for (const t of this.transports.values()) {
      const job = t.jobOf.get(msg);
      if (!job) continue;
      job.unreadEntries = unread;
      if (unread === 0 && job.doneEntries >= job.readEntries) this.freeJob(job);
    }
    if (msg.outstanding === 0) return this.maybeFinish(msg);
    this.schedule();
  }

  /** After an entry is finished: read more recipients when enough room (or time) has come (Postfix's refill). */
  private refill(msg: ActiveMessage): void {
    const { rcpt } = msg;
    const left = rcpt.pending.length - rcpt.readPos;
    if (rcpt.reading || left === 0 || msg.admin || msg.finishing) return;
    if (this.scheduler === 'oqmgr') {
      // oqmgr (qmgr_entry_done): the next slice when the message has nothing left in memory, or
      // once all messages together hold fewer than the slice size less 100 recipients.
      if (rcpt.inMemory === 0 || this.rcptInMemory < this.fudgeSlice - 100) void this.readSlice(msg, Math.min(left, this.fudgeSlice));
      return;
    }
    const room = Math.min(rcpt.cap - rcpt.inMemory, this.rcptLimit - this.rcptInMemory, left);
    if (room <= 0 && rcpt.inMemory > 0) return;
    const limits = this.refillLimits(msg);
    if (rcpt.inMemory === 0 || room >= Math.min(limits.count, left) || Date.now() - rcpt.lastRead >= limits.delay) void this.readSlice(msg, Math.max(room, this.rcptMinimum));
  }

  /** <transport>_recipient_refill_limit / _delay of the message's transports (the smallest). */
  private refillLimits(msg: ActiveMessage): { count: number; delay: number } {
    let count = Infinity;
    let delay = Infinity;
    for (const t of this.transports.values()) {
      if (!t.jobOf.has(msg)) continue;
      const refillLimit = Number(transportParam(this.config, t.name, 'recipient_refill_limit'));
      const refillDelay = parseTime(transportParam(this.config, t.name, 'recipient_refill_delay'), 's');
      count = Math.min(count, Number.isFinite(refillLimit) && refillLimit > 0 ? refillLimit : 100);
      delay = Math.min(delay, (refillDelay ?? 5) * 1000);
    }
    return { count: count === Infinity ? 100 : count, delay: delay === Infinity ? 5000 : delay };
  }

  /**
   * Marks the recipients delivered so far done in the store (at most once a second, and before
   * each refill), so that a restart in the middle of a big message does not deliver them again.
   */
  private async saveDone(msg: ActiveMessage, force = false): Promise<void> {
    const { rcpt } = msg;
    if (rcpt.unsaved.length === 0 || (!force && Date.now() - rcpt.lastSave < 1000)) return;
    const done = rcpt.unsaved.splice(0);
    rcpt.lastSave = Date.now();
    try {
      await this.store.change(msg.meta.queueId, (m) => {
        if (m.queue !== 'active') return null;
        const recipients = m.recipients.slice();
        for (const i of done) if (recipients[i]) recipients[i] = { ...recipients[i]!, done: true };
        return { patch: { recipients } };
      });
    } catch (err) {
      this.log.warn(`${msg.meta.queueId}: recording delivered recipients failed: ${(err as Error).message}`);
    }
  }

  /** The attempt ends when no entry is outstanding and every recipient was read (or postsuper took it). */
  private maybeFinish(msg: ActiveMessage): void {
    const { rcpt } = msg;
    if (msg.outstanding !== 0 || rcpt.reading || msg.finishing) return;
    if (rcpt.readPos < rcpt.pending.length && !msg.admin) return this.refill(msg);
    for (const t of this.transports.values()) {
      const job = t.jobOf.get(msg);
      if (job) this.freeJob(job);
    }
    void this.finish(msg);
  }

  /**
   * The queue for a route: one per transport:nexthop — or, when the transport's recipient limit
   * is 1, one per recipient (Postfix's qmgr names the queue by the recipient then, so that e.g.
   * local_destination_concurrency_limit = 2 means two deliveries per user, not per machine).
   */
  private destination(route: Route): Destination {
    const limits = this.transportLimits(route.transport);
    const key = limits.recipientLimit === 1 ? `${route.transport}:${route.recipient.toLowerCase()}` : route.key;
    let dest = this.destinations.get(key);
    if (!dest) {
      const { settings, recipientLimit, rateDelay } = limits;
      dest = { key, transport: route.transport, nexthop: route.nexthop, todo: [], busy: 0, settings, recipientLimit, rateDelay, fb: newWindow(settings), suspendedUntil: 0, blocker: 0 };
      this.destinations.set(key, dest);
    }
    return dest;
  }

  /**
   * Forgets idle queues (nothing waiting, nothing in flight, not dead, no rate-delay pause), as
   * Postfix's qmgr frees an empty queue: memory stays bounded by the destinations in use, and a
   * queue that comes back starts from initial_destination_concurrency again.
   */
  private sweepIdle(): void {
    const now = Date.now();
    for (const [key, dest] of this.destinations) {
      if (dest.todo.length === 0 && dest.busy === 0 && !dest.dead && now >= dest.suspendedUntil) {
        this.destinations.delete(key);
        this.ready.delete(dest);
        this.transports.get(dest.transport)?.selector.forget(dest);
      }
    }
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
      const transportRateDelay = num('transport_rate_delay', 0, (v) => parseTime(v, 's'));
      // nqmgr divides the in-memory recipients into per-transport pools; Postactor has one.
      // oqmgr has no such pools: it does not read these, nor the delivery slots below.
      const nqmgr = this.scheduler === 'qmgr';
      for (const [suffix, dflt] of [['recipient_limit', 20000], ['extra_recipient_limit', 1000]] as const) {
        if (nqmgr && num(suffix, dflt) !== dflt) this.log.warn(`${transport}_${suffix}: not supported: recipients in memory are bounded by qmgr_message_recipient_limit for all transports together (ignored)`);
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
        transportRateDelay: transportRateDelay * 1000,
        // Preemption (nqmgr): a cost below 2 turns it off, as in Postfix; oqmgr never preempts.
        slots: nqmgr ? {
          cost: num('delivery_slot_cost', 5),
          loan: num('delivery_slot_loan', 3),
          discount: Math.min(100, num('delivery_slot_discount', 50)),
          minSlots: num('minimum_delivery_slots', 3),
        } : { ...DEFAULT_SLOTS, cost: 0 },
      };
      this.limits.set(transport, limits);
    }
    return limits;
  }

  private transport(name: string): Transport {
    let t = this.transports.get(name);
    if (!t) {
      const limits = this.transportLimits(name);
      const jobs = new JobList<Job>(limits.slots);
      const selector: EntrySelector<Destination, Entry> = this.scheduler === 'oqmgr'
        ? new DestinationRing<Destination, Entry>({
          open: (dest, now) => dest.todo.length > 0 && this.mayStart(dest, now),
          take: (dest) => this.takeOldest(dest),
          live: (dest) => dest.todo.length > 0 || dest.busy > 0,
        })
        : jobSelector<Job, Destination, Entry>(jobs, (job, now) => this.pickPeer(job, now));
      t = { name, jobs, selector, jobOf: new Map(), inDelivery: 0, full: false, rateDelay: limits.transportRateDelay, suspendedUntil: 0 };
      this.transports.set(name, t);
    }
    return t;
  }

  /** One entry (recipients of `msg` for `dest`) onto its job's peer and its destination's todo list. */
  private enqueue(msg: ActiveMessage, dest: Destination, recipients: DeliveryRecipient[]): void {
    const t = this.transport(dest.transport);
    let job = t.jobOf.get(msg);
    if (!job) {
      job = { ...newJob(msg.activated), msg, transport: t, peers: [], peerOf: new Map(), rr: 0, doneEntries: 0 };
      t.jobOf.set(msg, job);
    }
    const entry: Entry = { msg, dest, recipients, job };
    this.peer(job, dest).entries.push(entry);
    job.readEntries++;
    msg.rcpt.inMemory += recipients.length;
    this.rcptInMemory += recipients.length;
    t.jobs.obtain(job);
    msg.outstanding++;
    dest.todo.push(entry);
    t.selector.waiting(dest);
    this.ready.add(dest);
  }

  private peer(job: Job, dest: Destination): Peer {
    let peer = job.peerOf.get(dest);
    if (!peer) {
      peer = { job, dest, entries: [] };
      job.peerOf.set(dest, peer);
      job.peers.push(peer);
    }
    return peer;
  }

  private dropPeer(peer: Peer): void {
    const { job } = peer;
    const i = job.peers.indexOf(peer);
    if (i >= 0) job.peers.splice(i, 1);
    job.peerOf.delete(peer.dest);
    if (job.rr > i) job.rr--;
    if (job.rr >= job.peers.length) job.rr = 0;
  }

  /**
   * The next entry of `job` a destination can take: its peers round-robin, each destination
   * within its concurrency window and not suspended. None: the destinations are marked as
   * blocking the transport's job list.
   */
  private pickPeer(job: Job, now: number): Entry | null {
    const n = job.peers.length;
    for (let k = 0; k < n; k++) {
      const peer = job.peers[(job.rr + k) % n]!;
      const dest = peer.dest;
      if (peer.entries.length === 0 || !this.mayStart(dest, now)) continue;
      const entry = peer.entries.shift()!;
      const at = dest.todo.indexOf(entry);
      if (at >= 0) dest.todo.splice(at, 1);
      job.rr = (job.rr + k + 1) % n;
      if (peer.entries.length === 0) this.dropPeer(peer);
      return entry;
    }
    for (const peer of job.peers) if (peer.entries.length > 0) peer.dest.blocker = job.transport.jobs.blockerTag;
    return null;
  }

  /** `dest` may start one more delivery now: alive, not in a rate-delay pause, within its window. */
  private mayStart(dest: Destination, now: number): boolean {
    return !dest.dead && now >= dest.suspendedUntil && dest.busy < dest.fb.window;
  }

  /**
   * oqmgr: `dest`'s oldest entry (first in, first out), off its job's peer too; counted as
   * selected in its job, as nqmgr's selection would, so that the job's bookkeeping stays the same.
   */
  private takeOldest(dest: Destination): Entry {
    const entry = dest.todo.shift()!;
    const peer = entry.job.peerOf.get(dest);
    if (peer) {
      const i = peer.entries.indexOf(entry);
      if (i >= 0) peer.entries.splice(i, 1);
      if (peer.entries.length === 0) this.dropPeer(peer);
    }
    entry.job.selected++;
    return entry;
  }

  /** An entry leaves its peer without a delivery (deferred at once, or dropped by postsuper); `dest.todo` is the caller's. */
  private unqueue(entry: Entry): void {
    const peer = entry.job.peerOf.get(entry.dest);
    if (peer) {
      const i = peer.entries.indexOf(entry);
      if (i >= 0) peer.entries.splice(i, 1);
      if (peer.entries.length === 0) this.dropPeer(peer);
    }
    entry.job.selected++;
    this.entryDone(entry);
  }

  /** An entry is finished; its job leaves the transport's job list with its last one. */
  private entryDone(entry: Entry): void {
    const { job } = entry;
    job.doneEntries++;
    entry.msg.rcpt.inMemory -= entry.recipients.length;
    this.rcptInMemory -= entry.recipients.length;
    if (job.doneEntries >= job.readEntries && job.unreadEntries === 0) this.freeJob(job);
  }

  private freeJob(job: Job): void {
    job.transport.jobs.free(job);
    if (job.transport.jobOf.get(job.msg) === job) job.transport.jobOf.delete(job.msg);
  }

  /** A handed-out entry comes back unused (the transport's agents are busy): first in line again. */
  private requeue(entry: Entry): void {
    this.peer(entry.job, entry.dest).entries.unshift(entry);
    entry.dest.todo.unshift(entry);
    entry.job.transport.jobs.unselect(entry.job);
    entry.job.transport.selector.waiting(entry.dest);
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
    for (const dest of this.ready) {
      this.ready.delete(dest);
      const down = this.unavailable.get(dest.transport);
      if (down && now < down.until) this.deferTodo(dest, down.reason, '4.3.0');
      else if (dest.dead && now >= dest.dead.until) this.reviveDest(dest);
      else if (dest.dead) this.deferTodo(dest, `delivery temporarily suspended: ${dest.dead.reason}`, dest.dead.dsn);
    }
    const ts = [...this.transports.values()];
    if (ts.length === 0) return;
    // Bounded: each pass hands out at least one entry or ends the loop.
    for (let progress = true, n = 0; progress && n < 1_000_000; ) {
      progress = false;
      for (let k = 0; k < ts.length; k++) {
        const t = ts[(this.transportTurn + k) % ts.length]!;
        if (t.full || now < t.suspendedUntil || this.unavailable.has(t.name) || t.selector.idle()) continue;
        const entry = t.selector.select(now);
        if (!entry) continue;
        this.dispatch(entry);
        progress = true;
        n++;
      }
      this.transportTurn = (this.transportTurn + 1) % ts.length;
    }
  }

  /** Defers every entry waiting for `dest`, without a delivery attempt (relay=none). */
  private deferTodo(dest: Destination, reason: string, dsn: string): void {
    const entries = dest.todo.splice(0);
    const now = Date.now();
    for (const entry of entries) {
      this.unqueue(entry);
      const { msg } = entry;
      const delays = formatDelays(msg.meta.arrival, msg.activated, now, { connect: 0, transmit: 0 }, now);
      for (const r of entry.recipients) {
        const o: RecipientOutcome = { index: r.index, status: 'deferred', dsn, reason, relay: 'none' };
        logDelivery(this.log, msg.meta.queueId, r.address, o, delays);
        metrics().deliveries.inc({ transport: dest.transport, status: o.status });
        msg.outcomes.set(r.index, o);
      }
      msg.outstanding--;
      this.maybeFinish(msg);
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
    const t = entry.job.transport;
    dest.busy++;
    t.inDelivery++;
    this.inDelivery++;
    entry.dispatched = Date.now();
    if (t.rateDelay > 0) {
      // <transport>_transport_rate_delay: at most one delivery start per delay over the whole transport.
      t.suspendedUntil = Date.now() + t.rateDelay;
      setTimeout(() => this.schedule(), t.rateDelay).unref();
    }
    const request: DeliveryRequest = {
      queueId: msg.meta.queueId,
      transport: dest.transport,
      nexthop: dest.nexthop,
      sender: msg.meta.sender,
      recipients: entry.recipients,
      arrival: msg.meta.arrival,
      activated: msg.activated,
      size: msg.meta.size,
      ...(msg.meta.envId ? { envId: msg.meta.envId } : {}),
      ...(msg.meta.ret ? { ret: msg.meta.ret } : {}),
      ...(msg.meta.trace === 'verify' || msg.meta.trace === 'probe' ? { verify: true } : {}),
      ...(msg.meta.smtputf8 ? { smtputf8: msg.meta.smtputf8 } : {}),
      xforward: xforwardAttrs(msg.meta),
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
      // Like a Postfix transport with no agent ready: nothing more for it until one is free.
      const t = entry.job.transport;
      entry.dest.busy--;
      t.inDelivery--;
      this.inDelivery--;
      this.requeue(entry);
      t.full = true;
      setTimeout(() => {
        t.full = false;
        this.schedule();
      }, 100);
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
    const t = entry.job.transport;
    entry.dest.busy--;
    t.inDelivery--;
    t.full = false;
    this.inDelivery--;
    if (entry.dest.rateDelay > 0) {
      // <transport>_destination_rate_delay: the destination pauses after each delivery.
      entry.dest.suspendedUntil = Date.now() + entry.dest.rateDelay;
      setTimeout(() => {
        t.jobs.unblock();
        this.schedule();
      }, entry.dest.rateDelay).unref();
    }
    // The destination has room again: if it held a job back, the blockers are reconsidered.
    if (entry.dest.blocker === t.jobs.blockerTag) t.jobs.unblock();
    this.entryDone(entry);
    const m = metrics();
    const now = Date.now();
    const transport = entry.dest.transport;
    for (const o of outcomes) {
      m.deliveries.inc({ transport, status: o.status });
      if (entry.dispatched !== undefined) {
        m.delay.observe({ transport, stage: 'queue' }, (entry.dispatched - entry.msg.meta.arrival) / 1000);
        m.delay.observe({ transport, stage: 'transfer' }, (now - entry.dispatched) / 1000);
      }
      entry.msg.outcomes.set(o.index, o);
      if (o.status === 'sent') entry.msg.rcpt.unsaved.push(o.index);
    }
    entry.msg.outstanding--;
    if (entry.msg.rcpt.cap < entry.msg.rcpt.pending.length) {
      // A message read in slices: more recipients, and the delivered ones recorded as we go.
      this.refill(entry.msg);
      void this.saveDone(entry.msg);
    }
    this.maybeFinish(entry.msg);
    // oqmgr held new mail back for qmgr_message_recipient_limit (room()): take it once there is room.
    if (this.scheduler === 'oqmgr' && this.incomingBacklog && this.room()) void this.scan(false);
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
      metrics().deliveries.inc({ transport: 'expired', status: o.status });
      msg.outcomes.set(r.index, o);
    }
    void this.finish(msg);
  }

  private async finishAttempt(msg: ActiveMessage): Promise<void> {
    msg.finishing = true;
    if (msg.admin) return this.finishAdmin(msg, msg.admin);
    const { meta } = msg;
    const id = meta.queueId;
    const now = Date.now();
    const lifetime = meta.sender === '' ? this.bounceLifetime : this.queueLifetime;
    const verify = meta.trace === 'verify' || meta.trace === 'probe';
    if (meta.trace === 'probe') await this.probes.report(meta, msg.outcomes.values());
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
    const delayNotice = remaining && this.notifier.delayDue(meta, now) ? deferRecs : null;
    const notices = bounceRecs.length > 0 || traceRecs.length > 0 || delayNotice !== null || this.store.hasLogs(id);
    const deferPatch = (extra: Partial<MessageMeta>): Partial<MessageMeta> => ({
      recipients,
      attempts: meta.attempts + 1,
      nextAttempt: nextAttempt(now, meta.arrival, this.minBackoff, this.maxBackoff),
      ...(meta.trace === 'record' ? { trace: undefined } : {}), // -v reports the first attempt only
      ...extra,
    });
    try {
      if (!notices) {
        // The common case, one transaction: all done (removed with its logs), or deferred with
        // this attempt's defer log.
        if (!remaining) {
          await this.store.remove(id, 'active');
          this.log.info(`${id}: removed`);
          metrics().qmgrRemoved.inc();
        } else {
          await this.store.move(id, 'deferred', deferPatch({}), 'active', { set: { defer: deferRecs } });
          void this.fastFlush.deferred(id, deferredTo);
        }
      } else {
        // Status logs first (durable), then the notices made from them, then the logs whose
        // notices are queued are dropped with the message's next state: a crash in between
        // sends a notice again, never loses one.
        const updated = await this.store.update(id, { recipients }, { append: { bounce: bounceRecs, trace: traceRecs }, set: { defer: deferRecs } });
        if (!updated) return;
        const { cleared, delayWarned } = await this.notifier.send(updated, delayNotice, now);
        const left = (['bounce', 'trace'] as const).some((k) => !cleared.includes(k) && this.store.logs(id, k).length > 0);
        if (!remaining && !left) {
          await this.store.remove(id, 'active');
          this.log.info(`${id}: removed`);
          metrics().qmgrRemoved.inc();
        } else {
          await this.store.move(id, 'deferred', deferPatch(delayWarned ? { delayWarned: true } : {}), 'active', { clear: cleared });
          if (remaining) void this.fastFlush.deferred(id, deferredTo);
        }
      }
    } catch (err) {
      this.log.warn(`${id}: queue update failed: ${(err as Error).message}; the message is requeued at the next queue scan`);
      this.stranded.add(id);
    } finally {
      this.active.delete(id);
      if (meta.trace === 'probe') this.probesActive--;
    }
    this.flowStep(false);
    if (this.incomingBacklog && this.room()) void this.scan(false);
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
          if (updated) cleared = (await this.notifier.send(updated, null, now)).cleared;
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
      this.stranded.add(id);
    } finally {
      this.active.delete(id);
      if (meta.trace === 'probe') this.probesActive--;
    }
    for (const w of admin.waiters) w(events);
    this.flowStep(false);
    if (this.incomingBacklog && this.room()) void this.scan(false);
  }
}

/** The RFC 3464 action a success is reported with ("passed": the next hop notifies instead). */
function successAction(o: RecipientOutcome): string {
  return o.action === 'passed' ? 'relayed' : (o.action ?? 'delivered');
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
