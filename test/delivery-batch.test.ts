/**
 * The delivery helper's batch (src/delivery/batch.ts) in-process, on real files, with the real
 * Perl lock companion (src/delivery/locker.ts) when /usr/bin/perl exists: Maildir files and
 * mboxes written together, each delivery's failure its own (size limit, symlink, a held
 * dot-lock that sends one mbox to the one-at-a-time path), two messages for one mbox both
 * appended (the second after the batch's answers), no tmp/ files or lock files left behind. Credentials are the test's own (the
 * switches are exercised by the e2e tests as root).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeBatch, type BatchItem, type Creds } from '../src/delivery/batch.js';
import { Locker } from '../src/delivery/locker.js';
import { appendMbox, deliverMaildir, MailboxError, NO_PRIVS, useLocker, type LockSettings } from '../src/delivery/mailbox.js';
import type { WriteResult, WriterJob } from '../src/delivery/protocol.js';

const LOCKS: LockSettings = { dotlock: true, flock: true, fcntl: true, attempts: 3, delayMs: 100, staleMs: 500_000 };
const dir = mkdtempSync(join(tmpdir(), 'delivery-batch-'));
const locker = Locker.available() ? new Locker() : null;
useLocker(locker);
after(() => {
  locker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const me = { uid: process.getuid!(), gid: process.getgid!() };
const NO_SWITCH: Creds = { user() {}, spool() {}, root() {} };
const maildir = (path: string, sizeLimit = 0): WriterJob => ({ kind: 'maildir', path, ...me, inSpool: false, locks: LOCKS, sizeLimit });
const mbox = (path: string, sizeLimit = 0): WriterJob => ({ kind: 'mbox', path, ...me, inSpool: true, locks: LOCKS, sizeLimit });

/** The one-at-a-time path, as helper.ts gives it. */
async function single(item: BatchItem): Promise<WriteResult> {
  try {
    if (item.job.kind === 'mbox') await appendMbox(item.job.path, item.data, NO_PRIVS, item.job.locks, item.job.inSpool, item.job.sizeLimit);
    else await deliverMaildir(item.job.path, item.data, NO_PRIVS, item.job.sizeLimit);
    return { ok: true };
  } catch (e) {
    const err = e as MailboxError;
    return { ok: false, dsn: err.dsn, reason: err.message };
  }
}

describe('delivery helper batch', () => {
  test('Maildirs and mboxes together: every message once, tmp/ empty, no lock files, failures only where they belong', async () => {
    const md1 = join(dir, 'a', 'Maildir') + '/';
    const md2 = join(dir, 'b', 'Maildir') + '/';
    const box1 = join(dir, 'box1');
    const box2 = join(dir, 'box2');
    const held = join(dir, 'held');
    const small = join(dir, 'small');
    writeFileSync(join(dir, 'target'), '');
    symlinkSync(join(dir, 'target'), join(dir, 'sym'));
    writeFileSync(`${held}.lock`, ''); // another writer holds it for a moment
    setTimeout(() => unlinkSync(`${held}.lock`), 150);
    const msg = (s: string) => Buffer.from(`From x  Thu Dec  3 00:00:00 2026\nSubject: ${s}\n\n${s}\n\n`);
    const items: BatchItem[] = [
      ...Array.from({ length: 10 }, (_, i) => ({ job: maildir(i % 2 ? md1 : md2), data: msg(`m${i}`) })),
      { job: maildir(md1, 10), data: msg('too big for the maildir') },
      { job: mbox(box1), data: msg('box1 first') },
      { job: mbox(box2), data: msg('box2') },
      { job: mbox(box1), data: msg('box1 second') },
      { job: mbox(held), data: msg('after the lock') },
      { job: mbox(join(dir, 'sym')), data: msg('never') },
      { job: mbox(small, 20), data: msg('too big for the mbox') },
    ];
    const early: (WriteResult | null)[] = [];
    const r = await writeBatch(items, NO_SWITCH, locker, single, (x) => { early.push(...x); });
    assert.equal(r.length, items.length);
    // The held mbox came after the others were answered; box1's second message did not wait
    // deliver_lock_delay with it (the next round, at once, after box1's first).
    assert.equal(early.length, items.length, 'answers before the one-at-a-time path');
    assert.deepEqual(early[13], { ok: true }, 'box1\'s second message answered before the held lock was free');
    assert.equal(early[14], null);
    assert.deepEqual(early.slice(0, 13), r.slice(0, 13));
    for (let i = 0; i < 10; i++) assert.deepEqual(r[i], { ok: true }, `maildir ${i}`);
    assert.equal(r[10]!.ok, false);
    assert.match((r[10] as { reason: string }).reason, /File too large/);
    assert.equal((r[10] as { dsn: string }).dsn, '5.2.2');
    assert.deepEqual(r.slice(11, 15), [{ ok: true }, { ok: true }, { ok: true }, { ok: true }]);
    assert.equal(r[15]!.ok, false);
    assert.match((r[15] as { reason: string }).reason, /cannot open file: .*sym/);
    assert.equal((r[16] as { dsn: string }).dsn, '5.2.2');

    const bodies = (md: string) => readdirSync(join(md, 'new')).map((n) => readFileSync(join(md, 'new', n), 'latin1'));
    assert.equal(bodies(md1).length, 5);
    assert.equal(bodies(md2).length, 5);
    assert.deepEqual(readdirSync(join(md1, 'tmp')), []);
    assert.deepEqual(readdirSync(join(md2, 'tmp')), []);
    const b1 = readFileSync(box1, 'latin1');
    assert.match(b1, /box1 first[\s\S]*box1 second/);
    assert.equal((b1.match(/^From /gm) ?? []).length, 2);
    assert.match(readFileSync(held, 'latin1'), /after the lock/);
    assert.equal(readFileSync(join(dir, 'target'), 'latin1'), '');
    assert.equal(readFileSync(small, 'latin1'), '');
    assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith('.lock')), []);
  });

  test('the kernel locks are released after the batch: another batch on the same mboxes goes through', async () => {
    const boxes = Array.from({ length: 5 }, (_, i) => join(dir, `again${i}`));
    for (let round = 0; round < 3; round++) {
      const r = await writeBatch(boxes.map((b) => ({ job: mbox(b), data: Buffer.from(`From x  y\nround ${round}\n\n`) })), NO_SWITCH, locker, single);
      assert.ok(r.every((x) => x.ok), JSON.stringify(r));
    }
    for (const b of boxes) assert.equal((readFileSync(b, 'latin1').match(/^round /gm) ?? []).length, 3);
  });

  test('two batches at once with the same mbox: the second waits for the first, not deliver_lock_delay', async () => {
    const box = join(dir, 'shared');
    const slow: LockSettings = { ...LOCKS, attempts: 2, delayMs: 10_000 };
    const job: WriterJob = { ...mbox(box), locks: slow };
    const started = Date.now();
    const [a, b] = await Promise.all([
      writeBatch([{ job, data: Buffer.from('From a  y\nfirst\n\n') }, { job: maildir(join(dir, 'c', 'Maildir') + '/'), data: Buffer.from('x\n') }], NO_SWITCH, locker, single),
      writeBatch([{ job, data: Buffer.from('From b  y\nsecond\n\n') }, { job: maildir(join(dir, 'c', 'Maildir') + '/'), data: Buffer.from('y\n') }], NO_SWITCH, locker, single),
    ]);
    assert.ok([...a, ...b].every((x) => x.ok), JSON.stringify([a, b]));
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
    assert.equal((readFileSync(box, 'latin1').match(/^From /gm) ?? []).length, 2);
  });
});
