/**
 * The qmgr benchmark's own pieces (bench/qmgr): the destination farm answers with each
 * profile, and its transport_maps table routes a message through a real server to the right
 * sink. The scenarios themselves are benchmarks, not tests (see bench/README.md).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DestinationFarm, until } from '../bench/qmgr/farm.js';
import { countStatuses, domain, jain, startInstance } from '../bench/qmgr/run.js';
import { SmtpDialogue, sendRaw } from './helpers/server.js';

const msg = 'Subject: farm\r\n\r\nhello\r\n';

test('destination farm: fast, slow, 4xx, 5xx, 421 above N connections, refused, black hole', async () => {
  const farm = await DestinationFarm.start([
    { domain: 'fast.test', kind: 'fast', track: true },
    { domain: 'slow.test', kind: 'slow', delayMs: 300 },
    { domain: 'tempfail.test', kind: '4xx' },
    { domain: 'permfail.test', kind: '5xx' },
    { domain: 'throttle.test', kind: 'throttle', maxConnections: 1 },
    { domain: 'refused.test', kind: 'refused' },
    { domain: 'blackhole.test', kind: 'blackhole' },
  ]);
  const port = (i: number): number => farm.dests[i]!.port;
  try {
    assert.equal((await sendRaw(port(0), 'a@x.test', ['u1@fast.test'], msg)).code, 250);
    assert.ok(await until(() => farm.snapshot(0).recipients === 1, 5000));
    const arrivals = await farm.arrivals();
    assert.ok((arrivals.get('u1@fast.test') ?? 0) > 0, 'tracked arrival recorded');

    const t0 = Date.now();
    assert.equal((await sendRaw(port(1), 'a@x.test', ['u@slow.test'], msg)).code, 250);
    assert.ok(Date.now() - t0 >= 250, `slow sink answered after ${Date.now() - t0} ms`);

    assert.match((await sendRaw(port(2), 'a@x.test', ['u@tempfail.test'], msg)).line, /^450 4\./);
    assert.match((await sendRaw(port(3), 'a@x.test', ['u@permfail.test'], msg)).line, /^550 5\./);
    assert.equal(farm.snapshot(2).rejected, 1);

    const first = await SmtpDialogue.connect(port(4));
    try {
      assert.equal(first.greeting.code, 220);
      const second = await SmtpDialogue.connect(port(4));
      assert.match(second.greeting.line, /^421 /);
      second.smtp.close();
    } finally {
      first.smtp.close();
    }

    const refused = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: port(5) });
      s.once('connect', () => { s.destroy(); resolve('connected'); });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    assert.equal(refused, 'ECONNREFUSED');

    await assert.rejects(SmtpDialogue.connect(port(6), { timeoutMs: 300 }), /no SMTP reply within 300 ms/);
    assert.ok(await until(() => farm.snapshot(6).connections === 1, 2000));

    assert.match(farm.transportTable(), new RegExp(`^fast\\.test\\tsmtp:\\[127\\.0\\.0\\.1\\]:${port(0)}\\n`));
  } finally {
    await farm.close();
  }
});

test('transport_maps texthash written by the bench routes each dNNN.test domain to its own sink', async () => {
  const farm = await DestinationFarm.start([0, 1, 2].map((i) => ({ domain: domain(i), kind: 'fast' as const })));
  const tableDir = mkdtempSync(path.join(tmpdir(), 'qmgr-bench-test-'));
  const inst = await startInstance({ farm, tableDir });
  try {
    assert.equal((await sendRaw(inst.port, 'a@x.test', [`u@${domain(1)}`], msg)).code, 250);
    assert.equal((await sendRaw(inst.port, 'a@x.test', [`v@${domain(2)}`, `w@${domain(2)}`], msg)).code, 250);
    assert.ok(await until(() => farm.snapshot(1).recipients === 1 && farm.snapshot(2).recipients === 2, 20_000), JSON.stringify(farm.snapshots()));
    assert.equal(farm.snapshot(0).recipients, 0);
    assert.ok(await until(() => (countStatuses(inst.maillog(), domain(2)).sent ?? 0) === 2, 5000), inst.maillog());
  } finally {
    await inst.stop();
    await farm.close();
    rmSync(tableDir, { recursive: true, force: true });
  }
});

test('Jain fairness index: 1 for equal shares, 1/n when one takes everything', () => {
  assert.equal(jain([3, 3, 3, 3]), 1);
  assert.ok(Math.abs(jain([1, 0, 0, 0]) - 0.25) < 1e-12);
});
