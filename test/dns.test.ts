import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { NextHopResolver, parseNexthop, resolverServersFromEnv } from '../src/dns/resolver.js';
import { startDnsServer, type TestDnsServer } from './helpers/dns-server.js';

let dns: TestDnsServer;

before(async () => {
  dns = await startDnsServer({
    'example.test': { MX: [{ exchange: 'mx2.example.test', priority: 20 }, { exchange: 'mx1.example.test', priority: 10 }, { exchange: 'noaddr.example.test', priority: 5 }] },
    'mx1.example.test': { A: ['127.0.0.11'], AAAA: ['::1'] },
    'mx2.example.test': { A: ['127.0.0.12', '127.0.0.13'] },
    'noaddr.example.test': {},
    'tie.test': { MX: [{ exchange: 'a.tie.test', priority: 10 }, { exchange: 'b.tie.test', priority: 10 }, { exchange: 'c.tie.test', priority: 10 }, { exchange: 'z.tie.test', priority: 99 }] },
    'a.tie.test': { A: ['127.0.1.1'] }, 'b.tie.test': { A: ['127.0.1.2'] }, 'c.tie.test': { A: ['127.0.1.3'] }, 'z.tie.test': { A: ['127.0.1.9'] },
    'nomx.test': { A: ['127.0.0.21'] },
    'relay.test': { MX: [{ exchange: 'mx1.example.test', priority: 10 }], A: ['127.0.0.31'] },
    'broken.test': { servfail: true },
    'nullmx.test': { MX: [{ exchange: '.', priority: 0 }] },
    'deadmx.test': { MX: [{ exchange: 'gone.test', priority: 10 }] },
    'nodata.test': {},
    'cached.test': { MX: [{ exchange: 'mx1.example.test', priority: 10 }] },
  });
});
after(() => dns.close());

const resolver = () => new NextHopResolver({ servers: [dns.server], timeoutMs: 500, tries: 1 });

test('MX hosts come in preference order, expanded IPv4 first, hosts without address skipped', async () => {
  const r = await resolver().resolve('example.test');
  assert.ok(r.ok);
  assert.deepEqual(r.hosts, [
    { host: 'mx1.example.test', addr: '127.0.0.11', port: 25, preference: 10 },
    { host: 'mx1.example.test', addr: '::1', port: 25, preference: 10 },
    { host: 'mx2.example.test', addr: '127.0.0.12', port: 25, preference: 20 },
    { host: 'mx2.example.test', addr: '127.0.0.13', port: 25, preference: 20 },
  ]);
});

test('equal preferences are shuffled, lower preferences stay first', async () => {
  const firsts = new Set<string>();
  for (let i = 0; i < 30 && firsts.size < 2; i++) {
    const r = await new NextHopResolver({ servers: [dns.server], timeoutMs: 500, tries: 1 }).resolve('tie.test');
    assert.ok(r.ok);
    assert.equal(r.hosts.length, 4);
    assert.equal(r.hosts[3]!.host, 'z.tie.test');
    firsts.add(r.hosts[0]!.host);
  }
  assert.ok(firsts.size >= 2, 'ties should not always come out in one order');
  // A cached list is reshuffled too, without new queries, host addresses kept together.
  const res = resolver();
  await res.resolve('tie.test');
  const n = dns.queries.length;
  const cachedFirsts = new Set<string>();
  for (let i = 0; i < 30 && cachedFirsts.size < 2; i++) {
    const r = await res.resolve('tie.test');
    assert.ok(r.ok);
    assert.equal(r.hosts[3]!.host, 'z.tie.test');
    cachedFirsts.add(r.hosts[0]!.host);
  }
  assert.equal(dns.queries.length, n);
  assert.ok(cachedFirsts.size >= 2);
  const ex = resolver();
  await ex.resolve('example.test');
  const again = await ex.resolve('example.test');
  assert.ok(again.ok);
  assert.deepEqual(again.hosts.map((h) => h.addr), ['127.0.0.11', '::1', '127.0.0.12', '127.0.0.13']);
});

test('falls back to A records when the domain has no MX', async () => {
  const r = await resolver().resolve('nomx.test:2525');
  assert.deepEqual(r, { ok: true, hosts: [{ host: 'nomx.test', addr: '127.0.0.21', port: 2525, preference: 0 }] });
});

test('[host]:port suppresses the MX lookup', async () => {
  const before = dns.queries.length;
  const r = await resolver().resolve('[relay.test]:2626');
  assert.deepEqual(r, { ok: true, hosts: [{ host: 'relay.test', addr: '127.0.0.31', port: 2626, preference: 0 }] });
  assert.ok(dns.queries.slice(before).every((q) => q.type !== 'MX'));
});

test('IP literals and localhost need no DNS server', async () => {
  const none = new NextHopResolver({ servers: ['127.0.0.1:9'], timeoutMs: 200, tries: 1 });
  assert.deepEqual(await none.resolve('[127.0.0.1]:2626'), { ok: true, hosts: [{ host: '127.0.0.1', addr: '127.0.0.1', port: 2626, preference: 0 }] });
  assert.deepEqual(await none.resolve('[ipv6:::1]'), { ok: true, hosts: [{ host: '::1', addr: '::1', port: 25, preference: 0 }] });
  const lh = await none.resolve('[localhost]:2525');
  assert.ok(lh.ok);
  assert.deepEqual(lh.hosts.map((h) => h.addr), ['127.0.0.1', '::1']);
});

test('NXDOMAIN is a permanent 5.1.2', async () => {
  const r = await resolver().resolve('nowhere.test');
  assert.deepEqual(r, { ok: false, temporary: false, dsn: '5.1.2', reason: 'Host or domain name not found. Name service error for name=nowhere.test type=MX: Host not found' });
});

test('SERVFAIL is a temporary 4.4.3', async () => {
  const r = await resolver().resolve('broken.test');
  assert.deepEqual(r, { ok: false, temporary: true, dsn: '4.4.3', reason: 'Host or domain name not found. Name service error for name=broken.test type=MX: Host not found, try again' });
});

test('an unreachable name server is a temporary 4.4.3', async () => {
  const r = await new NextHopResolver({ servers: ['127.0.0.1:9'], timeoutMs: 200, tries: 1 }).resolve('example.test');
  assert.equal(r.ok, false);
  assert.ok(!r.ok && r.temporary && r.dsn === '4.4.3');
});

test('null MX is a permanent 5.1.10', async () => {
  const r = await resolver().resolve('nullmx.test');
  assert.ok(!r.ok);
  assert.equal(r.temporary, false);
  assert.equal(r.dsn, '5.1.10');
  assert.match(r.reason, /domain does not accept mail \(nullMX\)$/);
});

test('MX hosts without any address make a temporary 4.4.3', async () => {
  const r = await resolver().resolve('deadmx.test');
  assert.ok(!r.ok);
  assert.equal(r.temporary, true);
  assert.equal(r.dsn, '4.4.3');
});

test('no MX and no address is a permanent 5.1.2', async () => {
  const r = await resolver().resolve('nodata.test');
  assert.ok(!r.ok);
  assert.equal(r.dsn, '5.1.2');
  assert.equal(r.temporary, false);
});

test('a second resolve is served from the cache, positive and negative', async () => {
  const res = resolver();
  const a = await res.resolve('cached.test');
  const n1 = dns.queries.length;
  const b = await res.resolve('cached.test');
  assert.deepEqual(b, a);
  assert.equal(dns.queries.length, n1, 'no query for a cached nexthop');
  await res.resolve('missing.test');
  const n2 = dns.queries.length;
  await res.resolve('missing.test');
  assert.equal(dns.queries.length, n2, 'no query for a cached NXDOMAIN');
  // Concurrent lookups of one nexthop share the queries.
  const fresh = resolver();
  const n3 = dns.queries.length;
  await Promise.all([fresh.resolve('nomx.test'), fresh.resolve('nomx.test'), fresh.resolve('nomx.test')]);
  assert.equal(dns.queries.length - n3, 3, 'one MX, one A, one AAAA query');
});

test('cache entries expire after cacheTtlMs', async () => {
  const res = new NextHopResolver({ servers: [dns.server], timeoutMs: 500, tries: 1, cacheTtlMs: 30 });
  await res.resolve('nomx.test');
  const n = dns.queries.length;
  await new Promise((r) => setTimeout(r, 50));
  await res.resolve('nomx.test');
  assert.ok(dns.queries.length > n);
});

test('nexthop syntax and POSTACTOR_DNS_SERVERS', () => {
  assert.deepEqual(parseNexthop('example.com'), { name: 'example.com', port: 25, noMx: false, ipVersion: 0 });
  assert.deepEqual(parseNexthop('example.com:smtp'), { name: 'example.com', port: 25, noMx: false, ipVersion: 0 });
  assert.deepEqual(parseNexthop('[mail.example.com]:587'), { name: 'mail.example.com', port: 587, noMx: true, ipVersion: 0 });
  assert.deepEqual(parseNexthop('[::1]:2626'), { name: '::1', port: 2626, noMx: true, ipVersion: 6 });
  assert.equal(parseNexthop('[x'), null);
  assert.equal(parseNexthop('x:99999'), null);
  assert.deepEqual(resolverServersFromEnv({ POSTACTOR_DNS_SERVERS: '127.0.0.1:5353, [::1]:53' }), ['127.0.0.1:5353', '[::1]:53']);
  assert.equal(resolverServersFromEnv({}), undefined);
});
