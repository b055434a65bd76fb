/**
 * End to end, qmgr's destination concurrency feedback (Postfix's nqmgr, postfix-notes §3.4):
 * a next hop that refuses connections becomes a dead destination after one failed pseudo-cohort,
 * and the rest of its mail is deferred "delivery temporarily suspended" without new connection
 * attempts until postqueue -f forgets it; a next hop that accepts only 5 connections (421 above)
 * makes the window adapt, and every message is delivered.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink } from '../src/smtp/sink.js';
import { freePort, REPO_ROOT, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';

function postqueue(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(join(REPO_ROOT, 'bin', 'postqueue'), args, { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Sends `count` messages, `parallel` SMTP sessions at a time; returns the queue IDs. */
async function inject(port: number, count: number, parallel: number, tag: string): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const r = await sendRaw(port, 'sender@example.org', [`${tag}-${i}@example.com`], rfc822({ Subject: `${tag} ${i}`, 'Message-ID': `<${tag}-${i}@t>` }, 'feedback\n'));
      const m = /^2\.0\.0 Ok: queued as (\S+)$/.exec(r.text);
      assert.ok(r.code === 250 && m, r.text);
      ids.push(m[1]!);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return ids;
}

// Each test has its own server and next hop, and spends most of its time waiting for timers
// (backoff, queue runs, rate delays): two at a time, their deadlines sized for the neighbour.
describe('e2e qmgr concurrency feedback', { concurrency: 2 }, () => {
  const sinks: SmtpSink[] = [];
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.stop();
    for (const s of sinks) await s.close();
  });

  test('a next hop refusing connections is dead after one failed cohort: the rest is deferred "delivery temporarily suspended" (relay=none) without connection attempts; postqueue -f forgets it and everything is delivered', async () => {
    const port = await freePort(); // nothing listens: connection refused
    const server = await startServer({ sinkPort: port, mainCf: { minimal_backoff_time: '60s', maximal_backoff_time: '120s' } });
    servers.push(server);
    const ids = await inject(server.port, 30, 1, 'dead');
    await server.waitForLogCount(/status=deferred/, 30, 15_000);
    const lines = server.logLines();
    const refused = lines.filter((l) => /status=deferred \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: Connection refused\)$/.test(l));
    const suspended = lines.filter((l) => /, relay=none, .*status=deferred \(delivery temporarily suspended: connect to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: Connection refused\)$/.test(l));
    // Feedback 1 from window 5: cohorts 1/5 + 1/3 + 1/2 ≥ 1 after the third failed connection.
    assert.ok(refused.length >= 1 && refused.length <= 5, `connection attempts: ${refused.length}`);
    assert.equal(refused.length + suspended.length, 30, 'every message deferred once');
    console.log(`# refused next hop: ${refused.length} connection attempts, ${suspended.length} of 30 messages deferred "delivery temporarily suspended"`);
    for (const id of ids) await server.waitForLog(new RegExp(`${id}: .*status=deferred`), 5000);

    // The next hop comes up; the queue is not due for 60 s, but postqueue -f forgets the dead
    // destination and makes everything due.
    const sink = new SmtpSink({});
    sinks.push(sink);
    await sink.listen(port);
    const f = await postqueue(['-c', server.dir, '-f']);
    assert.equal(f.code, 0, f.stderr);
    await server.waitForLogCount(/status=sent/, 30, 20_000);
    assert.equal(sink.stats.messages, 30);
    assert.equal(server.logLines().filter((l) => l.includes('delivery temporarily suspended')).length, suspended.length, 'no suspension after the flush');
  });

  for (const [style, feedback] of [['feedback 1 (Postfix default)', '1'], ['feedback 1/concurrency', '1/concurrency']] as const) {
    test(`a next hop allowing 5 connections (421 above) with smtp_destination_concurrency_limit = 20, ${style}: the window adapts and all 100 messages are delivered`, async () => {
      const sink = new SmtpSink({ maxConnections: 5, dataDelayMs: 50 });
      sinks.push(sink);
      const sinkPort = await sink.listen(0);
      const server = await startServer({
        sinkPort,
        mainCf: {
          smtp_destination_concurrency_limit: '20',
          smtp_destination_concurrency_positive_feedback: feedback,
          smtp_destination_concurrency_negative_feedback: feedback,
          destination_concurrency_feedback_debug: 'yes',
          // The shortest backoff there is (whole seconds): a message deferred twice (a 421 twice)
          // waits no longer than one deferred once.
          minimal_backoff_time: '1s', maximal_backoff_time: '1s', queue_run_delay: '1s',
        },
      });
      servers.push(server);
      await inject(server.port, 100, 10, 'busy');
      await server.waitForLogCount(/status=sent/, 100, 60_000);
      const lines = server.logLines();
      const deferred = lines.filter((l) => l.includes('status=deferred')).length;
      const suspended = lines.filter((l) => l.includes('delivery temporarily suspended')).length;
      const after421 = lines.filter((l) => /status=deferred .*421/.test(l)).length;
      const windows = lines.map((l) => /: queue smtp:\S+: limit 20 window (\d+) /.exec(l)).filter((m) => m !== null).map((m) => Number(m[1]));
      assert.equal(sink.stats.messages, 100);
      assert.ok(windows.length > 0, 'destination_concurrency_feedback_debug logs the window');
      assert.ok(Math.max(...windows) <= 20, 'never above the limit');
      // The share Postfix's measurements call "mail deferred" (deferrals per message).
      console.log(`# ${style}: ${deferred} deferrals for 100 messages (${after421} after a 421, ${suspended} suspended); largest window ${Math.max(...windows)}; sink connections ${sink.stats.connections}`);
    });
  }

  test('a dead destination comes back by itself after minimal_backoff_time: the next queue run delivers', async () => {
    const port = await freePort();
    const server = await startServer({ sinkPort: port, mainCf: { minimal_backoff_time: '1s', maximal_backoff_time: '1s', queue_run_delay: '1s' } });
    servers.push(server);
    await inject(server.port, 8, 1, 'revive');
    await server.waitForLogCount(/status=deferred/, 8, 10_000);
    assert.ok(server.logLines().some((l) => l.includes('delivery temporarily suspended')));
    const sink = new SmtpSink({});
    sinks.push(sink);
    await sink.listen(port);
    await server.waitForLogCount(/status=sent/, 8, 15_000);
    assert.equal(sink.stats.messages, 8);
  });

  test('smtp_destination_rate_delay = 1s: one delivery at a time, at least 1 s apart', async () => {
    const sink = new SmtpSink({});
    sinks.push(sink);
    const times: number[] = [];
    sink.on('message', () => times.push(Date.now()));
    const server = await startServer({ sinkPort: await sink.listen(0), mainCf: { smtp_destination_rate_delay: '1s' } });
    servers.push(server);
    await inject(server.port, 3, 3, 'rate');
    await server.waitForLogCount(/status=sent/, 3, 15_000);
    assert.equal(times.length, 3);
    for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= 950, `gap ${times[i]! - times[i - 1]!} ms`);
  });

  test('smtp_transport_rate_delay = 1s: deliveries over the transport start at least 1 s apart, whatever the destination concurrency (smtp_recipient_limit is reported as not supported)', async () => {
    const sink = new SmtpSink({});
    sinks.push(sink);
    const times: number[] = [];
    sink.on('message', () => times.push(Date.now()));
    const server = await startServer({ sinkPort: await sink.listen(0), mainCf: { smtp_transport_rate_delay: '1s', smtp_recipient_limit: '500' } });
    servers.push(server);
    const t0 = Date.now();
    await inject(server.port, 4, 4, 'trate');
    await server.waitForLogCount(/status=sent/, 4, 20_000);
    assert.equal(times.length, 4);
    // The delay is between delivery starts, and a delivery's length varies (the pool's first
    // thread, a loaded machine), so gaps between arrivals at the sink may be shorter than a
    // second. What cannot be: the k-th arrival before the k-th start, which is at least k
    // delays after the injection began.
    times.sort((a, b) => a - b);
    for (let k = 1; k < times.length; k++) assert.ok(times[k]! - t0 >= k * 1000, `arrival ${k} ${times[k]! - t0} ms after the injection began`);
    assert.ok(!server.logLines().some((l) => /transport_rate_delay: not supported/.test(l)), 'no longer reported as not supported');
    assert.ok(server.logLines().some((l) => /warning: smtp_recipient_limit: not supported: /.test(l)), 'per-transport recipient pools fail loudly');
  });
});
