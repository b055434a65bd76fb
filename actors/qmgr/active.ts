/**
 * The active queue (Postfix's qmgr_active.c): messages move from incoming or deferred into
 * active, one store transaction each (a scan's moves share one group commit; a move from
 * incoming rides a later commit without being waited for, see activateLater), within
 * qmgr_message_active_limit (oqmgr also within qmgr_message_recipient_limit recipients), and
 * the first slice of its recipients is read (./message.ts). Its content is not read here: the
 * delivery agents check it as they read it, and a damaged one ends the attempt in the corrupt
 * queue (./done.ts, Postfix's qmgr_active_corrupt). When no entry
 * is outstanding and every recipient was read, the attempt ends (./done.ts) and the message
 * leaves memory. A message whose end could not be written (a full disk) is stranded: still in
 * active on disk, no longer in memory; the next scan puts it back into incoming (duplicates
 * possible, loss never). Global flow control (in_flow_delay) is fed from here: a token back for
 * each message taken from incoming.
 *
 * Collaborators come in explicitly (store, flow tokens, the other parts), so a test builds an
 * active queue over a real store (test/qmgr-parts.test.ts).
 */
import { metrics } from '../../src/metrics/thread.js';
import type { Config } from '../../src/config/index.js';
import { valuesOf, type Params } from '../../src/config/declared.js';
import type { Logger } from '../../src/log/maillog.js';
import { EnvelopeDamagedError, type QueueStore } from '../../src/queue/store.js';
import type { MessageMeta, QueueName } from '../../src/queue/types.js';
import type { MailFlow } from '../../src/runtime/flow.js';
import type { Transports } from './transport.js';
import type { Entries } from './entry.js';
import type { ActiveMessage, Messages } from './message.js';
import type { AttemptEnd } from './done.js';

/** What the active queue reads (with the rest of qmgr's: manager.ts QMGR_PARAMS). */
export const ACTIVE_PARAMS = {
  'qmgr_message_active_limit': 'int',
  'in_flow_delay': 'time',
  'default_process_limit': 'int',
} as const;

/** Messages a queue scan activates at once (their moves share one commit). */
export const SCAN_BATCH = 100;

export class ActiveQueue {
  readonly messages = new Map<string, ActiveMessage>();
  readonly activating = new Set<string>();
  /**
   * Messages whose end of attempt could not be written (a failed commit: a full disk): they are
   * still in the active queue on disk but no longer in memory. Each scan puts them back into
   * incoming; what this attempt delivered may then be delivered again (duplicates, never loss).
   */
  readonly stranded = new Set<string>();
  /** Probes (trace mode probe) in the active queue (address_verify_pending_request_limit). */
  probesActive = 0;
  /** incoming has messages not taken yet (the active queue was full, or a move failed). */
  incomingBacklog = false;
  private activeLimit!: number;
  /** in_flow_delay (s) and the flow tokens shared with cleanup (src/runtime/flow.ts). */
  private inFlowDelay!: number;
  private procLimit!: number;

  constructor(
    config: Config | Params<typeof ACTIVE_PARAMS>,
    private readonly store: QueueStore,
    private readonly log: Logger,
    private readonly flow: MailFlow | null,
    private readonly parts: { transports: Transports; entries: Entries; messages: Messages; end: AttemptEnd },
  ) {
    this.reconfigure(config);
    store.onLaterFailure = (ids, err) => this.laterFailed(ids, err);
  }

  /** Messages in memory whose move into active rode a failed commit: still in incoming on disk. */
  private readonly unmoved = new Set<string>();

  /**
   * Writes that rode a failed commit (a full disk): nothing of them is on disk. A message no
   * longer in memory (its removal or deferral failed) is stranded, as when finish() fails; one
   * still in memory may still be in incoming on disk (its move failed), so once it leaves memory a
   * scan looks at incoming again. Either way it is delivered again (a duplicate), never lost.
   */
  private laterFailed(ids: string[], err: Error): void {
    for (const id of ids) {
      this.log.warn(`${id}: queue update failed: ${err.message}; the message is requeued at the next queue scan`);
      if (this.holds(id)) this.unmoved.add(id);
      else this.stranded.add(id);
    }
    this.incomingBacklog = true;
  }

  /** The values qmgr read (a configuration: read here). */
  reconfigure(from: Config | Params<typeof ACTIVE_PARAMS>): void {
    const p = valuesOf(from, ACTIVE_PARAMS, 'qmgr');
    this.activeLimit = p.qmgr_message_active_limit;
    this.inFlowDelay = p.in_flow_delay;
    this.procLimit = Math.max(1, p.default_process_limit);
  }

  /** qmgr_message_active_limit: the most messages a scan takes from one queue. */
  get limit(): number {
    return this.activeLimit;
  }

  /**
   * Postfix's global flow control (mail_flow, in_flow_delay): a token back for each message taken
   * from incoming, the pool filled up to default_process_limit while incoming is empty. When
   * qmgr falls behind (active queue full, incoming piling up) the tokens run out and cleanup
   * slows each new message by in_flow_delay.
   */
  flowStep(fedFromIncoming: boolean): void {
    if (!this.flow || this.inFlowDelay <= 0) return;
    this.flow.replenish(fedFromIncoming, !this.incomingBacklog, this.procLimit);
  }

  /**
   * Whether another message may be activated: qmgr_message_active_limit; oqmgr also stops
   * opening messages while qmgr_message_recipient_limit recipients are in memory (nqmgr does not:
   * each new message gets at least qmgr_message_recipient_minimum).
   */
  room(): boolean {
    if (this.parts.messages.full()) return false;
    return this.messages.size + this.activating.size < this.activeLimit;
  }

  /** True if the message is in qmgr's memory (active, or being activated). */
  holds(queueId: string): boolean {
    return this.messages.has(queueId) || this.activating.has(queueId);
  }

  /** The message leaves memory (its attempt has ended). */
  forget(queueId: string, probe: boolean): void {
    this.messages.delete(queueId);
    if (this.unmoved.delete(queueId)) this.incomingBacklog = true;
    if (probe) this.probesActive--;
  }

  /**
   * Activates messages of a scan, SCAN_BATCH at a time: the moves of a batch are asked for at
   * once, so the store commits them together (group commit: one synced commit per batch instead
   * of one per message), while the recipients read meanwhile stay bounded. activate() counts a
   * message as activating before its first await, so room() stays exact. False when the active
   * queue filled up before every message was taken.
   */
  async activateAll(ids: string[], from: QueueName): Promise<boolean> {
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

  /** One message into the active queue: one transaction, then its recipients to their destinations. */
  async activate(queueId: string, from: QueueName): Promise<void> {
    if (this.messages.has(queueId) || this.activating.has(queueId)) return;
    this.activating.add(queueId);
    let meta: MessageMeta | undefined;
    try {
      meta = from === 'incoming' ? this.activateLater(queueId) : await this.store.move(queueId, 'active', {}, from);
    } catch (err) {
      if (err instanceof EnvelopeDamagedError) return void (await this.setAsideDamaged(queueId, from, err));
      // A failed commit (a full disk): the message stays where it was, and a later scan takes it.
      this.log.warn(`${queueId}: move to the active queue failed: ${(err as Error).message}`);
      if (from === 'incoming') this.incomingBacklog = true;
      return;
    } finally {
      this.activating.delete(queueId);
    }
    if (!meta) return;
    if (from === 'incoming') this.flowStep(true);
    // The content is not read here: the delivery agents check it against its checksum as they
    // read it (src/delivery/content.ts), and a damaged one ends in the corrupt queue (./done.ts).
    if (from === 'incoming') metrics().qmgrInserted.inc();
    const pendingIdx: number[] = [];
    for (const [i, r] of meta.recipients.entries()) if (!r.done) pendingIdx.push(i);
    const msg = this.parts.messages.create(meta, pendingIdx, Date.now());
    const { rcpt } = msg;
    this.messages.set(queueId, msg);
    if (meta.trace === 'probe') this.probesActive++;
    this.log.info(`${queueId}: from=<${meta.sender}>, size=${meta.size}, nrcpt=${pendingIdx.length} (queue active)`);
    if (meta.forcedExpire && pendingIdx.length > 0) {
      rcpt.readPos = pendingIdx.length;
      return void this.parts.end.forceExpire(msg, pendingIdx.map((index) => ({ index, address: meta!.recipients[index]!.address })));
    }
    await this.parts.messages.readSlice(msg, rcpt.cap);
  }

  /**
   * A message whose envelope does not decode (EnvelopeDamagedError) is never taken again: it goes
   * to the corrupt queue with Postfix's qmgr warning (qmgr_active_corrupt), its content kept for
   * postcat. If that move fails (a full disk), a later scan meets it again.
   */
  private async setAsideDamaged(queueId: string, from: QueueName, err: EnvelopeDamagedError): Promise<void> {
    this.log.warn(err.message);
    try {
      if (await this.store.setAsideDamaged(queueId)) this.log.warn(`saving corrupt file "${queueId}" from queue "${from}" to queue "corrupt"`);
    } catch (e) {
      this.log.warn(`${queueId}: move to the corrupt queue failed: ${(e as Error).message}`);
    }
  }

  /**
   * incoming → active without waiting for the disk: the move rides a later commit
   * (QueueStore.moveLater), and delivery starts at once. A crash before that commit leaves the
   * message in incoming, and a crash after it leaves it in active, which qmgr's start-up puts back
   * into incoming: either way it is delivered again (a duplicate), never lost; the 250 that
   * promised it waited for cleanup's synced commit. While the server runs only qmgr changes a
   * message in incoming (postsuper goes through qmgr), so the envelope read here stays current;
   * the store's condition (still in incoming) covers a message moved away meanwhile.
   */
  private activateLater(queueId: string): MessageMeta | undefined {
    // Still on its way out (delivered, its removal not yet committed): not to be taken again.
    if (this.store.hasLater(queueId)) return undefined;
    if (this.store.isChanging(queueId)) {
      this.incomingBacklog = true; // postsuper is changing it: a later scan looks again
      return undefined;
    }
    const current = this.store.get(queueId);
    if (current?.queue !== 'incoming') return undefined;
    const next = { ...current, queue: 'active' as const, nextAttempt: 0 };
    void this.store.moveLater(queueId, 'incoming', next);
    return next;
  }

  /** Stranded messages (see `stranded`) back into incoming; each stays stranded until that commits. */
  async requeueStranded(): Promise<void> {
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

  /** An entry of `msg` is back from its delivery: more recipients for a sliced message, and perhaps the end. */
  entryBack(msg: ActiveMessage): void {
    msg.outstanding--;
    if (msg.rcpt.cap < msg.rcpt.pending.length) {
      // A message read in slices: more recipients, and the delivered ones recorded as we go.
      this.parts.messages.refill(msg);
      void this.parts.messages.saveDone(msg);
    }
    this.maybeFinish(msg);
  }

  /** The attempt ends when no entry is outstanding and every recipient was read (or postsuper took it). */
  maybeFinish(msg: ActiveMessage): void {
    const { rcpt } = msg;
    if (msg.outstanding !== 0 || rcpt.reading || msg.finishing) return;
    if (rcpt.readPos < rcpt.pending.length && !msg.admin && !msg.corrupt) return this.parts.messages.refill(msg);
    for (const t of this.parts.transports.all.values()) {
      const job = t.jobOf.get(msg);
      if (job) this.parts.entries.freeJob(job);
    }
    void this.parts.end.finish(msg);
  }
}
