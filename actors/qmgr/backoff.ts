/**
 * Deferred-mail retry time, as Postfix's qmgr computes it: wait as long as the message has
 * already been queued, but at least minimal_backoff_time and at most maximal_backoff_time — so
 * a message is retried at about twice its age and never more than ~67 minutes apart.
 *
 * Plus a jitter Postfix does not have: up to RETRY_JITTER (10 %) of that wait, added, never
 * subtracted (a retry never comes earlier than Postfix's). Mail deferred by one outage otherwise
 * comes back in lockstep, all at once on every retry, and hits the recovering site as one wave;
 * 10 % of a wait that is at least minimal_backoff_time (300 s) spreads it over 30 s or more,
 * at most 400 s at maximal_backoff_time — about one queue_run_delay, so the wave is spread over
 * consecutive deferred-queue scans without changing the retry schedule noticeably.
 */
export const RETRY_JITTER = 0.1;

export function nextAttempt(now: number, arrival: number, minimalSeconds: number, maximalSeconds: number, random: () => number = Math.random): number {
  const age = Math.max(0, (now - arrival) / 1000);
  const wait = Math.min(Math.max(age, minimalSeconds), Math.max(minimalSeconds, maximalSeconds));
  const jitter = wait * RETRY_JITTER * Math.min(Math.max(random(), 0), 1);
  return now + Math.round((wait + jitter) * 1000);
}

/** True if the message has outlived its queue lifetime (0 = try once). */
export function expired(now: number, arrival: number, lifetimeSeconds: number): boolean {
  return now - arrival >= lifetimeSeconds * 1000;
}
