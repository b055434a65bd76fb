/**
 * master: the supervisor, in the main thread. It reads master.cf, starts every service as an
 * actor pool (pools first, then qmgr, then the smtpd listeners, so nothing accepts mail before
 * the path behind it exists), routes requests between actors, restarts crashed workers, answers
 * the control socket, and stops everything on SIGTERM.
 */
import { authorizedHosts } from '../../src/smtpd/xattrs.js';
import { randomBytes } from 'node:crypto';
import { accessSync, chmodSync, constants, existsSync, mkdirSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF, loadConfig, queueDirectory, type Config, type MasterService } from '../../src/config/index.js';
import { readParams } from '../../src/config/declared.js';
import { buildConfig } from '../../src/config/load.js';
import { configureMaillog, flushMaillog, maillog } from '../../src/log/maillog.js';
import { ServicePool } from '../../src/runtime/pool.js';
import { useThreadCompileCache } from '../../src/runtime/compile-cache.js';
import { heapLimits } from '../../src/runtime/heap-limits.js';
import { Router } from '../../src/runtime/router.js';
import { serveServiceRequests } from '../../src/runtime/service-request.js';
import { closeSharedTables, mainProxymap, serveProxymap } from '../../src/maps/index.js';
import { SupervisedWorker } from '../../src/runtime/supervisor.js';
import { watchMaildrop } from './maildrop-watch.js';
import { collectWhenQuiet } from '../../src/runtime/idle-gc.js';
import type { ActorWorkerData } from '../../src/runtime/wire.js';
import { MailFlow } from '../../src/runtime/flow.js';
import { AnvilTables } from '../../src/anvil/statistics.js';
import type { Health, MetricsCollector } from '../../src/metrics/collect.js';
import { enableMetrics, masterMetrics } from '../../src/metrics/thread.js';
import { parseListen } from '../../src/metrics/listen.js';
import { storeWritable } from '../../src/metrics/health.js';
import { startSyslogRelay, syslogFacility, type SyslogRelay } from '../../src/log/syslog.js';
import { STORE_FILE, storeFileProblem, storeTreeProblem } from '../../src/queue/integrity.js';
import { parseSpawnAttributes } from '../../src/config/spawn-attributes.js';
import { AnvilTable } from '../../src/anvil/table.js';
import { postscreenSettings } from '../../src/postscreen/settings.js';
import { SmtpdPolicy } from '../../src/smtpd/policy.js';
import { kick, type KickRequest } from './kick.js';
import { smtpdTlsProblem } from '../../src/smtpd/tls.js';
import { smtpdAnvilProblem } from '../../src/smtpd/anvil.js';
import { DAEMONS_BUILT_INTO_MASTER, planServices, skippedServiceProblem, type Plan, type ServicePlan } from './services.js';
import { ControlServer, controlSocketPath } from '../../src/runtime/control.js';
import { Showq } from '../../src/queue/showq.js';
import { MasterLockHeld, acquireMasterLock, pidFilePath, provenMaster, type MasterLock } from './lock.js';
import { effectiveProtocols, interfaceListenHosts, serviceListenAddresses } from '../../src/net/listen.js';
import { InstanceRegistry, registryDirectory } from './instances.js';
import { verifyMapProblem } from '../../src/verify/cache.js';
import { VerifySender } from '../../src/verify/sender.js';
import { isQueueManager } from '../../src/config/queue-managers.js';
import { FlushClient, fastFlushDomainsProblems } from '../../src/flush/client.js';
import { startWakeups } from './wakeup.js';
import { watchSmtpdLoad } from './smtpd-demand.js';

export const VERSION = '0.1.0';
const log = maillog('master');

export interface Master {
  router: Router;
  /** Stops listening, lets pools finish their tasks (graceful) or not (abort), ends every thread. */
  stop(signal?: string, graceful?: boolean): Promise<void>;
  reload(): Promise<void>;
}

/**
 * Problems that stop the server from starting: returned as text lines (file:line: …). What
 * building smtpd's policy warns of (a table that cannot be opened) goes to `warn` once per text,
 * by default the maillog as smtpd (the running master); a command gives its own.
 */
export function checkConfig(config: Config, warn?: (text: string) => void): string[] {
  const problems: string[] = [...config.refusals];
  const plan = planServices(config);
  for (const s of plan.skipped) {
    const refusal = skippedServiceProblem(s);
    if (refusal !== null) problems.push(`${s.file}:${s.line}: ${refusal}`);
    else if (!DAEMONS_BUILT_INTO_MASTER.has(s.command)) config.warn(`${s.file}:${s.line}: not supported: service "${s.service}" (command ${s.command}) is not built yet; skipped`);
  }
  // Postfix chroots these daemons; Postactor's actors are threads of one process, which cannot
  // each have a root of their own. One warning names the lines.
  const chrooted = config.services.filter((s) => s.chroot);
  if (chrooted.length > 0) {
    config.warn(`${chrooted[0]!.file}:${chrooted.map((s) => s.line).join(',')}: chroot = y: not supported by Postactor (its actors are threads of one process), ignored`);
  }
  // Each smtpd listener runs on main.cf plus its own master.cf -o overrides. What building its
  // policy logs (a table that cannot be opened) is said once, not once per listener.
  const listeners = plan.services.filter((s) => s.line.command === 'smtpd');
  const said = new Set<string>();
  const smtpdLog = maillog('smtpd');
  const once = (say: (text: string) => void) => (text: string) => {
    if (!said.has(text)) say(text);
    said.add(text);
  };
  const policyLog = { info: once((t) => smtpdLog.info(t)), warn: once(warn ?? ((t) => smtpdLog.warn(t))) };
  for (const s of listeners.length > 0 ? listeners : [null]) {
    let c = config;
    try {
      c = s ? serviceConfig(config, s) : config;
      new SmtpdPolicy(c, policyLog);
      const tls = smtpdTlsProblem(c);
      if (tls !== null) throw new Error(tls);
      const anvil = smtpdAnvilProblem(c);
      if (anvil !== null) throw new Error(anvil);
      authorizedHosts(c, 'smtpd_authorized_xclient_hosts');
      authorizedHosts(c, 'smtpd_authorized_xforward_hosts');
      const proxy = c.get('smtpd_upstream_proxy_protocol').trim();
      if (proxy !== '' && proxy !== 'haproxy') throw new Error(`unsupported smtpd_upstream_proxy_protocol value: ${proxy}`);
    } catch (err) {
      const where = s && Object.keys(s.line.overrides).length > 0 ? `${s.line.file}:${s.line.line}` : `${config.configDirectory ?? '(embedded)'}/main.cf`;
      for (const l of (err as Error).message.split('\n')) {
        // "param: what is wrong" is told at the line that sets param, when a file sets it.
        const param = /^([A-Za-z0-9_]+): /.exec(l)?.[1];
        const o = param !== undefined && c.isSet(param) ? c.originOf(param) : null;
        const at = o !== null && o.line !== null ? `${o.file}:${o.line}` : where;
        if (!problems.includes(`${at}: ${l}`)) problems.push(`${at}: ${l}`);
      }
    }
  }
  // The verify service: its cache must be one Postactor keeps, its probe sender well formed.
  for (const s of plan.services.filter((p) => p.line.command === 'verify')) {
    const c = serviceConfig(config, s);
    const where = Object.keys(s.line.overrides).length > 0 ? `${s.line.file}:${s.line.line}` : `${config.configDirectory ?? '(embedded)'}/main.cf`;
    const map = verifyMapProblem(c);
    if (map !== null) problems.push(`${where}: ${map}`);
    try {
      new VerifySender(c);
    } catch (err) {
      problems.push(`${where}: ${(err as Error).message}`);
    }
  }
  // fast_flush_domains: read by smtpd (ETRN), qmgr, flush and master (postqueue -s).
  for (const p of fastFlushDomainsProblems(config)) problems.push(`${config.configDirectory ?? '(embedded)'}/main.cf: ${p}`);
  if (config.get('metrics_listen')) {
    try {
      parseListen(config.get('metrics_listen'));
    } catch (err) {
      problems.push(`${config.configDirectory ?? '(embedded)'}/main.cf: ${(err as Error).message}`);
    }
  }
  if (syslogFacility(config.get('syslog_facility')) === null) problems.push(`${config.configDirectory ?? '(embedded)'}/main.cf: syslog_facility = ${config.get('syslog_facility')}: unrecognized value`);
  // spawn services: their user=/argv= attributes, as spawn(8) would read them.
  for (const s of plan.services.filter((p) => p.line.command === 'spawn')) {
    const a = parseSpawnAttributes(s.line.args, config.get('mail_owner'));
    if (typeof a === 'string') problems.push(`${s.line.file}:${s.line.line}: service "${s.service}" (command spawn): ${a}`);
    else if (s.line.type !== 'unix' && s.line.type !== 'inet') problems.push(`${s.line.file}:${s.line.line}: service "${s.service}" (command spawn): type ${s.line.type} is not supported (unix or inet)`);
  }
  // postscreen: its settings, and the dnsblog service its DNSBL lookups need.
  for (const s of plan.services.filter((p) => p.postscreen)) {
    const line = s.postscreen!;
    try {
      const c = postscreenConfig(config, line);
      const ps = postscreenSettings(c);
      const dnsblog = c.get('dnsblog_service_name');
      if (ps.dnsblSites.length > 0 && !plan.services.some((p) => p.service === dnsblog && p.line.command === 'dnsblog')) {
        throw new Error(`postscreen_dnsbl_sites is set, but master.cf has no "${dnsblog}" service (command dnsblog) to look them up`);
      }
    } catch (err) {
      problems.push(`${line.file}:${line.line}: ${(err as Error).message}`);
    }
  }
  const queueProblem = queueDirectoryProblem(queueDirectory(config));
  if (queueProblem !== null) problems.push(`${config.configDirectory ?? '(embedded)'}/main.cf: queue_directory = ${config.get('queue_directory')}: ${queueProblem}`);
  // A damaged store file would make every thread that maps it die by SIGBUS/SIGSEGV, silently.
  const storeProblem = queueProblem === null ? storeFileProblem(join(queueDirectory(config), STORE_FILE)) : null;
  if (storeProblem !== null) problems.push(storeProblem);
  const queueManagers = plan.services.filter((s) => isQueueManager(s.line.command));
  if (queueManagers.length === 0) problems.push('master.cf: no qmgr service: mail would never be delivered');
  // Two queue managers would both take the same active queue.
  for (const s of queueManagers.slice(1)) problems.push(`${s.line.file}:${s.line.line}: service "${s.service}" (command ${s.line.command}): a second queue manager (service "${queueManagers[0]!.service}", command ${queueManagers[0]!.line.command}, runs already): only one may run`);
  if (!plan.services.some((s) => s.line.command === 'cleanup')) problems.push('master.cf: no cleanup service: smtpd could not queue mail');
  return problems;
}

/** Pseudo file systems no queue can live on (statfs magic numbers: proc, sysfs, cgroup, cgroup2, debugfs, devpts). */
const PSEUDO_FS = new Set([0x9fa0, 0x62656572, 0x27e0eb, 0x63677270, 0x64626720, 0x1cd1]);

/**
 * Why the queue could not live in dir, or null: it must be a directory Postactor can write, or
 * one it can create under an existing writable directory, on a real file system.
 */
function queueDirectoryProblem(dir: string): string | null {
  let at = dir;
  while (!existsSync(at)) {
    const up = dirname(at);
    if (up === at) break;
    at = up;
  }
  try {
    if (!statSync(at).isDirectory()) return `${at} is not a directory`;
    if (PSEUDO_FS.has(Number(statfsSync(at).type))) return `${at} is on a pseudo file system (proc, sysfs, …), not a place for a queue`;
    accessSync(at, constants.W_OK | constants.X_OK);
  } catch (err) {
    return `${at}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  return null;
}

/** main.cf with the postscreen line's -o overrides (postscreen's own view). */
export function postscreenConfig(config: Config, line: MasterService): Config {
  return config.withOverrides({ service_name: line.name, ...line.overrides }, { file: line.file, line: line.line });
}

/** main.cf with a service's master.cf "-o name=value" overrides applied (as Postfix's daemons see it). */
export function serviceConfig(config: Config, s: ServicePlan): Config {
  // service_name is the daemon's own master.cf name, as Postfix sets it for each daemon, so
  // that "-o syslog_name=postfix/$service_name" names the service.
  return config.withOverrides({ service_name: s.service, ...s.line.overrides }, { file: s.line.file, line: s.line.line });
}

/**
 * Fills in each inet service's listening sockets (inet_interfaces, inet_protocols, the
 * service's own host part); throws the first problem as `file:line: …`.
 */
export async function resolveListenAddresses(config: Config, plan: Plan, warn: (text: string) => void = () => undefined): Promise<void> {
  const inet = plan.services.filter((s) => s.listen !== undefined);
  if (inet.length === 0) return;
  const protocols = await effectiveProtocols(config, warn);
  // inet_interfaces is looked at only when some service has no host part, as in Postfix.
  const interfaces = inet.some((s) => s.listen!.host === null) ? await interfaceListenHosts(config, protocols) : [];
  for (const s of inet) {
    const where = s.postscreen ?? s.line;
    s.addresses = await serviceListenAddresses(s.listen!, `${where.file}:${where.line}`, interfaces, protocols);
  }
}

function pidFile(config: Config): string {
  return pidFilePath(queueDirectory(config));
}

export interface MasterOptions {
  /**
   * Running in the background (`postactor start`): with maillog_file empty the log goes to
   * syslog, as Postfix's does; in the foreground it goes to standard output.
   */
  background?: boolean;
}

/**
 * What master itself reads at start (and the last three again at reload), with the registry's
 * types, as a service declares its parameters (src/config/declared.ts). checkConfig reads what
 * it checks on its own: it runs for `postactor check` as well.
 */
const MASTER_PARAMS = {
  'maillog_file': 'str',
  'syslog_facility': 'str',
  'myhostname': 'str',
  'syslog_name': 'str',
  'mail_spool_directory': 'str',
  'metrics_listen': 'str',
  'proxy_read_maps': 'str',
  'anvil_rate_time_unit': 'time',
  'anvil_status_update_time': 'time',
} as const;

export async function startMaster(config: Config, options: MasterOptions = {}): Promise<Master> {
  const p = readParams(config, MASTER_PARAMS, 'master');
  // syslog: the relay starts before anything logs (src/log/syslog.ts); every thread gets it.
  let syslog: SyslogRelay | null = null;
  if (options.background && p.maillog_file === '') {
    syslog = startSyslogRelay(queueDirectory(config), p.syslog_facility);
  }
  const syslogTarget = syslog ? { fd: syslog.fd, facility: syslog.facility } : undefined;
  configureMaillog({ file: p.maillog_file, hostname: p.myhostname, syslogName: p.syslog_name, ...(syslogTarget ? { syslog: syslogTarget } : {}) });
  const problems = checkConfig(config);
  for (const w of config.warnings) log.warn(w);
  if (problems.length) throw new Error(problems.join('\n'));
  const queueDir = queueDirectory(config);
  // No master: nothing writes the store, so every tree page can be checked before a thread maps
  // it (a damaged page would crash them all, again and again, with no word why).
  if (!provenMaster(queueDir)) {
    const damaged = storeTreeProblem(join(queueDir, STORE_FILE));
    if (damaged !== null) throw new Error(damaged);
  }
  mkdirSync(join(queueDir, 'pid'), { recursive: true });
  // The lock first, as Postfix's master locks pid/master.pid before anything else: one master
  // per queue, and only the holder ever writes the pid file.
  let lock: MasterLock;
  try {
    lock = await acquireMasterLock(queueDir);
  } catch (err) {
    if (!(err instanceof MasterLockHeld)) throw new Error(`${queueDir}: cannot take the master lock: ${(err as Error).message}`);
    const other = provenMaster(queueDir);
    throw new Error(`the Postactor mail system is already running${other ? ` (pid ${other})` : ''}`);
  }
  // The embedded default keeps mailboxes in the project (var/mail): create that spool, as a
  // system's /var/mail exists before Postfix runs.
  if (config.configDirectory === null) mkdirSync(p.mail_spool_directory, { recursive: true, mode: 0o755 });
  // The control socket's directory: owner only (Postfix's public/ is group postdrop; we have no
  // setgid helper, so only the mail system's owner may talk to the master).
  mkdirSync(join(queueDir, 'public'), { recursive: true, mode: 0o700 });
  chmodSync(join(queueDir, 'public'), 0o700);
  writeFileSync(pidFile(config), `${process.pid}\n`);
  // Every thread gets Node's compile cache (a cold pool's first request waits for its modules
  // to load); without one they only start slower, said once here.
  const noCompileCache = useThreadCompileCache();
  if (noCompileCache !== null) log.info(noCompileCache);

  const instance = String(process.pid);
  const router = new Router();
  // Requests from pool workers to other services (local's mailbox_transport → lmtp, …).
  const stopServiceRequests = serveServiceRequests(instance, router);
  // proxymap(8): the actors' proxy: tables are looked up here, one set of connections for all threads.
  const proxymap = mainProxymap((text) => maillog('proxymap').warn(text));
  proxymap.configure(p.proxy_read_maps);
  const stopProxymap = serveProxymap(instance, proxymap);
  let current = config;
  let pools = new Map<string, ServicePool>();
  let listeners: SupervisedWorker[] = [];
  let qmgr: SupervisedWorker | null = null;
  /** The master.cf command the running queue manager was started as (qmgr or oqmgr). */
  let qmgrCommand = 'qmgr';
  // The previous generations after a reload: smtpd threads serving their last sessions, pools
  // finishing their tasks. Nobody waits for them but stop().
  const retired = new Set<SupervisedWorker>();
  const draining = new Set<Promise<void>>();
  const smtpdWorkers = new WeakSet<SupervisedWorker>();

  // The mail flow tokens (in_flow_delay): one counter for the server's life, reloads included.
  const flow = MailFlow.create();
  // TLS session ticket keys (Postfix's tlsmgr role): one set for every smtpd thread, reloads
  // included, so a client resumes its session whichever thread it reaches next.
  const ticketKeys = randomBytes(48);
  // anvil's counters: one shared table per smtpd service, reloads included (actors/anvil).
  const anvil = new AnvilTables();
  anvil.start(p.anvil_rate_time_unit, p.anvil_status_update_time);
  // postscreen's per-client connection counts: one table per postscreen service, shared by
  // the smtpd threads that run it, reloads included (not anvil's: no statistics lines).
  // And the number of sessions each postscreen service holds (postscreen_pre_queue_limit).
  const screens = new Map<string, { counts: AnvilTable; sessions: SharedArrayBuffer }>();
  const postscreenShared = (service: string): { counts: SharedArrayBuffer; sessions: SharedArrayBuffer } => {
    let t = screens.get(service);
    if (!t) screens.set(service, (t = { counts: AnvilTable.create(60), sessions: new SharedArrayBuffer(4) }));
    return { counts: t.counts.buffer, sessions: t.sessions };
  };
  // metrics_listen (read at start): every thread counts in place and reports to the collector.
  const metricsListen = p.metrics_listen;
  if (metricsListen) enableMetrics();
  const data = (c: Config, service: string, index: number, extra?: unknown, thread?: string): ActorWorkerData<unknown> =>
    ({ service, ...(thread ? { thread } : {}), index, config: c.toJSON(), instance, flow: flow.buffer, ...(metricsListen ? { metrics: true } : {}), ...(syslogTarget ? { syslog: syslogTarget } : {}), ...(extra ? { extra } : {}) });

  const startPools = (c: Config, plan: Plan): Map<string, ServicePool> => {
    const made = new Map<string, ServicePool>();
    for (const s of plan.services.filter((p) => p.kind === 'pool')) {
      const pool = new ServicePool({
        service: s.service,
        filename: s.file.href,
        threads: s.threads,
        minThreads: s.minThreads,
        spreadAt: s.spreadAt,
        idleMs: c.getTime('max_idle') * 1000,
        resourceLimits: heapLimits(s.line.command),
        concurrency: s.concurrency,
        maxQueue: 20_000,
        workerData: data(serviceConfig(c, s), s.service, 0, undefined, s.line.command),
        throttleSeconds: c.getTime('service_throttle_time'),
        onCrash: (service, error, throttled) => {
          masterMetrics().restarts.inc({ service });
          log.warn(`process ${service} (thread) exit status 1: ${error.message}`);
          if (throttled) log.warn(`${service}: bad command startup -- throttling`);
        },
      });
      made.set(s.service, pool);
    }
    return made;
  };

  const supervise = (c: Config, s: ServicePlan, index: number, onDemand = s.onDemand === true): SupervisedWorker => {
    // The queue manager is "qmgr" to the router (cleanup's "queued" goes there) whatever its service name.
    const manager = isQueueManager(s.line.command);
    const name = manager ? 'qmgr' : s.service;
    const w = new SupervisedWorker({
      service: name,
      index,
      filename: s.file,
      workerData: data(serviceConfig(c, s), name, index, s.addresses ? {
        addresses: s.addresses, ticketKeys,
        ...(s.line.command === 'smtpd' ? { anvil: anvil.of(s.service).buffer } : {}),
        ...(s.postscreen ? { postscreen: { config: postscreenConfig(c, s.postscreen).toJSON(), ...postscreenShared(s.postscreen.name) } } : {}),
      } : manager ? { command: s.line.command } : undefined, s.line.command),
      throttleSeconds: c.getTime('service_throttle_time'),
      resourceLimits: heapLimits(s.line.command),
      ...(onDemand ? { onDemand: true } : {}),
      onPort: (port) => router.attach(name, port),
      onExit: (_slot, code, _restart, badStartup, error) => {
        masterMetrics().restarts.inc({ service: s.service });
        log.warn(`process ${s.line.command} (service ${s.service}, thread ${index}) exit status ${code}${error ? `: ${error.stack ?? error.message}` : ''}`);
        if (badStartup) log.warn(`${s.line.command}: bad command startup -- throttling`);
      },
    });
    if (!onDemand) w.start(); // else at its first demand (pickup: maildrop-watch.ts; smtpd: smtpd-demand.ts)
    return w;
  };

  const startListeners = async (c: Config, plan: Plan): Promise<SupervisedWorker[]> => {
    const made: SupervisedWorker[] = [];
    const workers = plan.services.filter((p) => p.kind === 'supervised' && !isQueueManager(p.line.command));
    try {
      // In the services' start order (their definitions'): each group ready before the next starts.
      for (const order of [...new Set(workers.map((s) => s.startOrder))].sort((a, b) => a - b)) {
        const group: SupervisedWorker[] = [];
        for (const s of workers.filter((p) => p.startOrder === order)) {
          for (let i = 0; i < s.threads; i++) {
            // An smtpd service's threads after the first start when the first is busy (smtpd-demand.ts);
            // postscreen's pass threads all run, as they share postscreen's work.
            const w = supervise(c, s, i, s.onDemand === true || (i > 0 && s.line.command === 'smtpd' && !s.postscreen));
            if (s.line.command === 'smtpd') smtpdWorkers.add(w);
            group.push(w);
          }
        }
        made.push(...group);
        await Promise.all(group.map((w) => w.ready()));
      }
    } catch (err) {
      await Promise.allSettled(made.map((w) => w.stop()));
      throw err;
    }
    return made;
  };

  // Order: no new mail (listeners), no new deliveries (qmgr pauses), deliveries in flight
  // finish and qmgr records them (pools drain), then qmgr ends.
  const stopAll = async (graceful: boolean) => {
    await Promise.allSettled([...listeners, ...retired].map((w) => w.stop()));
    if (graceful) await qmgr?.control?.['pause']!().catch(() => undefined);
    await Promise.allSettled([...pools.values()].map((p) => (graceful ? p.drain() : p.close())));
    await Promise.allSettled(draining);
    await qmgr?.stop();
  };

  // metrics_listen: the collector and its HTTP server (started before the listeners, below).
  let collector: MetricsCollector | null = null;
  let metricsServer: import('node:http').Server | null = null;
  const plan = planServices(config);
  const registry = new InstanceRegistry(registryDirectory((w) => log.warn(w)), queueDir);
  const addressesOf = (p: Plan) => p.services.flatMap((s) => s.addresses ?? []);
  let held: ReturnType<typeof addressesOf> = [];
  // master.cf wakeup timers of pool services (flush's refresh: wakeup.ts).
  let stopWakeups = (): void => undefined;
  // pickup's thread runs only while there is mail to pick up: master watches maildrop/ for it.
  const watchPickup = (p: Plan) => watchMaildrop(queueDir, p.services.filter((s) => s.onDemand && s.line.command === 'pickup').map((s) => ({
    wakeup: s.line.wakeup,
    demand: () => { for (const w of listeners) if (w.options.service === s.service) w.demand(); },
  })), (w) => log.warn(w));
  let stopPickupWatch = (): void => undefined;
  // verify's thread starts at its first request, as Postfix's master spawns verify when a client
  // connects: a server whose restrictions never verify an address never runs it.
  const wakeOnRequest = (p: Plan) => {
    for (const s of p.services.filter((x) => x.kind === 'supervised' && x.onDemand && x.line.command !== 'pickup')) {
      router.onDemand(s.service, () => { for (const w of listeners) if (w.options.service === s.service) w.demand(); });
    }
  };
  let stopSmtpdWatch = (): void => undefined;
  try {
    await resolveListenAddresses(config, plan, (w) => log.warn(w));
    registry.claim(addressesOf(plan));
    held = addressesOf(plan);
    pools = startPools(config, plan);
    for (const [name, pool] of pools) router.addPool(name, pool);
    stopWakeups = startWakeups(plan.services, (service, body) => router.request(service, body), log);
    const q = plan.services.find((p) => isQueueManager(p.line.command))!;
    qmgrCommand = q.line.command;
    qmgr = supervise(config, q, 0);
    // The listeners start beside qmgr, not after it, as Postfix's master does not wait for its
    // queue manager either: smtpd answers while qmgr recovers and scans the queue (a long one
    // with a big backlog), and mail queued meanwhile is taken by qmgr's last start-up scan.
    const qmgrReady = qmgr.ready();
    qmgrReady.catch(() => undefined); // awaited below; a failure then stops what started
    // metrics_listen: /metrics (every thread's counters summed) and /health (services up, store writable).
    if (metricsListen) {
      const liveThreads = () => {
        const ids = new Set<number>();
        for (const w of [...listeners, ...(qmgr ? [qmgr] : [])]) if (w.threadId !== undefined) ids.add(w.threadId);
        for (const p of pools.values()) for (const t of p.threadIds) ids.add(t);
        return ids;
      };
      const health = async (): Promise<Health> => {
        const checks: Health['checks'] = {};
        checks['qmgr'] = qmgr?.threadId !== undefined ? { ok: true } : { ok: false, detail: 'not running' };
        for (const w of listeners) {
          const name = `${w.options.service}[${w.options.index}]`;
          checks[name] = w.threadId !== undefined || w.dormant ? { ok: true } : { ok: false, detail: 'not running' };
        }
        for (const [name, p] of pools) checks[name] = p.throttled ? { ok: false, detail: 'throttled after repeated crashes' } : { ok: true }; // no threads: idle (started on demand)
        const store = storeWritable(queueDir);
        checks['store'] = store === null ? { ok: true } : { ok: false, detail: store };
        return { ok: Object.values(checks).every((c) => c.ok), checks };
      };
      masterMetrics();
      // Loaded only when metrics are on (prom-client's aggregation and an HTTP server).
      const { MetricsCollector, startMetricsServer } = await import('../../src/metrics/collect.js');
      collector = new MetricsCollector({ instance, liveThreads });
      try {
        metricsServer = await startMetricsServer(metricsListen, collector, health);
      } catch (err) {
        collector.close();
        throw new Error(`metrics_listen = ${metricsListen}: ${(err as Error).message}`);
      }
    }
    listeners = await startListeners(config, plan);
    wakeOnRequest(plan);
    await qmgrReady;
    stopPickupWatch = watchPickup(plan);
    stopSmtpdWatch = watchSmtpdLoad(() => listeners.filter((w) => smtpdWorkers.has(w)), () => current.getTime('max_idle') * 1000);
  } catch (err) {
    metricsServer?.close();
    collector?.close();
    stopWakeups();
    await stopAll(false);
    registry.release();
    rmSync(pidFile(config), { force: true });
    await lock.release();
    throw err;
  }

  /**
   * postactor reload: re-read main.cf and master.cf; a bad configuration is refused and the
   * running one kept. The new listeners start before the old ones close, then the new pools
   * replace the old ones in the router; the reload is done once the new generation listens, the
   * old one has closed its listening sockets and qmgr took the new settings (it keeps its active
   * queue). The old generation finishes what it holds in the background, as Postfix's old
   * processes do: pools drain their tasks, and each old smtpd thread serves its open sessions
   * to the end (actors/smtpd/shutdown.ts) — no session is cut or told 421 because of a reload.
   */
  /** An old smtpd thread serves its sessions to the end; any other long-lived worker just stops. */
  const retire = (w: SupervisedWorker): Promise<void> => {
    retired.add(w);
    if (!smtpdWorkers.has(w)) return w.stop().finally(() => retired.delete(w));
    const { closed, exited } = w.retire();
    void exited.finally(() => retired.delete(w));
    return closed;
  };
  let reloading: Promise<void> | null = null;
  const reload = (): Promise<void> => (reloading ??= (async () => {
    try {
      // The same directory again; the embedded default stays embedded (no new discovery).
      const next = current.configDirectory === null ? buildConfig(null, EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF) : loadConfig(current.configDirectory);
      const problems = checkConfig(next);
      if (problems.length) throw new Error(problems.join('; '));
      for (const w of next.warnings) log.warn(w);
      if (queueDirectory(next) !== queueDirectory(current)) throw new Error('queue_directory cannot change on reload: stop and start instead');
      log.info(`reload -- version ${VERSION}, configuration ${next.configDirectory ?? '(embedded default)'}`);
      const nextPlan = planServices(next);
      await resolveListenAddresses(next, nextPlan, (w) => log.warn(w));
      registry.claim(addressesOf(nextPlan));
      // The new smtpd generation first, alone: it is what the reload waits for, and pools
      // starting beside it would slow its start-up. Meanwhile it hands its mail to the
      // running pools, as a new Postfix smtpd may reach an old cleanup process.
      const oldListeners = listeners;
      listeners = await startListeners(next, nextPlan);
      wakeOnRequest(nextPlan);
      stopPickupWatch();
      stopPickupWatch = watchPickup(nextPlan);
      await Promise.allSettled(oldListeners.map(retire));
      current = next;
      const np = readParams(next, MASTER_PARAMS, 'master');
      proxymap.configure(np.proxy_read_maps);
      anvil.start(np.anvil_rate_time_unit, np.anvil_status_update_time);
      const nextPools = startPools(next, nextPlan);
      const oldPools = pools;
      for (const [name, pool] of nextPools) router.addPool(name, pool);
      for (const name of oldPools.keys()) if (!nextPools.has(name)) router.removePool(name);
      pools = nextPools;
      stopWakeups();
      stopWakeups = startWakeups(nextPlan.services, (service, body) => router.request(service, body), log);
      for (const p of oldPools.values()) {
        const d: Promise<void> = p.drain().catch(() => undefined).finally(() => draining.delete(d));
        draining.add(d);
      }
      const nextQ = nextPlan.services.find((p) => isQueueManager(p.line.command))!;
      if (qmgr && nextQ.line.command !== qmgrCommand) {
        // The other scheduler (qmgr ↔ oqmgr): a new queue manager thread, as Postfix's master
        // runs the changed program. The old one records its deliveries in flight, then ends;
        // the new one takes the active queue back through incoming, as after a restart.
        log.info(`reload: queue manager ${qmgrCommand} replaced by ${nextQ.line.command}`);
        await qmgr.control?.['pause']!().catch(() => undefined);
        await qmgr.stop();
        qmgrCommand = nextQ.line.command;
        qmgr = supervise(next, nextQ, 0);
        await qmgr.ready();
      } else {
        await qmgr?.control?.['reconfigure']!(next.toJSON());
      }
      held = addressesOf(nextPlan);
      registry.release(held);
    } catch (err) {
      registry.release(held);
      log.warn(`reload failed: ${(err as Error).message}; the running configuration stays in effect`);
      throw err;
    } finally {
      reloading = null;
    }
  })());

  const showq = new Showq(queueDir);
  const control = new ControlServer(controlSocketPath(queueDir), {
    status: async () => ({ pid: process.pid, qmgr: qmgr?.control ? await qmgr.control['status']!() : null }),
    flush: async () => {
      if (qmgr?.control) await qmgr.control['flush']!();
      return { ok: true };
    },
    reload: async () => {
      await reload();
      return { ok: true };
    },
    // postqueue -s site / -i queue_id: args {site} or {queueId}; resolves to how many became due.
    'flush-some': async (args) => {
      if (!qmgr?.control) throw new Error('qmgr is not running');
      return { due: await qmgr.control['flushSome']!(args) };
    },
    // postqueue -s site, sendmail -qRsite: the flush service's send_site (args {site}); resolves
    // to its status (Postfix's FLUSH_STAT_*: ok, fail, bad, deny), postqueue words the rest.
    'flush-site': async (args) => {
      const site = String((args as { site?: unknown } | undefined)?.site ?? '');
      return { status: await new FlushClient(current, (service, body) => router.request(service, body)).sendSite(site) };
    },
    // postkick class service request: Postfix's triggers, for the services that take them here.
    kick: async (args) => kick(current, args as KickRequest, qmgr, listeners, (service, body) => router.request(service, body)),
    // postsuper while the server runs: args = AdminRequest[] (src/queue/admin.ts); qmgr does it.
    admin: async (args) => {
      if (!qmgr?.control) throw new Error('qmgr is not running');
      return qmgr.control['admin']!(args);
    },
    // postsuper -s while the server runs: qmgr checks and repairs the store (a StructureReport).
    structure: async () => {
      if (!qmgr?.control) throw new Error('qmgr is not running');
      return qmgr.control['structure']!();
    },
    // mailq / postqueue -p and -j while the server runs (src/queue/showq.ts): args {emptyAddress}.
    showq: async (args) => showq.list((args as { emptyAddress?: string } | undefined)?.emptyAddress || 'MAILER-DAEMON'),
  });
  await control.listen();

  collectWhenQuiet(); // the master's heap after a burst (src/runtime/idle-gc.ts)
  log.info(`daemon started -- version ${VERSION}, configuration ${config.configDirectory ?? '(embedded default)'}`);

  let stopping: Promise<void> | null = null;
  const stop = (signal?: string, graceful = true) => (stopping ??= (async () => {
    log.info(signal ? `terminating on signal ${signal}` : 'terminating');
    await control.close();
    await showq.close();
    metricsServer?.close();
    collector?.close();
    stopWakeups();
    stopPickupWatch();
    stopSmtpdWatch();
    await stopAll(graceful);
    // anvil logs its statistics when it exits.
    anvil.stop();
    anvil.dump();
    stopServiceRequests();
    stopProxymap();
    closeSharedTables();
    registry.release();
    rmSync(pidFile(config), { force: true });
    await lock.release();
    flushMaillog();
  })());
  return { router, stop, reload };
}
