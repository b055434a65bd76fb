/**
 * The master's showq: while the server runs, mailq and postqueue -p / -j ask the master for the
 * queue listing over its control socket (command "showq"), as Postfix's postqueue asks its
 * showq service, instead of loading LMDB themselves, which is most of such a command's
 * start-up. The master opens the store as its actors do (one LMDB environment per process,
 * shared), at the first request, and keeps it until it stops. The listing is the same
 * collectQueue() the commands use on a stopped server, so the output is the same.
 */
import { collectQueue, type ListedMessage } from './listing.js';
import type { QueueStore } from './store.js';

export class Showq {
  private store: QueueStore | null = null;

  constructor(private readonly queueDir: string) {}

  /** Every message in showq's order; `emptyAddress` is the asking command's empty_address_recipient. */
  async list(emptyAddress: string): Promise<ListedMessage[]> {
    if (this.store === null) {
      const { QueueStore } = await import('./store.js');
      this.store ??= QueueStore.open(this.queueDir);
    }
    return collectQueue(this.store, emptyAddress);
  }

  async close(): Promise<void> {
    const s = this.store;
    this.store = null;
    await s?.close();
  }
}
