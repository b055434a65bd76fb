/**
 * The milter protocol client (src/milter) against a scripted milter server on a loopback
 * socket: negotiation (flags, version checks, SETSYMLIST), macros before each event, skipped
 * and no-reply steps, replies (reject, tempfail, custom multi-line reply, discard, shutdown),
 * body chunks of at most 65535 bytes, the end-of-message edits, and the default action when the
 * milter breaks the protocol or times out. Plus the message edits as cleanup applies them.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { after, describe, test } from 'node:test';

import { Milter, type MilterSettings } from '../src/milter/milter.js';
import { applyEdits, formatMessage, parseMessage, type EnvelopeEdits } from '../src/milter/message.js';
import { splitMilterList } from '../src/milter/milters.js';
import { packet, PacketReader, protocolOf, SMFIP } from '../src/milter/protocol.js';

interface Seen { cmd: string; data: Buffer }

/** A milter server: `script(seen, reply)` is called for each packet; reply(cmd, ...items) answers. */
async function scripted(onPacket: (p: Seen, reply: (cmd: string, ...items: (string | number | Buffer)[]) => void, all: Seen[]) => void)
  : Promise<{ port: number; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('error', () => undefined);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const p = { cmd: String.fromCharCode(buf[4]!), data: Buffer.from(buf.subarray(5, 4 + len)) };
        buf = buf.subarray(4 + len);
        seen.push(p);
        onPacket(p, (cmd, ...items) => sock.write(packet(cmd, ...items)), seen);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as net.AddressInfo).port, seen, close: () => new Promise((r) => { server.close(() => r()); }) };
}

function settings(port: number, extra: Partial<MilterSettings> = {}): MilterSettings & { warnings: string[] } {
  const warnings: string[] = [];
  return {
    endpoint: `inet:127.0.0.1:${port}`, connectTimeout: 5, commandTimeout: 5, contentTimeout: 5,
    defaultAction: 'tempfail', protocol: '6', queueDirectory: '/nonexistent',
    macros: { connect: ['j', '{daemon_name}'], helo: [], mail: ['i', '{mail_addr}'], rcpt: ['i', '{rcpt_addr}'], data: ['i'], eoh: ['i'], eom: ['i'], unknown: [] },
    warn: (t) => warnings.push(t), warnings, ...extra,
  };
}

const macros = (name: string): string | undefined => ({ j: 'mx.example', '{daemon_name}': 'smtpd', i: 'QID1', '{mail_addr}': 's@example.org', '{rcpt_addr}': 'r@example.com' } as Record<string, string>)[name];
const peer = { name: 'client.example', addr: '192.0.2.1', port: 4321 };

/** Answers OPTNEG with (version, actions, steps [, symlist]) and "continue" to everything else. */
function basic(version: number, actions: number, steps: number, override: Record<string, (r: (cmd: string, ...items: (string | number | Buffer)[]) => void) => void> = {}, symlist: (string | number)[] = []) {
  return (p: Seen, reply: (cmd: string, ...items: (string | number | Buffer)[]) => void) => {
    if (p.cmd === 'O') return reply('O', version, actions, steps, ...symlist);
    if (p.cmd === 'D' || p.cmd === 'A' || p.cmd === 'Q') return;
    if (override[p.cmd]) return override[p.cmd]!(reply);
    reply('c');
  };
}

describe('milter protocol client', () => {
  const servers: { close(): Promise<void> }[] = [];
  after(async () => { for (const s of servers) await s.close(); });

  test('negotiation offers version 6, all nine actions and the v6 steps; events carry macros first', async () => {
    const s = await scripted(basic(6, 0x1ff, 0));
    servers.push(s);
    const m = new Milter(settings(s.port));
    await m.open();
    assert.equal(await m.connect(peer, macros), null);
    assert.equal(await m.helo('client.example', macros), null);
    assert.equal(await m.mail('s@example.org', ['SIZE=100'], macros), null);
    assert.equal(await m.rcpt('r@example.com', [], macros), null);
    m.quit();
    const o = new PacketReader(s.seen[0]!.data);
    assert.deepEqual([s.seen[0]!.cmd, o.u32(), o.u32(), o.u32()], ['O', 6, 0x1ff, protocolOf('6')!.events]);
    assert.deepEqual(s.seen.slice(1).map((p) => p.cmd).join(''), 'DCDHDMDR');
    // Macros for CONNECT: code byte, then name\0value\0 pairs.
    assert.equal(s.seen[1]!.data.toString('latin1'), 'Cj\0mx.example\0{daemon_name}\0smtpd\0');
    // CONNECT: hostname, family '4', port (16 bits), address.
    assert.deepEqual(s.seen[2]!.data, Buffer.concat([Buffer.from('client.example\0' + '4'), Buffer.from([0x10, 0xe1]), Buffer.from('192.0.2.1\0')]));
    assert.equal(s.seen[6]!.data.toString('latin1'), '<s@example.org>\0SIZE=100\0');
  });

  test('steps the milter declines are not sent (their macros are), no-reply steps are not waited for', async () => {
    // NOHELO; NR_RCPT: the server never answers RCPT, yet the client goes on.
    const s = await scripted(basic(6, 0x01, SMFIP.NOHELO | SMFIP.NR_RCPT, { R: () => undefined }));
    servers.push(s);
    const m = new Milter(settings(s.port));
    await m.open();
    await m.connect(peer, macros);
    assert.equal(await m.helo('x', macros), null);
    assert.equal(await m.mail('s@example.org', [], macros), null);
    assert.equal(await m.rcpt('r@example.com', [], macros), null);
    assert.equal(await m.data(macros), null);
    m.quit();
    for (let i = 0; i < 40 && s.seen.at(-1)?.cmd !== 'Q'; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(s.seen.slice(1).map((p) => p.cmd).join(''), 'DCDDMDRDTQ');
  });

  test('SETSYMLIST: the milter\'s macro list for a stage wins', async () => {
    const s = await scripted(basic(6, 0x100, 0, {}, [2, '{mail_addr}']));
    servers.push(s);
    const m = new Milter(settings(s.port));
    await m.open();
    await m.connect(peer, macros);
    await m.mail('s@example.org', [], macros);
    m.quit();
    assert.equal(s.seen.find((p) => p.cmd === 'D' && p.data[0] === 0x4d)!.data.toString('latin1'), 'M{mail_addr}\0s@example.org\0');
  });

  test('replies: reject, tempfail, custom multi-line reply with %% unescaped, discard', async () => {
    let rcpts = 0;
    const s = await scripted(basic(6, 0, 0, {
      R: (r) => {
        rcpts++;
        if (rcpts === 1) r('r');
        else if (rcpts === 2) r('t');
        else r('y', '550-5.7.1 first line 100%%\r\n550 5.7.1 second line');
      },
      E: (r) => r('d'),
    }));
    servers.push(s);
    const m = new Milter(settings(s.port));
    await m.open();
    await m.connect(peer, macros);
    await m.mail('s@example.org', [], macros);
    assert.equal(await m.rcpt('a@x', [], macros), '550 5.7.1 Command rejected');
    assert.equal(await m.rcpt('b@x', [], macros), '451 4.7.1 Service unavailable - try again later');
    assert.equal(await m.rcpt('c@x', [], macros), '550-5.7.1 first line 100%\r\n550 5.7.1 second line');
    const { verdict } = await m.content([['Subject', ' hi']], Buffer.from('body\r\n'), macros);
    assert.equal(verdict, 'D');
    m.quit();
  });

  test('content: header values lose one leading space, body goes in chunks of at most 65535 bytes, edits come back', async () => {
    const s = await scripted(basic(6, 0x1ff, 0, {
      E: (r) => {
        r('h', 'X-Added', 'yes');
        r('i', 0, 'X-First', 'top');
        r('m', 1, 'Subject', 'changed');
        r('m', 1, 'X-Old', '');
        r('e', '<new@example.org>');
        r('+', '<added@example.net>');
        r('-', '<r@example.com>');
        r('q', 'suspicious');
        r('p');
        r('a');
      },
    }));
    servers.push(s);
    const m = new Milter(settings(s.port));
    await m.open();
    await m.connect(peer, macros);
    await m.mail('s@example.org', [], macros);
    await m.rcpt('r@example.com', [], macros);
    const body = Buffer.alloc(150000, 'a');
    const { verdict, edits } = await m.content([['Subject', ' hello'], ['X-Old', ' gone']], body, macros);
    m.quit();
    assert.equal(verdict, null);
    const headers = s.seen.filter((p) => p.cmd === 'L').map((p) => p.data.toString('latin1'));
    assert.deepEqual(headers, ['Subject\0hello\0', 'X-Old\0gone\0']);
    const chunks = s.seen.filter((p) => p.cmd === 'B').map((p) => p.data.length);
    assert.deepEqual(chunks, [65535, 65535, 150000 - 2 * 65535]);
    assert.deepEqual(edits.map((e) => e.op), ['addheader', 'insheader', 'chgheader', 'chgheader', 'chgfrom', 'addrcpt', 'delrcpt', 'quarantine']);

    const msg = parseMessage(Buffer.from('Subject: hello\r\nX-Old: gone\r\nX-Folded: a\r\n\tb\r\n\r\nbody\r\n'));
    const env: EnvelopeEdits = { sender: null, add: [], del: [], quarantine: null };
    applyEdits(msg, edits, env);
    assert.equal(formatMessage(msg).toString('latin1'), 'X-First: top\r\nSubject: changed\r\nX-Folded: a\r\n\tb\r\nX-Added: yes\r\n\r\nbody\r\n');
    assert.deepEqual(env, { sender: 'new@example.org', add: [{ recipient: 'added@example.net', args: '' }], del: ['r@example.com'], quarantine: 'suspicious' });
  });

  test('a milter that asks for an action it was not offered, or answers out of protocol, gets the default action', async () => {
    // Version 7 > ours: a communication error ⇒ tempfail's reply for every event.
    const s = await scripted(basic(7, 0, 0));
    servers.push(s);
    const st = settings(s.port);
    const m = new Milter(st);
    await m.open();
    assert.equal(await m.connect(peer, macros), '451 4.7.1 Service unavailable - try again later');
    assert.equal(await m.mail('s@x', [], macros), '451 4.7.1 Service unavailable - try again later');
    assert.match(st.warnings.join('\n'), /protocol version 7 conflict with MTA protocol version 6/);

    // An unknown reply code at RCPT, with default action reject.
    const s2 = await scripted(basic(6, 0, 0, { R: (r) => r('Z') }));
    servers.push(s2);
    const st2 = settings(s2.port, { defaultAction: 'reject' });
    const m2 = new Milter(st2);
    await m2.open();
    await m2.connect(peer, macros);
    await m2.mail('s@x', [], macros);
    assert.equal(await m2.rcpt('r@x', [], macros), '550 5.5.0 Service unavailable');
    assert.match(st2.warnings.join('\n'), /unexpected filter response Z after event R/);

    // A malformed custom reply is a configuration error: shutdown ⇒ 421 4.3.5.
    const s3 = await scripted(basic(6, 0, 0, { M: (r) => r('y', '250 ok') }));
    servers.push(s3);
    const m3 = new Milter(settings(s3.port, { defaultAction: 'shutdown' }));
    await m3.open();
    await m3.connect(peer, macros);
    assert.equal(await m3.mail('s@x', [], macros), '421 4.3.5 Server configuration problem - try again later');
  });

  test('a milter that does not answer in milter_command_timeout gets the default action', async () => {
    const s = await scripted(basic(6, 0, 0, { M: () => undefined }));
    servers.push(s);
    const st = settings(s.port, { commandTimeout: 1, defaultAction: 'accept' });
    const m = new Milter(st);
    await m.open();
    await m.connect(peer, macros);
    const t0 = Date.now();
    assert.equal(await m.mail('s@x', [], macros), null);
    assert.ok(Date.now() - t0 >= 900);
    assert.match(st.warnings.join('\n'), /timeout/);
  });

  test('a milter that is down: connect error and the default action; unix: paths are relative to queue_directory', async () => {
    const st = settings(1, { endpoint: 'unix:private/nothing', queueDirectory: '/nonexistent-q', defaultAction: 'quarantine' });
    const m = new Milter(st);
    await m.open();
    assert.equal(await m.connect(peer, macros), 'H');
    assert.match(st.warnings[0]!, /^connect to Milter service unix:private\/nothing: .*\/nonexistent-q\/private\/nothing/);
  });

  test('replies split across reads, or several in one read, are read alike; progress restarts the timeout', async () => {
    // The server answers in odd pieces: each reply byte by byte, or the edits and the final
    // reply of end of message glued into one write.
    const pieces = async (sock: net.Socket, b: Buffer) => {
      for (const byte of b) {
        sock.write(Buffer.of(byte));
        await new Promise((r) => setTimeout(r, 2));
      }
    };
    let lastMail: Promise<void> = Promise.resolve();
    const raw = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.on('error', () => undefined);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const cmd = String.fromCharCode(buf[4]!);
          buf = buf.subarray(4 + buf.readUInt32BE(0));
          if (cmd === 'O') void pieces(sock, packet('O', 6, 0x1ff, 0));
          else if (cmd === 'M') {
            // Progress twice, 0.7 s apart, then continue: 1.4 s in all, with a 1 s command timeout.
            lastMail = (async () => {
              await pieces(sock, packet('p'));
              await new Promise((r) => setTimeout(r, 700));
              await pieces(sock, packet('p'));
              await new Promise((r) => setTimeout(r, 700));
              await pieces(sock, packet('c'));
            })();
          }
          else if (cmd === 'E') sock.write(Buffer.concat([packet('h', 'X-One', '1'), packet('p'), packet('i', 0, 'X-Two', '2'), packet('c')]));
          else if (cmd !== 'D' && cmd !== 'A' && cmd !== 'Q') void pieces(sock, packet('c'));
        }
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', () => r()));
    servers.push({ close: () => new Promise((r) => { raw.close(() => r()); }) });
    const m = new Milter(settings((raw.address() as net.AddressInfo).port, { commandTimeout: 1 }));
    await m.open();
    assert.equal(await m.connect(peer, macros), null);
    assert.equal(await m.mail('s@example.org', [], macros), null);
    await lastMail;
    assert.equal(await m.rcpt('r@example.com', [], macros), null);
    const { verdict, edits } = await m.content([['Subject', ' hi']], Buffer.from('body\r\n'), macros);
    assert.equal(verdict, null);
    assert.deepEqual(edits, [{ op: 'addheader', name: 'X-One', value: '1' }, { op: 'insheader', index: 0, name: 'X-Two', value: '2' }]);
    m.quit();
  });

  test('a milter that closes the connection, or sends a packet length no milter sends, gets the default action', async () => {
    // EOF while a reply is awaited.
    const eof = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.on('data', (d) => {
        if (d[4] === 0x4f) sock.write(packet('O', 6, 0, 0));
        else if (d.includes(0x4d)) sock.end();
        else sock.write(packet('c'));
      });
    });
    await new Promise<void>((r) => eof.listen(0, '127.0.0.1', () => r()));
    servers.push({ close: () => new Promise((r) => { eof.close(() => r()); }) });
    const st = settings((eof.address() as net.AddressInfo).port, { defaultAction: 'reject' });
    const m = new Milter(st);
    await m.open();
    assert.equal(await m.connect(peer, macros), null);
    assert.equal(await m.mail('s@x', [], macros), '550 5.5.0 Service unavailable');
    assert.match(st.warnings.join('\n'), /milter inet:127\.0\.0\.1:\d+: EOF while reading reply/);
    assert.equal(await m.rcpt('r@x', [], macros), '550 5.5.0 Service unavailable');

    // A zero packet length.
    const bad = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.on('data', (d) => {
        if (d[4] === 0x4f) sock.write(packet('O', 6, 0, 0));
        else sock.write(Buffer.from([0, 0, 0, 0]));
      });
    });
    await new Promise<void>((r) => bad.listen(0, '127.0.0.1', () => r()));
    servers.push({ close: () => new Promise((r) => { bad.close(() => r()); }) });
    const st2 = settings((bad.address() as net.AddressInfo).port);
    const m2 = new Milter(st2);
    await m2.open();
    assert.equal(await m2.connect(peer, macros), '451 4.7.1 Service unavailable - try again later');
    assert.match(st2.warnings.join('\n'), /bad packet length: 0/);
  });

  test('milter_protocol and the smtpd_milters list syntax', () => {
    assert.equal(protocolOf('6')!.version, 6);
    assert.equal(protocolOf('4 no_header_reply')!.events & SMFIP.NR_HDR, SMFIP.NR_HDR);
    assert.equal(protocolOf('5'), null);
    assert.equal(protocolOf('6 4'), null);
    assert.deepEqual(splitMilterList('inet:127.0.0.1:8891, { unix:/run/m.sock, default_action = accept }  inet:[::1]:99'),
      ['inet:127.0.0.1:8891', '{ unix:/run/m.sock, default_action = accept }', 'inet:[::1]:99']);
  });
});

test('milter_macro_defaults: name=value and { name = value } entries, names in {name} form; malformed entries refused', async () => {
  const { parseMacroDefaults } = await import('../src/milter/macros.js');
  const warnings: string[] = [];
  const m = parseMacroDefaults('auth_type=none, {daemon_name}=mx { tls_version = none yet } auth_type=again', (w) => warnings.push(w));
  assert.deepEqual([...m], [['{auth_type}', 'none'], ['{daemon_name}', 'mx'], ['{tls_version}', 'none yet']]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /ignoring multiple default macro entries for \{auth_type\}/);
  assert.throws(() => parseMacroDefaults('novalue'), /malformed default macro entry/);
  assert.throws(() => parseMacroDefaults('{ a = b'), /malformed default macro entry/);
});

test('ESMTP arguments of change-sender and add-recipient edits: what Postfix keeps, what it warns about', async () => {
  const { applyEdits } = await import('../src/milter/message.js');
  const warnings: string[] = [];
  const env = { sender: null as string | null, add: [] as { recipient: string; args: string; notify?: string[]; orcpt?: string }[], del: [] as string[], quarantine: null as string | null } as Parameters<typeof applyEdits>[2];
  const msg = { headers: [] as [string, string][], body: Buffer.alloc(0) };
  applyEdits(msg, [
    { op: 'chgfrom', sender: '<new@example.org>', args: 'RET=HDRS ENVID=abc+2Bdef SIZE=10' },
    { op: 'addrcpt', recipient: '<a@example.net>', args: 'NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40example.net' },
    { op: 'addrcpt', recipient: '<b@example.net>', args: 'NOTIFY=NEVER,SUCCESS FOO=1' },
  ], env, (w) => warnings.push(w));
  assert.equal(env.sender, 'new@example.org');
  assert.equal(env.ret, 'HDRS');
  assert.equal(env.envId, 'abc+def');
  assert.deepEqual(env.add[0]!.notify, ['SUCCESS', 'DELAY']);
  assert.equal(env.add[0]!.orcpt, 'rfc822;a@example.net');
  assert.equal(env.add[1]!.notify, undefined);
  assert.deepEqual(warnings, [
    'Ignoring bad ESMTP parameter "SIZE=10" in SMFI_CHGFROM request',
    'Bad NOTIFY parameter from Milter or header/body_checks: "NOTIFY=NEVER,SUCCESS"',
    'ignoring ESMTP argument from Milter or header/body_checks: "FOO=1"',
  ]);
});
