/**
 * oqmgr, Postfix's "old" queue manager, selected by master.cf's command name
 * (`qmgr unix n - n 300 1 oqmgr`): the same actor with another scheduler (actors/qmgr/strategy.ts):
 * destinations round-robin, first in first out within one, no preemption. In process: the
 * round-robin itself, and the same workload ordered by nqmgr's job list and by oqmgr's ring. End
 * to end: mail is delivered under oqmgr (logged as postactor/oqmgr, as Postfix logs
 * postfix/oqmgr), and a one-recipient message sent behind a 20-delivery list overtakes it under
 * qmgr but waits for all of it under oqmgr.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { DestinationRing } from '../actors/qmgr/strategy.js';
import { DEFAULT_SLOTS, JobList, newJob, type SchedJob } from '../actors/qmgr/scheduler.js';
import { checkConfig } from '../actors/master/index.js';
import { loadConfig } from '../src/config/index.js';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { defaultMasterCf, NODE, POSTACTOR_JS, queuedId, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-oqmgr-');

interface TDest { name: string; todo: string[]; busy: number; window: number }

const dest = (name: string, todo: string[], window = 1): TDest => ({ name, todo, busy: 0, window });

/** A ring over `dests` whose deliveries complete at once (busy stays 0) unless `hold` is set. */
function ring(dests: TDest[], hold = false): DestinationRing<TDest, string> {
  const r = new DestinationRing<TDest, string>({
    open: (d) => d.todo.length > 0 && d.busy < d.window,
    take: (d) => {
      if (hold) d.busy++;
      return d.todo.shift()!;
    },
    live: (d) => d.todo.length > 0 || d.busy > 0,
  });
  for (const d of dests) r.waiting(d);
  return r;
}

function drain(r: DestinationRing<TDest, string>, max = 1000): string[] {
  const out: string[] = [];
  for (let e = r.select(0); e !== null && out.length < max; e = r.select(0)) out.push(e);
  return out;
}

describe('oqmgr selection (qmgr_queue_select, qmgr_entry_select)', () => {
  test('destinations round-robin, each first in first out', () => {
    const r = ring([dest('a', ['a1', 'a2', 'a3']), dest('b', ['b1']), dest('c', ['c1', 'c2'])]);
    assert.deepEqual(drain(r), ['a1', 'b1', 'c1', 'a2', 'c2', 'a3']);
    assert.equal(r.idle(), true, 'empty destinations leave the ring');
  });

  test('a destination at its window is skipped and keeps its turn; a new one joins at the end of the round', () => {
    const a = dest('a', ['a1', 'a2']);
    const b = dest('b', ['b1', 'b2']);
    const r = ring([a, b], true);
    assert.equal(r.select(0), 'a1');
    assert.equal(r.select(0), 'b1');
    assert.equal(r.select(0), null, 'both windows (1) are full');
    a.busy--; // a's delivery is back
    const c = dest('c', ['c1']);
    r.waiting(c);
    assert.deepEqual(r.order().map((d) => d.name), ['a', 'b', 'c']);
    assert.equal(r.select(0), 'a2');
    assert.equal(r.select(0), 'c1', 'b is still busy: skipped');
    b.busy--;
    assert.equal(r.select(0), 'b2');
  });

  test('forget() takes a destination out of the round without disturbing the turn', () => {
    const a = dest('a', ['a1', 'a2']);
    const b = dest('b', ['b1', 'b2']);
    const c = dest('c', ['c1', 'c2']);
    const r = ring([a, b, c]);
    assert.equal(r.select(0), 'a1');
    r.forget(a);
    assert.deepEqual(r.order().map((d) => d.name), ['b', 'c']);
    assert.deepEqual(drain(r), ['b1', 'c1', 'b2', 'c2']);
  });

  test('the same workload, one destination: nqmgr lets the small messages preempt the 20-entry list, oqmgr does not', () => {
    // A 20-entry list (queued first) and three one-entry messages, all for one destination.
    interface TJob extends SchedJob { name: string; entries: string[] }
    const jobs = [
      { ...newJob(0, 20, 0), name: 'L', entries: Array.from({ length: 20 }, () => 'L') },
      ...['a', 'b', 'c'].map((n, i) => ({ ...newJob(1000 + i, 1, 0), name: n, entries: [n] })),
    ] satisfies TJob[];
    const list = new JobList<TJob>(DEFAULT_SLOTS);
    for (const j of jobs) list.link(j);
    let nq = '';
    for (let got = list.select((j) => j.entries.shift() ?? null, 10_000); got; got = list.select((j) => j.entries.shift() ?? null, 10_000)) nq += got.entry;
    // oqmgr: the destination's entries in the order they were queued.
    const oq = drain(ring([dest('example.com', ['L', ...Array.from({ length: 19 }, () => 'L'), 'a', 'b', 'c'])])).join('');
    assert.equal(oq, 'LLLLLLLLLLLLLLLLLLLLabc');
    assert.equal(nq.length, 23);
    assert.notEqual(nq, oq);
    assert.ok(nq.indexOf('a') < 5 && nq.indexOf('c') < 20, `nqmgr order ${nq}`);
  });
});

describe('master.cf: the queue manager by command name', () => {
  const main = `queue_directory = ${os.tmpdir()}/pa-oq\n`;
  const lines = ['127.0.0.1:2598 inet n - n - 1 smtpd', 'cleanup unix n - n - 1 cleanup'];

  test('oqmgr is a queue manager: accepted without a "not built" warning', () => {
    const dir = tempDir({ 'main.cf': main, 'master.cf': [...lines, 'qmgr unix n - n 300 1 oqmgr', ''].join('\n') });
    const config = loadConfig(dir);
    assert.deepEqual(checkConfig(config), []);
    assert.ok(!config.warnings.some((w) => /oqmgr/.test(w)), config.warnings.join('\n'));
  });

  test('qmgr and oqmgr both: refused, only one queue manager may run', () => {
    const dir = tempDir({ 'main.cf': main, 'master.cf': [...lines, 'qmgr unix n - n 300 1 qmgr', 'oqmgr unix n - n 300 1 oqmgr', ''].join('\n') });
    const problems = checkConfig(loadConfig(dir));
    assert.equal(problems.length, 1, problems.join('; '));
    assert.match(problems[0]!, /master\.cf:4: service "oqmgr" \(command oqmgr\): a second queue manager \(service "qmgr", command qmgr, runs already\): only one may run/);
  });
});

describe('oqmgr end to end', () => {
  const servers: TestServer[] = [];
  const sinks: SmtpSink[] = [];
  after(async () => {
    for (const s of servers) await s.stop();
    for (const s of sinks) await s.close();
  });

  const list = Array.from({ length: 40 }, (_, i) => `l${i}@example.com`);

  /**
   * A 40-recipient list (20 deliveries of 2, one at a time), then a one-recipient message once
   * the list is active: the deliveries in the order the sink saw them. Until the small message is
   * active as well, the sink holds each delivery's reply `holdMs` (1 s), so the list cannot get
   * far while the small one is received and read in, on a loaded machine too; from then on the
   * order is the scheduler's alone, and the sink answers at once (the delivery in flight keeps
   * its hold).
   */
  async function listThenSmall(command: 'qmgr' | 'oqmgr', opts: { rcpts?: string[]; mainCf?: Record<string, string>; holdMs?: number } = {}): Promise<{ order: SinkMessage[]; server: TestServer }> {
    const rcpts = opts.rcpts ?? list;
    // The sink reads dataDelayMs for each message: setting it to 0 below ends the hold.
    const profile = { dataDelayMs: opts.holdMs ?? 1000 };
    const sink = new SmtpSink(profile);
    sinks.push(sink);
    const order: SinkMessage[] = [];
    sink.on('message', (m: SinkMessage) => order.push(m));
    const sinkPort = await sink.listen(0);
    const server = await startServer({
      sinkPort,
      masterCf: defaultMasterCf(0).replace(/^127\.0\.0\.1:0 /m, '127.0.0.1:{{PORT}} ').replace('300 1 qmgr', `300 1 ${command}`),
      mainCf: { smtp_destination_recipient_limit: '2', smtp_destination_concurrency_limit: '1', initial_destination_concurrency: '1', smtpd_recipient_limit: '1000', ...opts.mainCf },
    });
    servers.push(server);
    const r1 = await sendRaw(server.port, 'sender@example.org', rcpts, rfc822({ Subject: 'list' }, 'list\n'));
    assert.equal(r1.code, 250, r1.text);
    await server.waitForLog(new RegExp(`nrcpt=${rcpts.length} \\(queue active\\)`), 10_000);
    const r2 = await sendRaw(server.port, 'sender@example.org', ['small@example.com'], rfc822({ Subject: 'small' }, 'small\n'));
    await server.waitForLog(new RegExp(`: ${queuedId(r2)}: from=<sender@example\\.org>, size=\\d+, nrcpt=1 \\(queue active\\)`), 10_000);
    profile.dataDelayMs = 0;
    await server.waitForLogCount(/status=sent/, rcpts.length + 1, 60_000);
    return { order, server };
  }

  const smallAt = (order: SinkMessage[]) => order.findIndex((m) => m.recipients.includes('small@example.com'));

  test('qmgr: the one-recipient message preempts the list', async () => {
    const { order } = await listThenSmall('qmgr');
    assert.equal(order.length, 21);
    // It preempts as soon as it is active (a few deliveries in, on a loaded machine): far from last.
    assert.ok(smallAt(order) < 10, `the small message was delivery ${smallAt(order) + 1} of 21`);
  });

  test('oqmgr: mail is delivered, logged as postactor/oqmgr, first in first out: the small message waits for the whole list', async () => {
    const { order, server } = await listThenSmall('oqmgr');
    assert.equal(order.length, 21);
    assert.deepEqual(new Set(order.flatMap((m) => m.recipients)), new Set([...list, 'small@example.com']));
    assert.equal(smallAt(order), 20, `the small message was delivery ${smallAt(order) + 1} of 21`);
    const log = server.logLines();
    assert.ok(log.some((l) => /postactor\/oqmgr\[\d+\]: [0-9A-Za-z]+: from=<sender@example\.org>, size=\d+, nrcpt=1 \(queue active\)/.test(l)), 'qmgr lines are logged by postactor/oqmgr');
    assert.ok(!log.some((l) => /postactor\/qmgr\[/.test(l)));
  });

  test('oqmgr reads a message in slices of qmgr_message_recipient_limit × qmgr_fudge_factor %: the small message comes after the first slice', async () => {
    // Limit 40 at 50 %: slices of 20 recipients, 4 deliveries of 5; the next slice is read when
    // the first is done, so the small message (queued meanwhile) is delivery 5. At 100 % it would be 9.
    // (The sink's hold gives the small message 4 s, the first slice's 4 deliveries, to be active.)
    const rcpts = Array.from({ length: 100 }, (_, i) => `f${i}@example.com`);
    const { order } = await listThenSmall('oqmgr', {
      rcpts,
      mainCf: { qmgr_message_recipient_limit: '40', qmgr_fudge_factor: '50', smtp_destination_recipient_limit: '5' },
    });
    assert.equal(order.length, 21);
    assert.equal(new Set(order.flatMap((m) => m.recipients)).size, 101, 'each recipient delivered once');
    assert.equal(smallAt(order), 4, `the small message was delivery ${smallAt(order) + 1} of 21`);
  });

  test('postactor reload from qmgr to oqmgr: a new queue manager thread with the other scheduler, no mail lost', async () => {
    const sink = new SmtpSink({ keepMessages: true });
    sinks.push(sink);
    const master = (command: string) => defaultMasterCf(0).replace(/^127\.0\.0\.1:0 /m, '127.0.0.1:{{PORT}} ').replace('300 1 qmgr', `300 1 ${command}`);
    const server = await startServer({ sinkPort: await sink.listen(0), masterCf: master('qmgr') });
    servers.push(server);
    const r1 = await sendRaw(server.port, 'sender@example.org', ['before@example.com'], rfc822({ Subject: 'before' }, 'x\n'));
    assert.equal(r1.code, 250, r1.text);
    await server.waitForLog(/postactor\/qmgr\[\d+\]: \w+: removed/, 20_000);
    writeFileSync(join(server.dir, 'master.cf'), master('oqmgr').replaceAll('{{PORT}}', String(server.port)));
    await promisify(execFile)(NODE, [POSTACTOR_JS, '-c', server.dir, 'reload']);
    await server.waitForLog(/postactor\/master\[\d+\]: reload: queue manager qmgr replaced by oqmgr/, 20_000);
    const r2 = await sendRaw(server.port, 'sender@example.org', ['after@example.com'], rfc822({ Subject: 'after' }, 'x\n'));
    assert.equal(r2.code, 250, r2.text);
    await server.waitForLog(/postactor\/oqmgr\[\d+\]: \w+: removed/, 20_000);
    assert.deepEqual(sink.messages.flatMap((m) => m.recipients).sort(), ['after@example.com', 'before@example.com']);
  });
});
