/**
 * The address verification cache (Postfix's address_verify_map behind dict_cache). Postfix 3.8
 * keeps it in `btree:$data_directory/verify_cache`; Postactor keeps it in the queue store's
 * `verify` database (src/queue/store.ts): one LMDB environment, one backup, one set of file
 * permissions, and it survives a restart as Postfix's file does. That default (or the same file
 * named as hash: or lmdb:) selects the store; an empty value is Postfix's volatile
 * "internal:verify" (memory, gone at restart or reload); any other table is refused, since the
 * entries would not be where the administrator looks for them (or shares them).
 *
 * Writes are asynchronous (they resolve when on disk); until then the entry is kept in
 * `pending`, so a query that follows an update in the same turn sees it.
 *
 * The cleanup run (address_verify_cache_cleanup_interval, Postfix's dict_cache cleanup thread)
 * deletes the entries that expired and have no probe outstanding, and logs Postfix's
 * statistics line.
 */
import type { Config } from '../config/index.js';
import type { QueueStore, VerifyEntry } from '../queue/store.js';

/** Why address_verify_map cannot be used, or null. */
export function verifyMapProblem(config: Config): string | null {
  const v = config.get('address_verify_map').trim();
  if (v === '' || persistent(config)) return null;
  return `address_verify_map = ${v}: not supported by Postactor (the verify cache lives in the queue store; use the default btree:$data_directory/verify_cache, or empty for a cache in memory)`;
}

function persistent(config: Config): boolean {
  const v = config.get('address_verify_map').trim();
  const m = /^(btree|hash|lmdb):(.+)$/.exec(v);
  return m !== null && m[2]!.replace(/\/+$/, '') === `${config.get('data_directory').replace(/\/+$/, '')}/verify_cache`;
}

export class VerifyCache {
  private readonly memory = new Map<string, VerifyEntry>();
  private readonly pending = new Map<string, VerifyEntry | null>();
  /** The store when the cache is persistent; null: volatile (address_verify_map empty). */
  private readonly store: QueueStore | null;

  constructor(config: Config, store: QueueStore) {
    this.store = persistent(config) ? store : null;
  }

  get volatile(): boolean {
    return this.store === null;
  }

  get(address: string): VerifyEntry | undefined {
    if (this.pending.has(address)) return this.pending.get(address) ?? undefined;
    if (!this.store) return this.memory.get(address);
    const e = this.store.verifyEntry(address);
    return e && valid(e) ? e : undefined;
  }

  put(address: string, entry: VerifyEntry): Promise<void> {
    return this.write(address, entry);
  }

  delete(address: string): Promise<void> {
    return this.write(address, null);
  }

  private write(address: string, entry: VerifyEntry | null): Promise<void> {
    if (!this.store) {
      if (entry) this.memory.set(address, entry);
      else this.memory.delete(address);
      return Promise.resolve();
    }
    this.pending.set(address, entry);
    const done = this.store.putVerifyEntry(address, entry);
    return done.finally(() => {
      if (this.pending.get(address) === entry) this.pending.delete(address);
    });
  }

  /**
   * One cleanup run: deletes each entry `keep` says no to. Returns Postfix's counts
   * (retained, dropped).
   */
  async cleanup(keep: (entry: VerifyEntry) => boolean): Promise<{ retained: number; dropped: number }> {
    const drop: string[] = [];
    let retained = 0;
    const entries = this.store ? this.store.verifyEntries() : this.memory.entries();
    for (const [address, entry] of entries) {
      if (this.pending.has(address)) retained++;
      else if (valid(entry) && keep(entry)) retained++;
      else drop.push(address);
    }
    for (const address of drop) await this.delete(address);
    return { retained, dropped: drop.length };
  }
}

/** A readable entry (a broken one is dropped as Postfix's verify_parse_entry warns and ignores it). */
function valid(e: VerifyEntry): boolean {
  return typeof e === 'object' && e !== null && ['ok', 'defer', 'bounce', 'todo'].includes(e.status)
    && typeof e.probed === 'number' && typeof e.updated === 'number' && typeof e.text === 'string' && (e.probed > 0 || e.updated > 0);
}
