/**
 * Queue administration (postsuper's operations), usable with or without a running server.
 *
 * `runAdmin` applies delete / hold / release / requeue / expire requests to the store. Each
 * message changes in one conditional transaction (`QueueStore.change`), so an operation never
 * races qmgr's own moves: if qmgr took the message meanwhile, the change does nothing and the
 * message is handled as active. With the server down, postsuper calls `runAdmin` directly
 * (nothing is active then). With the server up, qmgr calls it with `ActiveQueueHooks`: a
 * message in qmgr's memory is left to qmgr, which waits for its deliveries in flight and then
 * deletes / holds / requeues it instead of deferring it.
 *
 * The second half of this file is command-line plumbing shared by postqueue, mailq, postsuper
 * and postcat (Postfix-style getopt, configuration, fatal errors, "is the master up").
 */
import { manual } from '../cli/manual.js';
import { ConfigError, loadConfig, queueDirectory, type Config } from '../config/index.js';
import { controlRequest, controlSocketPath } from '../runtime/control.js';
import { fatal } from './command-line.js';
import { EnvelopeDamagedError, type QueueStore, type StoreChange } from './store.js';
import type { MessageMeta, QueueName } from './types.js';

/** postsuper -d, -e, -f, -h, -H, -r. */
export type AdminAction = 'delete' | 'expire' | 'expire-release' | 'hold' | 'release' | 'requeue';

/** Postfix's log words for each outcome: "ID: removed" etc. */
export type AdminEventName = 'removed' | 'expired' | 'placed on hold' | 'released from hold' | 'requeued';

export interface AdminRequest {
  action: AdminAction;
  /** Queue IDs, or 'ALL' (every message in the queues). */
  ids: string[] | 'ALL';
  /** Only messages in these queues; default: the action's own queues (see ACTION_QUEUES). */
  queues?: QueueName[];
}

export interface AdminEvent {
  queueId: string;
  event: AdminEventName;
}

export interface AdminCounts {
  deleted: number;
  expired: number;
  held: number;
  released: number;
  requeued: number;
}

export interface AdminResult {
  events: AdminEvent[];
  counts: AdminCounts;
  /**
   * Messages met whose envelope does not decode, set aside in the corrupt queue instead of held,
   * released, requeued or expired (a delete removes them: an event). Absent from older masters.
   */
  damaged?: string[];
}

/** Which queues each action looks in by default (as postsuper: -h skips hold, -H only hold). */
export const ACTION_QUEUES: Record<AdminAction, readonly QueueName[]> = {
  delete: ['incoming', 'active', 'deferred', 'hold'],
  expire: ['incoming', 'active', 'deferred', 'hold'],
  'expire-release': ['incoming', 'active', 'deferred', 'hold'],
  hold: ['incoming', 'active', 'deferred'],
  release: ['hold'],
  requeue: ['incoming', 'active', 'deferred', 'hold'],
};

/** Queue names postsuper accepts as arguments. */
export const ADMIN_QUEUE_NAMES: readonly QueueName[] = ['incoming', 'active', 'deferred', 'hold', 'corrupt'];

/** What qmgr offers for messages it holds in memory (the active queue). */
export interface ActiveQueueHooks {
  /** Resolves once the message is neither being activated nor being finished. */
  settle(queueId: string): Promise<void>;
  /** True if qmgr holds the message in memory (it is active). */
  holds(queueId: string): boolean;
  /**
   * delete / hold / requeue an active message: waits for its deliveries in flight, then does it
   * instead of deferring. Resolves with what happened (nothing, if it completed meanwhile), or
   * null if qmgr no longer holds the message (the caller then retries on the store).
   */
  intercept(queueId: string, action: 'delete' | 'hold' | 'requeue'): Promise<AdminEventName[] | null>;
  /** Marks an active message for forced expiry; false if qmgr no longer holds it. */
  expire(queueId: string): boolean;
  /** After the run: messages released or requeued are taken now. */
  wake(requeued: string[], released: string[]): void;
}

/**
 * The change one action makes to a message that is not in qmgr's memory, or null when it does
 * not apply (wrong queue, already held, …).
 */
export function planChange(action: AdminAction, current: MessageMeta, queues: ReadonlySet<QueueName>, now: number): { change: StoreChange; events: AdminEventName[] } | null {
  if (!queues.has(current.queue)) return null;
  switch (action) {
    case 'delete':
      return { change: { remove: true }, events: ['removed'] };
    case 'hold':
      return current.queue === 'hold' || current.queue === 'corrupt' ? null : { change: { to: 'hold' }, events: ['placed on hold'] };
    case 'release':
      return current.queue === 'hold' ? { change: { to: 'deferred', patch: { nextAttempt: now } }, events: ['released from hold'] } : null;
    case 'requeue':
      if (current.queue === 'corrupt') return null;
      return {
        change: { to: 'incoming', patch: { nextAttempt: 0, forcedExpire: false, recipients: current.recipients.map(({ reason: _r, ...r }) => r) } },
        events: ['requeued'],
      };
    case 'expire':
      return current.forcedExpire ? null : { change: { patch: { forcedExpire: true } }, events: ['expired'] };
    case 'expire-release': {
      const events: AdminEventName[] = [];
      if (!current.forcedExpire) events.push('expired');
      if (current.queue === 'hold') {
        events.push('released from hold');
        return { change: { to: 'deferred', patch: { forcedExpire: true, nextAttempt: now } }, events };
      }
      return events.length ? { change: { patch: { forcedExpire: true } }, events } : null;
    }
  }
}

function emptyCounts(): AdminCounts {
  return { deleted: 0, expired: 0, held: 0, released: 0, requeued: 0 };
}

export function countEvents(events: AdminEvent[]): AdminCounts {
  const c = emptyCounts();
  for (const e of events) {
    if (e.event === 'removed') c.deleted++;
    else if (e.event === 'expired') c.expired++;
    else if (e.event === 'placed on hold') c.held++;
    else if (e.event === 'released from hold') c.released++;
    else c.requeued++;
  }
  return c;
}

/**
 * Applies the requests in order. `log` receives Postfix's log text per change ("ID: removed").
 * Without hooks, every message is changed on the store (the server must be down).
 */
export async function runAdmin(store: QueueStore, requests: AdminRequest[], log: (text: string) => void, hooks?: ActiveQueueHooks): Promise<AdminResult> {
  const events: AdminEvent[] = [];
  const requeued: string[] = [];
  const released: string[] = [];
  const damaged: string[] = [];
  for (const req of requests) {
    const queues = new Set<QueueName>(req.queues && req.queues.length ? req.queues : ACTION_QUEUES[req.action]);
    const ids = req.ids === 'ALL' ? [...queues].flatMap((q) => [...store.list(q)]) : [...new Set(req.ids)];
    for (const id of ids) {
      let got: AdminEventName[];
      try {
        got = await applyOne(store, req.action, id, queues, hooks);
      } catch (err) {
        if (!(err instanceof EnvelopeDamagedError)) throw err;
        const outcome = await applyDamaged(store, req.action, id, queues);
        got = outcome === 'removed' ? ['removed'] : [];
        if (outcome === 'set aside') {
          damaged.push(id);
          log(`warning: ${id}: envelope does not decode -- moved to the corrupt queue`);
        }
      }
      for (const event of got) {
        events.push({ queueId: id, event });
        log(`${id}: ${event}`);
        if (event === 'requeued') requeued.push(id);
        if (event === 'released from hold') released.push(id);
      }
    }
  }
  if (hooks && (requeued.length || released.length)) hooks.wake(requeued, released);
  return { events, counts: countEvents(events), ...(damaged.length ? { damaged } : {}) };
}

/**
 * A message whose envelope does not decode, in one of the action's queues: -d removes it (Postfix
 * unlinks the queue file unread); any other action sets it aside in the corrupt queue, since
 * holding, releasing, requeueing or expiring it would hand qmgr an envelope it cannot read.
 */
async function applyDamaged(store: QueueStore, action: AdminAction, id: string, queues: ReadonlySet<QueueName>): Promise<'removed' | 'set aside' | null> {
  if (!store.indexedIn(id).some((q) => queues.has(q))) return null;
  if (action === 'delete') return (await store.removeDamaged(id)) ? 'removed' : null;
  return (await store.setAsideDamaged(id)) ? 'set aside' : null;
}

async function applyOne(store: QueueStore, action: AdminAction, id: string, queues: ReadonlySet<QueueName>, hooks?: ActiveQueueHooks): Promise<AdminEventName[]> {
  for (let tries = 0; tries < 100; tries++) {
    if (hooks) await hooks.settle(id);
    if (hooks?.holds(id)) {
      if (!queues.has('active')) return [];
      if (action === 'delete' || action === 'hold' || action === 'requeue') {
        const got = await hooks.intercept(id, action);
        if (got) return got;
        continue; // qmgr let go of it meanwhile: look again
      }
      if (action === 'expire' || action === 'expire-release') {
        const meta = store.get(id);
        if (meta?.forcedExpire) return [];
        if (!hooks.expire(id)) continue;
        await store.change(id, () => ({ patch: { forcedExpire: true } }));
        return ['expired'];
      }
      return []; // release: an active message is not on hold
    }
    let events: AdminEventName[] = [];
    let raced = false;
    const done = await store.change(id, (current) => {
      // A message qmgr took meanwhile (or is taking) is qmgr's: leave it and look again.
      if (hooks && current.queue === 'active' && hooks.holds(id)) {
        raced = true;
        return null;
      }
      const plan = planChange(action, current, queues, Date.now());
      if (!plan) return null;
      events = plan.events;
      return plan.change;
    });
    if (raced) continue;
    return done ? events : [];
  }
  return [];
}

// ---------------------------------------------------------------------------------------------
// Command-line plumbing shared by the queue commands (src/queue/command-line.ts), and what needs
// the configuration.

export { EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE, UsageError, fatal, getopt, parseCommandLine, usageError, type ParsedArgs } from './command-line.js';

/** -c DIR, else MAIL_CONFIG, POSTACTOR_CONFIG, /etc/postactor, else the embedded default (locate.ts). */
export function commandConfig(prog: string, dir: string | undefined): Config {
  try {
    return loadConfig(dir);
  } catch (err) {
    if (err instanceof ConfigError) fatal(prog, err.message);
    throw err;
  }
}

/** The master's control socket for this configuration. */
export function masterSocket(config: Config): string {
  return controlSocketPath(queueDirectory(config));
}

/** True if a master answers on the control socket. */
export async function masterAnswers(config: Config, timeoutMs = 2000): Promise<boolean> {
  try {
    await controlRequest(masterSocket(config), 'status', undefined, timeoutMs);
    return true;
  } catch {
    return false;
  }
}
