/**
 * bench/delivery — final-delivery throughput, queue to mailbox, on loopback only.
 *
 *   local  Postactor's local(8) into Maildirs: 100 users (a throwaway passwd file,
 *          POSTACTOR_PASSWD_FILE; uid/gid 65534 when run as root, so every delivery runs as
 *          the recipient in a short-lived child), home_mailbox = Maildir/.
 *   lmtp   Postactor's lmtp(8) into a real Dovecot (bench/delivery/dovecot.ts) over its
 *          UNIX-domain socket, the same 100 users.
 *
 * Each run starts a fresh server (and Dovecot), injects N messages of a 1 KiB body over SMTP
 * with bench/relay's generator (S sessions, connection reuse), and counts the files in the
 * users' Maildir/new until all N arrived. Recipients are spread over the users with a
 * virtual_alias_maps pcre: the generator's unique recipient "K.u@bench.test" → u<K mod 100>.
 *
 *   delivered/s = N ÷ (first connect → the last file appeared in a Maildir/new)
 *   accepted/s  = the generator's, for comparison (how fast the queue filled)
 *
 * Bounded: at most --messages per run, --timeout seconds per run (the run is reported as
 * incomplete then), --runs runs per mode.
 *
 *   node_modules/.bin/node dist/bench/delivery/run.js [--mode local,lmtp] [--runs 3]
 *     [--messages 2000] [--users 100] [--size 1024] [--sessions 10] [--timeout 300] [--json FILE]
 *     [--local-concurrency N]   (local_destination_concurrency_limit; default Postfix's 2)
 *     [--keep]                  (keep the instance directories: main.cf, maillog)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { LoadGenerator } from '../relay/generator.js';
import { freePort, REPO_ROOT, waitFor220 } from '../relay/mta.js';
import { startDovecot, type Dovecot } from './dovecot.js';

type Mode = 'local' | 'lmtp';

interface Options { keep: boolean; localConcurrency: string | null; modes: Mode[]; runs: number; messages: number; users: number; size: number; sessions: number; timeoutS: number; json: string | null }

interface RunResult { mode: Mode; run: number; messages: number; delivered: number; acceptedPerSec: number; deliveredPerSec: number; seconds: number; complete: boolean }

const DOMAIN = 'bench.test';
const user = (i: number) => `u${String(i).padStart(2, '0')}`;

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      mode: { type: 'string', default: 'local,lmtp' },
      runs: { type: 'string', default: '3' },
      messages: { type: 'string', default: '2000' },
      users: { type: 'string', default: '100' },
      size: { type: 'string', default: '1024' },
      sessions: { type: 'string', default: '10' },
      timeout: { type: 'string', default: '300' },
      json: { type: 'string' },
      'local-concurrency': { type: 'string' },
      keep: { type: 'boolean', default: false },
    },
  });
  const modes = values.mode!.split(',').map((m) => m.trim()) as Mode[];
  for (const m of modes) if (m !== 'local' && m !== 'lmtp') throw new Error(`--mode: unknown mode "${m}" (local, lmtp)`);
  const o = { modes, runs: Number(values.runs), messages: Number(values.messages), users: Number(values.users), size: Number(values.size), sessions: Number(values.sessions), timeoutS: Number(values.timeout), json: values.json ?? null, localConcurrency: values['local-concurrency'] ?? null, keep: values.keep ?? false };
  if (!(o.users >= 1 && o.users <= 100)) throw new Error('--users: 1 to 100 (the alias map spreads by the last two digits)');
  if (!(o.runs >= 1 && o.messages >= 1 && o.sessions >= 1 && o.timeoutS > 0)) throw new Error('--runs, --messages, --sessions, --timeout must be positive');
  return o;
}

/** The user a message number K (1-based, as the generator's -N numbers them) goes to. */
function spreadMap(dir: string, users: number): string {
  // K.u@bench.test → u<K mod users>; with 100 users the last two digits are the user.
  const file = path.join(dir, 'spread.pcre');
  const lines: string[] = [];
  if (users === 100) {
    lines.push(`/^\\d*(\\d\\d)\\.u@bench\\.test$/ u$1@${DOMAIN}`, `/^(\\d)\\.u@bench\\.test$/ u0$1@${DOMAIN}`);
  } else {
    for (let i = 0; i < users; i++) lines.push(`/^(\\d*[^\\d])?${i}\\.u@bench\\.test$/ ${user(i)}@${DOMAIN}`);
  }
  writeFileSync(file, lines.join('\n') + '\n');
  return `pcre:${file}`;
}

interface Instance { dir: string; port: number; child: ChildProcess; maildirs: string[]; stop(): Promise<void> }

async function startInstance(o: Options, mode: Mode, dovecot: Dovecot | null): Promise<Instance> {
  const dir = mkdtempSync(path.join(tmpdir(), `delivery-bench-${mode}-`));
  chmodSync(dir, 0o755);
  const port = await freePort();
  const root = process.getuid?.() === 0;
  const [uid, gid] = root ? [65534, 65534] : [process.getuid!(), process.getgid!()];
  const users = Array.from({ length: o.users }, (_, i) => user(i));
  const passwd = path.join(dir, 'passwd');
  const homes = path.join(dir, 'home');
  mkdirSync(homes, { mode: 0o755 });
  writeFileSync(passwd, users.map((u) => `${u}:x:${uid}:${gid}:bench:${path.join(homes, u)}:/bin/sh`).join('\n') + '\n');
  for (const u of users) {
    mkdirSync(path.join(homes, u));
    if (root) chmodSync(path.join(homes, u), 0o777);
  }
  const main = [
    `queue_directory = ${dir}/spool`,
    'myhostname = delivery-bench.localdomain',
    'inet_interfaces = 127.0.0.1',
    'mynetworks = 127.0.0.0/8',
    `maillog_file = ${dir}/maillog`,
    `virtual_alias_maps = ${spreadMap(dir, o.users)}`,
    'alias_maps =',
    'local_recipient_maps =',
    'smtpd_reject_unlisted_recipient = no',
    'relayhost =',
    ...(mode === 'local'
      ? [`mydestination = ${DOMAIN}`, 'home_mailbox = Maildir/', ...(o.localConcurrency ? [`local_destination_concurrency_limit = ${o.localConcurrency}`] : [])]
      : ['mydestination =', `relay_domains = ${DOMAIN}`, `relay_transport = lmtp:unix:${dovecot!.socket}`]),
  ];
  writeFileSync(path.join(dir, 'main.cf'), main.join('\n') + '\n');
  writeFileSync(path.join(dir, 'master.cf'), [
    `127.0.0.1:${port} inet n - n - 1 smtpd`,
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'rewrite unix - - n - 1 trivial-rewrite',
    'bounce unix - - n - 1 bounce',
    'local unix - n n - - local',
    'lmtp unix - - n - 1 lmtp',
    '',
  ].join('\n'));
  const child = spawn(path.join(REPO_ROOT, 'node_modules/.bin/node'), [path.join(REPO_ROOT, 'dist/bin/postactor.js'), '-c', dir, 'start-fg'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, POSTACTOR_PASSWD_FILE: passwd },
  });
  let err = '';
  child.stderr!.on('data', (d) => { err = (err + d).slice(-4000); });
  await waitFor220('127.0.0.1', port, 30_000, () => (child.exitCode !== null ? `postactor exited: ${err}` : null));
  const maildirs = mode === 'local' ? users.map((u) => path.join(homes, u, 'Maildir', 'new')) : users.map((u) => path.join(dovecot!.maildir(`${u}@${DOMAIN}`), 'new'));
  const stop = async () => {
    if (child.exitCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    }
    if (o.keep) process.stdout.write(`kept ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  };
  return { dir, port, child, maildirs, stop };
}

function countFiles(dirs: string[]): number {
  let n = 0;
  for (const d of dirs) if (existsSync(d)) n += readdirSync(d).length;
  return n;
}

async function runOnce(o: Options, mode: Mode, run: number): Promise<RunResult> {
  const dovecot = mode === 'lmtp' ? await startDovecot({ users: Array.from({ length: o.users }, (_, i) => `${user(i)}@${DOMAIN}`) }) : null;
  let inst: Instance | null = null;
  try {
    inst = await startInstance(o, mode, dovecot);
    const deadline = Date.now() + o.timeoutS * 1000;
    const gen = new LoadGenerator({ host: '127.0.0.1', port: inst.port, sessions: o.sessions, messages: o.messages, size: o.size, to: `u@${DOMAIN}`, unique: true, reuse: true, timeLimitMs: o.timeoutS * 1000 });
    const started = Date.now();
    const g = await gen.run();
    let delivered = countFiles(inst.maildirs);
    let lastAt = Date.now();
    while (delivered < g.accepted && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const n = countFiles(inst.maildirs);
      if (n !== delivered) { delivered = n; lastAt = Date.now(); }
    }
    const seconds = (lastAt - Math.min(started, g.firstConnectAt || started)) / 1000;
    return { mode, run, messages: o.messages, delivered, acceptedPerSec: g.acceptedPerSec, deliveredPerSec: delivered / seconds, seconds, complete: delivered >= o.messages && g.accepted === o.messages };
  } finally {
    await inst?.stop();
    await dovecot?.stop();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const o = parseOptions();
  const results: RunResult[] = [];
  for (let run = 1; run <= o.runs; run++) {
    for (const mode of o.modes) {
      const r = await runOnce(o, mode, run);
      results.push(r);
      process.stdout.write(`${mode} run ${run}: ${r.delivered}/${r.messages} delivered in ${r.seconds.toFixed(2)} s = ${r.deliveredPerSec.toFixed(1)} delivered/s (accepted ${r.acceptedPerSec.toFixed(1)}/s)${r.complete ? '' : ' INCOMPLETE'}\n`);
    }
  }
  process.stdout.write(`\nmedian of ${o.runs} run(s), ${o.messages} × ${o.size} B to ${o.users} users, ${o.sessions} sessions:\n`);
  for (const mode of o.modes) {
    const rs = results.filter((r) => r.mode === mode);
    process.stdout.write(`  ${mode.padEnd(5)} ${median(rs.map((r) => r.deliveredPerSec)).toFixed(1)} delivered/s, accepted ${median(rs.map((r) => r.acceptedPerSec)).toFixed(1)}/s${rs.every((r) => r.complete) ? '' : ' (some runs incomplete)'}\n`);
  }
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, results }, null, 2) + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/delivery: ${(e as Error).message}\n`);
  process.exit(1);
});
