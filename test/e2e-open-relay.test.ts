/**
 * End to end, the classic open-relay tricks against a running server with the DEFAULT
 * restrictions (smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated,
 * defer_unauth_destination) and mynetworks = 127.0.0.1/32, from 127.0.0.2 (not trusted):
 * every address that would be relayed to a foreign domain is refused — never 250 — as Postfix
 * refuses sender-specified routing (%, !, quoted or second @) in addresses of its own domains.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

const US = 'us.test';

describe('e2e open relay: every classic trick is refused from an untrusted client', () => {
  let server: TestServer;

  before(async () => {
    server = await startServer({
      // local_recipient_maps empty: any user of our domains is valid (this suite is about relay
      // control, not smtpd_reject_unlisted_recipient).
      mainCf: { mynetworks: '127.0.0.1/32', mydestination: `$myhostname, ${US}, localhost`, inet_interfaces: '127.0.0.1', local_recipient_maps: '' },
      masterCfExtra: 'rewrite unix - - n - 1 trivial-rewrite',
    });
  });
  after(async () => {
    await server?.stop();
  });

  async function rcpt(to: string, localAddress = '127.0.0.2'): Promise<{ code: number; line: string }> {
    const { smtp, greeting } = await SmtpDialogue.connect(server.port, { localAddress });
    try {
      assert.equal(greeting.code, 220);
      assert.equal((await smtp.cmd('EHLO client.example')).code, 250);
      assert.equal((await smtp.cmd('MAIL FROM:<sender@client.example>')).code, 250);
      const r = await smtp.cmd(`RCPT TO:<${to}>`);
      await smtp.cmd('QUIT').catch(() => undefined);
      return { code: r.code, line: r.line };
    } finally {
      smtp.close();
    }
  }

  const tricks = [
    `user%other.example@${US}`,
    `@${US}:user@other.example`,
    `"user@other.example"@${US}`,
    `user@other.example@${US}`,
    `other.example!user@${US}`,
    'user@other.example.',
    'USER@OTHER.EXAMPLE',
    'user@[192.0.2.1]',
    'user@[IPv6:2001:db8::1]',
  ];
  for (const to of tricks) {
    test(`RCPT TO:<${to}> from 127.0.0.2 is refused (4xx/5xx, never 250)`, async () => {
      const r = await rcpt(to);
      assert.ok(r.code >= 400 && r.code < 600, `${to}: ${r.line}`);
    });
  }

  test('control: mail for our own domain and for [127.0.0.1] (our interface) is accepted from 127.0.0.2', async () => {
    assert.equal((await rcpt(`user@${US}`)).code, 250);
    assert.equal((await rcpt('user@[127.0.0.1]')).code, 250);
  });

  test('control: a client in mynetworks (127.0.0.1) may relay', async () => {
    assert.equal((await rcpt('user@other.example', '127.0.0.1')).code, 250);
  });

  test('the refusal names the relay denial in Postfix\'s words (defer_unauth_destination: 454 4.7.1)', async () => {
    const r = await rcpt(`user%other.example@${US}`);
    assert.equal(r.line, `454 4.7.1 <user%other.example@${US}>: Relay access denied`);
  });
});
