/**
 * Global mail flow control, as Postfix's mail_flow(3): tokens that mail-receiving actors consume
 * and the queue manager produces. Postfix keeps them as bytes in a pipe owned by master; here
 * they are a counter in a SharedArrayBuffer that master creates once and hands to every thread
 * (workerData), so taking or giving a token is one atomic operation, no message hop.
 *
 * get() never blocks: a receiver that finds no token is expected to slow down a little
 * (Postfix's servers doze in_flow_delay), not to stop.
 */
export class MailFlow {
  private readonly tokens: Int32Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.tokens = new Int32Array(buffer, 0, 1);
  }

  static create(): MailFlow {
    return new MailFlow(new SharedArrayBuffer(4));
  }

  /** Tokens available now. */
  count(): number {
    return Atomics.load(this.tokens, 0);
  }

  /** Takes n tokens if that many are there; false (nothing taken) otherwise. */
  get(n = 1): boolean {
    for (;;) {
      const have = Atomics.load(this.tokens, 0);
      if (have < n) return false;
      if (Atomics.compareExchange(this.tokens, 0, have, have - n) === have) return true;
    }
  }

  /** Produces n tokens. */
  put(n = 1): void {
    if (n > 0) Atomics.add(this.tokens, 0, n);
  }

  /**
   * The queue manager's side (Postfix's qmgr, after each scan step): a message was just taken
   * from incoming → one token back; incoming is empty → fill up to `limit`; more than `limit`
   * (they pile up while nobody receives) → trim to `limit`.
   */
  replenish(fedFromIncoming: boolean, incomingEmpty: boolean, limit: number): void {
    const have = this.count();
    if (have < limit) {
      if (fedFromIncoming) this.put(1);
      else if (incomingEmpty) this.put(limit - have);
    } else if (have > limit) {
      this.get(have - limit);
    }
  }
}

/** The flow of this thread, when master handed one over (workerData.flow). */
export function flowOf(data: { flow?: SharedArrayBuffer }): MailFlow | null {
  return data.flow instanceof SharedArrayBuffer ? new MailFlow(data.flow) : null;
}
