/**
 * sendmail's standard input read with read(2) (readMessageFd): the same message as the stream
 * reader makes, from a file and from a non-blocking pipe (EAGAIN: read on from the stream).
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readMessage, readMessageFd } from '../src/maildrop/input.js';

const dir = mkdtempSync(join(tmpdir(), 'postactor-input-fd-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const INPUT = 'From someone Thu Dec  3 10:00:00 2026\nSubject: x\r\n\r\nline\r\n.\nafter the dot\nno newline at the end';

test('from a file: the stream reader\'s message, with and without the "." line ending it', async () => {
  const file = join(dir, 'message');
  writeFileSync(file, INPUT);
  for (const dotEnds of [true, false]) {
    const fd = openSync(file, 'r');
    try {
      const got = await readMessageFd(fd, { dotEnds }, () => { throw new Error('a file never says EAGAIN'); });
      const want = await readMessage(Readable.from([Buffer.from(INPUT)]), { dotEnds });
      assert.deepEqual({ ...got, parts: Buffer.concat(got.parts).toString() }, { ...want, parts: Buffer.concat(want.parts).toString() });
    } finally {
      closeSync(fd);
    }
  }
});

test('from a non-blocking pipe: EAGAIN hands over to the stream, nothing lost', async () => {
  // The parent's end of a child's stdout pipe is non-blocking; the child writes a moment later.
  const child = spawn(process.execPath, ['-e', `setTimeout(() => process.stdout.write(${JSON.stringify(INPUT)}), 300)`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const fd = (child.stdout as unknown as { _handle: { fd: number } })._handle.fd;
  let handedOver = false;
  const got = await readMessageFd(fd, { dotEnds: false }, () => { handedOver = true; return child.stdout; });
  assert.ok(handedOver, 'the pipe was empty at first: EAGAIN');
  assert.equal(Buffer.concat(got.parts).toString(), 'Subject: x\n\nline\n.\nafter the dot\nno newline at the end\n');
  assert.equal(got.end, 'eof');
});
