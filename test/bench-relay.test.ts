/**
 * The relay benchmark's own plumbing, without any MTA: the load generator pointed straight
 * at a counting sink. (Benchmarks of Postactor and Postfix are not tests; see bench/README.md.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink } from '../src/smtp/sink.js';
import { LoadGenerator, buildPayload } from '../bench/relay/generator.js';
import { SinkThread } from '../bench/relay/sink.js';

test('generator → sink: 100 messages over 5 sessions, a new connection each', async () => {
  const sink = new SmtpSink();
  const port = await sink.listen(0);
  try {
    const g = new LoadGenerator({ host: '127.0.0.1', port, sessions: 5, messages: 100, size: 1024, timeLimitMs: 20_000 });
    const r = await g.run();
    assert.equal(r.accepted, 100, `errors: ${r.errors.join('; ')}`);
    assert.equal(r.failed, 0);
    assert.equal(r.unfinished, 0);
    assert.equal(r.notStarted, 0);
    assert.equal(r.connections, 100);
    assert.equal(r.timedOut, false);
    await sink.waitFor((s) => s.recipients >= 100, 5000);
    assert.equal(sink.stats.messages, 100);
    assert.equal(sink.stats.recipients, 100);
    assert.equal(sink.stats.connections, 100);
    // The body is exactly `size` bytes; the sink counts headers + body.
    assert.ok(sink.stats.bytes >= 100 * 1024, `bytes ${sink.stats.bytes}`);
    // Latency: one sample per accepted message, ordered, positive, below the run's length.
    const l = r.latency;
    assert.equal(l.count, 100);
    assert.ok(l.min > 0 && l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, JSON.stringify(l));
    assert.ok(l.max <= r.elapsedMs + 1, `max ${l.max} ms > elapsed ${r.elapsedMs} ms`);
    assert.ok(r.acceptedPerSec > 0 && Number.isFinite(r.acceptedPerSec));
  } finally {
    await sink.close();
  }
});

test('generator: the accept latency of each timeline window (end of DATA → 250 p99), then a new window', async () => {
  const sink = new SmtpSink({ dataDelayMs: 40 });
  const port = await sink.listen(0);
  try {
    const g = new LoadGenerator({ host: '127.0.0.1', port, sessions: 2, messages: 6, timeLimitMs: 20_000 });
    assert.equal(g.takeDotWindow(), null, 'no reply yet');
    const r = await g.run();
    assert.equal(r.accepted, 6, `errors: ${r.errors.join('; ')}`);
    const p99 = g.takeDotWindow();
    assert.ok(p99 !== null && p99 >= 40 && p99 <= r.dotLatency.max + 0.01, `window p99 ${p99}, run max ${r.dotLatency.max}`);
    assert.equal(g.takeDotWindow(), null, 'the window starts again empty');
  } finally {
    await sink.close();
  }
});

test('generator: reuse, several recipients, unique addresses; sink in its worker thread', async () => {
  const sink = await SinkThread.start(0);
  try {
    const g = new LoadGenerator({
      host: '127.0.0.1', port: sink.port, sessions: 3, messages: 30, recipients: 2, unique: true, reuse: true, timeLimitMs: 20_000,
    });
    const r = await g.run();
    assert.equal(r.accepted, 30, `errors: ${r.errors.join('; ')}`);
    assert.equal(r.connections, 3);
    const deadline = Date.now() + 5000;
    while (sink.snapshot().recipients < 60 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    const s = sink.snapshot();
    assert.equal(s.messages, 30);
    assert.equal(s.recipients, 60);
    assert.ok(s.lastMessageAt >= r.firstConnectAt && s.lastMessageAt <= Date.now() + 1, JSON.stringify(s));
  } finally {
    await sink.close();
  }
});

test('sink thread: reset (bench --warmup) counts from zero again, stamps too', async () => {
  const sink = await SinkThread.start(0);
  try {
    const send = (messages: number) => new LoadGenerator({ host: '127.0.0.1', port: sink.port, sessions: 2, messages, timeLimitMs: 20_000 }).run();
    const waitFor = async (n: number) => {
      const deadline = Date.now() + 5000;
      while (sink.snapshot().recipients < n && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    };
    assert.equal((await send(7)).accepted, 7);
    await waitFor(7);
    const before = sink.snapshot();
    assert.equal(before.messages, 7);
    await sink.reset();
    const zero = sink.snapshot();
    assert.deepEqual([zero.connections, zero.messages, zero.recipients, zero.bytes, zero.lastMessageAt, zero.firstMessageAt, zero.firstConnectAt], [0, 0, 0, 0, 0, 0, 0]);
    const r = await send(5);
    assert.equal(r.accepted, 5);
    await waitFor(5);
    const after = sink.snapshot();
    assert.deepEqual([after.connections, after.messages, after.recipients], [5, 5, 5]);
    assert.ok(after.bytes > 0 && after.bytes < before.bytes, `${after.bytes} vs ${before.bytes}`);
    assert.ok(after.firstMessageAt > before.lastMessageAt, JSON.stringify({ before, after }));
  } finally {
    await sink.close();
  }
});

test('generator: refused connections and a rejecting server count as failures, bounded', async () => {
  const sink = new SmtpSink({ rcptReply: () => '554 5.7.1 no thanks' });
  const port = await sink.listen(0);
  try {
    const r = await new LoadGenerator({ host: '127.0.0.1', port, sessions: 2, messages: 6, timeLimitMs: 10_000 }).run();
    assert.equal(r.accepted, 0);
    assert.equal(r.failed, 6);
    assert.match(r.errors[0] ?? '', /^RCPT: 554 5\.7\.1 no thanks/);
  } finally {
    await sink.close();
  }
  // Nothing listens on the port any more.
  const r = await new LoadGenerator({ host: '127.0.0.1', port, sessions: 2, messages: 4, timeLimitMs: 10_000 }).run();
  assert.equal(r.failed, 4);
  assert.match(r.errors[0] ?? '', /^connect: ECONNREFUSED/);
});

test('payload: exact body size, CRLF lines, dot-terminated, no leading dots', () => {
  for (const size of [0, 1, 2, 3, 80, 81, 1024, 10_000]) {
    const p = buildPayload({ from: 'a@b', to: 'c@d', size }).toString('latin1');
    assert.ok(p.endsWith('\r\n.\r\n'));
    const body = p.slice(p.indexOf('\r\n\r\n') + 4, -3);
    assert.ok(Math.abs(body.length - size) <= 2, `size ${size}: body ${body.length}`);
    assert.ok(!/(^|\n)\./.test(body));
  }
});
