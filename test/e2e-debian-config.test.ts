/**
 * A Postfix administrator's own files: Debian's stock main.cf (main.cf.debian + main.cf.tls,
 * copied from the installed postfix package) and master.cf.dist (its smtp line moved to a
 * loopback port). `postactor check` passes, warning by name about what is not built; the
 * files as they are start a server that offers STARTTLS (level may, with the certificate
 * main.cf.tls names) and relays, and Debian's `hash:` alias table works through postalias.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from './helpers/peers.js';
import { NODE, POSTACTOR_JS, REPO_ROOT, SmtpDialogue, freePort, sendRaw, rfc822, startServer, type TestServer } from './helpers/server.js';
import { SmtpSink } from '../src/smtp/sink.js';

const SHARE = '/usr/share/postfix';
const NO_POSTFIX = needs(join(SHARE, 'master.cf.dist'), "Debian's postfix package (its stock main.cf and master.cf)");

/** Debian's main.cf and main.cf.tls as the package installs them, with test certificate paths. */
function debianMainCf(dir: string): string {
  return readFileSync(join(SHARE, 'main.cf.debian'), 'utf8') + '\n'
    + readFileSync(join(SHARE, 'main.cf.tls'), 'utf8')
      .replace('/etc/ssl/certs/ssl-cert-snakeoil.pem', join(dir, 'cert.pem'))
      .replace('/etc/ssl/private/ssl-cert-snakeoil.key', join(dir, 'key.pem'));
}

/** master.cf.dist with its smtp line moved to 127.0.0.1:port. */
function debianMasterCf(port: number): string {
  const text = readFileSync(join(SHARE, 'master.cf.dist'), 'utf8');
  const moved = text.replace(/^smtp(\s+)inet\b/m, `127.0.0.1:${port} inet`);
  assert.notEqual(moved, text, 'master.cf.dist has an "smtp inet" line');
  return moved;
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("Debian's stock configuration", { skip: NO_POSTFIX }, () => {
  test('check passes: every setting is built or warned about by name, with its line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postactor-debian-'));
    dirs.push(dir);
    const main = debianMainCf(dir) + `queue_directory = ${join(dir, 'spool')}\n`;
    writeFileSync(join(dir, 'main.cf'), main);
    writeFileSync(join(dir, 'master.cf'), debianMasterCf(await freePort()));
    const r = spawnSync(NODE, [POSTACTOR_JS, '-c', dir, 'check'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /fatal/);
    // What is not built is warned about, by name: biff, the services not built yet.
    assert.match(r.stderr, /warning: .*main\.cf:\d+: biff = no: not supported by Postactor, ignored/);
    assert.doesNotMatch(r.stderr, /smtp_tls_session_cache_database/, 'the client TLS session cache is built');
    assert.match(r.stderr, /warning: .*master\.cf:\d+: not supported: service "tlsmgr" \(command tlsmgr\) is not built yet; skipped/);
    assert.doesNotMatch(r.stderr, /command anvil/, 'anvil is built into master: its line needs no warning');
  });

  describe('as they are', () => {
    let sink: SmtpSink;
    let server: TestServer;
    after(async () => {
      await server?.stop();
      await sink?.close();
    });

    test('starts and relays; postalias hash:FILE builds the alias table the configuration names', async () => {
      sink = new SmtpSink({ keepMessages: true });
      const sinkPort = await sink.listen(0);
      const aliasDir = mkdtempSync(join(tmpdir(), 'postactor-debian-aliases-'));
      dirs.push(aliasDir);
      writeFileSync(join(aliasDir, 'aliases'), 'postmaster: root\nwebmaster: someone@example.com\n');
      const built = spawnSync(join(REPO_ROOT, 'bin', 'postalias'), [`hash:${join(aliasDir, 'aliases')}`], { encoding: 'utf8' });
      assert.equal(built.status, 0, built.stderr);
      assert.equal(execFileSync(join(REPO_ROOT, 'bin', 'postalias'), ['-q', 'webmaster', `hash:${join(aliasDir, 'aliases')}`], { encoding: 'utf8' }), 'someone@example.com\n');

      // The certificate main.cf.tls names (the snakeoil one, here made by openssl).
      const cert = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(aliasDir, 'key.pem'), '-out', join(aliasDir, 'cert.pem'), '-days', '2', '-subj', '/CN=mx.postactor.test'], { encoding: 'utf8' });
      assert.equal(cert.status, 0, cert.stderr);
      const main = debianMainCf(aliasDir)
        + `\nalias_maps = hash:${join(aliasDir, 'aliases')}\nalias_database = hash:${join(aliasDir, 'aliases')}\n`;
      // Debian's master.cf starts some twenty services: allow for a slow, shared machine.
      server = await startServer({ sinkPort, mainCf: main, masterCf: debianMasterCf(0).replace('127.0.0.1:0 inet', '127.0.0.1:{{PORT}} inet'), readyTimeoutMs: 90_000 });
      const reply = await sendRaw(server.port, 'sender@example.org', ['friend@example.com'], rfc822({ Subject: 'stock Debian files' }, 'hello\r\n'));
      assert.equal(reply.code, 250, reply.line);
      await sink.waitFor((st) => st.recipients >= 1, 30_000);
      assert.equal(sink.messages[0]!.recipients[0], 'friend@example.com');
      await server.waitForLog(/ status=sent /, 10_000);
      // smtpd_tls_security_level = may: STARTTLS is offered and starts.
      const { smtp } = await SmtpDialogue.connect(server.port);
      try {
        assert.match((await smtp.cmd('EHLO client.test')).lines.join('\n'), /^STARTTLS$/m);
        assert.equal((await smtp.cmd('STARTTLS')).line, '220 2.0.0 Ready to start TLS');
      } finally {
        smtp.close();
      }
    });
  });
});
