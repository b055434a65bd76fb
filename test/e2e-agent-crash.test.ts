/**
 * End to end, a delivery agent that crashes: the worker thread dies in the middle of a delivery
 * (test/fixtures/e2e/crash-agent.mjs, a custom agent named by absolute path in master.cf). The
 * delivery is deferred, not lost; the server stays up; the retry delivers.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink } from '../src/smtp/sink.js';
import { REPO_ROOT, probe220, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';

const AGENT = join(REPO_ROOT, 'test', 'fixtures', 'e2e', 'crash-agent.mjs');

describe('e2e delivery agent crash', () => {
  let sink: SmtpSink;
  let server: TestServer;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    server = await startServer({
      sinkPort,
      mainCf: { default_transport: 'crashy', minimal_backoff_time: '1s', maximal_backoff_time: '2s', queue_run_delay: '1s', transport_retry_time: '1s' }, // a crash makes the transport unavailable for transport_retry_time
      masterCfExtra: `crashy unix - - n - 1 ${AGENT}`,
      env: (dir) => ({ E2E_CRASH_DIR: dir }), // the agent's marker files go in the server's temp dir
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('a crash of the agent\'s worker thread defers the delivery ("unknown mail transport error"), the server stays up, and the retry delivers', async () => {
    const reply = await sendRaw(server.port, 'sender@example.org', ['victim@example.com'], rfc822({ Subject: 'crash me', 'X-Test-Id': 'agent-crash-1' }, 'body\n'));
    assert.equal(reply.code, 250, reply.text);
    const id = /queued as (\S+)$/.exec(reply.text)![1]!;

    const deferred = await server.waitForLog(new RegExp(`${id}: to=<victim@example\\.com>, .*status=deferred`), 10_000);
    assert.match(deferred, new RegExp(` postactor/qmgr\\[\\d+\\]: ${id}: to=<victim@example\\.com>, relay=none, delay=[\\d.]+, delays=[\\d./]+, dsn=4\\.3\\.0, status=deferred \\(unknown mail transport error\\)$`));
    assert.ok(existsSync(join(server.dir, `crashed-${id}`)), 'the agent crashed on this message');
    // master noticed the dead thread (Postfix: "process … exit status 1"), qmgr said which agent failed.
    await server.waitForLog(/postactor\/master\[\d+\]: warning: process crashy \(thread\) exit status 1: .*boom/, 5000);
    await server.waitForLog(new RegExp(`warning: ${id}: delivery agent crashy failed: `), 5000);

    // Still up: the server answers, its process is alive.
    assert.ok(await probe220(server.port), 'smtpd still answers 220');
    assert.equal(server.child?.exitCode, null);

    await sink.waitFor((st) => st.messages >= 1, 15_000);
    assert.match(sink.messages[0]!.data.toString('latin1'), /^X-Test-Id: agent-crash-1\r$/m);
    await server.waitForLog(new RegExp(`${id}: to=<victim@example\\.com>, .*status=sent`), 5000);
    await server.waitForLog(new RegExp(`${id}: removed$`), 5000);
    assert.equal(sink.stats.messages, 1, 'delivered once');
  });
});
