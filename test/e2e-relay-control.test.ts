/**
 * End to end, relay control: a client outside mynetworks (127.0.0.2 with mynetworks =
 * 127.0.0.1/32) may not relay to foreign domains, but may send to relay_domains; the replies
 * and the NOQUEUE log line are Postfix's.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

async function rcptFrom127002(server: TestServer, rcpt: string): Promise<string> {
  const { smtp, greeting } = await SmtpDialogue.connect(server.port, { localAddress: '127.0.0.2' });
  try {
    assert.equal(greeting.code, 220);
    assert.equal((await smtp.cmd('EHLO outsider.test')).code, 250);
    assert.equal((await smtp.cmd('MAIL FROM:<someone@outside.example>')).code, 250);
    return (await smtp.cmd(`RCPT TO:<${rcpt}>`)).line;
  } finally {
    smtp.close();
  }
}

describe('e2e relay control (default smtpd_relay_restrictions)', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ mainCf: { mynetworks: '127.0.0.1/32', relay_domains: 'relayed.example' } });
  });
  after(async () => {
    await server?.stop();
  });

  test('a client outside mynetworks gets "454 4.7.1 <x@example.com>: Relay access denied" for a foreign recipient', async () => {
    assert.equal(await rcptFrom127002(server, 'x@example.com'), '454 4.7.1 <x@example.com>: Relay access denied');
    // Postfix's NOQUEUE line, word for word (the client name is what getnameinfo says, often "unknown").
    const line = await server.waitForLog(/NOQUEUE: reject: RCPT from /, 5000);
    assert.match(line, / postactor\/smtpd\[\d+\]: NOQUEUE: reject: RCPT from [^\s[]+\[127\.0\.0\.2\]: 454 4\.7\.1 <x@example\.com>: Relay access denied; from=<someone@outside\.example> to=<x@example\.com> proto=ESMTP helo=<outsider\.test>$/);
  });

  test('a recipient in relay_domains is accepted from outside mynetworks', async () => {
    assert.equal(await rcptFrom127002(server, 'user@relayed.example'), '250 2.1.5 Ok');
  });

  test('127.0.0.1 (in mynetworks) may relay to a foreign domain', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      await smtp.cmd('EHLO insider.test');
      await smtp.cmd('MAIL FROM:<a@example.org>');
      assert.equal((await smtp.cmd('RCPT TO:<x@example.com>')).line, '250 2.1.5 Ok');
    } finally {
      smtp.close();
    }
  });
});

describe('e2e relay control (smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination)', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ mainCf: { mynetworks: '127.0.0.1/32', smtpd_relay_restrictions: 'permit_mynetworks, reject_unauth_destination' } });
  });
  after(async () => {
    await server?.stop();
  });

  test('reject_unauth_destination without defer_unauth_destination answers "554 5.7.1 …: Relay access denied"', async () => {
    assert.equal(await rcptFrom127002(server, 'x@example.com'), '554 5.7.1 <x@example.com>: Relay access denied');
    await server.waitForLog(/NOQUEUE: reject: RCPT from [^\s[]+\[127\.0\.0\.2\]: 554 5\.7\.1 <x@example\.com>: Relay access denied; from=<someone@outside\.example> to=<x@example\.com> proto=ESMTP helo=<outsider\.test>$/, 5000);
  });
});
