/**
 * The frames that travel on a data port between a long-lived actor's thread and the master's
 * router, and on the direct channels between a client thread and a pool thread (./channels.ts).
 * Actor payloads (`body`) are opaque here: their types are declared by the actors
 * (actors/protocol.ts); the runtime only moves them.
 */
import type { MessagePort } from 'node:worker_threads';

export type Frame =
  /** t: the body's buffers that were transferred to the router, for it to transfer on. */
  | { k: 'req'; id: number; to: string; body: unknown; t?: ArrayBuffer[] }
  | { k: 'res'; id: number; ok: true; value: unknown }
  | { k: 'res'; id: number; ok: false; error: WireError }
  | { k: 'msg'; body: unknown }
  /** master → client: a direct channel to one thread of `service` (its private/ socket). */
  | { k: 'wire'; service: string; port: MessagePort; spreadAt: number }
  /** master → long-lived worker: serve this client's direct channel too (./endpoint.ts). */
  | { k: 'client'; port: MessagePort }
  /** client → master: each of its channels to `service` holds spreadAt requests: start a thread. */
  | { k: 'grow'; service: string }
  /** master → client: `service` keeps crashing and is refused until `until` (ms since the epoch). */
  | { k: 'throttle'; service: string; until: number }
  /** On a direct channel: the pool thread ends (max_idle, reload), and the client's answer that
   *  it sends nothing more there; what it sent before is still served. */
  | { k: 'bye' };

/** Between the master and one of its pool's threads (./pool.ts, ./pool-thread.ts). */
export type PoolFrame =
  | { k: 'req'; id: number; body: unknown }
  | { k: 'res'; id: number; ok: true; value: unknown }
  | { k: 'res'; id: number; ok: false; error: WireError }
  /** master → thread: serve this client's direct channel too. */
  | { k: 'client'; port: MessagePort }
  /** thread → master: loaded and serving. */
  | { k: 'ready' }
  /** thread → master: no request for max_idle; master answers `end` unless it keeps the thread. */
  | { k: 'idle' }
  /** master → thread: finish what you hold, say bye to your clients, then report `ended`. */
  | { k: 'end' }
  | { k: 'ended' }
  /** thread → master: a request of the thread's own to another service (its first there, or one
   *  with no channel): the router carries it and wires the thread (./router.ts). */
  | { k: 'call'; id: number; to: string; body: unknown; t?: ArrayBuffer[] }
  /** master → thread: the reply to a `call`. */
  | { k: 'answer'; id: number; ok: true; value: unknown }
  | { k: 'answer'; id: number; ok: false; error: WireError }
  /** The thread as a client: wired channels, throttles, and its grow requests (as on a long-lived worker's port). */
  | Extract<Frame, { k: 'wire' | 'throttle' | 'grow' }>
  /** thread → master: it answered BUSY (its queue was full): counted, for tests and metrics. */
  | { k: 'busy' }
  /** thread → master: a request handler failed (a bug: counted as a crash, as a dead thread). */
  | { k: 'fault'; message: string };

/**
 * A one-way request to a pool service: start a thread now if it has none, a request is coming
 * (smtpd sends it to cleanup at a transaction's first accepted recipient, where Postfix's smtpd
 * opens its cleanup stream; qmgr to a transport's pool when it has work for that transport and
 * nothing in delivery, where Postfix's qmgr connects to the agent). The router hands it to the pool (pool.ts `warm`); no handler of the
 * service runs for it.
 */
/**
 * A long-lived worker's own messages to its supervisor on the worker's parentPort (beside
 * comlink's control calls): ready after its set-up; idle after max_idle without work (an
 * on-demand service); fatal with the reason just before it exits because its set-up failed.
 */
export type WorkerLifecycle =
  | { type: 'postactor:ready' }
  | { type: 'postactor:idle' }
  | { type: 'postactor:fatal'; text: string };

export const WARM_REQUEST = { op: 'postactor:warm' } as const;
export const isWarmRequest = (body: unknown): boolean => (body as { op?: unknown } | null)?.op === WARM_REQUEST.op;

/** A failure the router reports instead of a reply. */
export interface WireError {
  /** BUSY: the mailbox is full (push back); THROTTLED: the service keeps crashing;
   *  CRASHED: the worker died while holding the request; NOSERVICE: no such service. */
  code: 'BUSY' | 'THROTTLED' | 'CRASHED' | 'NOSERVICE' | 'ERROR';
  message: string;
}

export class ServiceError extends Error {
  constructor(readonly code: WireError['code'], message: string) {
    super(message);
    this.name = 'ServiceError';
  }
}

/** What a long-lived worker receives as workerData. */
export interface ActorWorkerData<C = unknown> {
  service: string;
  /** The Postfix command the thread runs (smtpd, cleanup, smtp, …): its thread name (./thread-name.ts). */
  thread?: string;
  /** Index of this worker within its service's pool (0-based). */
  index: number;
  config: C;
  /** Prefix of the BroadcastChannel names of this server instance. */
  instance: string;
  extra?: unknown;
  /** The server's mail flow tokens (./flow.ts), shared by every thread. */
  flow?: SharedArrayBuffer;
  /** metrics_listen is set: the thread reports its metrics to master (src/metrics/). */
  metrics?: boolean;
  /** Logging to syslog (src/log/syslog.ts): the relay's descriptor and syslog_facility. */
  syslog?: { fd: number; facility: number };
}

/** A reply to a request: its value, or the failure the other side reported. */
export type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: WireError };

/**
 * The requests a thread sent on one port and waits for, by id: each reply settles its promise
 * once (a late or unknown one is dropped); a port that closes fails what is left.
 */
export class PendingReplies {
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  get size(): number {
    return this.waiting.size;
  }

  /** A new request: `send` posts it under the id given, and the promise is its reply. */
  expect<T>(send: (id: number) => void): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      send(id);
    });
  }

  /** Settles the request `reply` answers; false when none waits for it. `prefix` goes before a failure's text. */
  settle(reply: Reply, prefix = ''): boolean {
    const w = this.waiting.get(reply.id);
    if (!w) return false;
    this.waiting.delete(reply.id);
    if (reply.ok) w.resolve(reply.value);
    else w.reject(new ServiceError(reply.error.code, prefix + reply.error.message));
    return true;
  }

  /** Fails every request still waiting (the other side is gone). */
  failAll(error: ServiceError): number {
    const n = this.waiting.size;
    for (const w of this.waiting.values()) w.reject(error);
    this.waiting.clear();
    return n;
  }
}
