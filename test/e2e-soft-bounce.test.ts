/**
 * soft_bounce = yes end to end, on a real server (child process): what would be bounced stays
 * in the queue, deferred, and what would be refused for good is refused for now.
 *   - delivery: a next hop's 550 to RCPT, local(8)'s unknown user and qmgr's own failures
 *     (relocated_maps, a transport_maps error: entry) are logged
 *     "dsn=4.x.x, status=SOFTBOUNCE (reason unchanged)", the message stays (postqueue -p shows
 *     it with the reason) and no non-delivery notice is sent;
 *   - smtp client: the first of two MX hosts answering 550 keeps the recipient for the second,
 *     which gets the mail (Postfix's smtp_trouble.c);
 *   - smtpd: a restriction's reject (554 5.7.1 → 454 4.7.1) and syntax errors (501 5.5.4 →
 *     401 4.5.4) go out as 4xx, and the reject log line shows what was sent;
 *   - postscreen: a denylisted client is refused at RCPT with 450 4.3.2, logged the same;
 *   - qmqpd: a hard error (D) is sent as one to retry (Z);
 *   - cleanup: a sendmail submission that header_checks rejects is not bounced: pickup keeps
 *     the maildrop file and tries it again;
 *   - milter: a milter's 550 5.7.1 goes out, and is logged, as 450 4.7.1 (needs pymilter).
 */
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SmtpSink } from '../src/smtp/sink.js';
import { startDnsServer, type TestDnsServer } from './helpers/dns-server.js';
import { NEEDS_PYMILTER, startTestMilter } from './helpers/milter.js';
import { freePort, queuedId, REPO_ROOT, rfc822, sendRaw, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

/** Runs one of bin/'s commands; resolves with its exit status and output. */
function run(name: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = execFile(join(REPO_ROOT, 'bin', name), args, { timeout: 60_000, cwd: REPO_ROOT }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') return reject(err);
      resolve({ code: (err as { code?: number } | null)?.code ?? 0, stdout, stderr });
    });
    c.stdin?.end(input ?? '');
  });
}

/** Polls postqueue -p (bounded) until the message is listed with its deferral reason; returns its entry. */
async function queuedWithReason(server: TestServer, id: string, reason: RegExp): Promise<string> {
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    const q = await run('postqueue', ['-c', server.dir, '-p']);
    last = q.stdout;
    const entry = q.stdout.split(/\n\s*\n/).find((e) => e.split('\n').some((l) => l.startsWith(`${id} `)));
    if (entry && reason.test(entry)) return entry;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${id} not listed deferred with ${reason} within 30 s:\n${last}`);
}

/** Sends raw bytes, returns everything the server sent until it closed (bounded by 15 s). */
function qmqpExchange(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let reply = '';
    const t = setTimeout(() => { s.destroy(); reject(new Error(`no close within 15 s; got ${JSON.stringify(reply)}`)); }, 15_000);
    s.on('connect', () => s.end(data));
    s.on('data', (d: Buffer) => { reply += d.toString('latin1'); });
    s.on('error', () => undefined);
    s.on('close', () => { clearTimeout(t); resolve(reply); });
  });
}

const ns = (s: string) => `${Buffer.byteLength(s)}:${s},`;

describe('soft_bounce = yes', () => {
  let dns: TestDnsServer;
  let relay: SmtpSink;
  let mx1: SmtpSink;
  let mx2: SmtpSink;
  let server: TestServer;
  let tables: string;
  let strict = 0;
  let screen = 0;
  let qmqp = 0;

  before(async () => {
    // The relayhost refuses hard*@ recipients for good; both MX hosts of twomx.test listen on
    // the same port at two loopback addresses, the first refusing every recipient.
    relay = new SmtpSink({ keepMessages: true, rcptReply: (r) => (r.startsWith('hard') ? `550 5.1.1 <${r}>: Recipient address rejected: User unknown` : null) });
    const relayPort = await relay.listen(0);
    const mxPort = await freePort('127.0.0.2');
    mx1 = new SmtpSink({ keepMessages: true, hostname: 'mx1.twomx.test', rcptReply: (r) => `550 5.1.1 <${r}>: Recipient address rejected: not here` });
    await mx1.listen(mxPort, '127.0.0.2');
    mx2 = new SmtpSink({ keepMessages: true, hostname: 'mx2.twomx.test' });
    await mx2.listen(mxPort, '127.0.0.3');
    dns = await startDnsServer({
      'twomx.test': { MX: [{ exchange: 'mx1.twomx.test', priority: 10 }, { exchange: 'mx2.twomx.test', priority: 20 }] },
      'mx1.twomx.test': { A: ['127.0.0.2'] },
      'mx2.twomx.test': { A: ['127.0.0.3'] },
    });
    tables = mkdtempSync(join(tmpdir(), 'pa-soft-bounce-'));
    writeFileSync(join(tables, 'transport'), `twomx.test smtp:twomx.test:${mxPort}\nrefused.test error:5.7.1 we do not send there\n`);
    writeFileSync(join(tables, 'relocated'), 'moved@local.test someone@new.example\n');
    writeFileSync(join(tables, 'aliases'), '');
    writeFileSync(join(tables, 'header_checks'), '/^Subject: reject-me/ REJECT\n');
    writeFileSync(join(tables, 'access.cidr'), '127.0.0.9 reject\n');
    writeFileSync(join(tables, 'passwd'), `me:x:${process.getuid!()}:${process.getgid!()}:Test User:${tables}:/bin/sh\n`);
    mkdirSync(join(tables, 'spool'));
    strict = await freePort();
    screen = await freePort();
    qmqp = await freePort();
    server = await startServer({
      sinkPort: relayPort,
      mainCf: {
        soft_bounce: 'yes',
        mydestination: 'localhost, local.test',
        local_recipient_maps: '',
        alias_maps: `texthash:${join(tables, 'aliases')}`,
        mail_spool_directory: join(tables, 'spool'),
        transport_maps: `texthash:${join(tables, 'transport')}`,
        relocated_maps: `texthash:${join(tables, 'relocated')}`,
        // qmgr's and error(8)'s bounces are under test, not smtpd's RCPT-time checks.
        smtpd_reject_unlisted_recipient: 'no',
        header_checks: `regexp:${join(tables, 'header_checks')}`,
        postscreen_access_list: `cidr:${join(tables, 'access.cidr')}`,
        postscreen_denylist_action: 'enforce',
        postscreen_greet_wait: '1s',
        qmqpd_authorized_clients: '127.0.0.0/8',
        qmqpd_error_delay: '0s',
      },
      masterCfExtra: [
        'local unix - n n - - local',
        'pickup unix n - n 60 1 pickup',
        // A client outside mynetworks: relaying is refused (reject_unauth_destination).
        `127.0.0.1:${strict} inet n - n - 1 smtpd -o mynetworks=192.0.2.0/24`,
        `127.0.0.1:${screen} inet n - n - 1 postscreen`,
        'smtpd pass - - n - 1 smtpd',
        `127.0.0.1:${qmqp} inet n - n - 1 qmqpd`,
      ].join('\n'),
      env: { POSTACTOR_DNS_SERVERS: dns.server, POSTACTOR_PASSWD_FILE: join(tables, 'passwd') },
    });
  });

  after(async () => {
    await server?.stop();
    await relay?.close();
    await mx1?.close();
    await mx2?.close();
    await dns?.close();
    if (tables) rmSync(tables, { recursive: true, force: true });
  });

  test('postconf soft_bounce prints the value', async () => {
    const r = await run('postconf', ['-c', server.dir, 'soft_bounce']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'soft_bounce = yes\n');
  });

  test('a next hop\'s 550 to RCPT: dsn=4.1.1, status=SOFTBOUNCE, the message stays deferred, no notice to the sender', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['hard@example.com'], rfc822({ Subject: 'soft relay' }, 'kept\n')));
    const line = await server.waitForLog(new RegExp(`${id}: to=<hard@example\\.com>, relay=`), 20_000);
    assert.match(line, /, dsn=4\.1\.1, status=SOFTBOUNCE \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 <hard@example\.com>: Recipient address rejected: User unknown \(in reply to RCPT TO command\)\)$/);
    const entry = await queuedWithReason(server, id, /\(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 <hard@example\.com>: Recipient address rejected: User unknown/);
    assert.match(entry, /sender@example\.org/);
    assert.match(entry, /hard@example\.com/);
    // The attempt has ended (the message is in deferred): no bounce was made or sent.
    assert.ok(!server.logLines().some((l) => l.includes(`${id}: sender non-delivery notification`) || (l.includes(`${id}: to=`) && l.includes('status=bounced'))), 'no bounce');
    assert.ok(!relay.messages.some((m) => m.sender === ''), 'no notice reached the sender');
  });

  test('two MX hosts, the first answers 550: the recipient is kept for the second, which gets the mail', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['user@twomx.test'], rfc822({ Subject: 'two mx' }, 'second mx\n')));
    const line = await server.waitForLog(new RegExp(`${id}: to=<user@twomx\\.test>, relay=`), 20_000);
    assert.match(line, /relay=mx2\.twomx\.test\[127\.0\.0\.3\]:\d+, .*dsn=2\.0\.0, status=sent/);
    // Why the first host was skipped, in Postfix's words.
    assert.ok(server.logLines().some((l) => new RegExp(`smtp\\[\\d+\\]: ${id}: host mx1\\.twomx\\.test\\[127\\.0\\.0\\.2\\] said: 550 5\\.1\\.1 <user@twomx\\.test>: Recipient address rejected: not here \\(in reply to RCPT TO command\\)$`).test(l)));
    assert.ok(mx2.messages.some((m) => m.recipients.includes('user@twomx.test')));
    assert.ok(!mx1.messages.some((m) => m.recipients.includes('user@twomx.test')));
  });

  test('local(8), an unknown user: dsn=4.1.1, status=SOFTBOUNCE (unknown user: "nosuch"), the message stays', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['nosuch@local.test'], rfc822({ Subject: 'soft local' }, 'kept\n')));
    const line = await server.waitForLog(new RegExp(`${id}: to=<nosuch@local\\.test>, relay=`), 20_000);
    assert.match(line, /relay=local, .*dsn=4\.1\.1, status=SOFTBOUNCE \(unknown user: "nosuch"\)$/);
    await queuedWithReason(server, id, /\(unknown user: "nosuch"\)/);
    assert.ok(!server.logLines().some((l) => l.includes(`${id}: sender non-delivery notification`)), 'no bounce');
  });

  test('qmgr\'s own bounces (relocated: 5.1.6, transport error:5.7.1) are SOFTBOUNCEd with class 4 and kept', async () => {
    const moved = queuedId(await sendRaw(server.port, 'sender@example.org', ['moved@local.test'], rfc822({ Subject: 'moved' }, 'kept\n')));
    const refused = queuedId(await sendRaw(server.port, 'sender@example.org', ['user@refused.test'], rfc822({ Subject: 'refused' }, 'kept\n')));
    assert.match(await server.waitForLog(new RegExp(`${moved}: to=<moved@local\\.test>, relay=`), 20_000), /relay=none, .*dsn=4\.1\.6, status=SOFTBOUNCE \(User has moved to someone@new\.example\)$/);
    assert.match(await server.waitForLog(new RegExp(`${refused}: to=<user@refused\\.test>, relay=`), 20_000), /relay=none, .*dsn=4\.7\.1, status=SOFTBOUNCE \(we do not send there\)$/);
    await queuedWithReason(server, moved, /\(User has moved to someone@new\.example\)/);
    await queuedWithReason(server, refused, /\(we do not send there\)/);
    assert.ok(!server.logLines().some((l) => l.includes(`${moved}: sender non-delivery notification`) || l.includes(`${refused}: sender non-delivery notification`)), 'no bounce');
  });

  test('smtpd: a relay refusal goes out as 454 4.7.1 and is logged so; syntax errors 501 5.1.3 / 501 5.5.4 as 401 4.1.3 / 401 4.5.4; an unknown command 500 5.5.2 as 400 4.5.2', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(strict);
    try {
      assert.equal(greeting.code, 220);
      assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
      assert.equal((await smtp.cmd('MAIL FROM:<s@client.test>')).code, 250);
      const r = await smtp.cmd('RCPT TO:<user@elsewhere.test>');
      assert.equal(r.line, '454 4.7.1 <user@elsewhere.test>: Relay access denied');
      assert.equal((await smtp.cmd('RCPT TO:<bad address')).line, '401 4.1.3 Bad recipient address syntax');
      assert.equal((await smtp.cmd('VRFY')).line, '401 4.5.4 Syntax: VRFY address [SMTPUTF8]');
      assert.equal((await smtp.cmd('BOGUS')).line, '400 4.5.2 Error: command not recognized');
      // The smtp-server library's own refusals go out the same way.
      assert.match((await smtp.cmd('MAIL FROM:<again@client.test>')).line, /^403 4\.5\.1 /);
      assert.equal((await smtp.cmd('RSET')).code, 250);
      assert.match((await smtp.cmd('DATA')).line, /^403 4\.5\.1 /);
      await smtp.cmd('QUIT').catch(() => undefined);
    } finally {
      smtp.close();
    }
    await server.waitForLog(/NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 454 4\.7\.1 <user@elsewhere\.test>: Relay access denied; from=<s@client\.test> to=<user@elsewhere\.test> proto=ESMTP helo=<client\.test>$/, 10_000);
  });

  test('postscreen: a denylisted client (enforce) is refused at RCPT with 450 4.3.2, logged the same', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(screen, { localAddress: '127.0.0.9', timeoutMs: 15_000 });
    try {
      assert.equal(greeting.code, 220);
      assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
      assert.equal((await smtp.cmd('MAIL FROM:<a@client.test>')).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).line, '450 4.3.2 Service currently unavailable');
      await smtp.cmd('QUIT').catch(() => undefined);
    } finally {
      smtp.close();
    }
    await server.waitForLog(/NOQUEUE: reject: RCPT from \[127\.0\.0\.9\]:\d+: 450 4\.3\.2 Service currently unavailable; from=<a@client\.test>, to=<b@example\.com>, proto=ESMTP, helo=<client\.test>$/, 10_000);
  });

  test('qmqpd: a hard error is sent as one to retry (Z instead of D)', async () => {
    assert.equal(await qmqpExchange(qmqp, ns(ns('Subject: x\n\nbody\n') + ns('a@example.org'))), ns('ZError: no recipients specified'));
    assert.equal(await qmqpExchange(qmqp, ns(ns('Subject: reject-me\n\nbody\n') + ns('a@example.org') + ns('b@example.com'))), ns('ZError: 5.7.1 message content rejected'));
  });

  test('cleanup: a sendmail submission header_checks rejects is not bounced; pickup keeps it in the maildrop to try again', async () => {
    const r = await run('sendmail', ['-C', server.dir, '-f', 'local-sender@example.org', 'r@example.com'], 'From: local-sender@example.org\nSubject: reject-me locally\n\nno\n');
    assert.equal(r.code, 0, r.stderr);
    const rejected = await server.waitForLog(/cleanup\[\d+\]: [0-9A-Za-z]+: reject: header Subject: reject-me locally from local; from=<local-sender@example\.org> to=<r@example\.com>: 5\.7\.1 message content rejected$/, 20_000);
    const id = /: ([0-9A-Za-z]+): reject: header/.exec(rejected)![1]!;
    await server.waitForLog(new RegExp(`pickup\\[\\d+\\]: warning: ${id}: error writing \\S+: 451 4\\.3\\.0 Error: queue file write error$`), 10_000);
    assert.equal(readdirSync(join(server.queueDir, 'maildrop')).length, 1, 'the submission stays in the maildrop');
    assert.ok(!server.logLines().some((l) => l.includes(`${id}: to=`) || l.includes(`${id}: sender non-delivery notification`)), 'nothing bounced');
  });
});

describe('soft_bounce = yes with a milter', { skip: NEEDS_PYMILTER }, () => {
  let dir: string;
  let milter: ChildProcess | null = null;
  let server: TestServer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pa-soft-bounce-milter-'));
    const m = await startTestMilter(dir);
    milter = m.child;
    server = await startServer({ mainCf: { soft_bounce: 'yes', smtpd_milters: `inet:127.0.0.1:${m.port}` } });
  });

  after(async () => {
    await server?.stop();
    milter?.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a milter\'s 550 5.7.1 at RCPT goes out as 450 4.7.1 and is logged as milter-reject 450 4.7.1', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      await smtp.cmd('EHLO client.test');
      assert.equal((await smtp.cmd('MAIL FROM:<s@example.org>')).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<milter-reject@example.com>')).line, '450 4.7.1 Recipient refused by test milter');
      await smtp.cmd('QUIT').catch(() => undefined);
    } finally {
      smtp.close();
    }
    await server.waitForLog(/NOQUEUE: milter-reject: RCPT from localhost\[127\.0\.0\.1\]: 450 4\.7\.1 Recipient refused by test milter; from=<s@example\.org> to=<milter-reject@example\.com> proto=ESMTP helo=<client\.test>/, 10_000);
  });
});
