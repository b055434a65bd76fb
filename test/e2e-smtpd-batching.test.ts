/**
 * End to end, smtpd's reply batching (actors/smtpd/dialect.ts, writeReply): as Postfix's smtpd
 * flushes its output only once it has read everything the client sent, the replies to a group of
 * pipelined commands leave in one write, while a client that waits for each reply gets each at
 * once; the replies that end a session (QUIT's 221) are not held back. Raw sockets against a
 * real server relaying to a sink.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { BACKEND_SERVICES, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

describe('smtpd reply batching', () => {
  let server: TestServer;
  let sink: SmtpSink;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    server = await startServer({
      sinkPort,
      mainCf: { mynetworks: '127.0.0.1/32', relay_domains: 'example.net' },
      masterCf: ['127.0.0.1:{{PORT}} inet n - n - 1 smtpd', ...BACKEND_SERVICES, ''].join('\n'),
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  /** A session after EHLO, with every chunk the client receives from now on recorded. */
  async function open(): Promise<{ smtp: SmtpDialogue; chunks: string[] }> {
    const { smtp, greeting } = await SmtpDialogue.connect(server.port);
    assert.equal(greeting.code, 220, greeting.line);
    assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
    const chunks: string[] = [];
    smtp.socket.on('data', (d: Buffer | string) => chunks.push(d.toString()));
    return { smtp, chunks };
  }

  test('the replies to pipelined RSET, MAIL, RCPT, RCPT, DATA leave in one write; then the message is accepted', async () => {
    const { smtp, chunks } = await open();
    smtp.socket.write('RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n');
    const codes: number[] = [];
    for (let i = 0; i < 5; i++) codes.push((await smtp.read()).code);
    assert.deepEqual(codes, [250, 250, 250, 250, 354]);
    assert.equal(chunks.length, 1, `one write for the group, got ${JSON.stringify(chunks)}`);
    smtp.socket.write('Subject: batched\r\n\r\nbody\r\n.\r\n');
    assert.match((await smtp.read()).line, /^250 2\.0\.0 Ok: queued as /);
    smtp.socket.write('QUIT\r\n');
    assert.equal((await smtp.read()).code, 221);
    smtp.close();
  });

  test('a client that waits for each reply gets each at once', async () => {
    const { smtp, chunks } = await open();
    for (const cmd of ['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.net>', 'RSET', 'NOOP']) {
      assert.equal((await smtp.cmd(cmd)).code, 250);
    }
    assert.equal(chunks.length, 4);
    smtp.close();
  });

  test('NOOP and QUIT pipelined: both answered, then the connection closes', async () => {
    const { smtp, chunks } = await open();
    const closed = new Promise<void>((resolve) => smtp.socket.once('close', () => resolve()));
    smtp.socket.write('NOOP\r\nQUIT\r\n');
    assert.equal((await smtp.read()).code, 250);
    assert.equal((await smtp.read()).line, '221 2.0.0 Bye');
    await closed;
    assert.equal(chunks.join(''), '250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n');
  });
});
