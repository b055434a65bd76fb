/**
 * Handing an entry to its delivery agent and acting on the reply (Postfix's qmgr_deliver.c):
 * the delivery request (envelope, recipients, XFORWARD attributes), the destination's and
 * transport's counts of deliveries in flight and their rate delays, the concurrency feedback
 * from the reply (./queue.ts), and the agent that did not answer: BUSY puts the entry back and
 * pauses the transport briefly; NOSERVICE, THROTTLED or a crash defers the entry's recipients
 * ("mail transport unavailable", relay=none) and marks the transport down (./transport.ts).
 *
 * The agent is a function (`DeliverFn`: in the server a request to the transport's pool through
 * the router), so a test drives this part with an agent of its own (test/qmgr-parts.test.ts).
 */
import { metrics } from '../../src/metrics/thread.js';
import type { Logger } from '../../src/log/maillog.js';
import { ServiceError } from '../../src/runtime/wire.js';
import { formatDelays } from '../../src/delivery/log.js';
import { logOutcome } from './probes.js';
import { xforwardAttrs } from '../../src/smtp/xforward.js';
import type { DeliveryReply, DeliveryRequest, RecipientOutcome } from '../protocol.js';
import type { Destinations } from './queue.js';
import type { Transports } from './transport.js';
import type { Entries, Entry } from './entry.js';
import type { ActiveMessage } from './message.js';

/** A delivery agent of a transport: answers a delivery request, or fails (a ServiceError's code says how). */
/**
 * `affinity`: a destination of one recipient (a transport with a recipient limit of 1, local(8)
 * by default: the destination is the recipient's mailbox) is always delivered by the same agent
 * thread while the agent's threads stay the same (src/runtime/channels.ts).
 */
export type DeliverFn = (transport: string, request: DeliveryRequest, affinity?: string) => Promise<DeliveryReply>;

export interface DeliverHooks {
  /** An entry of `msg` is finished (delivered, deferred by the failed agent, or dropped): the message's side (./active.ts). */
  entryBack(msg: ActiveMessage): void;
  /** Hand out deliveries (the manager's schedule()). */
  schedule(): void;
}

export class Deliveries {
  /** Deliveries handed to agents and not back yet. */
  inDelivery = 0;
  private readonly warnedTransports = new Set<string>();

  constructor(
    private readonly deliver: DeliverFn,
    private readonly log: Logger,
    private readonly parts: { transports: Transports; destinations: Destinations; entries: Entries },
    private readonly hooks: DeliverHooks,
  ) {}

  /** Sends `entry` to its transport's agent (qmgr_deliver). */
  dispatch(entry: Entry): void {
    const { msg, dest } = entry;
    const t = entry.job.transport;
    dest.busy++;
    t.inDelivery++;
    this.inDelivery++;
    entry.dispatched = Date.now();
    if (t.rateDelay > 0) {
      // <transport>_transport_rate_delay: at most one delivery start per delay over the whole transport.
      t.suspendedUntil = Date.now() + t.rateDelay;
      setTimeout(() => this.hooks.schedule(), t.rateDelay).unref();
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
      ...(msg.meta.checksum !== undefined ? { checksum: msg.meta.checksum } : {}),
      ...(msg.meta.envId ? { envId: msg.meta.envId } : {}),
      ...(msg.meta.ret ? { ret: msg.meta.ret } : {}),
      ...(msg.meta.trace === 'verify' || msg.meta.trace === 'probe' ? { verify: true } : {}),
      ...(msg.meta.trace === 'probe' ? { probe: true as const } : {}),
      ...(msg.meta.smtputf8 ? { smtputf8: msg.meta.smtputf8 } : {}),
      xforward: xforwardAttrs(msg.meta),
    };
    this.deliver(dest.transport, request, dest.recipientLimit === 1 ? dest.key : undefined).then(
      (reply) => {
        // Damaged content (the agent checks it as it reads it): nothing went out; the message
        // goes to the corrupt queue when its attempt ends (./done.ts). No feedback: the
        // destination did nothing.
        if (reply.probeLines) (entry.msg.probeLines ??= []).push(...reply.probeLines);
        if (reply.corrupt) {
          entry.msg.corrupt ??= reply.corrupt;
          return this.delivered(entry, []);
        }
        if (!entry.msg.admin) this.parts.destinations.feedback(entry.dest, reply.outcomes, reply.siteFailure);
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
      this.parts.entries.requeue(entry);
      t.full = true;
      // Unref'd as qmgr's other timers: a paused transport must not keep the thread alive.
      setTimeout(() => {
        t.full = false;
        this.hooks.schedule();
      }, 100).unref();
      return;
    }
    let reason = 'unknown mail transport error';
    if (code === 'NOSERVICE' || code === 'THROTTLED' || code === 'CRASHED') {
      if (code !== 'CRASHED') reason = 'mail transport unavailable';
      this.parts.transports.down(entry.dest.transport, reason);
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
      logOutcome(this.log, entry.msg, r, o, delays);
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
        this.hooks.schedule();
      }, entry.dest.rateDelay).unref();
    }
    // The destination has room again: if it held a job back, the blockers are reconsidered.
    if (entry.dest.blocker === t.jobs.blockerTag) t.jobs.unblock();
    this.parts.entries.done(entry);
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
    this.hooks.entryBack(entry.msg);
    if (entry.dest.todo.length > 0) this.parts.destinations.ready.add(entry.dest);
    this.hooks.schedule();
  }
}
