/**
 * bench/crash/run.ts — the crash soak's command line (the soak: soak.ts): SIGKILL the server at
 * random moments under load, many times, and count what it acknowledged but never delivered
 * (must be 0) and what it delivered twice (allowed: Postfix's promise is "duplicates possible,
 * loss never"; reported).
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
 *   --timeout S         no round starts after S seconds [3600]
 *   --seed N            seed of the delays (and of the kill kind) [time]
 *   --entry FILE        Postactor entry point [dist/bin/postactor.js]
 *   --keep              keep the instance directory (maillog, queue) afterwards
 *   --json FILE         also write the figures as JSON
 *
 * Exit status: 0 when nothing acknowledged was lost, 1 otherwise (the lost IDs are printed).
 */
import { writeFileSync } from 'node:fs';
import { benchArgs } from '../args.js';
import { crashSoak } from './soak.js';

const USAGE = 'usage: node dist/bench/crash/run.js [--rounds N] [--early F] [--min-delay S] [--max-delay S] [--sessions N] [--size B] [--drain S] [--timeout S] [--seed N] [--entry FILE] [--keep] [--json FILE]\nSee the header of bench/crash/run.ts.';

const opt = benchArgs('crash soak', USAGE, {
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
});

function num(name: string, v: string | undefined, min: number, max = Infinity): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) {
    process.stderr.write(`crash soak: --${name} must be a number from ${min}${max < Infinity ? ` to ${max}` : ''} (got "${v}")\n${USAGE}\n`);
    process.exit(2);
  }
  return n;
}

const minDelay = num('min-delay', opt['min-delay'], 0);
const r = await crashSoak({
  rounds: num('rounds', opt.rounds, 0),
  early: num('early', opt.early, 0, 1),
  minDelay,
  maxDelay: num('max-delay', opt['max-delay'], minDelay),
  sessions: num('sessions', opt.sessions, 1),
  size: num('size', opt.size, 1),
  drainS: num('drain', opt.drain, 1),
  deadline: Date.now() + num('timeout', opt.timeout, 1) * 1000,
  seed: opt.seed !== undefined ? num('seed', opt.seed, 0) >>> 0 : Date.now() >>> 0,
  entry: opt.entry,
  keep: opt.keep,
}, (line) => console.log(line));

console.log(`\n${r.kills} SIGKILLs (${r.groupKills} of the process group, ${r.pidKills} of the main pid; ${r.killsDuringStartUp} during start-up, ${r.killsUnderOneSecond} under 1 s after the spawn) in ${r.seconds} s`);
console.log(`acknowledged ${r.acknowledged} of ${r.attempted} sent; delivered ${r.deliveredDistinct} distinct`);
console.log(`LOST (acknowledged, never delivered): ${r.lost}${r.lost ? `: ${r.lostIds.join(' ')}` : ''}`);
console.log(`duplicates: ${r.duplicates} message(s) delivered more than once (${r.extraCopies} extra copies); ${r.unacknowledgedDelivered} delivered without a 250 (killed before the reply)`);
if (r.unexpectedExits) console.log(`the server exited on its own ${r.unexpectedExits} time(s)`);
if (opt.json) writeFileSync(opt.json, JSON.stringify({ date: new Date().toISOString(), ...r }, null, 2) + '\n');
if (opt.keep) console.log(`kept ${r.dir}`);
process.exit(r.lost === 0 ? 0 : 1);
