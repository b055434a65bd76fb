/**
 * bench/crash/run.ts — the crash soak: SIGKILL the server at random moments under load, many
 * times, and count what it acknowledged but never delivered (must be 0) and what it delivered
 * twice (allowed: Postfix's promise is "duplicates possible, loss never"; reported).
 *
 *   node_modules/.bin/tsc -p tsconfig.json
 *   node_modules/.bin/node dist/bench/crash/run.js --rounds 200
 *
 * One Postactor instance (bench/relay's main.cf and master.cf: relay to a counting sink on
 * loopback) runs as its own process group. Each round: start it on the same queue, let the
 * injector's sessions (bench/crash/inject.ts) send into it, and SIGKILL it — its whole process
 * group or its main pid alone, at random — either during start-up (--early of the rounds: a
 * random moment under 1 s after the spawn) or at a random moment of the load (between
 * --min-delay and --max-delay after its port first answered 220). The sink (src/smtp/sink.ts, in
 * this process) records every Message-ID it receives, across all rounds. After the last round
 * the server is started once more with the injector stopped and drains until every acknowledged
 * message reached the sink, or nothing new arrived for --drain seconds.
 *
 * Options [defaults]:
 *   --rounds N          SIGKILLs [200]
 *   --early F           share of the rounds killed under 1 s after the spawn [0.25]
 *   --min-delay S       otherwise: earliest kill after the server answered 220 [0.2]
 *   --max-delay S       … latest [3]
 *   --sessions N        concurrent injecting sessions [8]
 *   --size BYTES        body size [1024]
 *   --drain S           final drain: stop when nothing new arrived for S seconds [60]
 *   --timeout S         bound on the whole soak, rounds and drain [3600]
 *   --seed N            seed of the delays (and of the kill kind) [time]
 *   --entry FILE        Postactor entry point [dist/bin/postactor.js]
 *   --keep              keep the instance directory (maillog, queue) afterwards
 *   --json FILE         also write the figures as JSON
 *
 * Exit status: 0 when nothing acknowledged was lost, 1 otherwise (the lost IDs are printed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SmtpSink } from '../../src/smtp/sink.js';
import { freePort, probe220, REPO_ROOT } from '../relay/mta.js';
import { POSTACTOR_ENTRY, postactorMainCf, postactorMasterCf } from '../relay/postactor.js';
import { Injector } from './inject.js';

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '200' },
    early: { type: 'string', default: '0.25' },
    'min-delay': { type: 'string', default: '0.2' },
    'max-delay': { type: 'string', default: '3' },
    sessions: { type: 'string', default: '8' },
    size: { type: 'string', default: '1024' },
    drain: { type: 'string', default: '60' },
    timeout: { type: 'string', default: '3600' },
    seed: { type: 'string' },
    entry: { type: 'string' },
    keep: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});

function num(name: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    process.stderr.write(`crash soak: --${name} must be a number >= ${min} (got "${v}")\n`);
    process.exit(2);
  }
  return n;
}

const rounds = num('rounds', opt.rounds, 0);
const early = num('early', opt.early, 0);
const minDelay = num('min-delay', opt['min-delay'], 0);
const maxDelay = num('max-delay', opt['max-delay'], minDelay);
const sessions = num('sessions', opt.sessions, 1);
const size = num('size', opt.size, 1);
const drainS = num('drain', opt.drain, 1);
const deadline = Date.now() + num('timeout', opt.timeout, 1) * 1000;
let seed = opt.seed !== undefined ? num('seed', opt.seed, 0) >>> 0 : (Date.now() >>> 0);
const firstSeed = seed;
/** mulberry32: reproducible delays for a given --seed. */
function random(): number {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const entry = opt.entry ?? POSTACTOR_ENTRY;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// The sink: every delivery's Message-ID, counted.
const delivered = new Map<string, number>();
let lastDelivery = Date.now();
const sink = new SmtpSink({ pipelining: true });
sink.on('message', (m: { data: Buffer }) => {
  const head = m.data.subarray(0, 512).toString('latin1');
  const id = /^Message-ID: <([^@>]+)@crash\.bench>/im.exec(head)?.[1];
  if (!id) return;
  delivered.set(id, (delivered.get(id) ?? 0) + 1);
  lastDelivery = Date.now();
});
const sinkPort = await sink.listen(await freePort());
const port = await freePort();
const dir = mkdtempSync(path.join(tmpdir(), 'postactor-crash-'));
writeFileSync(path.join(dir, 'main.cf'), postactorMainCf(dir, sinkPort, true) + 'minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n');
writeFileSync(path.join(dir, 'master.cf'), postactorMasterCf(port, { smtpdThreads: 2, cleanupThreads: 0, smtpThreads: 2 }));

let child: ChildProcess | null = null;
let exited: Promise<void> = Promise.resolve();
let startFailures = 0;
let stopping = false;

function start(): void {
  const c = spawn(process.execPath, [entry, '-c', dir, 'start-fg'], { cwd: REPO_ROOT, stdio: 'ignore', detached: true });
  child = c;
  exited = new Promise((resolve) => {
    c.once('exit', (code, signal) => {
      if (signal !== 'SIGKILL' && !stopping) {
        startFailures++;
        process.stderr.write(`crash soak: postactor exited on its own (${signal ?? `status ${code}`}); see ${dir}/maillog\n`);
      }
      resolve();
    });
  });
}

/** Resolves true once the port answers 220 (false: the server died or 60 s passed). */
async function ready(): Promise<boolean> {
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    if (!child || child.exitCode !== null || child.signalCode !== null) return false;
    if (await probe220('127.0.0.1', port, 1000)) return true;
    await sleep(50);
  }
  return false;
}

/** SIGKILL: the process group (odd kinds) or the main pid alone; resolves once it is gone. */
async function kill(group: boolean): Promise<void> {
  const c = child;
  if (!c?.pid || c.exitCode !== null || c.signalCode !== null) return;
  try {
    process.kill(group ? -c.pid : c.pid, 'SIGKILL');
  } catch { /* already gone */ }
  await exited;
  // A main-pid kill leaves nothing behind (the server's actors are threads), but make sure.
  try { process.kill(-c.pid, 'SIGKILL'); } catch { /* no group left */ }
}

const injector = new Injector({ port, sessions, size });
const t0 = Date.now();
const kills: { round: number; afterMs: number; startUp: boolean; group: boolean; ackedSoFar: number }[] = [];
console.log(`crash soak: ${rounds} SIGKILLs (${Math.round(early * 100)}% under 1 s after the spawn, the rest ${minDelay}-${maxDelay} s after the 220), ${sessions} sessions, ${size} B bodies, seed ${firstSeed}; instance ${dir}; load ${(await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' ')}`);
for (let round = 0; round < rounds && Date.now() < deadline; round++) {
  start();
  if (round === 0) injector.start('m');
  const spawned = Date.now();
  const startUp = random() < early;
  const group = random() < 0.5;
  const delay = startUp ? random() * 1000 : (minDelay + random() * (maxDelay - minDelay)) * 1000;
  if (!startUp && !(await ready())) process.stderr.write(`crash soak: round ${round}: the server did not answer 220\n`);
  await sleep(Math.round(delay));
  await kill(group);
  kills.push({ round, afterMs: Date.now() - spawned, startUp, group, ackedSoFar: injector.acked.size });
  if ((round + 1) % 10 === 0 || round + 1 === rounds) {
    console.log(`[${round + 1}/${rounds}] ${((Date.now() - t0) / 1000).toFixed(0)} s: acknowledged ${injector.acked.size}, delivered ${delivered.size} distinct`);
  }
}
await injector.stop();

// The drain: one more start, no kill, no new mail.
start();
let missing: string[] = [];
for (;;) {
  missing = [...injector.acked].filter((id) => !delivered.has(id));
  if (missing.length === 0 || Date.now() - lastDelivery > drainS * 1000 || Date.now() > deadline) break;
  await sleep(250);
}
await sleep(1000); // late duplicates
missing = [...injector.acked].filter((id) => !delivered.has(id));
stopping = true;
child!.kill('SIGTERM');
const stopTimer = setTimeout(() => child?.kill('SIGKILL'), 10_000);
await exited;
clearTimeout(stopTimer);
await sink.close();

const duplicates = [...delivered.values()].filter((n) => n > 1).length;
const extraCopies = [...delivered.values()].reduce((a, n) => a + Math.max(0, n - 1), 0);
const unacknowledgedDelivered = [...delivered.keys()].filter((id) => !injector.acked.has(id)).length;
const underOneSecond = kills.filter((k) => k.afterMs < 1000).length;
const result = {
  date: new Date().toISOString(),
  seed: firstSeed,
  kills: kills.length,
  killsUnderOneSecond: underOneSecond,
  killsDuringStartUp: kills.filter((k) => k.startUp).length,
  groupKills: kills.filter((k) => k.group).length,
  pidKills: kills.filter((k) => !k.group).length,
  attempted: injector.attempted,
  acknowledged: injector.acked.size,
  deliveredDistinct: delivered.size,
  lost: missing.length,
  duplicates,
  extraCopies,
  unacknowledgedDelivered,
  unexpectedExits: startFailures,
  seconds: Math.round((Date.now() - t0) / 1000),
};
console.log(`\n${result.kills} SIGKILLs (${result.groupKills} of the process group, ${result.pidKills} of the main pid; ${result.killsDuringStartUp} during start-up, ${underOneSecond} under 1 s after the spawn) in ${result.seconds} s`);
console.log(`acknowledged ${result.acknowledged} of ${result.attempted} sent; delivered ${result.deliveredDistinct} distinct`);
console.log(`LOST (acknowledged, never delivered): ${result.lost}${missing.length ? `: ${missing.slice(0, 20).join(' ')}` : ''}`);
console.log(`duplicates: ${duplicates} message(s) delivered more than once (${extraCopies} extra copies); ${unacknowledgedDelivered} delivered without a 250 (killed before the reply)`);
if (startFailures) console.log(`the server exited on its own ${startFailures} time(s)`);
if (opt.json) writeFileSync(opt.json, JSON.stringify({ ...result, kills: kills.length, rounds: kills }, null, 2) + '\n');
if (opt.keep) console.log(`kept ${dir}`);
else rmSync(dir, { recursive: true, force: true });
process.exit(result.lost === 0 ? 0 : 1);
