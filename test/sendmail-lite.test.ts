/**
 * bin/sendmail, the Perl front end (issue 16), against the Node sendmail it stands in front of
 * (dist/bin/sendmail.js): one maildrop format, one behaviour.
 *
 * - Files: each case runs through both commands into the same maildrop, and the two files are
 *   the same bytes (but for the arrival time), as are the exit status and standard error. A
 *   copy of the front end in a temp tree whose dist/bin/sendmail.js records that it ran (then
 *   runs the real one) shows which cases the front end writes itself and which it hands over.
 * - Delivery: messages written by each go through a real server (pickup → cleanup → qmgr →
 *   smtp) to a sink, and arrive the same (envelope, DSN parameters, headers, body).
 */
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink, type SinkMessage } from '../src/smtp/sink.js';
import { decodeMaildrop, isMaildropName } from '../src/maildrop/format.js';
import { isQueueId } from '../src/queue/qid.js';
import { REPO_ROOT, startServer, type TestServer } from './helpers/server.js';

const FRONT = join(REPO_ROOT, 'bin', 'sendmail');
const NODE_SENDMAIL = join(REPO_ROOT, 'dist', 'bin', 'sendmail.js');
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

interface Run { status: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[], input: Buffer | string, env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { env, cwd: tmpdir(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    c.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    c.on('error', reject);
    c.on('close', (status) => resolve({ status, stdout, stderr }));
    c.stdin.on('error', () => { /* it may exit before reading everything */ });
    c.stdin.end(input);
  });
}

/** A configuration directory with a maildrop (mode 1733, as the Node command makes it). */
function configDir(mainCf = '', masterCf = 'pickup unix n - n 60 1 pickup\nsmtp inet n - n - - smtpd\n127.0.0.1:2525 inet n - n - 2 smtpd\n'): string {
  const dir = tempDir('postactor-lite-');
  writeFileSync(join(dir, 'main.cf'), `queue_directory = ${dir}/spool\n${mainCf}`);
  writeFileSync(join(dir, 'master.cf'), masterCf);
  mkdirSync(join(dir, 'spool', 'maildrop'), { recursive: true });
  chmodSync(join(dir, 'spool', 'maildrop'), 0o1733);
  return dir;
}

/**
 * A copy of the front end in a tree of its own (bin/sendmail, and bin/mailq and bin/postqueue
 * symlinks to it, as in the repository) whose dist/bin/NAME.js leaves a mark and then runs the real Node command:
 * the mark says the front end handed over.
 */
function markingTree(): { bin: string; sendmail: string; mailq: string; postqueue: string; mark: string } {
  const root = tempDir('postactor-lite-tree-');
  mkdirSync(join(root, 'bin'));
  mkdirSync(join(root, 'dist', 'bin'), { recursive: true });
  copyFileSync(FRONT, join(root, 'bin', 'sendmail'));
  chmodSync(join(root, 'bin', 'sendmail'), 0o755);
  symlinkSync('sendmail', join(root, 'bin', 'mailq'));
  symlinkSync('sendmail', join(root, 'bin', 'postqueue'));
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'));
  const mark = join(root, 'handed-over');
  for (const name of ['sendmail', 'mailq', 'postqueue']) {
    const real = join(REPO_ROOT, 'dist', 'bin', `${name}.js`);
    writeFileSync(join(root, 'dist', 'bin', `${name}.js`),
      `import { appendFileSync } from 'node:fs';\nappendFileSync(${JSON.stringify(mark)}, JSON.stringify(process.argv.slice(2)) + '\\n');\n` +
      `process.argv[1] = ${JSON.stringify(real)};\nawait import(${JSON.stringify(real)});\n`);
  }
  return { bin: join(root, 'bin', 'sendmail'), sendmail: join(root, 'bin', 'sendmail'), mailq: join(root, 'bin', 'mailq'), postqueue: join(root, 'bin', 'postqueue'), mark };
}

/** The one file in the maildrop, removed. */
function takeFile(dir: string): { name: string; bytes: Buffer } | null {
  const md = join(dir, 'spool', 'maildrop');
  const names = readdirSync(md);
  assert.ok(names.length <= 1, `one file at most: ${names.join(' ')}`);
  if (!names.length) return null;
  const bytes = readFileSync(join(md, names[0]!));
  unlinkSync(join(md, names[0]!));
  return { name: names[0]!, bytes };
}

const sameArrival = (b: Buffer) => b.toString('latin1').replace(/"arrival":\d+/, '"arrival":0');

const baseEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env };
  delete env['MAIL_CONFIG'];
  delete env['POSTACTOR_CONFIG'];
  delete env['NAME'];
  return env;
};

const HEADER = 'From: me@example.org\nTo: you@example.com\nSubject: lite\n\n';
const BIG = HEADER + 'a line of a big body, 8-bit too: \xe9\xe8 \u00fc\u2603 .....................\n'.repeat(20_000); // > 1 MB

interface Case { name: string; args: string[]; input: Buffer | string; fast: boolean; env?: Record<string, string>; mainCf?: string; masterCf?: string }

const CASES: Case[] = [
  { name: 'plain -i', args: ['-i', 'rcpt@example.com'], input: HEADER + 'body\n', fast: true },
  { name: '-oi, a "." line kept', args: ['-oi', 'rcpt@example.com'], input: HEADER + 'one\n.\ntwo\n', fast: true },
  { name: 'a "." line ends input without -i', args: ['rcpt@example.com'], input: HEADER + 'one\n.\ntwo\n', fast: true },
  { name: 'a ".\\r" line ends input too', args: ['rcpt@example.com'], input: HEADER + 'one\r\n.\r\r\ntwo\n', fast: true },
  { name: 'a "." line first', args: ['rcpt@example.com'], input: '.\nrest\n', fast: true },
  { name: 'a last "." without newline', args: ['rcpt@example.com'], input: HEADER + 'x\n.', fast: true },
  { name: 'a missing trailing newline', args: ['-i', 'rcpt@example.com'], input: HEADER + 'no newline at the end', fast: true },
  { name: 'a trailing CR only', args: ['-i', 'rcpt@example.com'], input: HEADER + 'x\n\r', fast: true },
  { name: 'CRLF input, leading From lines', args: ['-i', 'rcpt@example.com'], input: 'From me Thu Dec  3 00:00:00 2026\r\n>From again\nSubject: crlf\r\n\r\nline\r\r\nbare\rcr\r\n', fast: true },
  { name: 'only From lines', args: ['-i', 'rcpt@example.com'], input: 'From a\n>From b', fast: true },
  { name: 'empty input', args: ['-i', 'rcpt@example.com'], input: '', fast: true },
  { name: '8-bit body', args: ['-i', 'rcpt@example.com'], input: Buffer.concat([Buffer.from(HEADER), Buffer.from([0xe9, 0x0a, 0xff, 0xfe, 0x00, 0x0a]), Buffer.from('caf\u00e9 \u2603\n')]), fast: true },
  { name: 'a body over 1 MB', args: ['-i', 'rcpt@example.com'], input: BIG, fast: true },
  { name: 'DSN and the other envelope flags', args: ['-f', 'Sender Name <s@example.org>', '-F', 'Joe "Q" Public\t\u00e9', '-N', 'success, delay', '-R', 'full', '-V', 'env-id 1', '-B', '8BITMIME', '-G', '-v', '-i', 'a@example.com,b@example.com', '<c@example.com>', 'Dee <d@example.com>'], input: HEADER + 'dsn\n', fast: true },
  { name: '-N never -R hdrs -r <>', args: ['-Nnever', '-Rhdrs', '-r', '<>', '-oi', 'rcpt@example.com'], input: HEADER + 'x\n', fast: true },
  { name: 'clustered flags, ignored legacy ones, -C DIR/main.cf', args: ['-ti', '-oem', '-o7', '-h', '17', '-U', '-m', '-L', 'label', '-X', '/dev/null', '-bm', '-C', '@DIR@/main.cf'], input: 'To: you@example.com\n\nx\n', fast: true },
  { name: '-t: To/Cc/Bcc, folded, quoted phrases', args: ['-t', '-i'], input: 'To: "Doe, John" <john@example.com>,\n  jane@example.com\nCc: Cee <c@example.com>\nBcc: b@example.com\nSubject: t\n\nbody\n', fast: true },
  { name: '-t: Resent-* wins', args: ['-t', 'extra@example.com'], input: 'To: a@example.com\nResent-To: r@example.com\nResent-Bcc: <rb@example.com>\n\nx\n', fast: true },
  { name: '-t: a group (handed over after reading)', args: ['-t'], input: 'To: undisclosed-recipients:;\nBcc: hidden@example.com, (comment) other@example.com\n\n.\nafter the dot\n', fast: false },
  { name: '-t: 8-bit text in an address header', args: ['-t'], input: 'To: J\u00f6rg <j@example.com>\n\nx\n', fast: false },
  { name: '-t: none found', args: ['-t'], input: 'Subject: none\n\nx\n', fast: false },
  { name: 'no recipient', args: ['-i'], input: 'x\n', fast: false },
  { name: 'too big', args: ['-i', 'rcpt@example.com'], input: HEADER + 'x'.repeat(2000) + '\n', fast: false, mainCf: 'message_size_limit = 1000\n' },
  { name: 'size limit 0', args: ['-i', 'rcpt@example.com'], input: HEADER + 'x'.repeat(2000) + '\n', fast: true, mainCf: 'message_size_limit = 0\n' },
  { name: 'a recipient that is not plain', args: ['-i', 'a@example.com b@example.com'], input: 'x\n', fast: false },
  { name: 'an empty recipient list', args: ['-i', ','], input: 'x\n', fast: true },
  { name: '-f with a newline: the Node command warns', args: ['-f', 'me@example.org\nRCPT TO:<x@evil>', 'r@example.com'], input: 'x\n', fast: false },
  { name: 'a bad -N: the Node command warns', args: ['-N', 'sometimes', 'r@example.com'], input: 'x\n', fast: false },
  { name: 'an unknown flag', args: ['-k', 'r@example.com'], input: 'x\n', fast: false },
  { name: '-bp with a recipient', args: ['-bp', 'r@example.com'], input: '', fast: false },
  { name: 'VERP', args: ['-V', 'xy', 'r@example.com'], input: '', fast: false },
  { name: 'NAME gives the full name', args: ['-i', 'rcpt@example.com'], input: 'x\n', fast: true, env: { NAME: 'From The Environment' } },
  { name: '$ in main.cf', args: ['-i', 'rcpt@example.com'], input: 'x\n', fast: false, mainCf: 'message_size_limit = ${nothing?{1}:{20000000}}\n' },
  { name: 'a master.cf line it does not know', args: ['-i', 'rcpt@example.com'], input: 'x\n', fast: false, masterCf: 'pickup unix n - n 60 1 pickup -o { syslog_name = x }\n' },
  { name: 'a broken master.cf', args: ['-i', 'rcpt@example.com'], input: 'x\n', fast: false, masterCf: 'pickup unix n - n 60\n' },
];

describe('the front end writes what the Node sendmail writes', () => {
  for (const c of CASES) {
    test(c.name, async () => {
      const dir = configDir(c.mainCf, c.masterCf);
      const tree = markingTree();
      const env = { ...baseEnv(), ...c.env };
      const withConfig = c.args.includes('-C') ? c.args.map((a) => a.replace('@DIR@', dir)) : ['-C', dir, ...c.args];
      const lite = await run(tree.bin, withConfig, c.input, env);
      const liteFile = takeFile(dir);
      const handedOver = existsSync(tree.mark);
      const node = await run(process.execPath, [NODE_SENDMAIL, ...withConfig], c.input, env);
      const nodeFile = takeFile(dir);
      assert.equal(handedOver, !c.fast, c.fast ? 'written by the front end itself' : 'handed over to the Node command');
      assert.equal(lite.status, node.status, `exit status; stderr: ${lite.stderr} / ${node.stderr}`);
      assert.equal(lite.stderr, node.stderr);
      assert.equal(liteFile === null, nodeFile === null, 'both wrote a file, or neither');
      if (liteFile && nodeFile) {
        assert.ok(isQueueId(liteFile.name) && isMaildropName(liteFile.name), liteFile.name);
        assert.equal(sameArrival(liteFile.bytes), sameArrival(nodeFile.bytes));
        decodeMaildrop(liteFile.bytes); // pickup's own reader takes it
      }
    });
  }

  test('the file is the submitter\'s, mode 0600, and no temporary file is left', async () => {
    const dir = configDir();
    const r = await run(FRONT, ['-C', dir, '-i', 'rcpt@example.com'], 'x\n', baseEnv());
    assert.equal(r.status, 0, r.stderr);
    const names = readdirSync(join(dir, 'spool', 'maildrop'));
    assert.equal(names.length, 1, names.join(' '));
    const { statSync } = await import('node:fs');
    const st = statSync(join(dir, 'spool', 'maildrop', names[0]!));
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(st.uid, process.getuid!());
  });

  test('as another user (nobody): the file is theirs, mode 0600, in the root-owned 1733 maildrop, with their uid and login name', { skip: process.getuid!() !== 0 ? 'needs root to run a command as nobody' : false }, async () => {
    // What nobody needs, where nobody reaches it (the checkout may be a 0700 directory): the
    // front end alone, since it starts no Node for this submission.
    const tree = mkdtempSync(join(tmpdir(), 'postactor-lite-nobody-'));
    dirs.push(tree);
    chmodSync(tree, 0o755);
    copyFileSync(FRONT, join(tree, 'sendmail'));
    chmodSync(join(tree, 'sendmail'), 0o755);
    const dir = configDir();
    for (const d of [dir, join(dir, 'spool')]) chmodSync(d, 0o755);
    const nobody = spawnSyncText('/usr/bin/id', ['-u', 'nobody']).stdout.trim();
    const r = await new Promise<Run>((resolve, reject) => {
      const c = spawn(join(tree, 'sendmail'), ['-C', dir, '-i', 'rcpt@example.com'], { uid: Number(nobody), gid: Number(nobody), cwd: '/', env: baseEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
      let stderr = '';
      c.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      c.on('error', reject);
      c.on('close', (status) => resolve({ status, stdout: '', stderr }));
      c.stdin.end('Subject: from nobody\n\nx\n');
    });
    assert.equal(r.status, 0, r.stderr);
    const md = join(dir, 'spool', 'maildrop');
    const names = readdirSync(md);
    assert.equal(names.length, 1, names.join(' '));
    const { statSync } = await import('node:fs');
    const st = statSync(join(md, names[0]!));
    assert.equal(st.uid, Number(nobody));
    assert.equal(st.mode & 0o777, 0o600);
    const { envelope } = decodeMaildrop(readFileSync(join(md, names[0]!)));
    assert.equal(envelope.uid, Number(nobody));
    assert.equal(envelope.user, 'nobody');
    assert.equal(envelope.sender, 'nobody');
  });

  test('the Perl is strict and warning-free, and the checked-in file is executable', () => {
    const r = spawnSyncText('/usr/bin/perl', ['-Mstrict', '-Mwarnings', '-c', FRONT]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), `${FRONT} syntax OK`);
    const mode = spawnSyncText('git', ['-C', REPO_ROOT, 'ls-files', '-s', 'bin/sendmail']).stdout;
    if (mode) assert.match(mode, /^100755 /, 'git keeps it executable, so a clean clone has it so');
  });
});

function spawnSyncText(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const { spawnSync } = process.getBuiltinModule('node:child_process');
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

describe('a front-end file and a Node file are delivered the same', () => {
  let sink: SmtpSink;
  let server: TestServer;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    const sinkPort = await sink.listen(0);
    server = await startServer({ sinkPort, masterCfExtra: 'pickup unix n - n 60 1 pickup', mainCf: { myorigin: 'origin.example' } });
  });

  after(async () => {
    await server?.stop();
    await sink?.close();
  });

  const arrived = async (tag: string): Promise<SinkMessage> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const m = sink.messages.find((x) => x.data.includes(`X-Tag: ${tag}\r\n`));
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${tag}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  /** The message without what differs by submission: pickup's Received (queue ID, time), Date, Message-ID. */
  const normal = (m: SinkMessage) => ({
    sender: m.sender,
    recipients: m.recipients,
    mailParams: m.mailParams,
    rcptParams: m.rcptParams,
    data: m.data.toString('latin1')
      .replace(/^Received: [^\r]*\r\n(\t[^\r]*\r\n)*/gm, '')
      .replace(/^(Date|Message-Id|Message-ID): [^\r]*\r\n/gm, '')
      .replace(/X-Tag: (lite|node)-/, 'X-Tag: '),
  });

  for (const [name, args, body] of [
    ['plain', ['-i', 'plain@example.com'], 'Subject: plain\n\nplain body\n'],
    ['envelope and DSN', ['-f', 'sender@example.org', '-F', 'Full Name', '-N', 'success,failure', '-R', 'hdrs', '-V', 'envid-42', '-i', 'dsn@example.com'], 'Subject: dsn\n\n8-bit: caf\u00e9\n'],
    ['-t, no trailing newline, a "." line', ['-t'], 'To: "Doe, J" <t@example.com>\nSubject: t\n\nline\n.\nnot sent'],
    ['-t -i, a "." line kept', ['-t', '-i'], 'To: ti@example.com\nSubject: ti\n\nline\n.\nsent too'],
    ['over 1 MB', ['-i', 'big@example.com'], 'Subject: big\n\n' + `${'y'.repeat(76)}\n`.repeat(14_000)],
  ] as const) {
    test(name, async () => {
      const tagged = (who: string) => `X-Tag: ${who}-${name}\n${body}`;
      const lite = await run(FRONT, ['-C', server.dir, ...args], tagged('lite'), baseEnv());
      assert.equal(lite.status, 0, lite.stderr);
      const node = await run(process.execPath, [NODE_SENDMAIL, '-C', server.dir, ...args], tagged('node'), baseEnv());
      assert.equal(node.status, 0, node.stderr);
      const [a, b] = [await arrived(`lite-${name}`), await arrived(`node-${name}`)];
      assert.deepEqual(normal(a), normal(b));
    });
  }

  /** mailq (or postqueue) through the front end (a marking tree) and through the Node command: the same output. */
  const bothMailq = async (args: string[], name: 'mailq' | 'postqueue' | 'sendmail' = 'mailq'): Promise<{ out: string; handedOver: boolean }> => {
    const tree = markingTree();
    const lite = await run(tree[name], args, '', baseEnv());
    const node = await run(process.execPath, [join(REPO_ROOT, 'dist', 'bin', `${name}.js`), ...args], '', baseEnv());
    assert.deepEqual(lite, node);
    return { out: lite.stdout, handedOver: existsSync(tree.mark) };
  };

  test('mailq, postqueue -p, sendmail -bp: an empty queue of a running server is said by the front end (showq over the control socket), as the Node mailq says it', async () => {
    const deadline = Date.now() + 30_000;
    while (existsSync(join(server.queueDir, 'maildrop')) && readdirSync(join(server.queueDir, 'maildrop')).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    let r = await bothMailq(['-c', server.dir]);
    for (let i = 0; i < 100 && r.out !== 'Mail queue is empty\n'; i++) { // deliveries still in flight
      await new Promise((res) => setTimeout(res, 200));
      r = await bothMailq(['-c', server.dir]);
    }
    assert.deepEqual(r, { out: 'Mail queue is empty\n', handedOver: false });
    assert.deepEqual(await bothMailq([`-c${server.dir}`]), { out: 'Mail queue is empty\n', handedOver: false });
    assert.deepEqual(await bothMailq(['-c', server.dir, '-p'], 'postqueue'), { out: 'Mail queue is empty\n', handedOver: false });
    assert.deepEqual(await bothMailq(['-p', `-c${server.dir}`], 'postqueue'), { out: 'Mail queue is empty\n', handedOver: false });
    assert.deepEqual(await bothMailq(['-C', server.dir, '-bp'], 'sendmail'), { out: 'Mail queue is empty\n', handedOver: false });
    assert.equal((await bothMailq(['-C', server.dir, '-bp', 'x@example.com'], 'sendmail')).handedOver, true, 'sendmail -bp with a recipient: the Node error');
    assert.equal((await bothMailq(['-c', server.dir, '--json'])).handedOver, true, 'any other option: the Node mailq');
    assert.equal((await bothMailq(['-c', server.dir, '-j'], 'postqueue')).handedOver, true, 'postqueue -j: the Node postqueue');
    assert.equal((await bothMailq(['-c', server.dir], 'postqueue')).handedOver, true, 'postqueue without -p: its usage, from Node');
  });

  test('mailq: no queue store yet: "Mail queue is empty" from the front end; a stopped server\'s store: the Node mailq', async () => {
    assert.deepEqual(await bothMailq(['-c', configDir()]), { out: 'Mail queue is empty\n', handedOver: false });
    await server.kill('SIGTERM');
    try {
      const r = await bothMailq(['-c', server.dir]);
      assert.equal(r.handedOver, true);
      assert.equal(r.out, 'Mail queue is empty\n');
    } finally {
      await server.restart();
    }
  });

  test('submitted while the server is down: the file waits in the maildrop and is delivered after start', async () => {
    await server.kill('SIGTERM');
    const r = await run(FRONT, ['-C', server.dir, '-i', 'down@example.com'], 'Subject: down\nX-Tag: lite-down\n\nwhile down\n', baseEnv());
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readdirSync(join(server.queueDir, 'maildrop')).filter((n) => !n.startsWith('.')).length, 1);
    await server.restart();
    const m = await arrived('lite-down');
    assert.deepEqual(m.recipients, ['down@example.com']);
  });
});
