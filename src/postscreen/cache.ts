/**
 * postscreen_cache_map: the temporary allowlist. Postfix keeps it in a btree file that one
 * postscreen process owns; here postscreen runs in every smtpd thread of its pass service, so
 * the entries live in the queue store (LMDB, the `postscreen` database), which every thread
 * shares: a client that passed on one thread is "PASS OLD" on any other. An update is also
 * told to the other threads at once (a BroadcastChannel), since its commit waits for the disk. The map's type:name
 * is not used for the location; an empty postscreen_cache_map turns the cache off.
 *
 * Cleanup (dict_cache's, every postscreen_cache_cleanup_interval, by thread 0 only): an entry is
 * dropped when all its tests expired more than postscreen_cache_retention_time ago, and the run
 * is logged as Postfix logs it.
 */
import { BroadcastChannel } from 'node:worker_threads';
import { QueueStore } from '../queue/store.js';
import type { PostscreenSettings } from './settings.js';
import { newState, parseTests, TEST_COUNT } from './tests.js';

/** How long an update is served from memory (by then it is on disk). */
const RECENT_MS = 60_000;

export class PostscreenCache {
  private timer: NodeJS.Timeout | null = null;
  /**
   * Recent updates, this thread's and (over the channel) the other threads': a commit waits
   * for the disk, and the client may be back on another thread sooner than that.
   */
  private readonly recent = new Map<string, { entry: string; at: number }>();
  private readonly channel: BroadcastChannel;

  constructor(private readonly store: QueueStore, private readonly settings: PostscreenSettings, private readonly mapName: string) {
    this.channel = new BroadcastChannel(`postactor-postscreen-cache:${store.directory}`);
    this.channel.onmessage = (e) => {
      const { addr, entry } = (e as MessageEvent).data as { addr: string; entry: string };
      this.remember(addr, entry);
    };
    this.channel.unref();
  }

  private remember(addr: string, entry: string): void {
    const now = Date.now();
    if (this.recent.size > 10_000) for (const [k, v] of this.recent) if (now - v.at > RECENT_MS) this.recent.delete(k);
    this.recent.set(addr, { entry, at: now });
  }

  lookup(addr: string): string | undefined {
    const r = this.recent.get(addr);
    if (r && Date.now() - r.at < RECENT_MS) return r.entry;
    if (r) this.recent.delete(addr);
    return this.store.postscreenEntry(addr);
  }

  update(addr: string, entry: string, warn: (text: string) => void): void {
    this.remember(addr, entry);
    this.channel.postMessage({ addr, entry });
    this.store.putPostscreenEntry(addr, entry).catch((err: Error) => warn(`${this.mapName}: cache update for ${addr} failed: ${err.message}`));
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
    this.channel.close();
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
