/**
 * The relay benchmark's counting sink, hosted in its own worker thread.
 *
 * Why a worker thread: the sink must not share an event loop with the load generator
 * (otherwise a busy generator delays the sink's replies to the MTA, and the sink's work
 * slows the generator), but a separate process buys nothing more here: the MTA under test
 * is already its own process, a thread has its own event loop and V8 heap, the counters
 * reach the bench thread through shared memory with exact timestamps and no IPC
 * serialisation, and the thread cannot outlive the bench process (no orphaned listener
 * after a crash or Ctrl-C).
 */
import { Worker } from 'node:worker_threads';

export const SLOT = {
  connections: 0,
  messages: 1,
  recipients: 2,
  bytes: 3,
  rejectedRecipients: 4,
  /** Wall-clock microseconds (performance.timeOrigin + now()) of the latest message. */
  lastMessageAt: 5,
  firstMessageAt: 6,
  firstConnectAt: 7,
  /** Messages carrying a DKIM-Signature header (counted only with countSigned: --milter). */
  signed: 8,
  /** Messages that came over a resumed TLS session (counted only with countResumed: --tls-cache). */
  resumed: 9,
} as const;
const SLOTS = 10;

export interface SinkThreadData {
  port: number;
  shared: SharedArrayBuffer;
  /** Offer STARTTLS with this key and certificate (bench --tls). */
  tls?: { key: string; cert: string };
  /** Count the messages that carry a DKIM-Signature (bench --milter opendkim). */
  countSigned?: boolean;
  /** Count the messages whose TLS session was resumed (bench --tls-cache). */
  countResumed?: boolean;
}

export interface SinkSnapshot {
  connections: number;
  messages: number;
  recipients: number;
  bytes: number;
  rejectedRecipients: number;
  /** Wall-clock epoch milliseconds (sub-ms precision); 0 when nothing arrived yet. */
  lastMessageAt: number;
  firstMessageAt: number;
  firstConnectAt: number;
  signed: number;
  resumed: number;
}

export class SinkThread {
  private constructor(
    private readonly worker: Worker,
    private readonly cells: BigInt64Array,
    readonly port: number,
  ) {}

  /** Start a sink on 127.0.0.1:port (0 = any free port). */
  static async start(port = 0, tls?: { key: string; cert: string }, countSigned = false, countResumed = false): Promise<SinkThread> {
    const shared = new SharedArrayBuffer(SLOTS * 8);
    const data: SinkThreadData = { port, shared, ...(tls ? { tls } : {}), ...(countSigned ? { countSigned } : {}), ...(countResumed ? { countResumed } : {}) };
    const worker = new Worker(new URL('./sink-thread.js', import.meta.url), { workerData: data });
    const listening = await new Promise<number>((resolve, reject) => {
      const onError = (err: Error) => reject(new Error(`sink thread failed to start: ${err.message}`));
      worker.once('error', onError);
      worker.once('exit', (code) => reject(new Error(`sink thread exited with code ${code} before listening`)));
      worker.once('message', (m: { type: string; port: number }) => {
        worker.off('error', onError);
        worker.removeAllListeners('exit');
        resolve(m.port);
      });
    });
    worker.on('error', (err) => console.error(`sink thread error: ${err.message}`));
    return new SinkThread(worker, new BigInt64Array(shared), listening);
  }

  snapshot(): SinkSnapshot {
    const c = this.cells;
    const n = (i: number): number => Number(Atomics.load(c, i));
    const messages = n(SLOT.messages);
    return {
      connections: n(SLOT.connections),
      messages,
      recipients: n(SLOT.recipients),
      bytes: n(SLOT.bytes),
      rejectedRecipients: n(SLOT.rejectedRecipients),
      lastMessageAt: n(SLOT.lastMessageAt) / 1000,
      firstMessageAt: n(SLOT.firstMessageAt) / 1000,
      firstConnectAt: n(SLOT.firstConnectAt) / 1000,
      signed: n(SLOT.signed),
      resumed: n(SLOT.resumed),
    };
  }

  /** Count from zero again (bench --warmup: what the warm-up delivered is not the run's). */
  async reset(): Promise<void> {
    const done = new Promise<void>((resolve, reject) => {
      const on = (m: { type: string }) => {
        if (m.type !== 'reset') return;
        off();
        resolve();
      };
      const gone = (code: number) => { off(); reject(new Error(`sink thread exited with code ${code}`)); };
      const off = () => { this.worker.off('message', on); this.worker.off('exit', gone); };
      this.worker.on('message', on);
      this.worker.on('exit', gone);
    });
    this.worker.postMessage({ type: 'reset' });
    await done;
  }

  /** Close the listener and every connection, then end the thread. Bounded to 5 s. */
  async close(): Promise<SinkSnapshot> {
    const done = new Promise<void>((resolve) => {
      this.worker.once('exit', () => resolve());
    });
    this.worker.postMessage({ type: 'close' });
    const timer = setTimeout(() => void this.worker.terminate(), 5000);
    await done;
    clearTimeout(timer);
    return this.snapshot();
  }
}
