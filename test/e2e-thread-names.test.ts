/**
 * End to end, thread names (src/runtime/thread-name.ts): every actor thread names itself after
 * its master.cf command, so /proc/PID/task/TID/comm (ps -L, top -H, bench/relay's CPU per
 * thread group) says which daemon a thread runs: smtpd, qmgr, cleanup, and smtp for both the
 * smtp and relay services (the command, not the service name).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import nodemailer from 'nodemailer';
import { deliveredWithSubject, startServer } from './helpers/server.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { isWorkerThreadName } from '../src/runtime/thread-name.js';

function threadNames(pid: number): string[] {
  const names: string[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      names.push(readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim());
    } catch { /* ended meanwhile */ }
  }
  return names.sort();
}

test('actor threads are named after their command; Node\'s own threads keep their names', async (t) => {
  const sink = new SmtpSink({ keepMessages: true });
  const sinkPort = await sink.listen(0);
  const server = await startServer({
    sinkPort,
    masterCf: [
      '127.0.0.1:{{PORT}} inet n - n - 1 smtpd',
      'cleanup unix n - n - 1 cleanup',
      'qmgr unix n - n 300 1 qmgr',
      'smtp unix - - n - 1 smtp',
      'relay unix - - n - 1 smtp',
      'bounce unix - - n - 1 bounce',
      '',
    ].join('\n'),
  });
  t.after(async () => {
    await server.stop();
    await sink.close();
  });
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true });
  try {
    await transport.sendMail({ from: 'a@example.org', to: 'b@example.com', subject: 'names', text: 'x' });
  } finally {
    transport.close();
  }
  await deliveredWithSubject(sink, 'names');
  const names = threadNames(server.child!.pid!);
  const workers = names.filter(isWorkerThreadName);
  for (const name of ['smtpd', 'qmgr', 'cleanup', 'smtp']) assert.ok(workers.includes(name), `${name} among ${JSON.stringify(names)}`);
  assert.ok(!workers.includes('WorkerThread'), `every worker named: ${JSON.stringify(names)}`);
  assert.ok(names.includes('V8Worker') && !isWorkerThreadName('V8Worker'));
});
