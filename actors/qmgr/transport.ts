/**
 * Per-transport state of the queue manager (Postfix's qmgr_transport.c): each master.cf
 * transport the active queue uses, with its job list and entry selector (./strategy.ts), its
 * deliveries in flight and rate delay, its scheduling parameters read once (concurrency and
 * recipient limits, feedback, delivery slots), and whether its agents can be reached: a
 * transport whose agents answered NOSERVICE, THROTTLED or crashed is down for
 * transport_retry_time ("mail transport unavailable"), then back, or sooner on postqueue -f.
 *
 * Collaborators come in explicitly (the configuration, a logger, and hooks into the rest of
 * the manager), so a test builds it on its own (test/qmgr-parts.test.ts).
 */
import { parseTime, transportParam, type Config } from '../../src/config/index.js';
import { readParams, type Params } from '../../src/config/declared.js';
import type { Logger } from '../../src/log/maillog.js';
import { DEFAULT_SLOTS, JobList, type SlotParams } from './scheduler.js';
import type { EntrySelector } from './strategy.js';
import type { SchedulerName } from '../../src/config/queue-managers.js';
import { parseFeedback, settings, type WindowSettings } from './feedback.js';
import type { Destination } from './queue.js';
import type { Entry, Job } from './entry.js';

export interface TransportLimits {
  settings: WindowSettings;
  recipientLimit: number;
  rateDelay: number;
  transportRateDelay: number;
  slots: SlotParams;
  /** <transport>_recipient_refill_limit and _delay (ms): when a sliced message reads more recipients. */
  refillLimit: number;
  refillDelay: number;
}

/** A master.cf transport as the scheduler sees it: its job list, deliveries in flight, rate delay. */
export interface Transport {
  name: string;
  /** Its jobs (message × transport): nqmgr selects through them; oqmgr keeps them for the bookkeeping only. */
  jobs: JobList<Job>;
  /** How its next entry is chosen: qmgr's or oqmgr's (./strategy.ts). */
  selector: EntrySelector<Destination, Entry>;
  jobOf: Map<Job['msg'], Job>;
  inDelivery: number;
  /** Its agents answered BUSY: nothing more is handed out until a delivery of it completes. */
  full: boolean;
  /** <transport>_transport_rate_delay in ms (0: none): one delivery at a time, then a pause. */
  rateDelay: number;
  suspendedUntil: number;
}

/** A transport that is down: why, and until when (ms). */
export interface TransportDown {
  reason: string;
  until: number;
  timer: NodeJS.Timeout;
}

export interface TransportHooks {
  /** How a new transport chooses its next entry (./strategy.ts). */
  selector(jobs: JobList<Job>): EntrySelector<Destination, Entry>;
  /** The transport went down or came back: its destinations with entries waiting are looked at again. */
  wake(transport: string): void;
  /** Hand out deliveries (the manager's schedule()). */
  schedule(): void;
  /** The transport has work and nothing in delivery: its agents' pool may start a thread now (WARM_REQUEST). */
  warm?(transport: string): void;
}

/**
 * What the transports read by name (with the rest of qmgr's: manager.ts QMGR_PARAMS). The
 * per-transport limits stay read by their computed names (<transport>_destination_concurrency_limit
 * and the rest, falling back to default_*: transportParam), as Postfix's qmgr reads them.
 */
export const TRANSPORT_PARAMS = {
  'transport_retry_time': 'time',
} as const;

export class Transports {
  readonly all = new Map<string, Transport>();
  private readonly limits = new Map<string, TransportLimits>();
  /** Transports whose agents failed (NOSERVICE, THROTTLED, CRASHED): deferred until `until`. */
  private readonly unavailable = new Map<string, TransportDown>();
  private transportRetry!: number;
  /** When each transport's pool was last told that work is coming (ms). */
  private readonly warmedAt = new Map<string, number>();

  constructor(private config: Config, private readonly log: Logger, readonly scheduler: SchedulerName, private readonly hooks: TransportHooks, p?: Params<typeof TRANSPORT_PARAMS>) {
    this.reconfigure(config, p);
  }

  /** postactor reload: the limits are read again; the transports in use take the new ones. */
  reconfigure(config: Config, p: Params<typeof TRANSPORT_PARAMS> = readParams(config, TRANSPORT_PARAMS, 'qmgr')): void {
    this.config = config;
    this.limits.clear();
    for (const t of this.all.values()) {
      const limits = this.limitsOf(t.name);
      t.jobs.params = limits.slots;
      t.rateDelay = limits.transportRateDelay;
    }
    this.transportRetry = p.transport_retry_time;
  }

  /**
   * A transport's scheduling parameters, read once per transport: destination concurrency and
   * recipient limits (0 = no limit), initial concurrency, feedback, failed-cohort limit and
   * destination rate delay (which forces concurrency 1, as in Postfix).
   */
  limitsOf(transport: string): TransportLimits {
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
        refillLimit: num('recipient_refill_limit', 100, (v) => (/^\s*\d+\s*$/.test(v) && Number(v) > 0 ? Number(v) : null)),
        refillDelay: num('recipient_refill_delay', 5, (v) => { const t = parseTime(v, 's'); return t !== null && t > 0 ? t : null; }) * 1000,
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

  /** The transport `name`, created on first use (qmgr_transport_create). */
  get(name: string): Transport {
    let t = this.all.get(name);
    if (!t) {
      const limits = this.limitsOf(name);
      const jobs = new JobList<Job>(limits.slots);
      const selector = this.hooks.selector(jobs);
      t = { name, jobs, selector, jobOf: new Map(), inDelivery: 0, full: false, rateDelay: limits.transportRateDelay, suspendedUntil: 0 };
      this.all.set(name, t);
    }
    // Postfix's qmgr connects to a transport's agent as soon as it has work for it
    // (qmgr_transport_alloc), before the delivery. Here an agent is a pool thread, and a pool
    // that has idled out (max_idle) has none: it starts one now, while this message is still
    // being read and resolved, and its set-up is done by the time the delivery comes. At most
    // once a second per transport, and only with nothing in delivery (the pool has a thread then).
    if (t.inDelivery === 0 && this.hooks.warm) {
      const now = Date.now();
      if (now - (this.warmedAt.get(name) ?? 0) >= 1000) {
        this.warmedAt.set(name, now);
        this.hooks.warm(name);
      }
    }
    return t;
  }

  /** Why `transport` is down, while it is (at `now`); undefined when it may be used. */
  downAt(transport: string, now: number): TransportDown | undefined {
    const down = this.unavailable.get(transport);
    return down && now < down.until ? down : undefined;
  }

  /** True while the transport is marked down (until transportBack, even past `until`). */
  isDown(transport: string): boolean {
    return this.unavailable.has(transport);
  }

  /** The transport's agents failed: its deliveries are deferred for transport_retry_time (qmgr_transport_throttle). */
  down(transport: string, reason: string): void {
    if (this.unavailable.has(transport)) return;
    const ms = this.transportRetry * 1000;
    const timer = setTimeout(() => {
      this.back(transport);
      this.hooks.schedule();
    }, ms);
    timer.unref();
    this.unavailable.set(transport, { reason, until: Date.now() + ms, timer });
    this.hooks.wake(transport);
  }

  /** The transport may be used again (qmgr_transport_unthrottle). */
  back(transport: string): void {
    const down = this.unavailable.get(transport);
    if (!down) return;
    clearTimeout(down.timer);
    this.unavailable.delete(transport);
    this.hooks.wake(transport);
  }

  /** The transports whose transport_retry_time is over come back (each queue run). */
  backDue(now: number): void {
    for (const [transport, down] of this.unavailable) if (now >= down.until) this.back(transport);
  }

  /** postqueue -f (Postfix's F trigger): every unavailable transport is forgotten. */
  forgetDown(): void {
    for (const transport of [...this.unavailable.keys()]) this.back(transport);
  }
}
