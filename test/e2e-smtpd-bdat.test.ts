/**
 * End to end, smtpd's CHUNKING (actors/smtpd/bdat.ts) with raw SMTP dialogues against a real
 * server relaying to the project's sink: BDAT chunks taken byte for byte (a "." line or a bare
 * LF inside a chunk is content), Postfix's replies for each misuse, the size limit per chunk,
 * CHUNKING hidden and refused by smtpd_discard_ehlo_keywords, and the disconnect line's bdat=
 * counter. test/e2e-xforward-postfix.test.ts replays the same dialogues against Postfix's smtpd.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { freePort, SmtpDialogue, startServer, type Reply, type TestServer } from './helpers/server.js';

/** The queue ID of Postfix's reply to BDAT LAST: "250 2.0.0 Ok: N bytes queued as ID". */
function queuedAfterBdat(r: Reply, size: number): string {
  const m = new RegExp(`^250 2\\.0\\.0 Ok: ${size} bytes queued as (\\S+)$`).exec(r.line);
  assert.ok(m, r.line);
  return m[1]!;
}

describe('smtpd CHUNKING (BDAT)', () => {
  let server: TestServer;
  let sink: SmtpSink;
  let noChunkingPort = 0;
  let smallPort = 0;
  let bareRejectPort = 0;
  let strictPort = 0;
  let slowPort = 0;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    noChunkingPort = await freePort();
    smallPort = await freePort();
    bareRejectPort = await freePort();
    strictPort = await freePort();
    slowPort = await freePort();
    server = await startServer({
      sinkPort,
      // smtpd_data_restrictions judge the first BDAT of a transaction (and make every BDAT wait
      // for that asynchronous check before its chunk is read).
      env: (dir) => {
        writeFileSync(join(dir, 'datasenders'), 'bad@example.org REJECT no data for you\n');
        return {};
      },
      mainCf: { smtpd_data_restrictions: 'check_sender_access texthash:datasenders' },
      masterCfExtra: [
        `127.0.0.1:${noChunkingPort} inet n - n - 1 smtpd -o smtpd_discard_ehlo_keywords=chunking`,
        `127.0.0.1:${smallPort} inet n - n - 1 smtpd -o message_size_limit=1000`,
        // (The default exclusions, $mynetworks, would cover the test's own 127.0.0.1.)
        `127.0.0.1:${slowPort} inet n - n - 1 smtpd -o smtpd_timeout=2s -o smtpd_per_request_deadline=yes`,
        `127.0.0.1:${strictPort} inet n - n - 1 smtpd -o smtpd_hard_error_limit=3 -o smtpd_error_sleep_time=0`,
        `127.0.0.1:${bareRejectPort} inet n - n - 1 smtpd -o smtpd_forbid_bare_newline=reject -o smtpd_forbid_bare_newline_exclusions=192.0.2.0/24`,
      ].join('\n'),
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  async function session(port = server.port): Promise<SmtpDialogue> {
    const { smtp, greeting } = await SmtpDialogue.connect(port);
    assert.equal(greeting.code, 220);
    const ehlo = await smtp.cmd('EHLO client.test');
    assert.equal(ehlo.code, 250);
    return smtp;
  }

  test('EHLO announces CHUNKING last, and no BINARYMIME', async () => {
    const smtp = await session();
    const ehlo = await smtp.cmd('EHLO client.test');
    assert.equal(ehlo.lines[ehlo.lines.length - 1], 'CHUNKING');
    assert.ok(!ehlo.lines.includes('BINARYMIME'));
    smtp.close();
  });

  test('a message in three chunks arrives byte for byte; each chunk is answered with its size', async () => {
    const smtp = await session();
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    const parts = ['Subject: bdat three\r\nFrom: a@example.org\r\n', '\r\nline one\r\n.\r\n..two\r\n', 'bare\nLF and no final newline'];
    smtp.write(`BDAT ${parts[0]!.length}\r\n${parts[0]}`);
    assert.equal((await smtp.read()).line, `250 2.0.0 Ok: ${parts[0]!.length} bytes`);
    // The next chunk pipelined with the last BDAT and QUIT, in one write.
    smtp.write(`BDAT ${parts[1]!.length}\r\n${parts[1]}BDAT ${parts[2]!.length} LAST\r\n${parts[2]}QUIT\r\n`);
    assert.equal((await smtp.read()).line, `250 2.0.0 Ok: ${parts[1]!.length} bytes`);
    const id = queuedAfterBdat(await smtp.read(), parts.join('').length);
    assert.equal((await smtp.read()).code, 221);
    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('Subject: bdat three')), 30_000);
    const got = sink.messages.find((m) => m.data.includes('Subject: bdat three'))!.data.toString('latin1');
    // The body exactly as sent ("." and ".." lines are content; smtp dot-stuffs them on the way out).
    assert.ok(got.includes('\r\nline one\r\n.\r\n..two\r\nbare'), got);
    await server.waitForLog(new RegExp(`disconnect from \\S+ ehlo=1 mail=1 rcpt=1 bdat=3 quit=1 commands=7`), 10_000);
    assert.ok(server.logLines().some((l) => l.includes(`${id}: client=`)));
  });

  test('a big message in big chunks (spooled, not held in memory) arrives whole; bare LFs go on as CRLF', async () => {
    const smtp = await session();
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    const line = 'x'.repeat(70) + '\r\n';
    const head = 'Subject: bdat big\r\n\r\n';
    const body = line.repeat(5000); // 360 KB
    const chunks = [head + body.slice(0, 200_000), body.slice(200_000), 'lf only\nend\n'];
    for (const [i, c] of chunks.entries()) {
      const last = i === chunks.length - 1;
      smtp.write(`BDAT ${c.length}${last ? ' LAST' : ''}\r\n${c}`);
      const r = await smtp.read();
      if (last) queuedAfterBdat(r, chunks.join('').length);
      else assert.equal(r.line, `250 2.0.0 Ok: ${c.length} bytes`);
    }
    smtp.close();
    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('Subject: bdat big')), 30_000);
    const got = sink.messages.find((m) => m.data.includes('Subject: bdat big'))!.data.toString('latin1');
    assert.ok(got.includes(body + 'lf only\r\nend\r\n'), `body of ${got.length} bytes differs`);
  });

  test('RSET gives up a BDAT transaction: nothing is queued, the next one goes through', async () => {
    const smtp = await session();
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    const gone = 'Subject: bdat abandoned\r\n\r\nnever\r\n';
    smtp.write(`BDAT ${gone.length}\r\n${gone}`);
    assert.equal((await smtp.read()).code, 250);
    assert.equal((await smtp.cmd('RSET')).line, '250 2.0.0 Ok');
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    const kept = 'Subject: bdat after rset\r\n\r\nhi\r\n';
    smtp.write(`BDAT ${kept.length} LAST\r\n${kept}`);
    queuedAfterBdat(await smtp.read(), kept.length);
    smtp.close();
    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('Subject: bdat after rset')), 30_000);
    assert.ok(!sink.messages.some((m) => m.data.includes('Subject: bdat abandoned')));
  });

  test('smtpd_forbid_bare_newline = reject refuses BDAT content with a bare LF, as DATA content', async () => {
    const smtp = await session(bareRejectPort);
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    assert.equal((await smtp.cmd('DATA')).code, 354);
    smtp.write('Subject: bare\r\n\r\nbare\nline\r\n.\r\n');
    const viaData = await smtp.read();
    assert.equal(viaData.line, '550 5.5.2 mx.postactor.test Error: bare <LF> received');
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    const msg = 'Subject: bare\r\n\r\nbare\nline\r\n';
    smtp.write(`BDAT 5\r\n${msg.slice(0, 5)}BDAT ${msg.length - 5} LAST\r\n${msg.slice(5)}`);
    assert.equal((await smtp.read()).code, 250);
    assert.equal((await smtp.read()).line, viaData.line);
    smtp.close();
  });

  test('a message received with BDAT LAST forgives earlier errors, as one received with DATA', async () => {
    const smtp = await session(strictPort);
    assert.equal((await smtp.cmd('FOO')).code, 500);
    assert.equal((await smtp.cmd('BAR')).code, 500);
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    const msg = 'Subject: bdat forgiven\r\n\r\nhi\r\n';
    smtp.write(`BDAT 4\r\n${msg.slice(0, 4)}`);
    assert.equal((await smtp.read()).code, 250);
    smtp.write(`BDAT ${msg.length - 4} LAST\r\n${msg.slice(4)}`);
    queuedAfterBdat(await smtp.read(), msg.length);
    assert.equal((await smtp.cmd('FOO')).code, 500);
    assert.equal((await smtp.cmd('BAR')).code, 500);
    assert.equal((await smtp.cmd('NOOP')).line, '250 2.0.0 Ok');
    smtp.close();
  });

  test('a client that stalls inside a chunk times out "after BDAT (N bytes)"', async () => {
    const smtp = await session(slowPort);
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    smtp.write('BDAT 100 LAST\r\n0123456789');
    assert.equal((await smtp.read()).line, '421 4.4.2 mx.postactor.test Error: timeout exceeded');
    await server.waitForLog(/timeout after BDAT \(10 bytes\) from \S+\[127\.0\.0\.1\]/, 10_000);
  });

  test('BDAT 0 LAST ends a message; BDAT without recipients is refused and its chunk skipped', async () => {
    const smtp = await session();
    // No MAIL: the chunk is read and dropped, the next command is understood; without LAST the
    // transaction stays in error (as Postfix's: MAIL after BDAT) until RSET.
    smtp.write('BDAT 12\r\nHELO there\r\n');
    assert.equal((await smtp.read()).line, '503 5.5.1 Error: need RCPT command');
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).line, '503 5.5.1 Error: MAIL after BDAT');
    assert.equal((await smtp.cmd('RSET')).line, '250 2.0.0 Ok');
    smtp.write('BDAT 12 LAST\r\nHELO there\r\n');
    assert.equal((await smtp.read()).line, '503 5.5.1 Error: need RCPT command');
    assert.equal((await smtp.cmd('NOOP')).line, '250 2.0.0 Ok');
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    const msg = 'Subject: bdat zero\r\n\r\nhi\r\n';
    smtp.write(`BDAT ${msg.length}\r\n${msg}`);
    assert.equal((await smtp.read()).code, 250);
    queuedAfterBdat(await smtp.cmd('BDAT 0 LAST'), msg.length);
    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('Subject: bdat zero')), 30_000);
    smtp.close();
  });

  test('after a failed BDAT the rest of the transaction is discarded until BDAT LAST; RSET starts afresh', async () => {
    const smtp = await session();
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    assert.equal((await smtp.cmd('BDAT 0')).line, '551 5.7.1 Null BDAT request');
    smtp.write('BDAT 5\r\nabcde');
    assert.equal((await smtp.read()).line, '551 5.0.0 Discarded 5 bytes after earlier error');
    // MAIL, RCPT and DATA have no place inside a BDAT transaction.
    assert.equal((await smtp.cmd('MAIL FROM:<x@example.org>')).line, '503 5.5.1 Error: nested MAIL command');
    assert.equal((await smtp.cmd('RCPT TO:<x@example.com>')).line, '503 5.5.1 Error: RCPT after BDAT');
    assert.equal((await smtp.cmd('DATA')).line, '503 5.5.1 Error: DATA after BDAT');
    smtp.write('BDAT 3 LAST\r\nxyz');
    assert.equal((await smtp.read()).line, '551 5.0.0 Discarded 3 bytes after earlier error');
    // The transaction is over: a new one may start.
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RSET')).code, 250);
    smtp.close();
    await server.waitForLog(/warning: NOQUEUE: null BDAT request from \S+\[127\.0\.0\.1\]|warning: \S+: null BDAT request from/, 10_000);
  });

  test('smtpd_data_restrictions answer the first BDAT as they answer DATA; the pipelined chunks are skipped', async () => {
    const smtp = await session();
    assert.equal((await smtp.cmd('MAIL FROM:<bad@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    const viaData = await smtp.cmd('DATA');
    assert.equal(viaData.code, 554, viaData.line);
    assert.equal((await smtp.cmd('RSET')).code, 250);
    smtp.write('MAIL FROM:<bad@example.org>\r\nRCPT TO:<b@example.com>\r\nBDAT 10\r\n0123456789BDAT 5 LAST\r\nabcdeNOOP\r\n');
    assert.equal((await smtp.read()).code, 250);
    assert.equal((await smtp.read()).code, 250);
    assert.equal((await smtp.read()).line, viaData.line);
    assert.equal((await smtp.read()).line, '551 5.0.0 Discarded 5 bytes after earlier error');
    assert.equal((await smtp.read()).line, '250 2.0.0 Ok');
    smtp.close();
  });

  test('a malformed BDAT is answered 521 and the session ends, with Postfix\'s warning', async () => {
    const smtp = await session();
    const r = await smtp.cmd('BDAT ten LAST');
    assert.equal(r.line, '521 5.5.4 Syntax: BDAT count [LAST]');
    await assert.rejects(smtp.read(), /connection closed/);
    await server.waitForLog(/warning: NOQUEUE: malformed BDAT command syntax from \S+\[127\.0\.0\.1\]: BDAT ten LAST/, 10_000);
  });

  test('smtpd_discard_ehlo_keywords = chunking hides CHUNKING, and BDAT is then refused with 521', async () => {
    const smtp = await session(noChunkingPort);
    const ehlo = await smtp.cmd('EHLO client.test');
    assert.ok(!ehlo.lines.includes('CHUNKING'), ehlo.lines.join('|'));
    assert.equal((await smtp.cmd('BDAT 5 LAST')).line, '521 5.5.1 Error: command not implemented');
    await assert.rejects(smtp.read(), /connection closed/);
  });

  test('a chunk that would pass message_size_limit is refused (552 5.3.4), the transaction then discarded', async () => {
    const smtp = await session(smallPort);
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.com>')).code, 250);
    smtp.write(`BDAT 600\r\n${'a'.repeat(598)}\r\n`);
    assert.equal((await smtp.read()).line, '250 2.0.0 Ok: 600 bytes');
    smtp.write(`BDAT 600 LAST\r\n${'b'.repeat(598)}\r\n`);
    assert.equal((await smtp.read()).line, '552 5.3.4 Chunk exceeds message size limit');
    assert.equal((await smtp.cmd('NOOP')).code, 250);
    smtp.close();
    await server.waitForLog(/warning: \S+: BDAT request from \S+\[127\.0\.0\.1\] exceeds message size limit/, 10_000);
  });
});
