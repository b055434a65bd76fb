/**
 * The agent side of the delivery helpers (helper.ts): each local(8) or virtual(8) worker thread
 * keeps up to `max` helper processes, started on demand and kept for later deliveries, and
 * sends the mailbox writes to idle ones (one request per helper at a time; the writes wait in
 * a FIFO queue here). A helper that becomes free takes its share of what waits, up to
 * MAX_BATCH writes in one request, which it writes together (batch.ts: their fsyncs overlap),
 * so a burst costs a few round trips and disk flushes, not one of each per message.
 *
 * Supervision, as Postfix's master does for its children: a helper that exits is logged
 * ("warning: process … pid N killed by signal 9", master's words) and replaced by the next
 * request that needs one. The request it was running is answered 4.3.0 "unknown mail
 * transport error" (what qmgr says when a delivery agent dies) — every write of the batch it
 * held — so the recipient is deferred and
 * retried, never lost: a helper killed before it linked the file into new/ (or appended to the
 * mbox) leaves no copy, one killed after that but before it replied leaves a copy that the retry
 * delivers again — at least once, Postfix's promise.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { HelperMessage, HelperRequest, WriteResult, WriterJob } from './protocol.js';

const HELPER = fileURLToPath(new URL('./helper.js', import.meta.url));

/** A helper that died before it said it was ready: a start-up failure. */
const STARTUP_FAILED: WriteResult = { ok: false, dsn: '4.3.0', reason: 'mail system configuration error: delivery helper did not start' };
const DIED: WriteResult = { ok: false, dsn: '4.3.0', reason: 'unknown mail transport error', died: true };

/** Writes per request at most: a batch waits for its slowest fsync, so keep it bounded. */
export const MAX_BATCH = 32;

interface Job { job: WriterJob; data: Uint8Array; resolve: (r: WriteResult) => void }

class Helper {
  readonly child: ChildProcess;
  ready = false;
  current: Job[] | null = null;
  private id = 0;

  constructor(private readonly pool: DeliveryHelpers) {
    // No inherited execArgv or environment: the helper needs neither, and runs as root. Few
    // threads (one V8 worker, no SIGUSR1 inspector thread): glibc applies each set*id() call to
    // every thread in turn, so each thread makes every credential switch dearer.
    // libuv's threads run a batch's fsyncs side by side (batch.ts); they start with the first batch.
    this.child = fork(HELPER, [], { serialization: 'advanced', execArgv: ['--v8-pool-size=1', '--disable-sigusr1'], env: { PATH: '/usr/bin:/bin', UV_THREADPOOL_SIZE: String(FSYNC_THREADS) }, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    this.child.stderr!.on('data', (d: Buffer) => { if (stderr.length < 4096) stderr += d.toString(); });
    this.child.on('message', (m: HelperMessage) => {
      if (m.type === 'ready') { this.ready = true; this.pool.idle(this); return; }
      if (m.type === 'reply' && this.current && m.id === this.id) {
        const js = this.current;
        if (m.partial) {
          // Answered now; the rest of the request follows (a second resolve() changes nothing).
          js.forEach((j, k) => { const r = m.results[k]; if (r) j.resolve(r); });
          return;
        }
        this.current = null;
        js.forEach((j, k) => j.resolve(m.results[k] ?? DIED));
        this.pool.idle(this);
      }
    });
    this.child.on('error', () => { /* reported by 'exit' */ });
    this.child.on('exit', (code, signal) => this.pool.exited(this, code, signal, stderr.trim().split('\n')[0] ?? ''));
  }

  send(js: Job[]): void {
    this.current = js;
    const req: HelperRequest = { type: 'write', id: ++this.id, writes: js.map((j) => ({ job: j.job, data: j.data })) };
    this.child.send(req, (err) => {
      // The channel is gone: 'exit' follows and answers the job.
      if (err) this.child.kill('SIGKILL');
    });
  }
}

export class DeliveryHelpers {
  private readonly helpers = new Set<Helper>();
  private readonly idleOnes: Helper[] = [];
  private readonly queue: Job[] = [];
  private dispatchSoon = false;

  constructor(
    private readonly max: number,
    private readonly warn: (text: string) => void,
  ) {}

  /** Writes data as job says, in a helper; the result is never a rejection. */
  write(job: WriterJob, data: Uint8Array): Promise<WriteResult> {
    return new Promise((resolve) => {
      this.queue.push({ job, data, resolve });
      // After this turn of the event loop: the deliveries that came in the same batch of
      // messages from qmgr go to a helper together (one request, their fsyncs shared).
      if (!this.dispatchSoon) {
        this.dispatchSoon = true;
        setImmediate(() => {
          this.dispatchSoon = false;
          this.dispatch();
        });
      }
    });
  }

  /** Starts one helper now if there is none, so the first delivery need not wait for one to boot. */
  prestart(): void {
    if (this.helpers.size === 0) this.start();
  }

  private start(): void {
    const n = new Helper(this);
    this.helpers.add(n);
    // Neither the helper nor its channel keeps this thread alive.
    n.child.unref();
    (n.child.channel as unknown as { unref?: () => void } | undefined)?.unref?.();
  }

  /** Helper pids (for tests and diagnostics). */
  get pids(): number[] {
    return [...this.helpers].map((h) => h.child.pid ?? -1);
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const h = this.idleOnes.pop();
      if (h) {
        // Its share: the idle helpers split what waits (one each while there are more helpers than writes).
        const n = Math.min(MAX_BATCH, Math.ceil(this.queue.length / (this.idleOnes.length + 1)));
        h.send(this.queue.splice(0, n));
        continue;
      }
      const starting = [...this.helpers].filter((x) => !x.ready).length;
      // Start another helper for work that no starting one will take.
      if (this.helpers.size < this.max && starting < this.queue.length) {
        this.start();
        continue;
      }
      break;
    }
  }

  idle(h: Helper): void {
    if (!this.helpers.has(h)) return;
    this.idleOnes.push(h);
    this.dispatch();
  }

  exited(h: Helper, code: number | null, signal: NodeJS.Signals | null, stderr: string): void {
    this.helpers.delete(h);
    const i = this.idleOnes.indexOf(h);
    if (i >= 0) this.idleOnes.splice(i, 1);
    const how = signal ? `killed by signal ${signalNumber(signal)}` : `exit status ${code}`;
    if (signal || code !== 0) this.warn(`process ${HELPER} pid ${h.child.pid} ${how}${stderr ? `: ${stderr}` : ''}`);
    if (h.current) {
      for (const j of h.current) j.resolve(DIED);
      h.current = null;
    } else if (!h.ready && this.queue.length > 0) {
      // It never started: fail what is waiting rather than start helpers in a loop.
      for (const j of this.queue.splice(0)) j.resolve(STARTUP_FAILED);
    }
    this.dispatch();
  }
}

/** libuv threads per helper (UV_THREADPOOL_SIZE): how many of a batch's fsyncs wait at once. */
const FSYNC_THREADS = 8;

const signalNumber = (s: NodeJS.Signals) => constants.signals[s] ?? s;
