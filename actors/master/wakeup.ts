/**
 * master.cf's wakeup column for the services master hosts as pools: every `wakeup` seconds
 * master sends the service its trigger, as Postfix's master writes a wakeup request to the
 * service's socket. Only flush takes one here (a `refresh`: stale fast flush logs are sent,
 * old empty ones deleted); qmgr and pickup, long-lived threads, keep their own timers. The "?"
 * of "1000?" (only once the service was used) is not kept: a wakeup starts a flush thread when
 * none runs, which ends again after max_idle.
 */
import type { Logger } from '../../src/log/maillog.js';
import type { ServicePlan } from './services.js';

export type Requester = (service: string, body: unknown) => Promise<unknown>;

/** Starts the wakeup timers of the plan's pool services; returns a function that stops them. */
export function startWakeups(services: readonly ServicePlan[], request: Requester, log: Logger): () => void {
  const timers: NodeJS.Timeout[] = [];
  for (const s of services) {
    if (s.kind !== 'pool' || s.line.command !== 'flush' || s.line.wakeup <= 0) continue;
    let running = false;
    const t = setInterval(() => {
      if (running) return;
      running = true;
      request(s.service, { op: 'refresh' })
        .catch((err: Error) => log.warn(`${s.service}: wakeup: ${err.message}`))
        .finally(() => { running = false; });
    }, s.line.wakeup * 1000);
    t.unref();
    timers.push(t);
  }
  return () => {
    for (const t of timers) clearInterval(t);
  };
}
