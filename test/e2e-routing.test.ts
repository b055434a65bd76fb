/**
 * End to end, routing: qmgr resolves recipients through the trivial-rewrite service (or
 * in-process without one), and the smtp client follows MX records from a real DNS server on
 * loopback (POSTACTOR_DNS_SERVERS): a dead primary MX falls back to the secondary, an MX that
 * is this host bounces "5.4.6 mail for DOMAIN loops back to myself", NXDOMAIN bounces 5.1.2,
 * a failing name server defers 4.4.3. Also smtp_host_lookup / disable_dns_lookups at the
 * resolver level.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as dnsp } from 'node:dns';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { NextHopResolver, parseHostLookup } from '../src/dns/resolver.js';
import { freePort, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';
import { startDnsServer, type TestDnsServer } from './helpers/dns-server.js';

const MYHOSTNAME = 'mx.postactor.test'; // the harness's myhostname

async function send(port: number, from: string, to: string): Promise<void> {
  const { smtp } = await SmtpDialogue.connect(port);
  try {
    assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
    assert.equal((await smtp.cmd(`MAIL FROM:<${from}>`)).code, 250);
    const r = await smtp.cmd(`RCPT TO:<${to}>`);
    assert.equal(r.code, 250, r.line);
    assert.equal((await smtp.cmd('DATA')).code, 354);
    const done = await smtp.cmd(`Subject: to ${to}\r\n\r\nhello\r\n.`);
    assert.equal(done.code, 250, done.line);
    await smtp.cmd('QUIT').catch(() => undefined);
  } finally {
    smtp.close();
  }
}

describe('e2e routing through trivial-rewrite and DNS', () => {
  let dns: TestDnsServer;
  let sink: SmtpSink;
  let server: TestServer;
  let tables: string;
  const received: SinkMessage[] = [];

  before(async () => {
    const port = await freePort('127.0.0.3');
    dns = await startDnsServer({
      'primary.test': { MX: [{ exchange: 'mx1.primary.test', priority: 10 }, { exchange: 'mx2.primary.test', priority: 20 }] },
      'mx1.primary.test': { A: ['127.0.0.2'] }, // nothing listens there: the primary is dead
      'mx2.primary.test': { A: ['127.0.0.3'] },
      'loop.test': { MX: [{ exchange: MYHOSTNAME, priority: 10 }] },
      [MYHOSTNAME]: { A: ['127.0.0.9'] },
      'loopaddr.test': { MX: [{ exchange: 'self.loopaddr.test', priority: 10 }] },
      'self.loopaddr.test': { A: ['127.0.0.1'] }, // an interface address of this host
      'backup.test': { MX: [{ exchange: 'mx.backup.test', priority: 5 }, { exchange: MYHOSTNAME, priority: 10 }] },
      'mx.backup.test': { A: ['127.0.0.3'] },
      'servfail.test': { servfail: true },
    });
    sink = new SmtpSink({ hostname: 'sink.test' });
    sink.on('message', (m: SinkMessage) => received.push(m));
    await sink.listen(port, '127.0.0.3');
    tables = mkdtempSync(join(tmpdir(), 'routing-tables-'));
    writeFileSync(join(tables, 'transport'), ['primary.test', 'loop.test', 'loopaddr.test', 'backup.test'].map((d) => `${d} smtp:${d}:${port}`).join('\n') + '\nrefused.test error:5.7.1 we do not send there\n');
    writeFileSync(join(tables, 'relocated'), `moved@${MYHOSTNAME} someone@new.example\n`);
    server = await startServer({
      mainCf: {
        relayhost: '',
        transport_maps: `texthash:${join(tables, 'transport')}`,
        relocated_maps: `texthash:${join(tables, 'relocated')}`,
        virtual_alias_domains: 'valias.test',
        // qmgr's handling of resolver errors is under test, not smtpd's RCPT-time checks.
        smtpd_reject_unlisted_recipient: 'no',
        local_recipient_maps: '',
      },
      masterCfExtra: 'rewrite unix - - n - 1 trivial-rewrite',
      env: { POSTACTOR_DNS_SERVERS: dns.server },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
    await dns?.close();
    if (tables) rmSync(tables, { recursive: true, force: true });
  });

  test('a dead primary MX with a live secondary: the mail goes to the secondary', async () => {
    await send(server.port, 'sender@client.test', 'user@primary.test');
    const line = await server.waitForLog(/to=<user@primary\.test>.*status=sent/, 20_000);
    assert.match(line, /relay=mx2\.primary\.test\[127\.0\.0\.3\]/);
    assert.ok(received.some((m) => m.recipients.includes('user@primary.test')));
    assert.ok(!server.logLines().some((l) => l.includes('resolves addresses in-process')), 'qmgr used the rewrite service');
  });

  test('an MX that is $myhostname: bounced, 5.4.6 "mail for loop.test loops back to myself"', async () => {
    await send(server.port, '', 'user@loop.test');
    const line = await server.waitForLog(/to=<user@loop\.test>.*status=/, 20_000);
    assert.match(line, /dsn=5\.4\.6, status=bounced \(mail for loop\.test loops back to myself\)/);
  });

  test('an MX whose address is one of our interface addresses: 5.4.6 loops back to myself', async () => {
    await send(server.port, '', 'user@loopaddr.test');
    const line = await server.waitForLog(/to=<user@loopaddr\.test>.*status=/, 20_000);
    assert.match(line, /dsn=5\.4\.6, status=bounced \(mail for loopaddr\.test loops back to myself\)/);
  });

  test('we are a backup MX: only the more preferred MX hosts are used', async () => {
    await send(server.port, 'sender@client.test', 'user@backup.test');
    const line = await server.waitForLog(/to=<user@backup\.test>.*status=/, 20_000);
    assert.match(line, /relay=mx\.backup\.test\[127\.0\.0\.3\].*status=sent/);
  });

  test('NXDOMAIN: bounced 5.1.2 Host or domain name not found', async () => {
    await send(server.port, '', 'user@nosuch.test');
    const line = await server.waitForLog(/to=<user@nosuch\.test>.*status=/, 20_000);
    assert.match(line, /dsn=5\.1\.2, status=bounced \(Host or domain name not found\. Name service error for name=nosuch\.test type=MX: Host not found\)/);
  });

  test('the name server fails (SERVFAIL): deferred 4.4.3', async () => {
    await send(server.port, 'sender@client.test', 'user@servfail.test');
    const line = await server.waitForLog(/to=<user@servfail\.test>.*status=/, 20_000);
    assert.match(line, /dsn=4\.4\.3, status=deferred/);
  });

  test('resolver errors become bounces without a delivery: virtual alias class 5.1.1, relocated 5.1.6, transport error: 5.7.1', async () => {
    await send(server.port, '', 'nobody@valias.test');
    await send(server.port, '', `moved@${MYHOSTNAME}`);
    await send(server.port, '', 'user@refused.test');
    assert.match(await server.waitForLog(/to=<nobody@valias\.test>.*status=/, 20_000), /relay=none, .*dsn=5\.1\.1, status=bounced \(User unknown in virtual alias table\)/);
    assert.match(await server.waitForLog(/to=<moved@mx\.postactor\.test>.*status=/, 20_000), /relay=none, .*dsn=5\.1\.6, status=bounced \(User has moved to someone@new\.example\)/);
    assert.match(await server.waitForLog(/to=<user@refused\.test>.*status=/, 20_000), /relay=none, .*dsn=5\.7\.1, status=bounced \(we do not send there\)/);
  });
});

describe('qmgr without a trivial-rewrite service resolves in-process', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ mainCf: { virtual_alias_domains: 'valias.test', smtpd_reject_unlisted_recipient: 'no' } });
  });
  after(async () => {
    await server?.stop();
  });

  test('it says so in the log, and resolves with the same rules (virtual alias class: 5.1.1)', async () => {
    await server.waitForLog(/no trivial-rewrite service in master\.cf: qmgr resolves addresses in-process/, 10_000);
    await send(server.port, '', 'nobody@valias.test');
    assert.match(await server.waitForLog(/to=<nobody@valias\.test>.*status=/, 20_000), /dsn=5\.1\.1, status=bounced \(User unknown in virtual alias table\)/);
  });
});

describe('smtp_host_lookup and disable_dns_lookups (NextHopResolver)', () => {
  let dns: TestDnsServer;
  const me = hostname();
  let nativeKnowsMe = false;
  before(async () => {
    dns = await startDnsServer({
      'dnsonly.test': { MX: [{ exchange: 'mx.dnsonly.test', priority: 10 }] },
      'mx.dnsonly.test': { A: ['127.0.0.5'] },
      'nativeonly.test': { MX: [{ exchange: me, priority: 10 }] }, // the name is in /etc/hosts, not in this zone
    });
    nativeKnowsMe = await dnsp.lookup(me).then(() => true, () => false);
  });
  after(async () => {
    await dns?.close();
  });

  test('smtp_host_lookup parses dns, native, "dns, native" and refuses anything else', () => {
    assert.deepEqual(parseHostLookup('dns'), ['dns']);
    assert.deepEqual(parseHostLookup('native'), ['native']);
    assert.deepEqual(parseHostLookup('dns, native'), ['dns', 'native']);
    assert.throws(() => parseHostLookup('nis'), /unknown lookup mechanism "nis"/);
  });

  test('dns finds MX host addresses in DNS only; native in the system name service; dns+native in both', async (t) => {
    const servers = [dns.server];
    const viaDns = new NextHopResolver({ servers, hostLookup: ['dns'], cacheTtlMs: 0 });
    const viaNative = new NextHopResolver({ servers, hostLookup: ['native'], cacheTtlMs: 0 });
    const both = new NextHopResolver({ servers, hostLookup: ['dns', 'native'], cacheTtlMs: 0 });
    const a = await viaDns.resolve('dnsonly.test');
    assert.ok(a.ok && a.mx && a.hosts[0]!.addr === '127.0.0.5');
    assert.equal((await viaNative.resolve('dnsonly.test')).ok, false, 'mx.dnsonly.test is not known to getaddrinfo');
    assert.equal((await viaDns.resolve('nativeonly.test')).ok, false);
    if (!nativeKnowsMe) return t.skip(`${me} is not resolvable by getaddrinfo here`);
    assert.equal((await viaNative.resolve('nativeonly.test')).ok, true);
    assert.equal((await both.resolve('nativeonly.test')).ok, true);
    assert.equal((await both.resolve('dnsonly.test')).ok, true);
  });

  test('disable_dns_lookups = yes: no MX lookup at all, the nexthop name by native lookup', async (t) => {
    const r = new NextHopResolver({ servers: [dns.server], disableDns: true, cacheTtlMs: 0 });
    const before = dns.queries.length;
    assert.equal((await r.resolve('dnsonly.test')).ok, false);
    assert.equal(dns.queries.length, before, 'no DNS query');
    if (!nativeKnowsMe) return t.skip(`${me} is not resolvable by getaddrinfo here`);
    const ok = await r.resolve(`${me}:2525`);
    assert.ok(ok.ok && !ok.mx && ok.hosts[0]!.port === 2525);
  });
});
