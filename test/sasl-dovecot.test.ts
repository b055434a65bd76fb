/**
 * The Dovecot auth-protocol client (src/sasl/dovecot.ts) against scripted auth servers on a
 * UNIX-domain socket and on loopback TCP: the cases a real Dovecot does not produce on demand
 * (wrong socket, escaped reasons, an OK with nologin, a server that goes away, replies out of
 * order). The normal exchanges run against the real Dovecot in e2e-smtpd-sasl.test.ts.
 */
import * as net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { AuthUnavailable, DovecotAuth, unescapeValue } from '../src/sasl/dovecot.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-dovecot-');

const HANDSHAKE = 'VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tSECRET\tprivate\nMECH\tANONYMOUS\tanonymous\nSPID\t1\nCUID\t7\nCOOKIE\tabc\nDONE\n';

/** A scripted auth server: `answer` maps each client line (after the handshake) to reply lines. */
async function authServer(listen: { path: string } | { port: 0; host: '127.0.0.1' }, handshake: string, answer: (line: string, socket: net.Socket) => string | null): Promise<{ server: net.Server; seen: string[]; where: string }> {
  const seen: string[] = [];
  const server = net.createServer((socket) => {
    let buf = '';
    socket.write(handshake);
    socket.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        seen.push(line);
        if (line.startsWith('VERSION') || line.startsWith('CPID')) continue;
        const out = answer(line, socket);
        if (out !== null) socket.write(out);
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(listen, () => r()));
  const a = server.address();
  const where = typeof a === 'string' ? a : `inet:127.0.0.1:${(a as net.AddressInfo).port}`;
  return { server, seen, where };
}

test('handshake: VERSION and CPID sent; private mechanisms left out; AUTH carries Postfix\'s fields, resp= last', async () => {
  const { server, seen, where } = await authServer({ path: join(tempDir(), 'auth') }, HANDSHAKE, (line) => {
    const id = line.split('\t')[1];
    return `OK\t${id}\tuser=alice\n`;
  });
  const c = new DovecotAuth(where);
  try {
    assert.deepEqual((await c.mechanisms()).map((m) => [m.name, [...m.flags]]), [['PLAIN', ['plaintext']], ['ANONYMOUS', ['anonymous']]]);
    const step = await c.start({ mech: 'PLAIN', service: 'smtp', lip: '127.0.0.1', rip: '192.0.2.1', secured: true, resp: 'AGEAYg==' });
    assert.equal(step.kind, 'ok');
    assert.equal(step.kind === 'ok' && step.user, 'alice');
    assert.equal(seen[0], 'VERSION\t1\t0');
    assert.match(seen[1]!, /^CPID\t\d+$/);
    assert.equal(seen[2], 'AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.1\tsecured\tresp=AGEAYg==');
  } finally {
    c.close();
    server.close();
  }
});

test('FAIL with an escaped reason; an OK that says nologin is a failure; replies for other ids are skipped', async () => {
  const { server, where } = await authServer({ port: 0, host: '127.0.0.1' }, HANDSHAKE, (line) => {
    const [, id, mech] = line.split('\t');
    if (mech === 'PLAIN') return `OK\t999\tuser=mallory\nFAIL\t${id}\treason=bad\x01tpassword\tuser=bob\n`;
    return `OK\t${id}\tuser=carol\tnologin\treason=go elsewhere\n`;
  });
  const c = new DovecotAuth(where);
  try {
    const fail = await c.start({ mech: 'PLAIN', service: 'smtp', lip: '', rip: '', secured: false });
    assert.deepEqual(fail, { kind: 'fail', id: 1, reason: 'bad\tpassword', user: 'bob', temp: false });
    const nologin = await c.start({ mech: 'ANONYMOUS', service: 'smtp', lip: '', rip: '', secured: false });
    assert.deepEqual(nologin, { kind: 'fail', id: 2, reason: 'go elsewhere', user: 'carol', temp: false });
  } finally {
    c.close();
    server.close();
  }
});

test('a socket that sends SPID before any MECH is not auth-client; a missing socket names its path; a lost server fails the request in flight', async () => {
  const master = await authServer({ path: join(tempDir(), 'auth-master') }, 'VERSION\t1\t2\nSPID\t1\n', () => null);
  const wrong = new DovecotAuth(master.where);
  await assert.rejects(wrong.mechanisms(), (e: Error) => e instanceof AuthUnavailable && e.message === 'SASL: Connected to wrong auth socket (auth-master instead of auth-client)');
  master.server.close();

  const missing = join(tempDir(), 'nothing-here');
  await assert.rejects(new DovecotAuth(missing).mechanisms(), (e: Error) => e.message === `SASL: Connect to Dovecot auth socket '${missing}' failed: ENOENT`);

  const gone = await authServer({ path: join(tempDir(), 'auth') }, HANDSHAKE, (_line, socket) => {
    socket.destroy();
    return null;
  });
  const c = new DovecotAuth(gone.where);
  await assert.rejects(c.start({ mech: 'PLAIN', service: 'smtp', lip: '', rip: '', secured: false }), (e: Error) => e instanceof AuthUnavailable && e.message === 'Connection lost to authentication server');
  // The next request connects again.
  assert.equal((await c.mechanisms()).length, 2);
  c.close();
  gone.server.close();
});

test('Dovecot\'s \\001 escapes are undone', () => {
  assert.equal(unescapeValue('a\x01tb\x01nc\x011d\x010e\x01rf'), 'a\tb\nc\x01d\0e\rf');
  assert.equal(unescapeValue('plain'), 'plain');
});
