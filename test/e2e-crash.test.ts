/**
 * End to end, durability: "250 Ok: queued as" means the message is on disk. A server killed with
 * SIGKILL (no chance to flush anything) and restarted on the same queue delivers every message
 * it acknowledged. What is asserted:
 *   (a) next hop down during injection, kill -9 right after the last 250: every one of the 500
 *       messages is delivered EXACTLY once after the restart (nothing was delivered before the
 *       kill, so there is no room for duplicates);
 *   (b) next hop up, kill -9 at a random moment during injection (twice): every acknowledged
 *       message is delivered AT LEAST once. Duplicates are allowed (Postfix semantics: a crash
 *       between the next hop's 250 and the queue update delivers again); loss is not.
 *   (c) a short crash soak (bench/crash/soak.ts, which bench/crash/run.js runs with 200 rounds):
 *       10 SIGKILLs of the process group or of the main pid, some during start-up, the others
 *       under load, a restart after each; then a drain: nothing acknowledged is lost.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { crashSoak } from '../bench/crash/soak.js';
import { SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

const FAST_RETRY = { minimal_backoff_time: '1s', maximal_backoff_time: '2s', queue_run_delay: '1s' };

function idOf(m: SinkMessage): string {
  const match = /^X-Test-Id: (\S+)\r$/m.exec(m.data.toString('latin1'));
  assert.ok(match, 'sink message has X-Test-Id');
  return match[1]!;
}

/**
 * One session sending messages ids[0..] one after the other (MAIL, RCPT, DATA, message; each
 * reply awaited). Records the IDs that got "250 … queued as"; stops quietly when the server goes
 * away (or `stop()` says so).
 */
async function inject(port: number, ids: string[], acked: Set<string>, stop: () => boolean = () => false): Promise<void> {
  let smtp: SmtpDialogue;
  try {
    smtp = (await SmtpDialogue.connect(port, { timeoutMs: 10_000 })).smtp;
  } catch {
    return;
  }
  try {
    if ((await smtp.cmd('EHLO injector.test')).code !== 250) return;
    for (const id of ids) {
      if (stop() || smtp.closed) return;
      if ((await smtp.cmd(`MAIL FROM:<sender@example.org>`)).code !== 250) return;
      if ((await smtp.cmd(`RCPT TO:<${id}@example.com>`)).code !== 250) return;
      if ((await smtp.cmd('DATA')).code !== 354) return;
      smtp.write(`X-Test-Id: ${id}\r\nSubject: crash test ${id}\r\nMessage-ID: <${id}@injector.test>\r\n\r\nbody of ${id}\r\n.\r\n`);
      const r = await smtp.read();
      if (r.code === 250 && /^2\.0\.0 Ok: queued as /.test(r.text)) acked.add(id);
      else return;
    }
    await smtp.cmd('QUIT').catch(() => undefined);
  } catch {
    // The server died under us: whatever was not acknowledged may be lost.
  } finally {
    smtp.close();
  }
}

describe('e2e crash (kill -9) durability', () => {
  const cleanup: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  test('(a) 500 messages acknowledged with the next hop down survive kill -9 right after the last 250 and are each delivered exactly once after the restart', async () => {
    const server = await startServer({ mainCf: FAST_RETRY }); // relayhost: a closed port
    cleanup.push(() => server.stop());
    const SESSIONS = 5;
    const PER = 100;
    const acked = new Set<string>();
    await Promise.all(Array.from({ length: SESSIONS }, (_, s) =>
      inject(server.port, Array.from({ length: PER }, (_, k) => `a-${s}-${k}`), acked)));
    assert.equal(acked.size, SESSIONS * PER, 'every message got its 250');
    await server.kill('SIGKILL');
    assert.equal(server.child?.signalCode, 'SIGKILL');

    const sink = new SmtpSink({ keepMessages: true });
    cleanup.push(() => sink.close());
    await sink.listen(server.sinkPort);
    await server.restart();
    await sink.waitFor((st) => st.messages >= SESSIONS * PER, 60_000);
    // Let any duplicate arrive before counting.
    await new Promise((r) => setTimeout(r, 1000));
    const counts = new Map<string, number>();
    for (const m of sink.messages) counts.set(idOf(m), (counts.get(idOf(m)) ?? 0) + 1);
    for (const id of acked) assert.equal(counts.get(id), 1, `${id} delivered exactly once`);
    assert.equal(sink.messages.length, SESSIONS * PER);
    await server.stop();
  });

  test('(b) kill -9 at random moments during injection (twice): every message that got 250 is delivered at least once', async (t) => {
    const sink = new SmtpSink({ keepMessages: true });
    cleanup.push(() => sink.close());
    const sinkPort = await sink.listen(0);
    const server = await startServer({ sinkPort, mainCf: FAST_RETRY });
    cleanup.push(() => server.stop());
    const acked = new Set<string>();
    const SESSIONS = 4;
    for (let round = 0; round < 2; round++) {
      let killed = false;
      const delay = 300 + Math.floor(Math.random() * 1200);
      const senders = Promise.all(Array.from({ length: SESSIONS }, (_, s) =>
        inject(server.port, Array.from({ length: 2000 }, (_, k) => `b${round}-${s}-${k}`), acked, () => killed)));
      await new Promise((r) => setTimeout(r, delay));
      const before = acked.size;
      await server.kill('SIGKILL');
      killed = true;
      await senders;
      t.diagnostic(`round ${round}: SIGKILL after ${delay} ms; ${before} acknowledged before the kill, ${acked.size} in all`);
      await server.restart();
    }
    assert.ok(acked.size > 0, 'some messages were acknowledged before the kills');
    const delivered = () => {
      const ids = new Set<string>();
      for (const m of sink.messages) ids.add(idOf(m));
      return ids;
    };
    const deadline = Date.now() + 60_000;
    let missing: string[] = [];
    while (Date.now() < deadline) {
      const got = delivered();
      missing = [...acked].filter((id) => !got.has(id));
      if (missing.length === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(missing.slice(0, 20), [], `${missing.length} acknowledged message(s) never delivered`);
    const counts = new Map<string, number>();
    for (const m of sink.messages) counts.set(idOf(m), (counts.get(idOf(m)) ?? 0) + 1);
    const dups = [...counts.values()].filter((n) => n > 1).length;
    t.diagnostic(`${acked.size} acknowledged, ${counts.size} distinct delivered, ${dups} delivered more than once`);
    await server.stop();
  });

  test('(c) 10 random SIGKILLs (process group or main pid, some during start-up) under load: nothing acknowledged is lost', async (t) => {
    const seed = Date.now() >>> 0;
    const r = await crashSoak({
      rounds: 10, early: 0.3, minDelay: 0.2, maxDelay: 1.5, sessions: 4, size: 512,
      drainS: 20, deadline: Date.now() + 90_000, seed,
    }, (line) => t.diagnostic(line));
    t.diagnostic(`seed ${seed}: ${r.kills} kills (${r.groupKills} group, ${r.pidKills} pid, ${r.killsDuringStartUp} during start-up); ${r.acknowledged} acknowledged, ${r.deliveredDistinct} delivered, ${r.duplicates} duplicates`);
    assert.ok(r.kills >= 5, `at least 5 kills within the time bound (had ${r.kills})`);
    assert.ok(r.acknowledged > 0, 'some messages were acknowledged');
    assert.equal(r.unexpectedExits, 0, 'the server never exited on its own');
    assert.deepEqual(r.lostIds, [], `${r.lost} acknowledged message(s) never delivered (seed ${seed})`);
  });
});
