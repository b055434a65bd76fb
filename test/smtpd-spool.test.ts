/**
 * smtpd's content spool (actors/smtpd/spool.ts): content beyond SPOOL_MEMORY goes to a file and
 * comes back whole and in order; spool files are reused by later messages without mixing
 * contents; the size limit keeps what fits; a release during a write loses nothing of the next
 * message.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Spool, SPOOL_MEMORY } from '../actors/smtpd/spool.js';

/** Content of `size` bytes that differs with `seed`, as lines. */
function content(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = i % 80 === 78 ? 13 : i % 80 === 79 ? 10 : 97 + ((i + seed) % 26);
  return b;
}

/** Writes `data` in pieces of `piece` bytes and ends the spool. */
async function feed(spool: Spool, data: Buffer, piece: number): Promise<void> {
  for (let at = 0; at < data.length; at += piece) {
    if (!spool.write(data.subarray(at, at + piece))) await new Promise((r) => spool.once('drain', r));
  }
  await new Promise<void>((resolve, reject) => {
    spool.once('error', reject);
    spool.end(() => resolve());
  });
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'spool-test-'));
}

test('content in memory, across the file, and in both comes back whole', async () => {
  const dir = tempDir();
  try {
    for (const size of [0, 1000, SPOOL_MEMORY, SPOOL_MEMORY + 1, 100 * 1024, 3 * SPOOL_MEMORY + 17, 2 * 1024 * 1024 + 5]) {
      for (const piece of [1460, 16384, 65536, 300000]) {
        const data = content(size, size + piece);
        const spool = new Spool(join(dir, 'smtpd'), 0);
        await feed(spool, data, piece);
        assert.equal(spool.total, size);
        assert.equal(spool.kept, size);
        const head = Buffer.from('X-Prepended: yes\r\n');
        const out = await spool.content(head);
        assert.ok(Buffer.from(out).equals(Buffer.concat([head, data])), `size ${size}, pieces of ${piece}`);
        // A second read (cleanup BUSY retry) gives the same bytes.
        assert.ok(Buffer.from(await spool.content()).equals(data));
        await spool.release();
      }
    }
    // Spool files are unlinked as soon as they are open: nothing is left in the directory.
    assert.deepEqual(readdirSync(join(dir, 'smtpd')), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a reused spool file gives the next message its own content only', async () => {
  const dir = tempDir();
  try {
    // A long message, then shorter ones that reuse its file: nothing of the long one shows.
    const sizes = [5 * SPOOL_MEMORY, 2 * SPOOL_MEMORY + 3, SPOOL_MEMORY + 1, 4 * SPOOL_MEMORY];
    for (let round = 0; round < 3; round++) {
      for (const [i, size] of sizes.entries()) {
        const data = content(size, round * 10 + i);
        const spool = new Spool(join(dir, 'smtpd'), 0);
        await feed(spool, data, 8192);
        assert.ok(Buffer.from(await spool.content()).equals(data), `round ${round}, message ${i}`);
        await spool.release();
      }
    }
    // Several at once: each its own file.
    const many = Array.from({ length: 6 }, (_, i) => ({ spool: new Spool(join(dir, 'smtpd'), 0), data: content(3 * SPOOL_MEMORY + i, 100 + i) }));
    await Promise.all(many.map((m) => feed(m.spool, m.data, 4096)));
    for (const m of many) assert.ok(Buffer.from(await m.spool.content()).equals(m.data));
    await Promise.all(many.map((m) => m.spool.release()));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('message_size_limit: what fits is kept, the rest counted', async () => {
  const dir = tempDir();
  try {
    const limit = 2 * SPOOL_MEMORY + 100;
    const data = content(3 * SPOOL_MEMORY, 7);
    const spool = new Spool(join(dir, 'smtpd'), limit);
    await feed(spool, data, 10000);
    assert.equal(spool.total, data.length);
    assert.equal(spool.kept, limit);
    assert.ok(Buffer.from(await spool.content()).equals(data.subarray(0, limit)));
    await spool.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a spool released while it writes (client gone) does not disturb the next message', async () => {
  const dir = tempDir();
  try {
    for (let round = 0; round < 20; round++) {
      const gone = new Spool(join(dir, 'smtpd'), 0);
      gone.write(content(SPOOL_MEMORY, 1));
      gone.write(content(SPOOL_MEMORY, 2)); // memory full: a file write starts
      const released = gone.release();
      const data = content(3 * SPOOL_MEMORY + round, 3);
      const next = new Spool(join(dir, 'smtpd'), 0);
      await feed(next, data, 20000);
      await released;
      assert.ok(Buffer.from(await next.content()).equals(data), `round ${round}`);
      await next.release();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('replace: a milter\'s content replaces a spooled one', async () => {
  const dir = tempDir();
  try {
    const spool = new Spool(join(dir, 'smtpd'), 0);
    await feed(spool, content(3 * SPOOL_MEMORY, 4), 30000);
    const edited = content(SPOOL_MEMORY + 5, 9);
    spool.replace(edited);
    assert.equal(spool.kept, edited.length);
    assert.ok(Buffer.from(await spool.content()).equals(edited));
    await spool.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
