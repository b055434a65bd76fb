/**
 * Per-destination queues of the queue manager (Postfix's qmgr_queue.c): one queue per
 * transport and nexthop (per recipient when the transport's recipient limit is 1), with the
 * entries waiting for it, its deliveries in flight, its concurrency window and the feedback that
 * moves it (./feedback.ts): a reply with a siteFailure is negative feedback, any other completed
 * delivery positive. Enough negative feedback makes the destination dead (qmgr_queue_throttle):
 * its entries are deferred at once ("delivery temporarily suspended: …") until
 * minimal_backoff_time has passed, a delivery to it succeeds, or postqueue -f forgets it. Idle
 * queues are freed, so memory follows the destinations in use.
 *
 * Collaborators come in explicitly (the transports for their limits, a logger, a schedule hook),
 * so a test builds it on its own (test/qmgr-parts.test.ts).
 */
import type { Config } from '../../src/config/index.js';
import { valuesOf, type Params } from '../../src/config/declared.js';
import type { Logger } from '../../src/log/maillog.js';
import type { RecipientOutcome } from '../protocol.js';
import { negative, newWindow, positive, revive, type WindowSettings, type WindowState } from './feedback.js';
import type { Route } from './resolve.js';
import type { Transports } from './transport.js';
import type { Entry } from './entry.js';

export interface Destination {
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

/** `dest` may start one more delivery now: alive, not in a rate-delay pause, within its window. */
export function mayStart(dest: Destination, now: number): boolean {
  return !dest.dead && now >= dest.suspendedUntil && dest.busy < dest.fb.window;
}

/** What the destinations read (with the rest of qmgr's: manager.ts QMGR_PARAMS). */
export const DESTINATION_PARAMS = {
  'minimal_backoff_time': 'time',
  'destination_concurrency_feedback_debug': 'bool',
} as const;

export class Destinations {
  readonly all = new Map<string, Destination>();
  /** Destinations to look at in the next schedule(): entries waiting, or dead / down to defer. */
  readonly ready = new Set<Destination>();
  private minBackoff!: number;
  private feedbackDebug!: boolean;

  constructor(config: Config | Params<typeof DESTINATION_PARAMS>, private readonly transports: Transports, private readonly log: Logger, private readonly hooks: { schedule(): void }) {
    this.reconfigure(config);
  }

  /**
   * postactor reload (after Transports.reconfigure): the destinations in memory take their
   * transport's new limits, as the new qmgr process of a Postfix reload would (it starts with
   * none in memory). What they learned is kept, the window cut to the new limit; a queue keyed
   * per recipient (recipient limit 1) keeps its key until it is freed.
   */
  reconfigure(from: Config | Params<typeof DESTINATION_PARAMS>): void {
    const p = valuesOf(from, DESTINATION_PARAMS, 'qmgr');
    this.minBackoff = p.minimal_backoff_time;
    this.feedbackDebug = p.destination_concurrency_feedback_debug;
    for (const dest of this.all.values()) {
      const { settings, recipientLimit, rateDelay } = this.transports.limitsOf(dest.transport);
      dest.settings = settings;
      dest.recipientLimit = recipientLimit;
      dest.rateDelay = rateDelay;
      if (dest.fb.window > settings.limit) dest.fb.window = settings.limit;
    }
  }

  /**
   * The queue for a route: one per transport:nexthop — or, when the transport's recipient limit
   * is 1, one per recipient (Postfix's qmgr names the queue by the recipient then, so that e.g.
   * local_destination_concurrency_limit = 2 means two deliveries per user, not per machine).
   */
  get(route: Route): Destination {
    const limits = this.transports.limitsOf(route.transport);
    const key = limits.recipientLimit === 1 ? `${route.transport}:${route.recipient.toLowerCase()}` : route.key;
    let dest = this.all.get(key);
    if (!dest) {
      const { settings, recipientLimit, rateDelay } = limits;
      dest = { key, transport: route.transport, nexthop: route.nexthop, todo: [], busy: 0, settings, recipientLimit, rateDelay, fb: newWindow(settings), suspendedUntil: 0, blocker: 0 };
      this.all.set(key, dest);
    }
    return dest;
  }

  /**
   * Forgets idle queues (nothing waiting, nothing in flight, not dead, no rate-delay pause), as
   * Postfix's qmgr frees an empty queue: memory stays bounded by the destinations in use, and a
   * queue that comes back starts from initial_destination_concurrency again.
   */
  sweepIdle(now: number): void {
    for (const [key, dest] of this.all) {
      if (dest.todo.length === 0 && dest.busy === 0 && !dest.dead && now >= dest.suspendedUntil) {
        this.all.delete(key);
        this.ready.delete(dest);
        this.transports.all.get(dest.transport)?.selector.forget(dest);
      }
    }
  }

  /** The destinations of `transport` with entries waiting are looked at again (it went down or came back). */
  wake(transport: string): void {
    for (const dest of this.all.values()) if (dest.transport === transport && dest.todo.length > 0) this.ready.add(dest);
  }

  /** A dead destination comes back (minimal_backoff_time passed, a success, or postqueue -f). */
  revive(dest: Destination): void {
    if (!dest.dead) return;
    clearTimeout(dest.dead.timer);
    dest.dead = undefined;
    revive(dest.fb, dest.busy, dest.settings);
    this.debugWindow('revived', dest);
    if (dest.todo.length > 0) this.ready.add(dest);
  }

  /** Revives the dead destinations whose time is up (each queue run). */
  reviveDue(now: number): void {
    for (const dest of this.all.values()) if (dest.dead && now >= dest.dead.until) this.revive(dest);
  }

  /** postqueue -f (Postfix's F trigger): forget dead destinations. */
  forgetDead(): void {
    for (const dest of this.all.values()) this.revive(dest);
  }

  /** Concurrency feedback from a completed delivery (Postfix's qmgr_queue_throttle / _unthrottle). */
  feedback(dest: Destination, outcomes: RecipientOutcome[], siteFailure: string | undefined): void {
    if (siteFailure === undefined) {
      if (dest.dead) return this.revive(dest); // "sooner on any success"
      positive(dest.fb, dest.busy, dest.settings);
      this.debugWindow('success', dest);
      return;
    }
    if (dest.dead || !negative(dest.fb, dest.settings)) return this.debugWindow('failure', dest);
    const ms = this.minBackoff * 1000;
    const timer = setTimeout(() => {
      this.revive(dest);
      this.hooks.schedule();
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
}
