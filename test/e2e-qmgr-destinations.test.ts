/**
 * qmgr's queues: a destination is transport:nexthop, except when the transport's recipient limit
 * is 1 — then each recipient is its own destination, and the per-destination concurrency limit
 * means concurrency per recipient (Postfix: default_destination_recipient_limit = 1 "changes the
 * meaning of the corresponding per-destination concurrency limit").
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';

describe('qmgr destinations and recipient limit 1', () => {
  let sink: SmtpSink;
  let server: TestServer;
  const got: SinkMessage[] = [];

  before(async () => {
    sink = new SmtpSink({ dataDelayMs: 1200 });
    sink.on('message', (m: SinkMessage) => got.push(m));
    server = await startServer({
      sinkPort: await sink.listen(0),
      mainCf: { relay_destination_concurrency_limit: '1', smtp_destination_concurrency_limit: '1', smtp_destination_recipient_limit: '1' },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('recipient limit 1 with concurrency limit 1: three recipients at one domain are delivered in parallel, one per delivery', async () => {
    const r = await sendRaw(server.port, 'a@example.org', ['p1@example.com', 'p2@example.com', 'p3@example.com'], rfc822({ Subject: 'parallel' }, 'x\n'));
    assert.equal(r.code, 250, r.line);
    const deadline = Date.now() + 15_000;
    while (got.length < 3 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    assert.equal(got.length, 3);
    assert.deepEqual(got.map((m) => m.recipients.length), [1, 1, 1], 'one recipient per delivery');
    const times = got.map((m) => m.receivedAt);
    // Serially (one queue for example.com, concurrency 1) they would end ≥ 1.2 s apart.
    assert.ok(Math.max(...times) - Math.min(...times) < 1000, `deliveries overlapped (spread ${Math.max(...times) - Math.min(...times)} ms)`);
  });
});
