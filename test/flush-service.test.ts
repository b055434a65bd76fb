/**
 * The flush service's requests (actors/flush/service.ts) on a real queue store in a temp
 * directory: add only for fast_flush_domains, send_site moves the listed deferred messages to
 * incoming (not those in hold or active) and empties the log, refresh sends logs unread for
 * fast_flush_refresh_time and deletes empty ones older than fast_flush_purge_time, and the
 * site names a log may carry. qmgr's side is a recorder of what the service tells it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DomainList } from '../src/address/domain.js';
import { maillog } from '../src/log/maillog.js';
import { newQueueId } from '../src/queue/qid.js';
import { QueueStore } from '../src/queue/store.js';
import type { QueueName } from '../src/queue/types.js';
import { FlushService } from '../actors/flush/service.js';
import { siteKey } from '../actors/flush/site.js';
import { etrnSyntax, validDestination } from '../src/flush/destination.js';
import { tempDirs } from './helpers/temp.js';
import { loadConfig } from '../src/config/index.js';
import { checkConfig } from '../actors/master/index.js';

const tempDir = tempDirs('postactor-flush-');
const HOUR = 3_600_000;

async function put(store: QueueStore, queue: QueueName, rcpt: string): Promise<string> {
  const queueId = newQueueId();
  await store.enqueue({
    queueId, queue, arrival: Date.now(), sender: 's@example.org', size: 10,
    recipients: [{ address: rcpt, done: false }], nextAttempt: queue === 'deferred' ? Date.now() + HOUR : 0, attempts: 1,
  }, Buffer.from('Subject: x\r\n\r\nx\r\n'));
  return queueId;
}

function setup() {
  const store = QueueStore.open(tempDir());
  const told: string[] = [];
  const service = new FlushService(store, new DomainList(['example.com'], true), { refreshTime: 12 * HOUR, purgeTime: 7 * 24 * HOUR }, {
    forgetDead: () => told.push('F'),
    queued: (id) => told.push(`queued ${id}`),
  }, maillog('flush'));
  return { store, told, service };
}

test('add: only destinations fast_flush_domains lists (subdomains too, as parent_domain_matches_subdomains has it)', async () => {
  const { store, service } = setup();
  assert.equal(await service.add('example.com', 'ABC123'), 'ok');
  assert.equal(await service.add('Sub.Example.COM', 'ABC124'), 'ok');
  assert.equal(await service.add('other.test', 'ABC125'), 'deny');
  assert.equal(await service.add('example.com', 'not/an/id'), 'bad');
  assert.deepEqual([...store.flushLogs()].map((l) => [l.site, l.size]), [['example.com', 1], ['sub.example.com', 1]]);
  await store.close();
});

test('send_site: deferred messages of the log move to incoming, others stay, the log is emptied, qmgr told', async () => {
  const { store, told, service } = setup();
  const deferred = await put(store, 'deferred', 'a@example.com');
  const held = await put(store, 'hold', 'b@example.com');
  const elsewhere = await put(store, 'deferred', 'c@other.test');
  for (const id of [deferred, held, deferred]) await service.add('example.com', id);
  assert.equal([...store.flushLogs()][0]!.size, 2, 'a queue ID is in a log once');
  assert.equal(await service.sendSite('example.com'), 'ok');
  assert.equal(store.get(deferred)?.queue, 'incoming');
  assert.equal(store.get(deferred)?.nextAttempt, 0);
  assert.equal(store.get(held)?.queue, 'hold');
  assert.equal(store.get(elsewhere)?.queue, 'deferred');
  assert.deepEqual(told, ['F', `queued ${deferred}`]);
  assert.equal([...store.flushLogs()][0]!.size, 0);
  assert.deepEqual([...store.dueDeferred(Infinity)], [elsewhere], 'the due index no longer has the moved message');
  // A destination without a log has nothing queued; one not listed is denied.
  assert.equal(await service.sendSite('sub.example.com'), 'ok');
  assert.equal(await service.sendSite('other.test'), 'deny');
  await store.close();
});

test('refresh: stale non-empty logs are sent, old empty ones deleted; purge sends every log', async () => {
  const { store, told, service } = setup();
  const now = Date.now();
  const stale = await put(store, 'deferred', 'a@example.com');
  await store.flushAppend('example.com', stale, now - 13 * HOUR);
  const fresh = await put(store, 'deferred', 'a@fresh.example.com');
  await store.flushAppend('fresh.example.com', fresh, now);
  await store.flushAppend('empty.example.com', 'X1', now - 8 * 24 * HOUR);
  await store.flushSend('empty.example.com', now - 8 * 24 * HOUR);
  await store.flushAppend('recent-empty.example.com', 'X2', now - HOUR);
  await store.flushSend('recent-empty.example.com', now - HOUR);
  await service.refresh(12 * HOUR, now);
  assert.equal(store.get(stale)?.queue, 'incoming');
  assert.equal(store.get(fresh)?.queue, 'deferred');
  assert.deepEqual([...store.flushLogs()].map((l) => l.site).sort(), ['example.com', 'fresh.example.com', 'recent-empty.example.com']);
  assert.deepEqual(told, [`queued ${stale}`], 'a refresh does not make qmgr forget dead destinations');
  await service.refresh(0, now);
  assert.equal(store.get(fresh)?.queue, 'incoming');
  await store.close();
});

test('site names: IDNA to ASCII, lower case, literals kept; too long or empty is bad', () => {
  assert.deepEqual(siteKey('Example.COM'), { key: 'example.com' });
  assert.deepEqual(siteKey('bücher.example'), { key: 'xn--bcher-kva.example' });
  assert.deepEqual(siteKey('[IPv6:::1]'), { key: '[ipv6:::1]' });
  assert.deepEqual(siteKey(''), { problem: 'bad' });
  assert.deepEqual(siteKey('a'.repeat(256)), { problem: 'bad' });
});

test('destinations a request may name, and ETRN\'s checks in Postfix\'s order', () => {
  for (const ok of ['example.com', 'a_b.example', '[192.0.2.1]', '[IPv6:2001:db8::1]']) assert.ok(validDestination(ok), ok);
  for (const bad of ['', 'bad..name', '-x.example', '1.2.3.4', '[::1]', '[300.1.2.3]', 'a b']) assert.ok(!validDestination(bad), bad);
  assert.deepEqual(etrnSyntax(['example.com'], true, true), { code: 503, text: 'Error: send HELO/EHLO first' });
  assert.deepEqual(etrnSyntax([], true, false), { code: 503, text: 'Error: MAIL transaction in progress' });
  assert.deepEqual(etrnSyntax([], false, false), { code: 500, text: 'Syntax: ETRN domain' });
  assert.deepEqual(etrnSyntax(['@example.com'], false, false), { domain: 'example.com' });
  assert.deepEqual(etrnSyntax(['#[192.0.2.1]'], false, false), { domain: '[192.0.2.1]' });
  assert.deepEqual(etrnSyntax(['@@example.com'], false, false), { code: 501, text: 'Error: invalid parameter syntax' });
});

test('postactor check: a fast_flush_domains file that cannot be read stops start-up, named', () => {
  const dir = tempDir({
    'main.cf': 'fast_flush_domains = /nonexistent/flush-domains\n',
    'master.cf': 'cleanup unix n - n - 0 cleanup\nqmgr unix n - n 300 1 qmgr\nflush unix n - n 1000? 0 flush\n',
  });
  const problems = checkConfig(loadConfig(dir));
  assert.ok(problems.some((p) => p.startsWith(`${dir}/main.cf: fast_flush_domains: /nonexistent/flush-domains: `)), problems.join('\n'));
});
