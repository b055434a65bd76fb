/**
 * A damaged queue store met by the real server and commands:
 *   - one message's bytes changed on disk: the smtp agent finds the checksum mismatch as it
 *     reads the content (src/delivery/content.ts) and sends nothing; qmgr saves the message to
 *     the corrupt queue with Postfix's warning; the others go out; postcat says it is damaged;
 *   - one envelope that does not decode: qmgr saves that message to corrupt as it meets it, and
 *     delivers the others; mailq leaves it out;
 *   - the store truncated to half: the server, mailq, postqueue -p and postsuper -s stop with a
 *     fatal message naming the store and what to do (no SIGBUS); postsuper --recover rebuilds it
 *     and everything works again;
 *   - 64 KiB of random bytes in the middle: postsuper --recover copies what is readable, and
 *     the server starts on the result.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newQueueId } from '../src/queue/qid.js';
import { open as openLmdb } from 'lmdb';
import { QueueStore } from '../src/queue/store.js';
import { STORE_FILE } from '../src/queue/integrity.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { queuedId, REPO_ROOT, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string }

function run(name: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(join(REPO_ROOT, 'bin', name), args, { env: { ...process.env, TZ: 'UTC' }, timeout: 60_000 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; signal?: string }) | null;
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, signal: e?.signal ?? null, stdout, stderr });
    });
  });
}

const DAMAGED = /fatal: queue store \S+\/spool\/queue\.lmdb is damaged: .*run "postsuper --recover"/;

describe('a damaged queue store', () => {
  let server: TestServer;
  let sink: SmtpSink;
  const ids: string[] = [];

  before(async () => {
    server = await startServer({ mainCf: { queue_run_delay: '1s', minimal_backoff_time: '1s', maximal_backoff_time: '2s' } });
    // Next hop down: the messages stay queued (deferred).
    for (let i = 0; i < 6; i++) {
      const r = await sendRaw(server.port, 'a@client.test', ['b@example.com'], rfc822({ Subject: `damage ${i}` }, `marker-${i}-abcdefgh\n`));
      ids.push(queuedId(r));
    }
    await server.waitForLogCount(/status=deferred/, 6, 30_000);
    await server.kill('SIGTERM');
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  test('changed bytes: the message goes to corrupt, never out; the rest is delivered; postcat warns', async () => {
    const file = join(server.queueDir, STORE_FILE);
    const bytes = readFileSync(file);
    // LMDB copies a page on write, so the file may hold stale copies of the message's page
    // beside the live one; which comes first in the file depends on the layout. Change them all.
    let copies = 0;
    for (let at = bytes.indexOf('marker-0-abcdefgh'); at >= 0; at = bytes.indexOf('marker-0-abcdefgh', at + 1)) {
      bytes[at + 9] = 'X'.charCodeAt(0);
      copies++;
    }
    assert.ok(copies > 0);
    writeFileSync(file, bytes);
    sink = new SmtpSink({ keepMessages: true });
    await sink.listen(server.sinkPort);
    await server.restart();
    await server.waitForLog(new RegExp(`qmgr.*: warning: saving corrupt file "${ids[0]}" from queue "active" to queue "corrupt"`), 90_000);
    await server.waitForLogCount(/status=sent/, 5, 90_000);
    const delivered = sink.messages.map((m) => m.data.toString('latin1'));
    assert.ok(delivered.every((d) => !d.includes('marker-0-')), 'the damaged message was not delivered');
    assert.equal(delivered.length, 5);
    const cat = await run('postcat', ['-c', server.dir, '-q', ids[0]!]);
    assert.equal(cat.code, 1);
    assert.match(cat.stderr, new RegExp(`postcat: warning: ${ids[0]}: message content does not match its checksum`));
    await server.kill('SIGTERM');
  });

  test('an envelope that does not decode: qmgr saves the message to corrupt with Postfix\'s warning, sends nothing of it, delivers the rest; mailq leaves it out', async () => {
    const store = QueueStore.open(server.queueDir);
    const enqueue = async (marker: string): Promise<string> => {
      const queueId = newQueueId();
      const content = Buffer.from(`Subject: ${marker}\r\n\r\n${marker}-body\r\n`);
      await store.enqueue({ queueId, queue: 'deferred', arrival: Date.now(), sender: 'a@client.test', recipients: [{ address: 'b@example.com', done: false }], size: content.length, nextAttempt: Date.now(), attempts: 1 }, content);
      return queueId;
    };
    const bad = await enqueue('envelope-bad');
    const good = await enqueue('envelope-good');
    const deleted = await enqueue('envelope-deleted');
    const held = await enqueue('envelope-held');
    await store.close();
    // As damage on disk would leave it: bytes no msgpack decoder takes.
    const env = openLmdb({ path: join(server.queueDir, STORE_FILE), maxDbs: 16 });
    for (const id of [bad, deleted, held]) await env.openDB<Buffer, string>('meta', { encoding: 'binary' }).put(id, Buffer.from([0xc1, 0xc1, 0xc1]));
    await env.close();
    const listed = await run('mailq', ['-c', server.dir]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok(listed.stdout.includes(good) && !listed.stdout.includes(bad), listed.stdout);
    // postsuper -d removes such a message unread (as Postfix unlinks a queue file); -h cannot hold
    // an envelope nobody can read, so it sets the message aside in corrupt and says so.
    const del = await run('postsuper', ['-c', server.dir, '-d', deleted]);
    assert.equal(del.code, 0, del.stderr);
    assert.match(del.stderr, new RegExp(`^postsuper: ${deleted}: removed$`, 'm'));
    assert.match(del.stderr, /^postsuper: Deleted: 1 message$/m);
    const hold = await run('postsuper', ['-c', server.dir, '-h', held]);
    assert.equal(hold.code, 0, hold.stderr);
    assert.match(hold.stderr, new RegExp(`^postsuper: warning: ${held}: envelope does not decode -- moved to the corrupt queue$`, 'm'));
    assert.match(hold.stderr, /^postsuper: Placed on hold: 0 messages$/m);
    const gone = await run('postcat', ['-c', server.dir, '-q', deleted]);
    assert.notEqual(gone.code, 0);
    const check = await run('postactor', ['-c', server.dir, 'check']);
    assert.ok(!check.stderr.includes(deleted) && !check.stderr.includes(held), check.stderr);
    assert.match(check.stderr, new RegExp(`postactor: warning: \\S+: ${bad}: envelope does not decode \\(repair: postsuper -s\\)`));
    const sent = sink.messages.length;
    await server.restart();
    await server.waitForLog(new RegExp(`qmgr.*: warning: ${bad}: damaged envelope: `), 60_000);
    await server.waitForLog(new RegExp(`qmgr.*: warning: saving corrupt file "${bad}" from queue "deferred" to queue "corrupt"`), 60_000);
    await server.waitForLog(new RegExp(`${good}: to=<b@example.com>.*status=sent`), 60_000);
    await new Promise((r) => setTimeout(r, 2500)); // two more queue runs: the damaged one is not taken again
    assert.equal(server.logLines().filter((l) => l.includes(`saving corrupt file "${bad}"`)).length, 1);
    assert.ok(!server.logLines().some((l) => /\/(qmgr|smtp)\[/.test(l) && (l.includes(deleted) || l.includes(held))), 'qmgr never met the messages postsuper removed or set aside');
    assert.ok(server.logLines().some((l) => /\/postsuper\[\d+\]: /.test(l) && l.endsWith(`${deleted}: removed`)), 'postsuper logs the removal');
    const delivered = sink.messages.slice(sent).map((m) => m.data.toString('latin1'));
    assert.equal(delivered.length, 1);
    assert.ok(delivered[0]!.includes('envelope-good-body') && !delivered.some((d) => d.includes('envelope-bad')));
    await server.kill('SIGTERM');
    const cat = await run('postcat', ['-c', server.dir, '-q', bad]);
    assert.match(cat.stdout, /envelope-bad-body/, 'the content is kept for postcat');
  });

  test('truncated to half: a fatal message from every command and the server; postsuper --recover repairs', async () => {
    // More mail, so the file has pages worth losing.
    const store = QueueStore.open(server.queueDir);
    for (let i = 0; i < 200; i++) {
      const queueId = newQueueId();
      const content = Buffer.from(`Subject: bulk ${i}\r\n\r\n${'y'.repeat(3000)}\r\n`);
      await store.enqueue({ queueId, queue: 'deferred', arrival: Date.now(), sender: 'a@client.test', recipients: [{ address: 'b@example.com', done: false }], size: content.length, nextAttempt: Date.now() + 3_600_000, attempts: 1 }, content);
    }
    await store.close();
    const file = join(server.queueDir, STORE_FILE);
    truncateSync(file, Math.floor(statSync(file).size / 2));
    for (const [name, args] of [['mailq', []], ['postqueue', ['-p']], ['postsuper', ['-s']]] as const) {
      const r = await run(name, ['-c', server.dir, ...args]);
      assert.equal(r.signal, null, `${name} died by a signal`);
      assert.equal(r.code, 1, `${name}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^${name}: ${DAMAGED.source}`, 'm'));
    }
    await assert.rejects(server.restart(), (err: Error) => DAMAGED.test(err.message) && /exited during start-up \(1\)/.test(err.message));
    const rec = await run('postsuper', ['-c', server.dir, '--recover']);
    assert.equal(rec.code, 0, rec.stderr);
    assert.match(rec.stderr, /^postsuper: Recovered: \d+ messages? /m);
    // The tree's newest pages (its root) are gone: the messages come back from the pages left, on hold.
    const held = /^postsuper: Placed on hold: (\d+) messages? found only by scanning/m.exec(rec.stderr);
    assert.ok(held && Number(held[1]) > 0, rec.stderr);
    assert.match(rec.stderr, /^postsuper: The damaged store is kept as \S+queue\.lmdb\.damaged-\d{8}T\d{6}$/m);
    const q = await run('mailq', ['-c', server.dir]);
    assert.equal(q.code, 0, q.stderr);
    const s = await run('postsuper', ['-c', server.dir, '-s']);
    assert.equal(s.code, 0, s.stderr);
    await server.restart();
    await server.kill('SIGTERM');
  });

  test('64 KiB of random bytes in the middle: recovery copies what is readable and the server starts', async () => {
    const file = join(server.queueDir, STORE_FILE);
    const bytes = readFileSync(file);
    const middle = Math.floor(bytes.length / 2) - 32768;
    let x = 4242;
    for (let i = 0; i < 65536; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      bytes[Math.max(8192, middle) + i] = x >>> 24;
    }
    writeFileSync(file, bytes);
    // With the server stopped mailq reads every tree page first: a damaged one is a fatal
    // message (whether the bytes hit a tree page or only message contents depends on the layout).
    const before = await run('mailq', ['-c', server.dir]);
    assert.equal(before.signal, null, 'mailq died by a signal');
    if (before.code !== 0) assert.match(before.stderr, new RegExp(`^mailq: ${DAMAGED.source}`, 'm'));
    const rec = await run('postsuper', ['-c', server.dir, '--recover']);
    assert.equal(rec.signal, null);
    assert.equal(rec.code, 0, rec.stderr);
    assert.match(rec.stderr, /^postsuper: Set aside in the corrupt queue: /m);
    const q = await run('mailq', ['-c', server.dir]);
    assert.equal(q.code, 0, q.stderr);
    await server.restart();
  });
});
