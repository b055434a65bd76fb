/**
 * Deferred-mail retry time, as Postfix's qmgr computes it: wait as long as the message has
 * already been queued, but at least minimal_backoff_time and at most maximal_backoff_time — so
 * a message is retried at about twice its age and never more than ~67 minutes apart.
 */
export function nextAttempt(now: number, arrival: number, minimalSeconds: number, maximalSeconds: number): number {
  const age = Math.max(0, (now - arrival) / 1000);
  const wait = Math.min(Math.max(age, minimalSeconds), Math.max(minimalSeconds, maximalSeconds));
  return now + Math.round(wait * 1000);
}

/** True if the message has outlived its queue lifetime (0 = try once). */
export function expired(now: number, arrival: number, lifetimeSeconds: number): boolean {
  return now - arrival >= lifetimeSeconds * 1000;
}
