/**
 * TLS with SASL AUTH, as a submission service runs them (Debian's master.cf `submission` and
 * `submissions` entries): with TLS required, AUTH is offered only inside TLS (Postfix forces
 * smtpd_tls_auth_only), and a logged-in client's mail says "with ESMTPSA". Real Dovecot for
 * the passwords, swaks as the client.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startDovecot, type Dovecot } from '../bench/delivery/dovecot.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { needs } from './helpers/peers.js';
import { freePort, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const NO_DOVECOT = needs('/usr/sbin/dovecot', 'Dovecot (dovecot-core), the authentication server');
const tempDir = tempDirs('postactor-tls-sasl-');
const ALICE = 'alice@example.com';

function swaks(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('swaks', ['--helo', 'client.test', '--timeout', '15', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

describe('submission: TLS required, then AUTH', { skip: NO_DOVECOT }, () => {
  let dc: Dovecot;
  let sink: SmtpSink;
  let server: TestServer;
  const ports = { submission: 0, submissions: 0 };

  before(async () => {
    dc = await startDovecot({ users: [ALICE], passwords: { [ALICE]: 'secret' }, lmtp: false, auth: true });
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    const top = tempDir();
    const cert = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(top, 'key.pem'), '-out', join(top, 'cert.pem'), '-days', '2', '-subj', '/CN=mx.postactor.test'], { encoding: 'utf8' });
    assert.equal(cert.status, 0, cert.stderr);
    mkdirSync(join(top, 'queue', 'private'), { recursive: true });
    symlinkSync(dc.authSocket, join(top, 'queue', 'private', 'auth'));
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    // As Debian's master.cf.dist entries, uncommented.
    const sasl = '-o smtpd_sasl_auth_enable=yes -o smtpd_relay_restrictions=permit_sasl_authenticated,reject';
    server = await startServer({
      sinkPort,
      mainCf: {
        queue_directory: join(top, 'queue'),
        mynetworks: '192.0.2.0/24',
        smtpd_sasl_type: 'dovecot',
        smtpd_sasl_path: 'private/auth',
        smtpd_tls_cert_file: join(top, 'cert.pem'),
        smtpd_tls_key_file: join(top, 'key.pem'),
      },
      masterCfExtra: [
        `127.0.0.1:${ports.submission} inet n - n - 1 smtpd -o syslog_name=postactor/submission -o smtpd_tls_security_level=encrypt ${sasl}`,
        `127.0.0.1:${ports.submissions} inet n - n - 1 smtpd -o syslog_name=postactor/submissions -o smtpd_tls_wrappermode=yes ${sasl}`,
      ].join('\n'),
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
    await dc?.stop();
  });

  test('before STARTTLS: STARTTLS offered, AUTH not; AUTH answers 530', async () => {
    const { smtp } = await SmtpDialogue.connect(ports.submission);
    try {
      const keywords = (await smtp.cmd('EHLO client.test')).lines;
      assert.ok(keywords.includes('STARTTLS'), keywords.join(','));
      assert.ok(!keywords.some((k) => k.startsWith('AUTH')), keywords.join(','));
      assert.equal((await smtp.cmd(`AUTH PLAIN ${Buffer.from(`\0${ALICE}\0secret`).toString('base64')}`)).line, '530 5.7.0 Must issue a STARTTLS command first');
    } finally {
      smtp.close();
    }
  });

  for (const [name, flag] of [['submission', '--tls'], ['submissions', '--tlsc']] as const) {
    test(`${name}: swaks ${flag} --auth logs in inside TLS and relays; Received says ESMTPSA`, async () => {
      const r = await swaks(['--server', `127.0.0.1:${ports[name]}`, flag, '--auth', 'PLAIN', '--auth-user', ALICE, '--auth-password', 'secret',
        '--from', ALICE, '--to', 'friend@example.net', '--header', `Subject: ${name}-esmtpsa`]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /<~  235 2\.7\.0 Authentication successful/);
      await sink.waitFor(() => sink.messages.some((m) => m.data.includes(`Subject: ${name}-esmtpsa`)), 30_000);
      const data = sink.messages.find((m) => m.data.includes(`Subject: ${name}-esmtpsa`))!.data.toString('latin1');
      assert.match(data, /\tby mx\.postactor\.test \(Postactor\) with ESMTPSA id /);
    });
  }
});
