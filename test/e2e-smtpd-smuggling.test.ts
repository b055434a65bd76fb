/**
 * End to end, smtpd's bare-newline handling (actors/smtpd/bare-newline.ts, line-reader.ts) and
 * line_length_limit, with raw sockets from 127.0.0.2 (outside mynetworks = 127.0.0.1/32) and a
 * real relay to a sink, one smtpd service per setting:
 *  - normalize (the default): "\n.\n", "\r\n.\n" and "\n.\r\n" never end DATA; the "." line is
 *    dropped from the content; a bare LF becomes CRLF in the relayed copy;
 *  - reject: a command with a bare LF is answered "550 5.5.2 <myhostname> Error: bare <LF>
 *    received" and the session ends; content with a bare LF is refused at its end, nothing
 *    queued, the session goes on; with reject_code 521 the session ends; mynetworks excluded;
 *  - no: "\n.\n" ends DATA (Postfix 3.8's behaviour, kept for that setting);
 *  - a command line beyond line_length_limit is cut there, its rest skipped.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { BACKEND_SERVICES, freePort, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

const HOST = 'mx.postactor.test';
const CLIENT = '127.0.0.2';

describe('smtpd_forbid_bare_newline', () => {
  let server: TestServer;
  let sink: SmtpSink;
  const ports = { normalize: 0, reject: 0, reject521: 0, no: 0 };

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    server = await startServer({
      sinkPort,
      mainCf: { mynetworks: '127.0.0.1/32', relay_domains: 'example.net' },
      masterCf: [
        `127.0.0.1:{{PORT}} inet n - n - 1 smtpd`,
        `127.0.0.1:${ports.reject} inet n - n - 1 smtpd -o smtpd_forbid_bare_newline=reject`,
        `127.0.0.1:${ports.reject521} inet n - n - 1 smtpd -o smtpd_forbid_bare_newline=reject -o smtpd_forbid_bare_newline_reject_code=521`,
        `127.0.0.1:${ports.no} inet n - n - 1 smtpd -o smtpd_forbid_bare_newline=no`,
        ...BACKEND_SERVICES,
        '',
      ].join('\n'),
    });
    ports.normalize = server.port;
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  async function session(port: number, from = CLIENT): Promise<SmtpDialogue> {
    const { smtp, greeting } = await SmtpDialogue.connect(port, { localAddress: from });
    assert.equal(greeting.code, 220, greeting.line);
    assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
    return smtp;
  }

  async function relayed(subject: string): Promise<string> {
    await sink.waitFor(() => sink.messages.some((m) => m.data.includes(`Subject: ${subject}`)), 30_000);
    return sink.messages.find((m) => m.data.includes(`Subject: ${subject}`))!.data.toString('latin1');
  }

  test('normalize (default): "\\n.\\n", "\\r\\n.\\n", "\\n.\\r\\n" do not end DATA, their "." lines are dropped, bare LF becomes CRLF', async () => {
    const smtp = await session(ports.normalize);
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.net>')).code, 250);
    assert.equal((await smtp.cmd('DATA')).code, 354);
    smtp.write('Subject: smuggle1\r\n\r\none\n.\nMAIL FROM:<evil@example.org>\r\n.\nRCPT TO:<x@example.net>\n.\r\nDATA\r\nbare\nend\r\n.\r\n');
    const r = await smtp.read();
    assert.match(r.line, /^250 2\.0\.0 Ok: queued as /);
    assert.equal((await smtp.cmd('QUIT')).code, 221);
    smtp.close();
    const data = await relayed('smuggle1');
    const body = data.slice(data.indexOf('\r\n\r\n') + 4);
    assert.equal(body, 'one\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<x@example.net>\r\nDATA\r\nbare\r\nend\r\n');
    assert.equal(sink.messages.filter((m) => m.data.includes('Subject: smuggle1')).length, 1);
  });

  test('no: "\\n.\\n" ends DATA (the smuggled command then runs), as Postfix 3.8 without the defence', async () => {
    const smtp = await session(ports.no);
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.net>')).code, 250);
    assert.equal((await smtp.cmd('DATA')).code, 354);
    smtp.write('Subject: nodefence\r\n\r\none\n.\nNOOP\r\n');
    assert.match((await smtp.read()).line, /^250 2\.0\.0 Ok: queued as /);
    assert.equal((await smtp.read()).line, '250 2.0.0 Ok');
    smtp.close();
  });

  test('reject: a command with a bare LF gets 550 5.5.2 and the session ends; logged as Postfix logs it', async () => {
    const smtp = await session(ports.reject);
    smtp.write('MAIL FROM:<a@example.org>\n');
    const r = await smtp.read();
    assert.equal(r.line, `550 5.5.2 ${HOST} Error: bare <LF> received`);
    await new Promise((res) => smtp.socket.once('close', res));
    await server.waitForLog(new RegExp(`NOQUEUE: reject: EHLO from \\S+\\[${CLIENT.replace(/\./g, '\\.')}\\]: bare <LF> received; proto=ESMTP helo=<client\\.test>$`), 5000);
  });

  test('reject: content with a bare LF is refused at its end, nothing queued, the session goes on', async () => {
    const smtp = await session(ports.reject);
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.net>')).code, 250);
    assert.equal((await smtp.cmd('DATA')).code, 354);
    smtp.write('Subject: rejected\r\n\r\nbare\nline\r\n.\r\n');
    assert.equal((await smtp.read()).line, `550 5.5.2 ${HOST} Error: bare <LF> received`);
    assert.equal((await smtp.cmd('RSET')).code, 250);
    assert.equal((await smtp.cmd('QUIT')).code, 221);
    smtp.close();
    await server.waitForLog(/: reject: END-OF-MESSAGE from \S+\[127\.0\.0\.2\]: bare <LF> received; from=<a@example\.org> to=<b@example\.net> proto=ESMTP helo=<client\.test>$/, 5000);
    await new Promise((res) => setTimeout(res, 1000));
    assert.equal(sink.messages.filter((m) => m.data.includes('Subject: rejected')).length, 0);
  });

  test('reject with smtpd_forbid_bare_newline_reject_code = 521: refused content ends the session', async () => {
    const smtp = await session(ports.reject521);
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.net>')).code, 250);
    assert.equal((await smtp.cmd('DATA')).code, 354);
    smtp.write('Subject: r521\r\n\r\nbare\n.\r\n.\r\n');
    assert.equal((await smtp.read()).line, `521 5.5.2 ${HOST} Error: bare <LF> received`);
    await new Promise((res) => smtp.socket.once('close', res));
  });

  test('reject: clients in smtpd_forbid_bare_newline_exclusions ($mynetworks) are read as with "no"', async () => {
    const smtp = await session(ports.reject, '127.0.0.1');
    smtp.write('NOOP\n');
    assert.equal((await smtp.read()).line, '250 2.0.0 Ok');
    smtp.close();
  });

  test('line_length_limit (2048): a longer command is cut there and the rest of its line skipped', async () => {
    const smtp = await session(ports.normalize);
    smtp.write(`NOOP ${'x'.repeat(5000)}\r\nNOOP\r\n`);
    assert.equal((await smtp.read()).line, '250 2.0.0 Ok');
    assert.equal((await smtp.read()).line, '250 2.0.0 Ok');
    // Nothing else was taken for a command: the next reply is QUIT's.
    assert.equal((await smtp.cmd('QUIT')).code, 221);
    smtp.close();
  });
});
