/**
 * End to end, smtpd's limits and protocol replies as a client sees them on the wire (raw
 * socket), in Postfix's words.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

describe('e2e smtpd limits and protocol', () => {
  let server: TestServer;
  let overshootPort = 0;
  let forbidPort = 0;

  before(async () => {
    overshootPort = await freePort();
    forbidPort = await freePort();
    server = await startServer({
      mainCf: { message_size_limit: '20000', smtpd_recipient_limit: '3', myhostname: 'mx.limits.test' },
      masterCfExtra: [
        `127.0.0.1:${overshootPort} inet n - n - 1 smtpd -o smtpd_recipient_overshoot_limit=2 -o smtpd_hard_error_limit=2 -o smtpd_error_sleep_time=0`,
        `127.0.0.1:${forbidPort} inet n - n - 1 smtpd -o smtpd_forbidden_commands=FOO`,
      ].join('\n'),
    });
  });
  after(async () => {
    await server?.stop();
  });

  async function session(): Promise<SmtpDialogue> {
    const { smtp, greeting } = await SmtpDialogue.connect(server.port);
    assert.equal(greeting.code, 220);
    const ehlo = await smtp.cmd('EHLO client.test');
    assert.equal(ehlo.code, 250);
    return smtp;
  }

  test('the greeting is "220 <myhostname> ESMTP Postactor" and EHLO announces SIZE <message_size_limit>', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(server.port);
    try {
      assert.equal(`${greeting.code} ${greeting.text}`, '220 mx.limits.test ESMTP Postactor');
      const ehlo = await smtp.cmd('EHLO client.test');
      assert.equal(ehlo.code, 250);
      assert.equal(ehlo.lines[0], 'mx.limits.test');
      assert.ok(ehlo.lines.includes('SIZE 20000'), ehlo.lines.join('|'));
      assert.ok(ehlo.lines.includes('PIPELINING'));
      assert.deepEqual(await smtp.cmd('QUIT').then((r) => `${r.code} ${r.text}`), '221 2.0.0 Bye');
    } finally {
      smtp.close();
    }
  });

  test('a message over message_size_limit gets "552 5.3.4 Message size exceeds fixed limit" and the session goes on', async () => {
    const smtp = await session();
    try {
      assert.equal((await smtp.cmd('MAIL FROM:<big@example.org>')).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<r@example.com>')).code, 250);
      assert.equal((await smtp.cmd('DATA')).code, 354);
      smtp.write('Subject: big\r\n\r\n' + ('z'.repeat(998) + '\r\n').repeat(25) + '.\r\n');
      const r = await smtp.read();
      assert.equal(`${r.code} ${r.text}`, '552 5.3.4 Message size exceeds fixed limit');
      // The session is usable afterwards, and a small message is queued.
      assert.equal((await smtp.cmd('MAIL FROM:<small@example.org>')).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<r@example.com>')).code, 250);
      assert.equal((await smtp.cmd('DATA')).code, 354);
      smtp.write('Subject: small\r\n\r\nok\r\n.\r\n');
      assert.match((await smtp.read()).text, /^2\.0\.0 Ok: queued as \S+$/);
    } finally {
      smtp.close();
    }
    await server.waitForLog(/: reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 552 5\.3\.4 Message size exceeds fixed limit; proto=ESMTP helo=<client\.test>$/, 5000);
  });

  test('MAIL FROM with SIZE= over the limit gets "552 5.3.4 Message size exceeds fixed limit"', async () => {
    const smtp = await session();
    try {
      const r = await smtp.cmd('MAIL FROM:<big@example.org> SIZE=20001');
      assert.equal(`${r.code} ${r.text}`, '552 5.3.4 Message size exceeds fixed limit');
      assert.equal((await smtp.cmd('MAIL FROM:<ok@example.org> SIZE=20000')).code, 250);
    } finally {
      smtp.close();
    }
  });

  test('with smtpd_recipient_limit=3 the 4th RCPT gets "452 4.5.3 Error: too many recipients"', async () => {
    const smtp = await session();
    try {
      assert.equal((await smtp.cmd('MAIL FROM:<s@example.org>')).code, 250);
      for (let i = 1; i <= 3; i++) assert.equal(`${(await smtp.cmd(`RCPT TO:<r${i}@example.com>`)).code}`, '250');
      const r = await smtp.cmd('RCPT TO:<r4@example.com>');
      assert.equal(`${r.code} ${r.text}`, '452 4.5.3 Error: too many recipients');
    } finally {
      smtp.close();
    }
  });

  test('smtpd_recipient_overshoot_limit=2: the first two "too many recipients" are not errors, the next ones are (hard limit 2: hang-up)', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(overshootPort);
    try {
      assert.equal(greeting.code, 220);
      assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
      assert.equal((await smtp.cmd('MAIL FROM:<s@example.org>')).code, 250);
      for (let i = 1; i <= 3; i++) assert.equal((await smtp.cmd(`RCPT TO:<r${i}@example.com>`)).code, 250);
      // Two forgiven, then two errors: the hard limit is reached at the next command.
      for (let i = 4; i <= 7; i++) assert.equal((await smtp.cmd(`RCPT TO:<r${i}@example.com>`)).line, '452 4.5.3 Error: too many recipients');
      assert.equal((await smtp.cmd('NOOP')).line, '421 4.7.0 mx.limits.test Error: too many errors');
    } finally {
      smtp.close();
    }
  });

  test('not SMTP (smtpd_forbidden_commands, a header line): "221 2.7.0 Error: I can break rules, too. Goodbye." and hang-up, with Postfix\'s warning', async () => {
    for (const [port, line] of [[server.port, 'GET / HTTP/1.1'], [server.port, 'Subject: hello'], [server.port, '(oops'], [forbidPort, 'FOO bar']] as const) {
      const { smtp, greeting } = await SmtpDialogue.connect(port);
      try {
        assert.equal(greeting.code, 220);
        assert.equal((await smtp.cmd(line)).line, '221 2.7.0 Error: I can break rules, too. Goodbye.', line);
        const deadline = Date.now() + 20_000;
        while (!smtp.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        assert.ok(smtp.closed, `${line}: the server hangs up`);
      } finally {
        smtp.close();
      }
      await server.waitForLog(new RegExp(`warning: non-SMTP command from localhost\\[127\\.0\\.0\\.1\\]: ${line.replace(/[()]/g, '\\$&')}$`), 5000);
    }
    // Not forbidden: an unknown command, answered and the session goes on.
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      assert.match((await smtp.cmd('HEAD / HTTP/1.0')).line, /^50[02] 5\.5\.2 Error: command not recognized$/);
      assert.equal((await smtp.cmd('FOO bar')).code >= 500, true, 'FOO is forbidden only where smtpd_forbidden_commands says so');
      assert.equal((await smtp.cmd('NOOP')).code, 250);
    } finally {
      smtp.close();
    }
  });

  test('an unknown MAIL or RCPT parameter gets Postfix\'s "555 5.5.4 Unsupported option: NAME=value"; the known ones pass', async () => {
    const smtp = await session();
    try {
      const line = async (cmd: string) => {
        const r = await smtp.cmd(cmd);
        return `${r.code} ${r.text}`;
      };
      assert.equal(await line('MAIL FROM:<s@example.org> FOO=bar'), '555 5.5.4 Unsupported option: FOO=bar');
      assert.equal(await line('MAIL FROM:<s@example.org> BODY=8BITMIME SIZE=100 RET=HDRS ENVID=e1'), '250 2.1.0 Ok');
      assert.equal(await line('RCPT TO:<r@example.com> XYZ=1'), '555 5.5.4 Unsupported option: XYZ=1');
      assert.equal(await line('QUIT'), '221 2.0.0 Bye');
    } finally {
      smtp.close();
    }
  });

  test('protocol errors: DATA before RCPT, RCPT before MAIL, unknown command, bad MAIL FROM syntax', async () => {
    const smtp = await session();
    try {
      const line = async (cmd: string) => {
        const r = await smtp.cmd(cmd);
        return `${r.code} ${r.text}`;
      };
      assert.equal(await line('RCPT TO:<r@example.com>'), '503 5.5.1 Error: need MAIL command');
      assert.equal(await line('MAIL FROM:<s@example.org>'), '250 2.1.0 Ok');
      // In a transaction without a recipient, Postfix's words; outside one, "need RCPT".
      assert.equal(await line('DATA'), '554 5.5.1 Error: no valid recipients');
      assert.equal(await line('RSET'), '250 2.0.0 Ok');
      assert.equal(await line('DATA'), '503 5.5.1 Error: need RCPT command');
      assert.equal(await line('XYZZY'), '500 5.5.2 Error: command not recognized');
      assert.match(await line('MAIL FROM:<bad'), /^501 5\.1\.7 Bad sender address syntax$/);
      assert.equal(await line('NOOP'), '250 2.0.0 Ok');
      assert.equal(await line('QUIT'), '221 2.0.0 Bye');
    } finally {
      smtp.close();
    }
  });

  test('VRFY answers 252 when enabled', async () => {
    const smtp = await session();
    try {
      const r = await smtp.cmd('VRFY postmaster');
      assert.equal(r.code, 252);
      assert.match(r.text, /^2\.0\.0 postmaster$/);
    } finally {
      smtp.close();
    }
  });
});

describe('e2e smtpd with disable_vrfy_command = yes', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({ mainCf: { disable_vrfy_command: 'yes' } });
  });
  after(async () => {
    await server?.stop();
  });

  test('VRFY gets "502 5.5.1 VRFY command is disabled" and EHLO does not announce VRFY', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(server.port);
    try {
      assert.equal(`${greeting.code} ${greeting.text}`, '220 mx.postactor.test ESMTP Postactor');
      const ehlo = await smtp.cmd('EHLO client.test');
      assert.ok(!ehlo.lines.includes('VRFY'));
      const r = await smtp.cmd('VRFY postmaster');
      assert.equal(`${r.code} ${r.text}`, '502 5.5.1 VRFY command is disabled');
    } finally {
      smtp.close();
    }
  });
});
