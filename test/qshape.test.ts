/**
 * qshape, pinned to Postfix's qshape(1): a store filled directly with messages of known ages
 * and domains; the exact table text for the default, -s, -b/-t, -l, -p/-m and a queue name
 * argument; --json rows; usage errors. The same queue, written as Postfix queue files, is also
 * given to Debian's own qshape (/usr/sbin/qshape), whose output must match ours byte for byte.
 */
import { needs } from './helpers/peers.js';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QueueStore } from '../src/queue/store.js';
import { newQueueId } from '../src/queue/qid.js';
import type { MessageMeta, QueueName } from '../src/queue/types.js';
import { REPO_ROOT } from './helpers/server.js';

interface Run { code: number; stdout: string; stderr: string }

function runFile(file: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { env: { ...process.env, TZ: 'UTC' }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin!.on('error', () => undefined); // a command that exits before reading: no EPIPE
    child.stdin!.end();
  });
}
const qshape = (args: string[]) => runFile(join(REPO_ROOT, 'bin', 'qshape'), args);

const MIN = 60_000;
const NOW = Date.now();

interface Msg { queue: QueueName; ageMin: number; sender: string; rcpts: string[]; done?: string[] }

/** Ages sit well inside their buckets, so a few seconds between runs change nothing. */
const MESSAGES: Msg[] = [
  { queue: 'active', ageMin: 1, sender: 'alice@Example.ORG', rcpts: ['bob@example.com', 'Carol@EXAMPLE.com'], done: ['done@example.net'] },
  { queue: 'incoming', ageMin: 7, sender: '', rcpts: ['x@example.net'] },
  { queue: 'active', ageMin: 30, sender: 'alice@example.org', rcpts: ['y@mail.example.com', 'z@example.com'] },
  { queue: 'active', ageMin: 3000, sender: 's@foo.example.org', rcpts: ['w@example.com'] },
  { queue: 'deferred', ageMin: 100, sender: 'd@example.org', rcpts: ['q@example.net', 'r@example.net'] },
  { queue: 'active', ageMin: 2, sender: 'gone@example.org', rcpts: [], done: ['all@done.example'] },
];

/** A row with the default layout's column widths (counts below 100): domain in 39 columns. */
const W = [3, 3, 3, 3, 3, 3, 4, 4, 4, 5, 6];
function row(domain: string, cells: (string | number)[], widths = W, dw = 39): string {
  return domain.padStart(dw) + cells.map((c, i) => String(c).padStart(widths[i]!)).join('') + '\n';
}
const HEAD = row('', ['T', 5, 10, 20, 40, 80, 160, 320, 640, 1280, '1280+']);

/** One record of a Postfix queue file: type, length (7 bits a byte, low first), data. */
function rec(type: string, data: string): Buffer {
  const body = Buffer.from(data, 'latin1');
  const len: number[] = [];
  let l = body.length;
  do {
    let b = l & 0x7f;
    l >>= 7;
    if (l) b |= 0x80;
    len.push(b);
  } while (l);
  return Buffer.concat([Buffer.from(type, 'latin1'), Buffer.from(len), body]);
}

describe('qshape (store filled directly)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-qshape-'));
  const spool = join(dir, 'spool');
  const pfx = join(dir, 'postfix-queue');

  before(async () => {
    writeFileSync(join(dir, 'main.cf'), `queue_directory = ${spool}\nmaillog_file = ${join(dir, 'maillog')}\n`);
    writeFileSync(join(dir, 'master.cf'), 'qmgr unix n - n 300 1 qmgr\n');
    const store = QueueStore.open(spool);
    for (const m of MESSAGES) {
      const meta: MessageMeta = {
        queueId: newQueueId(), queue: m.queue, arrival: NOW - m.ageMin * MIN, sender: m.sender, size: 100,
        recipients: [...(m.done ?? []).map((address) => ({ address, done: true })), ...m.rcpts.map((address) => ({ address, done: false }))],
        nextAttempt: 0, attempts: 0,
      };
      await store.enqueue(meta, Buffer.from('Subject: x\r\n\r\nbody\r\n'));
    }
    await store.close();
    // The same messages as Postfix queue files (pending recipients only), for Debian's qshape.
    MESSAGES.forEach((m, i) => {
      const qdir = join(pfx, m.queue);
      mkdirSync(qdir, { recursive: true });
      const t = Math.floor((NOW - m.ageMin * MIN) / 1000);
      const file = Buffer.concat([rec('C', '0 0 0'), rec('T', `${t} 0`), rec('S', m.sender), ...m.rcpts.map((r) => rec('R', r)), rec('M', ''), rec('X', ''), rec('E', '')]);
      writeFileSync(join(qdir, `ABCDEF${i}`), file, { mode: 0o700 });
    });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('default: incoming + active, pending recipients by domain and age, TOTAL first, sorted by total then name length', async () => {
    const r = await qshape(['-c', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, HEAD
      + row('TOTAL', [6, 2, 1, 0, 2, 0, 0, 0, 0, 0, 1])
      + row('example.com', [4, 2, 0, 0, 1, 0, 0, 0, 0, 0, 1])
      + row('example.net', [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
      + row('mail.example.com', [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
  });

  test('-s counts sender domains, one per message; the null sender is MAILER-DAEMON', async () => {
    const r = await qshape(['-c', dir, '-s']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, HEAD
      + row('TOTAL', [4, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1])
      + row('example.org', [2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])
      + row('MAILER-DAEMON', [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
      + row('foo.example.org', [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
  });

  test('-b 3 -t 10: three buckets of 10, 20 minutes and older; the domain column widens to fill 80', async () => {
    const r = await qshape(['-c', dir, '-b', '3', '-t', '10']);
    assert.equal(r.code, 0, r.stderr);
    const w = [3, 3, 3, 4];
    assert.equal(r.stdout, row('', ['T', 10, 20, '20+'], w, 67)
      + row('TOTAL', [6, 3, 0, 3], w, 67)
      + row('example.com', [4, 2, 0, 2], w, 67)
      + row('example.net', [1, 1, 0, 0], w, 67)
      + row('mail.example.com', [1, 0, 0, 1], w, 67));
  });

  test('-l: linear buckets t, 2t, 3t …', async () => {
    const r = await qshape(['-c', dir, '-l', '-b', '4', '-t', '10']);
    assert.equal(r.code, 0, r.stderr);
    const w = [3, 3, 3, 3, 4];
    // ages 1, 7 → [0,10); 30 → [30,40) = bucket 4 (capped); 3000 → bucket 4
    assert.equal(r.stdout, row('', ['T', 10, 20, 30, '30+'], w, 64)
      + row('TOTAL', [6, 3, 0, 0, 3], w, 64)
      + row('example.com', [4, 2, 0, 0, 2], w, 64)
      + row('example.net', [1, 1, 0, 0, 0], w, 64)
      + row('mail.example.com', [1, 0, 0, 0, 1], w, 64));
  });

  test('-p -m 1 adds parent domain rows with a leading dot, never a top-level domain', async () => {
    const r = await qshape(['-c', dir, '-p', '-m', '1']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, HEAD
      + row('TOTAL', [6, 2, 1, 0, 2, 0, 0, 0, 0, 0, 1])
      + row('example.com', [4, 2, 0, 0, 1, 0, 0, 0, 0, 0, 1])
      + row('example.net', [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
      + row('.example.com', [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
      + row('mail.example.com', [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
    const hidden = await qshape(['-c', dir, '-p']);
    assert.ok(!hidden.stdout.includes('.example.com\n') && !/ \.example\.com /.test(hidden.stdout), 'a parent with fewer than 5 subdomains is not shown');
  });

  test('a queue name argument selects that queue (deferred)', async () => {
    const r = await qshape(['-c', dir, 'deferred']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, HEAD
      + row('TOTAL', [2, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0])
      + row('example.net', [2, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]));
  });

  test('--json prints one object per row: domain, total, buckets keyed by their labels', async () => {
    const r = await qshape(['-c', dir, '--json', '-b', '3', '-t', '10']);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(rows, [
      { domain: 'TOTAL', total: 6, buckets: { 10: 3, 20: 0, '20+': 3 } },
      { domain: 'example.com', total: 4, buckets: { 10: 2, 20: 0, '20+': 2 } },
      { domain: 'example.net', total: 1, buckets: { 10: 1, 20: 0, '20+': 0 } },
      { domain: 'mail.example.com', total: 1, buckets: { 10: 0, 20: 0, '20+': 1 } },
    ]);
  });

  test('an empty queue prints the header and a zero TOTAL row', async () => {
    const r = await qshape(['-c', dir, 'hold']);
    assert.equal(r.stdout, HEAD + row('TOTAL', [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  });

  test('same output as Debian\'s qshape on the same queue written as Postfix queue files', async (t) => {
    const missing = needs('/usr/sbin/qshape', "Debian's qshape, the comparison peer");
    if (missing) return t.skip(missing);
    const cases: [string[], string[]][] = [
      [[], ['incoming', 'active']],
      [['-s'], ['incoming', 'active']],
      [['-b', '3', '-t', '10'], ['incoming', 'active']],
      [['-l', '-b', '4', '-t', '10'], ['incoming', 'active']],
      [['-p', '-m', '1'], ['incoming', 'active']],
      [['-w', '100'], ['deferred', 'active']],
    ];
    for (const [flags, queues] of cases) {
      const ours = await qshape(['-c', dir, ...flags, ...queues]);
      const theirs = await runFile('/usr/sbin/qshape', [...flags, ...queues.map((q) => join(pfx, q))]);
      assert.equal(theirs.code, 0, theirs.stderr);
      assert.equal(ours.stdout, theirs.stdout, `qshape ${flags.join(' ')} ${queues.join(' ')}`);
    }
  });

  test('a bad flag prints the usage and exits 64; --help and -h print it and exit 0', async () => {
    const bad = await qshape(['-c', dir, '-Z']);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /invalid option -- 'Z'/);
    assert.match(bad.stderr, /^usage: qshape /m);
    const num = await qshape(['-c', dir, '-b', 'many']);
    assert.equal(num.code, 64);
    const help = await qshape(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: qshape \[-s\] \[-p\]/);
    assert.equal((await qshape(['-h'])).code, 0);
    const q = await qshape(['-c', dir, 'nosuchqueue']);
    assert.equal(q.code, 1);
    assert.match(q.stderr, /qshape: fatal: unknown queue: "nosuchqueue"/);
    const md = await qshape(['-c', dir, 'maildrop']);
    assert.match(md.stderr, /not supported: queue maildrop/);
  });
});
