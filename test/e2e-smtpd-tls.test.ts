/**
 * TLS in smtpd, end to end, with real clients (openssl s_client, swaks, nodemailer, a raw TLS
 * socket) against one running server whose master.cf offers one smtpd per TLS setting:
 *
 *   PORT      level may, RSA and ECDSA certificates (main.cf), loglevel 1, received header
 *   encrypt   -o smtpd_tls_security_level=encrypt
 *   wrapper   -o smtpd_tls_wrappermode=yes, certificates from smtpd_tls_chain_files
 *   none      -o smtpd_tls_security_level=none
 *   broken    -o smtpd_tls_cert_file=/nonexistent… (STARTTLS answers 454)
 *   tls12     -o smtpd_tls_protocols=!SSLv2,!SSLv3,!TLSv1.3 -o smtpd_tls_exclude_ciphers=AESGCM
 *
 * Certificates are made by openssl in the test's directory; mail goes to the project's sink,
 * whose copy shows the Received header smtpd's session produced.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import nodemailer from 'nodemailer';
import { SmtpSink } from '../src/smtp/sink.js';
import { protocolRange } from '../src/smtpd/tls.js';
import { checkConfig } from '../actors/master/index.js';
import { loadConfig } from '../src/config/index.js';
import { NODE, POSTACTOR_JS, SmtpDialogue, freePort, startServer, type TestServer, BACKEND_SERVICES, deliveredWithSubject } from './helpers/server.js';
import { recordingPolicyServer } from './helpers/policy-server.js';
import { tempDirs } from './helpers/temp.js';
import { runClient } from './helpers/run-client.js';

const tempDir = tempDirs('postactor-tls-');

/** openssl with its input written at once: s_client reads stdin only after its handshake (see runClient). */
const openssl = (args: string[], input: string, inputWhen?: () => boolean) => runClient('openssl', args, input, { inputDelayMs: 0, inputWhen });

/** Makes a self-signed certificate for mx.postactor.test: rsa or ecdsa (P-256). */
function makeCert(dir: string, name: string, kind: 'rsa' | 'ecdsa'): { cert: string; key: string } {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  const alg = kind === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];
  const r = spawnSync('openssl', ['req', '-x509', ...alg, '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=mx.postactor.test'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { cert, key };
}

/** SMTP replies read from a socket (plain or TLS): next() is the next complete reply. */
function replies(socket: net.Socket): { next(timeoutMs?: number): Promise<string | null>; stop(): void } {
  let buf = '';
  const queue: string[] = [];
  let wake: (() => void) | null = null;
  const onData = (d: Buffer) => {
    buf += d.toString('latin1');
    for (;;) {
      const m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\n/.exec(buf);
      if (!m) break;
      queue.push(m[0]);
      buf = buf.slice(m[0].length);
    }
    wake?.();
  };
  socket.on('data', onData);
  return {
    async next(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (queue.length === 0 && Date.now() < deadline) {
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
      return queue.shift() ?? null;
    },
    stop: () => socket.off('data', onData),
  };
}

/** STARTTLS on a fresh connection: the certificate the server presents (SHA-256 fingerprint). */
async function starttlsFingerprint(port: number): Promise<string> {
  const sock = net.connect(port, '127.0.0.1');
  const plain = replies(sock);
  await plain.next();
  sock.write('STARTTLS\r\n');
  assert.equal(await plain.next(), '220 2.0.0 Ready to start TLS\r\n');
  plain.stop();
  const secure = tls.connect({ socket: sock, rejectUnauthorized: false, sigalgs: 'rsa_pss_rsae_sha256' });
  await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
  const fp = secure.getPeerCertificate().fingerprint256;
  secure.destroy();
  return fp;
}

const MESSAGE = (subject: string) => `From: <tls@example.org>\r\nTo: <tls-rcpt@example.com>\r\nSubject: ${subject}\r\n\r\nover TLS\r\n`;

describe('smtpd TLS', () => {
  let server: TestServer;
  let sink: SmtpSink;
  let dir: string;
  // A policy server (check_policy_service) that records each request and answers DUNNO.
  const { server: policy, requests: policyRequests } = recordingPolicyServer();
  const ports: Record<'encrypt' | 'wrapper' | 'none' | 'broken' | 'tls12', number> = { encrypt: 0, wrapper: 0, none: 0, broken: 0, tls12: 0 };

  before(async () => {
    dir = tempDir();
    const rsa = makeCert(dir, 'rsa', 'rsa');
    const ec = makeCert(dir, 'ec', 'ecdsa');
    // Chain files: key first, then its certificate.
    writeFileSync(join(dir, 'rsa-chain.pem'), readFileSync(rsa.key, 'utf8') + readFileSync(rsa.cert, 'utf8'));
    writeFileSync(join(dir, 'ec-chain.pem'), readFileSync(ec.key, 'utf8') + readFileSync(ec.cert, 'utf8'));
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    await new Promise<void>((r) => policy.listen(0, '127.0.0.1', r));
    server = await startServer({
      sinkPort,
      mainCf: {
        smtpd_tls_security_level: 'may',
        smtpd_tls_cert_file: rsa.cert,
        smtpd_tls_key_file: rsa.key,
        smtpd_tls_eccert_file: ec.cert,
        smtpd_tls_eckey_file: ec.key,
        smtpd_tls_loglevel: '1',
        smtpd_tls_received_header: 'yes',
        smtpd_starttls_timeout: '2s',
        smtpd_recipient_restrictions: `check_policy_service inet:127.0.0.1:${(policy.address() as net.AddressInfo).port}`,
      },
      masterCf: [
        '127.0.0.1:{{PORT}} inet n - n - 2 smtpd',
        `127.0.0.1:${ports.encrypt} inet n - n - 1 smtpd -o smtpd_tls_security_level=encrypt`,
        `127.0.0.1:${ports.wrapper} inet n - n - 1 smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_chain_files=${dir}/rsa-chain.pem,${dir}/ec-chain.pem`,
        `127.0.0.1:${ports.none} inet n - n - 1 smtpd -o smtpd_tls_security_level=none`,
        `127.0.0.1:${ports.broken} inet n - n - 1 smtpd -o smtpd_tls_cert_file=/nonexistent/postactor-cert.pem -o syslog_name=postactor/broken`,
        `127.0.0.1:${ports.tls12} inet n - n - 1 smtpd -o smtpd_tls_protocols=!SSLv2,!SSLv3,!TLSv1.3 -o smtpd_tls_exclude_ciphers=AESGCM`,
        ...BACKEND_SERVICES,
        '',
      ].join('\n'),
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
    policy.close();
  });

  const delivered = (subject: string): Promise<string> => deliveredWithSubject(sink, subject);

  test('EHLO announces STARTTLS; plaintext pipelined after STARTTLS is discarded; the session starts over inside TLS', async () => {
    const sock = net.connect(server.port, '127.0.0.1');
    const plain = replies(sock);
    assert.match((await plain.next())!, /^220 mx\.postactor\.test ESMTP/);
    sock.write('EHLO client.test\r\n');
    const ehlo = (await plain.next())!;
    assert.match(ehlo, /^250-STARTTLS\r$/m);
    sock.write('MAIL FROM:<before@example.org>\r\n');
    assert.match((await plain.next())!, /^250 2\.1\.0 Ok/);
    // The injection: RSET in the same write as STARTTLS must never be answered.
    sock.write('STARTTLS\r\nRSET\r\n');
    assert.equal(await plain.next(), '220 2.0.0 Ready to start TLS\r\n');
    plain.stop();
    const secure = tls.connect({ socket: sock, rejectUnauthorized: false, servername: 'mx.postactor.test' });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    const enc = replies(secure);
    assert.equal(await enc.next(500), null, 'the pipelined RSET got no reply inside TLS');
    // State reset: the MAIL transaction is gone (else "503 5.5.1 Error: nested MAIL command");
    // with smtpd_helo_required = no (Postfix's default) MAIL needs no new EHLO.
    secure.write('MAIL FROM:<after@example.org>\r\n');
    assert.match((await enc.next())!, /^250 2\.1\.0 Ok/);
    secure.write('EHLO client.test\r\n');
    const ehlo2 = (await enc.next())!;
    assert.match(ehlo2, /^250-mx\.postactor\.test/);
    assert.doesNotMatch(ehlo2, /STARTTLS/, 'no STARTTLS inside TLS');
    secure.write('STARTTLS\r\n');
    assert.equal(await enc.next(), '554 5.5.1 Error: TLS already active\r\n');
    secure.write('QUIT\r\n');
    assert.match((await enc.next())!, /^221 /);
    secure.destroy();
    await server.waitForLog(/disconnect from localhost\[127\.0\.0\.1\] ehlo=2 starttls=1\/2 mail=2 quit=1 commands=6\/7$/, 10_000);
  });

  test('openssl s_client -starttls smtp delivers; the maillog has the TLS line; Received says ESMTPS with the "(using …)" block', async () => {
    const input = 'EHLO openssl.test\r\nMAIL FROM:<tls@example.org>\r\nRCPT TO:<tls-rcpt@example.com>\r\nDATA\r\n'
      + MESSAGE('s_client-starttls') + '.\r\nQUIT\r\n';
    const r = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${server.port}`, '-quiet', '-sigalgs', 'rsa_pss_rsae_sha256'], input);
    assert.match(r.out, /250 2\.0\.0 Ok: queued as/, r.out);
    await server.waitForLog(/smtpd\[\d+\]: Anonymous TLS connection established from localhost\[127\.0\.0\.1\]: TLSv1\.3 with cipher TLS_AES_256_GCM_SHA384 \(256\/256 bits\) server-signature RSA-PSS \(2048 bits\)$/, 10_000);
    const data = await delivered('s_client-starttls');
    assert.match(data, /^Received: from openssl\.test \(localhost \[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.3 with cipher TLS_AES_256_GCM_SHA384 \(256\/256 bits\)\r\n\t server-signature RSA-PSS \(2048 bits\)\)\r\n\t\(No client certificate requested\)\r\n\tby mx\.postactor\.test \(Postactor\) with ESMTPS id \w+\r\n\tfor <tls-rcpt@example\.com>; /);
  });

  test('the ECDSA certificate serves a client that asks for ECDSA', async () => {
    const r = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${server.port}`, '-quiet', '-sigalgs', 'ecdsa_secp256r1_sha256'], 'QUIT\r\n');
    assert.match(r.out, /221 2\.0\.0 Bye/, r.out);
    await server.waitForLog(/Anonymous TLS connection established from localhost\[127\.0\.0\.1\]: TLSv1\.3 with cipher \S+ \(256\/256 bits\) server-signature ECDSA \(prime256v1\)$/, 10_000);
  });

  test('swaks --tls delivers', async () => {
    const r = await runClient('swaks', ['--server', `127.0.0.1:${server.port}`, '--tls', '--from', 'tls@example.org', '--to', 'tls-rcpt@example.com',
      '--helo', 'swaks.test', '--header', 'Subject: swaks-tls', '--body', 'hello over STARTTLS', '--timeout', '10'], '');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /<-  220 2\.0\.0 Ready to start TLS\n=== TLS started with cipher TLSv1\.3/);
    assert.match(await delivered('swaks-tls'), /with ESMTPS id /);
  });

  test('nodemailer with requireTLS delivers', async () => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, requireTLS: true, tls: { rejectUnauthorized: false }, name: 'nodemailer.test' });
    try {
      const info = await transport.sendMail({ from: 'tls@example.org', to: 'tls-rcpt@example.com', subject: 'nodemailer-requiretls', text: 'hi' });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as/);
    } finally {
      transport.close();
    }
    assert.match(await delivered('nodemailer-requiretls'), /\tby mx\.postactor\.test \(Postactor\) with ESMTPS id /);
  });

  test('the policy service gets encryption_protocol, encryption_cipher and encryption_keysize', () => {
    const rcpt = policyRequests.filter((r) => r.get('protocol_state') === 'RCPT' && r.get('helo_name') === 'nodemailer.test');
    assert.ok(rcpt.length > 0, 'a policy request for the nodemailer session');
    assert.equal(rcpt[0]!.get('encryption_protocol'), 'TLSv1.3');
    assert.equal(rcpt[0]!.get('encryption_cipher'), 'TLS_AES_256_GCM_SHA384');
    assert.equal(rcpt[0]!.get('encryption_keysize'), '256');
  });

  test('level encrypt: "530 5.7.0 Must issue a STARTTLS command first" for mail commands; NOOP, EHLO and QUIT work', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(ports.encrypt);
    try {
      assert.equal(greeting.code, 220);
      assert.match((await smtp.cmd('EHLO client.test')).lines.join('\n'), /^STARTTLS$/m);
      assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).line, '530 5.7.0 Must issue a STARTTLS command first');
      assert.equal((await smtp.cmd('RSET')).line, '530 5.7.0 Must issue a STARTTLS command first');
      assert.equal((await smtp.cmd('VRFY root')).line, '530 5.7.0 Must issue a STARTTLS command first');
      assert.equal((await smtp.cmd('NOOP')).line, '250 2.0.0 Ok');
      assert.match((await smtp.cmd('QUIT')).line, /^221 /);
    } finally {
      smtp.close();
    }
    await server.waitForLog(/disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=0\/1 rset=0\/1 noop=1 vrfy=0\/1 quit=1 commands=3\/6$/, 10_000);
    const r = await runClient('swaks', ['--server', `127.0.0.1:${ports.encrypt}`, '--tls', '--from', 'tls@example.org', '--to', 'tls-rcpt@example.com',
      '--header', 'Subject: swaks-encrypt', '--timeout', '10'], '');
    assert.equal(r.code, 0, r.out);
    assert.match(await delivered('swaks-encrypt'), /with ESMTPS id /);
  });

  test('wrapper mode (smtpd_tls_wrappermode = yes): TLS first, then the 220; openssl s_client -connect and swaks --tlsc deliver', async () => {
    const input = 'EHLO wrapper.test\r\nMAIL FROM:<tls@example.org>\r\nRCPT TO:<tls-rcpt@example.com>\r\nDATA\r\n' + MESSAGE('s_client-wrapper') + '.\r\nQUIT\r\n';
    const r = await openssl(['s_client', '-connect', `127.0.0.1:${ports.wrapper}`, '-quiet'], input);
    assert.match(r.out, /^220 mx\.postactor\.test ESMTP/m, r.out);
    assert.match(r.out, /250 2\.0\.0 Ok: queued as/, r.out);
    assert.match(await delivered('s_client-wrapper'), /^Received: from wrapper\.test \(localhost \[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.3 /);
    const s = await runClient('swaks', ['--server', `127.0.0.1:${ports.wrapper}`, '--tlsc', '--from', 'tls@example.org', '--to', 'tls-rcpt@example.com',
      '--header', 'Subject: swaks-tlsc', '--timeout', '10'], '');
    assert.equal(s.code, 0, s.out);
    assert.match(await delivered('swaks-tlsc'), /with ESMTPS id /);
    // Plaintext gets no greeting: the server waits for a TLS ClientHello.
    const plain = net.connect(ports.wrapper, '127.0.0.1');
    const got = replies(plain);
    assert.equal(await got.next(400), null);
    plain.destroy();
    // smtpd_tls_chain_files wins over the legacy files main.cf also names, with Postfix's warning.
    await server.waitForLog(/warning: Both smtpd_tls_chain_files and one or more of the legacy  smtpd_tls_cert_file, smtpd_tls_eccert_file or smtpd_tls_dcert_file are non-empty; the legacy  parameters will be ignored$/, 5000);
  });

  test('a failed handshake is logged as Postfix logs it, after STARTTLS and in wrapper mode', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    await smtp.cmd('EHLO garbage.test');
    assert.equal((await smtp.cmd('STARTTLS')).line, '220 2.0.0 Ready to start TLS');
    smtp.write('this is not a TLS ClientHello\r\n');
    await server.waitForLog(/smtpd\[\d+\]: SSL_accept error from localhost\[127\.0\.0\.1\]: -1$/, 10_000);
    await server.waitForLog(/smtpd\[\d+\]: warning: TLS library problem: error:0A00010B:SSL routines:[^:]*:wrong version number/, 10_000);
    await server.waitForLog(/smtpd\[\d+\]: lost connection after STARTTLS from localhost\[127\.0\.0\.1\]$/, 10_000);
    await server.waitForLog(/disconnect from localhost\[127\.0\.0\.1\] ehlo=1 starttls=0\/1 commands=1\/2$/, 10_000);
    smtp.close();
    const plain = net.connect(ports.wrapper, '127.0.0.1');
    plain.write('EHLO plaintext.test\r\n');
    await server.waitForLog(/smtpd\[\d+\]: lost connection after CONNECT from localhost\[127\.0\.0\.1\]$/, 10_000);
    plain.destroy();
  });

  test('a session made with one smtpd thread resumes with another (shared ticket keys)', async () => {
    const sess = join(dir, 'session.pem');
    // "QUIT" ends s_client at once: first wait for the TLSv1.3 ticket (s_client writes -sess_out on it).
    const ticket = () => existsSync(sess) && readFileSync(sess, 'utf8').includes('-----END SSL SESSION PARAMETERS-----');
    const first = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${server.port}`, '-sess_out', sess], 'QUIT\r\n', ticket);
    assert.match(first.out, /^New, TLSv1\.3/m, first.out);
    // The wrapper service runs in threads of its own.
    const again = await openssl(['s_client', '-connect', `127.0.0.1:${ports.wrapper}`, '-sess_in', sess], 'QUIT\r\n');
    assert.match(again.out, /^Reused, TLSv1\.3/m, again.out);
  });

  test('smtpd_starttls_timeout bounds the handshake, after STARTTLS and in wrapper mode', async () => {
    const closedWithin = (sock: net.Socket): Promise<number> => {
      const t0 = Date.now();
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(Infinity), 10_000);
        sock.on('error', () => undefined).once('close', () => {
          clearTimeout(timer);
          resolve(Date.now() - t0);
        });
      });
    };
    const { smtp } = await SmtpDialogue.connect(server.port);
    assert.equal((await smtp.cmd('STARTTLS')).line, '220 2.0.0 Ready to start TLS');
    // The two waits run side by side (separate services, separate threads): each is timed from
    // its own start, so neither bound is looser than one after the other.
    const wrapped = net.connect(ports.wrapper, '127.0.0.1');
    const [afterStarttls, wrapper] = await Promise.all([closedWithin(smtp.socket), closedWithin(wrapped)]);
    // smtpd_timeout (300s) would keep them open; smtpd_starttls_timeout = 2s closes them.
    assert.ok(afterStarttls >= 1500 && afterStarttls < 6000, `STARTTLS: closed after ${afterStarttls} ms`);
    assert.ok(wrapper >= 1500 && wrapper < 6000, `wrapper: closed after ${wrapper} ms`);
  });

  test('level none: no STARTTLS in EHLO, and STARTTLS answers 502 5.5.1', async () => {
    const { smtp } = await SmtpDialogue.connect(ports.none);
    try {
      assert.doesNotMatch((await smtp.cmd('EHLO client.test')).lines.join('\n'), /STARTTLS/);
      assert.equal((await smtp.cmd('STARTTLS')).line, '502 5.5.1 Error: command not implemented');
      assert.equal((await smtp.cmd('STARTTLS now')).line, '501 5.5.4 Syntax: STARTTLS');
    } finally {
      smtp.close();
    }
  });

  test('a certificate that cannot be loaded: the warning at start, STARTTLS still announced, and 454 4.7.0', async () => {
    await server.waitForLog(/postactor\/broken\/smtpd\[\d+\]: warning: cannot get RSA certificate from file "\/nonexistent\/postactor-cert\.pem": disabling TLS support$/, 5000);
    const { smtp } = await SmtpDialogue.connect(ports.broken);
    try {
      assert.match((await smtp.cmd('EHLO client.test')).lines.join('\n'), /^STARTTLS$/m);
      assert.equal((await smtp.cmd('STARTTLS')).line, '454 4.7.0 TLS not available due to local problem');
      // The session goes on in plaintext.
      assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).line, '250 2.1.0 Ok');
    } finally {
      smtp.close();
    }
  });

  test('smtpd_tls_protocols and smtpd_tls_exclude_ciphers: TLSv1.2 only, no AES-GCM', async () => {
    const r = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${ports.tls12}`, '-quiet'], 'QUIT\r\n');
    assert.match(r.out, /221 2\.0\.0 Bye/, r.out);
    const line = await server.waitForLog(/Anonymous TLS connection established from localhost\[127\.0\.0\.1\]: TLSv1\.2 with cipher /, 10_000);
    assert.doesNotMatch(line, /GCM/);
    const only13 = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${ports.tls12}`, '-tls1_3', '-quiet'], 'QUIT\r\n');
    assert.doesNotMatch(only13.out, /221 2\.0\.0 Bye/, 'a TLSv1.3-only client finds no protocol in common');
  });

  test('postactor reload re-reads the certificates', async () => {
    const before = await starttlsFingerprint(server.port);
    makeCert(dir, 'rsa', 'rsa');
    const r = spawnSync(NODE, [POSTACTOR_JS, '-c', server.dir, 'reload'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const deadline = Date.now() + 15_000;
    let now = before;
    while (now === before && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 200));
      now = await starttlsFingerprint(server.port);
    }
    assert.notEqual(now, before, 'the new certificate is presented after the reload');
  });
});

test('protocol lists map to a Node version range as Postfix reads them', () => {
  assert.deepEqual(protocolRange('>=TLSv1'), { min: 'TLSv1', max: 'TLSv1.3' });
  assert.deepEqual(protocolRange('!SSLv2, !SSLv3'), { min: 'TLSv1', max: 'TLSv1.3' });
  assert.deepEqual(protocolRange('>=TLSv1.2'), { min: 'TLSv1.2', max: 'TLSv1.3' });
  assert.deepEqual(protocolRange('>=TLSv1.2 <=TLSv1.2'), { min: 'TLSv1.2', max: 'TLSv1.2' });
  assert.deepEqual(protocolRange('TLSv1.2, TLSv1.3'), { min: 'TLSv1.2', max: 'TLSv1.3' });
  assert.deepEqual(protocolRange('>=0303'), { min: 'TLSv1.2', max: 'TLSv1.3' });
  // Node has a range only: a hole leaves the range above it.
  assert.deepEqual(protocolRange('!SSLv2:!SSLv3:!TLSv1.1'), { min: 'TLSv1.2', max: 'TLSv1.3' });
  assert.equal(protocolRange('>=TLSv9'), null);
  assert.equal(protocolRange('!TLSv1 !TLSv1.1 !TLSv1.2 !TLSv1.3'), null);
});


test('postactor check refuses an invalid smtpd_tls_security_level, naming the service line', () => {
  const master = '127.0.0.1:2599 inet n - n - 1 smtpd -o smtpd_tls_security_level=sometimes\ncleanup unix n - n - 1 cleanup\nqmgr unix n - n 300 1 qmgr\n';
  const dir = tempDir({ 'main.cf': `queue_directory = ${tempDir()}/q\n`, 'master.cf': master });
  assert.deepEqual(checkConfig(loadConfig(dir)), [`${dir}/master.cf:1: smtpd_tls_security_level = sometimes: Invalid TLS level "sometimes"`]);
});
