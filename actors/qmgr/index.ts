/**
 * qmgr: the queue manager, a singleton long-lived actor. It owns the active queue in memory:
 * takes messages from incoming (on cleanup's "queued") and from deferred (every
 * queue_run_delay), groups their recipients by destination (transport + nexthop), hands
 * deliveries to the delivery-agent pools within each destination's concurrency limit, and acts
 * on the results: done recipients are recorded, deferred ones send the message to the deferred
 * queue with backoff, bounced ones produce a non-delivery notification to the sender.
 */
import { configFromJSON, type Config, type ConfigJSON, queueDirectory } from '../../src/config/index.js';
import { configureMaillog, flushMaillog, maillog } from '../../src/log/maillog.js';
import { receive } from '../../src/runtime/mailbox.js';
import { startActor } from '../../src/runtime/endpoint.js';
import { QueueStore } from '../../src/queue/store.js';
import { parentPort } from 'node:worker_threads';
import type { QmgrMessage } from '../protocol.js';
import { QueueManager } from './manager.js';
import { adminControl } from './admin.js';
import { isQueueManager, type SchedulerName } from '../../src/config/queue-managers.js';

// Postfix logs under the program's name: postfix/qmgr, or postfix/oqmgr (set in main()).
let log = maillog('qmgr');

async function main(): Promise<void> {
  let manager: QueueManager | null = null;
  let store: QueueStore | null = null;
  const actor = await startActor({
    control: {
      status: () => manager?.status() ?? null,
      flush: () => manager?.flush(),
      reconfigure: (json: ConfigJSON) => manager?.reconfigure(configFromJSON(json)),
      pause: () => manager?.pause(),
      // postsuper and postqueue -s / -i while the server runs (actors/qmgr/admin.ts).
      admin: (requests: unknown) => (manager && store ? adminControl(manager, store, requests) : Promise.reject(new Error('qmgr is starting'))),
      flushSome: (match: { site?: string; queueId?: string }) => manager?.flushSome(match) ?? 0,
      // postkick public qmgr REQUESTS (I, D, A, F, W).
      kick: (requests: string) => manager?.kick(requests),
    },
  });
  const config: Config = configFromJSON(actor.data.config as ConfigJSON);
  configureMaillog({ file: config.get('maillog_file'), hostname: config.get('myhostname'), syslogName: config.get('syslog_name') });
  store = QueueStore.open(queueDirectory(config));
  // The master.cf command this thread runs as: qmgr or oqmgr (./strategy.ts).
  const command = (actor.data.extra as { command?: string } | undefined)?.command ?? 'qmgr';
  const scheduler: SchedulerName = isQueueManager(command) ? command : 'qmgr';
  log = maillog(scheduler);
  manager = new QueueManager(config, store, actor, log, scheduler);
  manager.registerMetrics();
  receive(actor.data.instance, 'qmgr', (m) => {
    const msg = m as QmgrMessage;
    switch (msg.type) {
      case 'queued': return manager!.queued(msg.queueId);
      case 'flush': return manager!.flush();
      case 'kick': return manager!.kick(msg.requests);
      default: return assertNever(msg);
    }
  });
  parentPort!.on('message', (msg: { type?: string }) => {
    if (msg?.type !== 'postactor:stop') return;
    // Deliveries still in flight finish and are recorded, so a stop does not cause redelivery.
    manager!.pause();
    void manager!.idle(10_000).then(() => {
      flushMaillog();
      process.exit(0);
    });
  });
  await manager.start();
  parentPort!.postMessage({ type: 'postactor:ready' });
}

function assertNever(x: never): never {
  throw new Error(`unexpected message ${JSON.stringify(x)}`);
}

main().catch((err: Error) => {
  log.fatal(`qmgr: ${err.stack ?? err.message}`);
  flushMaillog();
  process.exit(1);
});
