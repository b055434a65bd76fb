/**
 * MTA-STS (src/mta-sts): the TXT record and policy parsers, mx pattern matching, and policy
 * discovery against real parts — a DNS server on loopback (dns2) with the _mta-sts TXT records
 * and the policy hosts' addresses, an HTTPS server on 127.0.0.1 with a certificate from a test
 * CA made by openssl, and the queue store (LMDB in a temp dir) as the cache. Cases: a policy
 * fetched and cached; the cache used without HTTPS (also after reopening the store); a changed
 * id fetches again; certificate failures, redirects, wrong media types, oversized and malformed
 * policies give no policy — unless a cached one is still within its max_age.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as https from 'node:https';

import { NextHopResolver } from '../src/dns/resolver.js';
import { MtaSts, mxMatches, parseStsPolicy, stsRecordId } from '../src/mta-sts/index.js';
import { QueueStore } from '../src/queue/store.js';
import { startDnsServer, type TestDnsServer, type Zone } from './helpers/dns-server.js';
import { needs } from './helpers/peers.js';
import { makeTestCertificates, type TestCertificates } from './helpers/test-ca.js';
import { tempDirs } from './helpers/temp.js';

const NO_OPENSSL = needs('/usr/bin/openssl', 'openssl, to make the test certificates');
const tempDir = tempDirs('postactor-mta-sts-');

const POLICY = (mode: string, ...mx: string[]) => `version: STSv1\r\nmode: ${mode}\r\n${mx.map((m) => `mx: ${m}\r\n`).join('')}max_age: 86400\r\n`;

test('the _mta-sts TXT record: one "v=STSv1" record with an id, other records ignored', () => {
  assert.deepEqual(stsRecordId(['v=STSv1; id=20160831085700Z;']), { id: '20160831085700Z' });
  assert.deepEqual(stsRecordId(['v=spf1 -all', 'v=STSv1;id=abc ; ext=1']), { id: 'abc' });
  assert.deepEqual(stsRecordId(['v=STSv1; id=1', 'v=STSv1; id=2']), { error: '2 "v=STSv1" TXT records (there must be one)' });
  assert.deepEqual(stsRecordId(['v=STSv1;']), { error: 'TXT record without an id' });
  assert.deepEqual(stsRecordId(['v=STSv1; id=not-alnum']), { error: 'malformed TXT record id "not-alnum"' });
  assert.deepEqual(stsRecordId(['v=STSv10; id=1']), { error: 'no "v=STSv1" TXT record' });
  assert.deepEqual(stsRecordId([]), { error: 'no "v=STSv1" TXT record' });
});

test('the policy file: version, mode, mx patterns, max_age (capped at a year); what is wrong is said', () => {
  assert.deepEqual(parseStsPolicy('version: STSv1\nmode: enforce\nmx: mail.Example.com.\nmx: *.example.net\nmax_age: 604800\nfuture: x\n'),
    { mode: 'enforce', mx: ['mail.example.com', '*.example.net'], maxAge: 604800 });
  assert.deepEqual(parseStsPolicy('version: STSv1\nmode: none\nmax_age: 99999999999'), { error: 'malformed max_age "99999999999"' });
  assert.deepEqual(parseStsPolicy('version: STSv1\nmode: none\nmax_age: 9999999999'), { mode: 'none', mx: [], maxAge: 31557600 });
  assert.deepEqual(parseStsPolicy('version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1'), { error: 'unknown policy version "STSv2"' });
  assert.deepEqual(parseStsPolicy('version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1'), { error: 'unknown policy mode "strict"' });
  assert.deepEqual(parseStsPolicy('version: STSv1\nmode: enforce\nmax_age: 1'), { error: 'policy in mode enforce without mx' });
  assert.deepEqual(parseStsPolicy('version: STSv1\nmode: testing\nmx: a.test'), { error: 'policy without max_age' });
  assert.deepEqual(parseStsPolicy('<html>not a policy</html>'), { error: 'malformed policy line "<html>not a policy</html>"' });
  assert.deepEqual(parseStsPolicy('version: STSv1\nmode: enforce\nmx: *.*.test\nmax_age: 1'), { error: 'malformed mx pattern "*.*.test"' });
});

test('mx patterns: exact names, and "*." for exactly one leftmost label', () => {
  const p = { mx: ['mail.example.com', '*.example.net'] };
  assert.ok(mxMatches(p, 'mail.example.com'));
  assert.ok(mxMatches(p, 'MAIL.example.com.'));
  assert.ok(mxMatches(p, 'mx1.example.net'));
  assert.ok(!mxMatches(p, 'example.net'));
  assert.ok(!mxMatches(p, 'a.b.example.net'));
  assert.ok(!mxMatches(p, 'mail.example.com.evil.test'));
  assert.ok(!mxMatches(p, 'other.example.com'));
});

describe('policy discovery over DNS and HTTPS, cached in the queue store', { skip: NO_OPENSSL }, () => {
  let dns: TestDnsServer;
  let web: https.Server;
  let webPort: number;
  let certs: TestCertificates;
  let storeDir: string;
  let store: QueueStore;
  /** What the HTTPS server answers per policy host; requests are counted per host. */
  const answers = new Map<string, { status?: number; type?: string; body: string; location?: string }>();
  const requests: string[] = [];
  const zone: Zone = {};
  const warnings: string[] = [];

  const domains = ['good', 'cached', 'changing', 'wrongname', 'redirect', 'html', 'huge', 'broken', 'withdrawn', 'nohttps'];
  before(async () => {
    const dir = tempDir();
    // The certificate names every policy host except mta-sts.wrongname.test.
    certs = makeTestCertificates(dir, domains.filter((d) => d !== 'wrongname').map((d) => `mta-sts.${d}.test`));
    for (const d of domains) {
      zone[`_mta-sts.${d}.test`] = { TXT: ['v=STSv1; id=1'] };
      zone[`mta-sts.${d}.test`] = { A: ['127.0.0.1'] };
      answers.set(`mta-sts.${d}.test`, { body: POLICY('enforce', `mx.${d}.test`, `*.backup.${d}.test`) });
    }
    zone['mta-sts.nohttps.test'] = { A: ['127.0.0.2'] }; // nothing listens there
    zone['nosts.test'] = { MX: [{ exchange: 'mx.nosts.test', priority: 10 }] };
    answers.set('mta-sts.redirect.test', { status: 301, location: 'https://elsewhere.test/', body: '' });
    answers.set('mta-sts.html.test', { type: 'text/html', body: POLICY('enforce', 'mx.html.test') });
    answers.set('mta-sts.huge.test', { body: POLICY('enforce', 'mx.huge.test') + `x-padding: ${'x'.repeat(70000)}\r\n` });
    answers.set('mta-sts.broken.test', { body: 'version: STSv1\nmode: enforce\nmx: mx.broken.test\n' });
    dns = await startDnsServer(zone);
    web = https.createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '');
      requests.push(host);
      const a = answers.get(host);
      if (a === undefined || req.url !== '/.well-known/mta-sts.txt') { res.writeHead(404).end(); return; }
      res.writeHead(a.status ?? 200, { 'content-type': a.type ?? 'text/plain; charset=utf-8', ...(a.location ? { location: a.location } : {}) });
      res.end(a.body);
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    webPort = (web.address() as { port: number }).port;
    storeDir = tempDir();
    store = QueueStore.open(storeDir);
  });
  after(async () => {
    await store?.close();
    await new Promise<void>((resolve) => (web ? web.close(() => resolve()) : resolve()));
    await dns?.close();
  });

  const sts = (opts: { now?: () => number; ca?: Buffer | null; cache?: QueueStore } = {}) => new MtaSts({
    resolver: new NextHopResolver({ servers: [dns.server], cacheTtlMs: 0 }),
    cache: opts.cache ?? store,
    port: webPort,
    ...(opts.ca === null ? {} : { ca: opts.ca ?? certs.ca }),
    recheckMs: 0,
    warn: (t) => warnings.push(t),
    ...(opts.now ? { now: opts.now } : {}),
  });
  const count = (host: string) => requests.filter((h) => h === host).length;
  const lastWarning = (domain: string) => [...warnings].reverse().find((w) => w.startsWith(`MTA-STS policy for ${domain}:`)) ?? '';

  test('a published policy is fetched over verified HTTPS and cached under its id', async () => {
    const p = await sts().policyFor('Good.Test.');
    assert.deepEqual(p, { mode: 'enforce', mx: ['mx.good.test', '*.backup.good.test'], id: '1' });
    const rec = store.stsPolicy('good.test')!;
    assert.equal(rec.id, '1');
    assert.equal(rec.maxAge, 86400);
    assert.equal(count('mta-sts.good.test'), 1);
  });

  test('no _mta-sts record: no policy, and no HTTPS request', async () => {
    assert.equal(await sts().policyFor('nosts.test'), null);
    assert.equal(count('mta-sts.nosts.test'), 0);
  });

  test('a cached policy is used while its id is unchanged, also after a restart with the policy host down', async () => {
    assert.ok(await sts().policyFor('cached.test'));
    assert.equal(count('mta-sts.cached.test'), 1);
    answers.set('mta-sts.cached.test', { status: 500, body: '' });
    // A restart: the store closed and opened again, a new MtaSts with nothing in memory.
    await store.close();
    store = QueueStore.open(storeDir);
    const p = await sts().policyFor('cached.test');
    assert.deepEqual(p?.mx, ['mx.cached.test', '*.backup.cached.test']);
    assert.equal(count('mta-sts.cached.test'), 1, 'served from the cache, no fetch');
  });

  test('a changed id fetches the policy again', async () => {
    assert.equal((await sts().policyFor('changing.test'))?.mode, 'enforce');
    answers.set('mta-sts.changing.test', { body: POLICY('testing', 'mx2.changing.test') });
    assert.equal((await sts().policyFor('changing.test'))?.mode, 'enforce', 'same id: the cached policy');
    zone['_mta-sts.changing.test'] = { TXT: ['v=STSv1; id=2'] };
    const p = await sts().policyFor('changing.test');
    assert.deepEqual(p, { mode: 'testing', mx: ['mx2.changing.test'], id: '2' });
    assert.equal(count('mta-sts.changing.test'), 2);
  });

  test('certificate failures give no policy: wrong name, unknown CA', async () => {
    assert.equal(await sts().policyFor('wrongname.test'), null);
    assert.match(lastWarning('wrongname.test'), /^MTA-STS policy for wrongname\.test: https:\/\/mta-sts\.wrongname\.test:\d+\/\.well-known\/mta-sts\.txt: .*(altnames|Hostname).*; no policy$/);
    const other = QueueStore.open(tempDir()); // an empty cache: nothing to fall back on
    try {
      assert.equal(await sts({ ca: null, cache: other }).policyFor('good.test'), null);
      assert.match(lastWarning('good.test'), /(self[- ]signed|unable to get local issuer|unable to verify).*; no policy$/i);
    } finally {
      await other.close();
    }
  });

  test('redirects are not followed; text/plain only; 64 KiB at most; a malformed policy is no policy', async () => {
    assert.equal(await sts().policyFor('redirect.test'), null);
    assert.match(lastWarning('redirect.test'), /HTTP status 301 \(redirects are not followed\); no policy$/);
    assert.equal(await sts().policyFor('html.test'), null);
    assert.match(lastWarning('html.test'), /media type "text\/html" \(must be text\/plain\); no policy$/);
    assert.equal(await sts().policyFor('huge.test'), null);
    assert.match(lastWarning('huge.test'), /policy larger than 65536 bytes; no policy$/);
    assert.equal(await sts().policyFor('broken.test'), null);
    assert.match(lastWarning('broken.test'), /policy without max_age; no policy$/);
    assert.equal(await sts().policyFor('nohttps.test'), null);
    assert.match(lastWarning('nohttps.test'), /connect to mta-sts\.nohttps\.test\[127\.0\.0\.2\]:\d+: .*; no policy$/);
  });

  test('a failed fetch falls back on a cached policy within its max_age, not on an expired one', async () => {
    const good = store.stsPolicy('good.test')!;
    zone['_mta-sts.good.test'] = { TXT: ['v=STSv1; id=2'] }; // a new id, but the policy host fails
    answers.set('mta-sts.good.test', { body: 'garbage' });
    assert.deepEqual((await sts().policyFor('good.test'))?.id, '1');
    assert.match(lastWarning('good.test'), /malformed policy line "garbage"; using the cached policy \(id 1\)$/);
    const later = good.fetched + good.maxAge * 1000 + 1;
    assert.equal(await sts({ now: () => later }).policyFor('good.test'), null);
    assert.match(lastWarning('good.test'), /; no policy$/);
  });

  test('a policy in mode none withdraws the cached one', async () => {
    assert.ok(await sts().policyFor('withdrawn.test'));
    zone['_mta-sts.withdrawn.test'] = { TXT: ['v=STSv1; id=gone'] };
    answers.set('mta-sts.withdrawn.test', { body: 'version: STSv1\nmode: none\nmax_age: 86400\n' });
    assert.equal(await sts().policyFor('withdrawn.test'), null);
    assert.equal(store.stsPolicy('withdrawn.test')?.mode, 'none');
  });
});
