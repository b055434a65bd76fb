/**
 * pickup on demand: a running server has no pickup thread until maildrop/ gets a file
 * (actors/master/maildrop-watch.ts); the submission starts one, which delivers it, tells master
 * it is idle after max_idle and is stopped; the next submission starts it again. A file left in
 * maildrop while the server was down is picked up at start. /health counts an idle pickup as up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliveredWithSubject, freePort, REPO_ROOT, startServer } from './helpers/server.js';
import { SmtpSink } from '../src/smtp/sink.js';

const SENDMAIL = join(REPO_ROOT, 'bin', 'sendmail');

function sendmail(configDir: string, subject: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(SENDMAIL, ['-C', configDir, '-f', 'a@example.org', 'b@example.com'], { cwd: REPO_ROOT, stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    c.on('error', reject);
    c.on('close', (status) => (status === 0 ? resolve() : reject(new Error(`sendmail exit ${status}: ${stderr}`))));
    c.stdin.end(`Subject: ${subject}\n\nbody\n`);
  });
}

/** Threads of pid named pickup (src/runtime/thread-name.ts). */
function pickupThreads(pid: number): number {
  return readdirSync(`/proc/${pid}/task`).filter((tid) => {
    try {
      return readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() === 'pickup';
    } catch {
      return false;
    }
  }).length;
}

async function waitForPickup(pid: number, n: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (pickupThreads(pid) !== n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return pickupThreads(pid);
}

test('pickup has no thread while maildrop is empty, starts for a submission, and ends after max_idle', async (t) => {
  const sink = new SmtpSink({ keepMessages: true });
  const sinkPort = await sink.listen(0);
  const metricsPort = await freePort();
  const server = await startServer({
    sinkPort,
    mainCf: { max_idle: '2s', metrics_listen: `127.0.0.1:${metricsPort}` },
    masterCfExtra: 'pickup unix n - n 60 1 pickup',
  });
  t.after(async () => {
    await server.stop();
    await sink.close();
  });
  const pid = server.child!.pid!;
  assert.equal(pickupThreads(pid), 0, 'no pickup thread at start (maildrop is empty)');
  const health = await fetch(`http://127.0.0.1:${metricsPort}/health`);
  assert.equal(health.status, 200, 'an idle pickup is not a service down');

  await sendmail(server.dir, 'first');
  await deliveredWithSubject(sink, 'first');
  assert.equal(await waitForPickup(pid, 0, 20_000), 0, 'pickup ended after max_idle');
  await server.waitForLog(/pickup.*: uid=\d+ from=<a@example\.org>/, 1000);

  await sendmail(server.dir, 'second');
  await deliveredWithSubject(sink, 'second');
  assert.equal(sink.messages.length, 2, 'each submission delivered once');
  assert.doesNotMatch(server.logLines().join('\n'), /process pickup .* exit status/, 'an idle pickup is stopped, not a crash');

  // Submitted while the server is down: picked up at start.
  await server.kill('SIGTERM');
  await sendmail(server.dir, 'third');
  await server.restart();
  await deliveredWithSubject(sink, 'third');
  assert.equal(sink.messages.length, 3);
});
