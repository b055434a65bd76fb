/**
 * The mailbox router, in the master thread: it knows where every service lives (a pool or
 * supervised long-lived workers). Each long-lived worker talks to it over a dedicated
 * MessagePort, separate from the comlink control channel. The router carries a worker's first
 * request to a pool service and, on the way, makes the worker a client of that pool: the pool
 * wires it a direct channel to each of its threads (./pool.ts, ./channels.ts), and the worker's
 * later requests go there without the master; the same for a service of long-lived workers
 * (verify), wired to each of its threads. What the router still carries: those first requests
 * (and any while a service has no thread), one-way `send`s, the master's own requests, and
 * pool workers' service requests (./service-request.ts). Mailboxes are bounded: a full pool
 * answers BUSY at once, which the caller turns into push-back (smtpd: 451 4.3.0).
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { PoolClient, ServicePool } from './pool.js';
import { isWarmRequest, ServiceError, type Frame, type WireError } from './wire.js';

/** A client thread as the router knows it: how to reach it, and the services it was wired to. */
export interface RouterClient {
  client: PoolClient;
  uses: Set<string>;
  usesWorkers: Set<string>;
}

interface WorkerTarget {
  port: MessagePort;
  pending: Map<number, (frame: Frame) => void>;
  nextId: number;
}

export class Router {
  private readonly pools = new Map<string, ServicePool>();
  private readonly workers = new Map<string, WorkerTarget[]>();
  private rr = 0;
  /** The client threads of each pool service (wired again to a new pool after a reload). */
  private readonly users = new Map<string, Set<PoolClient>>();
  /** The client threads of each service of long-lived workers (wired again to a restarted one);
   *  apart from `users`: an smtpd listener and the smtp pool may share a service name. */
  private readonly workerUsers = new Map<string, Set<PoolClient>>();
  /** Services of long-lived workers with no thread until their first request (verify): how to start one. */
  private readonly wakers = new Map<string, () => void>();
  /** Requests carried (tests and metrics: what still goes through the master). */
  carried = 0;

  /** Adds a pool, or replaces the pool of that service (reload): new requests go to the new one. */
  addPool(service: string, pool: ServicePool): void {
    this.pools.set(service, pool);
    // Its threads are clients too (local(8) passing a delivery on to mailbox_transport).
    pool.connect(this);
    for (const c of this.users.get(service) ?? []) pool.addClient(c);
  }

  removePool(service: string): void {
    this.pools.delete(service);
  }

  /**
   * A service of long-lived workers that has no thread until a request comes for it: `wake`
   * starts one (its port attaches at once, and the request waits in the port for its set-up).
   */
  onDemand(service: string, wake: () => void): void {
    this.wakers.set(service, wake);
  }

  private wake(service: string): void {
    if ((this.workers.get(service)?.length ?? 0) === 0) this.wakers.get(service)?.();
  }

  /** Attaches a long-lived worker's data port: routes its requests, and lets it be addressed. */
  attach(service: string, port: MessagePort): void {
    const target: WorkerTarget = { port, pending: new Map(), nextId: 1 };
    const list = this.workers.get(service) ?? [];
    list.push(target);
    this.workers.set(service, list);
    const me = this.client({ post: (frame, transfer) => port.postMessage(frame, transfer ?? []) });
    // A new (or restarted) worker of a service that others use: wired to each of them.
    if (!this.pools.has(service)) for (const c of this.workerUsers.get(service) ?? []) wireWorker(service, target, c);
    port.on('message', (frame: Frame) => {
      if (frame.k === 'grow') {
        this.grow(frame.service);
      } else if (frame.k === 'req') {
        const reply = frame.id !== 0;
        this.carry(me, frame.to, frame.body, frame.t, reply).then(
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
      this.forget(me);
      const rest = (this.workers.get(service) ?? []).filter((t) => t !== target);
      this.workers.set(service, rest);
      for (const done of target.pending.values()) done({ k: 'res', id: 0, ok: false, error: { code: 'CRASHED', message: `${service}: worker exited` } });
      target.pending.clear();
    });
  }

  /** A new client thread (a long-lived worker, or a pool thread: ./pool.ts). */
  client(client: PoolClient): RouterClient {
    return { client, uses: new Set(), usesWorkers: new Set() };
  }

  /**
   * Carries a client's request. Its first one to a service also makes it a client of that
   * service: a pool wires it to each of its threads (now and as they start), long-lived workers
   * (verify) each get a channel from it; from then on it asks them itself.
   */
  carry<T>(me: RouterClient, to: string, body: unknown, transfer: ArrayBuffer[] | undefined, reply = true): Promise<T> {
    const pool = this.pools.get(to);
    if (!pool) this.wake(to);
    if (pool && !me.uses.has(to)) {
      me.uses.add(to);
      let set = this.users.get(to);
      if (!set) this.users.set(to, (set = new Set()));
      set.add(me.client);
      pool.addClient(me.client);
    } else if (!pool && reply && !me.usesWorkers.has(to) && (this.workers.get(to)?.length ?? 0) > 0) {
      me.usesWorkers.add(to);
      let set = this.workerUsers.get(to);
      if (!set) this.workerUsers.set(to, (set = new Set()));
      set.add(me.client);
      for (const t of this.workers.get(to)!) wireWorker(to, t, me.client);
    }
    return this.request<T>(to, body, transfer);
  }

  /** A client asks for one more thread of a pool service (its channels are loaded). */
  grow(service: string): void {
    this.pools.get(service)?.grow();
  }

  /** A client thread ended: no more channels to it. */
  forget(me: RouterClient): void {
    for (const name of me.uses) {
      this.users.get(name)?.delete(me.client);
      this.pools.get(name)?.removeClient(me.client);
    }
    for (const name of me.usesWorkers) this.workerUsers.get(name)?.delete(me.client);
  }

  /** Sends a request to `service` and resolves to its reply. */
  request<T = unknown>(service: string, body: unknown, transfer?: ArrayBuffer[]): Promise<T> {
    this.carried++;
    const pool = this.pools.get(service);
    if (isWarmRequest(body)) {
      // Only a pool starts threads on demand; to any other service (a long-lived worker, none) it says nothing.
      pool?.warm();
      return Promise.resolve(undefined as T);
    }
    if (pool) return pool.run<T>(body, transfer);
    this.wake(service);
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

/** A direct channel from a client thread to a long-lived worker of `service`. */
function wireWorker(service: string, target: WorkerTarget, client: PoolClient): void {
  const { port1, port2 } = new MessageChannel();
  target.port.postMessage({ k: 'client', port: port1 } satisfies Frame, [port1]);
  // A long-lived worker serves every request it gets at once: no thread to grow into.
  client.post({ k: 'wire', service, port: port2, spreadAt: Number.MAX_SAFE_INTEGER }, [port2]);
}

function toWire(err: unknown): WireError {
  if (err instanceof ServiceError) return { code: err.code, message: err.message };
  return { code: 'ERROR', message: String((err as Error)?.message ?? err) };
}
