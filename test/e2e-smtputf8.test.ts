/**
 * SMTPUTF8 end to end, as Postfix does it (smtp_proto.c, cleanup's autodetection): mail that
 * requested SMTPUTF8 and needs it (a UTF-8 recipient, sender or header) bounces with 5.6.7
 * "SMTPUTF8 is required, but was not offered by host …" at a next hop that does not announce
 * SMTPUTF8, and goes out with MAIL FROM … SMTPUTF8 to one that does; mail that requested it but
 * is all ASCII is still delivered to the next hop without it; mail that did not request it is
 * delivered as before (smtpd is not in smtputf8_autodetect_classes), and sendmail's is detected.
 * The Received header's "for <…>" is written in UTF-8. Two real sinks: the relayhost announces
 * SMTPUTF8, ascii.test's next hop does not.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { queuedId, REPO_ROOT, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { parseDsn } from './helpers/dsn.js';

async function waitFor<T>(what: string, f: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('e2e SMTPUTF8: 5.6.7 at a next hop without it, UTF-8 in Received', () => {
  let utf8: SmtpSink;   // the relayhost: announces SMTPUTF8
  let ascii: SmtpSink;  // ascii.test: does not
  let asciiPort: number;
  let server: TestServer;

  const got = (sink: SmtpSink, rcpt: string): SinkMessage | undefined => sink.messages.find((m) => m.recipients.includes(rcpt));
  const noticeAbout = (id: string): SinkMessage | undefined =>
    utf8.messages.find((m) => m.sender === '' && m.data.includes(`X-Postactor-Queue-ID: ${id}`));

  before(async () => {
    utf8 = new SmtpSink({ keepMessages: true });
    ascii = new SmtpSink({ keepMessages: true, smtputf8: false });
    const sinkPort = await utf8.listen(0);
    asciiPort = await ascii.listen(0);
    server = await startServer({
      sinkPort,
      masterCfExtra: 'pickup unix n - n 60 1 pickup',
      mainCf: {
        transport_maps: `inline:{ ascii.test=smtp:[127.0.0.1]:${asciiPort} }`,
        myorigin: 'origin.example',
      },
    });
  });
  after(async () => {
    await server?.stop();
    await utf8?.close();
    await ascii?.close();
  });

  test('MAIL FROM … SMTPUTF8 with a UTF-8 recipient, next hop without SMTPUTF8: bounced 5.6.7, the sender gets the notice', async () => {
    const id = queuedId(await sendRaw(server.port, 'alice@example.org', ['jürgen@ascii.test'], rfc822({ Subject: 'grüße' }, 'x\n'), { mailParams: 'SMTPUTF8' }));
    const line = await server.waitForLog(new RegExp(`${id}: to=<jürgen@ascii\\.test>`), 15_000);
    assert.match(line, new RegExp(`, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${asciiPort}, .*dsn=5\\.6\\.7, status=bounced \\(SMTPUTF8 is required, but was not offered by host 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]\\)$`));
    assert.equal(got(ascii, 'jürgen@ascii.test'), undefined, 'nothing reached the next hop');
    const notice = await waitFor('the non-delivery notice', () => noticeAbout(id), 15_000);
    assert.ok(notice.recipients.includes('alice@example.org'));
    const dsn = await parseDsn(notice.data);
    assert.equal(dsn.subject, 'Undelivered Mail Returned to Sender');
    const r = dsn.recipients[0]!;
    assert.equal(r.get('action'), 'failed');
    assert.equal(r.get('status'), '5.6.7');
    assert.equal(r.get('diagnostic-code'), 'X-Postactor; SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]');
    // As Postfix's bounce for mail that requested SMTPUTF8: the RFC 6533 types, utf-8 address type.
    const text = notice.data.toString('utf8');
    assert.match(text, /^Content-Type: message\/global-delivery-status\r$/m);
    assert.match(text, /^Content-Type: message\/global\r$/m);
    assert.match(text, /^Final-Recipient: utf-8; jürgen@ascii\.test\r$/m);
  });

  test('SMTPUTF8 requested, ASCII envelope but a UTF-8 header: needs it too (5.6.7)', async () => {
    const raw = Buffer.concat([Buffer.from('Subject: '), Buffer.from('café', 'utf8'), Buffer.from('\r\n\r\nx\r\n')]).toString('utf8');
    const id = queuedId(await sendRaw(server.port, 'alice@example.org', ['bob@ascii.test'], raw, { mailParams: 'SMTPUTF8' }));
    const line = await server.waitForLog(new RegExp(`${id}: to=<bob@ascii\\.test>`), 15_000);
    assert.match(line, /dsn=5\.6\.7, status=bounced \(SMTPUTF8 is required, but was not offered by host 127\.0\.0\.1\[127\.0\.0\.1\]\)$/);
  });

  test('SMTPUTF8 requested but nothing in it is UTF-8: delivered to the next hop without SMTPUTF8, MAIL FROM without the keyword', async () => {
    const id = queuedId(await sendRaw(server.port, 'alice@example.org', ['carol@ascii.test'], rfc822({ Subject: 'plain' }, 'x\n'), { mailParams: 'SMTPUTF8' }));
    const line = await server.waitForLog(new RegExp(`${id}: to=<carol@ascii\\.test>`), 15_000);
    assert.match(line, /dsn=2\.0\.0, status=sent /);
    const m = await waitFor('the message at ascii.test', () => got(ascii, 'carol@ascii.test'), 5000);
    assert.doesNotMatch(m.mailParams ?? '', /SMTPUTF8/);
  });

  test('to a next hop that announces SMTPUTF8: delivered with MAIL FROM … SMTPUTF8; Received "for <jürgen@…>" in UTF-8, verbatim', async () => {
    const id = queuedId(await sendRaw(server.port, 'alice@example.org', ['jürgen@example.com'], rfc822({ Subject: 'hi' }, 'x\n'), { mailParams: 'SMTPUTF8' }));
    const line = await server.waitForLog(new RegExp(`${id}: to=<jürgen@example\\.com>`), 15_000);
    assert.match(line, /dsn=2\.0\.0, status=sent /);
    const m = await waitFor('the message at the relayhost', () => got(utf8, 'jürgen@example.com'), 5000);
    assert.match(m.mailParams ?? '', /(^| )SMTPUTF8( |$)/);
    const received = m.data.subarray(0, m.data.indexOf('\r\n\r\n')).toString('utf8').split(/\r\n(?=\S)/)[0]!;
    assert.match(received, new RegExp(`^Received: from client\\.test \\(localhost \\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby mx\\.postactor\\.test \\(Postactor\\) with ESMTP id ${id}\\r\\n\\tfor <jürgen@example\\.com>; `));
    assert.ok(m.data.includes(Buffer.from('for <jürgen@example.com>;', 'utf8')), 'the UTF-8 bytes themselves, not Latin-1 or an encoding');
  });

  test('no SMTPUTF8 from the client: smtpd is not in smtputf8_autodetect_classes, so a UTF-8 recipient is delivered as before', async () => {
    const id = queuedId(await sendRaw(server.port, 'alice@example.org', ['zoë@ascii.test'], rfc822({ Subject: 'old style' }, 'x\n')));
    const line = await server.waitForLog(new RegExp(`${id}: to=<zoë@ascii\\.test>`), 15_000);
    assert.match(line, /dsn=2\.0\.0, status=sent /);
    const m = await waitFor('the message at ascii.test', () => got(ascii, 'zoë@ascii.test'), 5000);
    assert.ok(m.data.includes(Buffer.from('for <zoë@ascii.test>;', 'utf8')));
  });

  test('sendmail (in smtputf8_autodetect_classes): UTF-8 in the envelope counts as requested, so it bounces 5.6.7 at the next hop without SMTPUTF8', async () => {
    const r = spawnSync(join(REPO_ROOT, 'bin', 'sendmail'), ['-C', server.dir, '-f', 'alice@example.org', 'müller@ascii.test'], { input: 'Subject: local\n\nx\n', encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const line = await server.waitForLog(new RegExp(`to=<${esc('müller@ascii.test')}>`), 20_000);
    assert.match(line, /dsn=5\.6\.7, status=bounced \(SMTPUTF8 is required, but was not offered by host 127\.0\.0\.1\[127\.0\.0\.1\]\)$/);
  });
});
