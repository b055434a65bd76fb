/**
 * Deferred-mail retry arithmetic: Postfix's qmgr cool-off (the message's age, clamped to
 * [minimal_backoff_time, maximal_backoff_time]) plus Postactor's bounded jitter (0–10 % of the
 * wait, added), and queue lifetimes.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { expired, nextAttempt, RETRY_JITTER } from '../actors/qmgr/backoff.js';

const T = 1_000_000_000_000;
const none = () => 0;

describe('retry time (Postfix: clamp(age, minimal_backoff_time, maximal_backoff_time))', () => {
  test('a young message waits minimal_backoff_time (300 s)', () => {
    assert.equal(nextAttempt(T, T - 10_000, 300, 4000, none), T + 300_000);
    assert.equal(nextAttempt(T, T, 300, 4000, none), T + 300_000);
  });

  test('an older message waits as long as it has been queued: retried at about twice its age', () => {
    assert.equal(nextAttempt(T, T - 1_000_000, 300, 4000, none), T + 1_000_000);
  });

  test('never more than maximal_backoff_time (4000 s, about 67 minutes) apart', () => {
    assert.equal(nextAttempt(T, T - 5 * 86_400_000, 300, 4000, none), T + 4_000_000);
  });

  test('maximal below minimal: minimal wins', () => {
    assert.equal(nextAttempt(T, T - 1_000_000, 300, 100, none), T + 300_000);
  });

  test('the jitter is added, at most 10 % of the wait, and spreads one outage\'s messages', () => {
    assert.equal(RETRY_JITTER, 0.1);
    assert.equal(nextAttempt(T, T, 300, 4000, () => 1), T + 330_000);
    assert.equal(nextAttempt(T, T - 5 * 86_400_000, 300, 4000, () => 0.5), T + 4_200_000);
    const times = new Set<number>();
    for (let i = 0; i < 100; i++) {
      const t = nextAttempt(T, T - 1000, 300, 4000);
      assert.ok(t >= T + 300_000 && t <= T + 330_000, `${t - T}`);
      times.add(t);
    }
    assert.ok(times.size > 50, 'retries of messages deferred together are not in lockstep');
  });
});

describe('queue lifetime', () => {
  test('expired at maximal_queue_lifetime; 0 means one attempt only', () => {
    assert.equal(expired(T, T - 5 * 86_400_000, 5 * 86_400), true);
    assert.equal(expired(T, T - 5 * 86_400_000 + 1, 5 * 86_400), false);
    assert.equal(expired(T, T, 0), true);
  });
});
