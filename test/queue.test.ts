import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isQueueId, newQueueId, queueIdTime } from '../src/queue/qid.js';
import { QueueStore, type MessageMeta } from '../src/queue/store.js';

test('queue IDs are unique, look like Postfix long IDs, and sort by arrival', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 20_000; i++) ids.push(newQueueId());
  await new Promise((r) => setTimeout(r, 5));
  ids.push(newQueueId());
  assert.equal(new Set(ids).size, ids.length);
  assert.deepEqual([...ids].sort(), ids);
  for (const id of ids.slice(0, 100)) {
    assert.ok(isQueueId(id), id);
    assert.match(id, /^[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]{4}$/);
  }
  assert.ok(Math.abs(queueIdTime(ids[0]!) - Date.now()) < 60_000);
  assert.ok(!isQueueId('hello world'));
});

function meta(queueId: string, extra: Partial<MessageMeta> = {}): MessageMeta {
  return { queueId, queue: 'incoming', arrival: Date.now(), sender: 's@example.org', recipients: [{ address: 'r@example.com', done: false }], size: 3, nextAttempt: 0, attempts: 0, ...extra };
}

test('the store moves a message between queues in single transactions', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pa-store-'));
  const store = QueueStore.open(dir);
  try {
    const id = newQueueId();
    await store.enqueue(meta(id), Buffer.from('abc'));
    await assert.rejects(store.enqueue(meta(id), Buffer.from('abc')), /duplicate queue ID/);
    assert.deepEqual([...store.list('incoming')], [id]);
    assert.equal(store.content(id)!.toString(), 'abc');
    assert.equal((await store.move(id, 'active', {}, 'incoming'))!.queue, 'active');
    assert.equal(await store.move(id, 'active', {}, 'incoming'), undefined, 'a move from the wrong queue changes nothing');
    assert.equal(store.count('incoming'), 0);
    const now = Date.now();
    await store.move(id, 'deferred', { nextAttempt: now + 60_000 });
    assert.deepEqual([...store.dueDeferred(now)], []);
    assert.deepEqual([...store.dueDeferred(now + 60_000)], [id]);
    assert.equal(store.nextDue(), now + 60_000);
    await store.move(id, 'active', {}, 'deferred');
    assert.deepEqual([...store.dueDeferred(Infinity)], [], 'leaving deferred drops the due index entry');
    assert.equal(await store.recoverActive(), 1);
    assert.deepEqual([...store.list('incoming')], [id]);
    assert.equal(await store.remove(id), true);
    assert.equal(store.get(id), undefined);
    assert.equal(store.content(id), undefined);
    assert.equal(await store.remove(id), false);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('writes that ride a later commit: moveLater / removeLater wait, go out in program order, and check their queue', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pa-store-'));
  const store = QueueStore.open(dir);
  try {
    const [a, b, c] = [newQueueId(), newQueueId(), newQueueId()];
    for (const id of [a, b, c]) await store.enqueue(meta(id), Buffer.from('abc'));
    const next = { ...store.get(a)!, queue: 'active' as const };
    const applied = [
      store.moveLater(a, 'incoming', next),
      store.removeLater(a, 'active'), // after the move, in the same commit
      store.removeLater(b, 'active'), // b is in incoming: nothing happens
    ];
    assert.equal(store.hasLater(a), true);
    assert.equal(store.get(a)!.queue, 'incoming', 'nothing written before the commit');
    // Any other write of the thread sends them first: the move of c comes after them.
    assert.equal((await store.move(c, 'active', {}, 'incoming'))!.queue, 'active');
    await store.commitLater();
    assert.deepEqual(await Promise.all(applied), [true, true, false]);
    assert.equal(store.hasLater(a), false);
    assert.equal(store.get(a), undefined);
    assert.equal(store.content(a), undefined);
    assert.equal(store.get(b)!.queue, 'incoming', 'a removal from the wrong queue changes nothing');
    assert.deepEqual([...store.list('active')], [c]);
    // Without another write, the timer sends them (LATER_MS).
    void store.moveLater(b, 'incoming', { ...store.get(b)!, queue: 'active' });
    const deadline = Date.now() + 20_000;
    while (store.get(b)!.queue !== 'active' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(store.get(b)!.queue, 'active');
    assert.deepEqual([...store.list('incoming')], []);
    // A deferral: the due index entry and the defer log in the same write.
    const due = Date.now() + 60_000;
    void store.moveLater(b, 'active', { ...store.get(b)!, queue: 'deferred', nextAttempt: due }, { defer: [{ index: 0, address: 'r@example.com', dsn: '4.4.1', action: 'delayed', reason: 'x', relay: 'none', time: 1 }] });
    await store.commitLater();
    assert.equal(store.get(b)!.queue, 'deferred');
    assert.deepEqual([...store.dueDeferred(due)], [b]);
    assert.equal(store.logs(b, 'defer').length, 1);
    await store.move(b, 'active', {}, 'deferred');
    // close() sends what still waits.
    void store.removeLater(b, 'active');
  } finally {
    await store.close();
  }
  const again = QueueStore.open(dir, { readOnly: true });
  try {
    assert.equal(again.count('active'), 1);
  } finally {
    await again.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('concurrent enqueues all land (group commit) and survive reopening', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pa-store-'));
  let store = QueueStore.open(dir);
  const ids = Array.from({ length: 500 }, () => newQueueId());
  try {
    await Promise.all(ids.map((id) => store.enqueue(meta(id), Buffer.alloc(1024, 65))));
    await store.close();
    store = QueueStore.open(dir);
    assert.equal(store.count('incoming'), 500);
    assert.deepEqual([...store.list('incoming')], [...ids].sort());
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the store is owner-only: queue_directory is traverse-only for others (maildrop/ inside), queue files 0600', async () => {
  const { statSync } = await import('node:fs');
  const dir = join(mkdtempSync(join(tmpdir(), 'pa-store-')), 'spool');
  const store = QueueStore.open(dir);
  try {
    assert.equal(statSync(dir).mode & 0o777, 0o711);
    assert.equal(statSync(join(dir, 'queue.lmdb')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'queue.lmdb-lock')).mode & 0o777, 0o600);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
