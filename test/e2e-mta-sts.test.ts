/**
 * End to end, MTA-STS (smtp_tls_mta_sts = yes): a running server delivers by MX lookup through
 * a real DNS server on loopback (POSTACTOR_DNS_SERVERS: MX, A and the _mta-sts TXT records)
 * and fetches policies from an HTTPS server on 127.0.0.1 (POSTACTOR_MTA_STS_PORT, the
 * test-only port; the test CA is trusted through Node's NODE_EXTRA_CA_CERTS). MX hosts are
 * the project's sink on 127.0.0.3, offering STARTTLS with a certificate from the same test CA
 * (smtp_tls_CAfile); transport_maps gives each domain the sink's port.
 *
 *   enforce, the only MX outside mx:    → deferred 4.7.5 "MTA-STS policy for … no MX host matches"
 *   enforce, one MX outside, one inside → delivered to the one inside over verified TLS (level
 *                                         secure for the MX name), the other logged as skipped
 *   enforce, MX inside, certificate for
 *   other names                         → deferred 4.7.5 "Server certificate not verified"
 *   testing, MX outside mx:             → delivered, the mismatch logged
 *   policy host's certificate is wrong  → no policy: delivered, the fetch failure logged
 *   restart with the HTTPS server down  → the cached policy still defers the enforce domain
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as https from 'node:https';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { startDnsServer, type TestDnsServer, type Zone } from './helpers/dns-server.js';
import { needs } from './helpers/peers.js';
import { freePort, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { makeTestCertificates } from './helpers/test-ca.js';
import { tempDirs } from './helpers/temp.js';

const NO_OPENSSL = needs('/usr/bin/openssl', 'openssl, to make the test certificates');
const tempDir = tempDirs('postactor-e2e-mta-sts-');

const DOMAINS = ['enforce.test', 'mixed.test', 'testing.test', 'badcert.test', 'wrongmx.test'] as const;

describe('e2e MTA-STS in the smtp client', { skip: NO_OPENSSL }, () => {
  let dns: TestDnsServer;
  let web: https.Server | null = null;
  let sink: SmtpSink;
  let server: TestServer;
  const received: SinkMessage[] = [];
  const policyRequests: string[] = [];

  before(async () => {
    const dir = tempDir();
    // One certificate for the policy hosts and the MX hosts (one sink). Not among its names:
    // mta-sts.badcert.test (its policy cannot be fetched) and mx.wrongmx.test (TLS to it fails).
    const certs = makeTestCertificates(dir, ['mta-sts.enforce.test', 'mta-sts.mixed.test', 'mta-sts.testing.test', 'mta-sts.wrongmx.test',
      'mx.enforce.test', 'mx1.good.mixed.test', 'mx.bad.mixed.test']);
    const policies: Record<string, string> = {
      'mta-sts.enforce.test': 'version: STSv1\nmode: enforce\nmx: mx.enforce.test\nmax_age: 86400\n',
      'mta-sts.mixed.test': 'version: STSv1\nmode: enforce\nmx: *.good.mixed.test\nmax_age: 86400\n',
      'mta-sts.testing.test': 'version: STSv1\nmode: testing\nmx: mx.testing.test\nmax_age: 86400\n',
      'mta-sts.badcert.test': 'version: STSv1\nmode: enforce\nmx: mx.badcert.test\nmax_age: 86400\n',
      'mta-sts.wrongmx.test': 'version: STSv1\nmode: enforce\nmx: mx.wrongmx.test\nmax_age: 86400\n',
    };
    web = https.createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
      const host = (req.headers.host ?? '').replace(/:\d+$/, '');
      policyRequests.push(host);
      const p = policies[host];
      if (p === undefined) { res.writeHead(404).end(); return; }
      res.writeHead(200, { 'content-type': 'text/plain' }).end(p);
    });
    await new Promise<void>((resolve) => web!.listen(0, '127.0.0.1', resolve));
    const webPort = (web.address() as { port: number }).port;

    const zone: Zone = {
      // The only MX is not the one the policy names.
      'enforce.test': { MX: [{ exchange: 'mx.attacker.test', priority: 10 }] },
      'mx.attacker.test': { A: ['127.0.0.3'] },
      // The preferred MX is outside the policy; the second matches "*.good.mixed.test".
      'mixed.test': { MX: [{ exchange: 'mx.bad.mixed.test', priority: 10 }, { exchange: 'mx1.good.mixed.test', priority: 20 }] },
      'mx.bad.mixed.test': { A: ['127.0.0.3'] },
      'mx1.good.mixed.test': { A: ['127.0.0.3'] },
      'testing.test': { MX: [{ exchange: 'mx.elsewhere.test', priority: 10 }] },
      'mx.elsewhere.test': { A: ['127.0.0.3'] },
      'badcert.test': { MX: [{ exchange: 'mx.other.test', priority: 10 }] },
      'mx.other.test': { A: ['127.0.0.3'] },
      'wrongmx.test': { MX: [{ exchange: 'mx.wrongmx.test', priority: 10 }] },
      'mx.wrongmx.test': { A: ['127.0.0.3'] },
    };
    for (const d of DOMAINS) {
      zone[`_mta-sts.${d}`] = { TXT: ['v=STSv1; id=20240101T000000'] };
      zone[`mta-sts.${d}`] = { A: ['127.0.0.1'] };
    }
    dns = await startDnsServer(zone);

    const sinkPort = await freePort('127.0.0.3');
    sink = new SmtpSink({ hostname: 'sink.test', tls: { key: certs.key, cert: certs.cert } });
    sink.on('message', (m: SinkMessage) => received.push(m));
    await sink.listen(sinkPort, '127.0.0.3');
    const transport = join(dir, 'transport');
    writeFileSync(transport, DOMAINS.map((d) => `${d} smtp:${d}:${sinkPort}`).join('\n') + '\n');
    server = await startServer({
      mainCf: {
        relayhost: '',
        transport_maps: `texthash:${transport}`,
        smtp_tls_mta_sts: 'yes',
        smtp_tls_CAfile: certs.caFile,
        smtp_tls_loglevel: '1',
        smtpd_reject_unlisted_recipient: 'no',
        local_recipient_maps: '',
      },
      env: { POSTACTOR_DNS_SERVERS: dns.server, POSTACTOR_MTA_STS_PORT: String(webPort), NODE_EXTRA_CA_CERTS: certs.caFile },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
    await new Promise<void>((resolve) => (web ? web.close(() => resolve()) : resolve()));
    await dns?.close();
  });

  const send = async (to: string) => {
    const r = await sendRaw(server.port, 'sender@client.test', [to], rfc822({ From: 'sender@client.test', To: to, Subject: `to ${to}` }, 'hello\r\n'));
    assert.equal(r.code, 250, r.line);
  };
  const statusOf = (to: string) => server.waitForLog(new RegExp(`to=<${to.replace(/\./g, '\\.')}>.*status=`), 20_000);

  test('enforce: the only MX is outside the policy\'s mx: list — deferred 4.7.5, nothing sent', async () => {
    await send('a@enforce.test');
    const line = await statusOf('a@enforce.test');
    assert.match(line, /relay=none, .*dsn=4\.7\.5, status=deferred \(MTA-STS policy for enforce\.test \(id 20240101T000000, mode enforce, mx: mx\.enforce\.test\): no MX host matches \(MX hosts: mx\.attacker\.test\)\)/);
    assert.ok(!received.some((m) => m.recipients.includes('a@enforce.test')));
  });

  test('enforce: an MX outside the list is skipped, the one inside gets the mail over verified TLS', async () => {
    await send('b@mixed.test');
    const line = await statusOf('b@mixed.test');
    assert.match(line, /relay=mx1\.good\.mixed\.test\[127\.0\.0\.3\]:\d+, .*status=sent/);
    assert.ok(server.logLines().some((l) => /Verified TLS connection established to mx1\.good\.mixed\.test\[127\.0\.0\.3\]:\d+: TLSv1\.3/.test(l)));
    assert.equal(received.find((m) => m.recipients.includes('b@mixed.test'))?.tls, 'TLSv1.3');
    assert.ok(server.logLines().some((l) => /: [0-9A-Za-z]+: MTA-STS policy for mixed\.test \(.*mode enforce, mx: \*\.good\.mixed\.test\): skipping MX host mx\.bad\.mixed\.test: it does not match/.test(l)));
    assert.ok(received.some((m) => m.recipients.includes('b@mixed.test')));
  });

  test('enforce: the MX matches but its certificate does not name it — deferred 4.7.5, nothing sent', async () => {
    await send('g@wrongmx.test');
    assert.match(await statusOf('g@wrongmx.test'), /dsn=4\.7\.5, status=deferred \(Server certificate not verified\)/);
    assert.ok(!received.some((m) => m.recipients.includes('g@wrongmx.test')));
  });

  test('testing: delivered to the MX outside the list, the mismatch logged', async () => {
    await send('c@testing.test');
    assert.match(await statusOf('c@testing.test'), /relay=mx\.elsewhere\.test\[127\.0\.0\.3\]:\d+, .*status=sent/);
    assert.equal(received.find((m) => m.recipients.includes('c@testing.test'))?.tls, undefined, 'testing asks for no TLS (smtp_tls_security_level is empty)');
    assert.ok(server.logLines().some((l) => /: [0-9A-Za-z]+: MTA-STS policy for testing\.test \(.*mode testing.*\): MX host mx\.elsewhere\.test does not match; delivering anyway \(testing\)/.test(l)));
  });

  test('a policy host with a certificate for another name: no policy (RFC 8461), delivered, the failure logged', async () => {
    await send('d@badcert.test');
    assert.match(await statusOf('d@badcert.test'), /relay=mx\.other\.test\[127\.0\.0\.3\]:\d+, .*status=sent/);
    assert.ok(server.logLines().some((l) => /warning: MTA-STS policy for badcert\.test: https:\/\/mta-sts\.badcert\.test:\d+\/\.well-known\/mta-sts\.txt: .*; no policy$/.test(l)));
  });

  test('the policy is cached in the queue store: after a restart with the HTTPS server stopped it still applies', async () => {
    const before = policyRequests.filter((h) => h === 'mta-sts.enforce.test').length;
    assert.equal(before, 1);
    await new Promise<void>((resolve) => web!.close(() => resolve()));
    web = null;
    await server.restart();
    await send('e@enforce.test');
    assert.match(await statusOf('e@enforce.test'), /dsn=4\.7\.5, status=deferred \(MTA-STS policy for enforce\.test .*no MX host matches/);
    await send('f@mixed.test');
    assert.match(await statusOf('f@mixed.test'), /relay=mx1\.good\.mixed\.test\[127\.0\.0\.3\]:\d+, .*status=sent/);
    assert.equal(policyRequests.filter((h) => h === 'mta-sts.enforce.test').length, 1, 'no fetch after the restart');
  });
});
