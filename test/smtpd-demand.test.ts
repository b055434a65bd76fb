/**
 * actors/master/smtpd-demand.ts: an smtpd service's threads after the first start on demand —
 * the next dormant slot once every running thread of the service was busy at least SPREAD_ELU
 * and on a CPU at least SPREAD_CPU of each of the last BUSY_CHECKS seconds, and not while one of
 * them has room (nor for one busy second: a thread's start-up; nor with a full event loop that
 * waits for a CPU); such a thread rests again after max_idle with its event loop quiet. The slots are objects of the test
 * that answer what a SupervisedWorker answers (the watch reads nothing else of them).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SupervisedWorker } from '../src/runtime/supervisor.js';
import { BUSY_CHECKS, SPREAD_CPU, SPREAD_ELU, watchSmtpdLoad } from '../actors/master/smtpd-demand.js';

interface Slot {
  options: { service: string; onDemand: boolean };
  threadId: number | undefined;
  dormant: boolean;
  /** Busy share of each following second. */
  busy: number;
  /** Share of each following second on a CPU (null: as busy: a machine with CPUs to spare). */
  onCpu: number | null;
  elu: { idle: number; active: number };
  cpu: number;
  lastCpuLook?: number;
  demanded: number;
  rested: number;
  eventLoopUtilization(): { idle: number; active: number } | null;
  cpuUsage(): Promise<{ user: number; system: number }> | null;
  demand(): void;
  rest(): void;
}

function slot(service: string, threadId: number | undefined, onDemand = threadId === undefined): Slot {
  const s: Slot = {
    options: { service, onDemand }, threadId, dormant: threadId === undefined, busy: 0, onCpu: null, elu: { idle: 0, active: 0 }, cpu: 0, demanded: 0, rested: 0,
    eventLoopUtilization: () => {
      if (s.threadId === undefined) return null;
      // Each look: one more second at the slot's busy share.
      s.elu = { idle: s.elu.idle + 1000 * (1 - s.busy), active: s.elu.active + 1000 * s.busy };
      return s.elu;
    },
    cpuUsage: () => {
      if (s.threadId === undefined) return null;
      // CPU µs since the start: the real seconds gone at the slot's share of a CPU.
      s.cpu += (Date.now() - (s.lastCpuLook ?? Date.now())) * 1000 * (s.onCpu ?? s.busy);
      s.lastCpuLook = Date.now();
      return Promise.resolve({ user: s.cpu, system: 0 });
    },
    demand: () => { s.demanded++; },
    rest: () => { s.rested++; },
  };
  return s;
}

const seconds = (n: number) => new Promise((r) => setTimeout(r, n * 1000 + 200));

test('the second smtpd thread starts once the first is busy, not before; another service is not affected', async () => {
  const first = slot('smtpd', 1);
  const second = slot('smtpd', undefined);
  const other = slot('submission', 3);
  const otherDormant = slot('submission', undefined);
  const stop = watchSmtpdLoad(() => [first, second, other, otherDormant] as unknown as SupervisedWorker[], () => 60_000);
  try {
    first.busy = 0.9;
    await seconds(1.2);
    first.busy = SPREAD_ELU / 2;
    other.busy = 0;
    await seconds(2);
    assert.equal(second.demanded, 0, 'one busy second (a start-up), then room: no second');
    first.busy = 0.9;
    await seconds(BUSY_CHECKS + 1);
    assert.ok(second.demanded >= 1, 'a busy first thread: the second is asked for');
    assert.equal(otherDormant.demanded, 0, 'an idle service starts nothing');
  } finally {
    stop();
  }
});

test('a full event loop that waits for a CPU (all of them busy) starts no second thread', async () => {
  const first = slot('smtpd', 1);
  const second = slot('smtpd', undefined);
  const stop = watchSmtpdLoad(() => [first, second] as unknown as SupervisedWorker[], () => 60_000);
  try {
    first.busy = 0.95;
    first.onCpu = 0.48; // bench/relay on 2 CPUs: the loop full, half a CPU its own
    await seconds(BUSY_CHECKS + 1);
    assert.equal(second.demanded, 0, 'no CPU for a second thread: none');
    first.onCpu = (SPREAD_CPU + 1) / 2;
    await seconds(BUSY_CHECKS + 1);
    assert.ok(second.demanded >= 1, 'the thread has a CPU of its own and is short of it: the second starts');
  } finally {
    stop();
  }
});

test('with two threads running, a third starts only when both are busy', async () => {
  const a = slot('smtpd', 1);
  const b = slot('smtpd', 2);
  const c = slot('smtpd', undefined);
  const stop = watchSmtpdLoad(() => [a, b, c] as unknown as SupervisedWorker[], () => 60_000);
  try {
    a.busy = 0.95;
    b.busy = 0.1;
    await seconds(BUSY_CHECKS + 1);
    assert.equal(c.demanded, 0);
    b.busy = (SPREAD_ELU + 1) / 2; // over the threshold as well
    await seconds(BUSY_CHECKS + 1);
    assert.ok(c.demanded >= 1);
  } finally {
    stop();
  }
});

test('a thread started on demand rests once its event loop was quiet over max_idle; the first thread never does', async () => {
  const first = slot('smtpd', 1);
  const second = slot('smtpd', 2, true);
  const stop = watchSmtpdLoad(() => [first, second] as unknown as SupervisedWorker[], () => 2500);
  try {
    second.busy = 0.2;
    await seconds(3);
    assert.equal(second.rested, 0, 'working (20 %): not quiet');
    second.busy = 0.001;
    await seconds(5);
    assert.ok(second.rested >= 1, 'quiet for max_idle: rests');
    assert.equal(first.rested, 0);
  } finally {
    stop();
  }
});
