/**
 * The queue store: one LMDB environment under queue_directory holding every queue.
 *
 * Databases:
 *   meta     queue ID → MessageMeta (msgpack)
 *   content  queue ID → message bytes
 *   queues   [queue name, queue ID] → true        (which messages each queue holds)
 *   due      [next attempt ms, queue ID] → true   (deferred messages by next attempt: a scan is a range)
 *   logs     [queue ID, bounce|defer|trace] → StatusRecord[]   (Postfix's bounce/, defer/, trace/ logs)
 *   mta-sts  policy domain → StsPolicyRecord   (fetched MTA-STS policies: every smtp thread shares
 *            them and they survive a restart, as RFC 8461 wants a policy kept for its max_age)
 *   verify   address → VerifyEntry   (the verify service's address_verify_map: Postfix keeps it in
 *            btree:$data_directory/verify_cache; here it is one more database of the store, so
 *            it survives a restart and shares the store's commits and backups)
 *   postscreen  client address → postscreen's test expiry times "pregreet;dnsbl;pipelining;nonsmtp;barelf"
 *            (postscreen_cache_map: every smtpd thread running postscreen shares it)
 *   flush    [site, queue ID] → true   (the flush service's fast flush logs: Postfix keeps one
 *            file per destination under queue_directory/flush; a key per queue ID needs no
 *            duplicate filter)
 *   flush-sites  site → FlushLogTimes   (each log's last update and last delivery request)
 *
 * Every state change is one transaction, so there is no moment at which a message is in two
 * queues or in none. The environment is opened with `overlappingSync: false`: a write's promise
 * resolves only once the commit is on disk, so "250 Ok: queued" can follow an `await`. LMDB
 * batches all writes of one event turn of one thread into one commit, so concurrent sessions
 * share one fsync (group commit). Every thread of the process may open the store; lmdb-js then
 * shares one LMDB environment between them.
 *
 * Some writes need not be on disk before anything is answered: qmgr's move of a new message into
 * active, its removal after delivery, its deferral and its per-recipient done marks (moveLater,
 * removeLater). A crash before they are on disk only repeats a delivery (the message is still in
 * incoming or active, and qmgr's start-up puts active back into incoming), never loses a message:
 * Postfix's promise. They wait in this thread's memory for up to LATER_MS and then go out
 * together, one (synced) commit for all of them, as conditional batches (no JavaScript callback
 * holding the write lock).
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { IF_EXISTS, open, type Database, type RootDatabase } from 'lmdb';
import { closeBeforeExit } from './command-line.js';
import { contentChecksum, STORE_FILE, storeFileProblem } from './integrity.js';
import { claimWriter, releaseWriter } from './writer-lock.js';
import { QUEUE_NAMES, type FlushLogTimes, type LogKind, type MessageMeta, type QueueName, type StatusRecord, type StsPolicyRecord, type VerifyEntry } from './types.js';

export * from './types.js';

export interface StoreOptions {
  readOnly?: boolean;
}

/** The store file is damaged (storeFileProblem): no process may map it. */
export class StoreDamagedError extends Error {
  override name = 'StoreDamagedError';
}

/** A commit failed (a full disk, an I/O error): the write is not on disk, the store is unchanged. */
export class StoreWriteError extends Error {
  override name = 'StoreWriteError';
}

/**
 * A message's envelope does not decode (bytes changed on disk that the store's page checks did
 * not catch: LMDB keeps no checksums). Its content may be intact; the message itself cannot be
 * delivered, and goes to the corrupt queue (setAsideDamaged), as Postfix's qmgr saves a queue
 * file it cannot read.
 */
export class EnvelopeDamagedError extends Error {
  override name = 'EnvelopeDamagedError';
  constructor(readonly queueId: string, why: string) {
    super(`${queueId}: damaged envelope: ${why}`);
  }
}

/** True if a decoded value has the fields every reader of an envelope relies on. */
function isEnvelope(value: unknown): value is MessageMeta {
  const m = value as Partial<MessageMeta> | null;
  return typeof m === 'object' && m !== null && typeof m.queue === 'string' && typeof m.sender === 'string' && Array.isArray(m.recipients);
}

/**
 * The envelope a message gets when its own is lost (does not decode, or was never found: postsuper
 * --recover): in the corrupt queue, no recipients, so nothing is delivered; postcat still shows
 * the content.
 */
export function placeholderEnvelope(queueId: string, size: number): MessageMeta {
  return { queueId, queue: 'corrupt', arrival: 0, sender: '', recipients: [], size, nextAttempt: 0, attempts: 0 };
}

/**
 * lmdb-js rejects, besides the caller's promise, a "commit error" promise that nobody holds and
 * (for a transaction of several writes) promises of writes inside it, each with an error that
 * carries `commitError`. Unheard, each ends the thread ("Commit failed"). The failure has already
 * been given to the caller that awaited the write, so these are dropped here; any other
 * unhandled rejection still ends the thread, as Node does by default.
 */
let commitGuard = false;
function installCommitGuard(): void {
  if (commitGuard) return;
  commitGuard = true;
  process.on('unhandledRejection', (reason) => {
    const commitError = (reason as { commitError?: Promise<unknown> } | null)?.commitError;
    if (commitError instanceof Promise) {
      commitError.catch(() => undefined);
      return;
    }
    throw reason;
  });
}

/** Rejections of lmdb-js's commit: the underlying error's text ("No space left on device"). */
async function commitFailure(err: unknown): Promise<Error> {
  const commitError = (err as { commitError?: Promise<unknown> } | null)?.commitError;
  if (!(commitError instanceof Promise)) return err as Error;
  const cause = await commitError.then(() => null, (e: unknown) => e as Error);
  return new StoreWriteError(cause?.message ?? (err as Error).message);
}

type Key = [string | number, string];

/**
 * How long a write that may ride a later commit (moveLater, removeLater) waits for others: one
 * commit per LATER_MS at most for all of them, and a crash (SIGKILL) loses at most LATER_MS worth
 * of qmgr's moves, removals, deferrals and done marks (repeated deliveries, never a loss).
 */
export const LATER_MS = 50;

/**
 * The page size of a new store (LMDB keeps an existing file's own). A message's content is one
 * value in the content database; a typical 1–2 KiB message fits at most two to a 4 KiB page, and
 * LMDB's page splits leave such pages half full (bench/memory, 20,000 × 1 KiB deferred: 1.42
 * contents per 4 KiB page, an 82.5 MB file, all of it mapped). 8 KiB pages hold five.
 */
export const STORE_PAGE_SIZE = 8192;

/** Queues a write that rides a later commit may take a message from (no due index entry to find). */
export type LaterQueue = Exclude<QueueName, 'deferred'>;

/**
 * Status log changes that ride along with a move (one transaction): records appended to a log,
 * whole logs replaced (`set`) or dropped (`clear`). Removing a message drops all its logs.
 */
export interface LogChange {
  append?: Partial<Record<LogKind, StatusRecord[]>>;
  set?: Partial<Record<LogKind, StatusRecord[]>>;
  clear?: LogKind[];
}

const LOG_KINDS: readonly LogKind[] = ['bounce', 'defer', 'trace'];

/** What `change` does to a message: move and/or patch it, or remove it. */
export interface StoreChange {
  to?: QueueName;
  patch?: Partial<MessageMeta>;
  remove?: boolean;
}

/** What `checkStructure` found (and repaired). */
export interface StructureReport {
  /** queues entries whose message is missing or in another queue. */
  danglingIndex: number;
  /** due entries that match no deferred message. */
  danglingDue: number;
  /** messages missing from their queue's index (indexed again). */
  reindexed: number;
  /** messages without content (moved to the corrupt queue). */
  corrupt: string[];
  /** messages whose envelope does not decode (set aside in the corrupt queue: setAsideDamaged). */
  damaged: string[];
  /** status logs (bounce/defer/trace) whose message is gone. */
  danglingLogs: number;
}

/**
 * lmdb-js's open, tried again when it fails with "No transaction to renew": seen once (a CI run,
 * test/exit-store-open.test.ts) when another process opened and wrote the same store at that moment (the read
 * transaction lmdb-js sets up in its constructor raced the other process's commit). A second
 * open finds the store as committed; any other error is the caller's.
 */
function openRoot(options: Parameters<typeof open>[0] & object): RootDatabase {
  for (let attempt = 1; ; attempt++) {
    try {
      return open(options) as RootDatabase;
    } catch (err) {
      if (attempt >= 5 || !/No transaction to renew/.test((err as Error).message)) throw err;
    }
  }
}

export class QueueStore {
  private readonly root: RootDatabase;
  private readonly meta: Database<MessageMeta, string>;
  private readonly body: Database<Buffer, string>;
  private readonly queues: Database<true, Key>;
  private readonly due: Database<true, Key>;
  private readonly statusLogs: Database<StatusRecord[], Key>;
  private readonly stsPolicies: Database<StsPolicyRecord, string>;
  private readonly verifyCache: Database<VerifyEntry, string>;
  private readonly postscreen: Database<string, string>;
  private readonly flushIds: Database<true, Key>;
  private readonly flushSites: Database<FlushLogTimes, string>;

  private constructor(readonly directory: string, options: StoreOptions) {
    const problem = storeFileProblem(join(directory, STORE_FILE));
    if (problem !== null) throw new StoreDamagedError(problem);
    if (!options.readOnly) installCommitGuard();
    // queue_directory: others may traverse it (to reach maildrop/) but not list it; the
    // store's files are the owner's only (mail content), as Postfix's queue files are 0700.
    if (!options.readOnly) mkdirSync(directory, { recursive: true, mode: 0o711 });
    // One writing process at a time (./writer-lock.ts); readers claim nothing.
    if (!options.readOnly) {
      claimWriter(directory);
      this.claimed = true;
    }
    try {
      this.root = openRoot({
        path: join(directory, 'queue.lmdb'),
        maxDbs: 16,
        mapSize: 32 * 1024 ** 3,
        pageSize: STORE_PAGE_SIZE,
        overlappingSync: false,
        readOnly: options.readOnly ?? false,
      });
    } catch (err) {
      this.release();
      throw err;
    }
    this.meta = this.root.openDB<MessageMeta, string>('meta', {});
    this.body = this.root.openDB<Buffer, string>('content', { encoding: 'binary' });
    this.queues = this.root.openDB<true, Key>('queues', {});
    this.due = this.root.openDB<true, Key>('due', {});
    this.statusLogs = this.root.openDB<StatusRecord[], Key>('logs', {});
    this.stsPolicies = this.root.openDB<StsPolicyRecord, string>('mta-sts', {});
    this.verifyCache = this.root.openDB<VerifyEntry, string>('verify', {});
    this.postscreen = this.root.openDB<string, string>('postscreen', {});
    this.flushIds = this.root.openDB<true, Key>('flush', {});
    this.flushSites = this.root.openDB<FlushLogTimes, string>('flush-sites', {});
    if (!options.readOnly) {
      for (const file of ['queue.lmdb', 'queue.lmdb-lock']) {
        try {
          chmodSync(join(directory, file), 0o600);
        } catch { /* not ours to change (another user's store): LMDB itself enforces access */ }
      }
    }
    this.forgetOnExit = closeBeforeExit(() => this.close());
  }

  static open(directory: string, options: StoreOptions = {}): QueueStore {
    return new QueueStore(directory, options);
  }

  /** One write transaction; a failed commit becomes a StoreWriteError naming its cause. */
  private async write<T>(action: () => T): Promise<T> {
    // Writes waiting for a later commit go first: this thread's writes reach LMDB in program order.
    void this.issueLater();
    try {
      return await this.root.transaction(action);
    } catch (err) {
      throw await commitFailure(err);
    }
  }

  /** The cached MTA-STS policy of a domain (lower case), if any; expiry is the caller's rule. */
  stsPolicy(domain: string): StsPolicyRecord | undefined {
    return this.stsPolicies.get(domain);
  }

  /** Caches (replaces) a domain's MTA-STS policy; resolves once it is on disk. */
  async putStsPolicy(domain: string, policy: StsPolicyRecord): Promise<void> {
    await this.write(() => this.stsPolicies.put(domain, policy));
  }

  /** The verify service's entry for an address (as the client wrote it), if any. */
  verifyEntry(address: string): VerifyEntry | undefined {
    return this.verifyCache.get(address);
  }

  /** Replaces an address's verify entry (null: removes it); resolves once it is on disk. */
  async putVerifyEntry(address: string, entry: VerifyEntry | null): Promise<void> {
    if (entry === null) await this.verifyCache.remove(address);
    else await this.verifyCache.put(address, entry);
  }

  /** Every verify entry, for the verify service's cache cleanup run. */
  *verifyEntries(): Iterable<[string, VerifyEntry]> {
    for (const { key, value } of this.verifyCache.getRange({})) yield [key, value];
  }

  /** postscreen's cache entry of a client address, if any (another thread's write may be one event turn late). */
  postscreenEntry(addr: string): string | undefined {
    const v = this.postscreen.get(addr);
    if (v !== undefined) return v;
    this.root.resetReadTxn();
    return this.postscreen.get(addr);
  }

  /** Replaces a client's postscreen cache entry. */
  async putPostscreenEntry(addr: string, value: string): Promise<void> {
    await this.postscreen.put(addr, value);
  }

  /** All postscreen cache entries (for the periodic cleanup). */
  postscreenEntries(): Iterable<{ key: string; value: string }> {
    return this.postscreen.getRange({});
  }

  async removePostscreenEntry(addr: string): Promise<void> {
    await this.postscreen.remove(addr);
  }

  // --- the flush service's fast flush logs (actors/flush) ---

  /** Appends a queue ID to a site's log (creating it); resolves once on disk. */
  async flushAppend(site: string, queueId: string, now = Date.now()): Promise<void> {
    await this.write(() => {
      this.flushIds.put([site, queueId], true);
      const times = this.flushSites.get(site);
      this.flushSites.put(site, { updated: now, read: times?.read ?? now });
    });
  }

  /**
   * A site's delivery request, in one transaction: each queue ID in its log whose message is in
   * deferred moves to incoming (one already in incoming counts as well; one in active, hold or
   * gone is skipped), the log is emptied and its times set to now. Resolves to the IDs that are
   * now in incoming, or null when the site has no log.
   */
  async flushSend(site: string, now = Date.now()): Promise<string[] | null> {
    return this.write(() => {
      if (this.flushSites.get(site) === undefined) return null;
      const ready: string[] = [];
      const keys = [...this.flushIds.getKeys({ start: [site, ''], end: [site, '\uffff'] })];
      for (const key of keys) {
        const id = key[1];
        this.flushIds.remove(key);
        const current = this.envelope(id);
        if (current?.queue === 'incoming') ready.push(id);
        if (current?.queue !== 'deferred') continue;
        this.unindex(current);
        this.meta.put(id, { ...current, queue: 'incoming', nextAttempt: 0 });
        this.queues.put(['incoming', id], true);
        ready.push(id);
      }
      this.flushSites.put(site, { updated: now, read: now });
      return ready;
    });
  }

  /** Every fast flush log: its site, times and number of queue IDs (flush's refresh run). */
  *flushLogs(): Generator<{ site: string; times: FlushLogTimes; size: number }> {
    for (const { key, value } of this.flushSites.getRange({ snapshot: false })) {
      yield { site: key, times: value, size: this.flushIds.getKeysCount({ start: [key, ''], end: [key, '\uffff'] }) };
    }
  }

  /** Deletes a site's log if it is still empty and not updated since `updated`. */
  async flushDelete(site: string, updated: number): Promise<boolean> {
    return this.write(() => {
      const times = this.flushSites.get(site);
      if (!times || times.updated !== updated) return false;
      if (this.flushIds.getKeysCount({ start: [site, ''], end: [site, '\uffff'] }) > 0) return false;
      this.flushSites.remove(site);
      return true;
    });
  }

  /**
   * Writes a new message into `meta.queue` (incoming or hold): envelope, content and the
   * content's checksum in one commit.
   */
  async enqueue(meta: MessageMeta, content: Uint8Array): Promise<void> {
    const stored: MessageMeta = { ...meta, checksum: contentChecksum(content) };
    // A conditional batch (ifNoExists), not a transaction callback: LMDB's write thread checks
    // the condition and writes it all in one transaction by itself. A callback would hold the
    // environment's write lock until this thread's event loop came round to run it, so every
    // other thread's commit (qmgr's, the other cleanup threads') waited on this thread's load;
    // this commit is the one the client's 250 waits for (bench/relay --rate 500).
    let ok: boolean;
    try {
      ok = await this.meta.ifNoExists(meta.queueId, () => {
        this.meta.put(meta.queueId, stored);
        this.body.put(meta.queueId, content as Buffer);
        this.queues.put([meta.queue, meta.queueId], true);
        if (meta.queue === 'deferred') this.due.put([meta.nextAttempt, meta.queueId], true);
      });
    } catch (err) {
      throw await commitFailure(err);
    }
    if (!ok) throw new Error(`duplicate queue ID ${meta.queueId}`);
  }

  /**
   * A message's envelope. A thread's read snapshot only moves on at its next event turn, so a
   * miss is retried on a fresh snapshot: another thread may have just committed the message.
   */
  get(queueId: string): MessageMeta | undefined {
    const meta = this.envelope(queueId);
    if (meta !== undefined) return meta;
    this.root.resetReadTxn();
    return this.envelope(queueId);
  }

  /**
   * As get(), but a damaged envelope (EnvelopeDamagedError) is null instead of an error: for the
   * readers that pass such a message by (listings, checks, recovery) rather than stop on it.
   */
  readable(queueId: string): MessageMeta | undefined | null {
    const meta = this.decoded(queueId);
    if (meta !== undefined) return meta;
    this.root.resetReadTxn();
    return this.decoded(queueId);
  }

  /** envelope(), with a damaged one as null (no snapshot retry: usable inside a write). */
  private decoded(queueId: string): MessageMeta | undefined | null {
    try {
      return this.envelope(queueId);
    } catch (err) {
      if (err instanceof EnvelopeDamagedError) return null;
      throw err;
    }
  }

  /** The stored envelope as it decodes; EnvelopeDamagedError when its bytes are not one. */
  private envelope(queueId: string): MessageMeta | undefined {
    let meta: unknown;
    try {
      meta = this.meta.get(queueId);
    } catch (err) {
      throw new EnvelopeDamagedError(queueId, (err as Error).message);
    }
    if (meta === undefined || isEnvelope(meta)) return meta;
    throw new EnvelopeDamagedError(queueId, 'not an envelope');
  }

  /**
   * A message whose envelope does not decode, into the corrupt queue, in one transaction: a
   * placeholder envelope (placeholderEnvelope: no recipients) over the damaged one, the content
   * kept for postcat, its index entries moved (a deferred message's due entry found by a scan:
   * this is rare). False, changing nothing, if the envelope decodes after all or the message is
   * gone.
   */
  setAsideDamaged(queueId: string): Promise<boolean> {
    return this.write(() => {
      if (!this.stillDamaged(queueId)) return false;
      this.dropIndexes(queueId);
      this.meta.put(queueId, placeholderEnvelope(queueId, this.body.getBinary(queueId)?.length ?? 0));
      this.queues.put(['corrupt', queueId], true);
      return true;
    });
  }

  /** The queues whose index lists the message (one, unless the store needs postsuper -s). */
  indexedIn(queueId: string): QueueName[] {
    return QUEUE_NAMES.filter((queue) => this.queues.get([queue, queueId]) !== undefined);
  }

  /**
   * Deletes a message whose envelope does not decode, in one transaction: content, status logs,
   * index and due entries (postsuper -d, which in Postfix removes the queue file unread). False,
   * changing nothing, if the envelope decodes after all (remove() is for that) or it is gone.
   */
  removeDamaged(queueId: string): Promise<boolean> {
    return this.write(() => {
      if (!this.stillDamaged(queueId)) return false;
      this.dropIndexes(queueId);
      this.meta.remove(queueId);
      this.body.remove(queueId);
      this.dropLogs(queueId);
      return true;
    });
  }

  /** True if the message is there and its envelope does not decode (inside a write: re-checked). */
  private stillDamaged(queueId: string): boolean {
    return this.decoded(queueId) === null;
  }

  /** Every index entry of a message, found without its envelope (the due entry by a scan: rare). */
  private dropIndexes(queueId: string): void {
    for (const queue of QUEUE_NAMES) {
      if (this.queues.get([queue, queueId]) === undefined) continue;
      this.queues.remove([queue, queueId]);
      if (queue !== 'deferred') continue;
      for (const key of this.due.getKeys({ snapshot: false })) if ((key as Key)[1] === queueId) this.due.remove(key);
    }
  }

  /** The message content (a copy the caller owns); a miss is retried on a fresh snapshot too. */
  content(queueId: string): Buffer | undefined {
    const body = this.body.getBinary(queueId);
    if (body) return body;
    this.root.resetReadTxn();
    return this.body.getBinary(queueId) ?? undefined;
  }

  /**
   * Writes recovered messages as they are (envelope with its checksum, content, status logs),
   * each into its queue's index, in one transaction: `postsuper --recover` (recover.ts) only.
   * A queue ID already present is left alone.
   */
  async restore(messages: { meta: MessageMeta; content: Uint8Array; logs?: Partial<Record<LogKind, StatusRecord[]>> }[]): Promise<void> {
    await this.write(() => {
      for (const { meta, content, logs } of messages) {
        if (this.meta.getBinary(meta.queueId) !== undefined) continue;
        this.meta.put(meta.queueId, meta);
        this.body.put(meta.queueId, content as Buffer);
        this.queues.put([meta.queue, meta.queueId], true);
        if (meta.queue === 'deferred') this.due.put([meta.nextAttempt, meta.queueId], true);
        if (logs) this.changeLogs(meta.queueId, { set: logs });
      }
    });
  }

  /**
   * Whether a message's content is what was stored: 'ok', 'mismatch' (its checksum differs:
   * damaged on disk), or 'missing'. Messages stored before checksums existed pass.
   */
  verify(queueId: string, meta: MessageMeta): 'ok' | 'mismatch' | 'missing' {
    const read = this.checkedContent(queueId, meta.checksum);
    return 'content' in read ? 'ok' : 'damaged' in read ? read.damaged : 'missing';
  }

  /**
   * The content as a delivery agent reads it, checked against the checksum the envelope carries
   * (LMDB keeps none): the bytes, or why they must not go out — 'missing' (the envelope is there,
   * its content is not) or 'mismatch' (damaged on disk) —, or `vanished` when the message itself
   * is gone (deleted meanwhile: postsuper -d). No checksum (stored before checksums): the bytes.
   * Checked where the content is read anyway, so nobody reads the content of a message only to
   * check it.
   */
  checkedContent(queueId: string, checksum: number | undefined): { content: Buffer } | { damaged: 'missing' | 'mismatch' } | { vanished: true } {
    // getBinaryFast's reused buffer is not a plain view of the value (its length is patched), so
    // the value is copied: one memcpy of the message, beside one CRC-32 pass over it.
    const content = this.content(queueId);
    if (!content) return this.get(queueId) === undefined ? { vanished: true } : { damaged: 'missing' };
    if (checksum !== undefined && contentChecksum(content) !== checksum) return { damaged: 'mismatch' };
    return { content };
  }

  /**
   * Moves a message to another queue and applies `patch` to its envelope, in one transaction.
   * Resolves to the new envelope, or undefined if the message is gone (deleted meanwhile).
   * `from`, when given, must match the current queue (otherwise nothing changes).
   */
  move(queueId: string, to: QueueName, patch: Partial<MessageMeta> = {}, from?: QueueName, logs?: LogChange): Promise<MessageMeta | undefined> {
    return this.write(() => {
      const current = this.envelope(queueId);
      if (!current || (from && current.queue !== from)) return undefined;
      const next: MessageMeta = { ...current, ...patch, queue: to };
      if (to !== 'deferred') next.nextAttempt = 0;
      this.unindex(current);
      this.meta.put(queueId, next);
      this.queues.put([to, queueId], true);
      if (to === 'deferred') this.due.put([next.nextAttempt, queueId], true);
      if (logs) this.changeLogs(queueId, logs);
      return next;
    });
  }

  /** A message's status log of one kind (empty when there is none). */
  logs(queueId: string, kind: LogKind): StatusRecord[] {
    return this.statusLogs.get([queueId, kind]) ?? [];
  }

  /** True if the message has any status log. */
  hasLogs(queueId: string): boolean {
    return LOG_KINDS.some((k) => this.statusLogs.get([queueId, k]) !== undefined);
  }

  private changeLogs(queueId: string, c: LogChange): void {
    for (const kind of c.clear ?? []) this.statusLogs.remove([queueId, kind]);
    for (const [kind, records] of Object.entries(c.set ?? {}) as [LogKind, StatusRecord[]][]) {
      if (records.length) this.statusLogs.put([queueId, kind], records);
      else this.statusLogs.remove([queueId, kind]);
    }
    for (const [kind, records] of Object.entries(c.append ?? {}) as [LogKind, StatusRecord[]][]) {
      if (!records.length) continue;
      const old = this.statusLogs.get([queueId, kind]) ?? [];
      this.statusLogs.put([queueId, kind], [...old, ...records]);
    }
  }

  private dropLogs(queueId: string): void {
    for (const kind of LOG_KINDS) this.statusLogs.remove([queueId, kind]);
  }

  /** Updates the envelope in place (same queue), in one transaction. */
  update(queueId: string, patch: Partial<MessageMeta>, logs?: LogChange): Promise<MessageMeta | undefined> {
    return this.write(() => {
      const current = this.envelope(queueId);
      if (!current) return undefined;
      const next: MessageMeta = { ...current, ...patch, queue: current.queue };
      this.meta.put(queueId, next);
      if (logs) this.changeLogs(queueId, logs);
      return next;
    });
  }

  /** Deletes a message from whatever queue holds it. Resolves false if it was not there. */
  remove(queueId: string, from?: QueueName): Promise<boolean> {
    return this.write(() => {
      const current = this.envelope(queueId);
      if (!current || (from && current.queue !== from)) return false;
      this.unindex(current);
      this.meta.remove(queueId);
      this.body.remove(queueId);
      this.dropLogs(queueId);
      return true;
    });
  }

  /**
   * A conditional change of one message, in one transaction: `decide` sees the current envelope
   * and returns what to do — move it (`to`, optional `patch`), patch it in place (`patch` only),
   * delete it (`remove`), or nothing (null). Resolves to the envelope before and after (after is
   * undefined for a removal), or undefined if the message was not there or nothing was done.
   * Used by the queue admin commands (postsuper), which must not race qmgr's own moves.
   */
  async change(queueId: string, decide: (current: MessageMeta) => StoreChange | null): Promise<{ before: MessageMeta; after?: MessageMeta } | undefined> {
    this.changing.set(queueId, (this.changing.get(queueId) ?? 0) + 1);
    try {
      return await this.changeNow(queueId, decide);
    } finally {
      const n = this.changing.get(queueId)! - 1;
      if (n > 0) this.changing.set(queueId, n);
      else this.changing.delete(queueId);
    }
  }

  /** Queue IDs with a change() of this thread not yet committed (see hasLater). */
  private readonly changing = new Map<string, number>();

  private changeNow(queueId: string, decide: (current: MessageMeta) => StoreChange | null): Promise<{ before: MessageMeta; after?: MessageMeta } | undefined> {
    return this.write(() => {
      const current = this.envelope(queueId);
      if (!current) return undefined;
      const c = decide(current);
      if (!c) return undefined;
      if (c.remove) {
        this.unindex(current);
        this.meta.remove(queueId);
        this.body.remove(queueId);
        this.dropLogs(queueId);
        return { before: current };
      }
      const to = c.to ?? current.queue;
      const next: MessageMeta = { ...current, ...(c.patch ?? {}), queue: to };
      if (to !== 'deferred') next.nextAttempt = 0;
      this.unindex(current);
      this.meta.put(queueId, next);
      this.queues.put([to, queueId], true);
      if (to === 'deferred') this.due.put([next.nextAttempt, queueId], true);
      return { before: current, after: next };
    });
  }

  /**
   * Checks (and with `fix`, repairs) the store's structure, for postsuper -s: index entries
   * (queues, due) whose message is gone or elsewhere are removed, a message missing from its
   * queue's index is indexed again, and a message without content goes to the corrupt queue.
   * Every repair is its own transaction that re-checks the condition.
   */
  async checkStructure(fix = true): Promise<StructureReport> {
    const report: StructureReport = { danglingIndex: 0, danglingDue: 0, reindexed: 0, corrupt: [], damaged: [], danglingLogs: 0 };
    // Envelopes that do not decode first: set aside in the corrupt queue (fix), or left out of
    // the checks below (null from read).
    const damaged = new Set<string>();
    for (const id of [...this.meta.getKeys({ snapshot: false })] as string[]) if (this.decoded(id) === null) damaged.add(id);
    report.damaged = [...damaged];
    if (fix) {
      for (const id of damaged) await this.setAsideDamaged(id);
      damaged.clear();
    }
    const read = (id: string): MessageMeta | undefined | null => (damaged.has(id) ? null : this.envelope(id));
    for (const key of [...this.queues.getKeys({ snapshot: false })]) {
      const [queue, id] = key as Key;
      const meta = read(id);
      if (meta === null || (meta && meta.queue === queue)) continue;
      report.danglingIndex++;
      if (fix) {
        await this.write(() => {
          const m = read(id);
          if (!m || m.queue !== queue) this.queues.remove(key);
        });
      }
    }
    for (const key of [...this.due.getKeys({ snapshot: false })]) {
      const [when, id] = key as Key;
      const meta = read(id);
      if (meta === null || (meta && meta.queue === 'deferred' && meta.nextAttempt === when)) continue;
      report.danglingDue++;
      if (fix) {
        await this.write(() => {
          const m = read(id);
          if (!m || m.queue !== 'deferred' || m.nextAttempt !== when) this.due.remove(key);
        });
      }
    }
    for (const key of [...this.statusLogs.getKeys({ snapshot: false })]) {
      const [id] = key as Key;
      if (this.meta.getBinary(id as string) !== undefined) continue;
      report.danglingLogs++;
      if (fix) {
        await this.write(() => {
          if (this.meta.getBinary(id as string) === undefined) this.statusLogs.remove(key);
        });
      }
    }
    for (const id of [...this.meta.getKeys({ snapshot: false })] as string[]) {
      const meta = read(id);
      if (!meta) continue;
      const inIndex = this.queues.get([meta.queue, id]) !== undefined;
      const inDue = meta.queue !== 'deferred' || this.due.get([meta.nextAttempt, id]) !== undefined;
      if (!inIndex || !inDue) {
        report.reindexed++;
        if (fix) {
          await this.write(() => {
            const m = read(id);
            if (!m) return;
            this.queues.put([m.queue, id], true);
            if (m.queue === 'deferred') this.due.put([m.nextAttempt, id], true);
          });
        }
      }
      if (meta.queue !== 'corrupt' && this.body.getBinary(id) == null) {
        report.corrupt.push(id);
        if (fix) await this.move(id, 'corrupt', {}, meta.queue);
      }
    }
    return report;
  }

  private unindex(meta: MessageMeta): void {
    this.queues.remove([meta.queue, meta.queueId]);
    if (meta.queue === 'deferred') this.due.remove([meta.nextAttempt, meta.queueId]);
  }

  /** Queue IDs in one queue, oldest first. */
  *list(queue: QueueName, limit = Infinity): Generator<string> {
    let n = 0;
    for (const key of this.queues.getKeys({ start: [queue, ''], end: [queue, '\uffff'], snapshot: false })) {
      if (n++ >= limit) return;
      yield key[1];
    }
  }

  count(queue: QueueName): number {
    return this.queues.getKeysCount({ start: [queue, ''], end: [queue, '\uffff'] });
  }

  /** Deferred messages whose next attempt is at or before `now`, earliest first. */
  *dueDeferred(now: number, limit = Infinity): Generator<string> {
    let n = 0;
    for (const key of this.due.getKeys({ start: [0, ''], end: [now, '\uffff'], snapshot: false })) {
      if (n++ >= limit) return;
      yield key[1];
    }
  }

  /** The earliest next-attempt time in deferred, or undefined if deferred is empty. */
  nextDue(): number | undefined {
    for (const key of this.due.getKeys({ limit: 1 })) return key[0] as number;
    return undefined;
  }

  /** Moves everything in active back to incoming (start-up recovery, as Postfix's qmgr does). */
  async recoverActive(): Promise<number> {
    const ids = [...this.list('active')];
    for (let i = 0; i < ids.length; i += 1000) {
      const batch = ids.slice(i, i + 1000);
      await this.write(() => {
        for (const id of batch) {
          const meta = this.decoded(id);
          if (meta === null) {
            // Into incoming by its index only: qmgr's scan meets it there and sets it aside.
            this.queues.remove(['active', id]);
            this.queues.put(['incoming', id], true);
            continue;
          }
          if (!meta) continue;
          this.unindex(meta);
          this.meta.put(id, { ...meta, queue: 'incoming' });
          this.queues.put(['incoming', id], true);
        }
      });
    }
    return ids.length;
  }

  // --- writes that ride a later commit (qmgr's, see the header comment) ---

  /** Writes waiting for their commit, in program order, and their queue IDs (with a count each). */
  private laterWrites: { queueId: string; issue: () => Promise<boolean>; settle: (applied: boolean) => void }[] = [];
  private readonly laterIds = new Map<string, number>();
  private laterTimer: NodeJS.Timeout | null = null;
  private laterSettled: Promise<void> = Promise.resolve();
  /**
   * Told about writes that rode a commit that failed (a full disk), with the cause: nothing of
   * them is on disk. The owner decides what to do (qmgr requeues such messages at its next scan).
   */
  onLaterFailure: (queueIds: string[], err: Error) => void = () => undefined;

  /**
   * Moves a message from `from` to `next.queue` with the envelope `next` (as the caller holds it:
   * the caller must be the only one changing it meanwhile) and replaces the status logs in `logs`,
   * in a later commit, if the message is then still in `from`; otherwise nothing changes.
   * Resolves once that commit is done: true if the move was made (false: not in `from`, or the
   * commit failed, which onLaterFailure is told).
   */
  moveLater(queueId: string, from: LaterQueue, next: MessageMeta, logs?: Partial<Record<LogKind, StatusRecord[]>>): Promise<boolean> {
    const stored: MessageMeta = next.queue === 'deferred' ? next : { ...next, nextAttempt: 0 };
    return this.later(queueId, () => this.queues.ifVersion([from, queueId], IF_EXISTS, () => {
      this.queues.remove([from, queueId]);
      this.meta.put(queueId, stored);
      this.queues.put([stored.queue, queueId], true);
      if (stored.queue === 'deferred') this.due.put([stored.nextAttempt, queueId], true);
      if (logs) this.changeLogs(queueId, { set: logs }); // set only: nothing read outside the commit
    }));
  }

  /**
   * Deletes a message in a later commit, if it is then still in `from`; otherwise nothing changes.
   * Resolves as moveLater does.
   */
  removeLater(queueId: string, from: LaterQueue): Promise<boolean> {
    return this.later(queueId, () => this.queues.ifVersion([from, queueId], IF_EXISTS, () => {
      this.queues.remove([from, queueId]);
      this.meta.remove(queueId);
      this.body.remove(queueId);
      this.dropLogs(queueId);
    }));
  }

  /** True while a write of this message waits for or rides a commit not yet done. */
  hasLater(queueId: string): boolean {
    return this.laterIds.has(queueId);
  }

  /**
   * True while a change() of this thread (postsuper's, through qmgr) has not committed: an
   * envelope read now may be about to change, so moveLater must not be built on it.
   */
  isChanging(queueId: string): boolean {
    return this.changing.has(queueId);
  }

  /** Sends the waiting writes now; resolves once every write sent so far rode its commit. */
  commitLater(): Promise<void> {
    return this.issueLater();
  }

  private later(queueId: string, issue: () => Promise<boolean>): Promise<boolean> {
    let settle!: (applied: boolean) => void;
    const applied = new Promise<boolean>((resolve) => (settle = resolve));
    this.laterWrites.push({ queueId, issue, settle });
    this.laterIds.set(queueId, (this.laterIds.get(queueId) ?? 0) + 1);
    if (!this.laterTimer) {
      this.laterTimer = setTimeout(() => void this.issueLater(), LATER_MS);
      this.laterTimer.unref();
    }
    return applied;
  }

  /**
   * Issues the waiting writes, all in this event turn (so they share one commit and come before
   * any write issued after them). A queue ID stays in laterIds until its commit is done, so qmgr
   * does not take a message again that it has already let go of.
   */
  private issueLater(): Promise<void> {
    if (this.laterTimer) {
      clearTimeout(this.laterTimer);
      this.laterTimer = null;
    }
    const writes = this.laterWrites;
    if (writes.length === 0) return this.laterSettled;
    this.laterWrites = [];
    const committed = Promise.allSettled(writes.map((w) => {
      try {
        return w.issue();
      } catch (err) {
        return Promise.reject(err);
      }
    }));
    this.laterSettled = committed.then(async (results) => {
      for (const { queueId } of writes) {
        const n = this.laterIds.get(queueId)! - 1;
        if (n > 0) this.laterIds.set(queueId, n);
        else this.laterIds.delete(queueId);
      }
      const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [[writes[i]!.queueId, r.reason] as const] : []));
      if (failed.length > 0) this.onLaterFailure([...new Set(failed.map(([id]) => id))], await commitFailure(failed[0]![1]));
      results.forEach((r, i) => writes[i]!.settle(r.status === 'fulfilled' && r.value));
    });
    return this.laterSettled;
  }

  /** Resolves once every write made so far by this thread is durable (those waiting for a later commit too). */
  async flushed(): Promise<void> {
    await this.issueLater();
    await this.root.flushed;
  }

  /**
   * Closes the store once its pending writes are committed. A command that exits through
   * src/queue/command-line.ts's exitCommand (fatal, usage errors) closes its open stores first:
   * process.exit() during an lmdb-js write batch hangs (see there).
   */
  async close(): Promise<void> {
    await this.issueLater();
    this.forgetOnExit();
    await this.root.close();
    this.release();
  }

  /** Whether this store holds a writer claim (./writer-lock.ts) not yet given up. */
  private claimed = false;

  private release(): void {
    if (!this.claimed) return;
    this.claimed = false;
    releaseWriter(this.directory);
  }

  private forgetOnExit: () => void = () => undefined;
}
