/**
 * The callers' cache of resolve results (Postfix's qmgr and smtpd keep one too): a small LRU
 * with a time to live. A table behind the results (transport_maps, relocated_maps) that changed
 * on disk empties it: its files' identity (inode, size, mtime) is checked at most once a second.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/index.js';

const FILE_TYPES = new Set(['texthash', 'lmdb', 'regexp', 'pcre', 'cidr']);

/** The files behind the given table specs (lmdb: the .lmdb file postmap writes). */
export function tableFiles(config: Config, params: string[]): string[] {
  const files: string[] = [];
  for (const p of params) {
    for (const spec of config.getList(p)) {
      const i = spec.indexOf(':');
      if (i <= 0 || !FILE_TYPES.has(spec.slice(0, i))) continue;
      const f = path.resolve(config.configDirectory ?? '.', spec.slice(i + 1));
      files.push(spec.startsWith('lmdb:') ? `${f}.lmdb` : f);
    }
  }
  return files;
}

function identity(files: string[]): string {
  return files.map((f) => {
    const st = statSync(f, { throwIfNoEntry: false, bigint: true });
    return st ? `${st.ino}:${st.size}:${st.mtimeNs}` : '-';
  }).join('|');
}

export class ResolveCache<T> {
  private readonly map = new Map<string, { value: T; expires: number }>();
  private stamp: string;
  private checked = 0;

  constructor(private readonly files: string[], private readonly maxEntries = 1000, private readonly ttlMs = 60_000) {
    this.stamp = identity(files);
  }

  get(key: string, now = Date.now()): T | undefined {
    this.checkTables(now);
    const hit = this.map.get(key);
    if (!hit) return undefined;
    if (hit.expires <= now) {
      this.map.delete(key);
      return undefined;
    }
    this.map.delete(key); // most recently used goes last
    this.map.set(key, hit);
    return hit.value;
  }

  set(key: string, value: T, now = Date.now()): void {
    if (this.map.size >= this.maxEntries) {
      const oldest = this.map.keys().next();
      if (!oldest.done) this.map.delete(oldest.value);
    }
    this.map.set(key, { value, expires: now + this.ttlMs });
  }

  clear(): void {
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }

  private checkTables(now: number): void {
    if (this.files.length === 0 || now - this.checked < 1000) return;
    this.checked = now;
    const s = identity(this.files);
    if (s !== this.stamp) {
      this.stamp = s;
      this.map.clear();
    }
  }
}
