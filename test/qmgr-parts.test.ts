/**
 * The queue manager's parts (actors/qmgr/*.ts, one Postfix qmgr_*.c seam each) driven
 * in-process, each built from its real collaborators and a real QueueStore in a temp dir; the
 * delivery agent is a function of the test (the agent is not what is tested here):
 *   - queue.ts: a destination's concurrency window opening on positive feedback, closing on
 *     negative, dead at the failed-cohort limit and back after minimal_backoff_time;
 *   - transport.ts: a transport down for transport_retry_time, then back;
 *   - entry.ts + scheduler.ts: the entries of a big job preempted by a small one (and not
 *     with delivery_slot_cost = 0);
 *   - deliver.ts: an agent's success, BUSY (the entry goes back first in line), NOSERVICE (the
 *     transport goes down, the recipients are deferred), and a site failure (the destination dies);
 *   - done.ts: the end of an attempt written to the store: removed, or deferred with its
 *     nextAttempt within minimal_backoff_time and its jitter;
 *   - active.ts + message.ts, through QueueManager: a message read in slices of
 *     qmgr_message_recipient_limit, every recipient delivered once, then removed; a message
 *     whose content fails its checksum (found by the agent as it reads it: src/delivery/content.ts)
 *     saved to corrupt without a delivery, its intact neighbour delivered;
 *   - probes.ts: a probe's outcome told to the verify service before its status line is logged
 *     (verify_append's order), the line's status word, a service failure's warning instead.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EMBEDDED_MASTER_CF } from '../src/config/embedded.js';
import { loadConfig, type Config } from '../src/config/index.js';
import type { Logger } from '../src/log/maillog.js';
import { QueueStore } from '../src/queue/store.js';
import type { MessageMeta } from '../src/queue/types.js';
import type { Actor } from '../src/runtime/endpoint.js';
import { ServiceError } from '../src/runtime/wire.js';
import type { DeliveryReply, DeliveryRequest } from '../actors/protocol.js';
import { jobSelector } from '../actors/qmgr/strategy.js';
import { Transports } from '../actors/qmgr/transport.js';
import { Destinations, mayStart, type Destination } from '../actors/qmgr/queue.js';
import { Entries, type Entry, type Job } from '../actors/qmgr/entry.js';
import type { ActiveMessage } from '../actors/qmgr/message.js';
import { Deliveries, type DeliverFn } from '../actors/qmgr/deliver.js';
import { AttemptEnd } from '../actors/qmgr/done.js';
import { Notifier, noticeConfig } from '../actors/qmgr/notices.js';
import { logOutcome, ProbeReports } from '../actors/qmgr/probes.js';
import { FastFlushFeed } from '../actors/qmgr/fast-flush.js';
import { QueueManager } from '../actors/qmgr/manager.js';
import { tempDirs } from './helpers/temp.js';
import { join } from 'node:path';
import { open } from 'lmdb';
import { contentChecksum, STORE_FILE } from '../src/queue/integrity.js';
import { agentContent, corruptReply } from '../src/delivery/content.js';

const tempDir = tempDirs('postactor-qmgr-parts-');

function config(mainCf: Record<string, string> = {}): Config {
  const main = Object.entries({ queue_directory: tempDir(), ...mainCf }).map(([k, v]) => `${k} = ${v}\n`).join('');
  return loadConfig(tempDir({ 'main.cf': main, 'master.cf': EMBEDDED_MASTER_CF }));
}

interface TestLog extends Logger {
  lines: string[];
}

function testLog(): TestLog {
  const lines: string[] = [];
  const add = (level: string) => (text: string) => void lines.push(`${level}: ${text}`);
  return { lines, info: add('info'), warn: add('warning'), error: add('error'), fatal: add('fatal'), tag: () => 'postactor/qmgr' };
}

/** An actor whose every request fails (no bounce, cleanup, verify or flush service is asked here). */
const noServices = {
  data: {},
  request: () => Promise.reject(new ServiceError('NOSERVICE', 'not in this test')),
  send: () => undefined,
  inFlight: () => 0,
} as unknown as Actor;

/** transports, destinations and entries wired as the manager wires them (nqmgr). */
function scheduling(c: Config, log: Logger, hooks: { schedule?: () => void; wake?: (t: string) => void } = {}) {
  const schedule = hooks.schedule ?? (() => undefined);
  let entries: Entries;
  const transports = new Transports(c, log, 'qmgr', {
    selector: (jobs) => jobSelector<Job, Destination, Entry>(jobs, (job, now) => entries.pickPeer(job, now)),
    wake: (t) => {
      destinations.wake(t);
      hooks.wake?.(t);
    },
    schedule,
  });
  const destinations = new Destinations(c, transports, log, { schedule });
  entries = new Entries(transports, destinations);
  return { transports, destinations, entries };
}

/** An in-memory active message of `n` recipients (as message.ts's create() makes one). */
function activeMessage(queueId: string, n: number, activated: number): ActiveMessage {
  const recipients = Array.from({ length: n }, (_, i) => ({ address: `r${i}@example.com`, done: false }));
  const meta: MessageMeta = { queueId, queue: 'active', arrival: activated, sender: 's@example.org', recipients, size: 10, nextAttempt: 0, attempts: 0 };
  const pending = recipients.map((_, i) => i);
  return { meta, activated, outstanding: 0, outcomes: new Map(), rcpt: { pending, readPos: n, inMemory: 0, cap: n, reading: false, lastRead: activated, unsaved: [], lastSave: activated } };
}

const route = (nexthop: string) => ({ transport: 'smtp', nexthop, key: `smtp:${nexthop}`, recipient: `u@${nexthop}` });

async function until(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('queue.ts: a destination\'s concurrency window', () => {
  test('a reload gives the destinations in memory their transport\'s new limits (Postfix\'s new qmgr starts with none), the window cut to the new limit', () => {
    const log = testLog();
    const c = config({ initial_destination_concurrency: '5', smtp_destination_concurrency_limit: '20', smtp_destination_recipient_limit: '50' });
    const { transports, destinations } = scheduling(c, log);
    const dest = destinations.get(route('example.com'));
    assert.equal(dest.fb.window, 5);
    const reloaded = config({ initial_destination_concurrency: '5', smtp_destination_concurrency_limit: '2', smtp_destination_recipient_limit: '10', smtp_destination_rate_delay: '0s' });
    transports.reconfigure(reloaded);
    destinations.reconfigure(reloaded);
    assert.equal(dest.settings.limit, 2);
    assert.equal(dest.fb.window, 2);
    assert.equal(dest.recipientLimit, 10);
    assert.equal(destinations.get(route('example.com')), dest, 'the same queue');
  });

  test('opens by one per success up to the limit, closes by one per site failure, dies at the cohort limit, revives after minimal_backoff_time', async () => {
    const log = testLog();
    let scheduled = 0;
    const c = config({ initial_destination_concurrency: '2', smtp_destination_concurrency_limit: '4', smtp_destination_concurrency_failed_cohort_limit: '1', minimal_backoff_time: '1s', destination_concurrency_feedback_debug: 'yes' });
    const { destinations } = scheduling(c, log, { schedule: () => scheduled++ });
    const dest = destinations.get(route('example.com'));
    assert.equal(destinations.get(route('example.com')), dest, 'one queue per transport:nexthop');
    const now = Date.now();
    assert.equal(dest.fb.window, 2);
    dest.busy = 2;
    assert.equal(mayStart(dest, now), false, 'window full');
    destinations.feedback(dest, [], undefined);
    assert.equal(dest.fb.window, 3);
    assert.equal(mayStart(dest, now), true, 'a success opened the window');
    dest.busy = 3;
    destinations.feedback(dest, [], undefined);
    destinations.feedback(dest, [], undefined);
    assert.equal(dest.fb.window, 4, 'capped at smtp_destination_concurrency_limit');
    assert.match(log.lines.at(-1)!, /^info: success: queue smtp:example\.com: limit 4 window 4 /);
    dest.busy = 0;
    destinations.feedback(dest, [{ index: 0, status: 'deferred', dsn: '4.4.1', reason: 'connect refused', relay: 'none' }], 'connect to example.com: Connection refused');
    // Postfix's qmgr_queue_throttle: the failure credit starts at 0 after a success, so the first
    // failure of a negative cycle (feedback 1) closes the window by two, as Postfix's does.
    assert.equal(dest.fb.window, 2, 'a site failure closed the window');
    assert.equal(dest.dead, undefined);
    // 1/4 + 1/2 + 1/1 cohorts: dead at the failed-cohort limit of 1.
    for (let i = 0; i < 3 && !dest.dead; i++) destinations.feedback(dest, [{ index: 0, status: 'deferred', dsn: '4.4.2', reason: 'x', relay: 'none' }], 'lost connection');
    assert.ok(dest.dead, 'dead');
    assert.equal(dest.dead.dsn, '4.4.2');
    assert.equal(dest.fb.window, 0);
    assert.equal(mayStart(dest, Date.now()), false);
    assert.match(log.lines.at(-1)!, /^info: dead: queue smtp:example\.com: limit 4 window 0 /);
    destinations.sweepIdle(Date.now());
    assert.equal(destinations.all.get('smtp:example.com'), dest, 'a dead queue is not freed');
    await until('the revival after minimal_backoff_time', () => dest.dead === undefined, 3000);
    assert.ok(scheduled > 0, 'the revival asked for a schedule');
    assert.equal(dest.fb.window, 2, 'back at the initial concurrency');
    destinations.sweepIdle(Date.now());
    assert.equal(destinations.all.size, 0, 'an idle queue is freed');
  });

  test('postqueue -f forgets a dead destination at once; smtp_destination_recipient_limit = 1 gives one queue per recipient', () => {
    const c = config({ initial_destination_concurrency: '1', minimal_backoff_time: '300s', smtp_destination_recipient_limit: '1' });
    const { destinations } = scheduling(c, testLog());
    const a = destinations.get({ ...route('example.com'), recipient: 'A@example.com' });
    const b = destinations.get({ ...route('example.com'), recipient: 'b@example.com' });
    assert.notEqual(a, b);
    assert.equal(a.key, 'smtp:a@example.com');
    destinations.feedback(a, [], 'connect refused');
    assert.ok(a.dead);
    destinations.forgetDead();
    assert.equal(a.dead, undefined);
    assert.equal(a.fb.window, 1);
  });
});

describe('transport.ts: a transport down and back', () => {
  test('down for transport_retry_time (its destinations looked at again both times), then back; a second down is ignored; postqueue -f forgets it', async () => {
    const woken: string[] = [];
    let scheduled = 0;
    const c = config({ transport_retry_time: '1s' });
    const { transports } = scheduling(c, testLog(), { wake: (t) => woken.push(t), schedule: () => scheduled++ });
    const t = transports.get('smtp');
    assert.equal(transports.get('smtp'), t);
    transports.down('smtp', 'mail transport unavailable');
    transports.down('smtp', 'something else');
    assert.ok(transports.isDown('smtp'));
    assert.equal(transports.downAt('smtp', Date.now())?.reason, 'mail transport unavailable');
    assert.equal(transports.downAt('smtp', Date.now() + 2000), undefined, 'not down past transport_retry_time');
    assert.equal(transports.isDown('relay'), false);
    assert.deepEqual(woken, ['smtp']);
    await until('transport_retry_time', () => !transports.isDown('smtp'), 3000);
    assert.deepEqual(woken, ['smtp', 'smtp']);
    assert.equal(scheduled, 1);
    transports.down('smtp', 'mail transport unavailable');
    transports.forgetDown();
    assert.equal(transports.isDown('smtp'), false);
  });

  test('per-transport limits are read once; a malformed one is reported and replaced by the default', () => {
    const log = testLog();
    const c = config({ smtp_destination_concurrency_limit: '-1', relay_destination_rate_delay: '2s' });
    const { transports } = scheduling(c, log);
    assert.equal(transports.limitsOf('smtp').settings.limit, 20);
    assert.equal(transports.limitsOf('smtp').settings.limit, 20);
    assert.deepEqual(log.lines, ['warning: smtp_destination_concurrency_limit: bad value "-1": using 20']);
    const relay = transports.limitsOf('relay');
    assert.equal(relay.rateDelay, 2000);
    assert.equal(relay.settings.limit, 1, 'a destination rate delay forces concurrency 1');
  });

  test('recipient refill limit and delay are read with the other limits (main.cf refuses malformed ones with file:line)', () => {
    const log = testLog();
    const c = config({ relay_recipient_refill_limit: '7', relay_recipient_refill_delay: '2s' });
    const { transports } = scheduling(c, log);
    assert.deepEqual([transports.limitsOf('smtp').refillLimit, transports.limitsOf('smtp').refillDelay], [100, 5000]);
    assert.deepEqual([transports.limitsOf('relay').refillLimit, transports.limitsOf('relay').refillDelay], [7, 2000]);
    assert.deepEqual(log.lines, []);
    assert.throws(() => config({ smtp_recipient_refill_limit: '0' }), /main\.cf:\d+: bad numerical parameter value: smtp_recipient_refill_limit = 0/);
  });
});

describe('entry.ts: entries, jobs and preemption', () => {
  function select(transports: Transports, n: number): Entry[] {
    const out: Entry[] = [];
    for (let i = 0; i < n; i++) {
      const e = transports.get('smtp').selector.select(Date.now());
      if (!e) break;
      out.push(e);
    }
    return out;
  }

  function twoJobs(mainCf: Record<string, string>) {
    const s = scheduling(config(mainCf), testLog());
    const dest = s.destinations.get(route('example.com'));
    const t0 = Date.now() - 60_000;
    const big = activeMessage('BIG', 30, t0);
    for (let i = 0; i < 30; i++) s.entries.enqueue(big, dest, [{ index: i, address: `r${i}@example.com` }]);
    return { ...s, dest, big, t0 };
  }

  test('a one-entry message queued later preempts a 30-entry one once it has earned the slots', () => {
    const { transports, entries, dest, big, t0 } = twoJobs({ initial_destination_concurrency: '50', smtp_destination_concurrency_limit: '50' });
    assert.equal(big.outstanding, 30);
    assert.equal(entries.rcptInMemory, 30);
    const first = select(transports, 6);
    assert.ok(first.every((e) => e.msg === big));
    const small = activeMessage('SMALL', 1, t0 + 30_000);
    entries.enqueue(small, dest, [{ index: 0, address: 'r0@example.com' }]);
    const next = select(transports, 1)[0]!;
    assert.equal(next.msg, small, 'preempted');
    entries.done(next);
    assert.equal(transports.get('smtp').jobOf.has(small), false, 'its job is freed with its last entry');
    const rest = select(transports, 100);
    assert.equal(rest.length, 24);
    assert.ok(rest.every((e) => e.msg === big));
    for (const e of [...first, ...rest]) entries.done(e);
    assert.equal(entries.rcptInMemory, 0);
    assert.equal(transports.get('smtp').jobOf.size, 0);
  });

  test('delivery_slot_cost = 0: no preemption, the small message waits for the whole big one', () => {
    const { transports, entries, dest, big, t0 } = twoJobs({ initial_destination_concurrency: '50', smtp_destination_concurrency_limit: '50', smtp_delivery_slot_cost: '0' });
    select(transports, 6);
    entries.enqueue(activeMessage('SMALL', 1, t0 + 30_000), dest, [{ index: 0, address: 'r0@example.com' }]);
    const rest = select(transports, 100);
    assert.deepEqual(rest.map((e) => e.msg.meta.queueId), [...Array(24).fill('BIG'), 'SMALL']);
    assert.ok(big);
  });

  test('the window bounds selection; an entry put back (agent busy) is first in line again', () => {
    const { transports, entries, dest } = twoJobs({ initial_destination_concurrency: '2', smtp_destination_concurrency_limit: '2' });
    const [a, b] = select(transports, 2);
    dest.busy = 2;
    assert.equal(select(transports, 1).length, 0, 'window full: nothing selected');
    dest.busy = 1;
    entries.requeue(b!);
    transports.get('smtp').jobs.unblock();
    assert.equal(select(transports, 1)[0], b, 'the put-back entry goes first');
    assert.ok(a);
  });
});

describe('deliver.ts: an entry to its agent, and the reply', () => {
  function setup(agent: DeliverFn, mainCf: Record<string, string> = {}) {
    const log = testLog();
    let scheduled = 0;
    const back: ActiveMessage[] = [];
    const s = scheduling(config({ transport_retry_time: '60s', ...mainCf }), log, { schedule: () => scheduled++ });
    const deliveries = new Deliveries(agent, log, s, { entryBack: (msg) => back.push(msg), schedule: () => scheduled++ });
    const dest = s.destinations.get(route('example.com'));
    const msg = activeMessage('M1', 2, Date.now());
    s.entries.enqueue(msg, dest, [{ index: 0, address: 'r0@example.com' }, { index: 1, address: 'r1@example.com' }]);
    const entry = s.transports.get('smtp').selector.select(Date.now())!;
    return { ...s, log, deliveries, dest, msg, entry, back, scheduled: () => scheduled };
  }

  test('a success: the request carries the envelope, the window opens, the outcomes are the message\'s', async () => {
    const requests: DeliveryRequest[] = [];
    const agent: DeliverFn = async (transport, request) => {
      requests.push(request);
      assert.equal(transport, 'smtp');
      return { queueId: request.queueId, outcomes: request.recipients.map((r) => ({ index: r.index, status: 'sent' as const, dsn: '2.0.0', reason: '250 ok', relay: 'example.com[192.0.2.1]:25' })) };
    };
    const { deliveries, dest, msg, entry, back } = setup(agent, { initial_destination_concurrency: '1', smtp_destination_concurrency_limit: '3' });
    deliveries.dispatch(entry);
    assert.equal(dest.busy, 1);
    assert.equal(deliveries.inDelivery, 1);
    await until('the reply', () => back.length === 1);
    assert.equal(requests[0]!.nexthop, 'example.com');
    assert.equal(requests[0]!.sender, 's@example.org');
    assert.deepEqual(requests[0]!.recipients.map((r) => r.index), [0, 1]);
    assert.equal(dest.busy, 0);
    assert.equal(deliveries.inDelivery, 0);
    assert.equal(dest.fb.window, 2, 'positive feedback');
    assert.deepEqual([...msg.outcomes.keys()], [0, 1]);
    assert.deepEqual(msg.rcpt.unsaved, [0, 1], 'to be marked done in the store');
  });

  test('BUSY: the entry goes back first in line and the transport pauses; NOSERVICE: the transport goes down and the recipients are deferred', async () => {
    let answer: 'BUSY' | 'NOSERVICE' = 'BUSY';
    const agent: DeliverFn = () => Promise.reject(new ServiceError(answer, answer));
    const { deliveries, transports, dest, msg, entry, back, log, scheduled } = setup(agent);
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    deliveries.dispatch(entry);
    await until('the BUSY answer', () => dest.todo[0] === entry);
    assert.equal(transports.get('smtp').full, true);
    // getActiveResourcesInfo() counts only timers that keep the event loop alive.
    assert.equal(timers(), before, 'the pause timer is unref\'d: it does not keep the thread alive');
    assert.equal(back.length, 0, 'not finished');
    await until('the pause to end', () => !transports.get('smtp').full && scheduled() > 0, 2000);
    answer = 'NOSERVICE';
    const again = transports.get('smtp').selector.select(Date.now())!;
    assert.equal(again, entry);
    deliveries.dispatch(again);
    await until('the NOSERVICE answer', () => back.length === 1);
    assert.ok(transports.isDown('smtp'));
    assert.ok(log.lines.includes('warning: connect to transport private/smtp: not supported: no such service in master.cf'), log.lines.join('\n'));
    assert.deepEqual([...msg.outcomes.values()].map((o) => `${o.status} ${o.dsn} ${o.reason}`), ['deferred 4.3.0 mail transport unavailable', 'deferred 4.3.0 mail transport unavailable']);
    assert.ok(log.lines.some((l) => /^info: M1: to=<r0@example\.com>, relay=none, .*status=deferred \(mail transport unavailable\)$/.test(l)), log.lines.join('\n'));
  });

  test('a site failure at window 1 kills the destination (failed-cohort limit 1)', async () => {
    const agent: DeliverFn = async (_t, request): Promise<DeliveryReply> => ({
      queueId: request.queueId,
      outcomes: request.recipients.map((r) => ({ index: r.index, status: 'deferred' as const, dsn: '4.4.1', reason: 'connect to example.com[192.0.2.1]:25: Connection refused', relay: 'none' })),
      siteFailure: 'connect to example.com[192.0.2.1]:25: Connection refused',
    });
    const { deliveries, dest, entry, back } = setup(agent, { initial_destination_concurrency: '1' });
    deliveries.dispatch(entry);
    await until('the reply', () => back.length === 1);
    assert.ok(dest.dead);
    assert.equal(dest.dead.dsn, '4.4.1');
    assert.match(dest.dead.reason, /Connection refused/);
  });
});

describe('done.ts: the end of an attempt, written to a real store', () => {
  const stores: QueueStore[] = [];
  after(async () => {
    for (const s of stores) await s.close();
  });

  async function setup(extra: Record<string, string> = {}) {
    const c = config({ minimal_backoff_time: '300s', maximal_backoff_time: '4000s', ...extra });
    const store = QueueStore.open(tempDir());
    stores.push(store);
    const log = testLog();
    const events: string[] = [];
    const reporters = { notifier: new Notifier(noticeConfig(c), store, noServices, log), probes: new ProbeReports(c, noServices, log), fastFlush: new FastFlushFeed(c, noServices, log) };
    const end = new AttemptEnd(c, reporters, store, log, {
      forget: (id) => events.push(`forget ${id}`),
      strand: (id) => events.push(`strand ${id}`),
      after: () => events.push('after'),
    });
    async function active(queueId: string, n: number): Promise<ActiveMessage> {
      const msg = activeMessage(queueId, n, Date.now() - 10_000);
      await store.enqueue({ ...msg.meta, queue: 'incoming' }, Buffer.from('Subject: t\r\n\r\nbody\r\n'));
      const meta = await store.move(queueId, 'active', {}, 'incoming');
      return { ...msg, meta: meta! };
    }
    return { store, log, events, end, active };
  }

  test('every recipient sent: removed (riding a later commit), "removed" logged, then the hooks', async () => {
    const { store, log, events, end, active } = await setup();
    const msg = await active('DONE1', 2);
    for (const i of [0, 1]) msg.outcomes.set(i, { index: i, status: 'sent', dsn: '2.0.0', reason: '250 ok', relay: 'x' });
    await end.finish(msg);
    // The removal waits for the store's next commit (duplicates possible after a crash, never
    // loss), and "removed" is logged once it is on disk.
    assert.equal(store.hasLater('DONE1'), true);
    assert.ok(!log.lines.includes('info: DONE1: removed'));
    await store.commitLater();
    assert.equal(store.hasLater('DONE1'), false);
    assert.equal(store.get('DONE1'), undefined);
    assert.ok(log.lines.includes('info: DONE1: removed'));
    assert.deepEqual(events, ['forget DONE1', 'after']);
    assert.equal(end.finishing, 0);
    assert.equal(msg.finishing, true);
  });

  test('one recipient deferred (riding a later commit): to the deferred queue with nextAttempt after minimal_backoff_time (+ at most 10 % jitter), the sent one done, a defer log', async () => {
    const { store, events, end, active } = await setup();
    const msg = await active('DEF1', 2);
    msg.outcomes.set(0, { index: 0, status: 'sent', dsn: '2.0.0', reason: '250 ok', relay: 'x' });
    msg.outcomes.set(1, { index: 1, status: 'deferred', dsn: '4.4.1', reason: 'connect refused', relay: 'none' });
    const before = Date.now();
    await end.finish(msg);
    const afterAt = Date.now();
    assert.equal(store.get('DEF1')!.queue, 'active', 'the deferral rides a later commit');
    await store.commitLater();
    const meta = store.get('DEF1')!;
    assert.equal(meta.queue, 'deferred');
    assert.equal(meta.attempts, 1);
    assert.ok(meta.nextAttempt >= before + 300_000 && meta.nextAttempt <= afterAt + 330_000, `nextAttempt ${meta.nextAttempt - before} ms ahead`);
    assert.equal(meta.recipients[0]!.done, true);
    assert.equal(meta.recipients[1]!.done, false);
    assert.equal(meta.recipients[1]!.reason, 'connect refused');
    assert.deepEqual(store.logs('DEF1', 'defer').map((r) => `${r.address} ${r.action} ${r.dsn}`), ['r1@example.com delayed 4.4.1']);
    assert.deepEqual(events, ['forget DEF1', 'after']);
  });

  test('postsuper -e: every pending recipient expired, returned to the sender (a failed notice keeps the bounce log for the next attempt)', async () => {
    const { store, log, end, active } = await setup();
    const msg = await active('EXP1', 1);
    msg.meta = { ...msg.meta, forcedExpire: true };
    end.forceExpire(msg, [{ index: 0, address: 'r0@example.com' }]);
    await until('the end', () => end.finishing === 0 && store.get('EXP1')?.queue === 'deferred');
    assert.ok(log.lines.includes('info: EXP1: from=<s@example.org>, status=expired, returned to sender'), log.lines.join('\n'));
    assert.ok(log.lines.some((l) => /^warning: EXP1: sender non-delivery notification failed: /.test(l)), log.lines.join('\n'));
    assert.deepEqual(store.logs('EXP1', 'bounce').map((r) => `${r.address} ${r.action} ${r.dsn}`), ['r0@example.com failed 4.7.0']);
  });

  test('soft_bounce: a SOFTBOUNCEd recipient is deferred with a "delayed" defer record; a bounce log left from before is kept, no notice tried', async () => {
    const { store, log, end, active } = await setup({ soft_bounce: 'yes' });
    const msg = await active('SOFT1', 2);
    await store.update('SOFT1', {}, { append: { bounce: [{ index: 1, address: 'r1@example.com', dsn: '5.1.1', action: 'failed', reason: 'old bounce', relay: 'none', time: Date.now() }] } });
    msg.outcomes.set(0, { index: 0, status: 'deferred', dsn: '4.1.1', reason: 'unknown user', relay: 'local', softBounce: true });
    msg.outcomes.set(1, { index: 1, status: 'sent', dsn: '2.0.0', reason: '250 ok', relay: 'x' });
    await end.finish(msg);
    await until('the end', () => end.finishing === 0 && store.get('SOFT1')?.queue === 'deferred');
    assert.deepEqual(store.logs('SOFT1', 'defer').map((r) => `${r.address} ${r.action} ${r.dsn} ${r.reason}`), ['r0@example.com delayed 4.1.1 unknown user']);
    assert.deepEqual(store.logs('SOFT1', 'bounce').map((r) => r.reason), ['old bounce'], 'the bounce log stays');
    assert.ok(!log.lines.some((l) => l.includes('non-delivery notification')), log.lines.join('\n'));
  });

  test('soft_bounce: postsuper -e still returns the message to the sender (Postfix\'s defer_flush is not covered by it)', async () => {
    const { store, log, end, active } = await setup({ soft_bounce: 'yes' });
    const msg = await active('SOFTEXP', 1);
    msg.meta = { ...msg.meta, forcedExpire: true };
    end.forceExpire(msg, [{ index: 0, address: 'r0@example.com' }]);
    await until('the end', () => end.finishing === 0 && store.get('SOFTEXP')?.queue === 'deferred');
    assert.ok(log.lines.includes('info: SOFTEXP: from=<s@example.org>, status=expired, returned to sender'), log.lines.join('\n'));
    assert.ok(log.lines.some((l) => /^warning: SOFTEXP: sender non-delivery notification failed: /.test(l)), log.lines.join('\n'));
  });
});

/** qmgr's services for a QueueManager test: rewrite busy (qmgr resolves by itself), smtp answered by `deliver`. */
function smtpOnly(deliver: (request: DeliveryRequest) => DeliveryReply): Actor {
  return {
    ...noServices,
    request: (to: string, body: unknown) => {
      if (to === 'rewrite') return Promise.reject(new ServiceError('BUSY', 'busy'));
      if (to !== 'smtp') return Promise.reject(new ServiceError('NOSERVICE', to));
      return Promise.resolve(deliver(body as DeliveryRequest));
    },
  } as unknown as Actor;
}

/** Every recipient of the request delivered by the next hop. */
const allSent = (request: DeliveryRequest): DeliveryReply => ({ queueId: request.queueId, outcomes: request.recipients.map((r) => ({ index: r.index, status: 'sent', dsn: '2.0.0', reason: '250 ok', relay: 'example.com[192.0.2.1]:25' })) });

describe('active.ts + message.ts (through QueueManager): a message read in slices', () => {
  test('a message whose content fails its checksum: the agent finds it as it reads it, nothing goes out, qmgr saves it to corrupt', async () => {
    const store = QueueStore.open(tempDir());
    const log = testLog();
    const sent: string[] = [];
    // The agent reads the content as every delivery agent does (src/delivery/content.ts).
    const actor = smtpOnly((request) => {
      const read = agentContent(store, request);
      if ('damaged' in read) return corruptReply(request, read.damaged);
      assert.ok('content' in read);
      sent.push(`${request.queueId} ${read.content.toString('latin1')}`);
      return allSent(request);
    });
    const manager = new QueueManager(config(), store, actor, log);
    try {
      const content = Buffer.from('Subject: t\r\n\r\nbody\r\n');
      const meta = (queueId: string, checksum: number): MessageMeta => ({ queueId, queue: 'incoming', arrival: Date.now(), sender: 's@example.org', recipients: [{ address: 'r@example.com', done: false }, { address: 'q@example.net', done: false }], size: content.length, nextAttempt: 0, attempts: 0, checksum });
      await store.restore([{ meta: meta('DAMAGED', 1), content }, { meta: meta('INTACT', contentChecksum(content)), content }]);
      manager.queued('DAMAGED');
      manager.queued('INTACT');
      // The warning is logged once the move's commit is reported back, a moment after it is seen.
      await until('the move to corrupt', () => store.get('DAMAGED')?.queue === 'corrupt' && log.lines.some((l) => l.includes('saving corrupt file')));
      await until('the intact message delivered', () => store.get('INTACT') === undefined);
      const warnings = log.lines.filter((l) => l.startsWith('warning:'));
      assert.deepEqual(warnings, ['warning: DAMAGED: message content does not match its checksum', 'warning: saving corrupt file "DAMAGED" from queue "active" to queue "corrupt"']);
      assert.ok(!log.lines.some((l) => /DAMAGED: to=/.test(l)), 'no delivery logged for the damaged message');
      assert.deepEqual(sent, ['INTACT Subject: t\r\n\r\nbody\r\n', 'INTACT Subject: t\r\n\r\nbody\r\n']);
      assert.equal(store.get('DAMAGED')!.recipients.every((r) => !r.done), true, 'nothing recorded as delivered');
      await manager.idle(2000);
      assert.equal(manager.status().active, 0);
    } finally {
      manager.pause();
      await store.close();
    }
  });

  test('a message queued while qmgr starts (smtpd runs beside it) is taken by the start-up scan, or the one after it, and delivered once', async () => {
    const store = QueueStore.open(tempDir());
    const log = testLog();
    const sent: string[] = [];
    const actor = smtpOnly((request) => {
      sent.push(request.queueId);
      return allSent(request);
    });
    const manager = new QueueManager(config(), store, actor, log);
    const content = Buffer.from('Subject: t\r\n\r\nbody\r\n');
    const meta = (queueId: string, queue: 'incoming' | 'active'): MessageMeta => ({ queueId, queue, arrival: Date.now(), sender: 's@example.org', recipients: [{ address: 'r@example.com', done: false }], size: content.length, nextAttempt: 0, attempts: 0, checksum: contentChecksum(content) });
    try {
      // A message left active by a crash (recovered to incoming at start), one in incoming.
      await store.restore([{ meta: meta('CRASHED', 'active'), content }, { meta: meta('WAITING', 'incoming'), content }]);
      const started = manager.start();
      // cleanup's notices while start() recovers and scans: one for a message already there, one
      // for a message committed after start() began (its scan may or may not list it).
      manager.queued('WAITING');
      await store.restore([{ meta: meta('NEW', 'incoming'), content }]);
      manager.queued('NEW');
      await started;
      await until('all three delivered and removed', () => ['CRASHED', 'WAITING', 'NEW'].every((id) => store.get(id) === undefined));
      assert.deepEqual([...sent].sort(), ['CRASHED', 'NEW', 'WAITING'], 'each delivered once');
      for (const id of ['CRASHED', 'WAITING', 'NEW']) assert.equal(log.lines.filter((l) => l.startsWith(`info: ${id}: from=`)).length, 1, log.lines.join('\n'));
      assert.ok(log.lines.includes('info: recovered 1 message(s) from the active queue'), log.lines.join('\n'));
    } finally {
      manager.pause();
      await manager.idle(2000);
      await store.close();
    }
  });

  test('a message whose content is missing (its envelope is there) is set aside as well; one deleted meanwhile is only "vanished"', async () => {
    const dir = tempDir();
    const store = QueueStore.open(dir);
    try {
      const content = Buffer.from('Subject: t\r\n\r\nbody\r\n');
      const meta: MessageMeta = { queueId: 'NOBODY', queue: 'active', arrival: Date.now(), sender: '', recipients: [{ address: 'r@example.com', done: false }], size: content.length, nextAttempt: 0, attempts: 0, checksum: contentChecksum(content) };
      await store.restore([{ meta, content }]);
      const request = { queueId: 'NOBODY', checksum: meta.checksum } as DeliveryRequest;
      assert.ok('content' in agentContent(store, request));
      // Only the content gone: LMDB's own API, as a damaged store could leave it.
      const raw = open({ path: join(dir, STORE_FILE), maxDbs: 16 });
      await raw.openDB('content', { encoding: 'binary' }).remove('NOBODY');
      await raw.close();
      // The store's read snapshot may predate that other writer's commit for an event turn or two.
      const deadline = Date.now() + 20_000;
      while ('content' in agentContent(store, request) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(agentContent(store, request), { damaged: 'missing' });
      await store.remove('NOBODY');
      assert.deepEqual(agentContent(store, request), { vanished: true });
    } finally {
      await store.close();
    }
  });

  test('qmgr_message_recipient_limit = 4: 10 recipients enter memory 4 at a time, each is delivered once, then the message is removed', async () => {
    const store = QueueStore.open(tempDir());
    const log = testLog();
    const held: { request: DeliveryRequest; release: () => void }[] = [];
    const delivered: number[] = [];
    const actor = {
      data: {},
      request: (to: string, body: unknown) => {
        // The rewrite pool is busy: qmgr resolves in-process (./resolve.ts).
        if (to === 'rewrite') return Promise.reject(new ServiceError('BUSY', 'busy'));
        if (to !== 'smtp') return Promise.reject(new ServiceError('NOSERVICE', to));
        const request = body as DeliveryRequest;
        return new Promise<DeliveryReply>((resolve) => {
          held.push({
            request,
            release: () => {
              delivered.push(...request.recipients.map((r) => r.index));
              resolve({ queueId: request.queueId, outcomes: request.recipients.map((r) => ({ index: r.index, status: 'sent', dsn: '2.0.0', reason: '250 ok', relay: 'example.com[192.0.2.1]:25' })) });
            },
          });
        });
      },
      send: () => undefined,
      inFlight: () => 0,
    } as unknown as Actor;
    const c = config({ qmgr_message_recipient_limit: '4', qmgr_message_recipient_minimum: '1', smtp_destination_recipient_limit: '2', initial_destination_concurrency: '10', default_recipient_refill_limit: '4' });
    const manager = new QueueManager(c, store, actor, log);
    try {
      const recipients = Array.from({ length: 10 }, (_, i) => ({ address: `r${i}@example.com`, done: false }));
      await store.enqueue({ queueId: 'SLICED', queue: 'incoming', arrival: Date.now(), sender: 's@example.org', recipients, size: 10, nextAttempt: 0, attempts: 0 }, Buffer.from('Subject: t\r\n\r\nbody\r\n'));
      manager.queued('SLICED');
      await until('the first slice', () => held.length === 2);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(held.length, 2, 'no more than the first slice (4 recipients, 2 per delivery) in memory');
      assert.ok(log.lines.includes('info: SLICED: from=<s@example.org>, size=10, nrcpt=10 (queue active)'), log.lines.join('\n'));
      assert.deepEqual(manager.status(), { active: 1, inDelivery: 2, destinations: 1 });
      for (let round = 0; round < 20 && delivered.length < 10; round++) {
        const now = held.splice(0);
        assert.ok(now.reduce((n, h) => n + h.request.recipients.length, 0) <= 4, 'at most qmgr_message_recipient_limit recipients in memory');
        for (const h of now) h.release();
        await until('the next slice or the end', () => held.length > 0 || delivered.length === 10 || store.get('SLICED') === undefined);
      }
      // "removed" is logged once the removal's commit is reported back, which can be a moment
      // after another reader already sees the message gone: wait for the log line, then check.
      await until('the removal', () => log.lines.includes('info: SLICED: removed'));
      assert.equal(store.get('SLICED'), undefined);
      assert.deepEqual(delivered.slice().sort((a, b) => a - b), [...Array(10).keys()], 'each recipient delivered once');
      await manager.idle(2000);
      assert.deepEqual(manager.status(), { active: 0, inDelivery: 0, destinations: 1 });
    } finally {
      manager.pause();
      await store.close();
    }
  });
});

describe('probes.ts: a probe\'s outcome goes to the verify service, then its status line is logged', () => {
  /** Records each verify update in the order of the log lines; `fail` makes the service fail. */
  function recordingVerify(log: TestLog, fail = false): Actor {
    return {
      data: {},
      request: (service: string, body: { op: string; address: string; status: string }) => {
        log.lines.push(`update ${service} ${body.address} ${body.status}`);
        return fail ? Promise.reject(new ServiceError('NOSERVICE', 'down')) : Promise.resolve({ op: 'update' });
      },
      send: () => undefined,
      inFlight: () => 0,
    } as unknown as Actor;
  }

  function probe(): ActiveMessage {
    const msg = activeMessage('PROBE1', 1, Date.now());
    msg.meta.trace = 'probe';
    msg.meta.recipients[0]!.orcpt = 'rfc822;alias@example.com';
    return msg;
  }

  const delays = { delay: '0.1', delays: '0/0/0/0.1' };

  test('deliverable: the update for the probed address and the address delivered to, then status=deliverable', async () => {
    const log = testLog();
    const msg = probe();
    const o = { index: 0, status: 'sent' as const, dsn: '2.1.5', reason: '250 2.1.5 Ok', relay: 'mx[127.0.0.1]:25' };
    logOutcome(log, msg, { address: 'r0@example.com', original: 'alias@example.com' }, o, delays);
    assert.deepEqual(log.lines, [], 'held until the verify service has the outcome');
    await new ProbeReports(config(), recordingVerify(log), log).report(msg.meta, [o], msg.probeLines);
    assert.deepEqual(log.lines, [
      'update verify alias@example.com ok',
      'update verify r0@example.com ok',
      'info: PROBE1: to=<r0@example.com>, orig_to=<alias@example.com>, relay=mx[127.0.0.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.1.5, status=deliverable (250 2.1.5 Ok)',
    ]);
  });

  test('a bounce: status=undeliverable after the update; with address_verify_negative_cache = no, no update and status=undeliverable-but-not-cached', async () => {
    const o = { index: 0, status: 'bounced' as const, dsn: '5.1.1', reason: 'host mx said: 550 5.1.1 unknown', relay: 'mx[127.0.0.1]:25' };
    for (const [negative, want] of [['yes', ['update verify alias@example.com bounce', 'update verify r0@example.com bounce', 'status=undeliverable (']], ['no', ['status=undeliverable-but-not-cached (']]] as const) {
      const log = testLog();
      const msg = probe();
      logOutcome(log, msg, { address: 'r0@example.com', original: 'alias@example.com' }, o, delays);
      await new ProbeReports(config({ address_verify_negative_cache: negative }), recordingVerify(log), log).report(msg.meta, [o], msg.probeLines);
      assert.equal(log.lines.length, want.length, log.lines.join('\n'));
      want.forEach((w, i) => assert.ok(log.lines[i]!.includes(w), `${negative}: ${log.lines[i]} has ${w}`));
    }
  });

  test('a verify service failure: "ID: verify service failure" and no status line (verify_append)', async () => {
    const log = testLog();
    const msg = probe();
    const o = { index: 0, status: 'sent' as const, dsn: '2.0.0', reason: '250 Ok', relay: 'mx[127.0.0.1]:25' };
    logOutcome(log, msg, { address: 'r0@example.com' }, o, delays);
    await new ProbeReports(config(), recordingVerify(log, true), log).report(msg.meta, [o], msg.probeLines);
    assert.deepEqual(log.lines, ['update verify alias@example.com ok', 'warning: PROBE1: verify service failure']);
  });
});
