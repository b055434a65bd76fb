/**
 * End to end, local(8)'s delegation (Postfix's deliver_pass): mailbox_transport hands every
 * local recipient to another master.cf transport — here lmtp into a REAL Dovecot over its
 * UNIX-domain socket — and fallback_transport hands users missing from the password file to
 * one — here smtp to the project's sink. The other agent logs the delivery; local relays its
 * per-recipient outcome. Needs dovecot-core and dovecot-lmtpd (/usr/sbin/dovecot).
 */
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink } from '../src/smtp/sink.js';
import { startDovecot, type Dovecot } from '../bench/delivery/dovecot.js';
import { freePort, rfc822, sendRaw, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';
import { reachableDir } from './helpers/reachable.js';
import { NEEDS_DOVECOT_LMTP } from './helpers/peers.js';

const MASTER_LOCAL = 'local unix - n n - - local';

interface Env { dir: string; spool: string; passwd: string }

/** A passwd file with "me" (our own uid, home in the temp dir) and an mbox spool. */
function makeEnv(): Env {
  const dir = reachableDir('local-transport-'); // deliveries run as the recipients
  const spool = join(dir, 'spool');
  mkdirSync(spool, { mode: 0o1777 });
  chmodSync(spool, 0o1777);
  mkdirSync(join(dir, 'home-me'));
  const passwd = join(dir, 'passwd');
  writeFileSync(passwd, `me:x:${process.getuid!()}:${process.getgid!()}:Me:${join(dir, 'home-me')}:/bin/sh\n`);
  writeFileSync(join(dir, 'aliases'), 'team me\n'); // texthash: postmap's "key value" format
  return { dir, spool, passwd };
}

async function send(server: TestServer, to: string[], subject: string): Promise<string> {
  const r = await sendRaw(server.port, 'sender@example.org', to, rfc822({ From: '<sender@example.org>', Subject: subject, 'Message-ID': `<${subject.replace(/\W/g, '-')}@client.test>` }, `Body of ${subject}.\n`));
  assert.equal(r.code, 250, r.line);
  return /queued as (\S+)/.exec(r.text)![1]!;
}

describe('local(8) mailbox_transport = lmtp:unix:… into Dovecot', { skip: NEEDS_DOVECOT_LMTP }, () => {
  let env: Env;
  let dc: Dovecot;
  let server: TestServer;
  /** An smtpd with reject_unverified_recipient (the verify service's probes go through local and lmtp). */
  let verifyPort = 0;
  before(async () => {
    env = makeEnv();
    dc = await startDovecot({ users: ['me@local.test'], port: await freePort() });
    verifyPort = await freePort();
    server = await startServer({
      masterCfExtra: [
        MASTER_LOCAL, 'lmtp unix - - n - 1 lmtp', 'verify unix - - n - 1 verify',
        `127.0.0.1:${verifyPort} inet n - n - 1 smtpd -o smtpd_recipient_restrictions=reject_unverified_recipient -o address_verify_poll_count=1`,
      ].join('\n'),
      mainCf: {
        mydestination: 'local.test',
        myorigin: 'local.test',
        local_recipient_maps: '',
        mail_spool_directory: env.spool,
        alias_maps: `texthash:${join(env.dir, 'aliases')}`,
        mailbox_transport: `lmtp:unix:${dc.socket}`,
      },
      env: { POSTACTOR_PASSWD_FILE: env.passwd },
    });
  });
  after(async () => {
    await server?.stop();
    await dc?.stop();
    if (env) rmSync(env.dir, { recursive: true, force: true });
  });

  test('the recipient is passed to the lmtp transport: Dovecot stores it, lmtp logs status=sent, local logs no line of its own, no mbox is written', async () => {
    const id = await send(server, ['me@local.test'], 'mailbox transport');
    const line = await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, .*status=`), 20_000);
    assert.match(line, /postactor\/lmtp\[\d+\]: /);
    assert.ok(line.includes(`relay=mx.postactor.test[${dc.socket}]`), line);
    assert.match(line, /dsn=2\.0\.0, status=sent \(250 2\.0\.0 <me@local\.test> \S+ Saved\)$/);
    await server.waitForLog(new RegExp(`${id}: removed`), 10_000);
    assert.ok(!server.logLines().some((l) => l.includes('postactor/local[') && l.includes(`${id}: to=`)), 'local does not log the passed recipient');
    const got = dc.newMessages('me@local.test').filter((m) => m.includes('Subject: mailbox transport'));
    assert.equal(got.length, 1);
    assert.throws(() => readFileSync(join(env.spool, 'me')), /ENOENT/);
  });

  test('a verify probe passed on to lmtp: Dovecot answers at RCPT TO; lmtp\'s status line is logged once the verify service has it, and the next RCPT gets the verdict', async () => {
    const { smtp } = await SmtpDialogue.connect(verifyPort, { timeoutMs: 15_000 });
    try {
      await smtp.cmd('EHLO client.test');
      assert.equal((await smtp.cmd('MAIL FROM:<sender@example.org>')).code, 250);
      assert.match((await smtp.cmd('RCPT TO:<me@local.test>')).line, /^450 4\.1\.1 <me@local\.test>: Recipient address rejected: unverified address: Address verification in progress$/);
      const line = await server.waitForLog(/ postactor\/lmtp\[\d+\]: \w+: to=<me@local\.test>, .*status=deliverable /, 20_000);
      assert.ok(line.includes(`relay=mx.postactor.test[${dc.socket}]`), line);
      assert.match((await smtp.cmd('RCPT TO:<me@local.test>')).line, /^250 /, 'the verify service had the outcome before the line was logged');
      // A user the store does not know: Dovecot's answer at RCPT TO decides, not local's
      // password file (Postfix's local passes the probe to mailbox_transport too).
      assert.match((await smtp.cmd('RCPT TO:<stranger@local.test>')).line, /Address verification in progress$/);
      const refused = await server.waitForLog(/ postactor\/lmtp\[\d+\]: \w+: to=<stranger@local\.test>, .*status=undeliverable /, 20_000);
      assert.match(refused, /dsn=5\.1\.1, status=undeliverable \(host mx\.postactor\.test\[.*\] said: 550 5\.1\.1 /);
      assert.match((await smtp.cmd('RCPT TO:<stranger@local.test>')).line, /^450 4\.1\.1 <stranger@local\.test>: Recipient address rejected: unverified address: host mx\.postactor\.test\[.*\] said: 550 5\.1\.1 /);
      // An alias is not expanded for a probe (Postfix's alias.c): local answers "aliased to".
      assert.match((await smtp.cmd('RCPT TO:<team@local.test>')).line, /Address verification in progress$/);
      await server.waitForLog(/ postactor\/local\[\d+\]: \w+: to=<team@local\.test>, relay=local, .*dsn=2\.0\.0, status=deliverable \(aliased to me\)$/, 20_000);
      assert.match((await smtp.cmd('RCPT TO:<team@local.test>')).line, /^250 /);
    } finally {
      smtp.close();
    }
    assert.equal(dc.newMessages('me@local.test').filter((m) => m.includes('double-bounce')).length, 0, 'a probe stores nothing');
  });

  test('after alias expansion: team@local.test → me, passed on as me@$myorigin', async () => {
    const id = await send(server, ['team@local.test'], 'aliased transport');
    const line = await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, .*status=`), 20_000);
    assert.match(line, /postactor\/lmtp\[\d+\]: .*status=sent \(250 2\.0\.0 <me@local\.test> \S+ Saved\)$/);
    assert.equal(dc.newMessages('me@local.test').filter((m) => m.includes('Subject: aliased transport')).length, 1);
  });

  test('a user the store does not know gets the store\'s answer: bounced 5.1.1 from Dovecot, relayed by local', async () => {
    const id = await send(server, ['ghost@local.test'], 'unknown in store');
    const line = await server.waitForLog(new RegExp(`${id}: to=<ghost@local\\.test>, .*status=`), 20_000);
    assert.match(line, /postactor\/lmtp\[\d+\]: .*dsn=5\.1\.1, status=bounced \(host .* said: 550 5\.1\.1 <ghost@local\.test> User doesn't exist/);
    await server.waitForLog(new RegExp(`${id}: sender non-delivery notification: `), 10_000);
  });
});

describe('local(8) fallback_transport and mailbox_transport_maps', () => {
  let env: Env;
  let sink: SmtpSink;
  let server: TestServer;
  before(async () => {
    env = makeEnv();
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await freePort();
    await sink.listen(sinkPort);
    server = await startServer({
      masterCfExtra: MASTER_LOCAL,
      sinkPort,
      mainCf: {
        mydestination: 'local.test',
        local_recipient_maps: '',
        mail_spool_directory: env.spool,
        alias_maps: '',
        fallback_transport: `smtp:[127.0.0.1]:${sinkPort}`,
        mailbox_transport_maps: 'inline:{ broken=nosuchtransport, loop=local }',
        minimal_backoff_time: '1s', maximal_backoff_time: '2s', queue_run_delay: '1s',
      },
      env: { POSTACTOR_PASSWD_FILE: env.passwd },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
    if (env) rmSync(env.dir, { recursive: true, force: true });
  });

  test('a user missing from the password file goes to fallback_transport (smtp to the sink) instead of bouncing; a known user still gets the mbox', async () => {
    const id = await send(server, ['ghost@local.test', 'me@local.test'], 'fallback');
    const ghost = await server.waitForLog(new RegExp(`${id}: to=<ghost@local\\.test>, .*status=`), 20_000);
    assert.match(ghost, /postactor\/smtp\[\d+\]: .*relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*dsn=2\.0\.0, status=sent \(250 /);
    const me = await server.waitForLog(new RegExp(`${id}: to=<me@local\\.test>, .*status=`), 20_000);
    assert.match(me, /postactor\/local\[\d+\]: .*relay=local, .*status=sent \(delivered to mailbox\)$/);
    await sink.waitFor((st) => st.messages >= 1, 10_000);
    const m = sink.messages.find((x) => x.data.toString('latin1').includes('Subject: fallback'));
    assert.ok(m);
    assert.deepEqual(m.recipients, ['ghost@local.test']);
    assert.match(readFileSync(join(env.spool, 'me'), 'latin1'), /Subject: fallback/);
  });

  test('a mailbox_transport_maps entry naming a transport that master.cf lacks defers 4.3.0 "mail transport unavailable"', async () => {
    const id = await send(server, ['broken@local.test'], 'no such transport');
    const line = await server.waitForLog(new RegExp(`${id}: to=<broken@local\\.test>, .*status=`), 20_000);
    assert.match(line, /dsn=4\.3\.0, status=deferred \(mail transport unavailable\)$/);
    assert.ok(server.logLines().some((l) => l.includes(`${id}: mailbox_transport nosuchtransport: `)), 'the reason is logged');
  });

  test('a transport naming local itself is refused (deferred 4.3.5, warning) instead of passing the recipient round forever', async () => {
    const id = await send(server, ['loop@local.test'], 'self transport');
    const line = await server.waitForLog(new RegExp(`${id}: to=<loop@local\\.test>, .*status=`), 20_000);
    assert.match(line, /postactor\/local\[\d+\]: .*dsn=4\.3\.5, status=deferred \(mail system configuration error\)$/);
    assert.ok(server.logLines().some((l) => l.includes(`${id}: mailbox_transport: "local" names this service itself`)));
  });
});
