/**
 * postsuper --recover: a damaged queue store (see integrity.ts) rebuilt from what can still be
 * read, with the server stopped.
 *
 * The damaged file is read without LMDB (pages.ts: every page checked, a bad page and the
 * subtree under it skipped), from its newest meta page, or the one before when the newest
 * tree's root is unreadable. Into a new store, written beside it and then put in its place:
 *   - every message whose envelope decodes and whose content matches its checksum, in its queue
 *     (with its status logs); active messages as they were (qmgr puts them back into incoming);
 *   - set aside in the corrupt queue: a message whose content is unreadable or fails its
 *     checksum (its envelope kept, for postcat), and content found without an envelope;
 *   - counted: envelopes that do not decode, and damaged pages;
 *   - when pages were lost: messages the tree no longer reaches, found by scanning every page
 *     left and checked against their checksums, placed on hold (see scanPages).
 * The damaged file is kept as queue.lmdb.damaged-<time>. The MTA-STS cache is not carried over
 * (it is fetched again).
 */
import { chownSync, closeSync, existsSync, fstatSync, mkdirSync, openSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Unpackr } from 'msgpackr';
import { contentChecksum, STORE_FILE } from './integrity.js';
import { PageReader, readMetas } from './pages.js';
import { placeholderEnvelope, QueueStore } from './store.js';
import { QUEUE_NAMES, type LogKind, type MessageMeta, type QueueName, type StatusRecord } from './types.js';

export interface RecoveryReport {
  /** Messages copied intact, by queue. */
  recovered: Record<QueueName, number>;
  /** Messages set aside in the corrupt queue: content unreadable or not matching its checksum. */
  damagedContent: number;
  /** Content found without an envelope (set aside in the corrupt queue). */
  withoutEnvelope: number;
  /** Envelopes that could not be decoded (lost). */
  unreadableEnvelopes: number;
  /** Messages the tree did not reach, found by scanning the pages left, put on hold. */
  foundByScan: number;
  /** Damaged or missing pages of the old file (entries under them are lost). */
  damagedPages: number;
  /** Where the damaged file was kept. */
  keptAs: string;
}

/** The codec lmdb-js stores values with (records with their structure inline). */
const unpackr = new Unpackr({ useRecords: true });

const BATCH = 200;

export async function recoverStore(queueDir: string, now = new Date()): Promise<RecoveryReport> {
  const file = join(queueDir, STORE_FILE);
  const fd = openSync(file, 'r');
  const owner = fstatSync(fd);
  const work = join(queueDir, 'recover.tmp');
  let report: RecoveryReport;
  try {
    const size = fstatSync(fd).size;
    const metas = readMetas(fd);
    if (metas.length === 0) throw new Error(`${file}: no valid LMDB meta page: nothing can be read`);
    let reader = new PageReader(fd, size, metas[0]!.pageSize);
    let dbs = reader.databases(metas[0]!);
    if (dbs.size === 0 && metas[1]) {
      reader = new PageReader(fd, size, metas[1].pageSize);
      dbs = reader.databases(metas[1]);
    }
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { mode: 0o700 });
    const store = QueueStore.open(work);
    try {
      report = await copyMessages(reader, dbs, store);
    } finally {
      await store.close();
    }
  } finally {
    closeSync(fd);
  }
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  report.keptAs = `${file}.damaged-${stamp}`;
  renameSync(file, report.keptAs);
  rmSync(`${file}-lock`, { force: true });
  renameSync(join(work, STORE_FILE), file);
  rmSync(work, { recursive: true, force: true });
  // Run as root on another user's queue: the new store belongs to the old one's owner.
  if (process.getuid?.() === 0 && (owner.uid !== 0 || owner.gid !== 0)) chownSync(file, owner.uid, owner.gid);
  return report;
}

async function copyMessages(reader: PageReader, dbs: Map<string, number>, store: QueueStore): Promise<RecoveryReport> {
  const report: RecoveryReport = {
    recovered: Object.fromEntries(QUEUE_NAMES.map((q) => [q, 0])) as Record<QueueName, number>,
    damagedContent: 0, withoutEnvelope: 0, unreadableEnvelopes: 0, foundByScan: 0, damagedPages: 0, keptAs: '',
  };
  // Envelopes and status logs are small: read them all first; contents are read one by one.
  const envelopes = new Map<string, MessageMeta>();
  for (const { key, value } of reader.walk(dbs.get('meta') ?? -1)) {
    const meta = value && decode<MessageMeta>(value);
    if (meta && typeof meta.queueId === 'string' && QUEUE_NAMES.includes(meta.queue) && Array.isArray(meta.recipients)) envelopes.set(key.toString('utf8'), meta);
    else report.unreadableEnvelopes++;
  }
  const logs = new Map<string, Partial<Record<LogKind, StatusRecord[]>>>();
  for (const { key, value } of reader.walk(dbs.get('logs') ?? -1)) {
    const [id, kind] = key.toString('utf8').split('\0');
    const records = value && decode<StatusRecord[]>(value);
    if (!id || (kind !== 'bounce' && kind !== 'defer' && kind !== 'trace') || !Array.isArray(records)) continue;
    logs.set(id, { ...(logs.get(id) ?? {}), [kind]: records });
  }
  let batch: Parameters<QueueStore['restore']>[0] = [];
  const flush = async () => {
    if (batch.length) await store.restore(batch);
    batch = [];
  };
  const copied = new Set<string>();
  for (const { key, value } of reader.walk(dbs.get('content') ?? -1)) {
    const id = key.toString('utf8');
    const meta = envelopes.get(id);
    const content = value ?? Buffer.alloc(0);
    if (!meta) {
      report.withoutEnvelope++;
      batch.push({ meta: orphan(id, content), content });
    } else if (!value || (meta.checksum !== undefined && contentChecksum(value) !== meta.checksum)) {
      report.damagedContent++;
      batch.push({ meta: { ...meta, queue: 'corrupt', nextAttempt: 0 }, content });
    } else {
      report.recovered[meta.queue]++;
      const l = logs.get(id);
      batch.push({ meta, content: Buffer.from(content), ...(l ? { logs: l } : {}) });
    }
    copied.add(id);
    if (batch.length >= BATCH) await flush();
  }
  // Envelopes whose content was not reached (its leaf page is damaged): the content may still be
  // on its overflow pages, found by its size and checksum.
  const lost = [...envelopes.values()].filter((m) => !copied.has(m.queueId));
  const found = findContents(reader, lost);
  for (const meta of lost) {
    const content = found.get(meta.queueId);
    if (content) {
      report.recovered[meta.queue]++;
      const l = logs.get(meta.queueId);
      batch.push({ meta, content, ...(l ? { logs: l } : {}) });
    } else {
      report.damagedContent++;
      batch.push({ meta: { ...meta, queue: 'corrupt', nextAttempt: 0 }, content: Buffer.alloc(0) });
    }
    if (batch.length >= BATCH) await flush();
  }
  await flush();
  report.damagedPages = reader.damaged.size;
  if (reader.damaged.size > 0) await scanPages(reader, new Set([...copied, ...envelopes.keys()]), store, report);
  return report;
}

/**
 * The tree lost subtrees (a truncated file loses its newest pages, the root among them): every
 * leaf page left is scanned for envelopes the tree did not reach, newest version first (by the
 * txnid of the page), each with a content whose checksum matches. A leaf page may be stale (a
 * message since delivered and removed, its page free but not yet reused), so these go on hold,
 * not back to delivery: the administrator looks (mailq) and releases them (postsuper -H).
 */
async function scanPages(reader: PageReader, done: Set<string>, store: QueueStore, report: RecoveryReport): Promise<void> {
  const found = new Map<string, { txnid: bigint; meta: MessageMeta }>();
  for (let pgno = 2; pgno < reader.pageCount; pgno++) {
    for (const { key, value } of reader.leafAt(pgno)?.entries ?? []) {
      if (!value || key.includes(0)) continue; // index and log keys are [a, b] pairs
      const id = key.toString('utf8');
      if (done.has(id)) continue;
      const meta = decode<MessageMeta>(value);
      if (!meta || typeof meta !== 'object' || meta.queueId !== id || !QUEUE_NAMES.includes(meta.queue) || !Array.isArray(meta.recipients)) continue;
      const txnid = reader.leafAt(pgno)!.txnid;
      if ((found.get(id)?.txnid ?? -1n) < txnid) found.set(id, { txnid, meta });
    }
  }
  if (found.size === 0) return;
  const best = new Map<string, { txnid: bigint; content: Buffer }>();
  for (let pgno = 2; pgno < reader.pageCount; pgno++) {
    const leaf = reader.leafAt(pgno);
    for (const { key, value } of leaf?.entries ?? []) {
      const f = value && found.get(key.toString('utf8'));
      if (!f || !value) continue;
      const fits = f.meta.checksum === undefined ? value.length === f.meta.size : contentChecksum(value) === f.meta.checksum;
      if (fits && (best.get(f.meta.queueId)?.txnid ?? -1n) < leaf!.txnid) best.set(f.meta.queueId, { txnid: leaf!.txnid, content: Buffer.from(value) });
    }
  }
  const onOverflow = findContents(reader, [...found.values()].filter(({ meta }) => !best.has(meta.queueId)).map(({ meta }) => meta));
  for (const [id, content] of onOverflow) best.set(id, { txnid: 0n, content });
  let batch: Parameters<QueueStore['restore']>[0] = [];
  for (const [id, { meta }] of found) {
    const c = best.get(id);
    if (c) {
      report.foundByScan++;
      batch.push({ meta: { ...meta, queue: meta.queue === 'corrupt' ? 'corrupt' : 'hold', nextAttempt: 0 }, content: c.content });
    } else {
      report.damagedContent++;
      batch.push({ meta: { ...meta, queue: 'corrupt', nextAttempt: 0 }, content: Buffer.alloc(0) });
    }
    if (batch.length >= BATCH) {
      await store.restore(batch);
      batch = [];
    }
  }
  if (batch.length) await store.restore(batch);
}

/**
 * Contents of `wanted` envelopes found on overflow pages no tree reaches any more: a run whose
 * first `size` bytes have the envelope's checksum is its content. (Contents small enough to sit
 * in a leaf page are lost with it.)
 */
function findContents(reader: PageReader, wanted: MessageMeta[]): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const bySize = new Map<number, Map<number, string>>();
  for (const m of wanted) {
    if (m.checksum === undefined) continue;
    if (!bySize.has(m.size)) bySize.set(m.size, new Map());
    bySize.get(m.size)!.set(m.checksum, m.queueId);
  }
  if (bySize.size === 0) return out;
  for (const { data } of reader.overflowRuns()) {
    for (const [size, sums] of bySize) {
      if (size > data.length) continue;
      const id = sums.get(contentChecksum(data.subarray(0, size)));
      if (id !== undefined && !out.has(id)) out.set(id, Buffer.from(data.subarray(0, size)));
    }
  }
  return out;
}

function decode<T>(value: Buffer): T | null {
  try {
    return unpackr.unpack(value) as T;
  } catch {
    return null;
  }
}

/** An envelope for content found without one: it goes to the corrupt queue, for postcat. */
function orphan(queueId: string, content: Buffer): MessageMeta {
  return placeholderEnvelope(queueId, content.length);
}

/** True when the queue directory has a store file to recover. */
export function hasStore(queueDir: string): boolean {
  return existsSync(join(queueDir, STORE_FILE));
}
