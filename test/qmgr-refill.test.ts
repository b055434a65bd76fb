/**
 * qmgr's recipient slices (Postfix's qmgr_message_recipient_limit and recipient refills) and
 * preemption end to end: a message with more recipients than fit in memory is read in slices
 * and every recipient is delivered exactly once; a one-recipient message sent after it overtakes
 * it; a restart in the middle of it does not deliver again what was recorded done.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink } from '../src/smtp/sink.js';
import { rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';

const N = 120;

describe('qmgr recipient slices and preemption', () => {
  const servers: TestServer[] = [];
  const sinks: SmtpSink[] = [];
  after(async () => {
    for (const s of servers) await s.stop();
    for (const s of sinks) await s.close();
  });

  function counting(dataDelayMs: number): { sink: SmtpSink; seen: Map<string, number[]> } {
    const sink = new SmtpSink({ dataDelayMs });
    sinks.push(sink);
    const seen = new Map<string, number[]>();
    sink.on('message', (m: { recipients: string[] }) => {
      for (const r of m.recipients) seen.set(r, [...(seen.get(r) ?? []), Date.now()]);
    });
    return { sink, seen };
  }

  async function send(port: number, to: string[], tag: string): Promise<void> {
    const r = await sendRaw(port, 'sender@example.org', to, rfc822({ Subject: tag, 'Message-ID': `<${tag}@t>` }, 'slices\n'));
    assert.equal(r.code, 250, r.text);
  }

  const list = Array.from({ length: N }, (_, i) => `l${i}@example.com`);

  test('qmgr_message_recipient_limit = 20: a 120-recipient message is read in slices, each recipient delivered once; a later 1-recipient message overtakes it', async () => {
    const { sink, seen } = counting(100);
    const server = await startServer({
      sinkPort: await sink.listen(0),
      mainCf: { qmgr_message_recipient_limit: '20', default_recipient_refill_limit: '10', smtp_destination_recipient_limit: '5', smtp_destination_concurrency_limit: '2', initial_destination_concurrency: '2', smtpd_recipient_limit: '1000' },
    });
    servers.push(server);
    await send(server.port, list, 'list');
    await server.waitForLog(/nrcpt=120 \(queue active\)/, 10_000);
    await send(server.port, ['small@example.com'], 'small');
    await server.waitForLogCount(/status=sent/, N + 1, 60_000);
    assert.equal(seen.size, N + 1);
    for (const [r, times] of seen) assert.equal(times.length, 1, `${r} delivered ${times.length} times`);
    const lastList = Math.max(...list.map((r) => seen.get(r)![0]!));
    assert.ok(seen.get('small@example.com')![0]! < lastList, 'the small message did not wait for the whole list');
  });

  test('kill -9 in the middle of a sliced message: after the restart, recipients recorded done (over 1.5 s before the kill) are not delivered again', async () => {
    const { sink, seen } = counting(150);
    const server = await startServer({
      sinkPort: await sink.listen(0),
      mainCf: { qmgr_message_recipient_limit: '20', default_recipient_refill_limit: '10', smtp_destination_recipient_limit: '5', smtp_destination_concurrency_limit: '1', initial_destination_concurrency: '1', smtpd_recipient_limit: '1000' },
    });
    servers.push(server);
    await send(server.port, list, 'crash');
    await server.waitForLogCount(/status=sent/, 50, 30_000);
    await new Promise((r) => setTimeout(r, 300));
    const killedAt = Date.now();
    await server.kill('SIGKILL');
    const before = new Map([...seen].map(([r, t]) => [r, t[0]!]));
    assert.ok(before.size >= 50 && before.size < N, `${before.size} delivered before the kill`);
    await server.restart();
    const deadline = Date.now() + 60_000;
    while (seen.size < N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(seen.size, N, 'every recipient delivered after the restart');
    let again = 0;
    for (const [r, first] of before) {
      const n = seen.get(r)!.length;
      if (n > 1) again++;
      if (first < killedAt - 1500) assert.equal(n, 1, `${r}, delivered ${killedAt - first} ms before the kill, was delivered ${n} times`);
    }
    assert.ok(again < before.size, `${again} of ${before.size} delivered again: none was recorded done`);
  });
});
