/**
 * smtp_generic_maps (generic(5)) end to end: a message relayed through a real server to a real
 * sink leaves with its envelope and its address headers mapped, and nothing else changed (the
 * body, the Subject, the queued recipient in the log). A table that cannot be read defers.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { freePort, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

const MESSAGE = [
  'From: Root <root@box.local>',
  'To: friend@remote.example,',
  ' "The Admin" <admin@mx.postactor.test>',
  'Cc: other@elsewhere.example (not mapped)',
  'Subject: root@box.local stays in the subject',
  '',
  'root@box.local stays in the body too.',
  '',
].join('\r\n');

describe('smtp_generic_maps', () => {
  let server: TestServer;
  const sink = new SmtpSink({ keepMessages: true });

  before(async () => {
    const sinkPort = await sink.listen(0);
    server = await startServer({
      sinkPort,
      env: (dir) => {
        writeFileSync(join(dir, 'generic'), [
          '# root of the box, by address; anyone else of the box by domain',
          'root@box.local me@example.com',
          '@box.local nobody@example.com',
          '# a user of $myorigin by the user form',
          'admin admin@example.net',
          '',
        ].join('\n'));
        return {};
      },
      mainCf: { smtp_generic_maps: 'texthash:${config_directory}/generic' },
    });
  });
  after(async () => {
    await server?.stop();
    await sink.close();
  });

  async function send(from: string, to: string[]): Promise<void> {
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
      assert.equal((await smtp.cmd(`MAIL FROM:<${from}>`)).code, 250);
      for (const r of to) assert.equal((await smtp.cmd(`RCPT TO:<${r}>`)).code, 250);
      assert.equal((await smtp.cmd('DATA')).code, 354);
      assert.equal((await smtp.cmd(`${MESSAGE}.`)).code, 250);
    } finally {
      smtp.close();
    }
  }

  test('the envelope and the address headers leave mapped; the body, the Subject and the log keep the addresses', async () => {
    await send('root@box.local', ['friend@remote.example', 'x@box.local']);
    await sink.waitFor(() => sink.messages.length >= 1, 20_000);
    const m = sink.messages[0]!;
    assert.equal(m.sender, 'me@example.com');
    assert.deepEqual(m.recipients.slice().sort(), ['friend@remote.example', 'nobody@example.com']);
    const text = m.data.toString('utf8');
    assert.match(text, /^From: Root <me@example\.com>\r$/m);
    // admin@$myorigin (mx.postactor.test) is local: the user form "admin" applies; folding is kept.
    assert.match(text, /^To: friend@remote\.example,\r\n "The Admin" <admin@example\.net>\r$/m);
    assert.match(text, /^Cc: other@elsewhere\.example \(not mapped\)\r$/m);
    assert.match(text, /^Subject: root@box\.local stays in the subject\r$/m);
    assert.match(text, /^root@box\.local stays in the body too\.\r$/m);
    await server.waitForLog(/: to=<x@box\.local>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent/, 10_000);
  });
});

describe('smtp_generic_maps whose table fails', () => {
  let server: TestServer;
  const sink = new SmtpSink({ keepMessages: true });
  before(async () => {
    const sinkPort = await sink.listen(0);
    // A tcp: table on a port nobody listens on: every lookup fails.
    server = await startServer({ sinkPort, mainCf: { smtp_generic_maps: `tcp:127.0.0.1:${await freePort()}` } });
  });
  after(async () => {
    await server?.stop();
    await sink.close();
  });
  test('the delivery is deferred (4.3.0), with a warning; nothing leaves unmapped', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port);
    try {
      assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
      assert.equal((await smtp.cmd('MAIL FROM:<root@box.local>')).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<friend@remote.example>')).code, 250);
      assert.equal((await smtp.cmd('DATA')).code, 354);
      assert.equal((await smtp.cmd(`${MESSAGE}.`)).code, 250);
    } finally {
      smtp.close();
    }
    await server.waitForLog(/warning: smtp_generic_maps: /, 20_000);
    await server.waitForLog(/: to=<friend@remote\.example>, relay=none, .*dsn=4\.3\.0, status=deferred \(address mapping lookup failure\)/, 20_000);
    assert.equal(sink.messages.length, 0);
  });
});
