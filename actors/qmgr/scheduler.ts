/**
 * nqmgr's preemptive job scheduler, per transport (Postfix's qmgr_job.c and SCHEDULER_README):
 * the pure bookkeeping, without queues, timers or I/O, so that it can be tested on its own.
 *
 * A job is one message within one transport. The transport keeps its jobs in a scheduler list
 * (arrival order, adjusted by preemption). Each entry selected for a job earns it one delivery
 * slot; every `cost` slots may be spent by a smaller job that can be completely delivered within
 * the slots the current job can still earn, which then moves in front of it. With slot cost k a
 * job is slowed by at most k/(k−1), however deep preemptions nest. Loan and discount let a
 * preemption happen early (the candidate gets `loan` slots plus `discount` % in advance); the
 * slots are still paid afterwards. A job none of whose destinations can take an entry is a
 * blocker: skipped, and not a candidate, until the transport's blocker tag changes.
 */

/** A transport's <transport>_delivery_slot_* and <transport>_minimum_delivery_slots. */
export interface SlotParams {
  cost: number;
  loan: number;
  /** Percent of the candidate's slots that must be earned before it may preempt. */
  discount: number;
  minSlots: number;
}

export const DEFAULT_SLOTS: SlotParams = { cost: 5, loan: 3, discount: 50, minSlots: 3 };

/** The scheduling state of one job (message × transport). */
export interface SchedJob {
  /** When the message was queued (ms since the epoch): the order of the job list. */
  queuedAt: number;
  /** Entries read into memory so far, and recipients not read yet (an upper bound of entries to come). */
  readEntries: number;
  unreadEntries: number;
  /** Entries handed out. */
  selected: number;
  slotsUsed: number;
  slotsAvailable: number;
  parent: SchedJob | null;
  children: Set<SchedJob>;
  /** -1: not on the job list (new or retired); 0: on it; n > 0: preempting at depth n. */
  level: number;
  blocker: number;
}

export function newJob(queuedAt: number, readEntries = 0, unreadEntries = 0): SchedJob {
  return { queuedAt, readEntries, unreadEntries, selected: 0, slotsUsed: 0, slotsAvailable: 0, parent: null, children: new Set(), level: -1, blocker: 0 };
}

/** Entries still to be handed out for certain (in memory, not selected). */
export const hasEntries = (job: SchedJob): boolean => job.selected < job.readEntries;
/** The most entries the job can ever have (Postfix's MAX_ENTRIES). */
export const maxEntries = (job: SchedJob): number => job.readEntries + job.unreadEntries;

/**
 * The slots the current job can still earn, in whole preemptions' worth: the bound on what a
 * candidate may need (entries it may yet have, minus those handed out) to be considered.
 */
export function maxSlots(current: SchedJob, p: SlotParams): number {
  return Math.trunc((current.readEntries - current.selected + current.slotsAvailable) / p.cost);
}

/** Candidate score: the longer queued per entry, the better (delay counted in whole seconds + 1, as Postfix). */
export function score(job: SchedJob, now: number): number {
  return delaySeconds(job, now) / maxEntries(job);
}

function delaySeconds(job: SchedJob, now: number): number {
  return Math.floor((now - job.queuedAt) / 1000) + 1;
}

/** Whether the current job has earned enough slots (loan and discount counted) for `candidate`. */
export function mayPreempt(current: SchedJob, candidate: SchedJob, p: SlotParams): boolean {
  if (current.slotsAvailable <= 0 || maxEntries(current) < p.minSlots * p.cost) return false;
  const expected = maxEntries(candidate) - candidate.selected;
  return Math.trunc(current.slotsAvailable / p.cost) + p.loan >= (expected * p.discount) / 100;
}

/** One transport's job list. */
export class JobList<J extends SchedJob> {
  /** The scheduler order. */
  readonly jobs: J[] = [];
  current: J | null = null;
  blockerTag = 1;

  constructor(public params: SlotParams) {}

  /** Puts a new or retired job on the list by arrival time, as qmgr_job_link does. */
  link(job: J): void {
    if (job.level >= 0) return;
    let at = this.jobs.length;
    let currentAfter = this.current === null;
    while (at > 0) {
      const prev = this.jobs[at - 1]!;
      if (prev.parent === null && job.queuedAt - prev.queuedAt >= 0) break;
      if (prev === this.current) currentAfter = true;
      at--;
    }
    job.level = 0;
    this.jobs.splice(at, 0, job);
    if (currentAfter) this.current = job;
  }

  /** A job got more entries (recipients read, an entry put back): back on the list, no longer a blocker. */
  obtain(job: J): void {
    if (job.level < 0) this.link(job);
    if (job.blocker === this.blockerTag) {
      job.blocker = 0;
      this.current = this.jobs[0] ?? null;
    }
  }

  /** A destination can take entries again: every blocker is reconsidered from the head of the list. */
  unblock(): void {
    this.blockerTag++;
    this.current = this.jobs[0] ?? null;
  }

  /** An entry handed out came back unused (the agent was busy). */
  unselect(job: J): void {
    job.selected--;
    this.obtain(job);
  }

  /** The job is done (all its entries delivered): off the list and out of any preemption stack. */
  free(job: J): void {
    if (job.level > 0) this.pop(job);
    if (job.level >= 0) this.unlink(job);
  }

  private retire(job: J): void {
    if (job.level > 0) this.pop(job);
    this.unlink(job);
  }

  private unlink(job: J): void {
    for (const child of job.children) child.parent = null;
    job.children.clear();
    const i = this.jobs.indexOf(job);
    if (this.current === job) this.current = this.jobs[i + 1] ?? null;
    if (i >= 0) this.jobs.splice(i, 1);
    job.level = -1;
  }

  /** Off its preemption stack: the parent is charged the slots the job really used (qmgr_job_pop). */
  private pop(job: J): void {
    const parent = job.parent;
    if (parent && job.level === parent.level + 1) parent.slotsAvailable -= job.slotsUsed * this.params.cost;
    if (parent) parent.children.delete(job);
    job.parent = null;
    for (const child of job.children) {
      child.parent = parent;
      parent?.children.add(child);
    }
    job.children.clear();
    job.level = 0;
  }

  /** The best job to preempt `current`, or null (qmgr_job_candidate). */
  candidate(current: J, now: number): J | null {
    const limit = maxSlots(current, this.params);
    if (limit <= 0) return null;
    let best: J | null = null;
    let bestScore = 0;
    for (let i = this.jobs.indexOf(current) + 1; i < this.jobs.length; i++) {
      const job = this.jobs[i]!;
      if (job.children.size > 0 || job.blocker === this.blockerTag) continue;
      const needed = maxEntries(job) - job.selected;
      const delay = delaySeconds(job, now);
      if (needed > 0 && needed <= limit) {
        const s = delay / maxEntries(job);
        if (s > bestScore) {
          bestScore = s;
          best = job;
        }
      }
      if (delay <= bestScore && job.level === 0) break; // later jobs are younger: none can score better
    }
    return best;
  }

  /** Preempts the current job if a candidate qualifies; returns the job to serve first (qmgr_job_preempt). */
  preempt(current: J, now: number): J {
    const p = this.params;
    if (current.slotsAvailable <= 0 || maxEntries(current) < p.minSlots * p.cost) return current;
    const job = this.candidate(current, now);
    if (!job || !mayPreempt(current, job, p)) return current;
    if (job.level > 0) this.pop(job);
    this.jobs.splice(this.jobs.indexOf(job), 1);
    this.jobs.splice(this.jobs.indexOf(current), 0, job);
    job.parent = current;
    current.children.add(job);
    job.level = current.level + 1;
    this.current = job;
    const expected = maxEntries(job) - job.selected;
    current.slotsAvailable -= expected * p.cost;
    job.slotsUsed = -expected; // counts the difference from what was expected, until pop()
    return job;
  }

  /**
   * Selects the next entry (qmgr_job_entry_select): preemption first, then the jobs in list order
   * from the current one; `pick` returns an entry of the job that a destination can take, or
   * null. A job with entries that none can take becomes a blocker; one with no entries left is
   * retired (it comes back with obtain()).
   */
  select<R>(pick: (job: J) => R | null, now = Date.now()): { job: J; entry: R } | null {
    let job = this.current;
    if (!job) return null;
    if (this.params.cost >= 2) job = this.preempt(job, now);
    for (let i = this.jobs.indexOf(job); i >= 0 && i < this.jobs.length; ) {
      job = this.jobs[i]!;
      if (job.blocker === this.blockerTag) {
        i++;
        continue;
      }
      const entry = hasEntries(job) ? pick(job) : null;
      if (entry !== null) {
        job.selected++;
        job.slotsAvailable++;
        job.slotsUsed++;
        this.current = job;
        if (!hasEntries(job) && job.unreadEntries === 0) this.retire(job);
        return { job, entry };
      }
      if (hasEntries(job)) {
        job.blocker = this.blockerTag;
        i++;
      } else {
        this.retire(job); // stalled: no entries in memory now (more may be read later)
      }
    }
    this.current = null;
    return null;
  }
}
