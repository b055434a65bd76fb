/**
 * A request/reply service hosted as a piscina pool: its size is the service's maxproc, and each
 * worker runs many asynchronous requests at once. Workers keep ports, sockets and timers, so the
 * pool runs with `atomics: 'disabled'` (piscina otherwise parks an idle worker's event loop).
 *
 * Crash accounting: request handlers report expected failures as values, so a rejected task means
 * the worker died (or a bug). `service_throttle_time` (Postfix's name) is how long a service that
 * keeps crashing is refused; meanwhile piscina replaces the dead worker.
 */
import { Piscina } from 'piscina';
import { ServiceError } from './wire.js';

export interface PoolOptions {
  service: string;
  filename: string;
  threads: number;
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
  private throttledUntil = 0;

  constructor(private readonly options: PoolOptions) {
    this.piscina = new Piscina({
      filename: options.filename,
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: 2 ** 31 - 1,
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
    if (this.piscina.queueSize >= this.options.maxQueue) throw new ServiceError('BUSY', `${this.options.service}: mailbox full`);
    try {
      return (await this.piscina.run(body, transfer && transfer.length ? { transferList: transfer } : undefined)) as T;
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
