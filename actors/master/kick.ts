/**
 * postkick(1)'s requests, arriving on the master's control socket. Postfix's postkick writes the
 * request bytes to the FIFO or socket queue_directory/CLASS/SERVICE; here the master finds the
 * master.cf service of that name whose private column puts it in CLASS (n: public, else
 * private) and passes the request to its actor: pickup takes W (wake up: scan the maildrop now),
 * qmgr takes I, D, A, F and W (actors/qmgr/manager.ts kick()), flush takes any request as its
 * wakeup (a refresh of stale fast flush logs, as Postfix's flush reads a short trigger). A service that is not there is
 * "not found" (postkick: "Cannot contact class … service … - perhaps the mail system is down");
 * one whose daemon takes no requests here says so.
 */
import type { Config } from '../../src/config/index.js';
import type { SupervisedWorker } from '../../src/runtime/supervisor.js';
import { isQueueManager } from '../../src/config/queue-managers.js';

export interface KickRequest {
  class: string;
  service: string;
  request: string;
}

export async function kick(config: Config, r: KickRequest, qmgr: SupervisedWorker | null, listeners: readonly SupervisedWorker[],
  request?: (service: string, body: unknown) => Promise<unknown>): Promise<{ ok: true }> {
  const line = config.services.find((s) => s.name === r.service && (s.type === 'unix' || s.type === 'fifo') && (s.private ? 'private' : 'public') === r.class);
  if (!line) throw new Error(`not found: class ${r.class} service ${r.service}`);
  if (isQueueManager(line.command)) {
    if (!qmgr?.control) throw new Error(`not found: class ${r.class} service ${r.service}`);
    await qmgr.control['kick']!(r.request);
    return { ok: true };
  }
  if (line.command === 'pickup') {
    const worker = listeners.find((w) => w.options.service === line.name);
    // An idle pickup has no thread: the wake-up starts one, which scans at once.
    if (worker?.dormant) {
      worker.demand();
      return { ok: true };
    }
    if (!worker?.control) throw new Error(`not found: class ${r.class} service ${r.service}`);
    // pickup reads no request text: any trigger is a wake-up, as in Postfix.
    await worker.control['wakeup']!();
    return { ok: true };
  }
  if (line.command === 'flush' && request) {
    await request(line.name, { op: 'refresh' });
    return { ok: true };
  }
  throw new Error(`class ${r.class} service ${r.service}: command ${line.command} takes no requests in Postactor (only pickup, qmgr and flush do)`);
}
