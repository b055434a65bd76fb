/**
 * Global mail flow control (Postfix's mail_flow and in_flow_delay): the token arithmetic, and a
 * real server whose queue manager has fallen behind: new messages are slowed by in_flow_delay,
 * never refused, and nothing is lost.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MailFlow } from '../src/runtime/flow.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { rfc822, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

describe('mail flow tokens (Postfix qmgr / mail_flow)', () => {
  test('get takes only what is there; put adds', () => {
    const f = MailFlow.create();
    assert.equal(f.get(1), false);
    f.put(3);
    assert.equal(f.get(2), true);
    assert.equal(f.get(2), false, 'one left: two cannot be taken');
    assert.equal(f.count(), 1);
  });

  test('replenish: one back per message fed from incoming, filled to the limit while incoming is empty, trimmed above it', () => {
    const f = MailFlow.create();
    f.replenish(false, true, 100);
    assert.equal(f.count(), 100, 'incoming empty: filled to default_process_limit');
    f.get(5);
    f.replenish(true, true, 100);
    assert.equal(f.count(), 96, 'a message fed: exactly one back, even with incoming empty');
    f.replenish(false, false, 100);
    assert.equal(f.count(), 96, 'incoming not empty and nothing fed: nothing back');
    f.put(10);
    f.replenish(false, false, 100);
    assert.equal(f.count(), 100, 'above the limit: trimmed');
  });

  test('a token taken in one thread is gone in another (one shared counter)', async () => {
    const f = MailFlow.create();
    f.put(1);
    const { Worker } = await import('node:worker_threads');
    const w = new Worker(`const { workerData, parentPort } = require('node:worker_threads');
      const a = new Int32Array(workerData, 0, 1); parentPort.postMessage(Atomics.compareExchange(a, 0, 1, 0));`, { eval: true, workerData: f.buffer });
    const got = await new Promise((r) => w.once('message', r));
    await w.terminate();
    assert.equal(got, 1);
    assert.equal(f.count(), 0);
  });
});

describe('in_flow_delay: input slowed when qmgr is behind', () => {
  let sink: SmtpSink;
  let server: TestServer;

  before(async () => {
    // The first message sits at a next hop that takes 8 s to answer; with one message allowed in
    // the active queue, the rest pile up in incoming and qmgr hands back no tokens.
    sink = new SmtpSink({ dataDelayMs: 8000 });
    server = await startServer({
      sinkPort: await sink.listen(0),
      mainCf: { qmgr_message_active_limit: '1', default_process_limit: '2', in_flow_delay: '1s' },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('once the tokens are gone each message waits in_flow_delay before its 250; none is refused', async () => {
    const { smtp } = await SmtpDialogue.connect(server.port, { timeoutMs: 20_000 });
    const took: number[] = [];
    try {
      await smtp.cmd('EHLO client.test');
      for (let i = 0; i < 6; i++) {
        assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
        assert.equal((await smtp.cmd(`RCPT TO:<r${i}@example.com>`)).code, 250);
        assert.equal((await smtp.cmd('DATA')).code, 354);
        const t0 = Date.now();
        smtp.write(rfc822({ Subject: `flow ${i}` }, 'x\r\n') + '.\r\n');
        const r = await smtp.read();
        took.push(Date.now() - t0);
        assert.equal(r.code, 250, r.line);
      }
    } finally {
      smtp.close();
    }
    // Two tokens at start, one back when the first message entered the active queue: three
    // messages go through at once, the next three wait ~1 s each.
    // Two tokens at start; qmgr gives one back when the first message enters the active queue
    // (a little after the client has moved on), then none while the rest pile up in incoming:
    // the first messages go through at once, and from about the third on each waits ~1 s.
    assert.ok(took[0]! < 800 && took[1]! < 800, `the first two fast: ${took.join(', ')} ms`);
    assert.ok(took.filter((ms) => ms >= 900).length >= 3, `at least three waited in_flow_delay: ${took.join(', ')} ms`);
    assert.ok(took.slice(4).every((ms) => ms >= 900), `the last two waited: ${took.join(', ')} ms`);
    assert.ok(took.every((ms) => ms < 5000), `slowed, not stopped: ${took.join(', ')} ms`);
  });
});
