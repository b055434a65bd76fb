/**
 * Lazy pools in a running server: a delivery pool has no thread until qmgr hands it its first
 * delivery, then delivers; after max_idle without work its thread ends, and the next message
 * starts it again. cleanup's pool keeps one thread while it is in use (smtpd waits for its reply
 * before it answers the end of DATA; actors/cleanup/meta.ts), and lets it end too after max_idle
 * without a message, as Postfix's idle cleanup exits: the next session's recipient warms it again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { deliveredWithSubject, sendWithSubject, startServer, type TestServer, workerThreads } from './helpers/server.js';
import { SmtpSink } from '../src/smtp/sink.js';


async function waitForThreads(pid: number, n: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let now = workerThreads(pid);
  while (now !== n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    now = workerThreads(pid);
  }
  return now;
}

const send = sendWithSubject;

test('a lazy delivery pool starts on its first delivery, delivers, and ends after max_idle', async (t) => {
  const sink = new SmtpSink({ keepMessages: true });
  const sinkPort = await sink.listen(0);
  const server = await startServer({
    sinkPort,
    mainCf: { max_idle: '2s' },
    masterCf: [
      '127.0.0.1:{{PORT}} inet n - n - 1 smtpd',
      'cleanup unix n - n - 2 cleanup',
      'qmgr unix n - n 300 1 qmgr',
      'smtp unix - - n - 2 smtp',
      'relay unix - - n - 1 smtp',
      'bounce unix - - n - 1 bounce',
      '',
    ].join('\n'),
  });
  t.after(async () => {
    await server.stop();
    await sink.close();
  });
  const pid = server.child!.pid!;
  // smtpd, qmgr and cleanup's one warm thread (gone if the start took max_idle): no smtp, relay
  // or bounce thread yet.
  const idle = workerThreads(pid);
  assert.ok(idle === 3 || idle === 2, `smtpd, qmgr and at most cleanup (threads: ${idle})`);

  await send(server, 'first');
  await deliveredWithSubject(sink, 'first');
  // One smtp thread for the delivery; on a loaded machine the check can come more than
  // max_idle after the delivery, whose thread may be gone.
  const busy = workerThreads(pid);
  assert.ok(busy >= 2 && busy <= 4, `cleanup's and one smtp thread started (threads: ${busy})`);

  // max_idle (2 s) without work: the smtp thread ends, and cleanup's too (unused for max_idle).
  assert.equal(await waitForThreads(pid, 2, 15_000), 2, 'back to smtpd and qmgr after max_idle');

  // The next message warms cleanup again at its recipient, and is delivered.
  await send(server, 'second');
  await deliveredWithSubject(sink, 'second');
  assert.equal(sink.messages.length, 2, 'each message delivered once');
});
