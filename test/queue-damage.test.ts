/**
 * A damaged queue store, in-process with a real LMDB file: the checksum each message carries,
 * the check of the file against its meta page (truncated) and of every tree page (random bytes
 * in the middle), and postsuper --recover's rebuild (src/queue/recover.ts) after both kinds of
 * damage: what is copied is intact, nothing appears twice, the rest is counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { newQueueId } from '../src/queue/qid.js';
import { open as openLmdb } from 'lmdb';
import { EnvelopeDamagedError, QueueStore, STORE_PAGE_SIZE, StoreDamagedError, type MessageMeta } from '../src/queue/store.js';
import { collectQueue } from '../src/queue/listing.js';
import { runAdmin } from '../src/queue/admin.js';
import { contentChecksum, STORE_FILE, storeFileProblem, storeTreeProblem } from '../src/queue/integrity.js';
import { recoverStore } from '../src/queue/recover.js';
import { PAGE_HEADER } from '../src/queue/pages.js';
import { QUEUE_NAMES } from '../src/queue/types.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('pa-damage-');
const COUNT = 300;

/** A store of COUNT messages (every third deferred) of about 3 KB, each with a unique body. */
async function filledStore(): Promise<{ dir: string; ids: string[] }> {
  const dir = tempDir();
  const store = QueueStore.open(dir);
  const ids: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    const queueId = newQueueId();
    const content = Buffer.from(`Subject: message ${i}\r\n\r\nbody-${queueId}-` + 'x'.repeat(3000) + '\r\n');
    const deferred = i % 3 === 0;
    const meta: MessageMeta = {
      queueId, queue: deferred ? 'deferred' : 'incoming', arrival: Date.now(), sender: 's@example.org',
      recipients: [{ address: `r${i}@example.com`, done: false }], size: content.length, nextAttempt: deferred ? Date.now() + 3_600_000 : 0, attempts: 0,
    };
    await store.enqueue(meta, content);
    ids.push(queueId);
  }
  await store.close();
  return { dir, ids };
}

/** Every message of a (recovered) store, by queue: its content must match its checksum unless it is in corrupt. */
function contents(dir: string): { byQueue: Record<string, string[]>; intact: boolean } {
  const store = QueueStore.open(dir, { readOnly: true });
  const byQueue: Record<string, string[]> = {};
  let intact = true;
  try {
    for (const q of QUEUE_NAMES) {
      byQueue[q] = [...store.list(q)];
      if (q === 'corrupt') continue;
      for (const id of byQueue[q]!) {
        const meta = store.get(id)!;
        const body = store.content(id)!;
        if (contentChecksum(body) !== meta.checksum || !body.includes(Buffer.from(`body-${id}-`))) intact = false;
      }
    }
  } finally {
    void store.close();
  }
  return { byQueue, intact };
}

test('each message carries a checksum of its content; a changed byte is a mismatch', async () => {
  const dir = tempDir();
  const store = QueueStore.open(dir);
  const id = newQueueId();
  const content = Buffer.from(`Subject: s\r\n\r\nmarker-${id}\r\n` + 'y'.repeat(5000));
  await store.enqueue({ queueId: id, queue: 'incoming', arrival: 0, sender: '', recipients: [], size: content.length, nextAttempt: 0, attempts: 0 }, content);
  const meta = store.get(id)!;
  assert.equal(meta.checksum, contentChecksum(content));
  assert.equal(store.verify(id, meta), 'ok');
  await store.close();
  // One byte of the stored body changed behind LMDB's back (the content sits on its own page).
  const file = join(dir, STORE_FILE);
  const bytes = readFileSync(file);
  const at = bytes.indexOf(`marker-${id}`);
  assert.ok(at > 0);
  bytes[at] = 'M'.charCodeAt(0);
  writeFileSync(file, bytes);
  const again = QueueStore.open(dir, { readOnly: true });
  try {
    assert.equal(again.verify(id, again.get(id)!), 'mismatch');
  } finally {
    await again.close();
  }
});

test('a store truncated to half is refused before LMDB maps it, and recovery keeps what is left', async () => {
  const { dir, ids } = await filledStore();
  const file = join(dir, STORE_FILE);
  truncateSync(file, Math.floor(statSync(file).size / 2));
  const problem = storeFileProblem(file);
  assert.match(problem ?? '', new RegExp(`queue store ${file} is damaged: the file has \\d+ bytes, its map uses \\d+; .*postsuper --recover`));
  assert.throws(() => QueueStore.open(dir, { readOnly: true }), (err: Error) => err instanceof StoreDamagedError && err.message === problem);

  const report = await recoverStore(dir);
  assert.equal(storeFileProblem(file), null);
  assert.ok(readdirSync(dir).some((f) => f.startsWith(`${STORE_FILE}.damaged-`)), 'the damaged file is kept');
  const { byQueue, intact } = contents(dir);
  assert.ok(intact, 'every message outside corrupt matches its checksum and is the one stored under its ID');
  const all = QUEUE_NAMES.flatMap((q) => byQueue[q]!);
  assert.equal(new Set(all).size, all.length, 'no message twice');
  assert.ok(all.every((id) => ids.includes(id)));
  // Half the file is gone: the messages found only by scanning the pages left are put on hold.
  assert.equal(byQueue['hold']!.length, report.foundByScan);
  assert.equal(byQueue['corrupt']!.length, report.damagedContent + report.withoutEnvelope);
  assert.ok(report.foundByScan > 0, JSON.stringify(report));
  assert.ok(report.damagedPages > 0);
});

test('a file that ends before the last page its meta counts, with no used page past the end (a crash after LMDB gave pages back unwritten), is no damage', async () => {
  const { dir, ids } = await filledStore();
  const file = join(dir, STORE_FILE);
  // LMDB leaves the pages a transaction took and freed again ("loose" pages) unwritten, yet
  // counts them in the meta page's last page: as if the last commit had freed 3 pages at the end.
  const bytes = readFileSync(file);
  const pageSize = bytes.readUInt32LE(PAGE_HEADER + 0x18); // the free database's md_pad: LMDB's page size (src/queue/pages.ts)
  for (const at of [0, pageSize]) {
    const last = PAGE_HEADER + 0x78; // mm_last_pg: after the magic, version, address, map size, free and main databases
    bytes.writeBigUInt64LE(bytes.readBigUInt64LE(at + last) + 3n, at + last);
  }
  writeFileSync(file, bytes);
  assert.equal(storeFileProblem(file), null);
  const store = QueueStore.open(dir, { readOnly: true });
  try {
    assert.equal(QUEUE_NAMES.flatMap((q) => [...store.list(q)]).length, ids.length, 'every message readable');
  } finally {
    await store.close();
  }
});

test('64 KiB of random bytes in the middle: the page check names it, recovery copies the rest', async () => {
  const { dir, ids } = await filledStore();
  const file = join(dir, STORE_FILE);
  const bytes = readFileSync(file);
  const middle = Math.floor(bytes.length / 2);
  // Deterministic "random" bytes (a fixed LCG): the test does the same damage every run.
  let x = 12345;
  for (let i = 0; i < 65536; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[middle + i] = x >>> 24;
  }
  writeFileSync(file, bytes);
  assert.equal(storeFileProblem(file), null, 'the size still matches');
  const deep = storeTreeProblem(file);
  const report = await recoverStore(dir);
  const { byQueue, intact } = contents(dir);
  assert.ok(intact);
  const all = QUEUE_NAMES.flatMap((q) => byQueue[q]!);
  assert.equal(new Set(all).size, all.length, 'no message twice');
  assert.ok(all.every((id) => ids.includes(id)));
  const recovered = Object.values(report.recovered).reduce((a, b) => a + b, 0);
  // 64 KiB is 8 of the store's 8 KiB pages: most messages survive, the damaged ones are set
  // aside. A damaged leaf of the envelopes costs the envelopes of one page (about 40).
  assert.ok(recovered >= COUNT - 60, JSON.stringify(report));
  assert.equal(recovered + report.damagedContent + report.foundByScan + report.unreadableEnvelopes + report.withoutEnvelope >= COUNT - 60, true);
  assert.equal(byQueue['corrupt']!.length, report.damagedContent + report.withoutEnvelope);
  assert.equal(byQueue['incoming']!.length + byQueue['deferred']!.length, recovered);
  // The page check finds damage when a tree page was hit; the checksums catch the rest.
  assert.ok(deep !== null || report.damagedContent > 0, 'the damage is found one way or the other');
  assert.equal(storeTreeProblem(file), null, 'the new store is sound');
});

test('a store another process is creating (no meta page yet) is waited for, and one whose meta pages stay unreadable is damaged', async () => {
  // What a CI run saw: two actors open a new store at once; one made the file and was writing its
  // meta pages when the other read it. A child process plays the creator: it fills the file
  // with its meta pages while this check waits.
  const { dir } = await filledStore();
  const good = join(dir, STORE_FILE);
  const creating = join(tempDir(), STORE_FILE);
  writeFileSync(creating, Buffer.alloc(8192));
  // The child says it is running, then writes 50 ms later, while the check (synchronous) waits:
  // the pages first and the two meta pages last, as LMDB does (a reader that sees a valid meta
  // page finds the pages it counts).
  const copy = [
    "const fs = require('fs'); const good = fs.readFileSync(process.argv[1]); console.log('ready');",
    `setTimeout(() => { const fd = fs.openSync(process.argv[2], 'r+'); const metas = 2 * ${STORE_PAGE_SIZE};`,
    "fs.writeSync(fd, good, metas, good.length - metas, metas); fs.writeSync(fd, good, 0, metas, 0); fs.closeSync(fd); }, 50);",
  ].join(' ');
  const child = spawn(process.execPath, ['-e', copy, good, creating], { stdio: ['ignore', 'pipe', 'ignore'] });
  const exited = once(child, 'exit');
  await once(child.stdout, 'data');
  try {
    assert.equal(storeFileProblem(creating), null);
  } finally {
    await exited;
  }
  const blank = join(tempDir(), STORE_FILE);
  writeFileSync(blank, Buffer.alloc(8192));
  assert.match(storeFileProblem(blank) ?? '', /no valid LMDB meta page/);
});

/** Writes `bytes` as the stored envelope of `queueId`, as damage on disk would leave it. */
async function damageEnvelope(dir: string, queueId: string, bytes: Buffer): Promise<void> {
  const env = openLmdb({ path: join(dir, STORE_FILE), maxDbs: 16 });
  const raw = env.openDB<Buffer, string>('meta', { encoding: 'binary' });
  await raw.put(queueId, bytes);
  await env.close();
}

test('an envelope that does not decode is an EnvelopeDamagedError; set aside, the message is in corrupt with its content and never listed for delivery', async () => {
  const { dir, ids } = await filledStore();
  const incoming = ids[1]!; // every third is deferred: ids[0] is, ids[1] is not
  const deferred = ids[0]!;
  await damageEnvelope(dir, incoming, Buffer.from([0xc1, 0xc1, 0xc1]));
  await damageEnvelope(dir, deferred, Buffer.from([0x2a])); // decodes, to a number: not an envelope
  const store = QueueStore.open(dir);
  try {
    assert.throws(() => store.get(incoming), (e: Error) => e instanceof EnvelopeDamagedError && e.message.startsWith(`${incoming}: damaged envelope: `));
    assert.throws(() => store.get(deferred), (e: Error) => e instanceof EnvelopeDamagedError && /not an envelope/.test(e.message));
    await assert.rejects(store.move(deferred, 'active', {}, 'deferred'), EnvelopeDamagedError);
    // mailq leaves them out (as Postfix's showq a file it cannot read), and lists the rest.
    const listed = collectQueue(store).map((m) => m.queueId);
    assert.equal(listed.length, COUNT - 2);
    assert.ok(!listed.includes(incoming) && !listed.includes(deferred));

    const found = await store.checkStructure(false);
    assert.deepEqual(found.damaged.sort(), [incoming, deferred].sort(), 'postsuper -s and postactor check see them');
    assert.equal(await store.setAsideDamaged(incoming), true);
    assert.equal(await store.setAsideDamaged(deferred), true);
    for (const id of [incoming, deferred]) {
      const meta = store.get(id)!;
      assert.equal(meta.queue, 'corrupt');
      assert.deepEqual(meta.recipients, []);
      assert.ok(store.content(id)!.includes(Buffer.from(`body-${id}-`)), 'the content is kept for postcat');
      assert.equal(meta.size, store.content(id)!.length);
    }
    assert.ok(![...store.list('incoming')].includes(incoming));
    assert.ok(![...store.list('deferred')].includes(deferred));
    assert.ok(![...store.dueDeferred(Date.now() + 7_200_000)].includes(deferred), 'no due entry is left behind');
    assert.deepEqual([...store.list('corrupt')].sort(), [incoming, deferred].sort());
    assert.equal(await store.setAsideDamaged(ids[2]!), false, 'an envelope that decodes is left alone');
    assert.equal(store.get(ids[2]!)!.queue, 'incoming');
    const report = await store.checkStructure(false);
    assert.deepEqual([report.danglingIndex, report.danglingDue, report.reindexed, report.corrupt.length, report.damaged.length], [0, 0, 0, 0, 0]);
  } finally {
    await store.close();
  }
});

test('a damaged envelope in active does not stop the start-up recovery: it goes back to incoming, where qmgr sets it aside', async () => {
  const { dir, ids } = await filledStore();
  const id = ids[1]!;
  let store = QueueStore.open(dir);
  await store.move(id, 'active', {}, 'incoming');
  await store.close();
  await damageEnvelope(dir, id, Buffer.from([0xc1]));
  store = QueueStore.open(dir);
  try {
    assert.equal(await store.recoverActive(), 1);
    assert.ok([...store.list('incoming')].includes(id));
    assert.deepEqual([...store.list('active')], []);
    assert.throws(() => store.get(id), EnvelopeDamagedError);
    assert.equal(await store.setAsideDamaged(id), true);
    assert.deepEqual([...store.list('corrupt')], [id]);
    assert.ok(![...store.list('incoming')].includes(id));
  } finally {
    await store.close();
  }
});

test('postsuper on an envelope that does not decode: -d removes the message, -h/-r/-e set it aside in corrupt; a queue not named is left alone', async () => {
  const { dir, ids } = await filledStore();
  const [deferredBad, incomingBad, , deferredBad2, incomingBad2, incomingBad3] = ids; // ids[0], ids[3] are deferred
  for (const id of [deferredBad!, incomingBad!, deferredBad2!, incomingBad2!, incomingBad3!]) await damageEnvelope(dir, id, Buffer.from([0xc1]));
  const store = QueueStore.open(dir);
  const logged: string[] = [];
  try {
    const r = await runAdmin(store, [{ action: 'delete', ids: [deferredBad!, incomingBad!] }], (t) => logged.push(t));
    assert.deepEqual(r.events.map((e) => e.event), ['removed', 'removed']);
    assert.equal(r.counts.deleted, 2);
    assert.equal(r.damaged, undefined);
    for (const id of [deferredBad!, incomingBad!]) {
      assert.equal(store.content(id), undefined, 'the content is gone');
      assert.deepEqual(store.indexedIn(id), []);
    }
    assert.ok(![...store.dueDeferred(Date.now() + 7_200_000)].includes(deferredBad!), 'no due entry is left behind');

    // Only the named queue: a damaged message elsewhere is not touched.
    const none = await runAdmin(store, [{ action: 'hold', ids: [incomingBad2!], queues: ['deferred'] }], (t) => logged.push(t));
    assert.deepEqual([none.events, none.damaged], [[], undefined]);
    assert.deepEqual(store.indexedIn(incomingBad2!), ['incoming']);

    const set = await runAdmin(store, [{ action: 'hold', ids: [incomingBad2!] }, { action: 'requeue', ids: [deferredBad2!] }, { action: 'expire', ids: [incomingBad3!] }], (t) => logged.push(t));
    assert.deepEqual(set.events, []);
    assert.deepEqual(set.damaged, [incomingBad2!, deferredBad2!, incomingBad3!]);
    for (const id of set.damaged!) {
      assert.equal(store.get(id)!.queue, 'corrupt');
      assert.deepEqual(store.indexedIn(id), ['corrupt']);
    }
    assert.ok(logged.includes(`warning: ${incomingBad2}: envelope does not decode -- moved to the corrupt queue`), logged.join('\n'));
    // Set aside, it is an ordinary corrupt-queue message: -d names that queue.
    const gone = await runAdmin(store, [{ action: 'delete', ids: 'ALL', queues: ['corrupt'] }], () => {});
    assert.equal(gone.counts.deleted, 3);
    const report = await store.checkStructure(false);
    assert.deepEqual([report.danglingIndex, report.danglingDue, report.reindexed, report.corrupt.length, report.damaged.length], [0, 0, 0, 0, 0]);
    assert.equal(collectQueue(store).length, COUNT - 5);
  } finally {
    await store.close();
  }
});
