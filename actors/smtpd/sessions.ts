/**
 * The total session limit of an smtpd service, and the open-file budget behind it.
 *
 * Postfix runs one smtpd process per session, so master.cf's maxproc column (or
 * default_process_limit for "-") bounds the sessions of a service; beyond it new clients wait
 * in the listen queue, and postscreen tells them "421 4.3.2 All server ports are busy". In
 * Postactor maxproc counts threads and each thread serves many sessions, so the limit is
 * derived thus:
 *
 *   sessions = maxproc 0 ("unlimited")  → no process limit, only the open-file budget;
 *              otherwise                → max(maxproc or default_process_limit, default_process_limit)
 *              (a small maxproc is a thread count here, not a session count)
 *   and never more than this service's share of the open-file budget:
 *              (RLIMIT_NOFILE − reserve) / 2 (a socket and a spool file per session)
 *              / the number of smtpd inet services in master.cf,
 *   where reserve = max(128, RLIMIT_NOFILE / 8) descriptors kept for the log, the queue, the
 *   LMDB files, cleanup and the delivery agents, so the server can still answer, log and
 *   deliver while a flood holds every session.
 *
 * The count is shared by all threads of the service (a word in its anvil table, which master
 * hands to each of them), so it is exact whichever thread the kernel gives a connection to.
 * A client over the limit gets "421 4.3.2 All server ports are busy" at once and its socket is
 * closed, so a flood cannot hold descriptors; the log gets postscreen's "NOQUEUE: reject:
 * CONNECT from [addr]:port: all server ports busy" and, once per 1000 s, master's "has reached
 * its process limit" warnings.
 *
 * At start the soft RLIMIT_NOFILE is raised to the hard limit. Node has no setrlimit(), so
 * smtpd runs util-linux's `prlimit --pid <own pid> --nofile=<hard>:<hard>` on its own process
 * (raising a soft limit up to the hard one needs no privilege); without prlimit it logs a
 * warning and budgets with the soft limit.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type * as net from 'node:net';
import type { Config } from '../../src/config/index.js';
import { maillog } from '../../src/log/maillog.js';

const log = maillog('smtpd');

/** Descriptors a session may hold: its socket and the spool file of its message (spool.ts). */
const FDS_PER_SESSION = 2;

/** The open-file limits of this process, from /proc/self/limits (null: not Linux). */
export function openFileLimits(): { soft: number; hard: number } | null {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return null;
    const n = (s: string) => (s === 'unlimited' ? 1 << 30 : Number(s));
    return { soft: n(m[1]!), hard: n(m[2]!) };
  } catch {
    return null;
  }
}

/** Raises the soft open-file limit to the hard one; the soft limit in force afterwards. */
export function raiseOpenFileLimit(): number | null {
  const before = openFileLimits();
  if (!before || before.soft >= before.hard) return before?.soft ?? null;
  const hard = before.hard >= 1 << 30 ? 'unlimited' : String(before.hard);
  const r = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`], { encoding: 'utf8', timeout: 5000 });
  const after = openFileLimits();
  if (r.error || r.status !== 0 || !after || after.soft < before.hard) {
    log.warn(`cannot raise the open file limit from ${before.soft} to ${before.hard}: ${r.error?.message ?? (r.stderr.trim() || 'prlimit failed')}`);
  }
  return after?.soft ?? before.soft;
}

/** The session limit of this smtpd service (0: none), as the file header explains. */
export function sessionLimitOf(config: Config, nofile: number | null): number {
  const name = config.get('service_name');
  const line = config.services.find((s) => s.name === name && s.command === 'smtpd');
  const processLimit = config.getInt('default_process_limit');
  const byProcesses = line?.maxproc === 0 ? 0 : Math.max(line?.maxproc ?? processLimit, processLimit);
  if (nofile === null) return byProcesses;
  const services = Math.max(1, config.services.filter((s) => s.command === 'smtpd' && s.type === 'inet').length);
  const reserve = Math.max(128, Math.floor(nofile / 8));
  const byFiles = Math.max(1, Math.floor((nofile - reserve) / FDS_PER_SESSION / services));
  return byProcesses === 0 ? byFiles : Math.min(byProcesses, byFiles);
}

/** Where the count lives: the service's anvil table (shared), or this thread alone. */
export interface SessionCounter {
  enterSession(limit: number): boolean;
  leaveSession(): void;
}

export function localCounter(): SessionCounter {
  let n = 0;
  return {
    enterSession: (limit) => (limit > 0 && n >= limit ? false : (n++, true)),
    leaveSession: () => void n--,
  };
}

/**
 * Puts the session gate in front of the server's 'connection' handlers: a connection over the
 * limit is answered and closed before smtp-server sees it. Returns the gate itself, for
 * connections handed to smtp-server another way (after postscreen, a PROXY header): false when
 * the socket was refused.
 */
export function gateSessions(server: net.Server, opts: { limit: number; counter: SessionCounter; service: string; endpoint: string; plaintext: boolean }): (socket: net.Socket) => boolean {
  const handlers = server.listeners('connection') as ((socket: net.Socket) => void)[];
  server.removeAllListeners('connection');
  let warned = 0;
  const admit = (socket: net.Socket): boolean => {
    if (!opts.counter.enterSession(opts.limit)) {
      const addr = socket.remoteAddress ?? '';
      log.info(`NOQUEUE: reject: CONNECT from [${addr}]:${socket.remotePort}: all server ports busy`);
      if (Date.now() - warned > 1_000_000) {
        warned = Date.now();
        log.warn(`service "${opts.service}" (${opts.endpoint}) has reached its process limit "${opts.limit}": new clients may experience noticeable delays`);
        log.warn('to avoid this condition, increase the process count in master.cf or reduce the service time per client');
      }
      socket.on('error', () => { /* the client went away first */ });
      socket.pause();
      // A TLS-wrapper port cannot be answered in plain text: it is only closed.
      if (!opts.plaintext) {
        socket.destroy();
        return false;
      }
      socket.write('421 4.3.2 All server ports are busy\r\n', () => socket.destroy());
      setTimeout(() => socket.destroy(), 2000).unref();
      return false;
    }
    let left = false;
    const leave = (): void => {
      if (left) return;
      left = true;
      opts.counter.leaveSession();
    };
    socket.once('close', leave);
    // smtp-server's STARTTLS takes the plain socket over with removeAllListeners() (and wrapper
    // mode may too); the socket still closes, so the count's listener is put back each time —
    // without it every TLS session would hold its place for good.
    const removeAll = socket.removeAllListeners;
    socket.removeAllListeners = function (this: net.Socket, ...args: Parameters<net.Socket['removeAllListeners']>) {
      removeAll.apply(this, args);
      if (!left && (args[0] === undefined || args[0] === 'close')) this.once('close', leave);
      return this;
    };
    return true;
  };
  server.on('connection', (socket: net.Socket) => {
    if (!admit(socket)) return;
    for (const h of handlers) h.call(server, socket);
  });
  return admit;
}
