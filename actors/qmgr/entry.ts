/**
 * Entries, peers and jobs as the active queue holds them (Postfix's qmgr_entry.c, qmgr_peer.c
 * and the in-memory side of qmgr_job.c; the job list's pure bookkeeping — preemption, slots,
 * blockers — is ./scheduler.ts). An entry is up to <transport>_destination_recipient_limit
 * recipients of one message for one destination: created when recipients are read
 * (qmgr_entry_create), selected for a delivery (through the transport's selector, ./strategy.ts),
 * put back when the agents are busy (qmgr_entry_unselect), and done when its delivery is back or
 * it was deferred without one (qmgr_entry_done). A job is one message within one transport; its
 * peers are its entries per destination, served round-robin.
 *
 * Collaborators come in explicitly (the transports and destinations), so a test builds it with
 * them alone (test/qmgr-parts.test.ts).
 */
import type { DeliveryRecipient } from '../protocol.js';
import { newJob, type SchedJob } from './scheduler.js';
import { mayStart, type Destination, type Destinations } from './queue.js';
import type { Transport, Transports } from './transport.js';
import type { ActiveMessage } from './message.js';

export interface Entry {
  msg: ActiveMessage;
  dest: Destination;
  recipients: DeliveryRecipient[];
  job: Job;
  /** When the delivery request went to the agent (ms): the metrics' queue and transfer delays. */
  dispatched?: number;
}

/** nqmgr's job: one message within one transport, on that transport's job list (./scheduler.ts). */
export interface Job extends SchedJob {
  msg: ActiveMessage;
  transport: Transport;
  /** One peer per destination: this job's entries waiting for it, served round-robin. */
  peers: Peer[];
  peerOf: Map<Destination, Peer>;
  rr: number;
  /** Entries back from their delivery (or deferred without one). */
  doneEntries: number;
}

export interface Peer {
  job: Job;
  dest: Destination;
  entries: Entry[];
}

export class Entries {
  /** Recipients of all active messages in memory (qmgr_message_recipient_limit). */
  rcptInMemory = 0;

  constructor(private readonly transports: Transports, private readonly destinations: Destinations) {}

  /** One entry (recipients of `msg` for `dest`) onto its job's peer and its destination's todo list. */
  enqueue(msg: ActiveMessage, dest: Destination, recipients: DeliveryRecipient[]): void {
    const t = this.transports.get(dest.transport);
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
    this.destinations.ready.add(dest);
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
  pickPeer(job: Job, now: number): Entry | null {
    const n = job.peers.length;
    for (let k = 0; k < n; k++) {
      const peer = job.peers[(job.rr + k) % n]!;
      const dest = peer.dest;
      if (peer.entries.length === 0 || !mayStart(dest, now)) continue;
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

  /**
   * oqmgr: `dest`'s oldest entry (first in, first out), off its job's peer too; counted as
   * selected in its job, as nqmgr's selection would, so that the job's bookkeeping stays the same.
   */
  takeOldest(dest: Destination): Entry {
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
  unqueue(entry: Entry): void {
    const peer = entry.job.peerOf.get(entry.dest);
    if (peer) {
      const i = peer.entries.indexOf(entry);
      if (i >= 0) peer.entries.splice(i, 1);
      if (peer.entries.length === 0) this.dropPeer(peer);
    }
    entry.job.selected++;
    this.done(entry);
  }

  /** An entry is finished; its job leaves the transport's job list with its last one. */
  done(entry: Entry): void {
    const { job } = entry;
    job.doneEntries++;
    entry.msg.rcpt.inMemory -= entry.recipients.length;
    this.rcptInMemory -= entry.recipients.length;
    if (job.doneEntries >= job.readEntries && job.unreadEntries === 0) this.freeJob(job);
  }

  freeJob(job: Job): void {
    job.transport.jobs.free(job);
    if (job.transport.jobOf.get(job.msg) === job) job.transport.jobOf.delete(job.msg);
  }

  /** A handed-out entry comes back unused (the transport's agents are busy): first in line again. */
  requeue(entry: Entry): void {
    this.peer(entry.job, entry.dest).entries.unshift(entry);
    entry.dest.todo.unshift(entry);
    entry.job.transport.jobs.unselect(entry.job);
    entry.job.transport.selector.waiting(entry.dest);
  }
}
