/**
 * A request/reply service hosted as a pool of worker threads (./pool-thread.ts): its size is the
 * service's maxproc, and each thread runs many asynchronous requests at once. The project's own
 * pool, not piscina: piscina hands a task to a thread of its choosing and cannot give a client a
 * port to one given thread, and its threads' lives (start on demand, end after max_idle) follow
 * only the tasks it carried. Here the master wires each client thread to each pool thread with a
 * MessageChannel (./channels.ts) and stays off the data path, and the threads themselves say when
 * they have been idle, whoever their requests came from.
 *
 * Threads start lazily (memory follows work, not master.cf): a pool keeps `minThreads` threads
 * while its service is in use (0 for services off the client's path, 1 for cleanup:
 * actors/master/services.ts; a service unused for max_idle lets even those end, as every idle
 * Postfix daemon exits, and keeps none until its next request or warm request), starts
 * one more when its least busy thread already holds `spreadAt` requests or it has none (for
 * direct channels the client asks: a `grow` frame), up to maxproc, and ends a thread that had no
 * request for `idleMs` (Postfix's max_idle: a daemon process exits after that long without a
 * client). A cold pool's first request waits for a thread start: 140–210 ms of the thread's own
 * CPU (Node's bootstrap of the thread, its service's 100–150 modules, then its set-up: 5–25 ms;
 * bench/threads), 0.25–0.45 s of wall time on a loaded 2-core machine, ~0.7–1 s while smtpd and
 * cleanup keep both cores busy (bench/delivery's first messages). So each thread starts with
 * Node's compile cache (./compile-cache.ts) and runs its service's set-up as soon as it is ready
 * (./pool-thread.ts), and clients ask for a thread before their first request (WARM_REQUEST:
 * smtpd for cleanup, qmgr for a transport it has work for). Each thread
 * runs under V8 heap limits (`resourceLimits`, chosen in ./heap-limits.ts).
 *
 * Crash accounting: request handlers report expected failures as values, so a thread that dies
 * (or a handler that throws) is a crash; its requests fail with CRASHED, on the master's port and
 * on every direct channel. `service_throttle_time` (Postfix's name) is how long a service that
 * keeps crashing is refused (its clients are told so); meanwhile the pool replaces dead threads
 * up to its minimum, and starts others on demand.
 */
import { MessageChannel, Worker, type MessagePort, type ResourceLimits } from 'node:worker_threads';
import { threadEnv } from './compile-cache.js';
import type { ServeMessage } from './pool-thread.js';
import type { Router, RouterClient } from './router.js';
import { ServiceError, type Frame, type PoolFrame } from './wire.js';

export interface PoolOptions {
  service: string;
  filename: string;
  /** maxproc: the most threads. */
  threads: number;
  /** Threads kept while the service is in use (default: all of them, started at once). */
  minThreads?: number;
  /**
   * A thread idle this long ends (down to minThreads; the last of those too, and the pool goes
   * cold until its next request: `cold` below); default: never.
   */
  idleMs?: number;
  /** Another thread starts (up to maxproc) once every thread holds this many requests (default 1: at once). */
  spreadAt?: number;
  resourceLimits?: ResourceLimits;
  /** Requests one worker runs at once. */
  concurrency: number;
  /** Requests queued beyond those running before `run` fails fast with BUSY. */
  maxQueue: number;
  workerData: unknown;
  throttleSeconds: number;
  /** Crashes within throttleSeconds that throttle the service. */
  crashLimit?: number;
  onCrash?: (service: string, error: Error, throttled: boolean) => void;
}

/** A client thread of the pool's service, as the router knows it: its data port to the master. */
export interface PoolClient {
  post(frame: Frame, transfer?: (ArrayBuffer | MessagePort)[]): void;
}

interface Waiting {
  body: unknown;
  transfer: ArrayBuffer[] | undefined;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

interface PoolThread {
  worker: Worker;
  /** The master's port to the thread (requests the router carries, and the thread's life). */
  port: MessagePort;
  ready: boolean;
  /** Told to end (max_idle, drain): takes no more requests from the master, nor clients. */
  ending: boolean;
  /** It said `ended`: its exit is no crash. */
  ended: boolean;
  /** It said `idle` (max_idle without a request) and the master carried it none since. */
  saidIdle?: boolean;
  startedAt: number;
  /** Requests the master carried to it and awaits. */
  pending: Map<number, Waiting>;
  nextId: number;
  error?: Error;
  /** The thread as a client of other services (made at its first request to one). */
  me?: RouterClient;
}

const SCRIPT = new URL('./pool-thread.js', import.meta.url);

export class ServicePool {
  private readonly pool: PoolThread[] = [];
  private readonly waiting: Waiting[] = [];
  private readonly clients = new Set<PoolClient>();
  private crashes: number[] = [];
  private throttledUntil = 0;
  private closed = false;
  private replenishTimer: NodeJS.Timeout | null = null;
  private readonly minThreads: number;
  /**
   * Unused for idleMs: the minimum is not kept (a Postfix daemon idle for max_idle exits, and
   * the next client waits for a new one). A request, a warm request or a client's grow ends it.
   */
  private cold = false;
  private readonly spreadAt: number;
  /** Carries the threads' own requests to other services (set when the router adds the pool). */
  private router: Router | null = null;
  /** BUSY answers (a full queue here or in a thread), for tests and metrics. */
  busy = 0;

  constructor(private readonly options: PoolOptions) {
    this.minThreads = Math.min(options.minThreads ?? options.threads, options.threads);
    this.spreadAt = options.spreadAt ?? 1;
    this.replenish();
  }

  /** Threads alive (starting, serving or ending). */
  get threads(): number {
    return this.pool.length;
  }

  /** The pool's worker thread ids (metrics: whose snapshots a scrape waits for). */
  get threadIds(): number[] {
    return this.pool.map((t) => t.worker.threadId);
  }

  /** Refused after repeated crashes (health: the service is down). */
  get throttled(): boolean {
    return Date.now() < this.throttledUntil;
  }

  get queueSize(): number {
    return this.waiting.length;
  }

  /** A request the master carries (a client's first, a pool worker's, master's own). */
  run<T>(body: unknown, transfer?: ArrayBuffer[]): Promise<T> {
    if (this.closed) return Promise.reject(new ServiceError('NOSERVICE', `${this.options.service}: service is stopping`));
    if (Date.now() < this.throttledUntil) return Promise.reject(new ServiceError('THROTTLED', `${this.options.service}: service is throttled after repeated crashes`));
    if (this.waiting.length >= this.options.maxQueue) {
      this.busy++;
      return Promise.reject(new ServiceError('BUSY', `${this.options.service}: mailbox full`));
    }
    this.cold = false;
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({ body, transfer, resolve: resolve as (v: unknown) => void, reject });
      this.pump();
    });
  }

  /**
   * A client thread that uses this service: it gets a direct channel to every serving thread,
   * now and as threads start. The router adds a client at its first request to the service.
   */
  addClient(client: PoolClient): void {
    if (this.clients.has(client)) return;
    this.clients.add(client);
    for (const t of this.pool) if (t.ready && !t.ending) this.wire(t, client);
    if (this.throttled) client.post({ k: 'throttle', service: this.options.service, until: this.throttledUntil });
  }

  removeClient(client: PoolClient): void {
    this.clients.delete(client);
  }

  /** The router that carries the threads' own requests and wires them to the services they use. */
  connect(router: Router): void {
    this.router = router;
  }

  /** A client's channels are all loaded (spreadAt in flight): one more thread, if maxproc allows. */
  grow(): void {
    if (this.closed || this.throttled) return;
    this.cold = false;
    if (this.live().length < this.options.threads && !this.starting()) this.start();
  }

  private wire(t: PoolThread, client: PoolClient): void {
    const { port1, port2 } = new MessageChannel();
    t.port.postMessage({ k: 'client', port: port1 } satisfies PoolFrame, [port1]);
    client.post({ k: 'wire', service: this.options.service, port: port2, spreadAt: this.spreadAt }, [port2]);
  }

  private live(): PoolThread[] {
    return this.pool.filter((t) => !t.ending);
  }

  /** Whether a thread asked for is still starting (one that never comes stops counting after GROW_WAIT_MS). */
  private starting(): boolean {
    return this.pool.some((t) => !t.ready && !t.ending && Date.now() - t.startedAt < GROW_WAIT_MS);
  }

  /**
   * Hands waiting requests to threads, in order: to the least busy serving thread, but asks for
   * one more thread when even that one holds `spreadAt` requests (or there is none), and the
   * request then waits for it. With many requests per thread, a CPU-bound service (cleanup)
   * would otherwise run on one core. While the thread asked for starts, requests go to threads
   * below spreadAt, or wait.
   */
  private pump(): void {
    while (this.waiting.length > 0) {
      let best: PoolThread | null = null;
      for (const t of this.pool) {
        // A thread runs `concurrency` requests and queues the rest; one whose service spreads
        // later than that (spreadAt above concurrency: local, virtual) takes that many first.
        if (!t.ready || t.ending || t.pending.size >= Math.max(this.options.concurrency, this.spreadAt)) continue;
        if (best === null || t.pending.size < best.pending.size) best = t;
      }
      const loaded = best === null || best.pending.size >= this.spreadAt;
      if (loaded && this.live().length < this.options.threads && !this.starting()) {
        this.start();
      }
      if (best === null || (loaded && this.starting())) return;
      const w = this.waiting.shift()!;
      const id = best.nextId++;
      best.pending.set(id, w);
      best.saidIdle = false;
      best.port.postMessage({ k: 'req', id, body: w.body } satisfies PoolFrame, w.transfer ?? []);
    }
  }

  private start(): void {
    const worker = new Worker(SCRIPT, {
      workerData: this.options.workerData,
      ...threadEnv(),
      ...(this.options.resourceLimits ? { resourceLimits: this.options.resourceLimits } : {}),
    });
    const { port1, port2 } = new MessageChannel();
    const t: PoolThread = { worker, port: port1, ready: false, ending: false, ended: false, startedAt: Date.now(), pending: new Map(), nextId: 1 };
    this.pool.push(t);
    worker.postMessage({
      type: 'postactor:serve', filename: this.options.filename, port: port2, concurrency: this.options.concurrency,
      maxQueue: this.options.maxQueue, idleMs: this.options.idleMs && this.options.idleMs < 2 ** 31 ? this.options.idleMs : 0,
    } satisfies ServeMessage, [port2]);
    port1.on('message', (frame: PoolFrame) => this.fromThread(t, frame));
    worker.on('error', (err) => { t.error = err; });
    worker.on('exit', (code) => this.exited(t, code));
  }

  private fromThread(t: PoolThread, frame: PoolFrame): void {
    switch (frame.k) {
      case 'ready':
        t.ready = true;
        if (this.closed) return void t.worker.terminate();
        for (const c of this.clients) this.wire(t, c);
        return this.pump();
      case 'res': {
        const w = t.pending.get(frame.id);
        if (!w) return;
        t.pending.delete(frame.id);
        if (frame.ok) w.resolve(frame.value);
        else w.reject(new ServiceError(frame.error.code, frame.error.code === 'BUSY' ? `${this.options.service}: mailbox full` : `${this.options.service}: ${frame.error.message}`));
        return this.pump();
      }
      case 'idle':
        // Down to minThreads; the thread asks again after its next request. The last of the
        // minimum idle for max_idle: nobody used the service since, so it ends too.
        if (t.ending) return;
        if (this.live().length > this.minThreads) return this.end(t);
        t.saidIdle = true;
        if (this.live().every((o) => o.saidIdle)) {
          this.cold = true;
          for (const o of this.live()) this.end(o);
        }
        return;
      case 'ended':
        t.ended = true;
        void t.worker.terminate();
        return;
      case 'call': {
        const id = frame.id;
        const router = this.router;
        if (!router) return t.port.postMessage({ k: 'answer', id, ok: false, error: { code: 'NOSERVICE', message: `no service ${frame.to}` } } satisfies PoolFrame);
        t.me ??= router.client({ post: (f, transfer) => t.port.postMessage(f, transfer ?? []) });
        router.carry(t.me, frame.to, frame.body, frame.t).then(
          (value) => t.port.postMessage({ k: 'answer', id, ok: true, value } satisfies PoolFrame),
          (err: unknown) => t.port.postMessage({ k: 'answer', id, ok: false, error: err instanceof ServiceError ? { code: err.code, message: err.message } : { code: 'ERROR', message: String((err as Error)?.message ?? err) } } satisfies PoolFrame),
        );
        return;
      }
      case 'grow':
        this.router?.grow(frame.service);
        return;
      case 'busy':
        this.busy++;
        return;
      case 'fault':
        this.crashed(new Error(frame.message));
        return;
    }
  }

  /**
   * WARM_REQUEST (./wire.ts): a pool with no thread starts one now, as its first request would,
   * so that the request coming (smtpd: at the first accepted recipient) does not wait for it.
   */
  warm(): void {
    this.cold = false;
    if (this.closed || this.throttled || this.live().length > 0) return;
    this.start();
  }

  private end(t: PoolThread): void {
    t.ending = true;
    if (!t.ready) return void t.worker.terminate();
    t.port.postMessage({ k: 'end' } satisfies PoolFrame);
  }

  private exited(t: PoolThread, code: number): void {
    const i = this.pool.indexOf(t);
    if (i >= 0) this.pool.splice(i, 1);
    t.port.close();
    if (t.me) this.router?.forget(t.me);
    const expected = t.ended || this.closed || (t.ending && !t.ready);
    const error = t.error ?? new Error(`worker exited with status ${code}`);
    for (const w of t.pending.values()) w.reject(new ServiceError('CRASHED', `${this.options.service}: ${error.message}`));
    t.pending.clear();
    if (!expected) this.crashed(error);
    if (this.closed) return;
    this.replenish();
    this.pump();
  }

  /** Back up to minThreads (at start, after a crash), unless the service is throttled. */
  private replenish(): void {
    if (this.closed) return;
    const wait = this.throttledUntil - Date.now();
    if (wait > 0) {
      this.replenishTimer ??= setTimeout(() => { this.replenishTimer = null; this.replenish(); }, wait);
      this.replenishTimer.unref();
      return;
    }
    while (this.live().length < (this.cold ? 0 : this.minThreads)) this.start();
  }

  private crashed(error: Error): void {
    const now = Date.now();
    const window = this.options.throttleSeconds * 1000;
    this.crashes = this.crashes.filter((t) => now - t < window);
    this.crashes.push(now);
    const throttle = this.crashes.length >= (this.options.crashLimit ?? 5);
    if (throttle) {
      this.throttledUntil = now + window;
      this.crashes = [];
      for (const c of this.clients) c.post({ k: 'throttle', service: this.options.service, until: this.throttledUntil });
      for (const w of this.waiting.splice(0)) w.reject(new ServiceError('THROTTLED', `${this.options.service}: service is throttled after repeated crashes`));
    }
    this.options.onCrash?.(this.options.service, error, throttle);
  }

  /** Ends the pool at once: requests still running fail. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.replenishTimer) clearTimeout(this.replenishTimer);
    for (const w of this.waiting.splice(0)) w.reject(new ServiceError('NOSERVICE', `${this.options.service}: service is stopping`));
    await Promise.all(this.pool.map((t) => t.worker.terminate()));
  }

  /** Ends the pool after the requests it holds have finished (stop, reload). */
  async drain(): Promise<void> {
    // What waits for a thread still gets one.
    while (this.waiting.length > 0 && this.pool.length > 0) await new Promise((r) => setTimeout(r, 20));
    this.closed = true;
    if (this.replenishTimer) clearTimeout(this.replenishTimer);
    for (const w of this.waiting.splice(0)) w.reject(new ServiceError('NOSERVICE', `${this.options.service}: service is stopping`));
    const exits = this.pool.map((t) => new Promise<void>((r) => t.worker.once('exit', () => r())));
    for (const t of this.pool) if (!t.ending) this.end(t);
    await Promise.all(exits);
  }
}

/** How long a thread asked for may take to start before the pool may ask again. */
const GROW_WAIT_MS = 5_000;
