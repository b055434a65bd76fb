/**
 * End to end, a next hop that answers MAIL FROM with 421 and hangs up: the smtp agent logs
 * Postfix's "host … said: 421 … (in reply to MAIL FROM command)" for every recipient, never
 * "lost connection … while sending RCPT TO", and the message stays deferred.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { queuedId, rfc822, sendRaw, startServer } from './helpers/server.js';
import { closingAtMail } from './helpers/closing-next-hop.js';

test("a next hop's 421 to a pipelined MAIL FROM is logged as its reply to MAIL FROM", async (t) => {
  const peer = await closingAtMail(true);
  const server = await startServer({ sinkPort: peer.port });
  t.after(async () => {
    await server.stop();
    peer.close();
  });
  const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['a@example.com', 'b@example.com'], rfc822({ Subject: '421 at MAIL' }, 'x\n')));
  const lines = await server.waitForLogCount(new RegExp(`${id}: to=<[ab]@example\\.com>.*status=deferred`), 2, 20_000);
  for (const line of lines) {
    assert.match(line, new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${peer.port}, .*dsn=4\\.3\\.2, status=deferred \\(host 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\] said: 421 4\\.3\\.2 Service shutting down \\(in reply to MAIL FROM command\\)\\)$`));
  }
  assert.deepEqual(server.logLines().filter((l) => /lost connection/.test(l)), []);
});
