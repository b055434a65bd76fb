/**
 * Client certificates and SNI in smtpd, end to end: openssl s_client and swaks present
 * certificates made by a test CA (and a self-signed one) to one running server whose master.cf
 * offers one smtpd per setting:
 *
 *   PORT      level may, smtpd_tls_ask_ccert, smtpd_tls_CAfile, loglevel 2, received header,
 *             permit_tls_clientcerts with relay_clientcerts, check_ccert_access, a policy
 *             service, tls_server_sni_maps
 *   req       -o smtpd_tls_security_level=encrypt -o smtpd_tls_req_ccert=yes
 *   reqw      -o smtpd_tls_wrappermode=yes -o smtpd_tls_req_ccert=yes
 *   all       -o smtpd_relay_restrictions=permit_tls_all_clientcerts,reject_unauth_destination
 *   optional  -o smtpd_tls_req_ccert=yes at level may (ignored, with Postfix's warning)
 *
 * 127.0.0.1 is outside mynetworks, so only a certificate lets a client relay.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink } from '../src/smtp/sink.js';
import { freePort, NODE, POSTACTOR_JS, SmtpDialogue, startServer, type TestServer, BACKEND_SERVICES, deliveredWithSubject } from './helpers/server.js';
import { recordingPolicyServer } from './helpers/policy-server.js';
import { tempDirs } from './helpers/temp.js';
import { runClient } from './helpers/run-client.js';
import { makeTestCertificates } from './helpers/test-ca.js';
import { certFingerprint, deepCert, pubkeyFingerprint, selfSignedCert, signedCert, type TestCert } from './helpers/client-certs.js';

const tempDir = tempDirs('postactor-ccert-');

/** openssl with its input written at once: s_client reads stdin only after its handshake (see runClient). */
const openssl = (args: string[], input: string) => runClient('openssl', args, input, { inputDelayMs: 0 });

const MESSAGE = (subject: string) => `From: <cc@example.org>\r\nTo: <far@elsewhere.example>\r\nSubject: ${subject}\r\n\r\nwith a client certificate\r\n`;
const SESSION = (helo: string, subject: string, rcpt = 'far@elsewhere.example') =>
  `EHLO ${helo}\r\nMAIL FROM:<cc@example.org>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n${MESSAGE(subject)}.\r\nQUIT\r\n`;

describe('smtpd client certificates and SNI', () => {
  let server: TestServer;
  let sink: SmtpSink;
  let dir: string;
  let client: TestCert;
  let other: TestCert;
  let rogue: TestCert;
  let a: TestCert;
  let b: TestCert;
  let clientFp: string;
  let clientPk: string;
  const ports = { req: 0, reqw: 0, all: 0, optional: 0, dh: 0, groups: 0, open: 0, deep: 0, capath: 0, badca: 0 };
  let deep: TestCert & { intermediates: string };
  // A policy server (check_policy_service) that records each request and answers DUNNO.
  const { server: policy, requests: policyRequests } = recordingPolicyServer();

  before(async () => {
    dir = tempDir();
    // The test CA (ca.pem) and the server's certificate it signs (server.pem, server.key).
    const { caFile } = makeTestCertificates(dir, ['mx.postactor.test']);
    client = signedCert(dir, 'client', 'client.example');
    other = signedCert(dir, 'other', 'other.example');
    rogue = selfSignedCert(dir, 'rogue', 'rogue.example');
    deep = deepCert(dir, 'deep', 'deep.example', 2);
    mkdirSync(join(dir, 'capath'));
    copyFileSync(caFile, join(dir, 'capath', 'test-ca.pem'));
    a = selfSignedCert(dir, 'a', 'a.example');
    b = selfSignedCert(dir, 'b', 'wild.b.example');
    clientFp = certFingerprint(client.cert);
    clientPk = pubkeyFingerprint(client.cert);
    // relay_clientcerts: the fingerprint, then whatever (Postfix ignores the value).
    writeFileSync(join(dir, 'relay_clientcerts'), `${clientFp} client.example\n`);
    // check_ccert_access by the public-key fingerprint of the self-signed certificate.
    writeFileSync(join(dir, 'ccert_access'), `${pubkeyFingerprint(rogue.cert)} REJECT bad certificate\n`);
    writeFileSync(join(dir, 'sni'), `a.example ${a.chain}\n.b.example ${b.chain}\nbroken.example /nonexistent/postactor-sni.pem\n`);
    // An RSA certificate for the DHE ciphers, and 3072-bit DH parameters (a named group: instant).
    const rsa = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'rsa.key'), '-out', join(dir, 'rsa.pem'), '-days', '2', '-subj', '/CN=mx.postactor.test'], { encoding: 'utf8' });
    assert.equal(rsa.status, 0, rsa.stderr);
    writeFileSync(join(dir, 'rsa-chain.pem'), readFileSync(join(dir, 'rsa.key'), 'utf8') + readFileSync(join(dir, 'rsa.pem'), 'utf8'));
    const dh = spawnSync('openssl', ['genpkey', '-genparam', '-algorithm', 'DH', '-pkeyopt', 'group:ffdhe3072', '-out', join(dir, 'dh.pem')], { encoding: 'utf8' });
    assert.equal(dh.status, 0, dh.stderr);
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    await new Promise<void>((r) => policy.listen(0, '127.0.0.1', r));
    server = await startServer({
      sinkPort,
      mainCf: {
        mynetworks: '192.0.2.0/24',
        smtpd_tls_security_level: 'may',
        smtpd_tls_cert_file: join(dir, 'server.pem'),
        smtpd_tls_key_file: join(dir, 'server.key'),
        smtpd_tls_CAfile: caFile,
        smtpd_tls_ask_ccert: 'yes',
        smtpd_tls_loglevel: '2',
        smtpd_tls_received_header: 'yes',
        relay_clientcerts: `texthash:${dir}/relay_clientcerts`,
        tls_server_sni_maps: `texthash:${dir}/sni`,
        smtpd_client_restrictions: `check_ccert_access texthash:${dir}/ccert_access`,
        smtpd_relay_restrictions: 'permit_mynetworks, permit_tls_clientcerts, reject_unauth_destination',
        smtpd_recipient_restrictions: `check_policy_service inet:127.0.0.1:${(policy.address() as net.AddressInfo).port}`,
      },
      masterCf: [
        '127.0.0.1:{{PORT}} inet n - n - 2 smtpd',
        `127.0.0.1:${ports.req} inet n - n - 1 smtpd -o smtpd_tls_security_level=encrypt -o smtpd_tls_req_ccert=yes -o smtpd_tls_ask_ccert=no`,
        `127.0.0.1:${ports.reqw} inet n - n - 1 smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_req_ccert=yes`,
        `127.0.0.1:${ports.all} inet n - n - 1 smtpd -o smtpd_relay_restrictions=permit_tls_all_clientcerts,reject_unauth_destination -o smtpd_client_restrictions=`,
        `127.0.0.1:${ports.open} inet n - n - 1 smtpd -o smtpd_relay_restrictions=permit,reject_unauth_destination -o smtpd_client_restrictions=`,
        `127.0.0.1:${ports.deep} inet n - n - 1 smtpd -o smtpd_tls_security_level=encrypt -o smtpd_tls_req_ccert=yes -o smtpd_tls_ccert_verifydepth=0`,
        `127.0.0.1:${ports.capath} inet n - n - 1 smtpd -o smtpd_tls_CAfile= -o smtpd_tls_CApath=${dir}/capath -o smtpd_relay_restrictions=permit_tls_all_clientcerts,reject_unauth_destination -o smtpd_client_restrictions=`,
        `127.0.0.1:${ports.badca} inet n - n - 1 smtpd -o smtpd_tls_CAfile=/nonexistent/postactor-ca.pem -o syslog_name=postactor/badca`,
        `127.0.0.1:${ports.optional} inet n - n - 1 smtpd -o smtpd_tls_req_ccert=yes -o syslog_name=postactor/optional`,
        `127.0.0.1:${ports.dh} inet n - n - 1 smtpd -o smtpd_tls_chain_files=${dir}/rsa-chain.pem -o smtpd_tls_dh1024_param_file=${dir}/dh.pem -o smtpd_tls_ask_ccert=no -o tls_ssl_options=no_ticket,bogus_option -o syslog_name=postactor/dh`,
        `127.0.0.1:${ports.groups} inet n - n - 1 smtpd -o tls_eecdh_auto_curves=secp384r1 -o tls_ffdhe_auto_groups= -o syslog_name=postactor/groups`,
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
  const sClient = (port: number, extra: string[], input: string) =>
    openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${port}`, '-quiet', ...extra], input);
  const withCert = (c: TestCert) => ['-cert', c.cert, '-key', c.key];

  test('openssl s_client with the listed certificate relays (permit_tls_clientcerts); log and Received name it', async () => {
    const r = await sClient(server.port, withCert(client), SESSION('certified.test', 'ccert-s_client'));
    assert.match(r.out, /250 2\.0\.0 Ok: queued as/, r.out);
    await server.waitForLog(new RegExp(`smtpd\\[\\d+\\]: localhost\\[127\\.0\\.0\\.1\\]: subject_CN=client\\.example, issuer=Postactor Test CA, fingerprint=${clientFp}, pkey_fingerprint=${clientPk}$`), 10_000);
    await server.waitForLog(/smtpd\[\d+\]: Trusted TLS connection established from localhost\[127\.0\.0\.1\]: TLSv1\.3 with cipher /, 10_000);
    const data = await delivered('ccert-s_client');
    assert.match(data, /^Received: from certified\.test \(localhost \[127\.0\.0\.1\]\)\r\n\t\(using TLSv1\.3 with cipher [^\r]+\r\n\t server-signature ECDSA \(prime256v1\)\)\r\n\t\(Client CN "client\.example", Issuer "Postactor Test CA" \(verified OK\)\)\r\n\tby mx\.postactor\.test \(Postactor\) with ESMTPS id /);
  });

  test('swaks --tls-cert/--tls-key relays; without a certificate the same relay is refused', async () => {
    const swaks = (extra: string[], subject: string) => runClient('swaks', ['--server', `127.0.0.1:${server.port}`, '--tls', ...extra,
      '--from', 'cc@example.org', '--to', 'far@elsewhere.example', '--helo', 'swaks.test', '--header', `Subject: ${subject}`, '--timeout', '10'], '');
    const ok = await swaks(['--tls-cert', client.cert, '--tls-key', client.key], 'ccert-swaks');
    assert.equal(ok.code, 0, ok.out);
    assert.match(await delivered('ccert-swaks'), /\(Client CN "client\.example", Issuer "Postactor Test CA" \(verified OK\)\)/);
    const refused = await swaks([], 'ccert-none');
    assert.notEqual(refused.code, 0);
    assert.match(refused.out, /<~\* 554 5\.7\.1 <far@elsewhere\.example>: Relay access denied/, refused.out);
    await server.waitForLog(/Anonymous TLS connection established from localhost\[127\.0\.0\.1\]: /, 10_000);
    // A trusted certificate that relay_clientcerts does not list gets no relaying either.
    const unlisted = await sClient(server.port, withCert(other), SESSION('other.test', 'ccert-other'));
    assert.match(unlisted.out, /554 5\.7\.1 <far@elsewhere\.example>: Relay access denied/, unlisted.out);
  });

  test('the policy service gets ccert_subject, ccert_issuer, ccert_fingerprint and ccert_pubkey_fingerprint', () => {
    const rcpt = policyRequests.filter((r) => r.get('helo_name') === 'certified.test');
    assert.ok(rcpt.length > 0, 'a policy request for the certified session');
    assert.equal(rcpt[0]!.get('ccert_subject'), 'client.example');
    // xtext: the spaces of "Postactor Test CA" are +20.
    assert.equal(rcpt[0]!.get('ccert_issuer'), 'Postactor+20Test+20CA');
    assert.equal(rcpt[0]!.get('ccert_fingerprint'), clientFp);
    assert.equal(rcpt[0]!.get('ccert_pubkey_fingerprint'), clientPk);
  });

  test('check_ccert_access matches the public-key fingerprint of a self-signed certificate: "Client certificate rejected"', async () => {
    const r = await sClient(server.port, withCert(rogue), SESSION('rogue.test', 'ccert-rogue', 'user@elsewhere.example'));
    assert.match(r.out, /554 5\.7\.1 <rogue\.example>: Client certificate rejected: bad certificate/, r.out);
    await server.waitForLog(/Untrusted TLS connection established from localhost\[127\.0\.0\.1\]: /, 10_000);
    await server.waitForLog(/NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 554 5\.7\.1 <rogue\.example>: Client certificate rejected: bad certificate; from=<cc@example\.org> to=<user@elsewhere\.example> proto=ESMTP helo=<rogue\.test>$/, 10_000);
  });

  test('permit_tls_all_clientcerts: any trusted certificate relays, an untrusted one does not', async () => {
    const ok = await sClient(ports.all, withCert(other), SESSION('all.test', 'ccert-all'));
    assert.match(ok.out, /250 2\.0\.0 Ok: queued as/, ok.out);
    assert.match(await delivered('ccert-all'), /\(Client CN "other\.example", Issuer "Postactor Test CA" \(verified OK\)\)/);
    const no = await sClient(ports.all, withCert(rogue), SESSION('all-rogue.test', 'ccert-all-rogue'));
    assert.match(no.out, /554 5\.7\.1 <far@elsewhere\.example>: Relay access denied/, no.out);
  });

  test('smtpd_tls_req_ccert: without a certificate, the next command gets 421 4.7.1 "No client certificate presented"', async () => {
    const r = await sClient(ports.req, [], 'EHLO nocert.test\r\nQUIT\r\n');
    assert.match(r.out, /^421 4\.7\.1 mx\.postactor\.test Error: No client certificate presented\r?$/m, r.out);
    assert.doesNotMatch(r.out, /250[ -]mx\.postactor\.test/, 'the EHLO was not run');
    await server.waitForLog(/smtpd\[\d+\]: NOQUEUE: abort: TLS from localhost\[127\.0\.0\.1\]: No client certificate presented$/, 10_000);
    await server.waitForLog(/smtpd\[\d+\]: disconnect from localhost\[127\.0\.0\.1\] ehlo=1 starttls=1 commands=2$/, 10_000);
  });

  test('smtpd_tls_req_ccert: an untrusted certificate gets "Client certificate not trusted"; a trusted one delivers', async () => {
    const r = await sClient(ports.req, withCert(rogue), 'EHLO rogue.test\r\nQUIT\r\n');
    assert.match(r.out, /^421 4\.7\.1 mx\.postactor\.test Error: Client certificate not trusted\r?$/m, r.out);
    await server.waitForLog(/smtpd\[\d+\]: certificate verification failed for localhost\[127\.0\.0\.1\]: self-signed certificate$/, 10_000);
    await server.waitForLog(/smtpd\[\d+\]: NOQUEUE: abort: TLS from localhost\[127\.0\.0\.1\]: Client certificate not trusted$/, 10_000);
    const ok = await sClient(ports.req, withCert(client), SESSION('req.test', 'ccert-req'));
    assert.match(ok.out, /250 2\.0\.0 Ok: queued as/, ok.out);
    // smtpd_tls_ask_ccert = no on that service: Received does not claim a certificate was asked for.
    assert.match(await delivered('ccert-req'), /\(Client CN "client\.example", Issuer "Postactor Test CA" \(verified OK\)\)/);
  });

  test('smtpd_tls_req_ccert in wrapper mode: 421 at once, instead of the greeting', async () => {
    const r = await openssl(['s_client', '-connect', `127.0.0.1:${ports.reqw}`, '-quiet'], 'EHLO wrapped.test\r\n');
    assert.match(r.out, /^421 4\.7\.1 mx\.postactor\.test Error: No client certificate presented\r?$/m, r.out);
    assert.doesNotMatch(r.out, /^220 /m);
    const ok = await openssl(['s_client', '-connect', `127.0.0.1:${ports.reqw}`, '-quiet', ...withCert(client)], SESSION('wrapped.test', 'ccert-wrapper'));
    assert.match(ok.out, /^220 mx\.postactor\.test ESMTP/m, ok.out);
    assert.match(ok.out, /250 2\.0\.0 Ok: queued as/, ok.out);
  });

  test('smtpd_tls_req_ccert at level may is ignored, with Postfix\'s warning', async () => {
    await server.waitForLog(/postactor\/optional\/smtpd\[\d+\]: warning: Can't require client certs unless TLS is required$/, 10_000);
    const { smtp } = await SmtpDialogue.connect(ports.optional);
    try {
      await smtp.cmd('EHLO plain.test');
      assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).line, '250 2.1.0 Ok');
    } finally {
      smtp.close();
    }
  });

  test('tls_server_sni_maps: a.example gets its own certificate, x.b.example the ".b.example" one, others the default', async () => {
    const subject = async (name: string): Promise<string> => {
      const r = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${server.port}`, '-servername', name], 'QUIT\r\n');
      const m = /^subject=(.*)$/m.exec(r.out);
      assert.ok(m, r.out);
      return m![1]!.trim();
    };
    assert.match(await subject('a.example'), /CN ?= ?a\.example$/);
    await server.waitForLog(/Anonymous TLS connection established from localhost\[127\.0\.0\.1\] to a\.example: TLSv1\.3 /, 10_000);
    assert.match(await subject('x.b.example'), /CN ?= ?wild\.b\.example$/);
    assert.match(await subject('nomatch.example'), /CN ?= ?mx\.postactor\.test$/);
    await server.waitForLog(/smtpd\[\d+\]: TLS SNI nomatch\.example from localhost\[127\.0\.0\.1\] not matched, using default chain$/, 10_000);
    // The chains are loaded when smtpd starts: a missing file is reported then; its name gets the default.
    await server.waitForLog(/smtpd\[\d+\]: warning: error opening chain file: \/nonexistent\/postactor-sni\.pem: No such file or directory$/, 5000);
    assert.match(await subject('broken.example'), /CN ?= ?mx\.postactor\.test$/);
  });

  // s_client without -quiet takes a line that starts with "Q" as its own quit command ("quit"
  // it is), and stops at the end of its input unless told -ign_eof.
  test('smtpd_tls_dh1024_param_file: the DHE ciphers use its group; tls_ssl_options = no_ticket issues no tickets, an unknown word is warned about', async () => {
    const r = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${ports.dh}`, '-ign_eof', '-tls1_2', '-cipher', 'DHE-RSA-AES256-GCM-SHA384'], 'quit\r\n');
    assert.match(r.out, /Server Temp Key: DH, 3072 bits/, r.out);
    assert.match(r.out, /221 2\.0\.0 Bye/, r.out);
    assert.doesNotMatch(r.out, /TLS session ticket:/, 'no session ticket with no_ticket');
    await server.waitForLog(/postactor\/dh\/smtpd\[\d+\]: warning: unknown tls_ssl_options value "bogus_option" in "no_ticket,bogus_option"$/, 10_000);
    // The main service does issue tickets.
    const main = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${server.port}`, '-ign_eof', '-tls1_2'], 'quit\r\n');
    assert.match(main.out, /TLS session ticket:/, main.out);
    // smtpd_tls_ask_ccert with smtpd_tls_CAfile: the CertificateRequest names the CA; without asking, none.
    assert.match(main.out, /^Acceptable client certificate CA names\n(?:\/CN=|CN ?= ?)Postactor Test CA$/m, main.out);
    assert.match(r.out, /^No client certificate CA names sent$/m);
  });

  test('tls_eecdh_auto_curves / tls_ffdhe_auto_groups: only the listed group is offered', async () => {
    const r = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${ports.groups}`, '-ign_eof', '-groups', 'X25519:secp384r1'], 'quit\r\n');
    assert.match(r.out, /Server Temp Key: ECDH, secp384r1, 384 bits/, r.out);
    assert.match(r.out, /221 2\.0\.0 Bye/, r.out);
    const none = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${ports.groups}`, '-ign_eof', '-groups', 'X25519'], 'quit\r\n');
    assert.doesNotMatch(none.out, /221 2\.0\.0 Bye/, 'a client without secp384r1 finds no group in common');
    assert.match(none.out, /handshake failure|no suitable key share/, none.out);
  });

  test('Received: "(Client did not present a certificate)" when one was asked for; "(not verified)" for an untrusted one', async () => {
    const r = await runClient('swaks', ['--server', `127.0.0.1:${ports.open}`, '--tls', '--from', 'cc@example.org', '--to', 'far@elsewhere.example',
      '--helo', 'nocert.test', '--header', 'Subject: ccert-absent', '--timeout', '10'], '');
    assert.equal(r.code, 0, r.out);
    assert.match(await delivered('ccert-absent'), /\t server-signature ECDSA \(prime256v1\)\)\r\n\t\(Client did not present a certificate\)\r\n\tby /);
    const u = await sClient(ports.open, withCert(rogue), SESSION('rogue-open.test', 'ccert-untrusted'));
    assert.match(u.out, /250 2\.0\.0 Ok: queued as/, u.out);
    assert.match(await delivered('ccert-untrusted'), /\t\(Client CN "rogue\.example", Issuer "rogue\.example" \(not verified\)\)\r\n\tby /);
  });

  test('a resumed session keeps its client certificate: it still relays, and Received still names it', async () => {
    const sess = join(dir, 'client-session.pem');
    const first = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${server.port}`, '-ign_eof', '-sess_out', sess, ...withCert(client)], 'quit\r\n');
    assert.match(first.out, /^New, TLSv1\.3/m, first.out);
    const again = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${server.port}`, '-ign_eof', '-sess_in', sess, ...withCert(client)],
      SESSION('resumed.test', 'ccert-resumed').replace('QUIT', 'quit'));
    assert.match(again.out, /^Reused, TLSv1\.3/m, again.out);
    assert.match(again.out, /250 2\.0\.0 Ok: queued as/, again.out);
    assert.match(await delivered('ccert-resumed'), /\(Client CN "client\.example", Issuer "Postactor Test CA" \(verified OK\)\)/);
  });

  test('smtpd_tls_ccert_verifydepth: two intermediate CAs are trusted at the default depth, not at 0 (OpenSSL gets depth + 1)', async () => {
    const chain = [...withCert(deep), '-cert_chain', deep.intermediates];
    const ok = await sClient(server.port, chain, 'EHLO deep.test\r\nQUIT\r\n');
    assert.match(ok.out, /221 2\.0\.0 Bye/, ok.out);
    await server.waitForLog(/localhost\[127\.0\.0\.1\]: subject_CN=deep\.example, issuer=deep Intermediate 2, /, 10_000);
    const no = await sClient(ports.deep, chain, 'EHLO deep.test\r\nQUIT\r\n');
    assert.match(no.out, /^421 4\.7\.1 mx\.postactor\.test Error: Client certificate not trusted\r?$/m, no.out);
    await server.waitForLog(/smtpd\[\d+\]: certificate verification failed for localhost\[127\.0\.0\.1\]: certificate chain longer than limit\(1\)$/, 10_000);
  });

  test('smtpd_tls_CApath: a directory of CA files is trusted as well; an unreadable smtpd_tls_CAfile disables TLS (454)', async () => {
    const ok = await sClient(ports.capath, withCert(other), SESSION('capath.test', 'ccert-capath'));
    assert.match(ok.out, /250 2\.0\.0 Ok: queued as/, ok.out);
    assert.match(await delivered('ccert-capath'), /\(Client CN "other\.example", Issuer "Postactor Test CA" \(verified OK\)\)/);
    await server.waitForLog(/postactor\/badca\/smtpd\[\d+\]: cannot load Certification Authority data, CAfile="\/nonexistent\/postactor-ca\.pem": disabling TLS support$/, 10_000);
    const { smtp } = await SmtpDialogue.connect(ports.badca);
    try {
      await smtp.cmd('EHLO client.test');
      assert.equal((await smtp.cmd('STARTTLS')).line, '454 4.7.0 TLS not available due to local problem');
    } finally {
      smtp.close();
    }
  });

  // Last: the reload restarts every smtpd thread.
  test('postactor reload re-reads the SNI chains', async () => {
    const subject = async (): Promise<string> => {
      const r = await openssl(['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${server.port}`, '-servername', 'a.example'], 'QUIT\r\n');
      return /^subject=(.*)$/m.exec(r.out)?.[1] ?? r.out;
    };
    assert.match(await subject(), /CN ?= ?a\.example$/);
    selfSignedCert(dir, 'a', 'renewed.a.example');
    const r = spawnSync(NODE, [POSTACTOR_JS, '-c', server.dir, 'reload'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const deadline = Date.now() + 15_000;
    let now = await subject();
    while (!/renewed/.test(now) && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 200));
      now = await subject();
    }
    assert.match(now, /CN ?= ?renewed\.a\.example$/);
  });
});
