/**
 * anvil's counters, as Postfix's anvil(8) keeps them, in a SharedArrayBuffer: master makes one
 * table per smtpd service (Postfix's key is "service:client", so one table per service keeps
 * the service out of the key) and hands it to every smtpd thread of that service in
 * workerData, as the mail flow tokens (src/runtime/flow.ts). A connection check is then a lock
 * and a few reads and writes in the smtpd thread itself: no message to another thread, where
 * Postfix pays a round trip to the anvil process.
 *
 * The table is open-addressed (linear probing) over fixed slots, guarded by one futex-style
 * lock: every operation is short (a probe and a handful of integer updates), so one lock costs
 * less than per-slot locking would and keeps insertion of a new client race-free.
 *
 * Per entry, as anvil.c: the connection count, and the rates (connections, messages,
 * recipients, new TLS sessions, AUTH) in a fixed window that starts at the first event and is
 * reset, all rates together, by the first event more than anvil_rate_time_unit after its start.
 * An entry whose count fell to 0 lives anvil_rate_time_unit longer, then its slot is reusable
 * (master's sweep() also compacts the table). Peak values are kept for anvil's statistics.
 *
 * A full table (more live clients than slots) fails open: the check answers null and the
 * caller lets the client in, as smtpd does when anvil cannot be reached.
 */

/** Kinds of rate that the table counts (anvil's "rate", "mail", "rcpt", "ntls", "auth"). */
export type RateKind = 'connection' | 'message' | 'recipient' | 'newtls' | 'auth';
const RATE_FIELD: Readonly<Record<RateKind, number>> = { connection: 7, message: 8, recipient: 9, newtls: 10, auth: 11 };

/** A peak value as anvil logs it: value, when (ms since the epoch), and for which client. */
export interface Peak { value: number; when: number; ident: string }
export interface Peaks {
  connectionRate: Peak | null; connectionCount: Peak | null; messageRate: Peak | null;
  recipientRate: Peak | null; newtlsRate: Peak | null; authRate: Peak | null;
  cacheSize: { value: number; when: number } | null;
}

// Header (Int32 words).
const H_LOCK = 0, H_CAPACITY = 1, H_USED = 2, H_MAX_CACHE = 3, H_MAX_CACHE_TIME = 4, H_UNIT = 5;
/** Peaks: 6 kinds × 7 words (value, time, addr×4, prefix) from word 8. */
const H_PEAKS = 8, PEAK_WORDS = 7;
const PEAK_KIND = { connectionCount: 0, connection: 1, message: 2, recipient: 3, newtls: 4, auth: 5 } as const;
/** The time base (ms since the epoch) as a Float64 at this byte offset. */
const H_BASE_BYTE = 56 * 4;
/** The service's sessions in progress, over all its smtpd threads (actors/smtpd/sessions.ts). */
const H_SESSIONS = 63;
/** The service's connections waiting for a session place, over all its threads (same file). */
const H_PARKED = 62;
const HEADER_WORDS = 64;
// Slot (Int32 words): state (0 empty, 1 used), address (4 words, IPv6 order; IPv4 as ::ffff:a.b.c.d),
// connection count, window start, the five rates, the time the count fell to 0, prefix length.
const SLOT_WORDS = 16;
const S_STATE = 0, S_ADDR = 1, S_COUNT = 5, S_START = 6, S_IDLE = 12, S_PREFIX = 13;

/** Times are kept in deciseconds since the table's base: 6.8 years fit an Int32. */
const TICK_MS = 100;

/** A client's key: its address masked to the prefix (inet_prefix_top), as 4 words. */
export interface ClientKey { words: Int32Array; prefix: number; v4: boolean }

export class AnvilTable {
  private readonly h: Int32Array;
  private readonly base: number;
  private readonly capacity: number;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.h = new Int32Array(buffer);
    this.base = new Float64Array(buffer, H_BASE_BYTE, 1)[0]!;
    this.capacity = this.h[H_CAPACITY]!;
  }

  /** A new table of `slots` entries; `unitSeconds` is anvil_rate_time_unit. */
  static create(unitSeconds: number, slots = 16384): AnvilTable {
    const buffer = new SharedArrayBuffer((HEADER_WORDS + slots * SLOT_WORDS) * 4);
    const h = new Int32Array(buffer);
    h[H_CAPACITY] = slots;
    h[H_UNIT] = Math.max(1, Math.round(unitSeconds * 1000 / TICK_MS));
    new Float64Array(buffer, H_BASE_BYTE, 1)[0] = Date.now();
    return new AnvilTable(buffer);
  }

  /** anvil_rate_time_unit changed (reload): the table is kept, the window follows the new value. */
  setUnit(unitSeconds: number): void {
    Atomics.store(this.h, H_UNIT, Math.max(1, Math.round(unitSeconds * 1000 / TICK_MS)));
  }

  /** anvil's connect: counts a connection; its count (including this one) and connection rate. */
  connect(key: ClientKey): { count: number; rate: number } | null {
    return this.locked((now) => {
      const s = this.find(key, now, true);
      if (s < 0) return null;
      const h = this.h;
      this.bumpRate(s, RATE_FIELD.connection, now);
      h[s + S_COUNT]! += 1;
      const count = h[s + S_COUNT]!, rate = h[s + RATE_FIELD.connection]!;
      this.peak(PEAK_KIND.connectionCount, count, now, s);
      this.peak(PEAK_KIND.connection, rate, now, s);
      return { count, rate };
    });
  }

  /** anvil's disconnect: one connection fewer; at 0 the entry expires a time unit later. */
  disconnect(key: ClientKey): void {
    this.locked((now) => {
      const s = this.find(key, now, false);
      if (s < 0 || this.h[s + S_COUNT]! <= 0) return;
      if (--this.h[s + S_COUNT]! === 0) this.h[s + S_IDLE] = now;
    });
  }

  /** Counts one event of a kind other than connection; the rate in the current window. */
  event(key: ClientKey, kind: Exclude<RateKind, 'connection'>): number | null {
    return this.locked((now) => {
      const s = this.find(key, now, true);
      if (s < 0) return null;
      this.bumpRate(s, RATE_FIELD[kind], now);
      const rate = this.h[s + RATE_FIELD[kind]]!;
      this.peak(PEAK_KIND[kind], rate, now, s);
      return rate;
    });
  }

  /** anvil's newtls_stat: the new-TLS-session rate without counting (0 for an unknown client). */
  rate(key: ClientKey, kind: RateKind): number {
    return this.locked((now) => {
      const s = this.find(key, now, false);
      if (s < 0) return 0;
      const unit = this.h[H_UNIT]!;
      return this.h[s + S_START]! + unit < now ? 0 : this.h[s + RATE_FIELD[kind]]!;
    });
  }

  /** One more session for the service, unless `limit` are in progress already (0: no limit). */
  enterSession(limit: number): boolean {
    for (;;) {
      const now = Atomics.load(this.h, H_SESSIONS);
      if (limit > 0 && now >= limit) return false;
      if (Atomics.compareExchange(this.h, H_SESSIONS, now, now + 1) === now) return true;
    }
  }

  /** A session of the service ended. */
  leaveSession(): void {
    Atomics.sub(this.h, H_SESSIONS, 1);
  }

  /** One more connection waiting for a session place, unless `limit` wait already. */
  enterParked(limit: number): boolean {
    for (;;) {
      const now = Atomics.load(this.h, H_PARKED);
      if (now >= limit) return false;
      if (Atomics.compareExchange(this.h, H_PARKED, now, now + 1) === now) return true;
    }
  }

  /** A waiting connection was admitted, refused or went away. */
  leaveParked(): void {
    Atomics.sub(this.h, H_PARKED, 1);
  }

  /** Entries in use (live or expired but not yet swept). */
  size(): number {
    return Atomics.load(this.h, H_USED);
  }

  /**
   * Master's periodic work: drops expired entries and re-inserts the live ones so probe chains
   * stay short.
   */
  sweep(): void {
    this.locked((now) => {
      const h = this.h;
      const live: Int32Array[] = [];
      for (let i = 0; i < this.capacity; i++) {
        const s = HEADER_WORDS + i * SLOT_WORDS;
        if (h[s + S_STATE] === 1 && !this.expired(s, now)) live.push(h.slice(s, s + SLOT_WORDS));
        h.fill(0, s, s + SLOT_WORDS);
      }
      for (const e of live) {
        let i = this.hash(e.subarray(S_ADDR, S_ADDR + 4), e[S_PREFIX]!);
        while (h[HEADER_WORDS + i * SLOT_WORDS + S_STATE] !== 0) i = (i + 1) % this.capacity;
        h.set(e, HEADER_WORDS + i * SLOT_WORDS);
      }
      h[H_USED] = live.length;
    });
  }

  /** anvil_status_dump: the peaks since the last call (null where nothing happened), then reset. */
  takePeaks(service: string): Peaks {
    return this.locked(() => {
      const h = this.h;
      const take = (k: number): Peak | null => {
        const p = H_PEAKS + k * PEAK_WORDS;
        if (h[p]! <= 0) return null;
        const peak = { value: h[p]!, when: this.base + h[p + 1]! * TICK_MS, ident: `${service}:${formatKey(h.subarray(p + 2, p + 6), h[p + 6]!)}` };
        h[p] = 0;
        return peak;
      };
      const cache = h[H_MAX_CACHE]! > 0 ? { value: h[H_MAX_CACHE]!, when: this.base + h[H_MAX_CACHE_TIME]! * TICK_MS } : null;
      h[H_MAX_CACHE] = 0;
      return {
        connectionRate: take(PEAK_KIND.connection), connectionCount: take(PEAK_KIND.connectionCount),
        messageRate: take(PEAK_KIND.message), recipientRate: take(PEAK_KIND.recipient),
        newtlsRate: take(PEAK_KIND.newtls), authRate: take(PEAK_KIND.auth), cacheSize: cache,
      };
    });
  }

  private now(): number {
    return Math.floor((Date.now() - this.base) / TICK_MS);
  }

  /** An entry that no connection holds and whose time unit after the last one has passed. */
  private expired(s: number, now: number): boolean {
    return this.h[s + S_COUNT] === 0 && this.h[s + S_IDLE]! + this.h[H_UNIT]! < now;
  }

  /** ANVIL_REMOTE_INCR_RATE: a window older than the time unit resets every rate. */
  private bumpRate(s: number, field: number, now: number): void {
    const h = this.h;
    if (h[s + S_START]! + h[H_UNIT]! < now) {
      h.fill(0, s + RATE_FIELD.connection, s + RATE_FIELD.auth + 1);
      h[s + S_START] = now;
    }
    if (h[s + field]! < 0x7fffffff) h[s + field]! += 1;
  }

  private peak(kind: number, value: number, now: number, s: number): void {
    const h = this.h, p = H_PEAKS + kind * PEAK_WORDS;
    if (value <= h[p]!) return;
    h[p] = value;
    h[p + 1] = now;
    for (let i = 0; i < 4; i++) h[p + 2 + i] = h[s + S_ADDR + i]!;
    h[p + 6] = h[s + S_PREFIX]!;
  }

  private hash(words: Int32Array, prefix: number): number {
    let x = 0x811c9dc5 ^ prefix;
    for (let i = 0; i < 4; i++) x = Math.imul(x ^ words[i]!, 0x01000193);
    x ^= x >>> 15;
    return (x >>> 0) % this.capacity;
  }

  /** The slot (word offset) of the key, inserting it when `create`; -1 if absent or full. */
  private find(key: ClientKey, now: number, create: boolean): number {
    const h = this.h, w = key.words;
    let i = this.hash(w, key.prefix);
    let reusable = -1;
    for (let n = 0; n < this.capacity; n++, i = (i + 1) % this.capacity) {
      const s = HEADER_WORDS + i * SLOT_WORDS;
      if (h[s + S_STATE] === 0) {
        if (!create) return -1;
        const at = reusable >= 0 ? reusable : s;
        if (reusable < 0) h[H_USED]! += 1;
        this.claim(at, key, now);
        return at;
      }
      if (h[s + S_ADDR] === w[0] && h[s + S_ADDR + 1] === w[1] && h[s + S_ADDR + 2] === w[2] && h[s + S_ADDR + 3] === w[3] && h[s + S_PREFIX] === key.prefix) {
        if (!this.expired(s, now)) return s;
        // The client's old entry expired: start afresh in the same slot.
        if (!create) return -1;
        this.claim(s, key, now);
        return s;
      }
      if (reusable < 0 && this.expired(s, now)) reusable = s;
    }
    if (!create || reusable < 0) return -1;
    this.claim(reusable, key, now);
    return reusable;
  }

  private claim(s: number, key: ClientKey, now: number): void {
    const h = this.h;
    h.fill(0, s, s + SLOT_WORDS);
    h[s + S_STATE] = 1;
    h.set(key.words, s + S_ADDR);
    h[s + S_PREFIX] = key.prefix;
    h[s + S_START] = now;
    h[s + S_IDLE] = now;
    if (h[H_USED]! > h[H_MAX_CACHE]!) {
      h[H_MAX_CACHE] = h[H_USED]!;
      h[H_MAX_CACHE_TIME] = now;
    }
  }

  /** Runs `f` under the table lock (a futex mutex: 0 free, 1 held, 2 held with waiters). */
  private locked<T>(f: (now: number) => T): T {
    const h = this.h;
    let c = Atomics.compareExchange(h, H_LOCK, 0, 1);
    if (c !== 0) {
      if (c !== 2) c = Atomics.exchange(h, H_LOCK, 2);
      while (c !== 0) {
        Atomics.wait(h, H_LOCK, 2, 5);
        c = Atomics.exchange(h, H_LOCK, 2);
      }
    }
    try {
      return f(this.now());
    } finally {
      if (Atomics.sub(h, H_LOCK, 1) !== 1) {
        Atomics.store(h, H_LOCK, 0);
        Atomics.notify(h, H_LOCK, 1);
      }
    }
  }
}

/** The table of this thread, when master handed one over. */
export function anvilOf(buffer: unknown): AnvilTable | null {
  return buffer instanceof SharedArrayBuffer ? new AnvilTable(buffer) : null;
}

/**
 * A client's key as Postfix's inet_prefix_top: the address with the bits beyond the prefix
 * (smtpd_client_ipv4_prefix_length / smtpd_client_ipv6_prefix_length) cleared. IPv4-mapped
 * IPv6 addresses count as IPv4. Null for what is not an IP address.
 */
export function clientKey(addr: string, v4Prefix: number, v6Prefix: number): ClientKey | null {
  const a = addr.startsWith('::ffff:') && addr.indexOf('.') > 0 ? addr.slice(7) : addr;
  const words = new Int32Array(4);
  const v4 = parseV4(a);
  if (v4 !== null) {
    words[2] = 0xffff;
    words[3] = mask(v4, v4Prefix);
    return { words, prefix: v4Prefix, v4: true };
  }
  const v6 = parseV6(a);
  if (v6 === null) return null;
  for (let i = 0; i < 4; i++) words[i] = mask(v6[i]!, Math.min(32, Math.max(0, v6Prefix - 32 * i)));
  return { words, prefix: v6Prefix, v4: false };
}

/** The key as inet_prefix_top prints it: "192.0.2.1", "2001:db8::/84". */
export function formatKey(words: ArrayLike<number>, prefix: number): string {
  if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) {
    const x = words[3]! >>> 0;
    const text = `${x >>> 24}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`;
    return prefix < 32 ? `${text}/${prefix}` : text;
  }
  const groups: number[] = [];
  for (let i = 0; i < 4; i++) groups.push((words[i]! >>> 16) & 0xffff, words[i]! & 0xffff);
  // RFC 5952: the longest run (≥ 2) of zero groups becomes "::".
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(':');
  const text = best < 0 ? hex(groups) : `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`;
  return prefix < 128 ? `${text}/${prefix}` : text;
}

function mask(word: number, bits: number): number {
  if (bits >= 32) return word | 0;
  if (bits <= 0) return 0;
  return (word & (0xffffffff << (32 - bits))) | 0;
}

function parseV4(a: string): number | null {
  const parts = a.split('.');
  if (parts.length !== 4) return null;
  let x = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return null;
    x = x * 256 + Number(p);
  }
  return x | 0;
}

/** An IPv6 address as 4 words, or null (zone ids are dropped). */
function parseV6(addr: string): number[] | null {
  const a = addr.replace(/%.*$/, '');
  if (!a.includes(':')) return null;
  const halves = a.split('::');
  if (halves.length > 2) return null;
  const part = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    const items = s.split(':');
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      if (i === items.length - 1 && it.includes('.')) {
        const v4 = parseV4(it);
        if (v4 === null) return null;
        out.push((v4 >>> 16) & 0xffff, v4 & 0xffff);
      } else {
        if (!/^[0-9a-f]{1,4}$/i.test(it)) return null;
        out.push(parseInt(it, 16));
      }
    }
    return out;
  };
  const head = part(halves[0]!), tail = halves.length === 2 ? part(halves[1]!) : [];
  if (head === null || tail === null) return null;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return null;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...tail];
  const words: number[] = [];
  for (let i = 0; i < 4; i++) words.push(((groups[2 * i]! << 16) | groups[2 * i + 1]!) | 0);
  return words;
}
