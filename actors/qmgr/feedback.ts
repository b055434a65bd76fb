/**
 * Destination concurrency feedback, as Postfix's nqmgr computes it (qmgr_feedback.c and the
 * window arithmetic of qmgr_queue.c; postfix-notes §3.4). Pure: no timers, no I/O.
 *
 * - A destination's window starts at min(initial_destination_concurrency, the limit).
 * - Positive feedback (a completed delivery): `success += g(window)`; each time success reaches
 *   1 the window grows by 1 (capped at the limit) and `failure` resets. No growth unless
 *   window < busy + initial concurrency. Any success also resets the failed-cohort count and
 *   revives a dead destination.
 * - Negative feedback (the site failed: connect, greeting, DNS temp failure):
 *   `fail_cohorts += 1/window`; at the failed-cohort limit the destination is dead. Otherwise
 *   `failure -= f(window)`, and the window shrinks by 1 (minimum 1) at the start of each
 *   failure sequence.
 */

/** A parsed feedback setting: `base`, or `base / window` for the N/concurrency form. */
export interface Feedback {
  perWindow: boolean;
  base: number;
}

/**
 * Parses a feedback value as Postfix does: `N`, `N/M` or `N/concurrency` (the name is
 * case-insensitive, blanks around `/` are allowed). The result must lie in [0, 1]; anything
 * else is reported through `warn` and replaced by 1 (Postfix's fallback).
 */
export function parseFeedback(value: string, name: string, warn: (text: string) => void): Feedback {
  const m = /^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?:\/\s*(\S+)\s*)?$/.exec(value);
  let fb: Feedback | null = null;
  if (m) {
    const n = Number(m[1]);
    const denom = m[2];
    if (denom === undefined) fb = { perWindow: false, base: n };
    else if (denom.toLowerCase() === 'concurrency') fb = { perWindow: true, base: n };
    else if (/^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/.test(denom) && n >= 0 && n <= 2147483647) {
      const d = Number(denom);
      if (d >= 1 / 2147483647 && d <= 2147483647) fb = { perWindow: false, base: n / d };
    }
  }
  if (!fb || !(fb.base >= 0 && fb.base <= 1)) {
    warn(`${name}: ignoring malformed or unreasonable feedback: ${value}`);
    return { perWindow: false, base: 1 };
  }
  return fb;
}

/** The feedback amount at a given window. */
export function feedbackValue(fb: Feedback, window: number): number {
  return fb.perWindow ? fb.base / window : fb.base;
}

/** Per-transport settings of the feedback loop. */
export interface WindowSettings {
  /** <transport>_destination_concurrency_limit; Infinity for 0 (no limit). */
  limit: number;
  /** min(initial_destination_concurrency, limit). */
  initial: number;
  positive: Feedback;
  negative: Feedback;
  /** <transport>_destination_concurrency_failed_cohort_limit; 0 = never dead. */
  cohortLimit: number;
}

/** One destination's feedback state. window 0 means dead. */
export interface WindowState {
  window: number;
  success: number;
  failure: number;
  failCohorts: number;
}

export function settings(opts: { limit: number; initial: number; positive: Feedback; negative: Feedback; cohortLimit: number }): WindowSettings {
  const limit = opts.limit > 0 ? opts.limit : Infinity;
  return { ...opts, limit, initial: Math.max(1, Math.min(opts.initial, limit)) };
}

export function newWindow(s: WindowSettings): WindowState {
  return { window: s.initial, success: 0, failure: 0, failCohorts: 0 };
}

export function isDead(w: WindowState): boolean {
  return w.window === 0;
}

/** Brings a dead destination back: the window restarts at the busy count, or the initial one. */
export function revive(w: WindowState, busy: number, s: WindowSettings): void {
  w.window = busy > 0 ? Math.min(busy, s.limit) : s.initial;
  w.success = 0;
  w.failure = 0;
  w.failCohorts = 0;
}

/** A completed delivery (positive feedback). */
export function positive(w: WindowState, busy: number, s: WindowSettings): void {
  w.failCohorts = 0;
  if (isDead(w)) return revive(w, busy, s);
  if (s.limit > w.window && w.window < busy + s.initial) {
    const fb = feedbackValue(s.positive, w.window);
    w.success += fb;
    // fb/2 absorbs rounding (e.g. five steps of 1/5 must make one whole step).
    while (w.success + fb / 2 >= 1) {
      w.window += 1;
      w.success -= 1;
      w.failure = 0;
    }
    if (w.window > s.limit) w.window = s.limit;
  }
}

/** A site failure (negative feedback). Returns true if this made the destination dead. */
export function negative(w: WindowState, s: WindowSettings): boolean {
  if (isDead(w)) return false;
  w.failCohorts += 1 / w.window;
  if (s.cohortLimit > 0 && w.failCohorts >= s.cohortLimit) {
    w.window = 0;
    return true;
  }
  const fb = feedbackValue(s.negative, w.window);
  w.failure -= fb;
  while (w.failure - fb / 2 < 0) {
    w.window -= 1;
    w.success = 0;
    w.failure += 1;
  }
  if (w.window < 1) w.window = 1;
  return false;
}
