import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';

import { SmtpClient, dotStuff, type SmtpClientOptions } from '../src/smtp/client.js';
import { SmtpSink, type SinkProfile } from '../src/smtp/sink.js';
import { closingAtMail } from './helpers/closing-next-hop.js';

const TIMEOUTS: SmtpClientOptions = {
  heloName: 'client.test', connectTimeout: 2000, heloTimeout: 2000, mailTimeout: 2000, rcptTimeout: 2000,
  dataInitTimeout: 2000, dataXferTimeout: 2000, dataDoneTimeout: 2000, quitTimeout: 500,
};

async function withSink(profile: SinkProfile, fn: (sink: SmtpSink, port: number) => Promise<void>): Promise<void> {
  const sink = new SmtpSink({ keepMessages: true, ...profile });
  const port = await sink.listen(0);
  try { await fn(sink, port); } finally { await sink.close(); }
}

/** A port on 127.0.0.1 with nothing listening. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

const host = (port: number) => ({ host: 'sink.test', addr: '127.0.0.1', port });
const body = Buffer.from('Subject: hi\r\n\r\nhello\r\n');

test('pipelined delivery reports each recipient reply', async () => {
  await withSink({
    rcptReply: (r) => (r.startsWith('soft') ? '450 4.2.0 try later' : r.startsWith('hard') ? '550 5.1.1 User unknown' : null),
  }, async (sink, port) => {
    const client = new SmtpClient(TIMEOUTS);
    const res = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['soft@y.test', 'ok@y.test', 'hard@y.test'], size: body.length }, body);
    await client.close();
    assert.equal(res.kind, 'sent');
    assert.deepEqual(res.recipients.map((r) => [r.index, r.ok, r.reply.code, r.reply.enhanced]),
      [[0, false, 450, '4.2.0'], [1, true, 250, '2.0.0'], [2, false, 550, '5.1.1']]);
    assert.equal(res.recipients[2]!.reply.text, 'User unknown');
    assert.match(res.queuedAs!, /^2\.0\.0 Ok: queued as \d+$/);
    assert.equal(res.remoteHost, 'sink.test');
    assert.equal(res.remoteAddr, '127.0.0.1');
    assert.equal(res.remotePort, port);
    assert.equal(sink.messages.length, 1);
    assert.deepEqual(sink.messages[0]!.recipients, ['ok@y.test']);
  });
});

test('without PIPELINING commands go one at a time and results are the same', async () => {
  await withSink({ pipelining: false, rcptReply: (r) => (r.startsWith('hard') ? '550 5.1.1 User unknown' : null) }, async (sink, port) => {
    const client = new SmtpClient(TIMEOUTS);
    const res = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test', 'hard@y.test'] }, body);
    await client.close();
    assert.equal(res.kind, 'sent');
    assert.deepEqual(res.recipients.map((r) => r.ok), [true, false]);
    assert.equal(sink.stats.messages, 1);
  });
});

test('all recipients rejected: no message, per-recipient replies, connection stays usable', async () => {
  for (const pipelining of [true, false]) {
    await withSink({ pipelining, rcptReply: (r) => (r.startsWith('hard') ? '550 5.1.1 User unknown' : null) }, async (sink, port) => {
      const client = new SmtpClient(TIMEOUTS);
      const res = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['hard1@y.test', 'hard2@y.test'] }, body);
      assert.equal(res.kind, 'sent');
      assert.deepEqual(res.recipients.map((r) => [r.ok, r.reply.code]), [[false, 550], [false, 550]]);
      const res2 = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['ok@y.test'] }, body);
      assert.equal(res2.kind, 'sent');
      assert.equal(res2.recipients[0]!.ok, true);
      await client.close();
      assert.equal(sink.stats.messages, 1);
      assert.equal(sink.stats.connections, 1);
    });
  }
});

test('MAIL FROM rejected is a message failure for every recipient', async () => {
  await withSink({ mailReply: () => '553 5.7.1 Sender rejected' }, async (sink, port) => {
    const client = new SmtpClient(TIMEOUTS);
    const res = await client.deliver([host(port)], { sender: 'bad@x.test', recipients: ['a@y.test', 'b@y.test'] }, body);
    await client.close();
    assert.equal(res.kind, 'message-failure');
    assert.deepEqual(res.recipients.map((r) => [r.ok, r.reply.code, r.reply.enhanced]), [[false, 553, '5.7.1'], [false, 553, '5.7.1']]);
    assert.match(res.reason!, /said: 553 5\.7\.1 Sender rejected \(in reply to MAIL FROM command\)/);
    assert.equal(sink.stats.messages, 0);
  });
});

test("a 421 to MAIL FROM and a hang-up is 'said: 421 … (in reply to MAIL FROM command)', not a lost connection at RCPT TO", async () => {
  for (const pipelining of [true, false]) {
    const peer = await closingAtMail(pipelining);
    try {
      const client = new SmtpClient(TIMEOUTS);
      const res = await client.deliver([host(peer.port)], { sender: 's@x.test', recipients: ['a@y.test', 'b@y.test'] }, body);
      assert.equal(res.kind, 'message-failure', `pipelining ${pipelining}`);
      assert.equal(res.reason, 'host sink.test[127.0.0.1] said: 421 4.3.2 Service shutting down (in reply to MAIL FROM command)');
      assert.deepEqual(res.recipients.map((r) => [r.ok, r.reply.code, r.reply.enhanced]), [[false, 421, '4.3.2'], [false, 421, '4.3.2']]);
      // The connection is not parked: the next delivery opens a new one (and gets the same answer).
      const again = await client.deliver([host(peer.port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
      assert.equal(again.reason, 'host sink.test[127.0.0.1] said: 421 4.3.2 Service shutting down (in reply to MAIL FROM command)');
      await client.close();
    } finally {
      peer.close();
    }
  }
});

test('end-of-data 554 is a message failure for the accepted recipients', async () => {
  await withSink({ dataReply: () => '554 5.7.1 Content rejected' }, async (_sink, port) => {
    const client = new SmtpClient(TIMEOUTS);
    const res = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test', 'b@y.test'] }, body);
    await client.close();
    assert.equal(res.kind, 'message-failure');
    assert.deepEqual(res.recipients.map((r) => [r.ok, r.reply.code, r.reply.text]), [[false, 554, 'Content rejected'], [false, 554, 'Content rejected']]);
    assert.match(res.reason!, /in reply to end of DATA command/);
  });
});

test('connection refused is a site failure and the next host is tried', async () => {
  const dead = await closedPort();
  await withSink({}, async (sink, port) => {
    const client = new SmtpClient(TIMEOUTS);
    const one = await client.deliver([{ host: 'mx1.test', addr: '127.0.0.1', port: dead }], { sender: 's@x.test', recipients: ['a@y.test', 'b@y.test'] }, body);
    assert.equal(one.kind, 'site-failure');
    assert.equal(one.reason, `connect to mx1.test[127.0.0.1]:${dead}: Connection refused`);
    assert.equal(one.recipients.length, 2);
    assert.deepEqual(one.recipients.map((r) => [r.index, r.ok, r.reply.enhanced]), [[0, false, '4.4.1'], [1, false, '4.4.1']]);
    assert.ok(one.recipients[0]!.reply.code >= 400 && one.recipients[0]!.reply.code < 500);

    const two = await client.deliver([{ host: 'mx1.test', addr: '127.0.0.1', port: dead }, { host: 'mx2.test', addr: '127.0.0.1', port }],
      { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    await client.close();
    assert.equal(two.kind, 'sent');
    assert.equal(two.remoteHost, 'mx2.test');
    assert.equal(sink.stats.messages, 1);
  });
});

test('421 greeting is a site failure with that reply', async () => {
  await withSink({ greeting: '421 4.3.2 Service shutting down' }, async (_sink, port) => {
    const client = new SmtpClient(TIMEOUTS);
    const res = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    await client.close();
    assert.equal(res.kind, 'site-failure');
    assert.equal(res.recipients[0]!.reply.code, 421);
    assert.equal(res.recipients[0]!.reply.enhanced, '4.3.2');
    assert.equal(res.reason, 'host sink.test[127.0.0.1] refused to talk to me: 421 4.3.2 Service shutting down');
  });
});

test('a second delivery reuses the cached connection', async () => {
  await withSink({}, async (sink, port) => {
    const client = new SmtpClient(TIMEOUTS);
    for (let i = 0; i < 3; i++) {
      const res = await client.deliver([host(port)], { sender: 's@x.test', recipients: [`r${i}@y.test`] }, body);
      assert.equal(res.kind, 'sent');
    }
    await client.close();
    assert.equal(sink.stats.connections, 1);
    assert.equal(sink.stats.messages, 3);
  });
});

test('a cached connection closed by the server is replaced transparently', async () => {
  await withSink({}, async (sink, port) => {
    const client = new SmtpClient(TIMEOUTS);
    assert.equal((await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body)).kind, 'sent');
    await sink.close(); // destroys the server side of the parked connection
    const sink2 = new SmtpSink();
    await sink2.listen(port);
    try {
      await new Promise((r) => setTimeout(r, 50));
      const res = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
      assert.equal(res.kind, 'sent');
      assert.equal(sink2.stats.messages, 1);
    } finally {
      await client.close();
      await sink2.close();
    }
  }).catch((e) => { if (!/Not running/.test(String(e))) throw e; });
});

test('reuseLimit and idleTimeout close cached connections', async () => {
  await withSink({}, async (sink, port) => {
    const client = new SmtpClient({ ...TIMEOUTS, reuseLimit: 2, idleTimeout: 100 });
    for (let i = 0; i < 4; i++) await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    assert.equal(sink.stats.connections, 2);
    await new Promise((r) => setTimeout(r, 250));
    await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    assert.equal(sink.stats.connections, 3);
    await client.close();
  });
});

test("Postfix's connection reuse defaults: no count limit (smtp_connection_reuse_count_limit = 0), and a connection older than smtp_connection_reuse_time_limit is not parked again", async () => {
  await withSink({}, async (sink, port) => {
    const unlimited = new SmtpClient(TIMEOUTS);
    for (let i = 0; i < 150; i++) await unlimited.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    assert.equal(sink.stats.connections, 1, 'one connection carries all 150 transactions');
    await unlimited.close();
    const aged = new SmtpClient({ ...TIMEOUTS, reuseTimeLimit: 150 });
    await aged.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    await aged.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    assert.equal(sink.stats.connections, 2, 'reused while younger than the time limit');
    await new Promise((r) => setTimeout(r, 200));
    await aged.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body); // reused once more, then closed
    await aged.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    assert.equal(sink.stats.connections, 3);
    await aged.close();
  });
});

test('dot-stuffing round trip keeps content intact with CRLF', async () => {
  await withSink({}, async (sink, port) => {
    const client = new SmtpClient(TIMEOUTS);
    const raw = Buffer.from('Subject: dots\n\n.\n..x\n.y\r\nbare lf\nlast line without newline');
    const res = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, raw);
    await client.close();
    assert.equal(res.kind, 'sent');
    assert.equal(sink.messages[0]!.data.toString(), 'Subject: dots\r\n\r\n.\r\n..x\r\n.y\r\nbare lf\r\nlast line without newline\r\n');
  });
});

test('dotStuff converts and terminates in one buffer', () => {
  assert.equal(dotStuff(Buffer.from('')).toString(), '.\r\n');
  assert.equal(dotStuff(Buffer.from('a\r\n')).toString(), 'a\r\n.\r\n');
  assert.equal(dotStuff(Buffer.from('.\n.\n')).toString(), '..\r\n..\r\n.\r\n');
  assert.equal(dotStuff(Buffer.from('a\r\nb\r\n.c\r\nd\ne\r\nf')).toString(), 'a\r\nb\r\n..c\r\nd\r\ne\r\nf\r\n.\r\n');
  assert.equal(dotStuff(new Uint8Array(Buffer.from('\n\n\n\n'))).toString(), '\r\n\r\n\r\n\r\n.\r\n');
  const big = Buffer.alloc(3 * 1024 * 1024, 'x');
  for (let i = 0; i < big.length; i += 64) big[i] = i % 128 === 0 ? 46 : 10;
  const out = dotStuff(big);
  assert.ok(out.subarray(-5).equals(Buffer.from('\r\n.\r\n')));
  assert.equal(out.indexOf('\n\n'), -1);
});

test('black-hole host times out as a site failure', async () => {
  await withSink({ blackHole: true }, async (_sink, port) => {
    const client = new SmtpClient({ ...TIMEOUTS, heloTimeout: 200 });
    const t0 = Date.now();
    const res = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    await client.close();
    assert.equal(res.kind, 'site-failure');
    assert.equal(res.reason, 'conversation with sink.test[127.0.0.1] timed out while receiving the initial server greeting');
    assert.equal(res.recipients[0]!.reply.enhanced, '4.4.2');
    assert.ok(Date.now() - t0 < 1500);
  });
});

test('slow end-of-data reply times out after the dot and does not try the next host', async () => {
  await withSink({ dataDelayMs: 500 }, async (sink, port) => {
    const client = new SmtpClient({ ...TIMEOUTS, dataDoneTimeout: 100 });
    const res = await client.deliver([host(port), host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    await client.close();
    assert.equal(res.kind, 'site-failure');
    assert.match(res.reason!, /timed out while sending end of data -- message may be sent more than once$/);
    assert.equal(sink.stats.connections, 1);
  });
});

test('replies split across chunks and multi-line replies are parsed', async () => {
  // A hand-rolled server that dribbles its replies one byte at a time.
  const server = net.createServer((s) => {
    const say = async (text: string) => { for (const ch of text) { s.write(ch); await new Promise((r) => setImmediate(r)); } };
    let buf = '';
    let inData = false;
    void say('220-hello\r\n220 there\r\n');
    s.on('data', (d) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (inData) { if (l === '.') { inData = false; void say('250-2.0.0 first\r\n250 2.0.0 queued as Z\r\n'); } continue; }
        const v = l.slice(0, 4).toUpperCase();
        if (v === 'EHLO') void say('250-h\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 1000\r\n');
        else if (v === 'MAIL') void say('250 2.1.0 Ok\r\n');
        else if (v === 'RCPT') void say('250 2.1.5 Ok\r\n');
        else if (v === 'DATA') { inData = true; void say('354 go\r\n'); }
        else if (v === 'QUIT') { void say('221 bye\r\n').then(() => s.end()); }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const client = new SmtpClient(TIMEOUTS);
    const res = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'], size: 10 }, body);
    assert.equal(res.kind, 'sent');
    assert.deepEqual(res.recipients[0]!.reply, { code: 250, enhanced: '2.0.0', text: 'first queued as Z' });
    const big = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'], size: 5000 }, body);
    assert.equal(big.kind, 'message-failure');
    assert.equal(big.recipients[0]!.reply.enhanced, '5.3.4');
    await client.close();
  } finally {
    server.close();
  }
});

test('10 concurrent deliveries all succeed', async () => {
  await withSink({ keepMessages: false }, async (sink, port) => {
    const client = new SmtpClient(TIMEOUTS);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      client.deliver([host(port)], { sender: 's@x.test', recipients: [`r${i}@y.test`, `q${i}@y.test`] }, body)));
    assert.ok(results.every((r) => r.kind === 'sent' && r.recipients.every((x) => x.ok)));
    // And again: the parked connections are reused.
    await Promise.all(Array.from({ length: 10 }, () => client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body)));
    await client.close();
    assert.equal(sink.stats.messages, 20);
    assert.equal(sink.stats.recipients, 30);
    assert.equal(sink.stats.connections, 10);
  });
});

/**
 * A scripted next hop on 127.0.0.1: greets, splits the input into lines, and hands `answer`
 * each command's first four letters upper-cased (and "." at the end of data) with the socket to
 * reply on; when `answer` returns 'data' (its 354), the lines up to "." are the message.
 */
async function nextHop(greeting: string, answer: (verb: string, s: net.Socket) => void | 'data', onEnd?: (s: net.Socket) => void): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((s) => {
    let buf = '';
    let inData = false;
    s.write(`${greeting}\r\n`);
    s.on('error', () => undefined);
    if (onEnd) s.on('end', () => onEnd(s));
    s.on('data', (d) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (inData) {
          if (l === '.') { inData = false; answer('.', s); }
          continue;
        }
        if (answer(l.slice(0, 4).toUpperCase(), s) === 'data') inData = true;
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

test('smtp_skip_quit_response: QUIT is sent and the connection closed without waiting for the 221 (a next hop that never answers it)', async () => {
  const seen: string[] = [];
  let closed!: () => void;
  const closedP = new Promise<void>((r) => { closed = r; });
  const { server, port } = await nextHop('220 mute-at-quit', (v, s) => {
    if (v === '.') { s.write('250 2.0.0 queued\r\n'); return; }
    seen.push(v);
    if (v === 'EHLO') s.write('250-h\r\n250 PIPELINING\r\n');
    else if (v === 'DATA') { s.write('354 go\r\n'); return 'data'; }
    else if (v !== 'QUIT') s.write('250 2.0.0 Ok\r\n');
  }, (s) => { seen.push('end'); s.end(); closed(); });
  try {
    const client = new SmtpClient({ ...TIMEOUTS, quitTimeout: 10_000, skipQuitResponse: true });
    const res = await client.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    assert.equal(res.kind, 'sent');
    const t0 = Date.now();
    await client.close();
    await closedP;
    assert.ok(Date.now() - t0 < 5000, `closed after ${Date.now() - t0} ms, not after smtp_quit_timeout`);
    assert.deepEqual(seen.slice(-2), ['QUIT', 'end']);
  } finally {
    server.close();
  }
});

test("QUIT goes with the end of data when the connection will not be kept (Postfix's smtp_proto.c), and not when it will be parked", async () => {
  // The next hop answers "." only after 300 ms: a QUIT seen before that answer was pipelined.
  const events: string[] = [];
  const { server, port } = await nextHop('220 slow-dot', (v, s) => {
    if (v === '.') { events.push('.'); setTimeout(() => { events.push('250 to .'); s.write('250 2.0.0 queued\r\n'); }, 300); }
    else if (v === 'EHLO') s.write('250-h\r\n250 PIPELINING\r\n');
    else if (v === 'DATA') { s.write('354 go\r\n'); return 'data'; }
    else if (v === 'QUIT') { events.push('QUIT'); setTimeout(() => { if (!s.destroyed) s.end('221 2.0.0 Bye\r\n'); }, 350); }
    else s.write('250 2.0.0 Ok\r\n');
  });
  try {
    // One transaction per connection (smtp_connection_reuse_count_limit = 1): QUIT before the 250,
    // and the 221 is still read when smtp_skip_quit_response is off.
    const once = new SmtpClient({ ...TIMEOUTS, reuseLimit: 1, skipQuitResponse: false });
    const r1 = await once.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    assert.equal(r1.kind, 'sent');
    assert.equal(r1.recipients[0]!.reply.code, 250);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(events, ['.', 'QUIT', '250 to .']);
    await once.close();
    // A connection that will be parked: no QUIT until the client closes.
    events.length = 0;
    const kept = new SmtpClient({ ...TIMEOUTS, skipQuitResponse: true });
    const r2 = await kept.deliver([host(port)], { sender: 's@x.test', recipients: ['a@y.test'] }, body);
    assert.equal(r2.kind, 'sent');
    assert.deepEqual(events, ['.', '250 to .']);
    await kept.close();
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(events, ['.', '250 to .', 'QUIT']);
  } finally {
    server.close();
  }
});

test('QUIT goes with the RSET of an aborted last transaction (every recipient refused), as Postfix', async () => {
  const events: string[] = [];
  const { server, port } = await nextHop('220 refusing', (v, s) => {
    if (v === 'EHLO') s.write('250-h\r\n250 PIPELINING\r\n');
    else if (v === 'MAIL') s.write('250 2.1.0 Ok\r\n');
    else if (v === 'RCPT') s.write('550 5.1.1 User unknown\r\n');
    else if (v === 'DATA') s.write('554 5.5.1 Error: no valid recipients\r\n');
    else if (v === 'RSET') { events.push('RSET'); setTimeout(() => { events.push('250 to RSET'); s.write('250 2.0.0 Ok\r\n'); }, 300); }
    else if (v === 'QUIT') { events.push('QUIT'); setTimeout(() => { if (!s.destroyed) s.end('221 2.0.0 Bye\r\n'); }, 350); }
  });
  try {
    const once = new SmtpClient({ ...TIMEOUTS, reuseLimit: 1, skipQuitResponse: true });
    const r = await once.deliver([host(port)], { sender: 's@x.test', recipients: ['nobody@y.test'] }, body);
    assert.equal(r.kind, 'sent');
    assert.equal(r.recipients[0]!.ok, false);
    assert.equal(r.recipients[0]!.reply.code, 550);
    assert.deepEqual(events, ['RSET', 'QUIT', '250 to RSET']);
    await once.close();
    // Kept for the next delivery: RSET alone.
    events.length = 0;
    const kept = new SmtpClient(TIMEOUTS);
    await kept.deliver([host(port)], { sender: 's@x.test', recipients: ['nobody@y.test'] }, body);
    assert.deepEqual(events, ['RSET', '250 to RSET']);
    await kept.close();
  } finally {
    server.close();
  }
});
