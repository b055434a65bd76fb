/**
 * Direct channels (src/runtime/channels.ts, pool.ts, pool-thread.ts): a long-lived client's
 * requests to a pool service go straight to the pool's threads once the master wired them,
 * bodies are transferred, a dead pool thread fails what it held with CRASHED and another takes
 * over, and the pool still starts threads on demand and ends them after max_idle.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Router } from '../src/runtime/router.js';
import { ServicePool, type PoolOptions } from '../src/runtime/pool.js';
import { SupervisedWorker } from '../src/runtime/supervisor.js';

const fixtures = new URL('../../test/fixtures/runtime/', import.meta.url);

interface Reply { echo: unknown; thread: number; bytes: number | null }
interface Outcome { detached: boolean[]; results: ({ ok: true; value: Reply } | { ok: false; code: string })[] }

async function setup(options: Partial<PoolOptions> = {}) {
  const router = new Router();
  const crashes: string[] = [];
  const pool = new ServicePool({
    service: 'chan', filename: new URL('channel-task.mjs', fixtures).href, threads: 2, minThreads: 0,
    concurrency: 16, maxQueue: 100, workerData: null, throttleSeconds: 60,
    onCrash: (_s, err) => crashes.push(err.message), ...options,
  });
  router.addPool('chan', pool);
  const client = new SupervisedWorker({
    service: 'client', index: 0, filename: new URL('channel-client.mjs', fixtures),
    workerData: { service: 'client', index: 0, config: null, instance: 'test' }, throttleSeconds: 60,
    onPort: (port) => router.attach('client', port),
  });
  client.start();
  await client.ready();
  /** Has the client send these requests; one hop through the router (the test's own request). */
  const send = (requests: unknown[], bytes = 0) => router.request<Outcome>('client', { to: 'chan', requests, bytes });
  const close = async () => {
    await client.stop();
    await pool.close();
  };
  return { router, pool, send, crashes, close };
}

const waitFor = async (what: () => boolean, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!what() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return what();
};

test('after the first request the client reaches the pool threads without the master, its bodies transferred', async () => {
  const s = await setup();
  try {
    const before = s.router.carried;
    const first = await s.send([{ value: 0 }]);
    assert.equal(first.results[0]!.ok, true);
    assert.equal(s.router.carried - before, 2, 'the test\'s request, and the client\'s first one to chan');
    const many = await s.send(Array.from({ length: 20 }, (_, i) => ({ value: i })), 4096);
    assert.equal(s.router.carried - before, 3, 'twenty requests, none of them through the router');
    assert.deepEqual(many.results.map((r) => r.ok && r.value.echo), Array.from({ length: 20 }, (_, i) => i));
    assert.deepEqual(many.results.map((r) => r.ok && r.value.bytes), Array.from({ length: 20 }, () => 4096), 'the server got each body whole');
    assert.deepEqual(many.detached, Array.from({ length: 20 }, () => true), 'each body was transferred: detached in the sender');
  } finally {
    await s.close();
  }
});

test('the body of a request the router carries is transferred too', async () => {
  const s = await setup();
  try {
    const first = await s.send([{ value: 'x' }], 1024);
    assert.deepEqual(first.detached, [true]);
    assert.equal(first.results[0]!.ok && first.results[0]!.value.bytes, 1024);
  } finally {
    await s.close();
  }
});

test('a pool thread that dies fails its pending direct requests with CRASHED, and another thread takes over', async () => {
  const s = await setup({ threads: 1 });
  try {
    const warm = await s.send([{ value: 'warm' }]);
    const dead = warm.results[0]!.ok ? warm.results[0]!.value.thread : -1;
    const before = s.router.carried;
    // A slow request in flight on the thread, then one that ends it.
    const out = await s.send([{ value: 'slow', ms: 3000 }, { value: 'exit', exit: true, ms: 1000 }]);
    assert.equal(s.router.carried - before, 1, 'both went on the direct channel');
    assert.deepEqual(out.results.map((r) => !r.ok && r.code), ['CRASHED', 'CRASHED']);
    assert.ok(await waitFor(() => s.crashes.length === 1), 'counted as one crash of the service');
    const after = await s.send([{ value: 'after' }]);
    assert.equal(after.results[0]!.ok, true);
    assert.notEqual(after.results[0]!.ok && after.results[0]!.value.thread, dead, 'a new thread serves');
  } finally {
    await s.close();
  }
});

test('a pool that keeps crashing is throttled, and its clients refuse without asking it', async () => {
  const s = await setup({ threads: 1, crashLimit: 2 });
  try {
    await s.send([{ value: 'warm' }]);
    await s.send([{ exit: true, ms: 1000 }]);
    await s.send([{ value: 'again' }]);
    const second = await s.send([{ exit: true, ms: 1000 }]);
    assert.deepEqual(second.results.map((r) => !r.ok && r.code), ['CRASHED']);
    assert.ok(await waitFor(() => s.pool.throttled), 'throttled after the second crash');
    const refused = await s.send([{ value: 'no' }]);
    assert.deepEqual(refused.results.map((r) => !r.ok && r.code), ['THROTTLED']);
  } finally {
    await s.close();
  }
});

test('requests with the same affinity key go to the same thread; different keys spread over the threads', async () => {
  const s = await setup({ threads: 2, minThreads: 2 });
  try {
    await s.send([{ value: 'wire' }]);
    assert.ok(await waitFor(() => s.pool.threads === 2), 'two threads');
    const keys = Array.from({ length: 16 }, (_, k) => `local:u${k}@example.com`);
    let threadsOf = new Map<string, Set<number>>();
    // Until the second thread is ready and wired to the client, everything goes to the first.
    for (let attempt = 0; attempt < 50; attempt++) {
      const out = await s.send(keys.flatMap((affinity) => Array.from({ length: 4 }, () => ({ value: affinity, affinity, ms: 5 }))));
      threadsOf = new Map();
      for (const r of out.results) {
        assert.ok(r.ok);
        const key = r.value.echo as string;
        threadsOf.set(key, (threadsOf.get(key) ?? new Set()).add(r.value.thread));
      }
      for (const [key, threads] of threadsOf) assert.equal(threads.size, 1, `${key}: one thread, got ${[...threads].join(', ')}`);
      if (new Set([...threadsOf.values()].map((t) => [...t][0])).size === 2) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(new Set([...threadsOf.values()].map((t) => [...t][0])).size, 2, 'the keys use both threads');
  } finally {
    await s.close();
  }
});

test('threads still start on demand (also when a client\'s channels are loaded) and end after max_idle; the client then goes through the master again', async () => {
  const s = await setup({ threads: 2, idleMs: 300, spreadAt: 2 });
  try {
    assert.equal(s.pool.threads, 0, 'no thread before the first request');
    await s.send([{ value: 1 }]);
    assert.equal(s.pool.threads, 1);
    // Ten slow requests at once on one channel: the client asks for a second thread.
    const load = s.send(Array.from({ length: 10 }, (_, i) => ({ value: i, ms: 1500 })));
    assert.ok(await waitFor(() => s.pool.threads === 2), 'a second thread started');
    const loaded = await load;
    assert.ok(loaded.results.every((r) => r.ok));
    assert.ok(await waitFor(() => s.pool.threads === 0), 'idle threads ended');
    const before = s.router.carried;
    const again = await s.send([{ value: 'again' }]);
    assert.equal(again.results[0]!.ok, true);
    assert.equal(s.router.carried - before, 2, 'no channel left: through the master, which started a thread');
    assert.equal(s.pool.threads, 1);
    await s.send([{ value: 'direct' }]);
    assert.equal(s.router.carried - before, 3, 'and wired again');
    assert.equal(s.crashes.length, 0, 'ending idle threads is no crash');
  } finally {
    await s.close();
  }
});

test('a client reaches a service of long-lived workers (verify) directly too, and a restarted worker is wired again', async () => {
  const s = await setup();
  const pinger = new SupervisedWorker({
    service: 'pinger', index: 0, filename: new URL('actor-worker.mjs', fixtures),
    workerData: { service: 'pinger', index: 0, config: null, instance: 'test' }, throttleSeconds: 60,
    onPort: (port) => s.router.attach('pinger', port),
  });
  try {
    pinger.start();
    await pinger.ready();
    const ask = (requests: unknown[]) => s.router.request<Outcome>('client', { to: 'pinger', requests });
    const before = s.router.carried;
    assert.deepEqual((await ask(['a'])).results, [{ ok: true, value: { pong: 'a', thread: 0 } }]);
    assert.deepEqual((await ask(['b', 'c'])).results.map((r) => r.ok), [true, true]);
    assert.equal(s.router.carried - before, 3, 'the first through the router, the next two direct');
    // It dies (after answering), is restarted, and the client's channel goes to the new one.
    await ask(['die']);
    const deadline = Date.now() + 10_000;
    while (pinger.restarts === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await pinger.ready();
    const mid = s.router.carried;
    assert.deepEqual((await ask(['d'])).results, [{ ok: true, value: { pong: 'd', thread: 0 } }]);
    assert.equal(s.router.carried - mid, 1, 'direct to the restarted worker');
  } finally {
    await pinger.stop();
    await s.close();
  }
});

test('a pool thread passing a request on to another pool (local → mailbox_transport) goes direct after its first', async () => {
  const router = new Router();
  const options = { threads: 1, minThreads: 0, concurrency: 16, maxQueue: 100, workerData: null, throttleSeconds: 60 };
  const chan = new ServicePool({ service: 'chan', filename: new URL('channel-task.mjs', fixtures).href, ...options });
  const pass = new ServicePool({ service: 'pass', filename: new URL('channel-pass-task.mjs', fixtures).href, ...options });
  router.addPool('chan', chan);
  router.addPool('pass', pass);
  try {
    const before = router.carried;
    const first = await router.request<Reply>('pass', { to: 'chan', body: { value: 1 } });
    assert.equal(first.echo, 1);
    assert.equal(router.carried - before, 2, 'the test\'s request, and the pass thread\'s first one to chan');
    const next = await Promise.all([2, 3, 4].map((value) => router.request<Reply>('pass', { to: 'chan', body: { value } })));
    assert.deepEqual(next.map((r) => r.echo), [2, 3, 4]);
    assert.equal(router.carried - before, 5, 'the pass thread\'s next three went direct');
  } finally {
    await pass.close();
    await chan.close();
  }
});
