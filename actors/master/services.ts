/**
 * master.cf → actor hosts. Each service line becomes a pool whose size is its maxproc column:
 * request/reply daemons as piscina pools, stateful ones (smtpd listeners, qmgr) as supervised
 * workers. In Postactor maxproc counts worker threads, and each thread serves many requests at
 * once, so a Postfix default of 100 processes would mean 100 threads: "-" therefore means
 * min(default_process_limit, CPU count), and 0 ("unlimited") means the CPU count.
 */
import { availableParallelism } from 'node:os';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inetEndpoint, type Config, type MasterService } from '../../src/config/index.js';
import type { InetEndpoint, ListenAddress } from './listen.js';

export type HostKind = 'pool' | 'supervised';

export interface ServicePlan {
  service: string;
  kind: HostKind;
  file: URL;
  threads: number;
  /** Requests one pool worker runs at once. */
  concurrency: number;
  /** For inet services: the endpoint as master.cf writes it (host null: inet_interfaces). */
  listen?: InetEndpoint;
  /** For inet services: the sockets to open, once the master resolved them (listen.ts). */
  addresses?: ListenAddress[];
  line: MasterService;
}

interface Daemon {
  kind: HostKind;
  module: string;
  concurrency: number;
}

/** Postfix daemon names (the command column) that Postactor has built. */
const DAEMONS: Record<string, Daemon> = {
  smtpd: { kind: 'supervised', module: '../smtpd/index.js', concurrency: 1 },
  cleanup: { kind: 'pool', module: '../cleanup/index.js', concurrency: 256 },
  qmgr: { kind: 'supervised', module: '../qmgr/index.js', concurrency: 1 },
  smtp: { kind: 'pool', module: '../smtp/index.js', concurrency: 256 },
  bounce: { kind: 'pool', module: '../bounce/index.js', concurrency: 16 },
  pickup: { kind: 'supervised', module: '../pickup/index.js', concurrency: 1 },
  'trivial-rewrite': { kind: 'pool', module: '../trivial-rewrite/index.js', concurrency: 256 },
  // error also runs the "retry" service (error(8) in defer mode: it reads its service name).
  error: { kind: 'pool', module: '../error/index.js', concurrency: 256 },
  discard: { kind: 'pool', module: '../discard/index.js', concurrency: 256 },
  // One command per thread: maxproc limits concurrent commands, as in Postfix (maxproc 1 = serial).
  pipe: { kind: 'pool', module: '../pipe/index.js', concurrency: 1 },
  lmtp: { kind: 'pool', module: '../lmtp/index.js', concurrency: 256 },
  local: { kind: 'pool', module: '../local/index.js', concurrency: 64 },
  virtual: { kind: 'pool', module: '../virtual/index.js', concurrency: 64 },
  verify: { kind: 'supervised', module: '../verify/index.js', concurrency: 1 },
};

/**
 * Postfix's daemons whose work Postactor does without a service of their own: anvil's counters
 * are a table master shares with every smtpd thread (actors/anvil). Their master.cf line is
 * accepted silently and starts nothing.
 */
export const DAEMONS_BUILT_INTO_MASTER = new Set(['anvil']);

/** Postfix's daemons (master.cf commands) that Postactor has not built yet. */
const POSTFIX_DAEMONS_NOT_BUILT = new Set([
  ...DAEMONS_BUILT_INTO_MASTER, 'dnsblog', 'flush', 'oqmgr', 'postlogd', 'postscreen', 'proxymap', 'qmqpd', 'scache',
  'showq', 'spawn', 'tlsmgr', 'tlsproxy',
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
 * postscreen), a program the admin expects to run (spawn: policy servers), or a command that
 * is no Postfix daemon at all. A unix service of a Postfix daemon that is not built is only
 * warned about: nothing reaches it unless a parameter names it, and those are refused.
 */
export function skippedServiceProblem(s: SkippedService): string | null {
  const what = `service "${s.service}" (command ${s.command})`;
  if (s.command === 'postscreen') return `not supported by Postactor: ${what}: postscreen is not built yet, so this port would not be served; use smtpd on it instead`;
  if (s.command === 'smtpd') return `not supported by Postactor: ${what}: smtpd of type ${s.type} (only inet smtpd services are built)`;
  if (s.command === 'spawn') return `not supported by Postactor: ${what}: spawn is not built yet, so this program would not run`;
  if (s.type === 'inet') return `not supported by Postactor: ${what}: not built yet, so this port would not be served`;
  if (!POSTFIX_DAEMONS_NOT_BUILT.has(s.command)) return `${what}: unknown command (not a Postfix daemon, nor an absolute path to a JavaScript delivery agent)`;
  return null;
}

export function planServices(config: Config): Plan {
  const cpus = availableParallelism();
  const defaultLimit = config.getInt('default_process_limit');
  const services: ServicePlan[] = [];
  const skipped: Plan['skipped'] = [];
  for (const line of config.services) {
    const threads = line.maxproc === null ? Math.max(1, Math.min(defaultLimit, cpus)) : line.maxproc === 0 ? cpus : line.maxproc;
    const custom = isAbsolute(line.command) && /\.m?js$/.test(line.command);
    const daemon = custom ? { kind: 'pool' as const, module: '', concurrency: 64 } : DAEMONS[line.command];
    if (!daemon || (daemon === DAEMONS['smtpd'] && line.type !== 'inet')) {
      skipped.push({ service: line.name, command: line.command, type: line.type, file: line.file, line: line.line });
      continue;
    }
    const file = custom ? pathToFileURL(line.command) : new URL(daemon.module, import.meta.url);
    const plan: ServicePlan = { service: line.name, kind: daemon.kind, file, threads, concurrency: daemon.concurrency, line };
    if (line.type === 'inet') plan.listen = inetEndpoint(line);
    // Singletons, whatever maxproc says (as in Postfix; verify is a "solitary" server).
    if (line.command === 'qmgr' || line.command === 'pickup' || line.command === 'verify') plan.threads = 1;
    services.push(plan);
  }
  return { services, skipped };
}
