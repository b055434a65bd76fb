import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpDialogue, freePort, startServer } from './helpers/server.js';

test('master.cf -o overrides apply to their own service only (a second smtpd with its own restrictions)', async (t) => {
  const other = await freePort();
  const server = await startServer({
    masterCfExtra: `127.0.0.1:${other} inet n - n - 1 smtpd\n  -o smtpd_client_restrictions=reject\n  -o { smtpd_banner = $myhostname ESMTP second listener }`,
  });
  t.after(() => server.stop());

  const main = await SmtpDialogue.connect(server.port);
  assert.match(main.greeting.line, /^220 mx\.postactor\.test ESMTP Postactor$/);
  await main.smtp.cmd('EHLO client.test');
  await main.smtp.cmd('MAIL FROM:<a@example.org>');
  assert.equal((await main.smtp.cmd('RCPT TO:<b@example.com>')).line, '250 2.1.5 Ok');
  main.smtp.close();

  const second = await SmtpDialogue.connect(other);
  assert.equal(second.greeting.line, '220 mx.postactor.test ESMTP second listener');
  await second.smtp.cmd('EHLO client.test');
  await second.smtp.cmd('MAIL FROM:<a@example.org>');
  const r = await second.smtp.cmd('RCPT TO:<b@example.com>');
  assert.match(r.line, /^554 5\.7\.1 <localhost\[127\.0\.0\.1\]>: Client host rejected: Access denied$/);
  second.smtp.close();
});

test('a bad -o value stops the server with master.cf:line', async () => {
  await assert.rejects(
    startServer({ masterCfExtra: 'cleanup2 unix n - n - 1 cleanup\n  -o hopcount_limit=many', readyTimeoutMs: 8000 }),
    /master\.cf:\d+: .*hopcount_limit/,
  );
});

test('content_filter (FILTER_README after-queue filter): mail goes to the filter; the re-injection smtpd with -o content_filter= delivers it', async (t) => {
  const { SmtpSink } = await import('../src/smtp/sink.js');
  const { sendRaw, rfc822 } = await import('./helpers/server.js');
  const final = new SmtpSink({ keepMessages: true });
  const filter = new SmtpSink({ keepMessages: true });
  const sinkPort = await final.listen(0);
  const filterPort = await filter.listen(0);
  const reinject = await freePort();
  const server = await startServer({
    sinkPort,
    mainCf: { content_filter: `scan:[127.0.0.1]:${filterPort}` },
    masterCfExtra: `scan unix - - n - 1 smtp\n127.0.0.1:${reinject} inet n - n - 1 smtpd\n  -o content_filter=`,
  });
  t.after(async () => {
    await server.stop();
    await final.close();
    await filter.close();
  });
  const msg = rfc822({ From: 'a@example.org', To: 'b@example.com', Subject: 'scan me' }, 'body\r\n');
  assert.equal((await sendRaw(server.port, 'a@example.org', ['b@example.com'], msg)).code, 250);
  await filter.waitFor((s) => s.messages >= 1, 15_000);
  assert.equal(final.stats.messages, 0, 'not delivered before the filter saw it');
  // The "filter" hands the message back on the re-injection port, as amavisd-style filters do.
  const scanned = filter.messages[0]!;
  assert.equal((await sendRaw(reinject, scanned.sender, scanned.recipients, scanned.data.toString('latin1'))).code, 250);
  await final.waitFor((s) => s.messages >= 1, 15_000);
  assert.equal(filter.stats.messages, 1, 'the re-injected copy does not go back to the filter');
  assert.deepEqual(final.messages[0]!.recipients, ['b@example.com']);
});
