/**
 * qmgr: the queue manager, a singleton long-lived actor. It owns the active queue in memory:
 * takes messages from incoming (on cleanup's "queued") and from deferred (every
 * queue_run_delay), groups their recipients by destination (transport + nexthop), hands
 * deliveries to the delivery-agent pools within each destination's concurrency limit, and acts
 * on the results: done recipients are recorded, deferred ones send the message to the deferred
 * queue with backoff, bounced ones produce a non-delivery notification to the sender.
 */
import { configFromJSON, type ConfigJSON } from '../../src/config/index.js';
import { receive } from '../../src/runtime/mailbox.js';
import { defineService } from '../../src/runtime/service.js';
import meta from './meta.js';
import type { QueueStore } from '../../src/queue/store.js';
import type { QmgrMessage } from '../protocol.js';
import { QMGR_PARAMS, QueueManager } from './manager.js';
import { adminControl } from './admin.js';
import { isQueueManager, type SchedulerName } from '../../src/config/queue-managers.js';

interface State {
  manager: QueueManager;
  store: QueueStore;
}

export default defineService({
  ...meta,
  params: QMGR_PARAMS,
  async setup(ctx): Promise<State> {
    const store = ctx.store;
    // The master.cf command this thread runs as: qmgr or oqmgr (./strategy.ts).
    const scheduler: SchedulerName = isQueueManager(ctx.command) ? ctx.command : 'qmgr';
    const manager = new QueueManager(ctx.config, store, ctx.actor, ctx.log, scheduler, ctx.params);
    manager.registerMetrics();
    receive(ctx.data.instance, 'qmgr', (m) => {
      const msg = m as QmgrMessage;
      switch (msg.type) {
        case 'queued': return manager.queued(msg.queueId);
        case 'flush': return manager.flush();
        case 'kick': return manager.kick(msg.requests);
        default: return assertNever(msg);
      }
    });
    await manager.start();
    return { manager, store };
  },
  control: {
    status: (s) => s?.manager.status() ?? null,
    flush: (s) => s?.manager.flush(),
    reconfigure: (s, json: ConfigJSON) => s?.manager.reconfigure(configFromJSON(json)),
    pause: (s) => s?.manager.pause(),
    // postsuper and postqueue -s / -i while the server runs (actors/qmgr/admin.ts).
    admin: (s, requests: unknown) => (s ? adminControl(s.manager, s.store, requests) : Promise.reject(new Error('qmgr is starting'))),
    // postsuper -s while the server runs: the store's structure checked and repaired by the
    // server's own process (one process writes the store at a time: docs/architecture.md).
    structure: (s) => (s ? s.store.checkStructure(true) : Promise.reject(new Error('qmgr is starting'))),
    flushSome: (s, match: { site?: string; queueId?: string }) => s?.manager.flushSome(match) ?? 0,
    // postkick public qmgr REQUESTS (I, D, A, F, W).
    kick: (s, requests: string) => s?.manager.kick(requests),
  },
  // Deliveries still in flight finish and are recorded, so a stop does not cause redelivery.
  async stop({ manager }) {
    manager.pause();
    await manager.idle(10_000);
  },
});

function assertNever(x: never): never {
  throw new Error(`unexpected message ${JSON.stringify(x)}`);
}
