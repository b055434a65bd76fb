/**
 * qmgr's side of postsuper while the server runs: the master's control command `admin` lands
 * here (comlink control API of the qmgr worker). Messages qmgr holds in memory are changed by
 * the QueueManager once their deliveries in flight are back (no delivery races a delete); the
 * others are changed on the store, one transaction each (src/queue/admin.ts). The log lines
 * are Postfix's postsuper lines: "postactor/postsuper[pid]: ID: removed".
 */
import { maillog } from '../../src/log/maillog.js';
import { runAdmin, type ActiveQueueHooks, type AdminRequest, type AdminResult } from '../../src/queue/admin.js';
import { ADMIN_QUEUE_NAMES } from '../../src/queue/admin.js';
import type { QueueStore } from '../../src/queue/store.js';
import type { QueueManager } from './manager.js';

const postsuperLog = maillog('postsuper');

const ACTIONS = new Set(['delete', 'expire', 'expire-release', 'hold', 'release', 'requeue']);

/** Checks a request that came over the control socket (anyone with access may send JSON). */
function validate(requests: unknown): AdminRequest[] {
  if (!Array.isArray(requests)) throw new Error('admin: expected a list of requests');
  return requests.map((r: Partial<AdminRequest>) => {
    if (!r || !ACTIONS.has(r.action as string)) throw new Error(`admin: bad action ${JSON.stringify(r?.action)}`);
    if (r.ids !== 'ALL' && !(Array.isArray(r.ids) && r.ids.every((i) => typeof i === 'string'))) throw new Error('admin: bad ids');
    if (r.queues !== undefined && !(Array.isArray(r.queues) && r.queues.every((q) => ADMIN_QUEUE_NAMES.includes(q)))) throw new Error('admin: bad queue name');
    return r as AdminRequest;
  });
}

export function activeHooks(manager: QueueManager): ActiveQueueHooks {
  return {
    settle: (id) => manager.settle(id),
    holds: (id) => manager.holds(id),
    intercept: (id, action) => manager.adminActive(id, action) ?? Promise.resolve(null),
    expire: (id) => manager.expireActive(id),
    wake: (requeued, released) => manager.adminWake(requeued, released),
  };
}

/** The control call: applies postsuper's requests with qmgr's knowledge of the active queue. */
export function adminControl(manager: QueueManager, store: QueueStore, requests: unknown): Promise<AdminResult> {
  return runAdmin(store, validate(requests), (text) => postsuperLog.info(text), activeHooks(manager));
}
