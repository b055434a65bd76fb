/**
 * postscreen_cache_map: the temporary allowlist. Postfix keeps it in a btree file that one
 * postscreen process owns; here postscreen runs in every smtpd thread of its pass service, so
 * the entries live in the queue store (LMDB, the `postscreen` database), which every thread
 * shares: a client that passed on one thread is "PASS OLD" on any other. The map's type:name
 * is not used for the location; an empty postscreen_cache_map turns the cache off.
 *
 * Cleanup (dict_cache's, every postscreen_cache_cleanup_interval, by thread 0 only): an entry is
 * dropped when all its tests expired more than postscreen_cache_retention_time ago, and the run
 * is logged as Postfix logs it.
 */
import { QueueStore } from '../../src/queue/store.js';
import type { PostscreenSettings } from './settings.js';
import { newState, parseTests, TEST_COUNT } from './tests.js';

export class PostscreenCache {
  private timer: NodeJS.Timeout | null = null;
  /** This thread's updates not yet committed (a commit waits for the disk; the client may be back sooner). */
  private readonly unsettled = new Map<string, string>();

  constructor(private readonly store: QueueStore, private readonly settings: PostscreenSettings, private readonly mapName: string) {}

  lookup(addr: string): string | undefined {
    return this.unsettled.get(addr) ?? this.store.postscreenEntry(addr);
  }

  update(addr: string, entry: string, warn: (text: string) => void): void {
    this.unsettled.set(addr, entry);
    this.store.putPostscreenEntry(addr, entry).then(
      () => { if (this.unsettled.get(addr) === entry) this.unsettled.delete(addr); },
      (err: Error) => {
        this.unsettled.delete(addr);
        warn(`${this.mapName}: cache update for ${addr} failed: ${err.message}`);
      },
    );
  }

  /** Starts the periodic cleanup (one thread does it). */
  startCleanup(info: (text: string) => void): void {
    const every = this.settings.cacheCleanupInterval;
    if (every <= 0) return;
    this.timer = setInterval(() => void this.cleanup(info), every * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One full cleanup run; returns how many entries were kept and dropped. */
  async cleanup(info: (text: string) => void): Promise<{ retained: number; dropped: number }> {
    const horizon = Math.floor(Date.now() / 1000) - this.settings.cacheRetention;
    let retained = 0;
    const drop: string[] = [];
    for (const { key, value } of this.store.postscreenEntries()) {
      const st = newState();
      parseTests(this.settings, st, value, horizon);
      // Keep the entry while some enabled test is still valid at (now - retention).
      if (st.todo.slice(0, TEST_COUNT).some(Boolean)) drop.push(key);
      else retained++;
    }
    for (const key of drop) await this.store.removePostscreenEntry(key);
    info(`cache ${this.mapName} full cleanup: retained=${retained} dropped=${drop.length} entries`);
    return { retained, dropped: drop.length };
  }
}
