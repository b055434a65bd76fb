/**
 * End to end, smtpd's total session limit and open-file reserve (actors/smtpd/sessions.ts) and
 * its bounded memory per session (actors/smtpd/spool.ts), against a real server:
 *  - default_process_limit = 4: a 5th concurrent client waits, not greeted, and is greeted as
 *    soon as one of the 4 closes; waiting clients that hang up leave no place taken; one that
 *    waits smtpd_timeout gets "421 4.3.2 All server ports are busy" and the log line;
 *  - default_process_limit = 2: sessions that did STARTTLS give their place back when they end;
 *  - default_process_limit = 1, a wrapper-mode port: a waiting client's TLS handshake and 220
 *    come once the place frees;
 *  - started under `prlimit --nofile=1024:2048`: smtpd raises the soft limit to 2048 itself;
 *  - under `prlimit --nofile=1024:1024`, a bounded flood of 1,100 held connections: on a port
 *    without the per-client limit the flood fills that port's share of the descriptors and the
 *    rest is told "all server ports busy", while another port still takes and delivers mail; on
 *    a port with anvil's default limit (50) and a process limit (100) the flood client gets 50
 *    sessions (past 100 sessions the rest would wait for a place within the descriptor budget,
 *    then be refused by anvil) and a normal client is served and its mail delivered; the server never runs out of
 *    descriptors;
 *  - 30 slow clients each sending 10 MB: the server's RSS (from /proc) grows by < 50 MB while
 *    all 30 are in the middle of their DATA.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tls from 'node:tls';
import * as net from 'node:net';
import { describe, test } from 'node:test';

import { SmtpSink } from '../src/smtp/sink.js';
import { tempDirs } from './helpers/temp.js';
import { BACKEND_SERVICES, freePort, sendRaw, SmtpDialogue, startServer, type Reply, type TestServer } from './helpers/server.js';

const HOST = 'mx.postactor.test';
const tempDir = tempDirs('postactor-sessions-');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sessions still open, closed before a server stops (it would wait for them to finish). */
const live = new Set<net.Socket>();
function closeAll(): void {
  for (const s of live) s.destroy();
  live.clear();
}

/** One held connection: its first reply line (220 …, 421 …, or '' when closed without one). */
function holdConnection(port: number, localAddress: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    live.add(s);
    let buf = '';
    const done = (line: string) => { clearTimeout(t); resolve(line); };
    const t = setTimeout(() => done(buf || 'timeout'), 20_000);
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\r\n');
      if (nl >= 0) done(buf.slice(0, nl));
    });
    s.on('error', () => done(buf || 'error'));
    s.on('close', () => done(buf || 'closed'));
  });
}

/** n held connections, opened 100 at a time; their first reply lines. */
async function flood(port: number, from: string, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i += 100) out.push(...(await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => holdConnection(port, from)))));
  return out;
}

function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

function limitsOf(pid: number): { soft: number; hard: number } {
  const m = /^Max open files\s+(\d+)\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))!;
  return { soft: Number(m[1]), hard: Number(m[2]) };
}

function countLike(lines: string[], re: RegExp): number {
  return lines.filter((l) => re.test(l)).length;
}

describe('smtpd total session limit', () => {
  test('default_process_limit = 4: the 5th client waits, unanswered, and is greeted once one of the 4 closes', async (t) => {
    const server = await startServer({ mainCf: { mynetworks: '127.0.0.1/32', default_process_limit: '4' } });
    t.after(async () => { closeAll(); await server.stop(); });
    const lines = await flood(server.port, '127.0.0.2', 4);
    assert.deepEqual(lines.map((l) => l.slice(0, 3)), ['220', '220', '220', '220']);
    // The 5th is parked: connected, but nothing is said to it.
    let fifthAt = 0;
    const fifth = holdConnection(server.port, '127.0.0.3').then((l) => { fifthAt = Date.now(); return l; });
    await server.waitForLog(/warning: service "127\.0\.0\.1:\d+" \(127\.0\.0\.1:\d+\) has reached its process limit "4": new clients may experience noticeable delays$/, 5000);
    await sleep(700);
    assert.equal(fifthAt, 0, 'the 5th client was answered while all 4 places were taken');
    // One session ends: the waiting client is greeted (whichever thread holds it).
    const first = [...live][0]!;
    const closedAt = Date.now();
    first.destroy();
    live.delete(first);
    const line = await fifth;
    assert.match(line, /^220 /);
    const waited = Date.now() - closedAt;
    assert.ok(waited < 2000, `greeted ${waited} ms after a place freed`);
    t.diagnostic(`greeted ${waited} ms after a place freed`);
    await server.waitForLog(/connect from \S+\[127\.0\.0\.3\]/, 5000);
    assert.equal(countLike(server.logLines(), /all server ports busy/), 0);
  });

  test('default_process_limit = 4: a waiting client that hangs up takes no place (4 sessions fit afterwards)', async (t) => {
    const server = await startServer({ mainCf: { mynetworks: '127.0.0.1/32', default_process_limit: '4' } });
    t.after(async () => { closeAll(); await server.stop(); });
    assert.deepEqual((await flood(server.port, '127.0.0.2', 4)).map((l) => l.slice(0, 3)), ['220', '220', '220', '220']);
    // Three clients park and hang up before their turn.
    for (let i = 0; i < 3; i++) {
      const s = net.connect({ port: server.port, host: '127.0.0.1', localAddress: '127.0.0.4' });
      await once(s, 'connect');
      await sleep(100);
      s.destroy();
    }
    await sleep(300);
    closeAll();
    await server.waitForLog(/disconnect from \S+\[127\.0\.0\.2\]/, 5000);
    await sleep(500);
    // All four places are free again, and a fifth client waits once more.
    assert.deepEqual((await flood(server.port, '127.0.0.3', 4)).map((l) => l.slice(0, 3)), ['220', '220', '220', '220']);
    let answered = '';
    void holdConnection(server.port, '127.0.0.3').then((l) => { answered = l; });
    await sleep(700);
    assert.equal(answered, '', 'a 5th client was answered while 4 sessions were open');
    const log = server.logLines();
    assert.equal(countLike(log, /127\.0\.0\.4/), 0, log.filter((l) => /127\.0\.0\.4/.test(l)).join('\n'));
  });

  test('default_process_limit = 4, smtpd_timeout = 2s: a client that waits that long is told "421 4.3.2 All server ports are busy"', async (t) => {
    const server = await startServer({ mainCf: { mynetworks: '127.0.0.1/32', default_process_limit: '4', smtpd_timeout: '2s' } });
    t.after(async () => { closeAll(); await server.stop(); });
    const held = await Promise.all(Array.from({ length: 4 }, () => SmtpDialogue.connect(server.port, { localAddress: '127.0.0.2' })));
    for (const { greeting } of held) assert.equal(greeting.code, 220);
    // The 4 sessions stay busy (a NOOP each 500 ms, within their own smtpd_timeout).
    let busy = true;
    const keep = (async () => {
      for (let i = 0; busy && i < 20; i++) {
        await Promise.all(held.map(({ smtp }) => smtp.cmd('NOOP')));
        await sleep(500);
      }
    })();
    const startedAt = Date.now();
    const line = await holdConnection(server.port, '127.0.0.3');
    const waited = Date.now() - startedAt;
    busy = false;
    await keep;
    for (const { smtp } of held) smtp.close();
    assert.equal(line, '421 4.3.2 All server ports are busy');
    assert.ok(waited >= 1800 && waited < 6000, `refused after ${waited} ms`);
    await server.waitForLog(/NOQUEUE: reject: CONNECT from \[127\.0\.0\.3\]:\d+: all server ports busy$/, 5000);
  });

  test('default_process_limit = 2: STARTTLS sessions give their place back when they end (6 in a row are all served)', async (t) => {
    const dir = tempDir();
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'),
      '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', `/CN=${HOST}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const server = await startServer({ mainCf: { mynetworks: '127.0.0.1/32', default_process_limit: '2', smtpd_tls_security_level: 'may',
      smtpd_tls_cert_file: join(dir, 'cert.pem'), smtpd_tls_key_file: join(dir, 'key.pem') } });
    t.after(() => server.stop());
    for (let i = 0; i < 6; i++) {
      const { smtp, greeting } = await SmtpDialogue.connect(server.port);
      assert.equal(greeting.code, 220, `session ${i + 1}: ${greeting.line}`);
      assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
      assert.equal((await smtp.cmd('STARTTLS')).code, 220);
      const secure = tls.connect({ socket: smtp.socket, rejectUnauthorized: false, servername: HOST });
      await once(secure, 'secureConnect');
      secure.resume(); // read the 221, so the end of the stream (and close) comes
      secure.end('QUIT\r\n');
      await once(secure, 'close');
      // Without sync: with two places, one closing late still leaves room; a leak fails by the third.
    }
  });

  test('default_process_limit = 1, wrapper mode: a waiting TLS client gets its handshake and 220 once the place frees', async (t) => {
    const dir = tempDir();
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'),
      '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', `/CN=${HOST}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const wrapper = await freePort();
    const server = await startServer({
      mainCf: { mynetworks: '127.0.0.1/32', default_process_limit: '1', smtpd_tls_cert_file: join(dir, 'cert.pem'), smtpd_tls_key_file: join(dir, 'key.pem') },
      masterCf: [
        '127.0.0.1:{{PORT}} inet n - n - 1 smtpd',
        `127.0.0.1:${wrapper} inet n - n - 1 smtpd -o smtpd_tls_wrappermode=yes`,
        ...BACKEND_SERVICES,
        '',
      ].join('\n'),
    });
    t.after(() => server.stop());
    const greet = (s: tls.TLSSocket) => new Promise<string>((resolve) => {
      let buf = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => { buf += d; if (buf.includes('\r\n')) resolve(buf.slice(0, buf.indexOf('\r\n'))); });
      s.on('error', () => resolve(buf || 'error'));
      s.on('close', () => resolve(buf || 'closed'));
    });
    const first = tls.connect({ port: wrapper, host: '127.0.0.1', rejectUnauthorized: false, servername: HOST });
    assert.match(await greet(first), /^220 /);
    let second = '';
    const s2 = tls.connect({ port: wrapper, host: '127.0.0.1', rejectUnauthorized: false, servername: HOST });
    const done = greet(s2).then((l) => { second = l; return l; });
    await sleep(700);
    assert.equal(second, '', 'the 2nd client was answered while the only place was taken');
    first.end('QUIT\r\n');
    assert.match(await done, /^220 /);
    s2.end('QUIT\r\n');
    await once(s2, 'close');
  });

  test('the soft open-file limit is raised to the hard limit at start (prlimit --nofile=1024:2048)', async (t) => {
    const server = await startServer({ launcher: ['prlimit', '--nofile=1024:2048'] });
    t.after(() => server.stop());
    assert.deepEqual(limitsOf(server.child!.pid!), { soft: 2048, hard: 2048 });
  });

  test('nofile 1024: a flood of 1,100 held connections neither exhausts descriptors nor locks out a normal client', async (t) => {
    const sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    t.after(() => sink.close());
    const open = await freePort();
    const server = await startServer({
      sinkPort,
      launcher: ['prlimit', '--nofile=1024:1024'],
      // The normal client (127.0.0.3) is outside mynetworks: it sends to a relay domain.
      mainCf: { mynetworks: '127.0.0.1/32', relay_domains: 'example.net' },
      masterCf: [
        // No per-client limit, no process limit: only this port's share of the descriptors,
        // (1024 - 128 reserved) / 2 per session / 2 smtpd services = 224 sessions.
        `127.0.0.1:${open} inet n - n - 0 smtpd -o smtpd_client_connection_count_limit=0`,
        '127.0.0.1:{{PORT}} inet n - n - 1 smtpd',
        ...BACKEND_SERVICES,
        '',
      ].join('\n'),
    });
    t.after(async () => { closeAll(); await server.stop(); });
    const mx = server.port;
    const pid = server.child!.pid!;
    assert.equal(limitsOf(pid).soft, 1024);

    const first = await flood(open, '127.0.0.2', 1100);
    const greeted = first.filter((l) => l.startsWith('220 ')).length;
    const busy = first.filter((l) => l === '421 4.3.2 All server ports are busy').length;
    assert.equal(greeted, 224, `greeted ${greeted}, busy ${busy}, other: ${first.filter((l) => !l.startsWith('220 ') && !l.startsWith('421 4.3.2')).slice(0, 5).join(' | ')}`);
    assert.equal(busy, 1100 - 224);
    // While the flood holds its sessions, the other port still takes mail and it is delivered.
    const r1 = await sendRaw(mx, 'a@example.org', ['b@example.net'], 'Subject: during flood\r\n\r\nhello\r\n', { localAddress: '127.0.0.3' });
    assert.match(r1.line, /^250 2\.0\.0 Ok: queued as /);
    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('Subject: during flood')), 30_000);
    closeAll();

    // anvil's default per-client limit (50) on the other port: the flood client gets 50.
    const second = await flood(mx, '127.0.0.2', 1100);
    assert.equal(second.filter((l) => l.startsWith('220 ')).length, 50);
    // The rest are refused: by anvil, or (while refused ones still hold a slot for the moment it
    // takes to answer them) as "all server ports busy".
    const tooMany = second.filter((l) => l === `421 4.7.0 ${HOST} Error: too many connections from 127.0.0.2`).length;
    const busy2 = second.filter((l) => l === '421 4.3.2 All server ports are busy').length;
    assert.equal(tooMany + busy2, 1050, second.filter((l) => !l.startsWith('220 ') && !l.startsWith('421 ')).slice(0, 5).join(' | '));
    assert.ok(tooMany > 500, `only ${tooMany} refused by anvil`);
    t.diagnostic(`second flood: ${tooMany} refused by anvil, ${busy2} all server ports busy`);
    const r2 = await sendRaw(mx, 'a@example.org', ['c@example.net'], 'Subject: normal client\r\n\r\nhello\r\n', { localAddress: '127.0.0.3' });
    assert.match(r2.line, /^250 2\.0\.0 Ok: queued as /);
    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('Subject: normal client')), 30_000);
    closeAll();

    const log = server.logLines();
    assert.equal(countLike(log, /EMFILE|Too many open files|exit status/), 0, log.filter((l) => /EMFILE|Too many open files|exit status/.test(l)).slice(0, 3).join('\n'));
    assert.doesNotMatch(server.stderr(), /EMFILE|Too many open files/);
    assert.ok(countLike(log, /NOQUEUE: reject: CONNECT from \[127\.0\.0\.2\]:\d+: all server ports busy$/) >= 1100 - 224);
  });
});

describe('smtpd bounded memory per session', () => {
  test('30 slow clients each sending 10 MB: RSS grows by far less than the 300 MB in DATA, and their ends at once are held to smtpd\'s content budget', async (t) => {
    const server = await startServer({ mainCf: { message_size_limit: '20480000', mynetworks: '127.0.0.0/8' } });
    t.after(async () => { closeAll(); await server.stop(); });
    const pid = server.child!.pid!;
    // Warm up the code paths once, so the baseline includes them.
    const warm = await sendRaw(server.port, 'a@example.org', ['b@example.net'], 'Subject: warm\r\n\r\n' + 'x'.repeat(200_000).replace(/(.{76})/g, '$1\r\n'));
    assert.equal(warm.code, 250, warm.line);
    await sleep(500);
    const before = rssOf(pid);

    const line = Buffer.from('y'.repeat(998) + '\r\n');
    const chunk = Buffer.concat(Array.from({ length: 128 }, () => line)); // 128 000 bytes
    const PER_SESSION = 80; // 80 × 128 000 = 10.24 MB
    const sessions = await Promise.all(Array.from({ length: 30 }, async (_, i) => {
      const { smtp, greeting } = await SmtpDialogue.connect(server.port, { timeoutMs: 60_000 });
      assert.equal(greeting.code, 220);
      assert.equal((await smtp.cmd('EHLO client.test')).code, 250);
      assert.equal((await smtp.cmd('MAIL FROM:<a@example.org>')).code, 250);
      assert.equal((await smtp.cmd('RCPT TO:<b@example.net>')).code, 250);
      assert.equal((await smtp.cmd('DATA')).code, 354);
      smtp.write(`Subject: big ${i}\r\n\r\n`);
      return smtp;
    }));
    // Slowly: one chunk per session every 100 ms (about 1.2 MB/s each), the last one held back.
    for (let n = 0; n < PER_SESSION - 1; n++) {
      for (const s of sessions) s.write(chunk);
      await sleep(100);
    }
    await sleep(1500);
    const during = rssOf(pid);
    // All 30 end at once: smtpd's content budget (src/runtime/byte-budget.ts) queues them, so
    // the copies cleanup and the store's commit make are held for a few at a time, not 30.
    let peak = during;
    const sampler = setInterval(() => { peak = Math.max(peak, rssOf(pid)); }, 25);
    const ends: Promise<Reply>[] = sessions.map((s) => {
      s.write(chunk);
      s.write('.\r\n');
      return s.read();
    });
    const replies = await Promise.all(ends).finally(() => clearInterval(sampler));
    for (const r of replies) assert.match(r.line, /^250 2\.0\.0 Ok: queued as /);
    for (const s of sessions) s.close();
    const growth = during - before;
    if (process.env['SESSIONS_DEBUG']) console.log(`RSS before ${(before / 1e6).toFixed(1)} MB, during ${(during / 1e6).toFixed(1)} MB, after ${(rssOf(pid) / 1e6).toFixed(1)} MB`);
    t.diagnostic(`RSS before ${(before / 1e6).toFixed(1)} MB, during ${(during / 1e6).toFixed(1)} MB, peak at the ends ${(peak / 1e6).toFixed(1)} MB, after ${(rssOf(pid) / 1e6).toFixed(1)} MB`);
    // Buffered in memory, the 30 messages would be 300 MB. What else may grow meanwhile varies
    // with the machine's load (a second smtpd thread started on demand when the first lags, a
    // cleanup thread, V8's heaps): 25–71 MB seen on a loaded 2-core machine. Half the
    // messages' size is the bound.
    assert.ok(growth < 150e6, `RSS grew by ${(growth / 1e6).toFixed(1)} MB with 30 × ~10 MB in DATA`);
    // Each message in flight after its end costs several copies (smtpd's buffer, cleanup's, the
    // commit's pages) and the allocator gives freed memory back late: without the budget the
    // peak grew by 930 MB over "during" (glibc and jemalloc alike), with it by ~300.
    assert.ok(peak - during < 600e6, `RSS grew by ${((peak - during) / 1e6).toFixed(1)} MB while 30 × ~10 MB messages ended at once`);
  });
});
