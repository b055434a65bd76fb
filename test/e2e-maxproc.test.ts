import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { startServer, type TestServer } from './helpers/server.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { isWorkerThreadName } from '../src/runtime/thread-name.js';
import nodemailer from 'nodemailer';

/** Worker threads of a process and their CPU ticks, from /proc (by name: src/runtime/thread-name.ts). */
function workerThreads(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      if (!isWorkerThreadName(readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim())) continue;
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid, Number(fields[11]) + Number(fields[12]));
    } catch { /* the thread ended meanwhile */ }
  }
  return out;
}

function masterCf(smtpd: number, cleanup: number, smtp: number): string {
  return [
    `127.0.0.1:{{PORT}} inet n - n - ${smtpd} smtpd`,
    `cleanup unix n - n - ${cleanup} cleanup`,
    'qmgr unix n - n 300 1 qmgr',
    `smtp unix - - n - ${smtp} smtp`,
    'relay unix - - n - 1 smtp',
    'bounce unix - - n - 1 bounce',
    '',
  ].join('\n');
}

async function send(server: TestServer, count: number): Promise<void> {
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true });
    jobs.push(t.sendMail({ from: 'a@example.org', to: 'b@example.com', subject: `m${i}`, text: 'x' }).finally(() => t.close()));
  }
  await Promise.all(jobs);
}

test('maxproc is the most worker threads of a service: pools start them on demand, and they share the work', async (t) => {
  const sink = new SmtpSink();
  const sinkPort = await sink.listen(0);
  t.after(() => sink.close());
  const counts: number[] = [];
  for (const [smtpd, cleanup, smtp] of [[1, 1, 1], [3, 2, 2]] as const) {
    const server = await startServer({ sinkPort, masterCf: masterCf(smtpd, cleanup, smtp) });
    try {
      const pid = server.child!.pid!;
      const before = workerThreads(pid);
      // Idle: one smtpd thread (the others start when it is busy: actors/master/smtpd-demand.ts)
      // + qmgr + cleanup's one warm thread; smtp, relay and bounce start on demand.
      assert.equal(before.size, 3, `idle threads for maxproc ${smtpd}/${cleanup}/${smtp}`);
      counts.push(before.size);
      const delivered = sink.stats.messages;
      await send(server, 60);
      await sink.waitFor((s) => s.messages >= delivered + 60, 20_000);
      const after = workerThreads(pid);
      // smtp started for the deliveries; nothing beyond maxproc (relay and bounce had no work).
      assert.ok(after.size > before.size && after.size <= smtpd + cleanup + 1 + smtp, `${after.size} threads under load for maxproc ${smtpd}/${cleanup}/${smtp}`);
      const busy = [...after].filter(([tid, ticks]) => ticks > (before.get(tid) ?? 0)).length;
      // At least one thread per busy service worked (smtpd, cleanup, qmgr, smtp).
      assert.ok(busy >= 4, `${busy} worker threads did work`);
    } finally {
      await server.stop();
    }
  }
  assert.equal(counts[1]! - counts[0]!, 0, 'an idle server runs one smtpd thread whatever maxproc says');
});
