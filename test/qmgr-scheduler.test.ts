/**
 * nqmgr's preemption arithmetic (qmgr_job.c) against the worked examples of Postfix's
 * SCHEDULER_README: delivery sequences with and without slot loans, the minimum-slots skip, the
 * candidate score (queued time per recipient entry), blockers, and the k/(k−1) inflation bound.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_SLOTS, JobList, mayPreempt, maxSlots, newJob, score, type SchedJob, type SlotParams } from '../actors/qmgr/scheduler.js';

interface TJob extends SchedJob { name: string }

function job(name: string, entries: number, queuedAt = 0): TJob {
  return { ...newJob(queuedAt, entries, 0), name };
}

/** Selects `n` entries (or until nothing is left), every destination always free: the sequence of job names. */
function run(list: JobList<TJob>, n: number, now = 0, onPick?: (i: number) => void): string {
  let out = '';
  for (let i = 0; i < n; i++) {
    onPick?.(i);
    const got = list.select(() => true, now);
    if (!got) break;
    out += got.job.name;
  }
  return out;
}

/** Selections while one-entry jobs keep arriving (3 waiting at any time) until the job list is done. */
function stream(list: JobList<TJob>, t0: number): string {
  let t = t0;
  let waiting = 0;
  let out = '';
  for (let i = 0; i < 20_000; i++) {
    while (waiting < 3 && out.split('L').length <= 1000) {
      list.link(job('s', 1, t++));
      waiting++;
    }
    const got = list.select(() => true, 1e9);
    if (!got) break;
    if (got.job.name === 's') waiting--;
    out += got.job.name;
  }
  return out;
}

describe('preemption sequences (SCHEDULER_README)', () => {
  test('slot cost 2, no loan: a 10-entry job followed by two 2-entry jobs is delivered as 11112211113311', () => {
    const p: SlotParams = { cost: 2, loan: 0, discount: 100, minSlots: 3 };
    const list = new JobList<TJob>(p);
    for (const j of [job('1', 10, 0), job('2', 2, 1000), job('3', 2, 2000)]) list.link(j);
    assert.equal(run(list, 100, 10_000), '11112211113311');
  });

  test('slot cost 2 with a 50% discount: the small jobs come earlier, 11221111331111, and the big job still pays', () => {
    const p: SlotParams = { cost: 2, loan: 0, discount: 50, minSlots: 3 };
    const list = new JobList<TJob>(p);
    for (const j of [job('1', 10, 0), job('2', 2, 1000), job('3', 2, 2000)]) list.link(j);
    assert.equal(run(list, 100, 10_000), '11221111331111');
  });

  test('no preemption of a job that can never earn minimum_delivery_slots (entries < min × cost)', () => {
    const list = new JobList<TJob>({ ...DEFAULT_SLOTS }); // 3 × 5 = 15
    for (const j of [job('a', 14, 0), job('b', 1, 1000)]) list.link(j);
    assert.equal(run(list, 100, 10_000), 'aaaaaaaaaaaaaab');
    const list2 = new JobList<TJob>({ ...DEFAULT_SLOTS });
    for (const j of [job('a', 15, 0), job('b', 1, 1000)]) list2.link(j);
    // loan 3 slots + 50 %: a one-entry job preempts as soon as one slot is earned
    assert.equal(run(list2, 100, 10_000), 'abaaaaaaaaaaaaaa');
  });

  test('slot cost 1 disables preemption (strict FIFO)', () => {
    const list = new JobList<TJob>({ cost: 1, loan: 3, discount: 50, minSlots: 3 });
    for (const j of [job('a', 20, 0), job('b', 1, 1000)]) list.link(j);
    assert.equal(run(list, 100, 10_000), 'a'.repeat(20) + 'b');
  });
});

describe('candidates and the preemption test', () => {
  test('the candidate must fit in the slots the current job can still earn', () => {
    const p = DEFAULT_SLOTS;
    const cur = job('c', 100);
    cur.selected = 10;
    cur.slotsAvailable = 10;
    assert.equal(maxSlots(cur, p), 20); // (100 − 10 + 10) / 5
    const list = new JobList<TJob>(p);
    const big = job('big', 21, 1000);
    const fits = job('fits', 20, 2000);
    for (const j of [cur, big, fits]) list.link(j);
    assert.equal(list.candidate(cur, 10_000), fits);
  });

  test('the best candidate has the longest queued time per entry, so older 2-entry mail can beat young 1-entry mail', () => {
    const list = new JobList<TJob>(DEFAULT_SLOTS);
    const cur = job('c', 1000, 0);
    cur.slotsAvailable = 50;
    const old2 = job('old2', 2, 0); // queued 100 s: score 101 / 2
    const young1 = job('young1', 1, 60_000); // queued 40 s: score 41
    for (const j of [cur, old2, young1]) list.link(j);
    assert.ok(score(old2, 100_000) > score(young1, 100_000));
    assert.equal(list.candidate(cur, 100_000), old2);
  });

  test('loan and discount: a 10-entry candidate needs trunc(available / cost) + loan ≥ 10 × 50 %', () => {
    const p = DEFAULT_SLOTS;
    const cur = job('c', 1000);
    const cand = job('x', 10);
    cur.slotsAvailable = 5; // 1 + 3 < 5
    assert.equal(mayPreempt(cur, cand, p), false);
    cur.slotsAvailable = 10; // 2 + 3 ≥ 5
    assert.equal(mayPreempt(cur, cand, p), true);
    cur.slotsAvailable = 0;
    assert.equal(mayPreempt(cur, cand, p), false, 'no slots yet (or a loan still owed): never');
  });

  test('a preempted job is charged cost × the preempting job\'s entries, corrected by what it really used', () => {
    const list = new JobList<TJob>({ cost: 5, loan: 3, discount: 50, minSlots: 3 });
    const big = job('L', 100, 0);
    const small = job('s', 2, 1000);
    list.link(big);
    list.link(small);
    assert.equal(run(list, 2, 10_000), 'Ls');
    // after 1 L selection: available 1; preempted by s (2 entries): 1 − 10 = −9; s selected once
    assert.equal(big.slotsAvailable, -9);
    assert.equal(small.level, 1);
    assert.equal(run(list, 1, 10_000), 's');
    assert.equal(small.level, -1, 'retired once all its entries are selected');
    assert.equal(big.slotsAvailable, -9, 'used exactly what was expected: no correction');
  });
});

describe('blockers and the inflation bound', () => {
  test('a job whose destinations are all busy is skipped until unblock()', () => {
    const list = new JobList<TJob>(DEFAULT_SLOTS);
    const a = job('a', 3, 0);
    const b = job('b', 3, 1000);
    list.link(a);
    list.link(b);
    let aBlocked = true;
    const pick = (j: TJob) => (j === a && aBlocked ? null : true);
    assert.equal(list.select(pick, 0)?.job, b);
    assert.equal(a.blocker, list.blockerTag);
    assert.equal(list.select(pick, 0)?.job, b);
    aBlocked = false;
    assert.equal(list.select(pick, 0)?.job, b, 'still a blocker until the tag changes');
    list.unblock();
    assert.equal(list.select(pick, 0)?.job, a);
  });

  test('with cost k a 1,000-entry list among a stream of 1-entry mail is slowed by at most k/(k−1)', () => {
    for (const cost of [2, 5, 10]) {
      const list = new JobList<TJob>({ cost, loan: 3, discount: 50, minSlots: 3 });
      const big = job('L', 1000, 0);
      list.link(big);
      // one-entry messages keep arriving: always a few candidates waiting
      const seq = stream(list, 1);
      const total = seq.indexOf('L') >= 0 ? seq.lastIndexOf('L') + 1 : 0;
      const slowdown = total / 1000;
      assert.ok(slowdown <= cost / (cost - 1) + 0.01, `cost ${cost}: slowdown ${slowdown}`);
      assert.ok(slowdown > 1, `cost ${cost}: the small mail did get through`);
    }
  });

  test('nested preemption keeps the bound: a 1,000-entry list, a 50-entry job, and 1-entry mail', () => {
    const cost = 5;
    const list = new JobList<TJob>({ cost, loan: 3, discount: 50, minSlots: 3 });
    list.link(job('L', 1000, 0));
    list.link(job('M', 50, 1));
    const seq = stream(list, 2);
    const slowdown = (seq.lastIndexOf('L') + 1) / 1000;
    assert.ok(slowdown <= cost / (cost - 1) + 0.01, `slowdown ${slowdown}`);
    assert.equal(seq.split('M').length - 1, 50);
  });
});
