/**
 * soft_bounce, Postfix's safety net (global/bounce.c bounce_append and bounce_flush): with it,
 * a recipient that would be bounced is deferred instead — its status code's class becomes 4
 * (5.1.1 → 4.1.1), its reason stays as it was, the log line says status=SOFTBOUNCE, its defer
 * record says "delayed", and no non-delivery notice is sent: the message stays in the queue
 * until the setting is turned off and the mail is tried again, or until it expires
 * (maximal_queue_lifetime returns it as usual: Postfix's defer_flush is not covered).
 *
 * Every place that turns a recipient into "bounced" — the delivery agents' report(), the smtp
 * and local agents' own log lines, qmgr's own failures — passes its outcome through
 * bounceOrDefer(), as every Postfix program calls bounce_append(). Address verification
 * probes are left alone: bounce.c reports them as "undeliverable" before it looks at
 * soft_bounce.
 */
import type { Config } from '../config/index.js';
import { readParams } from '../config/declared.js';
import type { RecipientOutcome } from './request.js';

/** What the safety net reads (a service that declares its parameters spreads this in). */
export const SOFT_BOUNCE_PARAMS = { 'soft_bounce': 'bool' } as const;

/** soft_bounce of a configuration, read once per configuration (a reload brings a new one). */
const read = new WeakMap<Config, boolean>();
export function softBounceOf(config: Config): boolean {
  let v = read.get(config);
  if (v === undefined) {
    v = readParams(config, SOFT_BOUNCE_PARAMS, 'global').soft_bounce;
    read.set(config, v);
  }
  return v;
}

/**
 * A bounced outcome as soft_bounce makes it: deferred, its DSN class 4, logged as SOFTBOUNCE.
 * Anything else (and everything when soft_bounce is off, or for a verification probe) is
 * returned unchanged.
 */
export function bounceOrDefer<O extends Pick<RecipientOutcome, 'status' | 'dsn'>>(o: O, softBounce: boolean, verify = false): O {
  if (!softBounce || verify || o.status !== 'bounced') return o;
  return { ...o, status: 'deferred', dsn: `4${o.dsn.slice(1)}`, softBounce: true };
}
