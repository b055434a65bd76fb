/**
 * SMTP AUTH in the smtp client, against the real thing: Debian's Postfix as a smarthost that
 * requires AUTH (its own SASL through a throwaway Dovecot auth socket, no mynetworks for
 * 127.0.0.1), relaying to the project's sink. Postactor relays through it with
 * smtp_sasl_password_maps keyed by the next hop as written ([127.0.0.1]:PORT), as Postfix's
 * SASL_README does; also when that next hop comes from sender_dependent_relayhost_maps.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from './helpers/peers.js';
import { freePort, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { DOVECOT, startDovecot, type Dovecot } from '../bench/delivery/dovecot.js';
import { startPostfix } from '../bench/relay/postfix.js';
import type { MtaHandle } from '../bench/relay/mta.js';

const NO_PEERS = needs('/usr/sbin/postfix', "Debian's Postfix, the smarthost") || needs(DOVECOT, "Debian's Dovecot, the smarthost's SASL");
const tempDir = tempDirs('postactor-smtp-sasl-');

describe('smtp client AUTH to a Postfix smarthost that requires it', { skip: NO_PEERS || (process.getuid?.() !== 0 ? 'Postfix\'s master needs root' : false) }, () => {
  let sink: SmtpSink;
  let dovecot: Dovecot;
  let smarthost: MtaHandle;
  const servers: TestServer[] = [];

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    // No auth penalty: the wrong-password case would otherwise delay every later AUTH from
    // 127.0.0.1 by seconds (Dovecot's brute-force defence, not what these tests are about).
    dovecot = await startDovecot({ users: ['relayuser'], passwords: { relayuser: 'secret' }, auth: true, lmtp: false, mechanisms: 'plain login cram-md5', noAuthPenalty: true });
    // The smarthost also offers STARTTLS (a certificate made here), for the TLS-peer case.
    const certs = tempDir();
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(certs, 'key.pem'), '-out', join(certs, 'cert.pem'), '-days', '2', '-subj', '/CN=postfix-peer.localdomain'], { stdio: 'ignore' });
    smarthost = await startPostfix({
      sinkPort,
      port: await freePort(),
      extraMainCf: [
        'smtpd_tls_security_level = may',
        `smtpd_tls_cert_file = ${join(certs, 'cert.pem')}`,
        `smtpd_tls_key_file = ${join(certs, 'key.pem')}`,
        'smtpd_tls_loglevel = 1',
        'mynetworks = 192.0.2.0/24',
        'smtpd_sasl_auth_enable = yes',
        'smtpd_sasl_type = dovecot',
        `smtpd_sasl_path = ${dovecot.authSocket}`,
        'smtpd_relay_restrictions = permit_sasl_authenticated, reject',
      ].join('\n'),
    });
  });
  after(async () => {
    for (const s of servers) await s.stop();
    await smarthost?.stop();
    await dovecot?.stop();
    await sink?.close();
  });

  /** A Postactor relaying through the smarthost with these credentials and settings. */
  async function relayVia(password: string, settings: Record<string, string> = {}): Promise<TestServer> {
    const dir = tempDir({ sasl_passwd: `[127.0.0.1]:${smarthost.port} relayuser:${password}\n` });
    const s = await startServer({
      mainCf: {
        relayhost: `[127.0.0.1]:${smarthost.port}`,
        smtp_sasl_auth_enable: 'yes',
        smtp_sasl_password_maps: `texthash:${join(dir, 'sasl_passwd')}`,
        ...settings,
      },
    });
    servers.push(s);
    return s;
  }

  async function send(s: TestServer, to: string): Promise<void> {
    const r = await sendRaw(s.port, 'app@example.org', [to], rfc822({ Subject: `to ${to}` }, 'hello\r\n'));
    assert.equal(r.code, 250, r.line);
  }

  test('the default security options (noplaintext) pick CRAM-MD5; the smarthost relays', async () => {
    const s = await relayVia('secret');
    await send(s, 'one@example.net');
    await s.waitForLog(/to=<one@example\.net>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent/, 20_000);
    await sink.waitFor(() => sink.messages.some((m) => m.recipients.includes('one@example.net')), 20_000);
    // The smarthost's own log (bench/postfix-peer.sh keeps it in DIR/maillog) names the method.
    const pf = readFileSync(join(smarthost.dir, 'maillog'), 'utf8');
    assert.match(pf, /sasl_method=CRAM-MD5, sasl_username=relayuser/);
  });

  test('smtp_sasl_security_options = noanonymous allows PLAIN', async () => {
    const s = await relayVia('secret', { smtp_sasl_security_options: 'noanonymous', smtp_sasl_mechanism_filter: 'plain' });
    await send(s, 'two@example.net');
    await s.waitForLog(/to=<two@example\.net>, .*status=sent/, 20_000);
  });

  test('a wrong password defers (smtp_sasl_auth_soft_bounce) with the server\'s words', async () => {
    const s = await relayVia('wrong');
    await send(s, 'three@example.net');
    const line = await s.waitForLog(/to=<three@example\.net>, .*status=deferred/, 20_000);
    assert.match(line, /dsn=4\.7\.8, status=deferred \(SASL authentication failed; server 127\.0\.0\.1\[127\.0\.0\.1\] said: 535 5\.7\.8 Error: authentication failed/);
  });

  test('no mechanism the options allow: deferred 4.7.0, "offered no compatible authentication mechanisms"', async () => {
    const s = await relayVia('secret', { smtp_sasl_mechanism_filter: 'login' }); // LOGIN is plaintext: noplaintext excludes it
    await send(s, 'four@example.net');
    const line = await s.waitForLog(/to=<four@example\.net>, .*status=deferred/, 20_000);
    assert.match(line, /dsn=4\.7\.0, status=deferred \(SASL authentication failed: server 127\.0\.0\.1\[127\.0\.0\.1\] offered no compatible authentication mechanisms for this type of connection security\)/);
    await s.waitForLog(/warning: 127\.0\.0\.1\[127\.0\.0\.1\]:\d+ offered no supported AUTH mechanisms: '/, 5_000);
  });

  test('sender_dependent_relayhost_maps picks the smarthost for this sender, and its credentials are found by that nexthop', async () => {
    // relayhost points nowhere: only the sender-dependent route reaches the smarthost.
    const s = await relayVia('secret', {
      relayhost: '[127.0.0.1]:9',
      sender_dependent_relayhost_maps: `inline:{ @example.org=[127.0.0.1]:${smarthost.port} }`,
    });
    await send(s, 'six@example.net'); // from app@example.org
    await s.waitForLog(/to=<six@example\.net>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent/, 20_000);
    await sink.waitFor(() => sink.messages.some((m) => m.recipients.includes('six@example.net')), 20_000);
  });

  test('TLS to Debian\'s Postfix as the peer: encrypt and AUTH over TLS (smtp_sasl_tls_security_options)', async () => {
    const s = await relayVia('secret', { smtp_tls_security_level: 'encrypt', smtp_tls_loglevel: '1', smtp_sasl_tls_security_options: 'noanonymous' });
    await send(s, 'tls@example.net');
    await s.waitForLog(/to=<tls@example\.net>, .*status=sent/, 20_000);
    await s.waitForLog(new RegExp(`Untrusted TLS connection established to 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${smarthost.port}: TLSv1\\.3 with cipher`), 5_000);
    const pf = readFileSync(join(smarthost.dir, 'maillog'), 'utf8');
    assert.match(pf, /Anonymous TLS connection established from localhost\[127\.0\.0\.1\]: TLSv1\.3 with cipher/);
    // Over TLS the TLS options apply: PLAIN is allowed there, and the strongest allowed is CRAM-MD5.
    assert.match(pf, /sasl_method=CRAM-MD5, sasl_username=relayuser/);
  });

  test('without credentials for the next hop Postactor talks as a stranger, and the smarthost refuses to relay', async () => {
    const dir = tempDir({ sasl_passwd: 'other.example relayuser:secret\n' });
    const s = await startServer({
      mainCf: { relayhost: `[127.0.0.1]:${smarthost.port}`, smtp_sasl_auth_enable: 'yes', smtp_sasl_password_maps: `texthash:${join(dir, 'sasl_passwd')}` },
    });
    servers.push(s);
    await send(s, 'five@example.net');
    const line = await s.waitForLog(/to=<five@example\.net>, .*status=bounced/, 20_000);
    assert.match(line, /said: 554 5\.7\.1 <five@example\.net>: Recipient address rejected: Access denied \(in reply to RCPT TO command\)/);
  });
});

