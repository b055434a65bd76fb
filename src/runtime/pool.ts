/**
 * A request/reply service hosted as a piscina pool: its size is the service's maxproc, and each
 * worker runs many asynchronous requests at once. Workers keep ports, sockets and timers, so the
 * pool runs with `atomics: 'disabled'` (piscina otherwise parks an idle worker's event loop).
 *
 * Threads start lazily (memory follows work, not master.cf): a pool keeps `minThreads` threads
 * (0 for services off the client's path, 1 for cleanup: actors/master/services.ts), starts
 * one more when its busiest-free thread already holds `spreadAt` requests or it has none, up to
 * maxproc, and ends a thread that had no request for `idleMs` (Postfix's max_idle: a daemon
 * process exits after that long without a client). A cold pool's first request waits for a
 * thread start (about 50–150 ms). Each thread runs under V8 heap limits (`resourceLimits`,
 * chosen in ./heap-limits.ts).
 *
 * Crash accounting: request handlers report expected failures as values, so a rejected task means
 * the worker died (or a bug). `service_throttle_time` (Postfix's name) is how long a service that
 * keeps crashing is refused; meanwhile piscina replaces the dead worker.
 */
import type { ResourceLimits } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { ServiceError } from './wire.js';

/** The task a WARM_REQUEST (./wire.ts) runs: nothing, in a thread that loaded the service. */
const WARM_TASK = new URL('./warm-task.js', import.meta.url).href;

/** piscina's view of one worker, as its balancer sees it. */
interface BalancedWorker {
  readonly currentUsage: number;
  readonly isRunningAbortableTask: boolean;
}

export interface PoolOptions {
  service: string;
  filename: string;
  /** maxproc: the most threads. */
  threads: number;
  /** Threads kept even when idle (default: all of them, started at once). */
  minThreads?: number;
  /** A thread idle this long ends (down to minThreads); default: never. */
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

export class ServicePool {
  private readonly piscina: Piscina;
  private crashes: number[] = [];
  /** While a cold pool starts its first thread: resolves when it is ready (or its request ended). */
  private firstThread: Promise<void> | null = null;
  private coldWaiting = 0;
  private throttledUntil = 0;

  constructor(private readonly options: PoolOptions) {
    const minThreads = Math.min(options.minThreads ?? options.threads, options.threads);
    this.piscina = new Piscina({
      filename: options.filename,
      minThreads,
      maxThreads: options.threads,
      // piscina arms the idle timer only above minThreads; setTimeout's longest is 2^31-1 ms.
      idleTimeout: Math.min(options.idleMs ?? 2 ** 31 - 1, 2 ** 31 - 1),
      loadBalancer: spreadingBalancer(options.threads, options.concurrency, options.spreadAt ?? 1) as never,
      ...(options.resourceLimits ? { resourceLimits: options.resourceLimits } : {}),
      atomics: 'disabled',
      concurrentTasksPerWorker: options.concurrency,
      maxQueue: options.maxQueue,
      workerData: options.workerData,
    });
    this.piscina.on('error', (err: Error) => this.crashed(err));
  }

  get threads(): number {
    return this.piscina.threads.length;
  }

  /** The pool's worker thread ids (metrics: whose snapshots a scrape waits for). */
  get threadIds(): number[] {
    return this.piscina.threads.map((w) => w.threadId);
  }

  /** Refused after repeated crashes (health: the service is down). */
  get throttled(): boolean {
    return Date.now() < this.throttledUntil;
  }

  get queueSize(): number {
    return this.piscina.queueSize;
  }

  async run<T>(body: unknown, transfer?: ArrayBuffer[]): Promise<T> {
    if (Date.now() < this.throttledUntil) throw new ServiceError('THROTTLED', `${this.options.service}: service is throttled after repeated crashes`);
    if (this.piscina.queueSize + this.coldWaiting >= this.options.maxQueue) throw new ServiceError('BUSY', `${this.options.service}: mailbox full`);
    // A cold pool: the first request starts a thread, and the requests that come while it starts
    // wait for it and then go through the balancer. Queued in piscina instead, each would start
    // a thread of its own (piscina spawns one per queued request, up to maxThreads), and a burst
    // of five deliveries would start every smtp thread however little work they carry.
    if (this.firstThread === null && this.piscina.threads.length === 0) {
      const settled = this.piscina.run(body, transfer && transfer.length ? { transferList: transfer } : undefined);
      const ready = new Promise<void>((resolve) => this.piscina.once('workerCreate', () => resolve()));
      this.firstThread = Promise.race([ready, settled.then(() => undefined, () => undefined)]).finally(() => { this.firstThread = null; });
      return this.settle<T>(settled);
    }
    if (this.firstThread !== null) {
      this.coldWaiting++;
      try {
        await this.firstThread;
      } finally {
        this.coldWaiting--;
      }
    }
    return this.settle<T>(this.piscina.run(body, transfer && transfer.length ? { transferList: transfer } : undefined));
  }

  /** WARM_REQUEST: a cold pool starts its first thread now, as its first request would. */
  warm(): void {
    if (this.piscina.threads.length > 0 || this.firstThread !== null || Date.now() < this.throttledUntil) return;
    const settled = this.piscina.run(null, { filename: WARM_TASK });
    const ready = new Promise<void>((resolve) => this.piscina.once('workerCreate', () => resolve()));
    this.firstThread = Promise.race([ready, settled.then(() => undefined, () => undefined)]).finally(() => { this.firstThread = null; });
  }

  /** A request's outcome: its reply, BUSY when piscina's queue is full, else CRASHED (the worker died). */
  private async settle<T>(running: Promise<unknown>): Promise<T> {
    try {
      return (await running) as T;
    } catch (err) {
      const error = err as Error;
      if (/queue is at limit/i.test(error.message)) throw new ServiceError('BUSY', `${this.options.service}: mailbox full`);
      this.crashed(error);
      throw new ServiceError('CRASHED', `${this.options.service}: ${error.message}`);
    }
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
    }
    this.options.onCrash?.(this.options.service, error, throttle);
  }

  /** Ends the pool at once: requests still running fail (abort). */
  async close(): Promise<void> {
    await this.piscina.destroy();
  }

  /** Ends the pool after the requests it holds have finished (stop, reload). */
  async drain(): Promise<void> {
    await this.piscina.close();
  }
}

/**
 * Picks the least busy thread that has room (piscina's own rule), but asks for one more thread
 * when even the least busy one already holds `spreadAt` requests: with many requests per thread,
 * piscina's balancer would start a second thread only once the first held `concurrency` of them,
 * and a CPU-bound service (cleanup) would then run on one core. Asking means returning null:
 * piscina then starts a thread (below maxThreads) and queues that one request until a thread is
 * free. Only one request per step waits so: while the thread asked for starts (piscina shows
 * the balancer only the ready ones), requests go to the threads that have room, and a start that
 * never comes (a thread that failed to start) stops counting after GROW_WAIT_MS.
 */
export function spreadingBalancer(maxThreads: number, concurrency: number, spreadAt: number): (task: unknown, workers: BalancedWorker[]) => BalancedWorker | null {
  let asked = 0;
  let askedAt = 0;
  return (_task, workers) => {
    let best: BalancedWorker | null = null;
    for (const w of workers) {
      if (w.isRunningAbortableTask || w.currentUsage >= concurrency) continue;
      if (best === null || w.currentUsage < best.currentUsage) best = w;
      if (w.currentUsage === 0) break;
    }
    const growing = workers.length < asked && Date.now() - askedAt < GROW_WAIT_MS;
    if (workers.length < maxThreads && !growing && (best === null || best.currentUsage >= spreadAt)) {
      asked = workers.length + 1;
      askedAt = Date.now();
      return null;
    }
    return best;
  };
}

/** How long a thread asked for may take to start before the balancer may ask again. */
const GROW_WAIT_MS = 5_000;
