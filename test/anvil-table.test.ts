/**
 * anvil's shared counter table (src/anvil/table.ts) on its own: client keys as Postfix's
 * inet_prefix_top (IPv6 grouped by smtpd_client_ipv6_prefix_length), counts, the fixed rate
 * window, expiry and sweep, a full table failing open, the same table from two threads, and
 * master's check of smtpd_client_event_limit_exceptions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { AnvilTable, clientKey, formatKey } from '../src/anvil/table.js';
import { checkConfig } from '../actors/master/index.js';
import { loadConfig } from '../src/config/index.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-anvil-table-');
const key = (a: string) => clientKey(a, 32, 84)!;
const show = (a: string, v4 = 32, v6 = 84) => { const k = clientKey(a, v4, v6)!; return formatKey(k.words, k.prefix); };

test('client keys: IPv4 whole by default, IPv6 grouped by /84 as Postfix 3.8, IPv4-mapped counts as IPv4', () => {
  assert.equal(show('192.0.2.7'), '192.0.2.7');
  assert.equal(show('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(show('192.0.2.7', 24), '192.0.2.0/24');
  assert.equal(show('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2:3::/84');
  assert.equal(show('2001:db8:1:2:3fff:4fff:5:6'), '2001:db8:1:2:3fff:4000::/84');
  assert.equal(show('2001:db8::1', 32, 128), '2001:db8::1');
  assert.equal(show('::1', 32, 128), '::1');
  // Two addresses of one /84 are one client; the next /84 is another.
  assert.deepEqual(key('2001:db8:0:0:0:0fff:1:1').words, key('2001:db8::ab').words);
  assert.notDeepEqual(key('2001:db8:0:0:0:1000::1').words, key('2001:db8::ab').words);
  assert.equal(clientKey('not-an-address', 32, 84), null);
});

test('counts and the fixed rate window: all rates reset together once the unit has passed', async () => {
  const t = AnvilTable.create(1);
  const a = key('192.0.2.1'), b = key('192.0.2.2');
  assert.deepEqual(t.connect(a), { count: 1, rate: 1 });
  assert.deepEqual(t.connect(a), { count: 2, rate: 2 });
  assert.deepEqual(t.connect(b), { count: 1, rate: 1 });
  assert.equal(t.event(a, 'message'), 1);
  assert.equal(t.event(a, 'message'), 2);
  assert.equal(t.rate(a, 'message'), 2);
  t.disconnect(a);
  assert.deepEqual(t.connect(a), { count: 2, rate: 3 });
  await new Promise((r) => setTimeout(r, 1300));
  // More than the unit since the window started: a new window, the count stays.
  assert.deepEqual(t.connect(a), { count: 3, rate: 1 });
  assert.equal(t.rate(a, 'message'), 0);
  const peaks = t.takePeaks('smtp');
  assert.equal(peaks.connectionCount!.value, 3);
  assert.equal(peaks.connectionCount!.ident, 'smtp:192.0.2.1');
  assert.equal(peaks.connectionRate!.value, 3);
  assert.equal(peaks.messageRate!.value, 2);
  assert.equal(peaks.authRate, null);
  assert.equal(t.takePeaks('smtp').connectionCount, null, 'peaks start again from zero');
});

test('an idle client expires a time unit after its last connection; sweep frees the slots; a full table fails open', async () => {
  const t = AnvilTable.create(1, 4);
  for (const a of ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4']) t.connect(key(a));
  assert.equal(t.connect(key('192.0.2.5')), null, 'full: no limit rather than a refusal');
  for (const a of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) t.disconnect(key(a));
  assert.equal(t.connect(key('192.0.2.5')), null, 'not yet expired');
  await new Promise((r) => setTimeout(r, 1300));
  assert.deepEqual(t.connect(key('192.0.2.5')), { count: 1, rate: 1 }, 'an expired slot is reused');
  t.sweep();
  assert.equal(t.size(), 2);
  assert.deepEqual(t.connect(key('192.0.2.4')), { count: 2, rate: 1 }, 'a live client survives the sweep');
  assert.deepEqual(t.connect(key('192.0.2.1')), { count: 1, rate: 1 }, 'an expired client starts afresh');
});

test('two threads on one table: no count is lost', async () => {
  const t = AnvilTable.create(60);
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.module).then(({ AnvilTable, clientKey }) => {
      const t = new AnvilTable(workerData.buffer);
      const k = clientKey('198.51.100.9', 32, 84);
      for (let i = 0; i < 20000; i++) t.connect(k);
      parentPort.postMessage('done');
    });`;
  const module = new URL('../src/anvil/table.js', import.meta.url).href;
  await Promise.all([0, 1].map(() => new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { buffer: t.buffer, module } });
    w.once('message', () => resolve(w.terminate()));
    w.once('error', reject);
  })));
  assert.equal(t.connect(key('198.51.100.9'))!.count, 40001);
});

test('check: smtpd_client_event_limit_exceptions takes addresses and networks; a host name is refused by name', () => {
  const master = '127.0.0.1:2599 inet n - n - 1 smtpd\ncleanup unix n - n - 1 cleanup\nqmgr unix n - n 300 1 qmgr\n';
  const ok = tempDir({ 'main.cf': `queue_directory = ${os.tmpdir()}/pa-q\nsmtpd_client_event_limit_exceptions = 192.0.2.0/24 [2001:db8::]/32\n`, 'master.cf': master });
  assert.deepEqual(checkConfig(loadConfig(ok)), []);
  const bad = tempDir({ 'main.cf': `queue_directory = ${os.tmpdir()}/pa-q\nsmtpd_client_event_limit_exceptions = mail.example.com\n`, 'master.cf': master });
  const problems = checkConfig(loadConfig(bad));
  assert.equal(problems.length, 1, problems.join('; '));
  assert.match(problems[0]!, /main\.cf: smtpd_client_event_limit_exceptions = mail\.example\.com: bad network address: "mail\.example\.com"/);
});
