/**
 * The one place where Postfix's two queue managers differ, as Postactor builds them: how a
 * transport chooses its next delivery. master.cf's command name picks one at start:
 *
 *   qmgr   unix n - n 300 1 qmgr    nqmgr: the transport's job list (./scheduler.ts): the
 *                                   oldest message first, preempted by small ones every
 *                                   <transport>_delivery_slot_cost slots; then that message's
 *                                   destinations round-robin.
 *   qmgr   unix n - n 300 1 oqmgr   oqmgr, the "old" queue manager: the transport's destinations
 *                                   round-robin, and within one destination first in, first out
 *                                   (Postfix's oqmgr qmgr_queue_select / qmgr_entry_select); no
 *                                   jobs, no delivery slots, no preemption.
 *
 * Everything else is shared by both (./manager.ts and its parts): the active queue and its recipient slices,
 * destinations with their concurrency feedback, dead destinations and rate delays, the end of an
 * attempt, backoff, notices. Postfix's oqmgr reads none of nqmgr's job parameters
 * (<transport>_delivery_slot_*, _minimum_delivery_slots, _recipient_refill_*, …); they are simply
 * not read there, without a warning, and oqmgr alone reads qmgr_fudge_factor.
 */
import type { JobList, SchedJob } from './scheduler.js';

/** One transport's choice of its next entry. */
export interface EntrySelector<D, E> {
  /** True when nothing can be selected (a cheap test before select()). */
  idle(): boolean;
  /** `dest` has an entry waiting for it (new, or put back). */
  waiting(dest: D): void;
  /** `dest` is forgotten (idle, freed by the manager). */
  forget(dest: D): void;
  /** The next entry to hand to a delivery agent, taken off its lists; null if none can go now. */
  select(now: number): E | null;
}

/** nqmgr: the transport's job list chooses the job, the job's peers the destination. */
export function jobSelector<J extends SchedJob, D, E>(jobs: JobList<J>, pickPeer: (job: J, now: number) => E | null): EntrySelector<D, E> {
  return {
    idle: () => jobs.current === null,
    waiting: () => undefined,
    forget: () => undefined,
    select: (now) => jobs.select((job) => pickPeer(job, now), now)?.entry ?? null,
  };
}

/** What oqmgr's selection needs to know of the manager's destinations. */
export interface RingHost<D, E> {
  /** `dest` has an entry waiting and may start a delivery now (window, not dead, not suspended). */
  open(dest: D, now: number): boolean;
  /** Takes `dest`'s oldest waiting entry off its lists. */
  take(dest: D): E;
  /** `dest` has entries waiting or in delivery (an empty one leaves the ring, as Postfix frees the queue). */
  live(dest: D): boolean;
}

/**
 * oqmgr: the transport's destinations round-robin (qmgr_queue_select: the first queue with room
 * in its window and something to do, then the list rotates so it comes last), the destination's
 * entries first in, first out (qmgr_entry_select). A new destination joins at the end of the
 * round, as Postfix appends a new queue to the transport's list.
 */
export class DestinationRing<D, E> implements EntrySelector<D, E> {
  /** The round, in order from `turn`. */
  private readonly ring: D[] = [];
  private readonly members = new Set<D>();
  private turn = 0;

  constructor(private readonly host: RingHost<D, E>) {}

  idle(): boolean {
    return this.ring.length === 0;
  }

  waiting(dest: D): void {
    if (this.members.has(dest)) return;
    this.members.add(dest);
    // Just before `turn`: the last one the round reaches.
    this.ring.splice(this.turn, 0, dest);
    this.turn++;
    if (this.turn >= this.ring.length) this.turn = 0;
  }

  forget(dest: D): void {
    if (!this.members.delete(dest)) return;
    const i = this.ring.indexOf(dest);
    this.ring.splice(i, 1);
    if (i < this.turn) this.turn--;
    if (this.turn >= this.ring.length) this.turn = 0;
  }

  /** The destinations in the order the next round visits them (for tests and debugging). */
  order(): D[] {
    return [...this.ring.slice(this.turn), ...this.ring.slice(0, this.turn)];
  }

  select(now: number): E | null {
    // Bounded: each destination is looked at once per call.
    for (let seen = 0, n = this.ring.length; seen < n && this.ring.length > 0; seen++) {
      if (this.turn >= this.ring.length) this.turn = 0;
      const dest = this.ring[this.turn]!;
      if (!this.host.live(dest)) {
        this.forget(dest);
        continue;
      }
      if (this.host.open(dest, now)) {
        this.turn = (this.turn + 1) % this.ring.length; // rotate: dest comes last in the next round
        return this.host.take(dest);
      }
      this.turn = (this.turn + 1) % this.ring.length;
    }
    return null;
  }
}
