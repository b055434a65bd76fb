/**
 * Supervision of long-lived actors (qmgr, the smtpd listeners): one `Worker` per slot, restarted
 * when it dies. As Postfix's master does, a worker that dies before it reported ready is a "bad
 * command startup" and its service is throttled for `service_throttle_time` before the next try;
 * one that dies after serving restarts after a short pause.
 *
 * A slot may be on demand (`onDemand`, pickup): it has no thread until `demand()` starts one, and
 * a worker that says it is idle (`postactor:idle`, after max_idle without work) ends without a
 * restart, as a Postfix daemon exits after max_idle and its master spawns it again when the
 * next trigger comes. A thread costs 12–22 MB even when it does nothing (bench/memory).
 */
import { MessageChannel, Worker, type MessagePort, type ResourceLimits } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { threadEnv } from './compile-cache.js';
import type { ActorWorkerData, WorkerLifecycle } from './wire.js';

export interface SupervisedOptions {
  service: string;
  index: number;
  filename: URL | string;
  workerData: ActorWorkerData<unknown>;
  throttleSeconds: number;
  /** V8 heap limits of the thread (./heap-limits.ts). */
  resourceLimits?: ResourceLimits;
  /** Called with each new data port (at start and after every restart). */
  onPort: (port: MessagePort, slot: SupervisedWorker) => void;
  /** No thread until demand(); one that reports `postactor:idle` ends without a restart. */
  onDemand?: boolean;
  /** `error` is the uncaught exception that ended the thread, when there was one. */
  onExit?: (slot: SupervisedWorker, code: number, willRestart: boolean, throttled: boolean, error?: Error) => void;
}

export class SupervisedWorker {
  private worker: Worker | null = null;
  private stopping = false;
  private readyAt = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  control: Comlink.Remote<Record<string, (...args: unknown[]) => unknown>> | null = null;
  restarts = 0;
  /** Exit code of a worker that died before it ever became ready (start-up failure). */
  private startupExit: number | null = null;
  /** What the worker said when its start-up failed (`postactor:fatal`). */
  private startupFatal = '';
  private everReady = false;
  /** The worker said it is idle and is ending; a demand meanwhile starts the next one at its exit. */
  private idling = false;
  private demandedWhileIdling = false;

  constructor(readonly options: SupervisedOptions) {}

  get threadId(): number | undefined {
    return this.worker?.threadId;
  }

  /** An on-demand slot with no thread now and none on its way (health: not down, just idle). */
  get dormant(): boolean {
    return this.options.onDemand === true && this.worker === null && this.restartTimer === null;
  }

  /** The thread's event loop utilization since it started (cumulative; null without a thread). */
  eventLoopUtilization(): { idle: number; active: number } | null {
    return this.worker?.performance.eventLoopUtilization() ?? null;
  }

  /** The thread's own CPU time since it started, µs (cumulative; null without a thread). */
  cpuUsage(): Promise<{ user: number; system: number }> | null {
    return this.worker?.cpuUsage() ?? null;
  }

  /**
   * An on-demand slot's thread ends the way a reload retires it (smtpd closes its listener and
   * serves its sessions to the end), and the slot goes dormant: the next demand starts it again.
   */
  rest(): void {
    if (!this.options.onDemand || !this.worker || this.idling || this.readyAt === 0 || this.stopping) return;
    this.idling = true;
    this.worker.postMessage({ type: 'postactor:retire' });
  }

  /** Starts the thread of an on-demand slot unless one runs or is on its way. */
  demand(): void {
    if (this.stopping) return;
    if (this.idling) this.demandedWhileIdling = true;
    else if (this.dormant) this.start();
  }

  start(): void {
    if (this.stopping) return;
    const worker = new Worker(this.options.filename, {
      workerData: this.options.workerData,
      ...threadEnv(),
      ...(this.options.resourceLimits ? { resourceLimits: this.options.resourceLimits } : {}),
    });
    this.worker = worker;
    const { port1, port2 } = new MessageChannel();
    worker.postMessage({ type: 'postactor:port', port: port2 }, [port2]);
    this.options.onPort(port1, this);
    this.control = Comlink.wrap(nodeEndpoint(worker));
    worker.on('message', (msg: WorkerLifecycle | null) => {
      if (msg && msg.type === 'postactor:fatal') {
        if (!this.everReady) this.startupFatal = msg.text;
      } else if (msg && msg.type === 'postactor:ready') {
        this.readyAt = Date.now();
        this.everReady = true;
      } else if (msg && msg.type === 'postactor:idle' && this.options.onDemand && !this.idling) {
        // Its ordinary stop, so that whatever it still holds is finished first.
        this.idling = true;
        worker.postMessage({ type: 'postactor:stop' });
      }
    });
    let crash: Error | undefined;
    worker.on('error', (err) => { crash = err; /* reported with 'exit' */ });
    worker.on('exit', (code) => {
      port1.close();
      this.worker = null;
      this.control = null;
      if (this.stopping) return;
      if (this.idling && code === 0) {
        this.idling = false;
        this.readyAt = 0;
        if (this.demandedWhileIdling) {
          this.demandedWhileIdling = false;
          this.start();
        }
        return;
      }
      this.idling = false;
      const badStartup = this.readyAt === 0;
      if (!this.everReady) this.startupExit = code;
      this.readyAt = 0;
      this.restarts++;
      const delay = badStartup ? this.options.throttleSeconds * 1000 : 1000;
      this.options.onExit?.(this, code, true, badStartup, crash);
      this.restartTimer = setTimeout(() => { this.restartTimer = null; this.start(); }, delay);
    });
  }

  /** Waits until the worker said it is ready (its listener is open, its recovery done). */
  ready(timeoutMs = 30_000): Promise<void> {
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const poll = () => {
        if (this.readyAt || this.dormant) return resolve();
        if (this.startupExit !== null) return reject(new Error(`${this.options.service}: worker exited with status ${this.startupExit} during start-up${this.startupFatal ? `: ${this.startupFatal}` : ''}`));
        if (Date.now() - started > timeoutMs) return reject(new Error(`${this.options.service}: not ready after ${timeoutMs} ms`));
        setTimeout(poll, 10);
      };
      poll();
    });
  }

  /**
   * Retires the worker after a reload: it is not restarted, and it is asked to finish its work
   * at its own pace (smtpd: close its listeners, serve its sessions to the end). `closed`
   * resolves once it says it accepts no more work (`postactor:closed`) or has exited, `exited`
   * once the thread is gone; stop() still ends it sooner (the server stops meanwhile).
   */
  retire(): { closed: Promise<void>; exited: Promise<void> } {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const w = this.worker;
    if (!w) return { closed: Promise.resolve(), exited: Promise.resolve() };
    const exited = new Promise<void>((r) => w.once('exit', () => r()));
    const closed = new Promise<void>((r) => {
      const onMessage = (msg: { type?: string }) => {
        if (msg?.type !== 'postactor:closed') return;
        w.off('message', onMessage);
        r();
      };
      w.on('message', onMessage);
      void exited.then(() => r());
    });
    // A worker still starting (a restart after a crash) has no session yet, and may not
    // listen for the message yet either: it simply ends.
    if (this.readyAt === 0) void w.terminate();
    else w.postMessage({ type: 'postactor:retire' });
    return { closed, exited };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const w = this.worker;
    if (!w) return;
    const exited = new Promise((r) => w.once('exit', r));
    w.postMessage({ type: 'postactor:stop' });
    const timer = setTimeout(() => void w.terminate(), 15_000);
    await exited;
    clearTimeout(timer);
  }
}
