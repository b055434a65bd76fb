/**
 * bench/delivery — final-delivery throughput, queue to mailbox, on loopback only: Postactor and
 * Debian's Postfix on the same workload, alternating run by run (A B A B …), ratio printed.
 *
 *   maildir  local(8), home_mailbox = Maildir/, 100 users (`local` is the same mode)
 *   mbox     local(8), mbox files in a mail_spool_directory (mode 1777), Postfix's default locks
 *   virtual  virtual(8), every recipient of vbench.test into one Maildir owned by uid/gid 5000
 *   lmtp     lmtp(8) into a real Dovecot (bench/delivery/dovecot.ts) over its UNIX-domain socket
 *
 * The users uNN come from a throwaway passwd file: Postactor reads it as POSTACTOR_PASSWD_FILE;
 * Postfix sees it as /etc/passwd in a private mount namespace (bench/postfix-peer.sh,
 * POSTFIX_PEER_PASSWD). As root the users are uid/gid 65534, so every delivery switches to the
 * recipient, as in production. Each run starts a fresh MTA (and Dovecot), injects N messages of
 * a 1 KiB body over SMTP with bench/relay's generator (S sessions, connection reuse) and polls
 * the mailboxes until all N arrived. Recipients "K.u@bench.test" are spread over the users by
 * a virtual_alias_maps pcre (the same table in both MTAs).
 *
 *   delivered/s = N ÷ (first connect → the last message seen in a mailbox)
 *   accepted/s  = the generator's, for comparison (how fast the queue filled)
 *   cpu ms/msg  = the MTA's CPU time over the same interval (its process tree: bench/delivery/cpu.ts)
 *                 ÷ messages delivered — what decides the rate when the machine is busy
 *
 * Bounded: at most --messages per run, --timeout seconds per run (the run is reported as
 * incomplete then), --runs runs per mode and MTA.
 *
 *   node_modules/.bin/node dist/bench/delivery/run.js [--mode maildir,mbox,virtual,lmtp]
 *     [--mta postactor,postfix] [--runs 3] [--messages 2000] [--users 100] [--size 1024]
 *     [--sessions 10] [--timeout 300] [--json FILE]
 *     [--local-concurrency N]   (local_destination_concurrency_limit in both; default Postfix's 2)
 *     [--keep]                  (keep the instance directories: main.cf, maillog)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { LoadGenerator } from '../relay/generator.js';
import { freePort, postactorCommand, REPO_ROOT, waitFor220 } from '../relay/mta.js';
import { postfixVersion } from '../relay/postfix.js';
import { startDovecot, type Dovecot } from './dovecot.js';
import { startPostfixPeer } from './postfix.js';
import { treeCpuSeconds } from './cpu.js';

type Mode = 'maildir' | 'mbox' | 'virtual' | 'lmtp';
type Mta = 'postactor' | 'postfix';
const MODES: Mode[] = ['maildir', 'mbox', 'virtual', 'lmtp'];

interface Options { keep: boolean; localConcurrency: string | null; modes: Mode[]; mtas: Mta[]; runs: number; messages: number; users: number; size: number; sessions: number; timeoutS: number; json: string | null }

interface RunResult { mode: Mode; mta: Mta; run: number; messages: number; delivered: number; acceptedPerSec: number; deliveredPerSec: number; seconds: number; complete: boolean; cpuMsPerMessage: number | null }

const DOMAIN = 'bench.test';
const VDOMAIN = 'vbench.test';
const VUID = 5000;
const user = (i: number) => `u${String(i).padStart(2, '0')}`;

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      mode: { type: 'string', default: 'maildir,mbox,virtual' },
      mta: { type: 'string', default: 'postactor,postfix' },
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
  const modes = values.mode!.split(',').map((m) => (m.trim() === 'local' ? 'maildir' : m.trim())) as Mode[];
  for (const m of modes) if (!MODES.includes(m)) throw new Error(`--mode: unknown mode "${m}" (${MODES.join(', ')})`);
  const mtas = values.mta!.split(',').map((m) => m.trim()) as Mta[];
  for (const m of mtas) if (m !== 'postactor' && m !== 'postfix') throw new Error(`--mta: unknown MTA "${m}" (postactor, postfix)`);
  const o = { modes, mtas, runs: Number(values.runs), messages: Number(values.messages), users: Number(values.users), size: Number(values.size), sessions: Number(values.sessions), timeoutS: Number(values.timeout), json: values.json ?? null, localConcurrency: values['local-concurrency'] ?? null, keep: values.keep ?? false };
  if (!(o.users >= 1 && o.users <= 100)) throw new Error('--users: 1 to 100 (the alias map spreads by the last two digits)');
  if (!(o.runs >= 1 && o.messages >= 1 && o.sessions >= 1 && o.timeoutS > 0)) throw new Error('--runs, --messages, --sessions, --timeout must be positive');
  return o;
}

/** K.u@bench.test → u<K mod users>@bench.test; with 100 users the last two digits are the user. */
function spreadMap(file: string, users: number): void {
  const lines: string[] = [];
  if (users === 100) {
    lines.push(`/^\\d*(\\d\\d)\\.u@bench\\.test$/ u$1@${DOMAIN}`, `/^(\\d)\\.u@bench\\.test$/ u0$1@${DOMAIN}`);
  } else {
    for (let i = 0; i < users; i++) lines.push(`/^(\\d*[^\\d])?${i}\\.u@bench\\.test$/ ${user(i)}@${DOMAIN}`);
  }
  writeFileSync(file, lines.join('\n') + '\n');
}

/** The workload's files under dir/w: users, homes, spool, virtual base, tables. */
interface Workload { w: string; passwd: string; mailboxes(): number }

function makeWorkload(dir: string, o: Options, mode: Mode, dovecot: Dovecot | null): Workload {
  const w = path.join(dir, 'w');
  mkdirSync(w, { mode: 0o755 });
  chmodSync(w, 0o755);
  const root = process.getuid?.() === 0;
  const [uid, gid] = root ? [65534, 65534] : [process.getuid!(), process.getgid!()];
  const users = Array.from({ length: o.users }, (_, i) => user(i));
  const homes = path.join(w, 'home');
  mkdirSync(homes, { mode: 0o755 });
  for (const u of users) {
    mkdirSync(path.join(homes, u));
    if (root) chmodSync(path.join(homes, u), 0o777);
  }
  // Postfix reads it as /etc/passwd: the system's entries (root, postfix, nobody …) come first.
  const passwd = path.join(w, 'passwd');
  writeFileSync(passwd, readFileSync('/etc/passwd', 'utf8').replace(/\n?$/, '\n') + users.map((u) => `${u}:x:${uid}:${gid}:bench:${path.join(homes, u)}:/bin/sh`).join('\n') + '\n');
  mkdirSync(path.join(w, 'mail'));
  chmodSync(path.join(w, 'mail'), 0o1777);
  mkdirSync(path.join(w, 'vmail'));
  if (root) chownSync(path.join(w, 'vmail'), VUID, VUID);
  spreadMap(path.join(w, 'spread.pcre'), o.users);
  writeFileSync(path.join(w, 'vmailbox.pcre'), `/@vbench\\.test$/ mail/\n`);
  const count = (dirs: string[]) => dirs.reduce((n, d) => n + (existsSync(d) ? readdirSync(d).length : 0), 0);
  const mailboxes = (): number => {
    switch (mode) {
      case 'maildir': return count(users.map((u) => path.join(homes, u, 'Maildir', 'new')));
      case 'virtual': return count([path.join(w, 'vmail', 'mail', 'new')]);
      case 'lmtp': return count(users.map((u) => path.join(dovecot!.maildir(`${u}@${DOMAIN}`), 'new')));
      case 'mbox': {
        let n = 0;
        for (const u of users) {
          const f = path.join(w, 'mail', u);
          if (existsSync(f)) n += (readFileSync(f, 'latin1').match(/^From /gm) ?? []).length;
        }
        return n;
      }
    }
  };
  return { w, passwd, mailboxes };
}

/** main.cf lines of the workload, the same for both MTAs. */
function workloadMainCf(o: Options, mode: Mode, w: string, dovecot: Dovecot | null): string[] {
  const lines = [
    'myhostname = delivery-bench.localdomain',
    `virtual_alias_maps = pcre:${w}/spread.pcre`,
    'alias_maps =',
    'alias_database =',
    'local_recipient_maps =',
    'smtpd_reject_unlisted_recipient = no',
    ...(o.localConcurrency ? [`local_destination_concurrency_limit = ${o.localConcurrency}`] : []),
  ];
  switch (mode) {
    case 'maildir': return [...lines, `mydestination = ${DOMAIN}`, 'home_mailbox = Maildir/'];
    case 'mbox': return [...lines, `mydestination = ${DOMAIN}`, 'home_mailbox =', `mail_spool_directory = ${w}/mail`];
    case 'virtual': return [...lines, 'mydestination =', `virtual_mailbox_domains = ${VDOMAIN}`, `virtual_mailbox_base = ${w}/vmail`, `virtual_mailbox_maps = pcre:${w}/vmailbox.pcre`, `virtual_uid_maps = static:${VUID}`, `virtual_gid_maps = static:${VUID}`];
    case 'lmtp': return [...lines, 'mydestination =', `relay_domains = ${DOMAIN}`, `relay_transport = lmtp:unix:${dovecot!.socket}`];
  }
}

interface Instance { port: number; workload: Workload; cpu(): number | null; stop(): Promise<void> }

async function startPostactor(o: Options, mode: Mode, dovecot: Dovecot | null): Promise<Instance> {
  const dir = mkdtempSync(path.join(tmpdir(), `delivery-bench-${mode}-`));
  chmodSync(dir, 0o755);
  const workload = makeWorkload(dir, o, mode, dovecot);
  const port = await freePort();
  const main = [
    `queue_directory = ${dir}/spool`,
    'inet_interfaces = 127.0.0.1',
    'mynetworks = 127.0.0.0/8',
    `maillog_file = ${dir}/maillog`,
    'relayhost =',
    ...workloadMainCf(o, mode, workload.w, dovecot),
  ];
  writeFileSync(path.join(dir, 'main.cf'), main.join('\n') + '\n');
  writeFileSync(path.join(dir, 'master.cf'), [
    `127.0.0.1:${port} inet n - n - 1 smtpd`,
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'rewrite unix - - n - 1 trivial-rewrite',
    'bounce unix - - n - 1 bounce',
    'local unix - n n - - local',
    'virtual unix - n n - - virtual',
    'lmtp unix - - n - 1 lmtp',
    '',
  ].join('\n'));
  const command = postactorCommand(path.join(REPO_ROOT, 'dist/bin/postactor.js'), dir, { POSTACTOR_PASSWD_FILE: workload.passwd });
  const child: ChildProcess = spawn(path.join(REPO_ROOT, 'node_modules/.bin/node'), command.args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: command.env,
  });
  let err = '';
  child.stderr!.on('data', (d) => { err = (err + d).slice(-4000); });
  await waitFor220('127.0.0.1', port, 30_000, () => (child.exitCode !== null ? `postactor exited: ${err}` : null));
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
  return { port, workload, cpu: () => treeCpuSeconds(child.pid!), stop };
}

async function startPostfix(o: Options, mode: Mode, dovecot: Dovecot | null): Promise<Instance> {
  const dir = mkdtempSync(path.join(tmpdir(), `delivery-bench-postfix-${mode}-`));
  chmodSync(dir, 0o755);
  const workload = makeWorkload(dir, o, mode, dovecot);
  const peer = await startPostfixPeer(dir, workloadMainCf(o, mode, workload.w, dovecot), workload.passwd).catch((e: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  });
  const stop = async () => {
    await peer.stop();
    if (o.keep) process.stdout.write(`kept ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  };
  const master = (): number => Number(readFileSync(path.join(dir, 'spool', 'pid', 'master.pid'), 'utf8').trim());
  return { port: peer.port, workload, cpu: () => { try { return treeCpuSeconds(master()); } catch { return null; } }, stop };
}

async function runOnce(o: Options, mode: Mode, mta: Mta, run: number): Promise<RunResult> {
  const dovecot = mode === 'lmtp' ? await startDovecot({ users: Array.from({ length: o.users }, (_, i) => `${user(i)}@${DOMAIN}`) }) : null;
  let inst: Instance | null = null;
  try {
    inst = mta === 'postactor' ? await startPostactor(o, mode, dovecot) : await startPostfix(o, mode, dovecot);
    const deadline = Date.now() + o.timeoutS * 1000;
    const to = `u@${mode === 'virtual' ? VDOMAIN : DOMAIN}`;
    const gen = new LoadGenerator({ host: '127.0.0.1', port: inst.port, sessions: o.sessions, messages: o.messages, size: o.size, to, unique: true, reuse: true, timeLimitMs: o.timeoutS * 1000 });
    const started = Date.now();
    const cpu0 = inst.cpu();
    const g = await gen.run();
    let delivered = inst.workload.mailboxes();
    let lastAt = Date.now();
    while (delivered < g.accepted && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      const n = inst.workload.mailboxes();
      if (n !== delivered) { delivered = n; lastAt = Date.now(); }
    }
    const cpu1 = inst.cpu();
    const cpuMsPerMessage = cpu0 !== null && cpu1 !== null && delivered > 0 ? ((cpu1 - cpu0) * 1000) / delivered : null;
    const seconds = (lastAt - Math.min(started, g.firstConnectAt || started)) / 1000;
    return { mode, mta, run, messages: o.messages, delivered, acceptedPerSec: g.acceptedPerSec, deliveredPerSec: delivered / seconds, seconds, complete: delivered >= o.messages && g.accepted === o.messages, cpuMsPerMessage };
  } finally {
    await inst?.stop();
    await dovecot?.stop();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const o = parseOptions();
  if (o.mtas.includes('postfix')) {
    const version = await postfixVersion();
    if (version === null || process.getuid?.() !== 0) {
      process.stdout.write(version === null ? 'postfix not installed: skipping the peer\n' : 'not root: skipping the Postfix peer (its master needs root)\n');
      o.mtas = o.mtas.filter((m) => m !== 'postfix');
    } else process.stdout.write(`peer: ${version}\n`);
  }
  process.stdout.write(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}; ${o.messages} × ${o.size} B to ${o.users} users, ${o.sessions} sessions\n`);
  const results: RunResult[] = [];
  for (let run = 1; run <= o.runs; run++) {
    for (const mode of o.modes) {
      // Alternate which MTA goes first, so neither always meets the same moment of the machine.
      const order = run % 2 ? o.mtas : [...o.mtas].reverse();
      for (const mta of order) {
        const r = await runOnce(o, mode, mta, run);
        results.push(r);
        process.stdout.write(`${mode} ${mta} run ${run}: ${r.delivered}/${r.messages} delivered in ${r.seconds.toFixed(2)} s = ${r.deliveredPerSec.toFixed(1)} delivered/s (accepted ${r.acceptedPerSec.toFixed(1)}/s, cpu ${r.cpuMsPerMessage?.toFixed(2) ?? '?'} ms/msg)${r.complete ? '' : ' INCOMPLETE'}\n`);
      }
    }
  }
  process.stdout.write(`\nmedian of ${o.runs} run(s), load average now ${loadavg().map((x) => x.toFixed(2)).join(' ')}:\n`);
  for (const mode of o.modes) {
    const med: Partial<Record<Mta, number>> = {};
    for (const mta of o.mtas) {
      const rs = results.filter((r) => r.mode === mode && r.mta === mta);
      med[mta] = median(rs.map((r) => r.deliveredPerSec));
      const cpu = median(rs.flatMap((r) => (r.cpuMsPerMessage === null ? [] : [r.cpuMsPerMessage])));
      process.stdout.write(`  ${mode.padEnd(8)} ${mta.padEnd(9)} ${med[mta]!.toFixed(1)} delivered/s (runs ${rs.map((r) => r.deliveredPerSec.toFixed(1)).join(', ')}), accepted ${median(rs.map((r) => r.acceptedPerSec)).toFixed(1)}/s, cpu ${cpu.toFixed(2)} ms/msg${rs.every((r) => r.complete) ? '' : ' (some runs incomplete)'}\n`);
    }
    if (med.postactor !== undefined && med.postfix !== undefined) process.stdout.write(`  ${mode.padEnd(8)} Postactor/Postfix ×${(med.postactor / med.postfix).toFixed(2)}\n`);
  }
  if (o.json) writeFileSync(o.json, JSON.stringify({ options: o, loadavg: loadavg(), results }, null, 2) + '\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/delivery: ${(e as Error).message}\n`);
  process.exit(1);
});
