/**
 * End to end, TLS in the smtp client: a running server relays to TLS-capable sinks on
 * 127.0.0.1 (certificates made by openssl in a temporary directory: a test CA signing a
 * certificate for localhost/127.0.0.1, and a self-signed one), one next hop per case, the
 * level per next hop from smtp_tls_policy_maps (main.cf: may, loglevel 1):
 *
 *   may, STARTTLS offered          → delivered over TLS, "Untrusted TLS connection established"
 *   may, not offered               → delivered in plaintext
 *   encrypt, not offered           → deferred 4.7.4 "TLS is required, but was not offered by host …"
 *   secure, test CA, name matches  → delivered, "Verified TLS connection established"
 *   secure, wrong name             → deferred 4.7.5 "Server certificate not verified"
 *   secure, unknown (self-signed)  → deferred 4.7.5, "certificate verification failed …"
 *   wrapper mode (port-465 style)  → delivered over TLS from the first byte
 *   may, handshake breaks          → first attempt deferred 4.7.5 "Cannot start TLS: handshake failure";
 *                                    a retry after $minimal_backoff_time goes out in plaintext
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { openTable } from '../src/maps/index.js';
import { SmtpSink, type SinkProfile } from '../src/smtp/sink.js';
import { protocolRange, tlsPolicy, type TlsSettings } from '../src/smtp/tls-policy.js';
import { needs } from './helpers/peers.js';
import { rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const NO_OPENSSL = needs('/usr/bin/openssl', 'openssl, to make the test certificates');
const tempDir = tempDirs('postactor-smtp-tls-');

/** A test CA, a server certificate it signs for localhost/127.0.0.1, and a self-signed one. */
function makeCertificates(dir: string): void {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Postactor Test CA');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf');
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'self.key', '-out', 'self.pem', '-days', '2', '-subj', '/CN=localhost');
}

const CASES = ['may', 'plain', 'enc', 'sec', 'wrongname', 'unknownca', 'wrap', 'hs', 'reuse', 'noreuse', 'cache'] as const;
type Case = typeof CASES[number];

describe('e2e smtp client TLS', { skip: NO_OPENSSL }, () => {
  let server: TestServer;
  const sinks = new Map<Case, SmtpSink>();
  const ports = new Map<Case, number>();

  before(async () => {
    const dir = tempDir();
    makeCertificates(dir);
    const pem = (f: string) => readFileSync(join(dir, f));
    const good = { key: pem('server.key'), cert: pem('server.pem') };
    const profiles: Record<Case, SinkProfile> = {
      may: { tls: good },
      plain: { tls: { ...good, starttls: false } },
      enc: { tls: { ...good, starttls: false } },
      sec: { tls: good },
      wrongname: { tls: good },
      unknownca: { tls: { key: pem('self.key'), cert: pem('self.pem') } },
      wrap: { tls: { ...good, wrapper: true } },
      // Says yes to STARTTLS but stays in plaintext: the handshake cannot succeed.
      hs: { tls: { ...good, starttlsReply: '220 2.0.0 Ready to start TLS' } },
      reuse: { tls: good },
      noreuse: { tls: good },
      cache: { tls: good },
    };
    for (const c of CASES) {
      const sink = new SmtpSink({ keepMessages: true, ...profiles[c] });
      sinks.set(c, sink);
      ports.set(c, await sink.listen(0));
    }
    const hop = (c: Case) => `[127.0.0.1]:${ports.get(c)}`;
    const transport: Record<Case, string> = {
      may: `smtp:${hop('may')}`, plain: `smtp:${hop('plain')}`, enc: `smtp:${hop('enc')}`,
      sec: `verified:${hop('sec')}`, wrongname: `verified:${hop('wrongname')}`, unknownca: `verified:${hop('unknownca')}`,
      wrap: `smtps:${hop('wrap')}`, hs: `smtp:${hop('hs')}`,
      reuse: `one:${hop('reuse')}`, noreuse: `one:${hop('noreuse')}`, cache: `cached:${hop('cache')}`,
    };
    writeFileSync(join(dir, 'transport'), CASES.map((c) => `${c}.test ${transport[c]}\n`).join(''));
    writeFileSync(join(dir, 'tls_policy'), [
      `${hop('enc')} encrypt`,
      `${hop('sec')} secure match=localhost`,
      `${hop('wrongname')} secure match=mail.example.org`,
      `${hop('unknownca')} secure match=localhost`,
      `${hop('reuse')} may connection_reuse=yes`,
    ].join('\n') + '\n');
    server = await startServer({
      mainCf: {
        smtp_tls_security_level: 'may',
        minimal_backoff_time: '1s', maximal_backoff_time: '2s', queue_run_delay: '1s',
        smtp_tls_loglevel: '1',
        transport_maps: `texthash:${join(dir, 'transport')}`,
        smtp_tls_policy_maps: `texthash:${join(dir, 'tls_policy')}`,
      },
      masterCfExtra: [
        `verified unix - - n - - smtp -o smtp_tls_CAfile=${join(dir, 'ca.pem')}`,
        'smtps unix - - n - - smtp -o smtp_tls_wrappermode=yes -o smtp_tls_security_level=encrypt',
        'one unix - - n - 1 smtp', // one thread: its connection cache sees every delivery
        // Two threads sharing one TLS session cache (the file named is not written).
        'cached unix - - n - 2 smtp -o smtp_tls_session_cache_database=btree:/nonexistent/smtp_scache',
      ].join('\n'),
    });
    for (const c of CASES) {
      const r = await sendRaw(server.port, 'sender@example.org', [`u@${c}.test`], rfc822({ Subject: `tls ${c}` }, `case ${c}\r\n`));
      assert.equal(r.code, 250, `${c}: ${r.line}`);
    }
  });

  after(async () => {
    await server?.stop();
    for (const s of sinks.values()) await s.close();
  });

  const status = (c: Case) => server.waitForLog(new RegExp(`to=<u@${c}\\.test>, relay=.*status=`), 30_000);
  const established = (kind: string, c: Case) =>
    new RegExp(`${kind} TLS connection established to 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${ports.get(c)}: TLSv1\\.[0-3] with cipher \\S+ \\(\\d+/\\d+ bits\\)`);

  test('may, STARTTLS offered: delivered over TLS, and the Untrusted summary is logged (no CA configured)', async () => {
    assert.match(await status('may'), /status=sent/);
    assert.equal(sinks.get('may')!.messages[0]?.tls, 'TLSv1.3');
    await server.waitForLog(established('Untrusted', 'may'), 5000);
  });

  test('a TLS connection carries one delivery unless smtp_tls_connection_reuse (here the policy\'s connection_reuse=yes) says otherwise', async () => {
    for (const c of ['reuse', 'noreuse'] as const) {
      await status(c);
      // Two more messages one after the other, well within smtp_connection_cache_time_limit (2s).
      for (const u of ['v', 'w']) {
        const r = await sendRaw(server.port, 'sender@example.org', [`${u}@${c}.test`], rfc822({ Subject: `again ${c}` }, 'again\r\n'));
        assert.equal(r.code, 250, r.line);
        await server.waitForLog(new RegExp(`to=<${u}@${c}\\.test>, relay=.*status=sent`), 30_000);
      }
    }
    // Three messages each: with reuse at least the last two share a connection.
    assert.equal(sinks.get('reuse')!.messages.length, 3);
    assert.ok(sinks.get('reuse')!.stats.connections < 3, `connection_reuse=yes: ${sinks.get('reuse')!.stats.connections} connections for 3 messages`);
    assert.equal(sinks.get('noreuse')!.stats.connections, 3, 'Postfix\'s default: a TLS connection per delivery');
    assert.ok(sinks.get('noreuse')!.messages.every((m) => m.tls === 'TLSv1.3'));
  });

  test('smtp_tls_session_cache_database: later handshakes resume the session, whichever smtp thread makes them; without it, none does', async () => {
    await status('cache');
    for (const u of ['v', 'w', 'x']) {
      const r = await sendRaw(server.port, 'sender@example.org', [`${u}@cache.test`], rfc822({ Subject: 'resume' }, 'resume\r\n'));
      assert.equal(r.code, 250, r.line);
      await server.waitForLog(new RegExp(`to=<${u}@cache\\.test>, relay=.*status=sent`), 30_000);
    }
    const m = sinks.get('cache')!.messages;
    assert.equal(m.length, 4);
    assert.equal(m[0]!.tlsResumed, false);
    assert.deepEqual(m.slice(1).map((x) => x.tlsResumed), [true, true, true]);
    assert.ok(sinks.get('noreuse')!.messages.every((x) => x.tlsResumed === false), 'no cache parameter: no resumption (Postfix\'s default)');
  });

  test('may, STARTTLS not offered: delivered in plaintext', async () => {
    assert.match(await status('plain'), /status=sent/);
    assert.equal(sinks.get('plain')!.messages.length, 1);
    assert.equal(sinks.get('plain')!.messages[0]!.tls, undefined);
  });

  test('encrypt, STARTTLS not offered: deferred with Postfix\'s 4.7.4 text, nothing sent', async () => {
    const p = ports.get('enc');
    assert.match(await status('enc'), new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${p}, .*dsn=4\\.7\\.4, status=deferred \\(TLS is required, but was not offered by host 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]\\)`));
    assert.equal(sinks.get('enc')!.messages.length, 0);
  });

  test('secure, certificate from the configured CA with the matching name: delivered, Verified', async () => {
    assert.match(await status('sec'), /status=sent/);
    assert.equal(sinks.get('sec')!.messages[0]?.tls, 'TLSv1.3');
    await server.waitForLog(established('Verified', 'sec'), 5000);
  });

  test('secure, wrong name: deferred 4.7.5 "Server certificate not verified", the mismatch logged', async () => {
    assert.match(await status('wrongname'), /dsn=4\.7\.5, status=deferred \(Server certificate not verified\)/);
    await server.waitForLog(new RegExp(`server certificate verification failed for 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${ports.get('wrongname')}: num=62:hostname mismatch`), 5000);
    await server.waitForLog(established('Trusted', 'wrongname'), 5000);
    assert.equal(sinks.get('wrongname')!.messages.length, 0);
  });

  test('secure, certificate from an unknown issuer: deferred 4.7.5, the reason logged', async () => {
    assert.match(await status('unknownca'), /dsn=4\.7\.5, status=deferred \(Server certificate not verified\)/);
    await server.waitForLog(new RegExp(`certificate verification failed for 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${ports.get('unknownca')}: self-signed certificate`), 5000);
    assert.equal(sinks.get('unknownca')!.messages.length, 0);
  });

  test('wrapper mode (smtp_tls_wrappermode = yes, level encrypt): TLS from the first byte', async () => {
    assert.match(await status('wrap'), /status=sent/);
    assert.equal(sinks.get('wrap')!.messages[0]?.tls, 'TLSv1.3');
  });

  test('may, handshake fails: the first attempt defers 4.7.5, a later one retries the address in plaintext', async () => {
    assert.match(await status('hs'), /dsn=4\.7\.5, status=deferred \(Cannot start TLS: handshake failure\)/);
    await server.waitForLog(/to=<u@hs\.test>, relay=.*status=sent/, 30_000);
    const m = sinks.get('hs')!.messages;
    assert.equal(m.length, 1);
    assert.equal(m[0]!.tls, undefined);
  });
});

describe('smtp TLS policy', () => {
  test('policy table keys: [host]:port verbatim, a domain then its .parents; attributes as Postfix', async () => {
    const settings: TlsSettings = {
      prefix: 'smtp', level: 'may', policyMaps: [], protocols: '>=TLSv1', mandatoryProtocols: '>=TLSv1', ciphers: 'medium',
      mandatoryCiphers: 'medium', excludeCiphers: '', mandatoryExcludeCiphers: '', verifyCertMatch: 'hostname',
      secureCertMatch: 'nexthop, dot-nexthop', fingerprintCertMatch: '', fingerprintDigest: 'sha256', CAfile: '', CApath: '',
      certFile: '', keyFile: '', loglevel: 0, noteStarttlsOffer: false, wrappermode: false, starttlsTimeout: 300, servername: '', connectionReuse: false,
    };
    const table = openTable('inline:{ {[mx.example.com]:587 = encrypt protocols=>=TLSv1.2}, {.example.net = secure match=.example.net:example.net}, {bad.example = secure match=a match=b ciphers=high ciphers=low}, {off.example = none ciphers=high} }');
    const warnings: string[] = [];
    const warn = (w: string) => warnings.push(w);
    const p1 = await tlsPolicy({ ...settings }, [table], '[mx.example.com]:587', warn);
    assert.deepEqual([p1.level, 'protocols' in p1 ? p1.protocols : ''], ['encrypt', '>=TLSv1.2']);
    const p2 = await tlsPolicy({ ...settings }, [table], 'a.b.example.net', warn);
    assert.deepEqual([p2.level, 'match' in p2 ? p2.match : []], ['secure', ['.example.net', 'example.net']]);
    assert.equal((await tlsPolicy({ ...settings }, [table], 'example.org', warn)).level, 'may'); // global level
    assert.equal((await tlsPolicy({ ...settings }, [table], 'bad.example', warn)).level, 'invalid');
    assert.match(warnings.join('\n'), /bad\.example": attribute "ciphers" is specified multiple times/);
    assert.equal((await tlsPolicy({ ...settings }, [table], 'off.example', warn)).level, 'none');
    assert.match(warnings.join('\n'), /off\.example": ignoring attribute "ciphers=high" with TLS disabled/);
    assert.deepEqual(protocolRange('>=TLSv1.2'), { min: 'TLSv1.2', max: 'TLSv1.3' });
    assert.deepEqual(protocolRange('!SSLv2, !SSLv3, !TLSv1, !TLSv1.1'), { min: 'TLSv1.2', max: 'TLSv1.3' });
    assert.deepEqual(protocolRange('TLSv1.2'), { min: 'TLSv1.2', max: 'TLSv1.2' });
    assert.equal(protocolRange('TLSv9'), null);
  });
});
