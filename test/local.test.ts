/**
 * local(8)'s pieces in-process, on real files: the mbox writer's safety checks (Postfix's
 * safe_open: no symlinks, one hard link), mailbox_size_limit (5.2.2), the Maildir's unique
 * names under concurrent deliveries, and the alias value splitter.
 */
import { linkSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendMbox, deliverMaildir, MailboxError, NO_PRIVS, type LockSettings } from '../src/delivery/mailbox.js';
import { splitTargets } from '../actors/local/aliases.js';

const LOCKS: LockSettings = { dotlock: true, flock: true, attempts: 2, delayMs: 50, staleMs: 500_000 };
const dir = mkdtempSync(join(tmpdir(), 'local-unit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function rejects(p: Promise<unknown>, dsn: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof MailboxError, String(e));
    assert.equal(e.dsn, dsn);
    assert.match(e.message, re);
    return true;
  });
}

describe('local mbox writer', () => {
  test('appends under dotlock + flock and removes the lock file', async () => {
    const box = join(dir, 'plain');
    await appendMbox(box, Buffer.from('From a  x\n\n'), NO_PRIVS, LOCKS, true);
    await appendMbox(box, Buffer.from('From b  x\n\n'), NO_PRIVS, LOCKS, true);
    assert.equal(readFileSync(box, 'latin1'), 'From a  x\n\nFrom b  x\n\n');
    assert.deepEqual(readdirSync(dir).filter((n) => n.endsWith('.lock')), []);
  });

  test('a held dot-lock after deliver_lock_attempts → 4.2.0 "unable to lock for exclusive access"', async () => {
    const box = join(dir, 'locked');
    writeFileSync(`${box}.lock`, '');
    await rejects(appendMbox(box, Buffer.from('x\n'), NO_PRIVS, LOCKS, true), '4.2.0', /unable to lock for exclusive access: .*locked\.lock/);
  });

  test('mailbox_size_limit: a message that would grow the mbox past the limit → 5.2.2 File too large, the mbox unchanged', async () => {
    const box = join(dir, 'small');
    writeFileSync(box, 'y'.repeat(90));
    await rejects(appendMbox(box, Buffer.alloc(20, 0x78), NO_PRIVS, LOCKS, true, 100), '5.2.2', /File too large/);
    assert.equal(readFileSync(box, 'latin1'), 'y'.repeat(90));
  });

  test('a symlink mailbox is refused (O_NOFOLLOW); a mailbox with two hard links is refused 5.2.0', async () => {
    writeFileSync(join(dir, 'target'), '');
    symlinkSync(join(dir, 'target'), join(dir, 'sym'));
    await rejects(appendMbox(join(dir, 'sym'), Buffer.from('x\n'), NO_PRIVS, LOCKS, true), '4.2.0', /cannot open file: .*sym/);
    linkSync(join(dir, 'target'), join(dir, 'hard'));
    await rejects(appendMbox(join(dir, 'hard'), Buffer.from('x\n'), NO_PRIVS, LOCKS, true), '5.2.0', /2 hard links/);
    assert.equal(readFileSync(join(dir, 'target'), 'latin1'), '');
  });
});

describe('local Maildir writer', () => {
  test('200 concurrent deliveries: 200 distinct files in new/, tmp/ empty, contents intact', async () => {
    const md = join(dir, 'Maildir') + '/';
    await Promise.all(Array.from({ length: 200 }, (_, i) => deliverMaildir(md, Buffer.from(`Subject: ${i}\n\nbody ${i}\n`), NO_PRIVS)));
    const names = readdirSync(join(md, 'new'));
    assert.equal(new Set(names).size, 200);
    assert.deepEqual(readdirSync(join(md, 'tmp')), []);
    const bodies = names.map((n) => readFileSync(join(md, 'new', n), 'latin1')).sort();
    assert.equal(bodies.filter((b) => /^Subject: (\d+)\n\nbody \1\n$/.test(b)).length, 200);
  });
});

describe('local alias values', () => {
  test('splitTargets: commas and newlines separate, quotes protect commas, comments dropped', () => {
    assert.deepEqual(splitTargets('a, b,c\n# note\n "|cmd x, y" , /file\n'), ['a', 'b', 'c', '|cmd x, y', '/file']);
  });
});
