/**
 * End to end, smtpd's XCLIENT and XFORWARD (actors/smtpd/xclient.ts, xforward.ts): swaks as the
 * XCLIENT client (its --xclient-* options), raw dialogues for Postfix's replies to misuse, a
 * client restriction that XCLIENT's address must meet, XCLIENT LOGIN, and XFORWARD's effect on
 * the "client=" log line (orig_queue_id, orig_client) while Received keeps naming the host that
 * connected. One smtpd authorizes 127.0.0.0/8, another nobody.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { NEEDS_PYMILTER, type RunningMilter, TEST_MILTER_MACROS, startTestMilter } from './helpers/milter.js';
import { needs } from './helpers/peers.js';
import { tempDirs } from './helpers/temp.js';
import { runClient } from './helpers/run-client.js';
import { deliveredWithSubject, freePort, queuedId, rfc822, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

const NO_SWAKS = needs('/usr/bin/swaks', 'swaks');
const tempDir = tempDirs('postactor-xclient-');

describe('smtpd XCLIENT and XFORWARD', () => {
  let server: TestServer;
  let sink: SmtpSink;
  let closedPort = 0;
  let earlyPort = 0;
  let unknownPort = 0;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    closedPort = await freePort();
    earlyPort = await freePort();
    unknownPort = await freePort();
    server = await startServer({
      sinkPort: await sink.listen(0),
      env: (dir) => {
        writeFileSync(join(dir, 'clients'), '192.0.2.66 REJECT\n');
        return {};
      },
      mainCf: {
        smtpd_authorized_xclient_hosts: '127.0.0.0/8',
        smtpd_authorized_xforward_hosts: '127.0.0.0/8',
        // The XCLIENT-named clients are outside mynetworks: example.com is a relay domain.
        relay_domains: 'example.com',
        smtpd_client_restrictions: 'check_client_access texthash:clients',
        smtpd_peername_lookup: 'no',
        // The misuse test makes many errors on purpose: no sleeping, no hang-up.
        smtpd_error_sleep_time: '0',
        smtpd_hard_error_limit: '100',
      },
      masterCfExtra: [
        `127.0.0.1:${closedPort} inet n - n - 1 smtpd -o smtpd_authorized_xclient_hosts= -o smtpd_authorized_xforward_hosts=`,
        `127.0.0.1:${earlyPort} inet n - n - 1 smtpd -o smtpd_delay_reject=no`,
        `127.0.0.1:${unknownPort} inet n - n - 1 smtpd -o smtpd_client_restrictions=reject_unknown_client_hostname`,
      ].join('\n'),
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  async function session(port = server.port): Promise<SmtpDialogue> {
    const { smtp, greeting } = await SmtpDialogue.connect(port);
    assert.equal(greeting.code, 220);
    assert.equal((await smtp.cmd('EHLO proxy.test')).code, 250);
    return smtp;
  }

  test('EHLO announces XCLIENT and XFORWARD (Postfix\'s attribute lists) to authorized clients only', async () => {
    const smtp = await session();
    const ehlo = await smtp.cmd('EHLO proxy.test');
    assert.ok(ehlo.lines.includes('XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT'), ehlo.lines.join('|'));
    assert.ok(ehlo.lines.includes('XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT'), ehlo.lines.join('|'));
    assert.ok(ehlo.lines.indexOf('XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT') < ehlo.lines.indexOf('ENHANCEDSTATUSCODES'));
    smtp.close();
    const other = await session(closedPort);
    const e2 = await other.cmd('EHLO proxy.test');
    assert.ok(!e2.lines.some((l) => /^X(CLIENT|FORWARD)/.test(l)), e2.lines.join('|'));
    assert.equal((await other.cmd('XCLIENT ADDR=192.0.2.7')).line, '550 5.7.0 Error: insufficient authorization');
    assert.equal((await other.cmd('XFORWARD ADDR=192.0.2.7')).line, '550 5.7.0 Error: insufficient authorization');
    other.close();
  });

  test('swaks --xclient-*: the session becomes the named client (log, Received, disconnect line)', { skip: NO_SWAKS }, async () => {
    const r = await runClient('swaks', [
      '--server', `127.0.0.1:${server.port}`, '--from', 'origin@example.org', '--to', 'rcpt@example.com',
      '--xclient-addr', '192.0.2.7', '--xclient-name', 'origin.example.org', '--xclient-helo', 'origin-helo.example.org',
      '--xclient-proto', 'ESMTP', '--xclient-port', '4711',
      '--header', 'Subject: via xclient', '--body', 'hello',
    ], '');
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /<- {1,2}220 mx\.postactor\.test ESMTP Postactor/);
    const msg = await deliveredWithSubject(sink, 'via xclient');
    assert.match(msg, /Received: from [^\r\n]* \(origin\.example\.org \[192\.0\.2\.7\]\)/);
    await server.waitForLog(/: client=origin\.example\.org\[192\.0\.2\.7\]$/, 10_000);
    await server.waitForLog(/disconnect from origin\.example\.org\[192\.0\.2\.7\] ehlo=2 xclient=1 mail=1 rcpt=1 data=1 quit=1 commands=7/, 10_000);
  });

  test('the restrictions judge the XCLIENT client; it may no longer use XCLIENT once outside the list', async () => {
    const smtp = await session();
    const r = await smtp.cmd('XCLIENT ADDR=192.0.2.66 NAME=[UNAVAILABLE]');
    assert.equal(r.line, '220 mx.postactor.test ESMTP Postactor');
    const ehlo = await smtp.cmd('EHLO proxy.test');
    assert.ok(!ehlo.lines.some((l) => l.startsWith('XCLIENT')), ehlo.lines.join('|'));
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<r@example.com>')).line, '554 5.7.1 <unknown[192.0.2.66]>: Client host rejected: Access denied');
    assert.equal((await smtp.cmd('RSET')).code, 250);
    assert.equal((await smtp.cmd('XCLIENT ADDR=127.0.0.1')).line, '550 5.7.0 Error: insufficient authorization');
    smtp.close();
  });

  test('reject_unknown_client_hostname judges the name XCLIENT gives: [TEMPUNAVAIL] is 450 4.7.25, a host name passes', async () => {
    const smtp = await session(unknownPort);
    assert.equal((await smtp.cmd('XCLIENT ADDR=192.0.2.7 NAME=[TEMPUNAVAIL]')).code, 220);
    assert.equal((await smtp.cmd('EHLO proxy.test')).code, 250);
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<r@example.com>')).line, '450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.7]');
    smtp.close();
    const named = await session(unknownPort);
    assert.equal((await named.cmd('XCLIENT ADDR=192.0.2.8 NAME=host.example')).code, 220);
    assert.equal((await named.cmd('EHLO proxy.test')).code, 250);
    assert.equal((await named.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await named.cmd('RCPT TO:<r@example.com>')).code, 250);
    named.close();
  });

  test('with smtpd_delay_reject = no the client restrictions answer XCLIENT\'s new greeting', async () => {
    const smtp = await session(earlyPort);
    const r = await smtp.cmd('XCLIENT ADDR=192.0.2.66');
    assert.equal(r.line, '554 5.7.1 <unknown[192.0.2.66]>: Client host rejected: Access denied');
    smtp.close();
    await server.waitForLog(/NOQUEUE: reject: CONNECT from unknown\[192\.0\.2\.66\]: 554 5\.7\.1 <unknown\[192\.0\.2\.66\]>: Client host rejected: Access denied;/, 10_000);
  });

  test('Postfix\'s replies to bad XCLIENT and XFORWARD commands', async () => {
    const smtp = await session();
    for (const cmd of ['XCLIENT', 'XFORWARD']) {
      assert.equal((await smtp.cmd(cmd)).line, `501 5.5.4 Syntax: ${cmd} attribute=value...`);
      assert.equal((await smtp.cmd(`${cmd} NAME`)).line, '501 5.5.4 Error: attribute=value expected');
      assert.equal((await smtp.cmd(`${cmd} FOO=bar`)).line, `501 5.5.4 Bad ${cmd} attribute name: FOO`);
      assert.equal((await smtp.cmd(`${cmd} ADDR=300.1.2.3`)).line, '501 5.5.4 Bad ADDR syntax: 300.1.2.3');
      assert.equal((await smtp.cmd(`${cmd} PORT=7x`)).line, '501 5.5.4 Bad PORT syntax: 7x');
      assert.equal((await smtp.cmd(`${cmd} NAME=bad..name`)).line, '501 5.5.4 Bad NAME syntax: bad..name');
      assert.equal((await smtp.cmd(`${cmd} HELO=${'h'.repeat(256)}`)).line, '501 5.5.4 Error: attribute value too long');
    }
    assert.equal((await smtp.cmd('XCLIENT PROTO=LMTP')).line, '501 5.5.4 Bad PROTO syntax: LMTP');
    assert.equal((await smtp.cmd('XFORWARD SOURCE=ELSEWHERE')).line, '501 5.5.4 Bad SOURCE syntax: ELSEWHERE');
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('XCLIENT ADDR=192.0.2.1')).line, '503 5.5.1 Error: MAIL transaction in progress');
    assert.equal((await smtp.cmd('XFORWARD ADDR=192.0.2.1')).line, '503 5.5.1 Error: MAIL transaction in progress');
    smtp.close();
  });

  test('XCLIENT LOGIN: logged as sasl_method=XCLIENT, Received says ESMTPA', async () => {
    const smtp = await session();
    assert.equal((await smtp.cmd('XCLIENT LOGIN=alice NAME=mua.example.org ADDR=192.0.2.8 PROTO=ESMTP HELO=mua.example.org')).code, 220);
    // HELO and PROTO given: no new EHLO needed.
    assert.equal((await smtp.cmd('MAIL FROM:<alice@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<r@example.com>')).code, 250);
    assert.equal((await smtp.cmd('DATA')).code, 354);
    smtp.write(rfc822({ Subject: 'xclient login' }, 'hi\r\n') + '.\r\n');
    const id = queuedId(await smtp.read());
    smtp.close();
    await server.waitForLog(new RegExp(`${id}: client=mua\\.example\\.org\\[192\\.0\\.2\\.8\\], sasl_method=XCLIENT, sasl_username=alice$`), 10_000);
    const msg = await deliveredWithSubject(sink, 'xclient login');
    assert.match(msg, /Received: from mua\.example\.org \(mua\.example\.org \[192\.0\.2\.8\]\)\r\n\tby mx\.postactor\.test \(Postactor\) with ESMTPA id /);
  });

  test('XFORWARD: the client= line names the original client and queue ID, for one transaction only', async () => {
    const smtp = await session();
    assert.equal((await smtp.cmd('XFORWARD NAME=spike.example.org ADDR=192.0.2.9 PORT=1234')).line, '250 2.0.0 Ok');
    assert.equal((await smtp.cmd('XFORWARD PROTO=ESMTP HELO=spike.example.org IDENT=4abcXYZ SOURCE=REMOTE')).line, '250 2.0.0 Ok');
    const send = async (subject: string) => {
      assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<r@example.com>')).code, 250);
      assert.equal((await smtp.cmd('DATA')).code, 354);
      smtp.write(rfc822({ Subject: subject }, 'hi\r\n') + '.\r\n');
      return queuedId(await smtp.read());
    };
    const first = await send('xforward one');
    const second = await send('xforward two');
    smtp.close();
    await server.waitForLog(new RegExp(`${first}: client=unknown\\[127\\.0\\.0\\.1\\], orig_queue_id=4abcXYZ, orig_client=spike\\.example\\.org\\[192\\.0\\.2\\.9\\]$`), 10_000);
    await server.waitForLog(new RegExp(`${second}: client=unknown\\[127\\.0\\.0\\.1\\]$`), 10_000);
    // Received names the host that connected (as Postfix's smtpd writes it).
    const msg = await deliveredWithSubject(sink, 'xforward one');
    assert.match(msg, /Received: from proxy\.test \(unknown \[127\.0\.0\.1\]\)/);
  });
});

describe('XCLIENT and BDAT through smtpd_milters (python3-milter)', { skip: NEEDS_PYMILTER }, () => {
  let server: TestServer;
  let sink: SmtpSink;
  let milter: RunningMilter;

  before(async () => {
    milter = await startTestMilter(tempDir());
    sink = new SmtpSink({ keepMessages: true });
    server = await startServer({
      sinkPort: await sink.listen(0),
      mainCf: {
        smtpd_milters: `inet:127.0.0.1:${milter.port}`,
        ...TEST_MILTER_MACROS,
        smtpd_authorized_xclient_hosts: '127.0.0.0/8',
        relay_domains: 'example.com',
      },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
    milter?.child.kill('SIGKILL');
  });

  test('the milter hears a new connection from the XCLIENT client, and filters a message sent with BDAT', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(server.port);
    assert.equal(greeting.code, 220);
    assert.equal((await smtp.cmd('EHLO proxy.test')).code, 250);
    assert.equal((await smtp.cmd('XCLIENT ADDR=192.0.2.7 NAME=origin.example.org')).code, 220);
    assert.equal((await smtp.cmd('EHLO origin.example.org')).code, 250);
    const msg = rfc822({ Subject: 'bdat through the milter' }, 'hi\r\n');
    smtp.write(`MAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.com>\r\nBDAT ${msg.length} LAST\r\n${msg}`);
    assert.equal((await smtp.read()).code, 250);
    assert.equal((await smtp.read()).code, 250);
    assert.match((await smtp.read()).line, new RegExp(`^250 2\\.0\\.0 Ok: ${msg.length} bytes queued as \\S+$`));
    smtp.close();
    const got = await deliveredWithSubject(sink, 'changed by milter: bdat through the milter');
    assert.match(got, /X-Test-Client: 192\.0\.2\.7 origin\.example\.org/);
  });
});

describe('a content-filter loop through Postactor\'s own re-injection smtpd, with XFORWARD', () => {
  let server: TestServer;
  let sink: SmtpSink;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    const reinjectPort = await freePort();
    server = await startServer({
      sinkPort,
      mainCf: {
        // Everything received goes to "the filter" (here straight back in on the re-injection
        // port); the smtp client tells it where the mail came from.
        content_filter: `smtp:[127.0.0.1]:${reinjectPort}`,
        smtp_send_xforward_command: 'yes',
        smtpd_authorized_xclient_hosts: '127.0.0.0/8',
        smtpd_authorized_xforward_hosts: '127.0.0.0/8',
        relay_domains: 'example.com',
      },
      masterCfExtra: `127.0.0.1:${reinjectPort} inet n - n - 1 smtpd -o content_filter=`,
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('the re-injected message is logged with the original client and queue ID', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(server.port);
    assert.equal(greeting.code, 220);
    assert.equal((await smtp.cmd('EHLO proxy.test')).code, 250);
    assert.equal((await smtp.cmd('XCLIENT ADDR=192.0.2.7 NAME=origin.example.org HELO=origin.example.org PROTO=ESMTP')).code, 220);
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<r@example.com>')).code, 250);
    assert.equal((await smtp.cmd('DATA')).code, 354);
    smtp.write(rfc822({ Subject: 'filter loop' }, 'hi\r\n') + '.\r\n');
    const first = queuedId(await smtp.read());
    smtp.close();
    await server.waitForLog(new RegExp(`: client=\\S+\\[127\\.0\\.0\\.1\\], orig_queue_id=${first}, orig_client=origin\\.example\\.org\\[192\\.0\\.2\\.7\\]$`), 30_000);
    const msg = await deliveredWithSubject(sink, 'filter loop');
    assert.match(msg, /Received: from origin\.example\.org \(origin\.example\.org \[192\.0\.2\.7\]\)/);
  });
});
