/**
 * The verify service's parts without the server: the query/update rules of Postfix's verify.c
 * over a real LMDB queue store in a temp dir (expiry, refresh, outstanding probes, negative
 * caching off, a failure not clobbering a deliverable address), the cache cleanup, the probe
 * sender with address_verify_sender_ttl (verify_sender_addr.c), the address_verify_* routing of
 * probes in trivial-rewrite, and what `postactor check` says about verify's settings.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildConfig } from '../src/config/load.js';
import type { Config } from '../src/config/index.js';
import { QueueStore } from '../src/queue/store.js';
import { VerifyCache, verifyMapProblem } from '../src/verify/cache.js';
import { IN_PROGRESS, PROBE_TTL, VerifyService } from '../actors/verify/service.js';
import { VerifySender } from '../src/verify/sender.js';
import { TrivialRewrite } from '../src/rewrite/settings.js';
import { checkConfig } from '../actors/master/index.js';
import type { ResolveReply } from '../actors/protocol.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-verify-');

function config(dir: string, extra: Record<string, string> = {}, master = ''): Config {
  const all: Record<string, string> = { myhostname: 'mx.us.test', queue_directory: `${dir}/spool`, data_directory: `${dir}/lib`, ...extra };
  return buildConfig(dir, Object.entries(all).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n', master);
}

const S = 1000;
const TIMES = { positiveExpire: 100 * S, positiveRefresh: 50 * S, negativeExpire: 30 * S, negativeRefresh: 10 * S, negativeCache: true };

function service(t: { after: (fn: () => void | Promise<void>) => void }, times = TIMES, extra: Record<string, string> = {}) {
  const dir = tempDir();
  const store = QueueStore.open(`${dir}/spool`);
  t.after(() => store.close());
  const probes: string[] = [];
  const cache = new VerifyCache(config(dir, extra), store);
  return { svc: new VerifyService(cache, times, (a) => probes.push(a)), probes, store, cache };
}

test('unknown address: "in progress" and one probe; a second query while it is out sends none; the outcome answers the next query', async (t) => {
  const { svc, probes, store } = service(t);
  const t0 = 1_000_000_000_000;
  assert.deepEqual(svc.query('a@x.test', t0), { status: 'todo', text: IN_PROGRESS });
  assert.deepEqual(svc.query('a@x.test', t0 + S), { status: 'todo', text: IN_PROGRESS });
  assert.deepEqual(probes, ['a@x.test']);
  await svc.update('a@x.test', 'bounce', 'host h[1.2.3.4] said: 550 5.1.1 no such user (in reply to RCPT TO command)', t0 + 2 * S);
  assert.deepEqual(svc.query('a@x.test', t0 + 3 * S), { status: 'bounce', text: 'host h[1.2.3.4] said: 550 5.1.1 no such user (in reply to RCPT TO command)' });
  assert.equal(probes.length, 1);
  // In the store (LMDB), as Postfix's status:probed:updated:text.
  assert.deepEqual(store.verifyEntry('a@x.test'), { status: 'bounce', probed: 0, updated: t0 + 2 * S, text: 'host h[1.2.3.4] said: 550 5.1.1 no such user (in reply to RCPT TO command)' });
});

test('refresh: the cached verdict is still given while a refresh probe goes out; expiry: "in progress" again', async (t) => {
  const { svc, probes } = service(t);
  const t0 = 1_000_000_000_000;
  svc.query('b@x.test', t0);
  await svc.update('b@x.test', 'bounce', 'gone', t0);
  // After the negative refresh time: the old verdict, and a new probe.
  assert.equal(svc.query('b@x.test', t0 + 11 * S).status, 'bounce');
  assert.equal(probes.length, 2);
  await svc.update('b@x.test', 'bounce', 'gone', t0 + 12 * S);
  // Past the negative expire time with no probe outstanding: unknown again, probed again.
  assert.deepEqual(svc.query('b@x.test', t0 + 12 * S + 31 * S), { status: 'todo', text: IN_PROGRESS });
  assert.equal(probes.length, 3);
  // Positive entries use their own times.
  svc.query('c@x.test', t0);
  await svc.update('c@x.test', 'ok', '250 2.1.5 Ok', t0);
  assert.equal(svc.query('c@x.test', t0 + 40 * S).status, 'ok');
  assert.equal(probes.length, 4, 'no refresh before address_verify_positive_refresh_time');
  assert.equal(svc.query('c@x.test', t0 + 51 * S).status, 'ok');
  assert.equal(probes.length, 5);
});

test('an expired entry with a probe outstanding (less than PROBE_TTL) is still answered from the cache', async (t) => {
  const { svc, probes } = service(t);
  const t0 = 1_000_000_000_000;
  svc.query('d@x.test', t0);
  await svc.update('d@x.test', 'ok', '250 Ok', t0);
  svc.query('d@x.test', t0 + 60 * S); // refresh probe out at t0+60s
  assert.equal(probes.length, 2);
  assert.equal(svc.query('d@x.test', t0 + 101 * S).status, 'ok', 'expired, but a probe is out');
  assert.equal(svc.query('d@x.test', t0 + 60 * S + PROBE_TTL + S).status, 'todo', 'the probe is taken as lost');
});

test('a failed probe does not overwrite a deliverable address', async (t) => {
  const { svc } = service(t);
  const t0 = 1_000_000_000_000;
  svc.query('e@x.test', t0);
  await svc.update('e@x.test', 'ok', '250 Ok', t0);
  await svc.update('e@x.test', 'defer', 'connect to h: Connection refused', t0 + S);
  assert.deepEqual(svc.query('e@x.test', t0 + 2 * S), { status: 'ok', text: '250 Ok' });
});

test('address_verify_negative_cache = no: nothing is stored for an unknown address, and an expired entry is deleted', async (t) => {
  const { svc, probes, store } = service(t, { ...TIMES, negativeCache: false });
  const t0 = 1_000_000_000_000;
  svc.query('f@x.test', t0);
  svc.query('f@x.test', t0 + S);
  assert.equal(probes.length, 2, 'without an entry every query probes');
  assert.equal(store.verifyEntry('f@x.test'), undefined);
  await svc.update('f@x.test', 'ok', '250 Ok', t0 + 2 * S);
  assert.equal(store.verifyEntry('f@x.test')?.status, 'ok');
  assert.deepEqual(svc.query('f@x.test', t0 + 103 * S), { status: 'todo', text: IN_PROGRESS });
  await store.flushed();
  assert.equal(store.verifyEntry('f@x.test'), undefined, 'the expired entry is deleted, not kept as "in progress"');
  assert.equal(probes.length, 3);
});

test('address_verify_map empty: the cache is in memory; the cleanup run drops expired entries only', async (t) => {
  const { svc, cache, store } = service(t, TIMES, { address_verify_map: '' });
  assert.equal(cache.volatile, true);
  const t0 = Date.now() - 200 * S;
  svc.query('g@x.test', t0);
  await svc.update('g@x.test', 'bounce', 'old', t0);
  svc.query('h@x.test', Date.now());
  await svc.update('h@x.test', 'ok', 'fresh', Date.now());
  assert.equal(store.verifyEntry('h@x.test'), undefined, 'not in the store');
  const now = Date.now();
  assert.deepEqual(await cache.cleanup((e) => svc.keep(e, now)), { retained: 1, dropped: 1 });
  assert.equal(cache.get('g@x.test'), undefined);
  assert.equal(cache.get('h@x.test')?.text, 'fresh');
});

test('address_verify_map: the default and its data_directory file map to the store; another table is refused by check', (t) => {
  const dir = tempDir();
  assert.equal(verifyMapProblem(config(dir)), null);
  assert.equal(verifyMapProblem(config(dir, { address_verify_map: `lmdb:${dir}/lib/verify_cache` })), null);
  assert.equal(verifyMapProblem(config(dir, { address_verify_map: '' })), null);
  assert.match(verifyMapProblem(config(dir, { address_verify_map: 'btree:/tmp/elsewhere' }))!, /^address_verify_map = btree:\/tmp\/elsewhere: not supported by Postactor/);
  const master = '127.0.0.1:2525 inet n - n - 1 smtpd\ncleanup unix n - n - 1 cleanup\nqmgr unix n - n 300 1 qmgr\nverify unix - - n - 1 verify\n';
  const problems = checkConfig(config(dir, { address_verify_map: 'proxy:btree:/tmp/shared' }, master));
  assert.ok(problems.some((p) => /main\.cf: address_verify_map = proxy:btree:\/tmp\/shared: not supported by Postactor/.test(p)), problems.join('\n'));
  void t;
});

test('reject_unverified_recipient needs a verify service in master.cf', () => {
  const dir = tempDir();
  const master = '127.0.0.1:2525 inet n - n - 1 smtpd\ncleanup unix n - n - 1 cleanup\nqmgr unix n - n 300 1 qmgr\n';
  const problems = checkConfig(config(dir, { smtpd_recipient_restrictions: 'reject_unauth_destination, reject_unverified_recipient' }, master));
  assert.ok(problems.some((p) => p.includes('smtpd_recipient_restrictions: reject_unverified_recipient: master.cf has no "verify" service')), problems.join('\n'));
  const ok = checkConfig(config(dir, { smtpd_recipient_restrictions: 'reject_unauth_destination, reject_unverified_recipient' }, master + 'verify unix - - n - 1 verify\n'));
  assert.deepEqual(ok.filter((p) => p.includes('verify')), []);
});

test('probe sender: double-bounce@$myorigin; with address_verify_sender_ttl a base-31 stamp, accepted within one slot', () => {
  const dir = tempDir();
  assert.equal(new VerifySender(config(dir)).make(), 'double-bounce@mx.us.test');
  assert.equal(new VerifySender(config(dir, { address_verify_sender: '<>' })).make(), '');
  const s = new VerifySender(config(dir, { address_verify_sender: 'probe', address_verify_sender_ttl: '1h' }));
  const now = 40 * 3600 * 1000; // slot 40 = "19" in base 31
  assert.equal(s.make(now), 'probe19@mx.us.test');
  assert.equal(s.valid('probe19@mx.us.test', now), 'probe@mx.us.test');
  assert.equal(s.valid('PROBE1B@mx.us.test', now), 'probe@mx.us.test', 'the next slot, localpart case-insensitive');
  assert.equal(s.valid('probe17@mx.us.test', now), null, 'two slots old');
  assert.equal(s.valid('probe19@other.test', now), null);
  assert.equal(new VerifySender(config(dir)).valid('double-bounce@mx.us.test'), 'double-bounce@mx.us.test');
  assert.equal(new VerifySender(config(dir)).valid('double-bounce-x@mx.us.test'), null);
  assert.throws(() => new VerifySender(config(dir, { address_verify_sender: '@x' })), /must not start with '@'/);
});

test('probes are resolved with address_verify_relayhost and address_verify_transport_maps; mail is not', async () => {
  const dir = tempDir();
  const rw = new TrivialRewrite(config(dir, { relayhost: '[10.0.0.1]', address_verify_relayhost: '[10.0.0.2]:2526', address_verify_default_transport: 'relay' }));
  const mail = await (rw.handle({ op: 'resolve', sender: 's@x.test', address: 'u@example.com' }) as Promise<ResolveReply>);
  const probe = await (rw.handle({ op: 'resolve', sender: '', address: 'u@example.com', verify: true }) as Promise<ResolveReply>);
  assert.deepEqual([mail.transport, mail.nexthop], ['smtp', '[10.0.0.1]']);
  assert.deepEqual([probe.transport, probe.nexthop], ['relay', '[10.0.0.2]:2526']);
  // Without overrides the probe goes the way mail goes.
  const same = new TrivialRewrite(config(dir, { relayhost: '[10.0.0.1]' }));
  const p2 = await (same.handle({ op: 'resolve', sender: '', address: 'u@example.com', verify: true }) as Promise<ResolveReply>);
  assert.equal(p2.nexthop, '[10.0.0.1]');
});
