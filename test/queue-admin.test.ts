/**
 * The queue admin commands, pinned to Postfix's behaviour: mailq / postqueue -p layout and
 * postqueue -j fields on a store filled directly, postsuper on a stopped server (store changed
 * directly) and against a running server whose next hop is slow (qmgr changes active messages
 * once their deliveries in flight are back), postcat's sections, and usage errors.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueueStore } from '../src/queue/store.js';
import { newQueueId } from '../src/queue/qid.js';
import type { MessageMeta, RecipientRecord } from '../src/queue/types.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { queuedId, REPO_ROOT, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';

interface Run { code: number; stdout: string; stderr: string }

/** Runs bin/NAME (the wrapper on the pinned runtime) in UTC. */
function run(name: string, args: string[], input?: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(join(REPO_ROOT, 'bin', name), args, { env: { ...process.env, TZ: 'UTC', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin!.on('error', () => undefined); // a command that exits before reading: no EPIPE
    if (input !== undefined) child.stdin!.end(input);
    else child.stdin!.end();
  });
}

const ARRIVAL = Date.UTC(2026, 10, 25, 1, 38, 37); // Wed Nov 25 01:38:37 2026 (UTC)
const CONTENT = 'From: alice@example.org\r\nSubject: queued\r\n  folded\r\n\r\nfirst body line\r\n\r\nlast\r\n';

function rcpt(address: string, extra: Partial<RecipientRecord> = {}): RecipientRecord {
  return { address, done: false, ...extra };
}

/** A stopped "server": a config directory whose queue the test fills directly. */
function stoppedConfig(extraMain = ''): { dir: string; spool: string } {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-qadmin-'));
  const spool = join(dir, 'spool');
  writeFileSync(join(dir, 'main.cf'), `queue_directory = ${spool}\nmaillog_file = ${join(dir, 'maillog')}\nmyhostname = mx.postactor.test\n${extraMain}`);
  writeFileSync(join(dir, 'master.cf'), 'qmgr unix n - n 300 1 qmgr\ncleanup unix n - n - 0 cleanup\nsmtp unix - - n - 1 smtp\n');
  return { dir, spool };
}

async function put(store: QueueStore, meta: Partial<MessageMeta> & Pick<MessageMeta, 'queue' | 'sender' | 'recipients'>): Promise<string> {
  const queueId = newQueueId();
  await store.enqueue({ queueId, arrival: ARRIVAL, size: 2048, nextAttempt: meta.queue === 'deferred' ? Date.now() + 3_600_000 : 0, attempts: 0, ...meta }, Buffer.from(CONTENT));
  return queueId;
}

describe('postqueue -p / mailq / postqueue -j (store filled directly, server down)', () => {
  // Postfix's short layout, as with Postfix's default enable_long_queue_ids = no.
  const { dir, spool } = stoppedConfig('enable_long_queue_ids = no\n');
  const ids: Record<string, string> = {};
  const REASON = 'connect to mx.example.com[192.0.2.1]:25: Connection refused';
  const LONG = 'host mx.example.net[192.0.2.7] said: 452 4.2.2 <dan@example.net>: Mailbox full, quota exceeded for this recipient (in reply to RCPT TO command)';

  before(async () => {
    const store = QueueStore.open(spool);
    ids['deferred'] = await put(store, {
      queue: 'deferred', sender: 'alice@example.org', size: 2100,
      recipients: [rcpt('done@example.org', { done: true }), rcpt('bob@example.com', { reason: REASON }), rcpt('carol@example.com', { reason: REASON }), rcpt('dan@example.net', { reason: LONG }), rcpt('erin@example.net')],
    });
    ids['hold'] = await put(store, { queue: 'hold', sender: '', size: 900, recipients: [rcpt('x@example.com')] });
    ids['active'] = await put(store, { queue: 'active', sender: 'a@example.org', size: 1, recipients: [rcpt('y@example.com')], forcedExpire: true });
    ids['incoming'] = await put(store, { queue: 'incoming', sender: 'i@example.org', size: 10, recipients: [rcpt('z@example.com')] });
    await store.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("mailq prints Postfix's layout: header, * ! # marks, reasons right-aligned at column 78, pending recipients only, trailer", async () => {
    const r = await run('mailq', ['-c', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await run('mailq', ['-C', `${dir}/main.cf`])).stdout, r.stdout, 'mailq -C main.cf lists the same queue');
    const pad = (s: string) => ' '.repeat(76 - s.length) + `(${s})`;
    const rc = (a: string) => ' '.repeat(41) + a;
    const expected = [
      '-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------',
      `${ids['active']}*#       1 Wed Nov 25 01:38:37  a@example.org`,
      rc('y@example.com'),
      '',
      `${ids['incoming']}      10 Wed Nov 25 01:38:37  i@example.org`,
      rc('z@example.com'),
      '',
      `${ids['deferred']}    2100 Wed Nov 25 01:38:37  alice@example.org`,
      pad(REASON),
      rc('bob@example.com'),
      rc('carol@example.com'),
      `(${LONG})`,
      rc('dan@example.net'),
      pad('reason unavailable'),
      rc('erin@example.net'),
      '',
      `${ids['hold']}!     900 Wed Nov 25 01:38:37  MAILER-DAEMON`,
      rc('x@example.com'),
      '',
      '-- 2 Kbytes in 4 Requests.', // (1 + 10 + 2100 + 900) / 1024, rounded down
      '',
    ].join('\n');
    assert.equal(r.stdout, expected);
    const p = await run('postqueue', ['-c', dir, '-p']);
    assert.equal(p.stdout, expected, 'postqueue -p is mailq');
  });

  test("Postactor's default (long queue IDs, enable_long_queue_ids = yes) selects the long layout", async () => {
    const long = stoppedConfig();
    try {
      const store = QueueStore.open(long.spool);
      const id = await put(store, { queue: 'deferred', sender: 's@example.org', size: 485, recipients: [rcpt('u@example.com')] });
      await store.close();
      const r = await run('postqueue', ['-c', long.dir, '-p']);
      assert.equal(r.stdout, [
        '----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------',
        `${id.padEnd(17)}      485 Wed Nov 25 01:38:37 s@example.org`,
        ' '.repeat(47) + 'u@example.com',
        '',
        '-- 0 Kbytes in 1 Request.',
        '',
      ].join('\n'));
    } finally {
      rmSync(long.dir, { recursive: true, force: true });
    }
  });

  test("postqueue -j prints one JSON object per message with showq_json's field names", async () => {
    const r = await run('postqueue', ['-c', dir, '-j']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[0]!, /^\{"queue_name": "active", "queue_id": "\w+", "arrival_time": \d+, /, 'Postfix spacing');
    const objs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(objs.map((o) => o['queue_name']), ['active', 'incoming', 'deferred', 'hold']);
    const d = objs[2]!;
    assert.deepEqual(Object.keys(d), ['queue_name', 'queue_id', 'arrival_time', 'message_size', 'forced_expire', 'sender', 'recipients']);
    assert.equal(d['queue_id'], ids['deferred']);
    assert.equal(d['arrival_time'], ARRIVAL / 1000);
    assert.equal(d['message_size'], 2100);
    assert.equal(d['forced_expire'], false);
    assert.deepEqual(d['recipients'], [
      { address: 'bob@example.com', delay_reason: REASON },
      { address: 'carol@example.com', delay_reason: REASON },
      { address: 'dan@example.net', delay_reason: LONG },
      { address: 'erin@example.net' },
    ]);
    assert.equal(objs[0]!['forced_expire'], true);
    assert.equal(objs[3]!['sender'], 'MAILER-DAEMON');
  });

  test('an empty queue: "Mail queue is empty"; -j prints nothing', async () => {
    const empty = stoppedConfig();
    try {
      assert.equal((await run('mailq', ['-c', empty.dir])).stdout, 'Mail queue is empty\n');
      // Postfix's mailq is sendmail -bp: it takes sendmail's -C, a directory or its main.cf.
      assert.equal((await run('mailq', ['-C', empty.dir])).stdout, 'Mail queue is empty\n');
      assert.equal((await run('mailq', [`-C${empty.dir}/main.cf`])).stdout, 'Mail queue is empty\n');
      assert.equal((await run('postqueue', ['-c', empty.dir, '-j'])).stdout, '');
    } finally {
      rmSync(empty.dir, { recursive: true, force: true });
    }
  });

  test('postqueue -f / -s / -i with the mail system down: "Cannot flush mail queue - mail system is down", exit 69', async () => {
    for (const args of [['-f'], ['-s', 'example.com'], ['-i', ids['deferred']!]]) {
      const r = await run('postqueue', ['-c', dir, ...args]);
      assert.equal(r.code, 69, args.join(' '));
      assert.equal(r.stderr, 'postqueue: fatal: Cannot flush mail queue - mail system is down\n');
    }
  });
});

describe('postsuper on a stopped server (the store is changed directly)', () => {
  const { dir, spool } = stoppedConfig();
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('-d ID: "postsuper: ID: removed", "postsuper: Deleted: 1 message", logged as postsuper', async () => {
    let store = QueueStore.open(spool);
    const a = await put(store, { queue: 'deferred', sender: 's@example.org', recipients: [rcpt('a@example.com')] });
    const b = await put(store, { queue: 'hold', sender: 's@example.org', recipients: [rcpt('b@example.com')] });
    await store.close();
    const r = await run('postsuper', ['-c', dir, '-d', a, '-d', newQueueId()]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `postsuper: ${a}: removed\npostsuper: Deleted: 1 message\n`);
    store = QueueStore.open(spool, { readOnly: true });
    assert.equal(store.get(a), undefined);
    assert.equal(store.get(b)?.queue, 'hold');
    await store.close();
    const log = (await import('node:fs')).readFileSync(join(dir, 'maillog'), 'utf8');
    assert.match(log, new RegExp(` postactor/postsuper\\[\\d+\\]: ${a}: removed\\n`));
  });

  test('a summary for every operation asked for, also with 0 messages, as Postfix 3.7 and later print them', async () => {
    const unknown = newQueueId();
    let r = await run('postsuper', ['-c', dir, '-d', unknown]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, 'postsuper: Deleted: 0 messages\n');
    r = await run('postsuper', ['-c', dir, '-h', unknown, '-r', unknown]);
    assert.equal(r.stderr, 'postsuper: Requeued: 0 messages\npostsuper: Placed on hold: 0 messages\n');
    r = await run('postsuper', ['-c', dir, '-f', unknown]);
    assert.equal(r.stderr, 'postsuper: Force-expired: 0 messages\npostsuper: Released from hold: 0 messages\n', '-f is expire and release');
    r = await run('postsuper', ['-c', dir, '-e', unknown, '-H', unknown]);
    assert.equal(r.stderr, 'postsuper: Force-expired: 0 messages\npostsuper: Released from hold: 0 messages\n');
    r = await run('postsuper', ['-c', dir, '-s']);
    assert.equal(r.stderr, '', 'no summary for an operation not asked for');
  });

  test('-h / -H / -r / -e and ALL with a queue name; "-" reads IDs from stdin; --json counts', async () => {
    let store = QueueStore.open(spool);
    const d1 = await put(store, { queue: 'deferred', sender: 's@example.org', recipients: [rcpt('a@example.com', { reason: 'x' })] });
    const d2 = await put(store, { queue: 'deferred', sender: 's@example.org', recipients: [rcpt('b@example.com')] });
    const i1 = await put(store, { queue: 'incoming', sender: 's@example.org', recipients: [rcpt('c@example.com')] });
    await store.close();

    let r = await run('postsuper', ['-c', dir, '-h', 'ALL', 'deferred']);
    assert.equal(r.stderr, `postsuper: ${d1}: placed on hold\npostsuper: ${d2}: placed on hold\npostsuper: Placed on hold: 2 messages\n`);
    r = await run('postsuper', ['-c', dir, '-h', i1, '-h', i1]);
    assert.equal(r.stderr, `postsuper: ${i1}: placed on hold\npostsuper: Placed on hold: 1 message\n`, 'a held message is not held twice');

    r = await run('postsuper', ['-c', dir, '--json', '-H', '-'], `${d1}\n${d2}\n`);
    assert.equal(r.stderr, `postsuper: ${d1}: released from hold\npostsuper: ${d2}: released from hold\npostsuper: Released from hold: 2 messages\n`);
    assert.deepEqual(JSON.parse(r.stdout), { deleted: 0, expired: 0, held: 0, released: 2, requeued: 0 });
    store = QueueStore.open(spool, { readOnly: true });
    assert.equal(store.get(d1)?.queue, 'deferred');
    assert.ok(store.get(d1)!.nextAttempt <= Date.now(), 'released mail is due now');
    await store.close();

    r = await run('postsuper', ['-c', dir, '-r', d1, '-e', d2]);
    assert.equal(r.stderr, `postsuper: ${d2}: expired\npostsuper: ${d1}: requeued\npostsuper: Requeued: 1 message\npostsuper: Force-expired: 1 message\n`);
    store = QueueStore.open(spool, { readOnly: true });
    assert.equal(store.get(d1)?.queue, 'incoming');
    assert.equal(store.get(d1)?.recipients[0]?.reason, undefined, 'requeue forgets the deferral reason');
    assert.equal(store.get(d2)?.forcedExpire, true);
    await store.close();
    assert.match((await run('mailq', ['-c', dir])).stdout, new RegExp(`^${d2}#  `, 'm'), 'mailq marks forced expiry with #');

    r = await run('postsuper', ['-c', dir, '-d', 'ALL']);
    assert.match(r.stderr, /postsuper: Deleted: 4 messages\n$/, 'these three and the held one of the previous test');
    assert.equal((await run('mailq', ['-c', dir])).stdout, 'Mail queue is empty\n');
  });

  test('-s: index entries without a message are removed, a message without content goes to corrupt', async () => {
    const store = QueueStore.open(spool);
    const id = await put(store, { queue: 'deferred', sender: 's@example.org', recipients: [rcpt('a@example.com')] });
    // Break it behind the store's back: drop the content.
    const root = (store as unknown as { body: { remove(k: string): Promise<boolean> } }).body;
    await root.remove(id);
    await store.close();
    const r = await run('postsuper', ['-c', dir, '-s', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`postsuper: warning: ${id}: message content is missing -- moved to the corrupt queue\\n`));
    assert.equal(JSON.parse(r.stdout).structure.corrupt, 1);
    const ro = QueueStore.open(spool, { readOnly: true });
    assert.equal(ro.get(id)?.queue, 'corrupt');
    await ro.close();
  });
});

describe('postcat -q', () => {
  const { dir, spool } = stoppedConfig();
  let id = '';
  before(async () => {
    const store = QueueStore.open(spool);
    id = await put(store, {
      queue: 'deferred', sender: 'alice@example.org', size: CONTENT.length,
      recipients: [rcpt('done@example.com', { done: true }), rcpt('bob@example.com', { orcpt: 'rfc822;bob@example.com', original: 'list@example.com' })],
      client: { name: 'client.example', addr: '192.0.2.9', port: 40000, helo: 'helo.example', protocol: 'ESMTP' },
    });
    await store.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("default: envelope records, message contents, Postfix's section markers", async () => {
    const r = await run('postcat', ['-c', dir, '-q', id]);
    assert.equal(r.code, 0, r.stderr);
    const n = (v: number) => String(v).padStart(15);
    // The message is written out as a Postfix queue file: the size record holds the text
    // records' size and where they start (the offset of the first text record).
    const size = /^message_size: (.*)$/m.exec(r.stdout)?.[1] ?? '';
    const [textSize, dataOffset] = size.trim().split(/ +/).map(Number);
    assert.ok(textSize! > 0 && dataOffset! > 100, size);
    assert.equal(r.stdout, [
      `*** ENVELOPE RECORDS deferred/${id} ***`,
      `message_size: ${[textSize!, dataOffset!, 2, 0, CONTENT.length, 0].map(n).join(' ')}`,
      'message_arrival_time: Wed Nov 25 01:38:37 2026',
      'create_time: Wed Nov 25 01:38:37 2026',
      'named_attribute: log_client_name=client.example',
      'named_attribute: log_client_address=192.0.2.9',
      'named_attribute: log_client_port=40000',
      'named_attribute: log_message_origin=client.example[192.0.2.9]',
      'named_attribute: log_helo_name=helo.example',
      'named_attribute: log_protocol_name=ESMTP',
      'sender: alice@example.org',
      // Postfix's cleanup writes an original recipient record before each recipient.
      'original_recipient: done@example.com',
      'done_recipient: done@example.com',
      'dsn_original_recipient: rfc822;bob@example.com',
      'original_recipient: list@example.com',
      'recipient: bob@example.com',
      `*** MESSAGE CONTENTS deferred/${id} ***`,
      'From: alice@example.org',
      'Subject: queued',
      '  folded',
      '',
      'first body line',
      '',
      'last',
      `*** HEADER EXTRACTED deferred/${id} ***`,
      `*** MESSAGE FILE END deferred/${id} ***`,
      '',
    ].join('\n'));
  });

  test('-h prints the header only, -b the body only (from the blank line), neither with markers', async () => {
    assert.equal((await run('postcat', ['-c', dir, '-hq', id])).stdout, 'From: alice@example.org\nSubject: queued\n  folded\n');
    assert.equal((await run('postcat', ['-c', dir, '-b', '-q', id])).stdout, '\nfirst body line\n\nlast\n');
    const e = (await run('postcat', ['-c', dir, '-e', '-q', id])).stdout;
    assert.match(e, /^\*\*\* ENVELOPE RECORDS /);
    assert.doesNotMatch(e, /Subject:/);
    assert.match(e, /\*\*\* MESSAGE CONTENTS .*\n\*\*\* HEADER EXTRACTED .*\n\*\*\* MESSAGE FILE END /);
  });

  test('an unknown queue ID: "postcat: fatal: open queue file ID: No such file or directory", exit 1', async () => {
    const other = newQueueId();
    const r = await run('postcat', ['-c', dir, '-q', other]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `postcat: fatal: open queue file ${other}: No such file or directory\n`);
  });
});

describe('usage', () => {
  test('bad flags: usage on stderr, exit 64; --help: usage on stdout, exit 0', async () => {
    for (const name of ['postqueue', 'mailq', 'postsuper', 'postcat']) {
      const bad = await run(name, ['-Z']);
      assert.equal(bad.code, 64, name);
      assert.match(bad.stderr, new RegExp(`usage: ${name} `), name);
      assert.equal(bad.stdout, '');
      const help = await run(name, ['--help']);
      assert.equal(help.code, 0, name);
      assert.match(help.stdout, new RegExp(`^usage: ${name} `), name);
    }
    assert.equal((await run('postqueue', ['-p', '-f'])).code, 64, 'one mode only');
    assert.equal((await run('postsuper', ['-d'])).code, 64, 'missing queue ID');
  });
});

describe('postsuper against a running server with deliveries in flight', () => {
  let sink: SmtpSink;
  let server: TestServer;
  const seen: { sender: string; recipients: string[]; at: number }[] = [];

  before(async () => {
    // Each delivery carries at most two recipients and waits 2.5 s for the end-of-data reply;
    // one at a time per destination, so a 3-recipient message has a delivery waiting behind the
    // first. (A recipient limit of 1 would make each recipient its own destination, as in
    // Postfix, and all three would go at once.)
    sink = new SmtpSink({ dataDelayMs: 2500 });
    sink.on('message', (m: { sender: string; recipients: string[] }) => seen.push({ sender: m.sender, recipients: m.recipients, at: Date.now() }));
    server = await startServer({
      sinkPort: await sink.listen(0),
      mainCf: {
        default_destination_concurrency_limit: '1',
        default_destination_recipient_limit: '2',
        queue_run_delay: '1s',
        minimal_backoff_time: '1s',
        maximal_backoff_time: '2s',
      },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  async function queueOne(tag: string): Promise<string> {
    const reply = await sendRaw(server.port, `${tag}@example.org`, [`${tag}1@example.com`, `${tag}2@example.com`, `${tag}3@example.com`], rfc822({ From: `${tag}@example.org`, Subject: tag }, 'hello\n'));
    const m = /queued as (\S+)$/.exec(reply.text);
    assert.ok(m, reply.line);
    await server.waitForLog(new RegExp(`${m[1]}: from=<${tag}@example\\.org>.*\\(queue active\\)`), 10_000);
    // The first delivery reaches the sink; it is then in flight for 2.5 s. (A wider window than the postsuper command needs to start on a loaded machine.)
    const deadline = Date.now() + 10_000;
    while (!seen.some((s) => s.sender === `${tag}@example.org`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return m[1]!;
  }

  const recipientsOf = (tag: string) => seen.filter((s) => s.sender === `${tag}@example.org`).flatMap((s) => s.recipients).sort();

  test('-d on an active message: it waits for the delivery in flight, removes the message once, and nothing more reaches the next hop', async () => {
    const id = await queueOne('del');
    const r = await run('postsuper', ['-c', server.dir, '-d', id]);
    const returned = Date.now();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `postsuper: ${id}: removed\npostsuper: Deleted: 1 message\n`);
    await new Promise((res) => setTimeout(res, 3000));
    // Only deliveries in flight before the delete (normally just the first; more if postsuper
    // started slowly) reached the next hop; nothing after postsuper returned.
    assert.ok(!seen.some((s) => s.sender === 'del@example.org' && s.at > returned), 'no delivery after the delete');
    assert.ok(recipientsOf('del').length < 3, 'the delete stopped deliveries that were waiting');
    const log = server.logLines();
    assert.equal(log.filter((l) => l.endsWith(`: ${id}: removed`)).length, 1, 'removed is logged once');
    assert.ok(log.some((l) => new RegExp(` postactor/postsuper\\[\\d+\\]: ${id}: removed$`).test(l)));
    assert.ok(!log.some((l) => l.includes(`${id}: to=<del3@`)));
    assert.doesNotMatch((await run('mailq', ['-c', server.dir])).stdout, new RegExp(id));
  });

  test('-h on an active message holds it (with ! in mailq) until -H releases it; then it is delivered', async () => {
    const id = await queueOne('hold');
    const r = await run('postsuper', ['-c', server.dir, '-h', id]);
    const returned = Date.now();
    assert.equal(r.stderr, `postsuper: ${id}: placed on hold\npostsuper: Placed on hold: 1 message\n`);
    const q = await run('mailq', ['-c', server.dir]);
    assert.match(q.stdout, new RegExp(`^${id}! `, 'm'));
    const delivered = recipientsOf('hold');
    for (const a of delivered) assert.doesNotMatch(q.stdout, new RegExp(a.replace(/\./g, '\\.')), 'a delivered recipient is done');
    await new Promise((res) => setTimeout(res, 2500)); // several queue runs
    assert.ok(!seen.some((s) => s.sender === 'hold@example.org' && s.at > returned), 'held mail is not delivered');
    const rel = await run('postsuper', ['-c', server.dir, '-H', id]);
    assert.equal(rel.stderr, `postsuper: ${id}: released from hold\npostsuper: Released from hold: 1 message\n`);
    await server.waitForLog(new RegExp(`: ${id}: removed$`), 15_000);
    assert.deepEqual(recipientsOf('hold'), ['hold1@example.com', 'hold2@example.com', 'hold3@example.com']);
  });

  test('-r on an active message requeues it and it is delivered, each recipient once', async () => {
    const id = await queueOne('rq');
    const r = await run('postsuper', ['-c', server.dir, '-r', id]);
    assert.equal(r.stderr, `postsuper: ${id}: requeued\npostsuper: Requeued: 1 message\n`);
    await server.waitForLog(new RegExp(`: ${id}: removed$`), 15_000);
    assert.deepEqual(recipientsOf('rq'), ['rq1@example.com', 'rq2@example.com', 'rq3@example.com']);
    assert.ok(server.logLines().some((l) => new RegExp(` postactor/postsuper\\[\\d+\\]: ${id}: requeued$`).test(l)));
  });

  test('-f (expire and release) on a held message: qmgr returns it to the sender as expired at its next attempt, without delivering', async () => {
    const id = await queueOne('exp');
    await run('postsuper', ['-c', server.dir, '-h', id]);
    const held = Date.now();
    const r = await run('postsuper', ['-c', server.dir, '-f', id]);
    assert.equal(r.stderr, `postsuper: ${id}: expired\npostsuper: ${id}: released from hold\npostsuper: Force-expired: 1 message\npostsuper: Released from hold: 1 message\n`);
    await server.waitForLog(new RegExp(`: ${id}: from=<exp@example\\.org>, status=expired, returned to sender$`), 15_000);
    await server.waitForLog(new RegExp(`: ${id}: to=<exp\\d@example\\.com>, relay=none, .*dsn=4\\.7\\.0, status=deferred \\(message is administratively expired\\)$`), 1000);
    await server.waitForLog(new RegExp(`: ${id}: removed$`), 10_000);
    assert.ok(!seen.some((s) => s.sender === 'exp@example.org' && s.at > held), 'no delivery after hold and forced expiry');
  });

  test('-s while the server runs: the server checks its store (one process writes it) and reports; mail keeps flowing', async () => {
    const id = await queueOne('structure');
    const r = await run('postsuper', ['-c', server.dir, '-s', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.deepEqual(JSON.parse(r.stdout).structure, { danglingIndex: 0, danglingDue: 0, reindexed: 0, corrupt: 0, damaged: 0, danglingLogs: 0 });
    await server.waitForLog(new RegExp(`: ${id}: removed$`), 15_000);
    assert.deepEqual(recipientsOf('structure'), ['structure1@example.com', 'structure2@example.com', 'structure3@example.com']);
  });

  test('postqueue -i / -s / -f answer while the server runs', async () => {
    const id = newQueueId();
    for (const args of [['-i', id], ['-f']]) {
      const r = await run('postqueue', ['-c', server.dir, ...args]);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    // -s goes through the flush service, which takes only fast_flush_domains ($relay_domains, empty here).
    const r = await run('postqueue', ['-c', server.dir, '-s', 'example.com']);
    assert.equal(r.code, 69, r.stderr);
    assert.equal(r.stderr, 'postqueue: fatal: Flush service is not configured for destination "example.com"\n');
  });
});

describe('postqueue -i on a message in incoming, with the active queue full', () => {
  let sink: SmtpSink;
  let server: TestServer;

  before(async () => {
    // One message in the active queue at a time; the first one waits 4 s at the next hop, so the
    // second stays in incoming meanwhile.
    sink = new SmtpSink({ dataDelayMs: 4000 });
    server = await startServer({ sinkPort: await sink.listen(0), mainCf: { qmgr_message_active_limit: '1' } });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  const queueOf = async (id: string) => {
    const r = await run('postqueue', ['-c', server.dir, '-j']);
    return r.stdout.trim().split('\n').filter((l) => l).map((l) => JSON.parse(l) as { queue_id: string; queue_name: string }).find((m) => m.queue_id === id)?.queue_name;
  };

  test('it is not activated past qmgr_message_active_limit (Postfix\'s postqueue -i asks qmgr for a scan); it goes once the first is delivered', async () => {
    const first = queuedId(await sendRaw(server.port, 'a@example.org', ['one@example.com'], rfc822({ Subject: 'first' }, 'x\n')));
    await server.waitForLog(new RegExp(`${first}: from=<a@example\\.org>.*\\(queue active\\)`), 10_000);
    const second = queuedId(await sendRaw(server.port, 'b@example.org', ['two@example.com'], rfc822({ Subject: 'second' }, 'x\n')));
    const r = await run('postqueue', ['-c', server.dir, '-i', second]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '');
    await new Promise((res) => setTimeout(res, 1000));
    assert.equal(await queueOf(first), 'active');
    assert.equal(await queueOf(second), 'incoming', 'still waiting for room in the active queue');
    await server.waitForLog(new RegExp(`${first}: removed$`), 15_000);
    await server.waitForLog(new RegExp(`${second}: to=<two@example\\.com>, .*status=sent`), 15_000);
  });
});
