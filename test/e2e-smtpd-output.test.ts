/**
 * End to end, what a hostile client's text becomes on its way out, as in Postfix: a HELO name
 * with ';', spaces, '<>' or control characters is neutered ('?') before the Received header and
 * the log see it (actors/smtpd/syntax.ts); a 200 kB header is kept cut at header_size_limit
 * (actors/cleanup/header-limit.ts); content lines longer than smtp_line_length_limit (998) go
 * out broken with CRLF SPACE and the log says so (src/smtp/client.ts dotStuff); VRFY echoes no
 * control characters; the maillog makes control characters '?' (src/log/maillog.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { dotStuff } from '../src/smtp/client.js';
import { printable } from '../src/log/maillog.js';
import { escapeBytes } from '../src/log/escape.js';
import { SmtpDialogue, startServer } from './helpers/server.js';

describe('hostile text on its way out', () => {
  test('dotStuff breaks lines longer than the limit as Postfix smtp_text_out (CRLF SPACE)', () => {
    const line = 'a'.repeat(2500);
    const out = dotStuff(Buffer.from(`${line}\r\n.${'b'.repeat(10)}\r\n${'c'.repeat(998)}\n`), 998).toString();
    const lines = out.split('\r\n');
    assert.deepEqual(lines.map((l) => l.length), [998, 998, 506, 12, 998, 1, 0]);
    assert.equal(lines[1]![0], ' ');
    assert.equal(lines.slice(0, 3).join('').replace(/ /g, ''), line);
    assert.equal(lines[3], '..bbbbbbbbbb');
    assert.equal(dotStuff(Buffer.from(`${line}\r\n`), 0).toString(), `${line}\r\n.\r\n`);
  });

  test('printable() and escape() as Postfix', () => {
    assert.equal(printable('a\r\nb\x00c\x7fd ü'), 'a??b?c?d ü');
    assert.equal(escapeBytes('a\\b\r\n\x01\xff'), 'a\\\\b\\r\\n\\001\\377');
  });

  test('HELO with ";" etc. is neutered in Received and the log; a 200 kB header is cut at 102,400 bytes and goes out folded at 998', async (t) => {
    const sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    t.after(() => sink.close());
    const server = await startServer({ sinkPort, mainCf: { mynetworks: '127.0.0.1/32', relay_domains: 'example.net' } });
    t.after(() => server.stop());

    const { smtp } = await SmtpDialogue.connect(server.port, { localAddress: '127.0.0.2' });
    assert.equal((await smtp.cmd('EHLO evil;host (x) <y>\x01')).code, 250);
    assert.equal((await smtp.cmd('VRFY a\x01b')).line, '252 2.0.0 a?b');
    assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await smtp.cmd('RCPT TO:<b@example.net>')).code, 250);
    // Refused (not a relay domain): its reject line carries the HELO name (helo=<…>).
    assert.match((await smtp.cmd('RCPT TO:<c@elsewhere.example>')).line, /^4\d\d 4\.7\.1 <c@elsewhere\.example>: Relay access denied$/);
    assert.equal((await smtp.cmd('DATA')).code, 354);
    const subject = 'S'.repeat(200_000);
    const bodyLine = 'x'.repeat(3000);
    smtp.write(`Subject: ${subject}\r\nX-Test: long-header\r\n\r\n${bodyLine}\r\n.\r\n`);
    assert.match((await smtp.read()).line, /^250 2\.0\.0 Ok: queued as /);
    smtp.close();

    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('X-Test: long-header')), 30_000);
    const data = sink.messages.find((m) => m.data.includes('X-Test: long-header'))!.data.toString('latin1');
    const lines = data.split('\r\n');
    for (const l of lines) assert.ok(l.length <= 998, `a line of ${l.length} bytes went out`);
    // Received: the neutered HELO name.
    assert.match(data, /^Received: from evil\?host\?\?x\?\?\?y\?\? \(\S+ \[127\.0\.0\.2\]\)\r\n/);
    // Subject: one folded header of 102,400 bytes ("Subject: " + text), unfolded.
    const start = lines.findIndex((l) => l.startsWith('Subject: '));
    let header = lines[start]!;
    for (let i = start + 1; lines[i]!.startsWith(' '); i++) header += lines[i]!.slice(1);
    assert.equal(header.length, 102_400);
    assert.equal(header, `Subject: ${subject}`.slice(0, 102_400));
    // The body line: broken in three pieces, nothing lost.
    const body = lines.slice(lines.indexOf('') + 1);
    assert.equal(body.slice(0, 4).join('').replace(/ /g, ''), bodyLine);
    await server.waitForLog(/postactor\/(?:smtp|relay)\[\d+\]: \S+: breaking line > 998 bytes with <CR><LF>SPACE$/, 10_000);
    // The log has the neutered name too, and no raw control character anywhere.
    await server.waitForLog(/: reject: RCPT from \S+\[127\.0\.0\.2\]: .* helo=<evil\?host\?\?x\?\?\?y\?\?>$/, 10_000);
    assert.ok(server.logLines().every((l) => !/[\x00-\x08\x0b-\x1f\x7f]/.test(l)));
  });
});
