/**
 * master.cf → actor hosts. Each service line becomes a pool whose size is its maxproc column:
 * request/reply daemons as pools (src/runtime/pool.ts), stateful ones (smtpd listeners, qmgr) as
 * supervised workers. In Postactor maxproc counts worker threads, and each thread serves many
 * requests at once, so a Postfix default of 100 processes would mean 100 threads: "-"
 * therefore means min(default_process_limit, CPU count), and 0 ("unlimited") means the CPU
 * count. maxproc is the most threads: pools start them on demand and end them after max_idle
 * (`warm` below).
 */
import { availableParallelism } from 'node:os';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inetEndpoint, type Config, type MasterService } from '../../src/config/index.js';
import type { InetEndpoint, ListenAddress } from '../../src/net/listen.js';
import { serviceMeta, type ServiceMeta, type ServiceMetadata } from '../../src/runtime/service-meta.js';
import bounce from '../bounce/meta.js';
import cleanup from '../cleanup/meta.js';
import discard from '../discard/meta.js';
import dnsblog from '../dnsblog/meta.js';
import error from '../error/meta.js';
import flush from '../flush/meta.js';
import lmtp from '../lmtp/meta.js';
import local from '../local/meta.js';
import pickup from '../pickup/meta.js';
import pipe from '../pipe/meta.js';
import qmgr from '../qmgr/meta.js';
import qmqpd from '../qmqpd/meta.js';
import smtp from '../smtp/meta.js';
import smtpd from '../smtpd/meta.js';
import spawn from '../spawn/meta.js';
import trivialRewrite from '../trivial-rewrite/meta.js';
import verify from '../verify/meta.js';
import virtual from '../virtual/meta.js';

export type HostKind = 'pool' | 'supervised';

export interface ServicePlan {
  service: string;
  kind: HostKind;
  file: URL;
  threads: number;
  /** Pool threads kept while idle (the rest start on demand and end after max_idle): `warm` below. */
  minThreads: number;
  /**
   * Requests every pool thread holds before another starts (up to maxproc): by default its
   * concurrency, a thread full (a service may say otherwise: PoolMetadata.spreadAt). Each thread
   * serves many requests asynchronously, and a second isolate costs more than it brings while
   * the first has room: its own JIT warm-up, smaller batches on each side, and for cleanup a
   * second writer taking turns at LMDB's one write lock. bench/relay (20 sessions, 3,000
   * messages, the same runs alternating): spreading at 8 requests started a second cleanup and a
   * second smtp thread; spreading at the concurrency keeps one of each, at 1.96 instead of 2.82 ms
   * of CPU per message and 727 instead of 552 messages/s (bench/README.md, session 14).
   */
  spreadAt: number;
  /** Requests one pool worker runs at once. */
  concurrency: number;
  /** A supervised service with no thread until work comes (pickup: `Daemon.onDemand`). */
  onDemand?: boolean;
  /**
   * When master starts it (lower first, each group ready before the next): pools 0, qmgr 1, the
   * listeners and other long-lived workers 2, so nothing accepts mail before the path behind it
   * exists. From the service's definition (src/runtime/service.ts).
   */
  startOrder: number;
  /** For inet services: the endpoint as master.cf writes it (host null: inet_interfaces). */
  listen?: InetEndpoint;
  /** For inet services: the sockets to open, once the master resolved them (listen.ts). */
  addresses?: ListenAddress[];
  line: MasterService;
  /**
   * For smtpd behind postscreen: the postscreen inet line (`line` is the smtpd pass line whose
   * settings the threads run with). Its listener lives in the threads of the smtpd pass service (a worker thread cannot hand a socket to another thread), which run
   * postscreen's tests on each connection before their own SMTP session (src/postscreen).
   */
  postscreen?: MasterService;
}

interface Daemon {
  kind: HostKind;
  module: string;
  concurrency: number;
  /**
   * Pool threads kept while idle (default 0; cleanup keeps 1). Every other pool starts
   * empty and shrinks back to nothing after max_idle: the delivery agents (smtp and relay, local,
   * virtual, lmtp, pipe, error/retry, discard), bounce, trivial-rewrite (only qmgr asks it, behind
   * its resolve cache), dnsblog. Their first request after a quiet spell waits for
   * one thread start (about 50–150 ms, more on a loaded machine), as Postfix's master spawns such
   * a daemon on demand and the daemon exits after max_idle. cleanup's is the one a client
   * waits for (smtpd waits for its reply before it answers the end of DATA), so it keeps one
   * thread (actors/cleanup/meta.ts); should it have none, smtpd asks for one at the first
   * accepted recipient (WARM_REQUEST, src/runtime/wire.ts), where Postfix's smtpd opens its
   * cleanup stream. An idle thread costs 12–22 MB (bench/memory).
   */
  warm?: number;
  /** Requests each pool thread holds before another starts (default: the concurrency): src/runtime/service-meta.ts. */
  spreadAt?: number | undefined;
  /**
   * A supervised singleton started only when there is work, ending after max_idle without it
   * (pickup: master watches maildrop/ for it, actors/master/maildrop-watch.ts). Postfix's pickup
   * stays (master's 60 s wakeup keeps it from max_idle), but a thread here costs 12–22 MB, and
   * most servers never see a sendmail(1) submission.
   */
  onDemand?: boolean;
  /** One thread whatever maxproc says (Postfix's solitary daemons: qmgr, pickup, verify, spawn). */
  singleton?: boolean;
  /** Master starts lower numbers first (default: pools 0, long-lived workers 2; qmgr 1). */
  startOrder?: number;
}

/** A daemon as its module defines itself (src/runtime/service.ts defineService). */
function defined(module: string, meta: ServiceMeta): Daemon {
  return { kind: meta.kind === 'pool' ? 'pool' : 'supervised', module, concurrency: meta.concurrency, warm: meta.minThreads, spreadAt: meta.spreadAt, singleton: meta.singleton, startOrder: meta.startOrder, onDemand: meta.onDemand };
}

/**
 * The daemons Postactor has built, each module with the metadata it gives itself
 * (actors/<name>/meta.ts, which its index.ts hands to defineService): the master.cf commands it
 * runs under (qmgr also as oqmgr, with oqmgr's scheduler: actors/qmgr/strategy.ts), its kind,
 * requests per thread, threads kept warm, singleton and start order. Only where each module
 * lives is said here. Master imports the metadata, not the modules: their code loads only in
 * the threads that run them.
 */
const MODULES: readonly (readonly [string, ServiceMetadata])[] = [
  ['../smtpd/index.js', smtpd],
  ['../cleanup/index.js', cleanup],
  ['../qmgr/index.js', qmgr],
  ['../smtp/index.js', smtp],
  ['../bounce/index.js', bounce],
  ['../pickup/index.js', pickup],
  ['../trivial-rewrite/index.js', trivialRewrite],
  // error also runs the "retry" service (error(8) in defer mode: it reads its service name).
  ['../error/index.js', error],
  ['../discard/index.js', discard],
  ['../pipe/index.js', pipe],
  ['../lmtp/index.js', lmtp],
  ['../local/index.js', local],
  ['../virtual/index.js', virtual],
  ['../verify/index.js', verify],
  ['../spawn/index.js', spawn],
  ['../dnsblog/index.js', dnsblog],
  // QMQP listeners: like smtpd, each thread listens on the service's addresses (SO_REUSEPORT).
  ['../qmqpd/index.js', qmqpd],
  // Fast flush logs in the queue store; started on demand (ETRN, a deferral in fast_flush_domains).
  ['../flush/index.js', flush],
];

/** Postfix daemon names (the command column) that Postactor has built. */
const DAEMONS: Record<string, Daemon> = Object.fromEntries(
  MODULES.flatMap(([module, m]) => serviceMeta(m).commands.map((command) => [command, defined(module, serviceMeta(m))] as const)),
);

/**
 * Postfix's daemons whose work Postactor does without a service of their own: anvil's counters
 * are a table master shares with every smtpd thread (src/anvil). Their master.cf line is
 * accepted silently and starts nothing.
 */
export const DAEMONS_BUILT_INTO_MASTER = new Set(['anvil']);

/** Postfix's daemons (master.cf commands) that Postactor has not built yet. */
const POSTFIX_DAEMONS_NOT_BUILT = new Set([
  ...DAEMONS_BUILT_INTO_MASTER, 'postlogd', 'proxymap', 'scache',
  'showq', 'tlsmgr', 'tlsproxy',
]);

export interface SkippedService {
  service: string;
  command: string;
  type: MasterService['type'];
  file: string;
  line: number;
}

/** The services Postfix's stock master.cf has that are not built yet (warned about, then skipped). */
export interface Plan {
  services: ServicePlan[];
  skipped: SkippedService[];
}

/**
 * Whether skipping a service loses mail or protection (then `check` and start-up refuse it):
 * a listener nobody serves (an inet service, postscreen in front of smtpd, smtpd fed by
 * postscreen), or a command that
 * is no Postfix daemon at all. A unix service of a Postfix daemon that is not built is only
 * warned about: nothing reaches it unless a parameter names it, and those are refused.
 */
export function skippedServiceProblem(s: SkippedService): string | null {
  const what = `service "${s.service}" (command ${s.command})`;
  if (s.command === 'postscreen' && s.type === 'inet') return `${what}: no "pass" service for smtpd runs under the name its smtpd_service_name gives, so this port would not be served`;
  if (s.command === 'postscreen') return `not supported by Postactor: ${what}: postscreen of type ${s.type} (postscreen is an inet service)`;
  if (s.command === 'smtpd' && s.type === 'pass') return `${what}: no postscreen service hands clients to it (postscreen finds it by smtpd_service_name)`;
  if (s.command === 'smtpd') return `not supported by Postactor: ${what}: smtpd of type ${s.type} (only inet and pass smtpd services are built)`;
  if (s.command === 'qmqpd') return `not supported by Postactor: ${what}: qmqpd of type ${s.type} (only inet qmqpd services are built)`;
  if (s.type === 'inet') return `not supported by Postactor: ${what}: not built yet, so this port would not be served`;
  if (!POSTFIX_DAEMONS_NOT_BUILT.has(s.command)) return `${what}: unknown command (not a Postfix daemon, nor an absolute path to a JavaScript delivery agent)`;
  return null;
}

function startOrderOf(d: Daemon): number {
  return d.startOrder ?? (d.kind === 'pool' ? 0 : 2);
}

export function planServices(config: Config): Plan {
  const cpus = availableParallelism();
  const defaultLimit = config.getInt('default_process_limit');
  const services: ServicePlan[] = [];
  const skipped: Plan['skipped'] = [];
  // postscreen hands its clients to the pass service named by its smtpd_service_name. Each
  // postscreen line gets threads of that smtpd of its own (as many as the pass line's maxproc),
  // which listen on the postscreen's address; two postscreen ports may feed one pass service.
  const handOff = new Map<MasterService, MasterService>();
  for (const line of config.services) {
    if (line.command !== 'postscreen' || line.type !== 'inet') continue;
    const name = config.withOverrides(line.overrides, { file: line.file, line: line.line }).get('smtpd_service_name');
    const pass = config.services.find((s) => s.name === name && s.type === 'pass' && s.command === 'smtpd');
    if (pass) handOff.set(line, pass);
  }
  const fedByPostscreen = new Set(handOff.values());
  const threadsOf = (line: MasterService) => (line.maxproc === null ? Math.max(1, Math.min(defaultLimit, cpus)) : line.maxproc === 0 ? cpus : line.maxproc);
  for (const line of config.services) {
    const pass = handOff.get(line);
    if (pass) {
      const smtpd = DAEMONS['smtpd']!;
      services.push({
        service: pass.name, kind: smtpd.kind, file: new URL(smtpd.module, import.meta.url), threads: threadsOf(pass), minThreads: threadsOf(pass), spreadAt: 1,
        concurrency: smtpd.concurrency, startOrder: startOrderOf(smtpd), line: pass, listen: inetEndpoint(line), postscreen: line,
      });
      continue;
    }
    if (fedByPostscreen.has(line)) continue; // its threads run with each postscreen line that feeds it
    const threads = threadsOf(line);
    const custom = isAbsolute(line.command) && /\.m?js$/.test(line.command);
    const daemon = custom ? { kind: 'pool' as const, module: '', concurrency: 64 } : DAEMONS[line.command];
    if (!daemon || ((daemon === DAEMONS['smtpd'] || daemon === DAEMONS['qmqpd']) && line.type !== 'inet')) {
      skipped.push({ service: line.name, command: line.command, type: line.type, file: line.file, line: line.line });
      continue;
    }
    const file = custom ? pathToFileURL(line.command) : new URL(daemon.module, import.meta.url);
    const warm = daemon.kind === 'supervised' ? threads : (daemon.warm ?? 0);
    const plan: ServicePlan = { service: line.name, kind: daemon.kind, file, threads, minThreads: Math.min(warm, threads), spreadAt: daemon.spreadAt ?? daemon.concurrency, concurrency: daemon.concurrency, startOrder: startOrderOf(daemon), line };
    if (daemon.onDemand) plan.onDemand = true;
    if (line.type === 'inet') plan.listen = inetEndpoint(line);
    // Singletons, whatever maxproc says (as in Postfix; verify is a "solitary" server).
    if (daemon.singleton) plan.threads = plan.minThreads = 1;
    services.push(plan);
  }
  return { services, skipped };
}
