/**
 * qmgr tells a transport's pool that work is coming (actors/qmgr/transport.ts): the first time it
 * has work for the transport with nothing in delivery, as Postfix's qmgr connects to the agent
 * then; not again while deliveries are in flight, nor twice in the same second. In the server
 * the hook sends WARM_REQUEST, which starts a thread in a pool that has none (test/runtime.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF } from '../src/config/embedded.js';
import { buildConfig } from '../src/config/load.js';
import type { Logger } from '../src/log/maillog.js';
import { Transports } from '../actors/qmgr/transport.js';
import { jobSelector } from '../actors/qmgr/strategy.js';
import type { Destination } from '../actors/qmgr/queue.js';
import type { Entry, Job } from '../actors/qmgr/entry.js';

const log: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined, fatal: () => undefined } as unknown as Logger;

test('a transport with work and nothing in delivery is warmed once; not while it delivers', () => {
  const warmed: string[] = [];
  const transports = new Transports(buildConfig(null, EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF), log, 'qmgr', {
    selector: (jobs) => jobSelector<Job, Destination, Entry>(jobs, () => null),
    wake: () => undefined,
    schedule: () => undefined,
    warm: (t) => void warmed.push(t),
  });
  const local = transports.get('local');
  assert.deepEqual(warmed, ['local'], 'the first work for a transport warms its pool');
  transports.get('local');
  assert.deepEqual(warmed, ['local'], 'not twice in the same second');
  transports.get('smtp');
  assert.deepEqual(warmed, ['local', 'smtp'], 'each transport on its own');
  local.inDelivery = 1;
  transports.get('local');
  assert.deepEqual(warmed, ['local', 'smtp'], 'a transport with deliveries in flight has its threads');
});

test('without the hook (a test of the parts, oqmgr alike) nothing is warmed and nothing fails', () => {
  const transports = new Transports(buildConfig(null, EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF), log, 'oqmgr', {
    selector: (jobs) => jobSelector<Job, Destination, Entry>(jobs, () => null),
    wake: () => undefined,
    schedule: () => undefined,
  });
  assert.equal(transports.get('local').name, 'local');
});
