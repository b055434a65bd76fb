/**
 * The frames that travel on a data port between a long-lived actor's thread and the master's
 * router. Actor payloads (`body`) are opaque here: their types are declared by the actors
 * (actors/protocol.ts); the runtime only moves them.
 */
export type Frame =
  /** t: the body's buffers that were transferred to the router, for it to transfer on. */
  | { k: 'req'; id: number; to: string; body: unknown; t?: ArrayBuffer[] }
  | { k: 'res'; id: number; ok: true; value: unknown }
  | { k: 'res'; id: number; ok: false; error: WireError }
  | { k: 'msg'; body: unknown };

/**
 * A one-way request to a pool service: start a thread now if it has none, a request is coming
 * (smtpd sends it to cleanup at a transaction's first accepted recipient, where Postfix's smtpd
 * opens its cleanup stream). The router hands it to the pool (pool.ts `warm`); no handler of the
 * service runs for it.
 */
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
