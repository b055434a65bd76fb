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
