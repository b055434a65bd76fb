/**
 * Postfix's destination concurrency feedback arithmetic (qmgr_feedback.c, qmgr_queue.c):
 * feedback forms, window growth per pseudo-cohort, shrinking at the start of a failure
 * sequence, dead destinations at the failed-cohort limit.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { feedbackValue, isDead, negative, newWindow, parseFeedback, positive, revive, settings, type Feedback } from '../actors/qmgr/feedback.js';

const ONE: Feedback = { perWindow: false, base: 1 };
const PER_WINDOW: Feedback = { perWindow: true, base: 1 };

function parse(value: string): { fb: Feedback; warnings: string[] } {
  const warnings: string[] = [];
  return { fb: parseFeedback(value, 'smtp_destination_concurrency_positive_feedback', (w) => warnings.push(w)), warnings };
}

describe('feedback forms (qmgr_feedback_init)', () => {
  test('N, N/M and N/concurrency (case-insensitive, blanks allowed) parse as Postfix does', () => {
    assert.deepEqual(parse('1').fb, { perWindow: false, base: 1 });
    assert.deepEqual(parse('0.5').fb, { perWindow: false, base: 0.5 });
    assert.deepEqual(parse('1/8').fb, { perWindow: false, base: 0.125 });
    assert.deepEqual(parse('1 / 4').fb, { perWindow: false, base: 0.25 });
    assert.deepEqual(parse('1/concurrency').fb, { perWindow: true, base: 1 });
    assert.deepEqual(parse('1/Concurrency').fb, { perWindow: true, base: 1 });
    assert.equal(feedbackValue(parse('1/concurrency').fb, 5), 0.2);
    for (const v of ['1', '1/8', '1/concurrency']) assert.deepEqual(parse(v).warnings, []);
  });

  test('a malformed or unreasonable value warns and falls back to 1', () => {
    for (const v of ['2', '-1', 'lots', '1/0', '1/sqrt_concurrency', '3/2', '1/concurrency x', '']) {
      const { fb, warnings } = parse(v);
      assert.deepEqual(fb, { perWindow: false, base: 1 }, v);
      assert.equal(warnings.length, 1, v);
      assert.match(warnings[0]!, /^smtp_destination_concurrency_positive_feedback: ignoring malformed or unreasonable feedback: /);
    }
  });
});

describe('window arithmetic (qmgr_queue_unthrottle / qmgr_queue_throttle)', () => {
  test('the window starts at min(initial_destination_concurrency, limit); limit 0 means no limit', () => {
    assert.equal(newWindow(settings({ limit: 20, initial: 5, positive: ONE, negative: ONE, cohortLimit: 1 })).window, 5);
    assert.equal(newWindow(settings({ limit: 2, initial: 5, positive: ONE, negative: ONE, cohortLimit: 1 })).window, 2);
    assert.equal(settings({ limit: 0, initial: 5, positive: ONE, negative: ONE, cohortLimit: 1 }).limit, Infinity);
  });

  test('with feedback 1 the window doubles per successful pseudo-cohort: 5 → 10 → 20, capped at the limit', () => {
    const s = settings({ limit: 20, initial: 5, positive: ONE, negative: ONE, cohortLimit: 1 });
    const w = newWindow(s);
    const cohort = () => {
      const n = w.window;
      for (let i = 0; i < n; i++) positive(w, w.window, s); // a full window busy
    };
    cohort();
    assert.equal(w.window, 10);
    cohort();
    assert.equal(w.window, 20);
    cohort();
    assert.equal(w.window, 20);
  });

  test('with 1/concurrency the window grows by one per pseudo-cohort', () => {
    const s = settings({ limit: 20, initial: 5, positive: PER_WINDOW, negative: PER_WINDOW, cohortLimit: 1 });
    const w = newWindow(s);
    for (const expected of [6, 7, 8]) {
      const n = w.window;
      for (let i = 0; i < n; i++) positive(w, w.window, s);
      assert.equal(w.window, expected);
    }
  });

  test('no growth unless window < busy + initial concurrency (the window tracks real load)', () => {
    const s = settings({ limit: 20, initial: 5, positive: ONE, negative: ONE, cohortLimit: 1 });
    const w = newWindow(s);
    for (let i = 0; i < 10; i++) positive(w, 0, s); // one delivery at a time
    assert.equal(w.window, 5);
    positive(w, 1, s);
    assert.equal(w.window, 6);
  });

  test('cohort limit 1: one failed pseudo-cohort kills the destination; with feedback 1 the first failure of a sequence takes 2 off the window (Postfix\'s overshoot loop), later ones 1', () => {
    const s = settings({ limit: 20, initial: 5, positive: ONE, negative: ONE, cohortLimit: 1 });
    const w = newWindow(s);
    // fail_cohorts: 1/5, then 1/3 → 0.53, then 1/2 → 1.03: dead.
    assert.equal(negative(w, s), false);
    assert.equal(w.window, 3);
    assert.equal(negative(w, s), false);
    assert.equal(w.window, 2);
    assert.equal(negative(w, s), true);
    assert.ok(isDead(w));
    assert.equal(negative(w, s), false, 'already dead');
  });

  test('with 1/concurrency negative feedback the window shrinks by one at the start of the sequence, then once per cohort; 5 failures from window 5 kill it with limit 1', () => {
    const s = settings({ limit: 20, initial: 5, positive: ONE, negative: PER_WINDOW, cohortLimit: 1 });
    const w = newWindow(s);
    assert.equal(negative(w, s), false);
    assert.equal(w.window, 4, 'shrinks at once');
    assert.equal(negative(w, s), false);
    assert.equal(negative(w, s), false);
    assert.equal(w.window, 4, 'the rest of the cohort at 4');
    assert.equal(negative(w, s), false);
    assert.equal(w.window, 3, 'a new sequence');
    // fail_cohorts 1/5 + 3 × 1/4 = 0.95; the fifth failure (1/3) passes 1.
    assert.equal(negative(w, s), true);
  });

  test('failed_cohort_limit 3 tolerates more failures: the window bottoms out at 1 before the destination dies', () => {
    const s = settings({ limit: 20, initial: 5, positive: ONE, negative: ONE, cohortLimit: 3 });
    const w = newWindow(s);
    let n = 0;
    while (!negative(w, s) && n < 100) n++;
    // windows 5,3,2,1,1: cohorts .2+.33+.5+1 = 2.03, then +1 → 3.03 at the 5th failure.
    assert.equal(n, 4);
  });

  test('a success resets the failed-cohort count; cohort limit 0 never declares the destination dead', () => {
    const s = settings({ limit: 20, initial: 5, positive: ONE, negative: ONE, cohortLimit: 1 });
    const w = newWindow(s);
    negative(w, s);
    negative(w, s);
    positive(w, 1, s);
    assert.equal(w.failCohorts, 0);
    const never = settings({ limit: 20, initial: 5, positive: ONE, negative: ONE, cohortLimit: 0 });
    const v = newWindow(never);
    for (let i = 0; i < 100; i++) assert.equal(negative(v, never), false);
    assert.equal(v.window, 1);
  });

  test('a dead destination revives at the busy count, or at the initial window when nothing is in flight; a success revives it too', () => {
    const s = settings({ limit: 20, initial: 5, positive: ONE, negative: ONE, cohortLimit: 1 });
    const w = newWindow(s);
    while (!negative(w, s));
    revive(w, 0, s);
    assert.equal(w.window, 5);
    while (!negative(w, s));
    revive(w, 3, s);
    assert.equal(w.window, 3);
    while (!negative(w, s));
    positive(w, 2, s);
    assert.equal(w.window, 2);
  });
});

/**
 * SCHEDULER_README, "Impact of active server concurrency limiter": a server that answers 421 to
 * connections above 5, client limit 20, initial concurrency 5, a backlog large enough to keep
 * the window busy, deliveries that take ~1 s (server latency) while a 421 comes back at once.
 * Postfix reports the share of deferred deliveries (first run) and the theoretical defer rate
 * 1/(1 + roundup(1/feedback)). This replays that workload, event by event, on the arithmetic.
 */
function limiterRun(fb: Feedback, deliveries = 1000): { deferred: number; meanWindow: number } {
  const s = settings({ limit: 20, initial: 5, positive: fb, negative: fb, cohortLimit: 1 });
  const w = newWindow(s);
  const events: { t: number; ok: boolean; seq: number }[] = [];
  let busy = 0, open = 0, failed = 0, now = 0, dispatched = 0, windowSum = 0, seq = 0;
  const dispatch = (): void => {
    while (busy < w.window && dispatched < deliveries) {
      dispatched++;
      busy++;
      if (open >= 5) events.push({ t: now, ok: false, seq: seq++ }); // 421 at the greeting
      else {
        open++;
        events.push({ t: now + 1 + (dispatched % 97) * 1e-4, ok: true, seq: seq++ }); // ~1 s, not in lockstep
      }
    }
  };
  dispatch();
  for (let guard = 0; events.length > 0 && guard < 10 * deliveries; guard++) {
    events.sort((a, b) => a.t - b.t || a.seq - b.seq);
    const e = events.shift()!;
    now = e.t;
    if (e.ok) {
      open--;
      positive(w, busy, s); // feedback before the entry leaves the busy list, as in qmgr_deliver_update
    } else {
      failed++;
      assert.equal(negative(w, s), false, 'a 421 above the limit must not kill the destination');
    }
    busy--;
    windowSum += w.window;
    dispatch();
  }
  return { deferred: failed / deliveries, meanWindow: windowSum / deliveries };
}

describe("SCHEDULER_README's active-limiter measurement (server limit 5, client limit 20)", () => {
  test('1/concurrency feedback: 16.5 % deferred at a mean concurrency of 5.17, as Postfix measured (theory 1/6)', () => {
    const r = limiterRun(PER_WINDOW);
    assert.ok(Math.abs(r.deferred - 0.165) <= 0.003, `deferred ${r.deferred}`);
    assert.ok(r.deferred <= 1 / 6, `deferred ${r.deferred}`);
    assert.ok(Math.abs(r.meanWindow - 5.17) <= 0.03, `mean window ${r.meanWindow}`);
  });

  test('fixed less-than-1 feedback defers 1/(1 + roundup(1/feedback)): 1/4 → 1/5, 1/3 → 1/4', () => {
    for (const [value, theory] of [['1/4', 1 / 5], ['1/3', 1 / 4]] as const) {
      const r = limiterRun(parse(value).fb);
      assert.ok(Math.abs(r.deferred - theory) <= 0.005, `${value}: deferred ${r.deferred}, theory ${theory}`);
    }
  });
});
