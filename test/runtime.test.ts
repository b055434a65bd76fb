import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { ServicePool } from '../src/runtime/pool.js';
import { Router } from '../src/runtime/router.js';
import { SupervisedWorker } from '../src/runtime/supervisor.js';
import { receive, tell } from '../src/runtime/mailbox.js';
import { ServiceError, WARM_REQUEST } from '../src/runtime/wire.js';

const fixtures = new URL('../../test/fixtures/runtime/', import.meta.url);

function pool(crashLimit = 5): ServicePool {
  return new ServicePool({
    service: 'echo',
    filename: new URL('echo-task.mjs', fixtures).href,
    threads: 2,
    concurrency: 4,
    maxQueue: 100,
    workerData: null,
    throttleSeconds: 60,
    crashLimit,
  });
}

test('a pool of maxproc threads answers requests (request/reply daemon)', async () => {
  const p = pool();
  try {
    const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => p.run<{ echo: number }>({ value: i })));
    assert.deepEqual(replies.map((r) => r.echo), Array.from({ length: 50 }, (_, i) => i));
    assert.equal(p.threads, 2);
  } finally {
    await p.close();
  }
});

test('a crashed pool worker fails its request with CRASHED and is replaced', async () => {
  const p = pool();
  try {
    await assert.rejects(p.run({ crash: true }), (e: unknown) => e instanceof ServiceError && e.code === 'CRASHED');
    const r = await p.run<{ echo: string }>({ value: 'after' });
    assert.equal(r.echo, 'after');
  } finally {
    await p.close();
  }
});

test('a service that keeps crashing is throttled (service_throttle_time)', async () => {
  const p = pool(2);
  try {
    await assert.rejects(p.run({ crash: true }));
    await assert.rejects(p.run({ crash: true }));
    await assert.rejects(p.run({ value: 1 }), (e: unknown) => e instanceof ServiceError && e.code === 'THROTTLED');
  } finally {
    await p.close();
  }
});

test('a lazy pool has no thread until its first request, then serves it and shrinks back after max_idle', async () => {
  const p = new ServicePool({
    service: 'lazy', filename: new URL('slow-task.mjs', fixtures).href, threads: 2, minThreads: 0, idleMs: 300,
    concurrency: 4, maxQueue: 100, workerData: null, throttleSeconds: 60,
  });
  try {
    assert.equal(p.threads, 0, 'no thread before the first request');
    const first = await p.run<{ echo: number; thread: number }>({ value: 1 });
    assert.equal(first.echo, 1);
    assert.equal(p.threads, 1, 'one thread for one request');
    // Two requests at once: the busy thread is not made to take the second (a second thread starts).
    // (Long requests: a thread start on a loaded machine can take a second.)
    const both = await Promise.all([p.run<{ thread: number }>({ value: 2, ms: 3000 }), p.run<{ thread: number }>({ value: 3, ms: 3000 })]);
    assert.notEqual(both[0].thread, both[1].thread, 'the two requests ran on two threads');
    // Idle longer than max_idle: back to no thread at all (bounded wait).
    const deadline = Date.now() + 10_000;
    while (p.threads > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(p.threads, 0, 'idle threads ended');
    // And it starts again on demand.
    assert.equal((await p.run<{ echo: number }>({ value: 4 })).echo, 4);
    assert.equal(p.threads, 1);
  } finally {
    await p.close();
  }
});

test('a burst to a cold pool starts one thread, not one per request (spread at 8 in flight)', async () => {
  const p = new ServicePool({
    service: 'burst', filename: new URL('slow-task.mjs', fixtures).href, threads: 2, minThreads: 0, spreadAt: 8,
    concurrency: 64, maxQueue: 100, workerData: null, throttleSeconds: 60,
  });
  try {
    const replies = await Promise.all([1, 2, 3, 4, 5].map((value) => p.run<{ echo: number; thread: number }>({ value, ms: 100 })));
    assert.deepEqual(replies.map((r) => r.echo), [1, 2, 3, 4, 5]);
    assert.equal(new Set(replies.map((r) => r.thread)).size, 1, 'five requests, one thread');
    assert.equal(p.threads, 1);
  } finally {
    await p.close();
  }
});

test('a pool whose spreadAt is above its concurrency (local, virtual) queues in its thread up to spreadAt before it starts another', async () => {
  const p = new ServicePool({
    service: 'deep', filename: new URL('slow-task.mjs', fixtures).href, threads: 2, minThreads: 0, spreadAt: 32,
    concurrency: 4, maxQueue: 100, workerData: null, throttleSeconds: 60,
  });
  try {
    const burst = (n: number) => Promise.all(Array.from({ length: n }, (_, value) => p.run<{ echo: number; thread: number }>({ value, ms: 50 })));
    const replies = await burst(30);
    assert.equal(new Set(replies.map((r) => r.thread)).size, 1, 'thirty requests, four at a time, one thread');
    assert.equal(p.threads, 1);
    const more = burst(40);
    // The pool starts the second thread as the 33rd request comes; which thread serves the last
    // eight depends on how soon it is ready (on a loaded machine the first may be free again first).
    assert.equal(p.threads, 2, 'beyond spreadAt a second thread starts');
    assert.equal((await more).length, 40);
  } finally {
    await p.close();
  }
});

test('WARM_REQUEST starts a cold pool\'s thread, and the requests that follow use that thread', async () => {
  const p = new ServicePool({
    service: 'cold', filename: new URL('slow-task.mjs', fixtures).href, threads: 2, minThreads: 0, spreadAt: 8,
    concurrency: 4, maxQueue: 100, workerData: null, throttleSeconds: 60,
  });
  const router = new Router();
  router.addPool('cold', p);
  try {
    assert.equal(p.threads, 0);
    assert.equal(await router.request('cold', WARM_REQUEST), undefined, 'a cast: nothing to answer');
    // A request that comes while the thread starts waits for it (no second thread).
    const reply = await router.request<{ echo: number; thread: number }>('cold', { value: 7 });
    assert.equal(reply.echo, 7);
    assert.equal(p.threads, 1, 'one thread, started by the warm request');
    router.request('cold', WARM_REQUEST);
    assert.equal(p.threads, 1, 'a pool with a thread ignores it');
  } finally {
    await p.close();
  }
});

test('a pool with a minimum keeps it while in use, and lets it end after max_idle unused (cleanup\'s warm thread)', async () => {
  const p = new ServicePool({
    service: 'warm', filename: new URL('slow-task.mjs', fixtures).href, threads: 3, minThreads: 1, idleMs: 300,
    concurrency: 4, maxQueue: 100, workerData: null, throttleSeconds: 60,
  });
  const until = async (cond: () => boolean, what: string, work?: () => Promise<unknown>) => {
    const deadline = Date.now() + 20_000;
    while (!cond() && Date.now() < deadline) {
      await (work ? work() : new Promise((r) => setTimeout(r, 50)));
    }
    assert.ok(cond(), what);
  };
  try {
    assert.equal(p.threads, 1, 'the minimum starts at once');
    const replies = await Promise.all([1, 2, 3].map((value) => p.run<{ thread: number }>({ value, ms: 3000 })));
    assert.equal(new Set(replies.map((r) => r.thread)).size, 3, 'grown to maxproc under concurrent requests');
    // A request every 100 ms (under max_idle) keeps the service in use: the pool shrinks to its
    // minimum and no further.
    let ones = 0;
    const trickle = async () => { ones++; await p.run({ value: 0 }); await new Promise((r) => setTimeout(r, 100)); };
    await until(() => p.threads === 1, 'shrunk back to its minimum while in use', trickle);
    const seen = ones;
    await until(() => ones >= seen + 10, 'ten more requests', trickle);
    assert.equal(p.threads, 1, 'the minimum is kept while the service is in use');
    // Unused for max_idle: the minimum ends too.
    await until(() => p.threads === 0, 'no thread once the service has been unused for max_idle');
    // The next request starts one again, and the minimum holds while the service is used.
    assert.equal((await p.run<{ echo: number }>({ value: 5 })).echo, 5);
    assert.equal(p.threads, 1);
  } finally {
    await p.close();
  }
});

test('a pool thread takes requests only once its set-up (prepare) is done, the first thread and one started under load alike', async () => {
  const p = new ServicePool({
    service: 'prep', filename: new URL('prepare-task.mjs', fixtures).href, threads: 2, minThreads: 0,
    concurrency: 4, maxQueue: 100, workerData: null, throttleSeconds: 60, spreadAt: 1,
  });
  try {
    // More than one thread's worth at once: the pool starts the second thread while the first works.
    const replies = await Promise.all(Array.from({ length: 12 }, () => p.run<{ prepared: boolean; thread: number }>({ ms: 150 })));
    assert.deepEqual(replies.map((r) => r.prepared), replies.map(() => true), 'no request reached a thread before its set-up was done');
    assert.equal(new Set(replies.map((r) => r.thread)).size, 2, 'both threads served');
  } finally {
    await p.close();
  }
});

test('a set-up slower than the pool waits for a thread (5 s) says ready after 2 s: its request waits in it, and no second thread starts', async () => {
  const p = new ServicePool({
    service: 'slowprep', filename: new URL('prepare-task.mjs', fixtures).href, threads: 3, minThreads: 0,
    concurrency: 4, maxQueue: 100, workerData: { prepareMs: 6_000 }, throttleSeconds: 60, spreadAt: 1,
  });
  try {
    const started = Date.now();
    const reply = await p.run<{ prepared: boolean; thread: number }>({});
    assert.equal(reply.prepared, false, 'the request reached the thread while its set-up still ran (it said ready at 2 s)');
    assert.ok(Date.now() - started < 5_000, 'answered before the set-up ended');
    await new Promise((r) => setTimeout(r, 4_500)); // past the pool's 5 s wait for a thread
    assert.equal(p.threads, 1, 'one thread: the pool did not give up on it and start another');
  } finally {
    await p.close();
  }
});

test('the router carries requests from a long-lived worker to a pool and back; a dead worker is restarted', async () => {
  const router = new Router();
  const p = pool();
  router.addPool('echo', p);
  const exits: number[] = [];
  const w = new SupervisedWorker({
    service: 'pinger',
    index: 0,
    filename: new URL('actor-worker.mjs', fixtures),
    workerData: { service: 'pinger', index: 0, config: null, instance: 'test' },
    throttleSeconds: 60,
    onPort: (port) => router.attach('pinger', port),
    onExit: (_slot, code) => exits.push(code),
  });
  try {
    w.start();
    await w.ready();
    assert.deepEqual(await router.request('pinger', 'x'), { pong: 'x', thread: 0 });
    assert.equal(await w.control!['hello']!(), 'hi');
    // The reply races the thread's exit: either it arrives, or the request ends CRASHED. Both are right.
    await router.request('pinger', 'die').catch((e: unknown) => {
      assert.ok(e instanceof ServiceError && e.code === 'CRASHED', String(e));
    });
    const deadline = Date.now() + 10_000;
    while (exits.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(exits, [3]);
    // It had reported ready, so the restart comes after a short pause, not a throttle.
    while (w.restarts === 1 && !router.has('pinger') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await w.ready();
    assert.deepEqual(await router.request('pinger', 'y'), { pong: 'y', thread: 0 });
    await assert.rejects(router.request('nosuch', 1), (e: unknown) => e instanceof ServiceError && e.code === 'NOSERVICE');
  } finally {
    await w.stop();
    await p.close();
  }
});

test('a mailbox reaches its actor from another thread without the router', async () => {
  const got: unknown[] = [];
  const stop = receive('t1', 'qmgr', (m) => got.push(m));
  try {
    const { Worker } = await import('node:worker_threads');
    const mailbox = fileURLToPath(new URL('../src/runtime/mailbox.js', import.meta.url));
    const w = new Worker(`import(${JSON.stringify(mailbox)}).then((m) => m.tell('t1', 'qmgr', { type: 'queued', queueId: 'X' }))`, { eval: true });
    await new Promise((r) => w.once('exit', r));
    const deadline = Date.now() + 5000;
    while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(got, [{ type: 'queued', queueId: 'X' }]);
    tell('t1', 'other', 1); // nobody listens: dropped, no error
  } finally {
    stop();
  }
});
