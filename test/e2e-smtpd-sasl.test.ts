/**
 * End to end, SMTP AUTH in smtpd against a REAL Dovecot serving only its auth socket
 * (bench/delivery/dovecot.ts: `protocols =`, passwd-file users with {PLAIN} passwords,
 * `service auth { unix_listener … }`, `dovecot -F`). The server trusts no network the test
 * connects from (mynetworks = 192.0.2.0/24), so only a logged-in client may relay
 * (smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination); the next
 * hop is the project's SmtpSink. Clients: swaks, Python's smtplib, nodemailer and a raw
 * dialogue. Extra smtpd services (master.cf -o) show smtpd_tls_auth_only, the security options,
 * broken_sasl_auth_clients and smtpd_sasl_exceptions_networks. Needs /usr/sbin/dovecot and swaks.
 */
import { spawn, execFile } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import nodemailer from 'nodemailer';

import { startDovecot, type Dovecot } from '../bench/delivery/dovecot.js';
import { checkConfig } from '../actors/master/index.js';
import { loadConfig } from '../src/config/index.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { needs } from './helpers/peers.js';
import { freePort, rfc822, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const NO_DOVECOT = needs('/usr/sbin/dovecot', 'Dovecot (dovecot-core), the authentication server');
const NO_SWAKS = needs('/usr/bin/swaks', 'swaks');
const tempDir = tempDirs('postactor-sasl-');

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const PASSWORDS = { [ALICE]: 'secret', [BOB]: 'hunter2' };
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

interface Run { code: number | null; out: string }

function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

function swaks(port: number, args: string[]): Promise<Run> {
  return run('swaks', ['--server', `127.0.0.1:${port}`, '--helo', 'client.test', '--timeout', '15', ...args]);
}

describe('e2e smtpd SASL AUTH with a real Dovecot', { skip: NO_DOVECOT || NO_SWAKS }, () => {
  let dc: Dovecot;
  let sink: SmtpSink;
  let server: TestServer;
  const ports = { authOnly: 0, noPlaintext: 0, broken: 0, exceptions: 0 };

  before(async () => {
    dc = await startDovecot({ users: [ALICE, BOB], passwords: PASSWORDS, lmtp: false, auth: true, mechanisms: 'plain login cram-md5' });
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    // The queue directory's private/auth is (a link to) Dovecot's socket: smtpd_sasl_path =
    // private/auth is relative to queue_directory, as in Postfix.
    const top = tempDir({ senders: `${ALICE} ${ALICE}\n${BOB} ${BOB}\n` });
    mkdirSync(join(top, 'queue', 'private'), { recursive: true });
    symlinkSync(dc.authSocket, join(top, 'queue', 'private', 'auth'));
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    const service = (port: number, overrides: string) => `127.0.0.1:${port} inet n - n - 1 smtpd\n  ${overrides}`;
    server = await startServer({
      sinkPort,
      mainCf: {
        queue_directory: join(top, 'queue'),
        mynetworks: '192.0.2.0/24',
        mydestination: '$myhostname, example.com',
        local_recipient_maps: '',
        smtpd_sasl_auth_enable: 'yes',
        smtpd_sasl_type: 'dovecot',
        smtpd_sasl_path: 'private/auth',
        smtpd_relay_restrictions: 'permit_sasl_authenticated, reject_unauth_destination',
        smtpd_sender_restrictions: 'reject_sender_login_mismatch',
        smtpd_sender_login_maps: `texthash:${join(top, 'senders')}`,
        // Only logged-in clients count as local for header rewriting (not our own interfaces).
        local_header_rewrite_clients: 'permit_sasl_authenticated',
      },
      masterCfExtra: [
        'rewrite unix - - n - 1 trivial-rewrite',
        service(ports.authOnly, '-o smtpd_tls_auth_only=yes'),
        service(ports.noPlaintext, '-o smtpd_sasl_security_options=noanonymous,noplaintext'),
        service(ports.broken, '-o broken_sasl_auth_clients=yes -o smtpd_sasl_authenticated_header=yes'),
        service(ports.exceptions, '-o smtpd_sasl_exceptions_networks=127.0.0.0/8'),
      ].join('\n'),
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
    await dc?.stop();
  });

  async function ehlo(port: number): Promise<string[]> {
    const { smtp } = await SmtpDialogue.connect(port);
    try {
      return (await smtp.cmd('EHLO client.test')).lines;
    } finally {
      smtp.close();
    }
  }

  /** The sink's message whose Subject is `subject`. */
  async function delivered(subject: string): Promise<string> {
    const find = () => sink.messages.find((m) => m.data.toString('latin1').includes(`Subject: ${subject}\r\n`));
    const deadline = Date.now() + 15_000;
    while (!find() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const m = find();
    assert.ok(m, `the sink got "${subject}"`);
    return m.data.toString('latin1');
  }

  test('EHLO announces Dovecot\'s mechanisms as AUTH, before ENHANCEDSTATUSCODES, as Postfix orders them', async () => {
    const lines = await ehlo(server.port);
    assert.ok(lines.includes('AUTH PLAIN LOGIN CRAM-MD5'), lines.join(' | '));
    assert.ok(!lines.some((l) => l.startsWith('AUTH=')), 'no AUTH= without broken_sasl_auth_clients');
    assert.ok(lines.indexOf('AUTH PLAIN LOGIN CRAM-MD5') < lines.indexOf('ENHANCEDSTATUSCODES'));
  });

  test('swaks AUTH PLAIN with the right password: 235 2.7.0, relaying permitted, Received "with ESMTPA", sasl_* in the maillog', async () => {
    const r = await swaks(server.port, ['--auth', 'PLAIN', '--auth-user', ALICE, '--auth-password', 'secret',
      '--from', ALICE, '--to', 'friend@elsewhere.example', '--header', 'Subject: sasl-swaks-good']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /<- {2}235 2\.7\.0 Authentication successful/);
    const qid = /<- {2}250 2\.0\.0 Ok: queued as (\S+)/.exec(r.out)?.[1];
    assert.ok(qid, r.out);
    const data = await delivered('sasl-swaks-good');
    assert.match(data, new RegExp(`^Received: from client\\.test \\(localhost \\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby mx\\.postactor\\.test \\(Postactor\\) with ESMTPA id ${qid}\\r\\n`));
    await server.waitForLog(new RegExp(`postactor/smtpd\\[\\d+\\]: ${qid}: client=localhost\\[127\\.0\\.0\\.1\\], sasl_method=PLAIN, sasl_username=alice@example\\.com$`), 5000);
  });

  test('swaks with a bad password: 535 5.7.8, Postfix\'s warning, and relaying is refused', async () => {
    const r = await swaks(server.port, ['--auth', 'PLAIN', '--auth-user', ALICE, '--auth-password', 'wrong',
      '--from', ALICE, '--to', 'friend@elsewhere.example', '--header', 'Subject: sasl-swaks-bad']);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /<\*\* 535 5\.7\.8 Error: authentication failed: /);
    await server.waitForLog(/warning: localhost\[127\.0\.0\.1\]: SASL PLAIN authentication failed: .+, sasl_username=alice@example\.com$/, 5000);
    // The same client without AUTH may not relay: mynetworks does not include it.
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      await smtp.cmd('EHLO client.test');
      assert.equal((await smtp.cmd('MAIL FROM:<someone@client.test>')).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<friend@elsewhere.example>')).line, '554 5.7.1 <friend@elsewhere.example>: Relay access denied');
    } finally {
      smtp.close();
    }
  });

  test('Python smtplib login() (it picks CRAM-MD5 from the list) and sendmail(): relayed with ESMTPA', async () => {
    const script = `
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='py.test', timeout=15)
s.ehlo()
code, text = s.login(sys.argv[2], sys.argv[3])
print(code, text.decode())
s.sendmail(sys.argv[2], ['friend@elsewhere.example'], 'From: a@example.com\\r\\nSubject: sasl-python\\r\\n\\r\\nhello\\r\\n')
s.quit()
`;
    const r = await new Promise<Run>((resolve) => execFile('python3', ['-c', script, String(server.port), BOB, 'hunter2'], { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr })));
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^235 2\.7\.0 Authentication successful/);
    assert.match(await delivered('sasl-python'), /^Received: from py\.test \(localhost \[127\.0\.0\.1\]\)\r\n\tby mx\.postactor\.test \(Postactor\) with ESMTPA id /);
  });

  test('nodemailer with auth, by LOGIN and by CRAM-MD5 (challenge and response go through to Dovecot)', async () => {
    for (const method of ['LOGIN', 'CRAM-MD5']) {
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true, name: 'nm.test', authMethod: method, auth: { user: ALICE, pass: 'secret' } });
      try {
        const info = await transport.sendMail({ from: ALICE, to: 'friend@elsewhere.example', subject: `sasl-nodemailer-${method}`, text: 'hi' });
        assert.match(info.response, /^250 2\.0\.0 Ok: queued as /);
      } finally {
        transport.close();
      }
      assert.match(await delivered(`sasl-nodemailer-${method}`), /with ESMTPA id /);
      await server.waitForLog(new RegExp(`client=localhost\\[127\\.0\\.0\\.1\\], sasl_method=${method}, sasl_username=alice@example\\.com`), 5000);
    }
  });

  test('reject_sender_login_mismatch: a forged sender is refused (553 5.7.1 not owned by user), an owned one is not', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      await smtp.cmd('EHLO client.test');
      assert.equal((await smtp.cmd(`AUTH PLAIN ${b64(`\0${ALICE}\0secret`)}`)).line, '235 2.7.0 Authentication successful');
      assert.equal((await smtp.cmd(`MAIL FROM:<${BOB}>`)).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<friend@elsewhere.example>')).line, `553 5.7.1 <${BOB}>: Sender address rejected: not owned by user ${ALICE}`);
      assert.equal((await smtp.cmd('RSET')).code, 250);
      // A sender nobody owns is refused too (reject_authenticated_sender_login_mismatch is strict).
      assert.equal((await smtp.cmd('MAIL FROM:<nobody@example.com>')).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<friend@elsewhere.example>')).line, `553 5.7.1 <nobody@example.com>: Sender address rejected: not owned by user ${ALICE}`);
      assert.equal((await smtp.cmd('RSET')).code, 250);
      assert.equal((await smtp.cmd(`MAIL FROM:<${ALICE}> AUTH=<${ALICE}>`)).code, 250, 'the AUTH= parameter of MAIL is accepted');
      assert.equal((await smtp.cmd('RCPT TO:<friend@elsewhere.example>')).code, 250);
    } finally {
      smtp.close();
    }
    await server.waitForLog(/NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 553 5\.7\.1 <bob@example\.com>: Sender address rejected: not owned by user alice@example\.com; from=<bob@example\.com> to=<friend@elsewhere\.example> proto=ESMTP helo=<client\.test>/, 5000);
    await server.waitForLog(/client=localhost\[127\.0\.0\.1\], sasl_method=PLAIN, sasl_username=alice@example\.com, sasl_sender=<alice@example\.com>$/, 5000);
    // Not logged in, an owned sender is refused even for a local recipient.
    const anon = await SmtpDialogue.connect(server.port);
    try {
      await anon.smtp.cmd('EHLO client.test');
      assert.equal((await anon.smtp.cmd(`MAIL FROM:<${ALICE}>`)).code, 250);
      assert.equal((await anon.smtp.cmd('RCPT TO:<postmaster@example.com>')).line, `553 5.7.1 <${ALICE}>: Sender address rejected: not logged in`);
    } finally {
      anon.smtp.close();
    }
  });

  test('Postfix\'s replies around AUTH: HELO first, unknown mechanism, abort, inside MAIL, twice; LOGIN step by step', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      assert.equal((await smtp.cmd('AUTH PLAIN')).line, '503 5.5.1 Error: send HELO/EHLO first');
      await smtp.cmd('EHLO client.test');
      assert.equal((await smtp.cmd('AUTH')).line, '501 5.5.4 Syntax: AUTH mechanism');
      assert.equal((await smtp.cmd('AUTH DIGEST-MD5')).line, '535 5.7.8 Error: authentication failed: Invalid authentication mechanism');
      assert.equal((await smtp.cmd('AUTH LOGIN')).line, '334 VXNlcm5hbWU6');
      assert.equal((await smtp.cmd('*')).line, '501 5.7.0 Authentication aborted');
      assert.equal((await smtp.cmd('MAIL FROM:<>')).code, 250);
      assert.equal((await smtp.cmd('AUTH PLAIN')).line, '503 5.5.1 Error: MAIL transaction in progress');
      assert.equal((await smtp.cmd('RSET')).code, 250);
      assert.equal((await smtp.cmd('AUTH LOGIN')).line, '334 VXNlcm5hbWU6');
      assert.equal((await smtp.cmd(b64(BOB))).line, '334 UGFzc3dvcmQ6');
      assert.equal((await smtp.cmd(b64('hunter2'))).line, '235 2.7.0 Authentication successful');
      assert.equal((await smtp.cmd('AUTH PLAIN')).line, '503 5.5.1 Error: already authenticated');
      assert.equal((await smtp.cmd('QUIT')).code, 221);
    } finally {
      smtp.close();
    }
    await server.waitForLog(/warning: localhost\[127\.0\.0\.1\]: SASL LOGIN authentication aborted$/, 5000);
    await server.waitForLog(/warning: localhost\[127\.0\.0\.1\]: SASL DIGEST-MD5 authentication failed: Invalid authentication mechanism, sasl_username=\(unavailable\)$/, 5000);
    await server.waitForLog(/disconnect from localhost\[127\.0\.0\.1\] ehlo=1 auth=1\/7 mail=1 rset=1 quit=1 commands=5\/11$/, 5000);
  });

  test('smtpd_tls_auth_only = yes: a plaintext session is not offered AUTH, and AUTH is "not enabled"', async () => {
    const lines = await ehlo(ports.authOnly);
    assert.ok(!lines.some((l) => l.startsWith('AUTH')), lines.join(' | '));
    const { smtp } = await SmtpDialogue.connect(ports.authOnly);
    try {
      await smtp.cmd('EHLO client.test');
      assert.equal((await smtp.cmd(`AUTH PLAIN ${b64(`\0${ALICE}\0secret`)}`)).line, '503 5.5.1 Error: authentication not enabled');
    } finally {
      smtp.close();
    }
  });

  test('smtpd_sasl_security_options = noplaintext hides PLAIN and LOGIN (CRAM-MD5 stays)', async () => {
    const lines = await ehlo(ports.noPlaintext);
    assert.ok(lines.includes('AUTH CRAM-MD5'), lines.join(' | '));
    const { smtp } = await SmtpDialogue.connect(ports.noPlaintext);
    try {
      await smtp.cmd('EHLO client.test');
      assert.equal((await smtp.cmd(`AUTH PLAIN ${b64(`\0${ALICE}\0secret`)}`)).line, '535 5.7.8 Error: authentication failed: Invalid authentication mechanism');
    } finally {
      smtp.close();
    }
  });

  test('broken_sasl_auth_clients adds AUTH=; smtpd_sasl_authenticated_header names the login in Received', async () => {
    const lines = await ehlo(ports.broken);
    assert.ok(lines.includes('AUTH PLAIN LOGIN CRAM-MD5') && lines.includes('AUTH=PLAIN LOGIN CRAM-MD5'), lines.join(' | '));
    const r = await swaks(ports.broken, ['--auth', 'LOGIN', '--auth-user', ALICE, '--auth-password', 'secret',
      '--from', ALICE, '--to', 'friend@elsewhere.example', '--header', 'Subject: sasl-header']);
    assert.equal(r.code, 0, r.out);
    assert.match(await delivered('sasl-header'), /^Received: from client\.test \(localhost \[127\.0\.0\.1\]\)\r\n\t\(Authenticated sender: alice@example\.com\)\r\n\tby mx\.postactor\.test \(Postactor\) with ESMTPA id /);
  });

  test('smtpd_sasl_exceptions_networks: AUTH is not announced to those clients, but still accepted', async () => {
    const lines = await ehlo(ports.exceptions);
    assert.ok(!lines.some((l) => l.startsWith('AUTH')), lines.join(' | '));
    const { smtp } = await SmtpDialogue.connect(ports.exceptions);
    try {
      await smtp.cmd('EHLO client.test');
      assert.equal((await smtp.cmd(`AUTH PLAIN ${b64(`\0${BOB}\0hunter2`)}`)).line, '235 2.7.0 Authentication successful');
    } finally {
      smtp.close();
    }
  });

  test('message content is untouched: a raw DATA after AUTH arrives whole', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      await smtp.cmd('EHLO client.test');
      await smtp.cmd(`AUTH PLAIN ${b64(`\0${ALICE}\0secret`)}`);
      await smtp.cmd(`MAIL FROM:<${ALICE}>`);
      assert.equal((await smtp.cmd('RCPT TO:<a@elsewhere.example>')).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<b@elsewhere.example>')).code, 250);
      assert.equal((await smtp.cmd('DATA')).code, 354);
      assert.equal((await smtp.cmd(rfc822({ Subject: 'sasl-raw' }, 'body line\n') + '.')).code, 250);
    } finally {
      smtp.close();
    }
    // Two recipients: Received has no "for", and the date on its own line. The client is logged
    // in, so local_header_rewrite_clients = permit_sasl_authenticated makes cleanup add the
    // missing Message-Id, Date and From.
    const data = await delivered('sasl-raw');
    assert.match(data, /with ESMTPA id \S+;\r\n\t.+\r\nSubject: sasl-raw\r\n(?:[A-Z][-A-Za-z]+: .*\r\n)*\r\nbody line\r\n$/);
    assert.match(data, /\r\nMessage-Id: <\S+@mx\.postactor\.test>\r\n/);
    assert.match(data, /\r\nFrom: alice@example\.com\r\n/);
  });
});

describe('smtpd_sasl_type: only dovecot', () => {
  test('smtpd_sasl_auth_enable = yes with the default type (cyrus) is refused by name', () => {
    const master = '127.0.0.1:2599 inet n - n - 1 smtpd\ncleanup unix n - n - 1 cleanup\nqmgr unix n - n 300 1 qmgr\n';
    const dir = tempDir({ 'main.cf': `queue_directory = ${tempDir()}/q\nsmtpd_sasl_auth_enable = yes\n`, 'master.cf': master });
    const problems = checkConfig(loadConfig(dir));
    assert.deepEqual(problems, [`${dir}/main.cf: smtpd_sasl_type = cyrus: not supported by Postactor (only smtpd_sasl_type = dovecot: Postactor speaks Dovecot's auth protocol, not Cyrus SASL)`]);
    const ok = tempDir({ 'main.cf': `queue_directory = ${tempDir()}/q\nsmtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\nsmtpd_sasl_path = inet:127.0.0.1:12345\n`, 'master.cf': master });
    assert.deepEqual(checkConfig(loadConfig(ok)), []);
    writeFileSync(join(ok, 'main.cf'), `queue_directory = ${tempDir()}/q\nsmtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\nsmtpd_sasl_security_options = noplaintext, nosuch\n`);
    assert.match(checkConfig(loadConfig(ok)).join('\n'), /smtpd_sasl_security_options: unknown option "nosuch"/);
  });
});
