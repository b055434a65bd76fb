/**
 * The mailbox router, in the master thread: it knows where every service lives (a piscina pool
 * or supervised long-lived workers) and carries requests and replies between them. Each
 * long-lived worker talks to it over a dedicated MessagePort (the data plane), separate from the
 * comlink control channel. Mailboxes are bounded: a full pool answers BUSY at once, which the
 * caller turns into push-back (smtpd: 451 4.3.0).
 */
import type { MessagePort } from 'node:worker_threads';
import type { ServicePool } from './pool.js';
import { isWarmRequest, ServiceError, type Frame, type WireError } from './wire.js';

interface WorkerTarget {
  port: MessagePort;
  pending: Map<number, (frame: Frame) => void>;
  nextId: number;
}

export class Router {
  private readonly pools = new Map<string, ServicePool>();
  private readonly workers = new Map<string, WorkerTarget[]>();
  private rr = 0;

  /** Adds a pool, or replaces the pool of that service (reload): new requests go to the new one. */
  addPool(service: string, pool: ServicePool): void {
    this.pools.set(service, pool);
  }

  removePool(service: string): void {
    this.pools.delete(service);
  }

  /** Attaches a long-lived worker's data port: routes its requests, and lets it be addressed. */
  attach(service: string, port: MessagePort): void {
    const target: WorkerTarget = { port, pending: new Map(), nextId: 1 };
    const list = this.workers.get(service) ?? [];
    list.push(target);
    this.workers.set(service, list);
    port.on('message', (frame: Frame) => {
      if (frame.k === 'req') {
        const reply = frame.id !== 0;
        this.request(frame.to, frame.body, frame.t).then(
          (value) => reply && port.postMessage({ k: 'res', id: frame.id, ok: true, value } satisfies Frame),
          (err: unknown) => reply && port.postMessage({ k: 'res', id: frame.id, ok: false, error: toWire(err) } satisfies Frame),
        );
      } else if (frame.k === 'res') {
        const done = target.pending.get(frame.id);
        if (done) {
          target.pending.delete(frame.id);
          done(frame);
        }
      }
    });
    port.on('close', () => {
      const rest = (this.workers.get(service) ?? []).filter((t) => t !== target);
      this.workers.set(service, rest);
      for (const done of target.pending.values()) done({ k: 'res', id: 0, ok: false, error: { code: 'CRASHED', message: `${service}: worker exited` } });
      target.pending.clear();
    });
  }

  /** Sends a request to `service` and resolves to its reply. */
  request<T = unknown>(service: string, body: unknown, transfer?: ArrayBuffer[]): Promise<T> {
    const pool = this.pools.get(service);
    if (pool && isWarmRequest(body)) {
      pool.warm();
      return Promise.resolve(undefined as T);
    }
    if (pool) return pool.run<T>(body, transfer);
    const list = this.workers.get(service);
    if (!list || list.length === 0) return Promise.reject(new ServiceError('NOSERVICE', `no service ${service}`));
    const target = list[this.rr++ % list.length]!;
    const id = target.nextId++;
    return new Promise<T>((resolve, reject) => {
      target.pending.set(id, (frame) => {
        if (frame.k !== 'res') return;
        if (frame.ok) resolve(frame.value as T);
        else reject(new ServiceError(frame.error.code, frame.error.message));
      });
      target.port.postMessage({ k: 'req', id, to: service, body } satisfies Frame, transfer ?? []);
    });
  }

  /** Sends a one-way message to every worker of `service`. */
  broadcast(service: string, body: unknown): void {
    for (const t of this.workers.get(service) ?? []) t.port.postMessage({ k: 'msg', body } satisfies Frame);
  }

  has(service: string): boolean {
    return this.pools.has(service) || (this.workers.get(service)?.length ?? 0) > 0;
  }
}

function toWire(err: unknown): WireError {
  if (err instanceof ServiceError) return { code: err.code, message: err.message };
  return { code: 'ERROR', message: String((err as Error)?.message ?? err) };
}
