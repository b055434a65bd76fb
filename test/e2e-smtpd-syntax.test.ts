/**
 * End to end, smtpd's command syntax as Postfix's (actors/smtpd/syntax.ts, pipelining.ts) and
 * the smtp client's address quoting (src/address/quote.ts), against a real server relaying to a
 * sink; clients are raw sockets from 127.0.0.2 (outside mynetworks) and Python's smtplib:
 *  - quoted local parts ("a b"@x, "a@b"@x) are accepted and relayed quoted; "joe"@x as joe@x;
 *  - strict_rfc821_envelopes: MAIL FROM without <> taken by default, 501 5.1.7 when strict;
 *  - BODY=BINARYMIME: 555 5.5.4 Unsupported option;
 *  - smtpd_helo_required: MAIL without EHLO accepted by default, 503 5.5.1 when required;
 *  - improper pipelining: logged (escaped); smtpd_forbid_unauth_pipelining = yes answers
 *    554 5.5.0 and hangs up; reject_unauth_pipelining refuses DATA with 503 5.5.0.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { quote822Local } from '../src/address/quote.js';
import { BACKEND_SERVICES, freePort, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';
import { runClient } from './helpers/run-client.js';
import { needs } from './helpers/peers.js';

const CLIENT = '127.0.0.2';

describe('smtpd command syntax', () => {
  let server: TestServer;
  let sink: SmtpSink;
  const ports = { normal: 0, strict: 0, forbid: 0, rejectPipe: 0 };

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    ports.strict = await freePort();
    ports.forbid = await freePort();
    ports.rejectPipe = await freePort();
    server = await startServer({
      sinkPort,
      mainCf: { mynetworks: '127.0.0.1/32', relay_domains: 'example.net' },
      masterCf: [
        '127.0.0.1:{{PORT}} inet n - n - 1 smtpd',
        `127.0.0.1:${ports.strict} inet n - n - 1 smtpd -o strict_rfc821_envelopes=yes -o smtpd_helo_required=yes`,
        `127.0.0.1:${ports.forbid} inet n - n - 1 smtpd -o smtpd_forbid_unauth_pipelining=yes`,
        `127.0.0.1:${ports.rejectPipe} inet n - n - 1 smtpd -o smtpd_data_restrictions=reject_unauth_pipelining`,
        ...BACKEND_SERVICES,
        '',
      ].join('\n'),
    });
    ports.normal = server.port;
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  async function open(port: number, ehlo = true, from = CLIENT): Promise<SmtpDialogue> {
    const { smtp, greeting } = await SmtpDialogue.connect(port, { localAddress: from });
    assert.equal(greeting.code, 220, greeting.line);
    if (ehlo) assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
    return smtp;
  }

  test('quote822Local: as Postfix quote_822_local', () => {
    assert.equal(quote822Local('a b@x'), '"a b"@x');
    assert.equal(quote822Local('a@b@c'), '"a@b"@c');
    assert.equal(quote822Local('"a b"@x'), '"a b"@x');
    assert.equal(quote822Local('a.b@x'), 'a.b@x');
    assert.equal(quote822Local('.a@x'), '".a"@x');
    assert.equal(quote822Local('a"b@x'), '"a\\"b"@x');
    assert.equal(quote822Local(''), '');
  });

  test('quoted local parts are accepted and relayed quoted; "joe"@x becomes joe@x', async () => {
    // "a@b"@x is sender-specified routing: refused to a client outside mynetworks, as Postfix
    // (resolve_dequoted_address = yes, allow_untrusted_routing = no).
    const outside = await open(ports.normal);
    assert.equal((await outside.cmd('MAIL FROM:<me@example.org>')).code, 250);
    assert.equal((await outside.cmd('RCPT TO:<"a@b"@example.net>')).line, '454 4.7.1 <"a@b"@example.net>: Relay access denied');
    outside.close();
    const smtp = await open(ports.normal, true, '127.0.0.1');
    assert.equal((await smtp.cmd('MAIL FROM:<"s p"@example.org>')).line, '250 2.1.0 Ok');
    assert.equal((await smtp.cmd('RCPT TO:<"a b"@example.net>')).line, '250 2.1.5 Ok');
    assert.equal((await smtp.cmd('RCPT TO:<"a@b"@example.net>')).line, '250 2.1.5 Ok');
    assert.equal((await smtp.cmd('RCPT TO:<"joe"@example.net>')).line, '250 2.1.5 Ok');
    assert.equal((await smtp.cmd('RCPT TO:<"unterminated@example.net>')).line, '501 5.1.3 Bad recipient address syntax');
    assert.equal((await smtp.cmd('DATA')).code, 354);
    const r = await smtp.cmd('Subject: quoted\r\n\r\nhi\r\n.');
    assert.match(r.line, /^250 2\.0\.0 Ok: queued as /);
    smtp.close();
    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('Subject: quoted')), 30_000);
    const got = sink.messages.filter((m) => m.data.includes('Subject: quoted'));
    assert.deepEqual(got.map((m) => m.sender), ['"s p"@example.org']);
    assert.deepEqual(got.flatMap((m) => m.recipients).sort(), ['"a b"@example.net', '"a@b"@example.net', 'joe@example.net'].sort());
    await server.waitForLog(/warning: Illegal address syntax from \S+\[127\.0\.0\.1\] in RCPT command: <"unterminated@example\.net>$/, 5000);
  });

  test('Python smtplib sends to a quoted local part', { skip: needs('/usr/bin/python3', 'python3 (smtplib, the client)') }, async () => {
    const py = `import smtplib\ns = smtplib.SMTP('127.0.0.1', ${ports.normal}, source_address=('${CLIENT}', 0))\ns.sendmail('me@example.org', ['"py thon"@example.net'], 'Subject: smtplib\\r\\n\\r\\nhi\\r\\n')\ns.quit()\n`;
    const r = await runClient('python3', ['-c', py], '');
    assert.equal(r.code, 0, r.out);
    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('Subject: smtplib')), 30_000);
    assert.deepEqual(sink.messages.find((m) => m.data.includes('Subject: smtplib'))!.recipients, ['"py thon"@example.net']);
  });

  test('strict_rfc821_envelopes: an address without <> is taken by default, refused when strict', async () => {
    const a = await open(ports.normal);
    assert.equal((await a.cmd('MAIL FROM:me@example.org')).line, '250 2.1.0 Ok');
    a.close();
    const b = await open(ports.strict);
    assert.equal((await b.cmd('MAIL FROM:me@example.org')).line, '501 5.1.7 Bad sender address syntax');
    assert.equal((await b.cmd('MAIL FROM:<me@example.org>')).line, '250 2.1.0 Ok');
    b.close();
  });

  test('BODY=BINARYMIME: 555 5.5.4 Unsupported option, as Postfix', async () => {
    const smtp = await open(ports.normal);
    assert.equal((await smtp.cmd('MAIL FROM:<me@example.org> BODY=BINARYMIME')).line, '555 5.5.4 Unsupported option: BODY=BINARYMIME');
    assert.equal((await smtp.cmd('MAIL FROM:<me@example.org> BODY=8BITMIME')).line, '250 2.1.0 Ok');
    smtp.close();
  });

  test('smtpd_helo_required: MAIL without HELO is taken by default (no), refused when yes', async () => {
    const a = await open(ports.normal, false);
    assert.equal((await a.cmd('MAIL FROM:<me@example.org>')).line, '250 2.1.0 Ok');
    assert.equal((await a.cmd('RCPT TO:<you@example.net>')).line, '250 2.1.5 Ok');
    a.close();
    const b = await open(ports.strict, false);
    assert.equal((await b.cmd('MAIL FROM:<me@example.org>')).line, '503 5.5.1 Error: send HELO/EHLO first');
    b.close();
  });

  test('improper pipelining is logged with the waiting input escaped; smtpd_forbid_unauth_pipelining = yes hangs up', async () => {
    const a = await open(ports.normal, false);
    a.write('EHLO client.test\r\nNOOP \x01\r\n');
    assert.equal((await a.read()).code, 250);
    assert.equal((await a.read()).code, 250);
    a.close();
    await server.waitForLog(/improper command pipelining after EHLO from \S+\[127\.0\.0\.2\]: NOOP \\001\\r\\n$/, 5000);

    const b = await open(ports.forbid, false);
    b.write('EHLO client.test\r\nMAIL FROM:<me@example.org>\r\n');
    assert.equal((await b.read()).line, '554 5.5.0 Error: SMTP protocol synchronization');
    await new Promise((res) => b.socket.once('close', res));
    // Pipelining as RFC 2920 allows (after EHLO, MAIL and RCPT in one group) is fine.
    const c = await open(ports.forbid);
    c.write('MAIL FROM:<me@example.org>\r\nRCPT TO:<you@example.net>\r\n');
    assert.equal((await c.read()).line, '250 2.1.0 Ok');
    assert.equal((await c.read()).line, '250 2.1.5 Ok');
    c.close();
  });

  test('reject_unauth_pipelining: DATA sent with the message behind it is refused 503 5.5.0', async () => {
    const smtp = await open(ports.rejectPipe);
    assert.equal((await smtp.cmd('MAIL FROM:<me@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<you@example.net>')).code, 250);
    smtp.write('DATA\r\nSubject: too soon\r\n\r\nhi\r\n.\r\n');
    assert.equal((await smtp.read()).line, '503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining');
    smtp.close();
  });
});
