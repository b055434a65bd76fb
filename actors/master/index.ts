/**
 * master: the supervisor, in the main thread. It reads master.cf, starts every service as an
 * actor pool (pools first, then qmgr, then the smtpd listeners, so nothing accepts mail before
 * the path behind it exists), routes requests between actors, restarts crashed workers, answers
 * the control socket, and stops everything on SIGTERM.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { queueDirectory, type Config } from '../../src/config/index.js';
import { configureMaillog, flushMaillog, maillog } from '../../src/log/maillog.js';
import { ServicePool } from '../../src/runtime/pool.js';
import { Router } from '../../src/runtime/router.js';
import { SupervisedWorker } from '../../src/runtime/supervisor.js';
import type { ActorWorkerData } from '../../src/runtime/wire.js';
import { SmtpdPolicy } from '../smtpd/policy.js';
import { planServices } from './services.js';
import { ControlServer, controlSocketPath } from './control.js';

export const VERSION = '0.1.0';
const log = maillog('master');

export interface Master {
  router: Router;
  stop(signal?: string): Promise<void>;
}

/** Problems that stop the server from starting: returned as text lines (file:line: …). */
export function checkConfig(config: Config): string[] {
  const problems: string[] = [];
  try {
    new SmtpdPolicy(config);
  } catch (err) {
    problems.push(...(err as Error).message.split('\n').map((l) => `${config.configDirectory ?? '(embedded)'}/main.cf: ${l}`));
  }
  const plan = planServices(config);
  if (!plan.services.some((s) => s.line.command === 'qmgr')) problems.push('master.cf: no qmgr service: mail would never be delivered');
  if (!plan.services.some((s) => s.line.command === 'cleanup')) problems.push('master.cf: no cleanup service: smtpd could not queue mail');
  return problems;
}

function pidFile(config: Config): string {
  return join(queueDirectory(config), 'pid', 'master.pid');
}

/** The pid of a running master for this queue directory, or null. */
export function runningMaster(config: Config): number | null {
  try {
    const pid = Number(readFileSync(pidFile(config), 'utf8').trim());
    if (!pid) return null;
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

export async function startMaster(config: Config): Promise<Master> {
  configureMaillog({ file: config.get('maillog_file'), hostname: config.get('myhostname'), syslogName: config.get('syslog_name') });
  for (const w of config.warnings) log.warn(w);
  const problems = checkConfig(config);
  if (problems.length) throw new Error(problems.join('\n'));
  const other = runningMaster(config);
  if (other && other !== process.pid) throw new Error(`the Postactor mail system is already running (pid ${other})`);

  const queueDir = queueDirectory(config);
  mkdirSync(join(queueDir, 'pid'), { recursive: true });
  mkdirSync(join(queueDir, 'public'), { recursive: true });
  writeFileSync(pidFile(config), `${process.pid}\n`);

  const instance = String(process.pid);
  const router = new Router();
  const pools: ServicePool[] = [];
  const workers: SupervisedWorker[] = [];
  const throttle = config.getTime('service_throttle_time');
  const plan = planServices(config);
  for (const s of plan.skipped) log.warn(`${s.file}:${s.line}: not supported: service "${s.service}" (command ${s.command}) is not built yet; skipped`);

  const data = (service: string, index: number, extra?: unknown): ActorWorkerData<unknown> => ({ service, index, config: config.toJSON(), instance, ...(extra ? { extra } : {}) });

  for (const s of plan.services.filter((p) => p.kind === 'pool')) {
    const pool = new ServicePool({
      service: s.service,
      filename: s.file.href,
      threads: s.threads,
      concurrency: s.concurrency,
      maxQueue: 20_000,
      workerData: data(s.service, 0),
      throttleSeconds: throttle,
      onCrash: (service, error, throttled) => {
        log.warn(`process ${service} (thread) exit status 1: ${error.message}`);
        if (throttled) log.warn(`${service}: bad command startup -- throttling`);
      },
    });
    router.addPool(s.service, pool);
    pools.push(pool);
  }

  const supervise = (s: (typeof plan.services)[number], index: number) => {
    const w = new SupervisedWorker({
      service: s.service,
      index,
      filename: s.file,
      workerData: data(s.line.command === 'qmgr' ? 'qmgr' : s.service, index, s.listen),
      throttleSeconds: throttle,
      onPort: (port) => router.attach(s.line.command === 'qmgr' ? 'qmgr' : s.service, port),
      onExit: (slot, code, _restart, badStartup) => {
        log.warn(`process ${s.line.command} (service ${s.service}, thread ${index}) exit status ${code}`);
        if (badStartup) log.warn(`${s.line.command}: bad command startup -- throttling`);
        void slot;
      },
    });
    workers.push(w);
    w.start();
    return w;
  };

  const stopAll = async () => {
    await Promise.allSettled(workers.map((w) => w.stop()));
    await Promise.allSettled(pools.map((p) => p.close()));
  };
  try {
    const qmgrs = plan.services.filter((p) => p.line.command === 'qmgr').map((s) => supervise(s, 0));
    await Promise.all(qmgrs.map((w) => w.ready()));
    const listeners: SupervisedWorker[] = [];
    for (const s of plan.services.filter((p) => p.kind === 'supervised' && p.line.command !== 'qmgr')) {
      for (let i = 0; i < s.threads; i++) listeners.push(supervise(s, i));
    }
    await Promise.all(listeners.map((w) => w.ready()));
  } catch (err) {
    await stopAll();
    rmSync(pidFile(config), { force: true });
    throw err;
  }

  const control = new ControlServer(controlSocketPath(queueDir), {
    status: async () => {
      const qmgr = workers.find((w) => w.options.service === 'qmgr');
      return { pid: process.pid, qmgr: qmgr?.control ? await qmgr.control['status']!() : null };
    },
    flush: async () => {
      const qmgr = workers.find((w) => w.options.service === 'qmgr');
      if (qmgr?.control) await qmgr.control['flush']!();
      return { ok: true };
    },
  });
  await control.listen();
  log.info(`daemon started -- version ${VERSION}, configuration ${config.configDirectory ?? '(embedded default)'}`);

  let stopping: Promise<void> | null = null;
  const stop = (signal?: string) => (stopping ??= (async () => {
    log.info(signal ? `terminating on signal ${signal}` : 'terminating');
    await control.close();
    await stopAll();
    rmSync(pidFile(config), { force: true });
    flushMaillog();
  })());
  return { router, stop };
}
