/**
 * A budget of bytes held in memory at once, shared by the requests of one thread: a request
 * waits (in order) until its bytes fit, except that one request is always let through when
 * nothing else holds any, so a single message larger than the budget still passes.
 *
 * Why: Postfix's smtpd streams a message into its queue file as it arrives, so many large
 * messages ending at once cost it nothing more. Postactor's smtpd spools a message to a file
 * while it arrives (actors/smtpd/spool.ts) but hands it to cleanup as one buffer, and cleanup
 * and the store's commit each hold a copy until the commit: 30 clients ending 10 MB messages
 * together took the server from ~170 MB to ~870 MB RSS. With a budget the ends of DATA queue
 * behind each other instead (each waits for the commits before it), and memory stays bounded
 * by the budget times those copies.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: { bytes: number; go: () => void }[] = [];

  constructor(readonly limit: number) {}

  /** Bytes held now (tests, metrics). */
  get held(): number {
    return this.used;
  }

  /** Waits until `bytes` fit, then holds them; the function returned gives them back (once). */
  async acquire(bytes: number): Promise<() => void> {
    const n = Math.max(0, bytes);
    if (this.waiting.length === 0 && this.fits(n)) this.used += n;
    else await new Promise<void>((go) => this.waiting.push({ bytes: n, go }));
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.used -= n;
      this.wake();
    };
  }

  private fits(n: number): boolean {
    return this.used === 0 || this.used + n <= this.limit;
  }

  private wake(): void {
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) {
      const w = this.waiting.shift()!;
      this.used += w.bytes;
      w.go();
    }
  }
}
