/**
 * smtpd's push-back when cleanup's mailbox is full: the message is transferred (not copied) to
 * cleanup, so a BUSY answer comes back after its buffer has left smtpd's thread; the retry after
 * in_flow_delay must still queue the whole message. The smtpd thread, the router and the cleanup
 * pool are the real ones, wired here as master wires them, but with a cleanup mailbox of one
 * place so that BUSY is certain: cleanup holds each message in_flow_delay (no flow tokens, no
 * qmgr), and smtpd waits longer than that before its retry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadConfig, queueDirectory } from '../src/config/index.js';
import { QueueStore } from '../src/queue/store.js';
import { MailFlow } from '../src/runtime/flow.js';
import { ServicePool } from '../src/runtime/pool.js';
import { Router } from '../src/runtime/router.js';
import { SupervisedWorker } from '../src/runtime/supervisor.js';
import { freePort, rfc822, sendRaw } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-busy-');
const actors = new URL('../actors/', import.meta.url);

test('a message refused BUSY by a full cleanup mailbox is queued whole on the retry', async (t) => {
  const dir = tempDir();
  const port = await freePort();
  const config = loadConfig(join(tempDir({
    'main.cf': [
      `queue_directory = ${join(dir, 'spool')}`,
      `maillog_file = ${join(dir, 'maillog')}`,
      'myhostname = mx.example.test',
      'mydestination =',
      'mynetworks_style = host',
      'in_flow_delay = 1s',
      '',
    ].join('\n'),
    'master.cf': ['cleanup unix n - n - 1 cleanup', 'qmgr unix n - n 300 1 qmgr', ''].join('\n'),
  })));
  // No qmgr gives tokens back, so cleanup waits in_flow_delay (1 s) with every message.
  const flow = MailFlow.create();
  const instance = `busy-${process.pid}`;
  const router = new Router();
  const cleanup = new ServicePool({
    service: 'cleanup',
    filename: new URL('cleanup/index.js', actors).href,
    threads: 1,
    concurrency: 1,
    maxQueue: 1,
    workerData: { service: 'cleanup', index: 0, config: config.toJSON(), instance, flow: flow.buffer },
    throttleSeconds: 60,
  });
  router.addPool('cleanup', cleanup);
  // smtpd waits 3 s after a BUSY: by then the message ahead of it runs and the mailbox is free.
  const smtpd = new SupervisedWorker({
    service: 'smtpd',
    index: 0,
    filename: new URL('smtpd/index.js', actors),
    workerData: { service: 'smtpd', thread: 'smtpd', index: 0, config: config.withOverrides({ in_flow_delay: '3s' }).toJSON(), instance, flow: flow.buffer, extra: { addresses: [{ host: '127.0.0.1', port }] } },
    throttleSeconds: 60,
    onPort: (p) => router.attach('smtpd', p),
  });
  t.after(async () => {
    await smtpd.stop();
    await cleanup.drain();
  });
  smtpd.start();
  await smtpd.ready();

  const message = (i: number) => rfc822({ From: 'a@example.org', To: 'b@example.com', Subject: `busy ${i}` }, `${'body line\n'.repeat(200)}end of message ${i}\n`);
  // The cleanup thread is up (and busy with nothing) before the three arrive together.
  const first = await sendRaw(port, 'a@example.org', ['b@example.com'], message(0));
  assert.equal(first.code, 250, first.line);
  // One runs, one waits in the mailbox, the third is refused BUSY and retried.
  const replies = await Promise.all([1, 2, 3].map((i) => sendRaw(port, 'a@example.org', ['b@example.com'], message(i))));
  // Counted by the pool: smtpd's requests go to the cleanup thread on a direct channel.
  assert.ok(cleanup.busy >= 1, 'cleanup answered BUSY at least once');
  assert.deepEqual(replies.map((r) => r.code), [250, 250, 250], replies.map((r) => r.line).join('; '));

  const store = QueueStore.open(queueDirectory(config));
  try {
    for (const [i, r] of replies.entries()) {
      const queueId = /queued as (\S+)$/.exec(r.text)![1]!;
      const content = store.content(queueId)?.toString('latin1') ?? '';
      const sent = message(i + 1);
      assert.ok(content.endsWith(sent.slice(sent.indexOf('\r\n\r\n'))), `message ${i + 1} (${queueId}) is stored whole: ${content.length} bytes`);
    }
  } finally {
    store.close();
  }
});
