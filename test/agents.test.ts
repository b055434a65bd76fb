/**
 * The local delivery agents through a real server (child process): discard(8), error(8) and
 * its defer mode retry, and pipe(8) running a real command (test/fixtures/agents/pipe-cmd.sh)
 * with Postfix's macros, flags, sysexits mapping and time limit. Routing is main.cf's
 * default_transport / relay_transport in "transport:nexthop" form.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { REPO_ROOT, rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';
import { reachableCopy, reachableDir } from './helpers/reachable.js';

// The command runs as user=nobody, who may not be able to enter the checkout (a clone under
// /root): it runs from a copy in a directory every user can reach.
const BIN = reachableDir('postactor-pipe-bin-');
const SCRIPT = reachableCopy(BIN, join(REPO_ROOT, 'test', 'fixtures', 'agents', 'pipe-cmd.sh'));
after(() => rmSync(BIN, { recursive: true, force: true }));
const isRoot = process.getuid?.() === 0;

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Sends one message; returns its queue ID (from "250 2.0.0 Ok: queued as ID"). */
async function send(server: TestServer, from: string, to: string[], subject = 'agents test', body = 'Hello.\n'): Promise<string> {
  const r = await sendRaw(server.port, from, to, rfc822({ From: `<${from}>`, To: to.map((t) => `<${t}>`).join(', '), Subject: subject }, body));
  assert.equal(r.code, 250, `${r.line}\n${server.logLines().slice(-8).join("\n")}`);
  const m = /queued as (\S+)/.exec(r.text);
  assert.ok(m, r.text);
  return m[1]!;
}

function uidOf(user: string): number {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${user}:`));
  assert.ok(line, `no ${user} in /etc/passwd`);
  return Number(line.split(':')[2]);
}

const LOCAL_AGENTS = [
  'discard unix - - n - - discard',
  'error unix - - n - - error',
  'retry unix - - n - - error',
  'bouncer unix - - n - - error',
].join('\n');

describe('discard(8) and error(8)', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({
      masterCfExtra: LOCAL_AGENTS,
      mainCf: { default_transport: 'discard:dropped by test', relay_domains: 'err.test', relay_transport: 'bouncer:5.1.1 no such user here' },
    });
  });
  after(async () => { await server?.stop(); });

  test('discard: every recipient is status=sent with the nexthop as reason, dsn 2.0.0, relay=none', async () => {
    const id = await send(server, 'sender@discard.test', ['a@example.com', 'b@example.net']);
    const lines = await server.waitForLogCount(new RegExp(`${id}: to=<`), 2, 10_000);
    for (const rcpt of ['a@example.com', 'b@example.net']) {
      const line = lines.find((l) => l.includes(`to=<${rcpt}>`));
      assert.ok(line, rcpt);
      assert.match(line, /postactor\/discard\[\d+\]: /);
      assert.match(line, /, relay=none, delay=[\d.]+, delays=[\d.]+\/[\d.]+\/[\d.]+\/[\d.]+, dsn=2\.0\.0, status=sent \(dropped by test\)$/);
    }
    await server.waitForLog(new RegExp(`${id}: removed$`), 5000);
  });

  test('error: "error:5.1.1 text" bounces every recipient with that status and text', async () => {
    const id = await send(server, 'sender@discard.test', ['nobody@err.test']);
    const line = await server.waitForLog(new RegExp(`${id}: to=<nobody@err\\.test>`), 10_000);
    assert.match(line, /postactor\/bouncer\[\d+\]: /);
    assert.match(line, /, relay=none, .*dsn=5\.1\.1, status=bounced \(no such user here\)$/);
    // The sender gets a bounce (discarded here, as its domain routes to discard).
    await server.waitForLog(new RegExp(`${id}: sender non-delivery notification: `), 10_000);
  });
});

describe('error(8) with a 4.x.y status, and retry (error in defer mode)', () => {
  let server: TestServer;
  before(async () => {
    server = await startServer({
      masterCfExtra: LOCAL_AGENTS,
      mainCf: { default_transport: 'bouncer:4.2.2 mailbox full, try later', relay_domains: 'later.test', relay_transport: 'retry:come back later' },
    });
  });
  after(async () => { await server?.stop(); });

  test('error: a 4.x.y status defers instead of bouncing', async () => {
    const id = await send(server, 'sender@example.org', ['full@example.com']);
    const line = await server.waitForLog(new RegExp(`${id}: to=<full@example\\.com>`), 10_000);
    assert.match(line, /, relay=none, .*dsn=4\.2\.2, status=deferred \(mailbox full, try later\)$/);
  });

  test('retry: every recipient is deferred, default status 4.0.0', async () => {
    const id = await send(server, 'sender@example.org', ['x@later.test']);
    const line = await server.waitForLog(new RegExp(`${id}: to=<x@later\\.test>`), 10_000);
    assert.match(line, /, relay=none, .*dsn=4\.0\.0, status=deferred \(come back later\)$/);
  });
});

describe('pipe(8): exit status, output, time limit, macros and flags', () => {
  let server: TestServer;
  let out: string;
  before(async () => {
    out = reachableDir('postactor-pipe-', 0o777); // the command runs as "nobody"
    server = await startServer({
      masterCfExtra: [
        'discard unix - - n - - discard',
        `pipe unix - n n - 4 pipe flags=FRDOX.> user=nobody argv=${SCRIPT} ${out} \${user} \${queue_id}-\${mailbox} \${sender} \${recipient} \${original_recipient} \${nexthop} \${domain} \${extension} \${size} \${client_address} \${client_hostname} $$literal`,
      ].join('\n'),
      mainCf: {
        default_transport: 'pipe',
        relayhost: '',
        relay_domains: 'sender.test',
        relay_transport: 'discard',
        pipe_destination_recipient_limit: '1',
        pipe_time_limit: '2s',
        recipient_delimiter: '+',
      },
    });
  });
  after(async () => {
    await server?.stop();
    rmSync(out, { recursive: true, force: true });
  });

  test('exit 0: sent "delivered via pipe service", relay=<transport>; macros expand; F R O D headers and "." ">" quoting', async () => {
    const body = 'line one\n.leading dot\nFrom the start\nlast\n';
    const id = await send(server, 'Sender@sender.test', ['ok+tag@Example.COM'], 'pipe ok', body);
    const line = await server.waitForLog(new RegExp(`${id}: to=<ok\\+tag@Example\\.COM>`), 10_000);
    assert.match(line, /postactor\/pipe\[\d+\]: /);
    assert.match(line, /, relay=pipe, delay=[\d.]+, delays=[\d.\/]+, dsn=2\.0\.0, status=sent \(delivered via pipe service\)$/);
    const tag = `${id}-ok+tag`;
    const args = readFileSync(join(out, `${tag}.args`), 'utf8').split('\n').slice(0, -1);
    const size = args[7]!;
    assert.deepEqual(args, [
      tag, 'Sender@sender.test', 'ok+tag@Example.COM', 'ok+tag@Example.COM', args[4]!, 'Example.COM', 'tag', size, '127.0.0.1', args[9]!, '$literal',
    ]);
    assert.equal(args[4]!.toLowerCase(), 'example.com', '${nexthop}: the recipient domain (no relayhost)');
    assert.match(args[9]!, /^(localhost|unknown|127\.0\.0\.1|[\w.-]+)$/, '${client_hostname}');
    assert.ok(Number(size) > body.length, `\${size} ${size}`);
    const stdin = readFileSync(join(out, `${tag}.stdin`), 'latin1');
    const lines = stdin.split('\n');
    assert.match(lines[0]!, /^From Sender@sender\.test  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$/);
    assert.equal(lines[1], 'Return-Path: <Sender@sender.test>');
    assert.equal(lines[2], 'X-Original-To: ok+tag@Example.COM');
    assert.equal(lines[3], 'Delivered-To: ok+tag@Example.COM');
    assert.ok(!stdin.includes('\r'), 'eol= default is a bare LF');
    assert.ok(stdin.includes('\n..leading dot\n'), 'flag . doubles a leading dot');
    assert.ok(stdin.includes('\n>From the start\n'), 'flag > quotes "From "');
    assert.ok(stdin.endsWith('\nlast\n'));
    const uid = Number(readFileSync(join(out, `${tag}.uid`), 'utf8'));
    assert.equal(uid, isRoot ? uidOf('nobody') : process.getuid!(), 'runs as user= when we are root');
    assert.equal(readFileSync(join(out, `${tag}.path`), 'utf8').trim(), '/usr/bin:/bin', 'clean environment: PATH=/usr/bin:/bin');
  });

  test('exit 0 with output: "delivered via pipe service (output)"', async () => {
    const id = await send(server, 'sender@sender.test', ['okmsg@example.com']);
    const line = await server.waitForLog(new RegExp(`${id}: to=<okmsg@example\\.com>`), 10_000);
    assert.match(line, /dsn=2\.0\.0, status=sent \(delivered via pipe service \(stored in folder INBOX\)\)$/);
  });

    test('exit 75 (EX_TEMPFAIL): deferred 4.3.0 "temporary failure. Command output: …"', async () => {
    const id = await send(server, 'sender@sender.test', ['tempfail@example.com']);
    const line = await server.waitForLog(new RegExp(`${id}: to=<tempfail@example\\.com>`), 10_000);
    assert.match(line, /, relay=pipe, .*dsn=4\.3\.0, status=deferred \(temporary failure\. Command output: mailbox locked\)$/);
  });

  test('exit 67 (EX_NOUSER): bounced 5.1.1 "user unknown. Command output: …"', async () => {
    const id = await send(server, 'sender@sender.test', ['nouser@example.com']);
    const line = await server.waitForLog(new RegExp(`${id}: to=<nouser@example\\.com>`), 10_000);
    assert.match(line, /, relay=pipe, .*dsn=5\.1\.1, status=bounced \(user unknown\. Command output: no such mailbox here\)$/);
  });

  test('output starting with an enhanced status code sets the status and text', async () => {
    const id = await send(server, 'sender@sender.test', ['dsn@example.com']);
    const line = await server.waitForLog(new RegExp(`${id}: to=<dsn@example\\.com>`), 10_000);
    assert.match(line, /dsn=5\.7\.9, status=bounced \(custom reason\)$/);
  });

  test('a non-sysexits status: bounced 5.3.0 "Command died with status N: "cmd". Command output: …"', async () => {
    const id = await send(server, 'sender@sender.test', ['die@example.com']);
    const line = await server.waitForLog(new RegExp(`${id}: to=<die@example\\.com>`), 10_000);
    assert.match(line, new RegExp(`dsn=5\\.3\\.0, status=bounced \\(Command died with status 3: "${esc(SCRIPT)}"\\. Command output: it broke\\)$`));
  });

  test('<transport>_time_limit: the command and its children are killed, 5.3.0 "Command time limit exceeded"', async () => {
    const t0 = Date.now();
    const id = await send(server, 'sender@sender.test', ['sleep@example.com']);
    const line = await server.waitForLog(new RegExp(`${id}: to=<sleep@example\\.com>`), 15_000);
    assert.match(line, new RegExp(`dsn=5\\.3\\.0, status=bounced \\(Command time limit exceeded: "${esc(SCRIPT)}"\\)$`));
    assert.ok(Date.now() - t0 < 12_000, 'killed after about pipe_time_limit = 2s, not after sleep 30');
  });

  test('flag D: a message that already has Delivered-To: for the recipient is a loop (5.4.6)', async () => {
    const r = await sendRaw(server.port, 'sender@sender.test', ['ok@loop.example'], rfc822({ 'Delivered-To': 'ok@loop.example', Subject: 'loop' }, 'x\n'));
    const id = /queued as (\S+)/.exec(r.text)![1]!;
    const line = await server.waitForLog(new RegExp(`${id}: to=<ok@loop\\.example>`), 10_000);
    assert.match(line, /dsn=5\.4\.6, status=bounced \(mail forwarding loop for ok@loop\.example\)$/);
    assert.ok(!existsSync(join(out, `${id}-ok.args`)), 'the command did not run');
  });
});

describe('pipe(8): several recipients per delivery', () => {
  let server: TestServer;
  let out: string;
  before(async () => {
    out = reachableDir('postactor-pipe-', 0o777);
    server = await startServer({
      masterCfExtra: `pipe unix - n n - 2 pipe flags=hu user=nobody argv=${SCRIPT} ${out} ok \${queue_id} \${sender} \${nexthop} --rcpt \${recipient} --user \${user}`,
      mainCf: { default_transport: 'pipe', relayhost: '', pipe_destination_recipient_limit: '10', recipient_delimiter: '+' },
    });
  });
  after(async () => {
    await server?.stop();
    rmSync(out, { recursive: true, force: true });
  });

  test('a word with ${recipient} becomes one word per recipient; flags h and u fold case; the null sender is MAILER-DAEMON', async () => {
    const id = await send(server, '', ['Jo.Doe+Ext@Multi.Example.COM', 'B@multi.example.com']);
    const lines = await server.waitForLogCount(new RegExp(`${id}: to=<`), 2, 10_000);
    for (const l of lines) assert.match(l, /status=sent \(delivered via pipe service\)$/);
    const args = readFileSync(join(out, `${id}.args`), 'utf8').split('\n').slice(0, -1);
    assert.deepEqual(args, [id, 'MAILER-DAEMON', 'multi.example.com', '--rcpt', 'jo.doe+ext@multi.example.com', 'b@multi.example.com', '--user', 'jo.doe', 'b']);
  });
});

describe('pipe(8): attributes size=, eol=, flag B, and configuration errors (transport_maps routes to each service)', () => {
  let server: TestServer;
  let out: string;
  before(async () => {
    out = reachableDir('postactor-pipe-', 0o777);
    const cmd = `argv=${SCRIPT} ${out} ok \${queue_id}`;
    const transportFile = join(out, 'transport');
    writeFileSync(transportFile, 'root.test piperoot\nsize.test pipesize\neol.test pipeeol\nbad.test pipebad\n');
    server = await startServer({
      masterCfExtra: [
        'discard unix - - n - - discard',
        `piperoot unix - n n - 1 pipe user=root ${cmd}`,
        `pipesize unix - n n - 1 pipe size=100 user=nobody ${cmd}`,
        `pipeeol unix - n n - 1 pipe flags=B eol=\\r\\n user=nobody ${cmd}`,
        `pipebad unix - n n - 1 pipe user=nobody ${cmd} \${no_such_macro}`,
      ].join('\n'),
      mainCf: {
        relayhost: '',
        default_transport: 'discard',
        transport_maps: `texthash:${transportFile}`,
      },
    });
  });
  after(async () => {
    await server?.stop();
    rmSync(out, { recursive: true, force: true });
  });

  test('size=: a larger message is returned, 5.2.3 "message too large"', async () => {
    const id = await send(server, 'sender@example.org', ['u@size.test'], 'big', 'x'.repeat(500) + '\n');
    const line = await server.waitForLog(new RegExp(`${id}: to=<u@size\\.test>`), 10_000);
    assert.match(line, /, relay=pipesize, .*dsn=5\.2\.3, status=bounced \(message too large\)$/);
    assert.ok(!existsSync(join(out, `${id}.args`)), 'the command did not run');
  });

  test('eol=\\r\\n ends every line with CRLF; flag B adds a blank line at the end', async () => {
    const id = await send(server, 'sender@example.org', ['u@eol.test'], 'eol', 'one\ntwo\n');
    const line = await server.waitForLog(new RegExp(`${id}: to=<u@eol\\.test>`), 10_000);
    assert.match(line, /status=sent \(delivered via pipeeol service\)$/);
    const stdin = readFileSync(join(out, `${id}.stdin`), 'latin1');
    assert.ok(stdin.endsWith('\r\none\r\ntwo\r\n\r\n'), JSON.stringify(stdin.slice(-20)));
    assert.ok(!/[^\r]\n/.test(stdin), 'no bare LF');
  });

  test('user=root is refused: deferred 4.3.5 "mail system configuration error", the problem named in a warning', async () => {
    const id = await send(server, 'sender@example.org', ['u@root.test'], 'root');
    const line = await server.waitForLog(new RegExp(`${id}: to=<u@root\\.test>`), 10_000);
    assert.match(line, /, relay=piperoot, .*dsn=4\.3\.5, status=deferred \(mail system configuration error\)$/);
    await server.waitForLog(/piperoot\[\d+\]: warning: piperoot: user= command-line attribute specifies root privileges \(.*master\.cf:\d+\)/, 5000);
    assert.ok(!existsSync(join(out, `${id}.args`)), 'the command did not run');
  });

  test('an unknown macro in argv= is a configuration error (deferred 4.3.5), not an empty word', async () => {
    const id = await send(server, 'sender@example.org', ['u@bad.test'], 'bad');
    const line = await server.waitForLog(new RegExp(`${id}: to=<u@bad\\.test>`), 10_000);
    assert.match(line, /dsn=4\.3\.5, status=deferred \(mail system configuration error\)$/);
    await server.waitForLog(/warning: pipebad: unknown command-line macro: \$no_such_macro/, 5000);
  });
});
