/**
 * postcat on Postfix queue files and on standard input, side by side with Debian's
 * /usr/sbin/postcat: real queue files made by a throwaway Postfix (bench/postfix-peer.sh) — one
 * message on hold (DSN parameters, a folded header, a line longer than line_length_limit), one
 * deferred (relayhost refuses) — and one file written here with the records a real file rarely
 * shows (pointer records into a heap after the E record, padding, a done and a canceled
 * recipient, a malformed attribute, an unknown type). Each is shown with every flag, as a file
 * argument, as redirected standard input and through a pipe (where seeks fail, as in Postfix),
 * and the output must be the same byte for byte. Both run with TZ=UTC, so the dates agree
 * whatever the machine's zone. A file of Postactor's own maildrop is shown as the queue file
 * Postfix's postdrop would have written for it.
 *
 * Postfix's msg_fatal() sleeps one second before it exits (src/util/msg.c), and about a third of
 * the cases here end in a fatal error (every seek on a pipe, an offset past the end): run one
 * after the other they were ~25 s of sleeping. So each case runs both postcats at once, and a
 * few cases run side by side (they only read their files); the comparisons are made afterwards,
 * in the cases' order.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { startPostfix } from '../bench/relay/postfix.js';
import type { MtaHandle } from '../bench/relay/mta.js';
import { encodeMaildrop } from '../src/maildrop/format.js';
import { recPut } from '../src/queue/record.js';
import { needs } from './helpers/peers.js';
import { freePort, REPO_ROOT, rfc822, sendRaw } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';
import { inPool } from './helpers/pool.js';

const POSTFIX_POSTCAT = '/usr/sbin/postcat';
const OURS = join(REPO_ROOT, 'bin', 'postcat');
const SKIP = needs('/usr/sbin/postfix', "Debian's Postfix (postfix)") || (process.getuid?.() !== 0 ? "Postfix's master needs root" : false);
const tempDir = tempDirs('postactor-postcat-');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Ran { stdout: string; stderr: string; code: number }
type Input = { kind: 'file' } | { kind: 'redirect' } | { kind: 'pipe' };

/** One postcat run on `file`: as an argument, as redirected stdin, or piped in. */
function postcat(bin: string, flags: string[], file: string, how: Input, extra: string[] = []): Promise<Ran> {
  const env = { ...process.env, TZ: 'UTC' };
  const args = [...extra, ...flags, ...(how.kind === 'file' ? [file] : [])];
  return new Promise((resolve, reject) => {
    const fd = how.kind === 'redirect' ? openSync(file, 'r') : undefined;
    const stdin = fd ?? (how.kind === 'pipe' ? 'pipe' : 'ignore');
    // argv0 "postcat": Postfix names itself by argv[0] in its messages.
    const child = spawn(bin, args, { stdio: [stdin, 'pipe', 'pipe'], argv0: 'postcat', env, timeout: 150_000 });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    const done = () => {
      if (fd !== undefined) closeSync(fd);
    };
    child.on('error', (e) => {
      done();
      reject(e);
    });
    child.on('close', (code) => {
      done();
      resolve({ stdout: Buffer.concat(out).toString('latin1'), stderr: Buffer.concat(err).toString('latin1'), code: code ?? -1 });
    });
    if (how.kind === 'pipe') {
      // A postcat that fails its first seek exits without reading the rest: no EPIPE.
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(readFileSync(file));
    }
  });
}

/** Cases run side by side: each is two short processes, Postfix's mostly asleep (see above). */
const CONCURRENCY = 4;

/** Postfix's -v logs its configuration work on stderr; only warnings and fatal errors count. */
const diagnostics = (stderr: string) => stderr.split('\n').filter((l) => /^postcat: (warning|fatal): /.test(l)).join('\n');

interface Case { file: string; flags: string[]; how: Input }

/** Every case run with both postcats, then compared in order: the same output, messages and exit code. */
async function same(cases: readonly Case[], postfixConf: string): Promise<void> {
  const ran = await inPool(cases, CONCURRENCY, ({ file, flags, how }) =>
    Promise.all([postcat(POSTFIX_POSTCAT, flags, file, how, ['-c', postfixConf]), postcat(OURS, flags, file, how)]));
  cases.forEach(({ file, flags, how }, i) => {
    const [theirs, ours] = ran[i]!;
    const what = `postcat ${flags.join(' ')} (${how.kind}) ${file}`;
    assert.equal(ours.stdout, theirs.stdout, what);
    if (flags.some((f) => f.includes('v'))) assert.equal(diagnostics(ours.stderr), diagnostics(theirs.stderr), what);
    else assert.equal(ours.stderr, theirs.stderr, what);
    assert.equal(ours.code, theirs.code, `${what}: ${ours.stderr}`);
  });
}

/** Every file under dir (Postfix hashes the deferred queue into subdirectories). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

/**
 * A queue file with the rarer records, laid out as cleanup lays out an edited file: the added
 * recipient sits in a heap after E, reached by a pointer record and pointing back.
 */
function craftedQueueFile(): Buffer {
  const ptr = (n: number) => recPut('p', String(n).padStart(15, ' '));
  const build = (heapAt: number, back: number, dataOffset: number, dataSize: number): { file: Buffer; heapAt: number; back: number; dataOffset: number; dataSize: number } => {
    const env = [
      recPut('T', '1796303384 887191'),
      recPut('A', 'create_time=1796303384'),
      recPut('F', 'Alice Example'),
      recPut('L', 'smtp:[192.0.2.1]:2525'),
      recPut('S', 'alice@example.org'),
      recPut('W', '1796317784'),
      recPut('A', 'no_equals_sign'),
      recPut('A', '  spaced = value with trailing blanks   '),
      recPut('i', 'envid-42'),
      recPut('<', '2'),
      recPut('w', '      padding'),
      recPut('A', 'dsn_orig_rcpt=rfc822;done@example.com'),
      recPut('D', 'done@example.com'),
      recPut('/', 'canceled@example.com'),
      recPut('o', 'rfc822;bob@example.com'),
      recPut('n', '6'),
      recPut('R', 'bob@example.com'),
      ptr(heapAt),
    ];
    const afterPtr = [recPut('Z', 'an unknown record type'), recPut('V', '+='), recPut('M', '')];
    const text = [
      recPut('N', 'Subject: crafted'),
      recPut('N', 'X-Folded: one'),
      recPut('N', '\ttwo'),
      recPut('L', 'A header piece '),
      recPut('N', 'continued: still the header'),
      recPut('N', ''),
      recPut('L', 'a long body line, '),
      recPut('L', 'in pieces, '),
      recPut('N', 'ends here'),
      recPut('N', 'Not-A-Header: in the body'),
      ptr(0),
    ];
    const tail = [recPut('X', ''), recPut('r', 'receipts@example.org'), recPut('e', 'errors@example.org'), recPut('E', '')];
    const sizeRec = recPut('C', [dataSize, dataOffset, 2, 0, 300, 0].map((n) => String(n).padStart(15, ' ')).join(' '));
    const head = Buffer.concat([sizeRec, ...env]);
    const newBack = head.length;
    const beforeText = Buffer.concat([head, ...afterPtr]);
    const newDataOffset = beforeText.length;
    const body = Buffer.concat(text);
    const main = Buffer.concat([beforeText, body, ...tail]);
    const heap = Buffer.concat([recPut('R', 'added@example.com'), recPut('A', 'dsn_orig_rcpt=rfc822;added@example.com'), ptr(back)]);
    return { file: Buffer.concat([main, heap]), heapAt: main.length, back: newBack, dataOffset: newDataOffset, dataSize: body.length };
  };
  // Two passes: the offsets are fixed-width, so the second layout equals the first.
  const first = build(0, 0, 0, 0);
  const second = build(first.heapAt, first.back, first.dataOffset, first.dataSize);
  return second.file;
}

describe('postcat on queue files: the same output as Postfix\'s postcat', { skip: SKIP }, () => {
  let postfix: MtaHandle;
  let dir = '';
  let conf = '';
  const files: Record<'hold' | 'deferred' | 'crafted', string> = { hold: '', deferred: '', crafted: '' };

  before(async () => {
    const closed = await freePort();
    postfix = await startPostfix({
      sinkPort: closed,
      port: await freePort(),
      extraMainCf: [
        'smtpd_recipient_restrictions = check_recipient_access inline:{hold@example.com=HOLD}, permit_mynetworks, reject',
        'delay_warning_time = 4h',
      ].join('\n'),
    });
    conf = join(postfix.dir, 'etc');
    const long = 'x'.repeat(3000);
    const held = await sendRaw(postfix.port, 'alice@example.org', ['hold@example.com', 'other@example.com'],
      rfc822({ Subject: 'held for postcat', 'X-Folded': 'one\r\n\ttwo', From: 'Alice <alice@example.org>' }, `first line\n${long}\n\nNot-A-Header: body\n`),
      { mailParams: 'RET=HDRS ENVID=env-7', rcptParams: ['NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig@example.com', 'NOTIFY=NEVER'] });
    assert.equal(held.code, 250, held.line);
    const deferred = await sendRaw(postfix.port, 'bob@example.org', ['someone@example.com'], rfc822({ Subject: 'deferred for postcat' }, 'body\n'));
    assert.equal(deferred.code, 250, deferred.line);
    dir = tempDir();
    // Postfix's files are its own (mode 0700 directories): copy them out to look at them.
    for (let i = 0; i < 600 && (!files.hold || !files.deferred); i++) {
      for (const q of ['hold', 'deferred'] as const) {
        const found = filesUnder(join(postfix.dir, 'spool', q)).filter((p) => statSync(p).mode & 0o100);
        if (found.length && !files[q]) {
          mkdirSync(join(dir, q), { recursive: true });
          files[q] = join(dir, q, found[0]!.split('/').pop()!);
          copyFileSync(found[0]!, files[q]);
        }
      }
      if (!files.hold || !files.deferred) await sleep(100);
    }
    assert.ok(files.hold && files.deferred, 'Postfix put one message on hold and deferred the other');
    files.crafted = join(dir, 'crafted');
    writeFileSync(files.crafted, craftedQueueFile());
  });
  after(async () => {
    await postfix?.stop();
  });

  const FLAGS = [[], ['-b'], ['-h'], ['-e'], ['-bh'], ['-eh'], ['-d'], ['-o'], ['-do'], ['-ob'], ['-r'], ['-v'], ['-ov'], ['-rv'], ['-s', '97'], ['-s', '98']];
  for (const which of ['hold', 'deferred', 'crafted'] as const) {
    test(`${which}: every flag, the file named`, async () => {
      await same(FLAGS.map((flags) => ({ file: files[which], flags, how: { kind: 'file' } })), conf);
    });
    test(`${which}: standard input, redirected and piped`, async () => {
      await same([[], ['-e'], ['-bh'], ['-ov'], ['-s', '97'], ['-s', '99999']].flatMap((flags) => [
        { file: files[which], flags, how: { kind: 'redirect' } },
        { file: files[which], flags, how: { kind: 'pipe' } },
      ] as const), conf);
    });
  }

  test('two files in one run, the deferred one with a W record (delay_warning_time)', () => {
    const both = (bin: string, extra: string[]) => spawnSync(bin, [...extra, files.hold, files.deferred], { argv0: 'postcat', env: { ...process.env, TZ: 'UTC' }, encoding: 'latin1' });
    const theirs = both(POSTFIX_POSTCAT, ['-c', conf]);
    const ours = both(OURS, []);
    assert.equal(ours.stdout, theirs.stdout);
    assert.match(ours.stdout, /^warning_message_time: /m);
    assert.match(ours.stdout, /^named_attribute: dsn_orig_rcpt=rfc822;orig@example\.com$/m);
  });

  test('bad input: Postfix\'s messages; exit 1 also for a file that is no queue file (Postfix exits 0)', async () => {
    const notQueue = join(dir, 'text');
    writeFileSync(notQueue, 'hello: plain text\n\nnot a queue file\n');
    const truncated = join(dir, 'truncated');
    writeFileSync(truncated, readFileSync(files.hold).subarray(0, 300));
    const empty = join(dir, 'empty');
    writeFileSync(empty, '');
    const cases = [[notQueue, 1], [truncated, 1], [empty, 0], [join(dir, 'missing'), 1], [dir, 0]] as const;
    const ran = await inPool(cases, CONCURRENCY, ([file]) =>
      Promise.all([postcat(POSTFIX_POSTCAT, [], file, { kind: 'file' }, ['-c', conf]), postcat(OURS, [], file, { kind: 'file' })]));
    cases.forEach(([file, code], i) => {
      const [theirs, ours] = ran[i]!;
      assert.equal(ours.stdout, theirs.stdout, file);
      assert.equal(ours.stderr, theirs.stderr, file);
      assert.equal(ours.code, code, `${file}: ${ours.stderr}`);
    });
    assert.equal((await postcat(OURS, [], notQueue, { kind: 'file' })).stderr, `postcat: warning: ${notQueue}: input is not a valid queue file\n`);
    const bad = await postcat(OURS, ['-s', 'x'], files.hold, { kind: 'file' });
    assert.deepEqual([bad.stderr, bad.code], ['postcat: fatal: bad offset: x\n', 1]);
  });
});

describe('postcat on a file of Postactor\'s maildrop', () => {
  test('shown as the maildrop queue file Postfix\'s postdrop would have written', async () => {
    const dir = tempDir();
    const file = join(dir, 'maildrop-file');
    writeFileSync(file, encodeMaildrop({
      sender: 'alice', recipients: ['bob@example.com', 'carol'], fullName: 'Alice Example', notify: ['SUCCESS', 'FAILURE'],
      envId: 'env-1', arrival: Date.UTC(2026, 10, 25, 1, 38, 37), uid: 1000, user: 'alice', rewriteContext: 'local',
    }, Buffer.from('Subject: dropped\n\nbody line\n')));
    const r = await postcat(OURS, [], file, { kind: 'file' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, [
      `*** ENVELOPE RECORDS ${file} ***`,
      'message_arrival_time: Wed Nov 25 01:38:37 2026',
      'sender_fullname: Alice Example',
      'sender: alice',
      'named_attribute: rewrite_context=local',
      'dsn_envelope_id: env-1',
      'dsn_notify_flags: 6',
      'recipient: bob@example.com',
      'dsn_notify_flags: 6',
      'recipient: carol',
      `*** MESSAGE CONTENTS ${file} ***`,
      'Subject: dropped',
      '',
      'body line',
      `*** HEADER EXTRACTED ${file} ***`,
      `*** MESSAGE FILE END ${file} ***`,
      '',
    ].join('\n'));
    writeFileSync(file, 'postactor-maildrop 1\n{"sender":"x"}\n');
    const bad = await postcat(OURS, [], file, { kind: 'file' });
    assert.deepEqual([bad.stdout, bad.stderr, bad.code], ['', `postcat: warning: ${file}: malformed maildrop file: bad recipient list\n`, 1]);
  });
});
