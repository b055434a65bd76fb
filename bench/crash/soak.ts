/**
 * The crash soak itself (bench/crash/run.ts is its command line; test/e2e-crash.test.ts runs a
 * short one): SIGKILL a Postactor server at random moments under load, restart it on the same
 * queue each time, and count what it acknowledged but never delivered (must be 0) and what it
 * delivered more than once (allowed: Postfix's promise is "duplicates possible, loss never").
 *
 * One instance (bench/relay's main.cf and master.cf: relay to a counting sink on loopback, fast
 * retries) runs as its own process group. Each round: spawn it, let the injector's sessions
 * (inject.ts) send into it, and SIGKILL it — its whole process group or its main pid alone, at
 * random — either during start-up (a share `early` of the rounds: a random moment under 1 s
 * after the spawn) or under load (between minDelay and maxDelay after the port first answered
 * 220). The sink records every Message-ID it receives, across all rounds. After the last round
 * the server starts once more with no new mail and drains until every acknowledged message
 * reached the sink, or nothing new arrived for `drainS` seconds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { SmtpSink } from '../../src/smtp/sink.js';
import { freePort, postactorCommand, probe220, REPO_ROOT } from '../relay/mta.js';
import { POSTACTOR_ENTRY, postactorMainCf, postactorMasterCf } from '../relay/postactor.js';
import { Injector } from './inject.js';

export interface SoakOptions {
  rounds: number;
  /** Share of the rounds killed during start-up (under 1 s after the spawn). */
  early: number;
  /** Otherwise, the kill comes this many seconds after the first 220 (uniform). */
  minDelay: number;
  maxDelay: number;
  sessions: number;
  size: number;
  /** Final drain: stop when nothing new arrived for this many seconds. */
  drainS: number;
  /** No round starts after this moment (ms since the epoch); the drain is bounded by drainS. */
  deadline: number;
  seed: number;
  entry?: string;
  keep?: boolean;
}

export interface SoakKill {
  round: number;
  /** ms from the spawn to the kill. */
  afterMs: number;
  startUp: boolean;
  group: boolean;
  ackedSoFar: number;
}

export interface SoakResult {
  seed: number;
  kills: number;
  killsDuringStartUp: number;
  killsUnderOneSecond: number;
  groupKills: number;
  pidKills: number;
  attempted: number;
  acknowledged: number;
  deliveredDistinct: number;
  lost: number;
  /** Up to 20 of the lost IDs. */
  lostIds: string[];
  duplicates: number;
  extraCopies: number;
  unacknowledgedDelivered: number;
  unexpectedExits: number;
  seconds: number;
  dir: string;
  rounds: SoakKill[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** mulberry32: reproducible draws for a given seed. */
function generator(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function crashSoak(o: SoakOptions, log: (line: string) => void = () => undefined): Promise<SoakResult> {
  const random = generator(o.seed);
  const entry = o.entry ?? POSTACTOR_ENTRY;

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
  let unexpectedExits = 0;
  let stopping = false;

  const start = (): void => {
    const command = postactorCommand(entry, dir);
    const c = spawn(process.execPath, command.args, { env: command.env, cwd: REPO_ROOT, stdio: 'ignore', detached: true });
    child = c;
    exited = new Promise((resolve) => {
      c.once('exit', (code, signal) => {
        if (signal !== 'SIGKILL' && !stopping) {
          unexpectedExits++;
          log(`crash soak: postactor exited on its own (${signal ?? `status ${code}`}); see ${dir}/maillog`);
        }
        resolve();
      });
    });
  };

  /** True once the port answers 220 (false: the server died or 60 s passed). */
  const ready = async (): Promise<boolean> => {
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      if (!child || child.exitCode !== null || child.signalCode !== null) return false;
      if (await probe220('127.0.0.1', port, 1000)) return true;
      await sleep(50);
    }
    return false;
  };

  /** SIGKILL of the process group or of the main pid; resolves once it is gone. */
  const kill = async (group: boolean): Promise<void> => {
    const c = child;
    if (!c?.pid || c.exitCode !== null || c.signalCode !== null) return;
    try {
      process.kill(group ? -c.pid : c.pid, 'SIGKILL');
    } catch { /* already gone */ }
    await exited;
    // The server's actors are threads, so a main-pid kill leaves nothing behind; make sure.
    try { process.kill(-c.pid, 'SIGKILL'); } catch { /* no group left */ }
  };

  const injector = new Injector({ port, sessions: o.sessions, size: o.size });
  const t0 = Date.now();
  const kills: SoakKill[] = [];
  log(`crash soak: ${o.rounds} SIGKILLs (${Math.round(o.early * 100)}% under 1 s after the spawn, the rest ${o.minDelay}-${o.maxDelay} s after the 220), ${o.sessions} sessions, ${o.size} B bodies, seed ${o.seed}; instance ${dir}; load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  try {
    for (let round = 0; round < o.rounds && Date.now() < o.deadline; round++) {
      start();
      if (round === 0) injector.start('m');
      const spawned = Date.now();
      const startUp = random() < o.early;
      const group = random() < 0.5;
      const delay = startUp ? random() * 1000 : (o.minDelay + random() * (o.maxDelay - o.minDelay)) * 1000;
      if (!startUp && !(await ready())) log(`crash soak: round ${round}: the server did not answer 220`);
      await sleep(Math.max(0, Math.round(delay - (startUp ? Date.now() - spawned : 0))));
      await kill(group);
      kills.push({ round, afterMs: Date.now() - spawned, startUp, group, ackedSoFar: injector.acked.size });
      if ((round + 1) % 10 === 0 || round + 1 === o.rounds) {
        log(`[${round + 1}/${o.rounds}] ${((Date.now() - t0) / 1000).toFixed(0)} s: acknowledged ${injector.acked.size}, delivered ${delivered.size} distinct`);
      }
    }
    await injector.stop();

    // The drain: one more start, no kill, no new mail.
    start();
    lastDelivery = Date.now();
    const drainBound = Date.now() + 10 * o.drainS * 1000;
    const missing = (): string[] => [...injector.acked].filter((id) => !delivered.has(id));
    while (missing().length > 0 && Date.now() - lastDelivery < o.drainS * 1000 && Date.now() < drainBound) await sleep(250);
    await sleep(1000); // late duplicates
    const lost = missing();
    const counts = [...delivered.values()];
    return {
      seed: o.seed,
      kills: kills.length,
      killsDuringStartUp: kills.filter((k) => k.startUp).length,
      killsUnderOneSecond: kills.filter((k) => k.afterMs < 1000).length,
      groupKills: kills.filter((k) => k.group).length,
      pidKills: kills.filter((k) => !k.group).length,
      attempted: injector.attempted,
      acknowledged: injector.acked.size,
      deliveredDistinct: delivered.size,
      lost: lost.length,
      lostIds: lost.slice(0, 20),
      duplicates: counts.filter((n) => n > 1).length,
      extraCopies: counts.reduce((a, n) => a + Math.max(0, n - 1), 0),
      unacknowledgedDelivered: [...delivered.keys()].filter((id) => !injector.acked.has(id)).length,
      unexpectedExits,
      seconds: Math.round((Date.now() - t0) / 1000),
      dir,
      rounds: kills,
    };
  } finally {
    await injector.stop();
    stopping = true;
    const c = child as ChildProcess | null;
    if (c && c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      const t = setTimeout(() => { try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ } }, 10_000);
      await exited;
      clearTimeout(t);
    }
    await sink.close();
    if (!o.keep) rmSync(dir, { recursive: true, force: true });
  }
}
