/**
 * End to end, virtual(8): a real server child delivers mail for virtual_mailbox_domains with its
 * virtual transport into Maildirs and mboxes under virtual_mailbox_base, found through
 * virtual_mailbox_maps (texthash) in Postfix's address order; the mailboxes are read back by an
 * independent reader, Python's `mailbox` module. The owner comes from virtual_uid_maps /
 * virtual_gid_maps: uid/gid 65534 when the test runs as root (so the files must be owned by
 * it), the test's own uid otherwise.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { queuedId, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { reachableDir } from './helpers/reachable.js';
import { header, readMailbox } from './helpers/mailbox.js';

const ROOT = process.getuid!() === 0;
const UID = ROOT ? 65534 : process.getuid!();
const GID = ROOT ? 65534 : process.getgid!();


describe('e2e virtual(8) delivery', () => {
  let dir: string;
  let base: string;
  let server: TestServer;
  const send = async (to: string[], subject: string, body = `Body of ${subject}.\n`) =>
    queuedId(await sendRaw(server.port, 'sender@example.org', to, rfc822({ From: '<sender@example.org>', Subject: subject, 'Message-ID': `<${subject.replace(/\W/g, '-')}@client.test>` }, body)));
  const status = (id: string, rcpt: string) => server.waitForLog(new RegExp(`${id}: to=<${rcpt.replace(/[.+]/g, '\\$&')}>, .*status=`), 20_000);

  before(async () => {
    dir = reachableDir('virtual-'); // mailboxes are written as their owners
    base = join(dir, 'base');
    mkdirSync(join(base, 'virt.test'), { recursive: true });
    chmodSync(base, 0o777);
    chmodSync(join(base, 'virt.test'), 0o777);
    // A directory the mailbox owner cannot write to (root-owned 0555 when root; 0555 of our own otherwise).
    mkdirSync(join(base, 'locked'), { mode: 0o555 });
    chmodSync(join(base, 'locked'), 0o555);
    writeFileSync(join(dir, 'vmailbox'), [
      'maildir@virt.test   virt.test/maildir/',
      'mbox@virt.test      virt.test/mbox',
      'small@virt.test     virt.test/small',
      'lowuid@virt.test    virt.test/lowuid/',
      'locked@virt.test    locked/box/',
      'owned@virt.test     virt.test/owned',
      '@virt2.test         virt2.test/catchall/',
    ].join('\n') + '\n');
    writeFileSync(join(dir, 'vuid'), [`lowuid@virt.test 50`, `@virt.test ${UID}`, `@virt2.test ${UID}`].join('\n') + '\n');
    server = await startServer({
      masterCfExtra: 'virtual unix - n n - - virtual',
      mainCf: {
        virtual_mailbox_domains: 'virt.test, virt2.test',
        virtual_mailbox_base: base,
        virtual_mailbox_maps: `texthash:${join(dir, 'vmailbox')}`,
        virtual_uid_maps: `texthash:${join(dir, 'vuid')}`,
        virtual_gid_maps: `static:${GID}`,
        recipient_delimiter: '+',
        // virtual_mailbox_limit may not be below message_size_limit (Postfix refuses that).
        message_size_limit: '4000',
        virtual_mailbox_limit: '6000',
        // Let the unknown user through smtpd, so that the agent's own answer is seen.
        smtpd_reject_unlisted_recipient: 'no',
        minimal_backoff_time: '1s', maximal_backoff_time: '2s', queue_run_delay: '1s',
      },
    });
  });
  after(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a result ending in "/" is a Maildir under virtual_mailbox_base: new/ holds the message with Return-Path, X-Original-To, Delivered-To; owned by the virtual_uid_maps uid; "delivered to maildir"', async () => {
    const id = await send(['maildir@virt.test'], 'virtual maildir', 'line one\nFrom a line\n');
    assert.match(await status(id, 'maildir@virt.test'), /relay=virtual, .*dsn=2\.0\.0, status=sent \(delivered to maildir\)$/);
    const md = join(base, 'virt.test', 'maildir');
    const names = readdirSync(join(md, 'new'));
    assert.equal(names.length, 1);
    assert.deepEqual(readdirSync(join(md, 'tmp')), []);
    const st = statSync(join(md, 'new', names[0]!));
    assert.equal(st.uid, UID);
    assert.equal(st.gid, GID);
    const [m] = readMailbox('Maildir', md);
    assert.deepEqual(m!.headers.slice(0, 3).map(([k]) => k), ['Return-Path', 'X-Original-To', 'Delivered-To']);
    assert.deepEqual(header(m!, 'Return-Path'), ['<sender@example.org>']);
    assert.deepEqual(header(m!, 'Delivered-To'), ['maildir@virt.test']);
    assert.deepEqual(header(m!, 'Subject'), ['virtual maildir']);
    assert.equal(m!.body, 'line one\nFrom a line\n', 'no From_ quoting in a Maildir');
  });

  test('user+ext@domain is found under user@domain (recipient_delimiter); Delivered-To keeps the extension', async () => {
    const id = await send(['maildir+tag@virt.test'], 'virtual extension');
    assert.match(await status(id, 'maildir+tag@virt.test'), /status=sent \(delivered to maildir\)$/);
    const m = readMailbox('Maildir', join(base, 'virt.test', 'maildir')).find((x) => header(x, 'Subject')[0] === 'virtual extension');
    assert.ok(m);
    assert.deepEqual(header(m, 'Delivered-To'), ['maildir+tag@virt.test']);
    assert.deepEqual(header(m, 'X-Original-To'), ['maildir+tag@virt.test']);
  });

  test('a result without "/" is an mbox: From_ line, ">From " quoting, dot-lock removed; "delivered to mailbox"', async () => {
    const id = await send(['mbox@virt.test'], 'virtual mbox', 'first\nFrom the start\n');
    assert.match(await status(id, 'mbox@virt.test'), /relay=virtual, .*dsn=2\.0\.0, status=sent \(delivered to mailbox\)$/);
    const path = join(base, 'virt.test', 'mbox');
    assert.equal(statSync(path).uid, UID);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.ok(!existsSync(`${path}.lock`));
    const raw = readFileSync(path, 'latin1');
    assert.match(raw, /^From sender@example\.org  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n/);
    const [m] = readMailbox('mbox', path);
    assert.deepEqual(header(m!, 'Delivered-To'), ['mbox@virt.test']);
    assert.deepEqual(header(m!, 'Return-Path'), ['<sender@example.org>']);
    assert.equal(m!.body, 'first\n>From the start\n');
  });

  test('@domain is the catch-all: any user of virt2.test lands in its mailbox', async () => {
    const id = await send(['anyone@virt2.test', 'someone.else@virt2.test'], 'virtual catchall');
    assert.match(await status(id, 'anyone@virt2.test'), /status=sent \(delivered to maildir\)$/);
    assert.match(await status(id, 'someone.else@virt2.test'), /status=sent \(delivered to maildir\)$/);
    const msgs = readMailbox('Maildir', join(base, 'virt2.test', 'catchall'));
    assert.deepEqual(msgs.map((m) => header(m, 'Delivered-To')[0]).sort(), ['anyone@virt2.test', 'someone.else@virt2.test']);
  });

  test('an address in no virtual_mailbox_maps entry bounces 5.1.1 \'unknown user: "user@domain"\'', async () => {
    const id = await send(['nosuch@virt.test'], 'virtual unknown');
    assert.match(await status(id, 'nosuch@virt.test'), /relay=virtual, .*dsn=5\.1\.1, status=bounced \(unknown user: "nosuch@virt\.test"\)$/);
  });

  test('a uid below virtual_minimum_uid (100) is deferred 4.3.5 with Postfix\'s "bad uid" warning; nothing is written', async () => {
    const id = await send(['lowuid@virt.test'], 'virtual low uid');
    assert.match(await status(id, 'lowuid@virt.test'), /dsn=4\.3\.5, status=deferred \(mail system configuration error\)$/);
    assert.ok(server.logLines().some((l) => /warning: recipient lowuid@virt\.test: bad uid 50 in virtual_uid_maps$/.test(l)), 'the warning names the uid and the map');
    assert.ok(!existsSync(join(base, 'virt.test', 'lowuid')));
  });

  test('virtual_mailbox_limit: an mbox that would grow past it bounces 5.2.2 "delivery failed to mailbox …: error writing message: File too large"; the mbox is unchanged', async () => {
    const path = join(base, 'virt.test', 'small');
    const first = await send(['small@virt.test'], 'virtual small 1', 'x'.repeat(70) + '\n');
    assert.match(await status(first, 'small@virt.test'), /status=sent \(delivered to mailbox\)$/);
    const big = ('y'.repeat(70) + '\n').repeat(40); // ~3.5 kB with the headers: under message_size_limit, over what the mbox has left
    const second = await send(['small@virt.test'], 'virtual small 2', big);
    assert.match(await status(second, 'small@virt.test'), /status=sent \(delivered to mailbox\)$/);
    const before = readFileSync(path, 'latin1');
    const third = await send(['small@virt.test'], 'virtual small 3', big);
    const line = await status(third, 'small@virt.test');
    assert.match(line, new RegExp(`dsn=5\\.2\\.2, status=bounced \\(delivery failed to mailbox ${path.replace(/[.]/g, '\\.')}: error writing message: File too large\\)$`));
    assert.equal(readFileSync(path, 'latin1'), before, 'the refused message left no partial copy');
    assert.deepEqual(readMailbox('mbox', path).map((m) => header(m, 'Subject')[0]), ['virtual small 1', 'virtual small 2']);
    assert.ok(statSync(path).size <= 6000);
  });

  test('strict_mailbox_ownership = yes: an mbox owned by another uid is deferred 4.2.0 "destination … is not owned by recipient", untouched', { skip: ROOT ? false : 'needs root to own a file as another uid' }, async () => {
    const path = join(base, 'virt.test', 'owned');
    writeFileSync(path, '');
    chmodSync(path, 0o666); // writable, so that only the owner check refuses it
    const id = await send(['owned@virt.test'], 'virtual owned');
    const line = await status(id, 'owned@virt.test');
    assert.match(line, new RegExp(`dsn=4\\.2\\.0, status=deferred \\(delivery failed to mailbox ${path.replace(/[.]/g, '\\.')}: destination ${path.replace(/[.]/g, '\\.')} is not owned by recipient\\)$`));
    assert.ok(server.logLines().some((l) => l.includes('warning: specify "strict_mailbox_ownership = no" to ignore mailbox ownership mismatch')));
    assert.equal(readFileSync(path, 'latin1'), '');
  });

  test('an unwritable directory under virtual_mailbox_base defers 4.2.0 "maildir delivery failed: …" with the access warning; once writable the retry delivers, nothing lost', async () => {
    const id = await send(['locked@virt.test'], 'virtual locked', 'keep me\n');
    const line = await status(id, 'locked@virt.test');
    assert.match(line, /dsn=4\.2\.0, status=deferred \(maildir delivery failed: create maildir file .*locked\/box\/tmp.*: Permission denied\)$/);
    assert.ok(server.logLines().some((l) => l.includes(`warning: maildir access problem for UID/GID=${UID}/${GID}: `)));
    chmodSync(join(base, 'locked'), 0o777);
    await server.waitForLog(new RegExp(`${id}: to=<locked@virt\\.test>, .*status=sent \\(delivered to maildir\\)`), 20_000);
    const msgs = readMailbox('Maildir', join(base, 'locked', 'box'));
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0]!.body, 'keep me\n');
  });
});

describe('e2e virtual(8) with a broken virtual_mailbox_maps', () => {
  let server: TestServer;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'virtual-broken-'));
    server = await startServer({
      masterCfExtra: 'virtual unix - n n - - virtual',
      mainCf: {
        virtual_mailbox_domains: 'virt.test',
        virtual_mailbox_base: dir,
        virtual_mailbox_maps: `texthash:${join(dir, 'missing')}`,
        virtual_uid_maps: `static:${UID}`,
        virtual_gid_maps: `static:${GID}`,
        smtpd_reject_unlisted_recipient: 'no',
      },
    });
  });
  after(async () => {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a table that cannot be read defers 4.3.5 "mail system configuration error" (never an unknown-user bounce), the table\'s error logged', async () => {
    const id = queuedId(await sendRaw(server.port, 'sender@example.org', ['user@virt.test'], rfc822({ Subject: 'broken map' }, 'x\n')));
    const line = await server.waitForLog(new RegExp(`${id}: to=<user@virt\\.test>, .*status=`), 20_000);
    assert.match(line, /dsn=4\.3\.5, status=deferred \(mail system configuration error\)$/);
    assert.ok(server.logLines().some((l) => /warning: table virtual_mailbox_maps: lookup user@virt\.test: .*missing/.test(l)));
  });
});
