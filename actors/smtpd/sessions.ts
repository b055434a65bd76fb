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
 *
 * A client over the limit waits, as Postfix's clients wait in the listen queue until an smtpd
 * process is free: its connection is parked (read paused, not greeted, holding only its
 * socket) and admitted, oldest first, as soon as a place frees anywhere in the service. Places
 * freed by another thread are seen by polling the shared count every PARK_POLL_MS while
 * something is parked; a place freed in this thread is taken at once. A parked client that
 * hangs up is forgotten silently. Parking starts master's "has reached its process limit"
 * warnings (once per 1000 s). It is bounded twice, so a flood cannot hold descriptors:
 *  - by the open-file budget: the parked connections of the service (also a shared count)
 *    hold one descriptor each, and they get what the service's share leaves beside its
 *    sessions at two each; when the session limit is the budget itself there is no room and
 *    nothing is parked;
 *  - in time: a client parked for smtpd_timeout (Postfix's clients give up at their own
 *    greeting timeout, 5 minutes for Postfix's smtp client) is refused.
 * Beyond either bound the client gets "421 4.3.2 All server ports are busy" at once and its
 * socket is closed; the log gets postscreen's "NOQUEUE: reject: CONNECT from [addr]:port: all
 * server ports busy" and the warnings.
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
import type { Params } from '../../src/config/declared.js';
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

/** What the session limit reads (with the rest of smtpd's: index.ts SMTPD_PARAMS). */
export const SESSION_PARAMS = {
  'service_name': 'str',
  'default_process_limit': 'int',
} as const;

/**
 * The session limit of this smtpd service (0: none), as the file header explains, and how many connections over it may wait for a place: what the
 * service's share of the open-file budget leaves beside its sessions (0 when the budget is the
 * limit; without a known budget, as many as the limit).
 */
export function sessionBudgetOf(config: Config, p: Params<typeof SESSION_PARAMS>, nofile: number | null): { limit: number; parkable: number } {
  const name = p.service_name;
  const line = config.services.find((s) => s.name === name && s.command === 'smtpd');
  const processLimit = p.default_process_limit;
  const byProcesses = line?.maxproc === 0 ? 0 : Math.max(line?.maxproc ?? processLimit, processLimit);
  if (nofile === null) return { limit: byProcesses, parkable: byProcesses };
  const services = Math.max(1, config.services.filter((s) => s.command === 'smtpd' && s.type === 'inet').length);
  const reserve = Math.max(128, Math.floor(nofile / 8));
  const share = Math.floor((nofile - reserve) / services);
  const byFiles = Math.max(1, Math.floor(share / FDS_PER_SESSION));
  if (byProcesses === 0 || byFiles <= byProcesses) return { limit: byFiles, parkable: 0 };
  return { limit: byProcesses, parkable: Math.max(0, share - byProcesses * FDS_PER_SESSION) };
}

/** Where the counts live: the service's anvil table (shared), or this thread alone. */
export interface SessionCounter {
  enterSession(limit: number): boolean;
  leaveSession(): void;
  enterParked(limit: number): boolean;
  leaveParked(): void;
}

export function localCounter(): SessionCounter {
  let n = 0, parked = 0;
  return {
    enterSession: (limit) => (limit > 0 && n >= limit ? false : (n++, true)),
    leaveSession: () => void n--,
    enterParked: (limit) => (parked >= limit ? false : (parked++, true)),
    leaveParked: () => void parked--,
  };
}

/** How often a thread with parked connections looks for a place freed by another thread. */
export const PARK_POLL_MS = 25;

export interface GateOptions {
  limit: number;
  /** Connections of the service that may wait for a place (0: none). */
  parkable: number;
  /** How long one may wait before it is refused. */
  waitMs: number;
  counter: SessionCounter;
  service: string;
  endpoint: string;
  plaintext: boolean;
}

export interface SessionGate {
  /**
   * Runs `start` for the socket once it has a session place: at once, or later when it was
   * parked; refuses it ("all server ports busy") when it cannot wait.
   */
  admit(socket: net.Socket, start: () => void): void;
  /** Connections parked in this thread. */
  parked(): number;
}

/**
 * Puts the session gate in front of the server's 'connection' handlers: a connection over the
 * limit waits (or is answered and closed) before smtp-server sees it. Returns the gate itself,
 * for connections handed to smtp-server another way (after postscreen, a PROXY header).
 */
export function gateSessions(server: net.Server, opts: GateOptions): SessionGate {
  const handlers = server.listeners('connection') as ((socket: net.Socket) => void)[];
  server.removeAllListeners('connection');
  let warned = 0;
  const warn = (): void => {
    if (Date.now() - warned <= 1_000_000) return;
    warned = Date.now();
    log.warn(`service "${opts.service}" (${opts.endpoint}) has reached its process limit "${opts.limit}": new clients may experience noticeable delays`);
    log.warn('to avoid this condition, increase the process count in master.cf or reduce the service time per client');
  };
  const refuse = (socket: net.Socket): void => {
    const addr = socket.remoteAddress ?? '';
    log.info(`NOQUEUE: reject: CONNECT from [${addr}]:${socket.remotePort}: all server ports busy`);
    warn();
    socket.on('error', () => { /* the client went away first */ });
    socket.pause();
    // A TLS-wrapper port cannot be answered in plain text: it is only closed.
    if (!opts.plaintext) {
      socket.destroy();
      return;
    }
    socket.write('421 4.3.2 All server ports are busy\r\n', () => socket.destroy());
    setTimeout(() => socket.destroy(), 2000).unref();
  };
  /** Takes a place: the count's 'close' listener, kept through STARTTLS. */
  const hold = (socket: net.Socket): void => {
    let left = false;
    const leave = (): void => {
      if (left) return;
      left = true;
      opts.counter.leaveSession();
      // A place freed here goes to this thread's oldest waiting client at once.
      if (queue.length > 0) setImmediate(pump);
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
  };

  interface Parked { socket: net.Socket; start: () => void; since: number; gone: () => void; noError: () => void }
  const queue: Parked[] = [];
  let timer: NodeJS.Timeout | null = null;
  const unpark = (p: Parked): void => {
    p.socket.off('close', p.gone);
    p.socket.off('end', p.gone);
    p.socket.off('error', p.noError);
    opts.counter.leaveParked();
  };
  /** Admits the oldest parked connections while places are free; refuses those waited too long. */
  function pump(): void {
    const now = Date.now();
    while (queue.length > 0) {
      const p = queue[0]!;
      if (now - p.since >= opts.waitMs) {
        queue.shift();
        unpark(p);
        refuse(p.socket);
        continue;
      }
      // Hung up, and its 'close' not come yet: forgotten, not given a place.
      if (p.socket.destroyed || p.socket.readableEnded || p.socket.remoteAddress === undefined) {
        queue.shift();
        unpark(p);
        p.socket.destroy();
        continue;
      }
      if (!opts.counter.enterSession(opts.limit)) break;
      queue.shift();
      unpark(p);
      hold(p.socket);
      p.start();
    }
    if (queue.length === 0 && timer) {
      clearInterval(timer);
      timer = null;
    }
  }
  const park = (socket: net.Socket, start: () => void): boolean => {
    if (opts.parkable <= 0 || !opts.counter.enterParked(opts.parkable)) return false;
    warn();
    socket.pause();
    const p: Parked = {
      socket, start, since: Date.now(),
      // Gone before its turn: forgotten, as a client that leaves the listen queue.
      gone: () => {
        const i = queue.indexOf(p);
        if (i >= 0) {
          queue.splice(i, 1);
          unpark(p);
          socket.destroy();
        }
      },
      noError: () => { /* 'close' follows */ },
    };
    socket.once('close', p.gone);
    socket.once('end', p.gone);
    socket.on('error', p.noError);
    queue.push(p);
    timer ??= setInterval(pump, PARK_POLL_MS);
    return true;
  };
  const gate: SessionGate = {
    admit(socket, start) {
      // Behind others waiting in this thread: it queues after them.
      if (queue.length === 0 && opts.counter.enterSession(opts.limit)) {
        hold(socket);
        start();
        return;
      }
      if (!park(socket, start)) refuse(socket);
    },
    parked: () => queue.length,
  };
  server.on('connection', (socket: net.Socket) => {
    gate.admit(socket, () => {
      for (const h of handlers) h.call(server, socket);
    });
  });
  return gate;
}
